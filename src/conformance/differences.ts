/**
 * The known differences between our server and C++ gearmand 1.1.20 that
 * scenarios show with `[ours]`/`[ref]` steps. `deliberate` ones are listed
 * in README.md ("Where we differ from C++ gearmand on purpose");
 * `reported` ones were found by this suite and are not (yet) on that list.
 *
 * @module
 */

/**
 * A known difference between our server and gearmand.
 *
 * @example Look one up
 * ```ts
 * import { DIFFERENCES } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const d = DIFFERENCES.find((d) => d.id === "wakeups")!;
 * assert.equal(d.status, "deliberate");
 * ```
 */
export interface Difference {
  /** Short id, used by scenarios' `differs`. */
  id: string;
  /** What differs, in a line. */
  title: string;
  /** Why. */
  reason: string;
  /** On README's deliberate list, or found here and reported. */
  status: "deliberate" | "reported";
}

/**
 * Every known difference (see docs/CONFORMANCE.md).
 *
 * @example List the deliberate ones
 * ```ts
 * import { DIFFERENCES } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * assert.ok(DIFFERENCES.some((d) => d.status === "deliberate"));
 * ```
 */
export const DIFFERENCES: readonly Difference[] = [
  {
    id: "wakeups",
    title: "A new job wakes one sleeping worker, not all of them",
    reason:
      "gearmand sends NOOP to every sleeper and all but one then get NO_JOB; a worker that took another job passes the wake-up on",
    status: "deliberate",
  },
  {
    id: "grab-order",
    title: "Priority comes first across all of a worker's functions",
    reason:
      "a HIGH job of any function goes before a NORMAL one; gearmand takes the first function (most recently registered) that has any job",
    status: "deliberate",
  },
  {
    id: "handles",
    title: "Handle numbers are not consecutive",
    reason:
      "the number encodes the job's slot and a generation, so a handle is found without a hash lookup",
    status: "deliberate",
  },
  {
    id: "epoch-timers",
    title: "Epoch jobs are woken by a timer when due",
    reason:
      "gearmand hands a due epoch job out only on a later grab (and wakes sleepers at submit time, when the job cannot run yet)",
    status: "deliberate",
  },
  {
    id: "sched",
    title: "SUBMIT_JOB_SCHED is implemented",
    reason: "gearmand 1.1.20 answers it with ERROR INVALID_COMMAND",
    status: "deliberate",
  },
  {
    id: "exception-fail-nul",
    title:
      "WORK_EXCEPTION to a client without the exceptions option becomes WORK_FAIL with the bare handle",
    reason: "gearmand appends a NUL to the handle, which Perl's Gearman::Client rejects",
    status: "deliberate",
  },
  {
    id: "bare-complete",
    title: "A WORK_COMPLETE that is a bare handle is relayed (with its NUL)",
    reason:
      "Perl's Gearman::Worker sends it for an empty result; gearmand's parser waits for the missing NUL, eats the next packets and closes the worker, requeueing the job forever",
    status: "deliberate",
  },
  {
    id: "drop-queued",
    title: "drop function refuses while jobs are queued",
    reason: "gearmand drops the function and orphans its jobs (never handed out, still listed)",
    status: "deliberate",
  },
  {
    id: "maxqueue-create",
    title: "maxqueue on a function not seen yet creates it",
    reason: "so the limit holds when its jobs arrive; gearmand ignores the command",
    status: "deliberate",
  },
  {
    id: "cancel-running",
    title: "cancel job on a running job detaches its clients and discards the result",
    reason: "gearmand sends WORK_FAIL and later still relays the result",
    status: "deliberate",
  },
  {
    id: "shutdown",
    title: "shutdown and shutdown graceful work",
    reason: "gearmand 1.1.20 answers ERR UNKNOWN_COMMAND",
    status: "deliberate",
  },
  {
    id: "protocol-errors",
    title: "Protocol errors get an ERROR packet before the connection is closed",
    reason:
      "gearmand closes silently (bad magic, unknown type) or waits for 4 GiB (oversize packet)",
    status: "deliberate",
  },
  {
    id: "unique-64",
    title: "A 64-byte unique id is kept whole",
    reason:
      "gearmand accepts 64 bytes but stores 63 (snprintf into a 64-byte buffer) and hands workers the 63 bytes plus an extra NUL before the data; we keep all 64",
    status: "reported",
  },
  {
    id: "dup-client",
    title: "A client that submits one unique twice gets the result once",
    reason:
      "gearmand attaches the client to the job once per submit and sends it every packet that many times",
    status: "reported",
  },
  {
    id: "bg-join",
    title: "A background submit joining a foreground job keeps it alive",
    reason:
      "when its foreground clients leave, gearmand discards the job even though a background submit joined it; we run it, as the background submitter expects",
    status: "reported",
  },
];
