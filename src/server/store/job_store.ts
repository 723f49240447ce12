/**
 * Where durable jobs live: the interface a job store implements (the
 * in-memory one, SQLite, and later Postgres).
 *
 * Background and scheduled jobs are written to the store before the client
 * is told JOB_CREATED; foreground jobs live in memory only (as in gearmand),
 * since their client is connected and waiting. The dispatcher buffers
 * writes (`add`, `remove`, `setRetries`) during a turn of the event loop
 * and calls `commit()` once for all of them: one transaction per turn
 * (group commit), however many clients submitted.
 *
 * @module
 */

/**
 * A job as the store keeps it.
 *
 * @example A stored background job
 * ```ts
 * import type { StoredJob } from "./job_store.ts";
 * const job: StoredJob = {
 *   handle: 1, seq: 1, function: "resize", unique: new Uint8Array(0), data: new Uint8Array(3),
 *   priority: 1, runAt: 0, cron: "", retries: 0,
 * };
 * console.assert(job.priority === 1);
 * ```
 */
export interface StoredJob {
  /** Handle number (the `N` of `H:host:N`): the same after a restart. */
  handle: number;
  /** Submit order, for replay. */
  seq: number;
  /** Function name (byte string). */
  function: string;
  /** The same name as bytes, when the caller has them (saves an encode). */
  functionBytes?: Uint8Array;
  /** Unique id bytes (empty: none). */
  unique: Uint8Array;
  /** Job data. */
  data: Uint8Array;
  /** 0 high, 1 normal, 2 low. */
  priority: number;
  /** Run-at time in ms since the epoch; 0 runs now. */
  runAt: number;
  /** SUBMIT_JOB_SCHED fields ("min hour mday month wday"), or "" for none. */
  cron: string;
  /** Times a worker died or gave up holding it. */
  retries: number;
  /** SUBMIT_REDUCE_JOB's reducer (empty for other jobs). */
  reducer?: Uint8Array;
}

/**
 * A job that ran out of retries (`--job-retries`), kept for an operator.
 *
 * @example A dead letter
 * ```ts
 * import type { DeadLetter } from "./job_store.ts";
 * const d: DeadLetter = {
 *   id: 1, handle: 7, function: "f", unique: new Uint8Array(0), data: new Uint8Array(0),
 *   priority: 1, retries: 3, failedAt: Date.now(), reason: "worker disconnected",
 * };
 * console.assert(d.retries === 3);
 * ```
 */
export interface DeadLetter {
  /** Id in the dead-letter list. */
  id: number;
  /** The handle number the job had. */
  handle: number;
  /** Function name (byte string). */
  function: string;
  /** Unique id bytes. */
  unique: Uint8Array;
  /** Job data. */
  data: Uint8Array;
  /** 0 high, 1 normal, 2 low. */
  priority: number;
  /** Retries it had when it failed. */
  retries: number;
  /** When it failed (ms since the epoch). */
  failedAt: number;
  /** Why its last worker lost it. */
  reason: string;
}

/**
 * A job store. Writes are buffered until {@link JobStore.commit}.
 *
 * @example Use the in-memory store
 * ```ts
 * import { MemoryJobStore } from "./memory_store.ts";
 * const store = new MemoryJobStore();
 * console.assert(store.durable === false);
 * ```
 */
export interface JobStore {
  /** A short description for logs: `memory`, `sqlite:/var/lib/gearman.db`. */
  readonly description: string;
  /** Whether jobs survive a restart (if not, nothing is written). */
  readonly durable: boolean;
  /** A number that grows with every start of a server on this store. */
  readonly boot: number;
  /** Jobs to replay at start, in submit order. */
  load(): Iterable<StoredJob>;
  /** Buffer: a job was accepted. */
  add(job: StoredJob): void;
  /** Buffer: a job ended (completed, failed, cancelled). */
  remove(handle: number): void;
  /** Buffer: a job's retry count changed. */
  setRetries(handle: number, retries: number): void;
  /** Buffer: a job ran out of retries; keep it as a dead letter (and remove it). */
  addDeadLetter(letter: Omit<DeadLetter, "id">): void;
  /** Dead letters, oldest first. */
  deadLetters(): DeadLetter[];
  /** Remove a dead letter (retried or purged); false if unknown. */
  removeDeadLetter(id: number): boolean;
  /**
   * Jobs to replay at start, in submit order, at most `limit` of them; the
   * rest stay in the store (see {@link JobStore.backlog}).
   */
  loadHead(limit: number): Iterable<StoredJob>;
  /** Jobs with a run-at time and a sequence above `afterSeq` (replayed whatever the limit). */
  loadTimed(afterSeq: number): Iterable<StoredJob>;
  /** Jobs with no run-at time and a sequence above `afterSeq`, counted by function and priority. */
  backlog(afterSeq: number): { function: string; priority: number; count: number }[];
  /**
   * The next jobs of a function and priority after `afterSeq`, in order
   * (committed jobs only: commit first).
   */
  page(fn: string, priority: number, afterSeq: number, limit: number): StoredJob[];
  /** A stored job by function and unique key (for `-`, the data), if any. */
  findByUnique(fn: string, unique: Uint8Array, data: Uint8Array): StoredJob | undefined;
  /** The highest sequence number stored (0 when empty). */
  maxSeq(): number;
  /** A stored job by handle number, if any. */
  findByHandle(handle: number): StoredJob | undefined;
  /** Whether writes are waiting for a commit. */
  readonly pending: boolean;
  /**
   * Write everything buffered, atomically. Resolves when it is durable;
   * rejects (with nothing written) on failure.
   */
  commit(): Promise<void> | void;
  /** Close the store; buffered writes are committed first. */
  close(): void;
}
