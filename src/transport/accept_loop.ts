/**
 * The accept loop of a listening socket that survives failed accepts.
 *
 * @module
 */

import { asError } from "./connection.ts";

/** First pause after a failed accept, in milliseconds; it doubles while accepts keep failing. */
const FIRST_PAUSE_MS = 10;
/** Longest pause between tries. */
const MAX_PAUSE_MS = 1000;

/**
 * What {@link acceptConnections} reports to.
 *
 * @example Log failures
 * ```ts
 * import type { AcceptHandlers } from "./accept_loop.ts";
 * const handlers: AcceptHandlers<Deno.TcpConn> = {
 *   connection: (conn) => conn.close(),
 *   failed: (err, retryMs) => console.warn(`accept failed: ${err.message}; retry in ${retryMs} ms`),
 *   closing: () => false,
 * };
 * console.assert(typeof handlers.failed === "function");
 * ```
 */
export interface AcceptHandlers<C> {
  /** A connection was accepted. */
  connection(conn: C): void;
  /**
   * An accept failed (too many open files, ...): it is tried again after
   * `retryMs`; or `connection` threw (0: that connection was closed).
   */
  failed(err: Error, retryMs: number): void;
  /** Whether the listener is being closed on purpose (then a failed accept ends the loop quietly). */
  closing(): boolean;
}

/**
 * Accept connections until the listener is closed. A failed accept is
 * reported and tried again after a pause (10 ms, doubling up to 1 s while
 * failures go on), instead of ending the loop: a burst of connections
 * that uses up the process's file descriptors (EMFILE) must not leave the
 * server listening but deaf once they are closed.
 *
 * @param listener The listening socket.
 * @param handlers Where connections and failures go.
 * @returns Resolves when the listener is closed.
 *
 * @example Serve until closed
 * ```ts
 * import { acceptConnections } from "./accept_loop.ts";
 * const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
 * let closing = false;
 * const done = acceptConnections(listener, {
 *   connection: (conn) => conn.close(),
 *   failed: () => {},
 *   closing: () => closing,
 * });
 * closing = true;
 * listener.close();
 * await done;
 * ```
 */
export async function acceptConnections<C extends Deno.Conn>(
  listener: Deno.Listener<C>,
  handlers: AcceptHandlers<C>,
): Promise<void> {
  let pause = FIRST_PAUSE_MS;
  for (;;) {
    let conn: C;
    try {
      conn = await listener.accept();
    } catch (err) {
      if (
        handlers.closing() || err instanceof Deno.errors.BadResource ||
        err instanceof Deno.errors.Interrupted
      ) return;
      handlers.failed(asError(err), pause);
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, MAX_PAUSE_MS);
      continue;
    }
    pause = FIRST_PAUSE_MS;
    try {
      handlers.connection(conn);
    } catch (err) {
      // One connection that could not be set up (a socket reset as it was
      // accepted) is dropped; the others are still accepted.
      try {
        conn.close();
      } catch { /* already closed */ }
      handlers.failed(asError(err), 0);
    }
  }
}

/** What {@link logAcceptFailures} logs to: a logtape Logger is one. */
export interface ErrorLog {
  /** Log `message` (a template with `{name}` placeholders) at error level. */
  error(message: string, properties: Record<string, unknown>): void;
}

/**
 * A `failed` handler for {@link acceptConnections} that logs what happened
 * and what to do, at most once a second: a box flapping at its file limit
 * would otherwise log a line per failed accept. Each line says how many
 * failures it stands for.
 *
 * @param log Where to log.
 * @param what What is being accepted, e.g. "a Gearman connection".
 * @param now The clock, in milliseconds (tests pass their own).
 * @returns The handler.
 *
 * @example
 * ```ts
 * import { logAcceptFailures } from "./accept_loop.ts";
 * const lines: string[] = [];
 * const failed = logAcceptFailures({ error: (m) => lines.push(m) }, "a connection", () => 0);
 * failed(new Error("Too many open files (os error 24)"), 10);
 * failed(new Error("Too many open files (os error 24)"), 20);
 * console.assert(lines.length === 1);
 * ```
 */
export function logAcceptFailures(
  log: ErrorLog,
  what: string,
  now: () => number = Date.now,
): (err: Error, retryMs: number) => void {
  const message = `Accepting ${what} failed: {error}; trying again in {retryMs} ms ` +
    "({failures} failure(s) since the last such line). " +
    "With too many open files, raise the limit (ulimit -n) or set --max-connections below it";
  let lastAt = -Infinity;
  let failures = 0;
  return (err, retryMs) => {
    failures++;
    const at = now();
    if (at - lastAt < 1000) return;
    lastAt = at;
    log.error(message, { error: err.message, retryMs, failures });
    failures = 0;
  };
}
