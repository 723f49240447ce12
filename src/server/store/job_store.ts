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
  /**
   * Where the store keeps it, set on jobs it loads: pass it back to
   * {@link JobStore.remove} and {@link JobStore.setRetries} (as the
   * number {@link JobStore.add} returns).
   */
  ref?: number;
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
  /**
   * Buffer: a job was accepted. Returns where the store keeps it (0 if the
   * handle is enough): the server passes it back to {@link JobStore.remove}
   * and {@link JobStore.setRetries}, so a store can append jobs without an
   * index by handle.
   */
  add(job: StoredJob): number;
  /**
   * Buffer: a job ended (completed, failed, cancelled). `ref` is what
   * {@link JobStore.add} returned, or the job's {@link StoredJob.ref} when it
   * was loaded; without it a store may have to search for the job.
   */
  remove(handle: number, ref?: number): void;
  /** Buffer: a job's retry count changed (`ref` as for {@link JobStore.remove}). */
  setRetries(handle: number, retries: number, ref?: number): void;
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
  /**
   * A stored job by function and unique key (for `-`, the data), if any.
   * The server asks only about jobs it does not hold in memory (it finds
   * those itself), so a store may leave those out: the SQLite store's job
   * log, which holds only jobs in memory, has no index by unique id.
   */
  findByUnique(fn: string, unique: Uint8Array, data: Uint8Array): StoredJob | undefined;
  /** The highest sequence number stored (0 when empty). */
  maxSeq(): number;
  /** A stored job by handle number, if any. */
  findByHandle(handle: number): StoredJob | undefined;
  /** Whether writes are waiting for a commit. */
  readonly pending: boolean;
  /**
   * How many commits may run at once (default 1: each waits for the one
   * before). More only for a store whose commits are independent
   * transactions on separate connections: a job can only be removed or
   * updated after the commit that added it, since it does not run before.
   */
  readonly maxCommitsInFlight?: number;
  /**
   * Write everything buffered, atomically. Resolves when it is durable;
   * rejects (with nothing written) on failure.
   */
  commit(): Promise<void> | void;
  /**
   * Close the store; buffered writes are committed first. A store that
   * talks to a database resolves once it has said goodbye.
   */
  close(): void | Promise<void>;
  /**
   * Set by stores that several servers share (Postgres): the queue the
   * whole cluster draws from. Undefined for a store of one server.
   */
  readonly cluster?: ClusterQueue;
}

/**
 * Cluster-wide figures of one function: jobs no server holds yet, and
 * jobs held (queued or running) by some server.
 *
 * @example
 * ```ts
 * import type { ClusterDepth } from "./job_store.ts";
 * const d: ClusterDepth = { queued: 10, held: 2 };
 * console.assert(d.queued + d.held === 12);
 * ```
 */
export interface ClusterDepth {
  /** Jobs waiting in the shared queue for any server's workers (due or scheduled). */
  queued: number;
  /** Jobs a server has claimed (queued there or running). */
  held: number;
  /** {@link ClusterDepth.queued} by priority: high, normal, low. */
  queuedByPriority?: readonly [number, number, number];
}

/**
 * A job of the shared queue as the cluster's admin views list it (`show
 * jobs`, `show scheduled` on any server).
 *
 * @example
 * ```ts
 * import type { ClusterJob } from "./job_store.ts";
 * const j: ClusterJob = {
 *   handle: 65537, function: "resize", unique: new Uint8Array(0), priority: 1,
 *   runAt: 0, retries: 0, heldBy: undefined,
 * };
 * console.assert(j.heldBy === undefined);
 * ```
 */
export interface ClusterJob {
  /** Handle number, unique in the cluster. */
  handle: number;
  /** Function name. */
  function: string;
  /** Unique id (empty if none). */
  unique: Uint8Array;
  /** 0 high, 1 normal, 2 low. */
  priority: number;
  /** Run-at time in ms since the epoch; 0 runs now. */
  runAt: number;
  /** Times its workers died holding it. */
  retries: number;
  /** Name of the server holding it; undefined while no server does. */
  heldBy: string | undefined;
}

/**
 * A server of the cluster, as the shared store sees it.
 *
 * @example
 * ```ts
 * import type { ClusterServer } from "./job_store.ts";
 * const s: ClusterServer = { id: 1, name: "gm1:4730", heartbeatAgeMs: 120, held: 0 };
 * console.assert(s.id === 1);
 * ```
 */
