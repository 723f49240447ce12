// A clock read once per batch of input instead of once per job: the read
// loop ticks it when bytes arrive, and everything that handles those bytes
// reads the stored value for free. performance.now() costs enough in Deno
// that calling it a few times per job is a measurable slowdown.

let now = performance.now();

/** Read the real clock and store it (milliseconds, performance.now()). */
export function tickClock(): number {
  now = performance.now();
  return now;
}

/** The time of the last tick: at most one read batch old. */
export function coarseNow(): number {
  return now;
}
