/**
 * The known differences between our server and C++ gearmand 1.1.20 that
 * scenarios show with `[ours]`/`[ref]` steps. `deliberate` ones are listed
 * in README.md ("Where we differ from C++ gearmand on purpose");
 * `reported` ones were found by this suite and are not (yet) on that list;
 * `gearmand-bug` ones are gearmand defects we do not copy.
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
  /**
   * `deliberate`: on README's list; `reported`: found by this suite, not
   * on that list; `gearmand-bug`: gearmand is plainly broken there.
   */
  status: "deliberate" | "reported" | "gearmand-bug";
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
    status: "gearmand-bug",
  },
  {
    id: "dup-client",
    title: "A client that submits one unique twice gets the result once",
    reason:
      "gearmand attaches the client to the job once per submit and sends it every packet that many times",
    status: "deliberate",
  },
  {
    id: "bg-join",
    title: "A background submit joining a foreground job keeps it alive",
    reason:
      "when its foreground clients leave, gearmand discards the job even though a background submit joined it; we run it, as the background submitter expects",
    status: "deliberate",
  },
  {
    id: "dup-can-do",
    title: "CAN_DO twice for one function registers it once",
    reason:
      "gearmand adds a second registration (status counts the worker twice, workers lists the function twice)",
    status: "deliberate",
  },
  {
    id: "abandoned",
    title: "A queued job that can no longer run is removed at once",
    reason:
      "a foreground job whose clients all left, or a cancelled job: gearmand keeps it (counted in status, listed in show jobs, cancellable again with another WORK_FAIL) until a worker tries to grab it; we remove it at once",
    status: "deliberate",
  },
  {
    id: "stale-timeout",
    title: "A CAN_DO_TIMEOUT timer ends with its job",
    reason:
      "gearmand does not cancel the timer when the job completes; it fires on the freed job, wakes sleepers for nothing, and drives the function's counters below zero (status shows 4294967295)",
    status: "gearmand-bug",
  },
  {
    id: "fail-data",
    title: "WORK_FAIL is relayed as the bare handle whatever the worker sent",
    reason:
      "gearmand relays the worker's WORK_FAIL body verbatim, so data after the handle reaches clients",
    status: "deliberate",
  },
  {
    id: "long-handle",
    title: "Handles and uniques of 64 bytes or more in GET_STATUS, GET_STATUS_UNIQUE, WORK_FAIL",
    reason:
      "we answer them like any unknown handle; gearmand sends no reply to GET_STATUS and GET_STATUS_UNIQUE (and closes the connection when run with --threads 0 or 1), and answers WORK_FAIL with ERROR ARGUMENT_TOO_LARGE",
    status: "deliberate",
  },
  {
    id: "epoch-blocks-lower",
    title: "A future epoch job does not hide ready jobs of lower priority",
    reason:
      "gearmand looks only at the first non-empty priority list; a future NORMAL job makes GRAB_JOB answer NO_JOB while a LOW job is ready (and PRE_SLEEP answers NOOP: a busy loop)",
    status: "gearmand-bug",
  },
  {
    id: "maxqueue-args",
    title: "maxqueue with two sizes or a size that is not a number is refused",
    reason:
      "gearmand answers OK (two sizes: only the first two priorities change; not a number: 0, unlimited)",
    status: "deliberate",
  },
  {
    id: "admin-words",
    title: "Admin lines are split on runs of spaces, with no word limit",
    reason:
      "gearmand turns a leading space into an empty command name (unknown command) and closes the connection on a line of six words or more",
    status: "deliberate",
  },
  {
    id: "drop-case",
    title: "drop function matches the name exactly",
    reason: "gearmand matches it ignoring case (but maxqueue and submits are case-sensitive)",
    status: "deliberate",
  },
  {
    id: "empty-client-id",
    title: "An empty SET_CLIENT_ID shows as '-' in workers",
    reason: "gearmand prints the empty id, leaving two spaces in the line",
    status: "deliberate",
  },
  {
    id: "create-lf",
    title: "create function NAME ending in \\n alone creates NAME",
    reason: "gearmand assumes a \\r\\n ending and drops the last character of the name",
    status: "gearmand-bug",
  },
  {
    id: "long-timeout",
    title: "A CAN_DO_TIMEOUT timeout of more than 20 characters is accepted",
    reason:
      "we take an unparsable timeout as no timeout; gearmand stops answering the connection (and closes it when run with --threads 0 or 1)",
    status: "deliberate",
  },
  {
    id: "function-name",
    title: "Function names must be 1 to 512 bytes",
    reason:
      "gearmand accepts an empty name and names of any length that fit its 8 KiB buffer; we answer ERROR INVALID_FUNCTION_NAME",
    status: "deliberate",
  },
  {
    id: "missing-nul",
    title: "A submit whose body lacks its NUL separators is refused",
    reason:
      "gearmand looks for the missing NULs past the packet's end, in the bytes of the next packets; we answer ERROR INVALID_ARGUMENTS",
    status: "deliberate",
  },
];
