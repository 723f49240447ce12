// A timeout that counts only the time the event loop was free to notice
// an answer. A plain setTimeout also counts time the program spent in a
// long synchronous stretch (a loop making 300,000 submits): when that
// stretch ends, the expired timer and the answer that came meanwhile are
// both ready, and Deno runs the timer first, so the wait "times out" on an
// answer that was there all along. Here the wait is cut into short steps,
// and a step that fires late is credited only with its planned length.

/** Planned length of one step, in milliseconds. */
const STEP_MS = 100;
/** Lateness past which a step is taken as a sign the loop was blocked. */
const SLACK_MS = 50;

/**
 * Call `onTimeout` once `ms` milliseconds have passed during which the
 * event loop was running: a step that fires late counts only its planned
 * length, and when the time runs out on a late step, the loop gets one
 * more step to deliver what came while it was blocked.
 *
 * @param ms How long to wait, in milliseconds.
 * @param onTimeout Called once, when the time is up.
 * @returns Cancels the timeout (safe to call more than once, and after it fired).
 *
 * @example Time out a wait unless cancelled
 * ```ts
 * import { loopTimeout } from "./loop_timeout.ts";
 * import assert from "node:assert/strict";
 *
 * let fired = false;
 * const cancel = loopTimeout(10, () => (fired = true));
 * while (!fired) await new Promise((r) => setTimeout(r, 20));
 * cancel();
 * assert.ok(fired);
 * ```
 */
export function loopTimeout(ms: number, onTimeout: () => void): () => void {
  let credited = 0;
  let last = performance.now();
  let planned = 0;
  let graceTaken = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (length: number): void => {
    planned = length;
    timer = setTimeout(step, length);
  };
  const step = (): void => {
    const now = performance.now();
    const elapsed = now - last;
    last = now;
    credited += Math.min(elapsed, planned);
    if (credited < ms) return arm(Math.min(STEP_MS, ms - credited));
    if (elapsed > planned + SLACK_MS && !graceTaken) {
      graceTaken = true;
      return arm(STEP_MS);
    }
    timer = undefined;
    onTimeout();
  };
  arm(Math.max(0, Math.min(STEP_MS, ms)));
  return () => {
    clearTimeout(timer);
    timer = undefined;
  };
}

/**
 * `p`, or a rejection with `message` once `ms` of event-loop time pass
 * without it settling ({@link loopTimeout}); `onTimeout` runs first (to
 * close what `p` waits on). A late rejection of `p` is not reported.
 *
 * @param p What to wait for.
 * @param ms Longest wait, in ms of event-loop time.
 * @param message The timeout error's message.
 * @param onTimeout Called when the time is up, before the rejection.
 * @returns `p`'s outcome, or the timeout.
 */
export function withinLoopTime<T>(
  p: Promise<T>,
  ms: number,
  message: string,
  onTimeout?: () => void,
): Promise<T> {
  let cancel: (() => void) | undefined;
  const timeout = new Promise<never>((_, reject) => {
    cancel = loopTimeout(ms, () => {
      onTimeout?.();
      reject(new Error(message));
    });
  });
  p.catch(() => {}); // lost the race: its error is not news
  return Promise.race([p, timeout]).finally(() => cancel?.());
}