export interface ClusterServer {
  /** Id of this server's start (new at every start). */
  id: number;
  /** Host and port it serves on. */
  name: string;
  /** Milliseconds since its last heartbeat. */
  heartbeatAgeMs: number;
  /** Jobs it holds. */
  held: number;
}

/**
 * The shared queue of a cluster of servers on one database. Background
 * and scheduled jobs are written to it, not held by the server that took
 * them, unless that server has idle workers for them: any server whose
 * workers can do a function claims its jobs in batches. A claimed job is
 * held by its server until it ends; a server that stops heart-beating
 * loses what it held to the others (at-least-once).
 *
 * Writes ({@link ClusterQueue.enqueue}, {@link ClusterQueue.enqueueUnique},
 * {@link ClusterQueue.release}) are buffered with the store's other writes
 * and committed by {@link JobStore.commit}.
 *
 * @example React to jobs arriving from other servers
 * ```ts ignore
 * store.cluster!.onAvailable = (fn) => console.log(`jobs for ${fn} wait`);
 * ```
 */
export interface ClusterQueue {
  /** This server's id in the cluster (also the store's `boot`). */
  readonly serverId: number;
  /** A handle number no other server of the cluster will give (sync: ids come in blocks). */
  nextHandle(): number;
  /** Buffer a job no server holds yet: any server's workers may claim it. */
  enqueue(job: StoredJob): void;
  /**
   * Buffer a job with a unique id. Resolves after the commit with the handle
   * of the job that holds that id in the cluster: this one, or one that was
   * already queued or running somewhere.
   */
  enqueueUnique(job: StoredJob): Promise<number>;
  /**
   * Claim up to `limit` due jobs of a function that no server holds, for
   * this server, highest priority and oldest first.
   */
  claim(fn: string, limit: number): Promise<StoredJob[]>;
  /** Buffer: this server gives back held jobs it will not run (no workers here). */
  release(handles: number[]): void;
  /** Where a job is in the cluster: unknown, queued, or held by a server. */
  lookup(handle: number): Promise<"unknown" | "queued" | "held">;
  /**
   * Cancel a job of the shared queue that no server holds (deleted at
   * once); a job a server holds can only be cancelled there: `heldBy` names
   * that server.
   */
  cancel(handle: number): Promise<{ state: "cancelled" | "unknown" | "held"; heldBy?: string }>;
  /** The handle and state of the job with this unique id in any function, if any. */
  lookupUnique(unique: Uint8Array): Promise<{ handle: number; held: boolean } | undefined>;
  /** Called when jobs of a function may be waiting (another server queued them, or a server died). */
  onAvailable: ((fn: string) => void) | undefined;
  /**
   * Whether this server surely holds its lease (recent heartbeat). While it
   * does not, it hands out no jobs: another server may be taking them over.
   */
  readonly leaseHeld: boolean;
  /** Called when this server lost its lease: the jobs it held are no longer its own. */
  onLeaseLost: (() => void) | undefined;
  /** Cluster-wide figures by function, refreshed in the background (at most a second old while asked for). */
  depth(): ReadonlyMap<string, ClusterDepth>;
  /** The servers of the cluster, refreshed like {@link ClusterQueue.depth}. */
  servers(): readonly ClusterServer[];
  /**
   * Before answering with {@link ClusterQueue.depth} and
   * {@link ClusterQueue.servers}: `undefined` when they are current (the
   * background refresh keeps them so while they are asked for), else a
   * promise that settles once they are refreshed (or the refresh failed:
   * the old figures stand).
   */
  currentFigures(): Promise<void> | undefined;
  /**
   * The jobs of the shared queue that other servers hold or no server
   * holds yet (this server lists its own from memory), in handle order;
   * only those with a run-at time if `scheduledOnly`.
   */
  otherJobs(scheduledOnly: boolean): Promise<ClusterJob[]>;
}

/**
 * `answer()`, once a cluster's figures are current (see
 * {@link ClusterQueue.currentFigures}); at once without a cluster.
 *
 * @param cluster The store's cluster, if any.
 * @param answer Builds the answer from the figures.
 * @returns The answer, or a promise of it.
 */
export function withCurrentFigures<T>(
  cluster: ClusterQueue | undefined,
  answer: () => T,
): T | Promise<T> {
  const refreshed = cluster?.currentFigures();
  return refreshed === undefined ? answer() : refreshed.then(answer);
}
