// The Gearman job server's brain: takes packets from peers, keeps the
// functions, queues and jobs, and writes replies into peers' outboxes. It
// never touches a socket, so it can be driven by tests and by other front
// ends (Gloom) alike.

import { Magic } from "../protocol/packet.ts";
import { PacketType as T } from "../protocol/packet_type.ts";
import type { PacketWriter } from "../protocol/packet_writer.ts";
import { ProtocolError } from "../protocol/protocol_error.ts";
import {
  byteString,
  byteStringBytes,
  EMPTY,
  parseDecimal,
  startsWith,
} from "../protocol/_bytes.ts";
import { FunctionEntry } from "./function_entry.ts";
import { hasUniqueKey, UniqueIndex } from "./unique_index.ts";
import { JobState, JobTable, Priority, SPILL_BASE } from "./job_table.ts";
import { Peer, type PeerConnection } from "./peer.ts";
import type { HeldReply } from "../transport/held_replies.ts";
import { nextCronTime } from "./cron.ts";
import { FunctionMetrics } from "./job_metrics.ts";
import { coarseNow, tickClock } from "../transport/coarse_clock.ts";
import type { ClusterQueue, JobStore, StoredJob } from "./store/job_store.ts";
import { MemoryJobStore } from "./store/memory_store.ts";

const RES = Magic.RES;
/** Longest unique id accepted, in bytes (gearmand: GEARMAN_MAX_UNIQUE_SIZE - 1). */
export const MAX_UNIQUE_SIZE = 64;
/** Longest function name accepted, in bytes. */
export const MAX_FUNCTION_NAME_SIZE = 512;

/**
 * Options for {@link Dispatcher}.
 */
export interface DispatcherOptions {
  /** The host part of job handles: `H:<host>:<n>`. */
  handleHost: string;
  /**
   * Times a job may be handed to a worker that dies (or gives up) holding
   * it before it is failed; 0 = retry forever.
   * @default 0
   */
  jobRetries?: number;
  /**
   * Default queue limit per function and priority; 0 = unlimited.
   * @default 0
   */
  maxQueue?: number;
  /** Where log lines go. */
  log?: DispatcherLog;
  /** Clock in milliseconds (tests may replace it). */
  now?: () => number;
  /**
   * Where background and scheduled jobs are kept across restarts.
   * @default a MemoryJobStore (nothing kept)
   */
  store?: JobStore;
  /**
   * With a durable store: queued background jobs kept in memory; past this,
   * new ones are kept only in the store and paged in as workers drain.
   * @default 1000000
   */
  maxMemoryJobs?: number;
  /**
   * Most foreground jobs one client connection may wait on at once; past
   * it, submits get ERROR TOO_MANY_JOBS. 0 is unlimited.
   * @default 0
   */
  maxClientJobs?: number;
}

/** Jobs paged in from the store at a time. */
const PAGE_SIZE = 10_000;
/** Page in when a queue with jobs on disk has fewer than this in memory. */
const PAGE_LOW_WATER = 2_000;
/** Cluster: jobs claimed from the shared queue at a time. */
const CLAIM_BATCH = 1024;
/** Cluster: claim more while a function has fewer than this here, queued or being claimed. */
const CLAIM_LOW_WATER = 2048;
/** Cluster: claims of one function at once. */
const CLAIMS_IN_FLIGHT = 2;
/** Cluster: a new job is held here (not queued for all) while fewer than this wait here. */
const HOLD_LIMIT = 1024;
/** Cluster: how often functions with idle workers look for due jobs (scheduled, or missed wake-ups). */
const CLUSTER_POLL_MS = 500;
/**
 * Cluster: longest a GRAB is answered late while a claim of the worker's
 * functions is in flight (it may bring a job), before NO_JOB.
 */
const GRAB_WAIT_MS = 250;

/** The log calls the dispatcher makes. */
export interface DispatcherLog {
  debug(message: string, props?: Record<string, unknown>): void;
  info(message: string, props?: Record<string, unknown>): void;
  warn(message: string, props?: Record<string, unknown>): void;
  error(message: string, props?: Record<string, unknown>): void;
}

const silentLog: DispatcherLog = { debug() {}, info() {}, warn() {}, error() {} };

/** A scheduled job: its run-at time and slot/generation. */
interface Scheduled {
  at: number;
  slot: number;
  gen: number;
}

/** A GRAB answered once a claim of the worker's functions settles (see #grab). */
interface GrabWaiter {
  peer: Peer;
  type: number;
  held: HeldReply;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/** The Gearman dispatcher: every binary packet's semantics. */
export class Dispatcher {
  readonly jobs: JobTable = new JobTable();
  /** Live jobs by function and unique id (coalescing). */
  readonly #uniques: UniqueIndex = new UniqueIndex(this.jobs);
  readonly functions: Map<string, FunctionEntry> = new Map();
  readonly peers: Map<number, Peer> = new Map();
  readonly handlePrefix: Uint8Array;
  readonly startedAt: number;
  jobRetries: number;
  defaultMaxQueue: number;
  readonly log: DispatcherLog;
  readonly #now: () => number;
  #functionsById: (FunctionEntry | undefined)[] = [];
  #nextPeerId = 1;
  /** Extra clients waiting on a job beyond `jobs.client[slot]`. */
  #moreClients = new Map<number, number[]>();
  /** Last WORK_STATUS numerator and denominator by slot. */
  #status = new Map<number, [Uint8Array, Uint8Array]>();
  /** Reducers of SUBMIT_REDUCE_JOB jobs, by slot (rare, so not in the table). */
  #reducers = new Map<number, Uint8Array>();
  /** Run-at times (ms) of scheduled jobs, by slot. */
  #runAt = new Map<number, number>();
  /** Min-heap of scheduled jobs by run-at time. */
  #schedule: Scheduled[] = [];
  #scheduleTimer: ReturnType<typeof setTimeout> | undefined;
  #scheduleTimerAt = Infinity;
  /** CAN_DO_TIMEOUT timers of running jobs, by slot. */
  #jobTimers = new Map<number, ReturnType<typeof setTimeout>>();
  /** Per-function counters and histograms, kept when a function is dropped. */
  readonly metrics: Map<string, FunctionMetrics> = new Map();
  /** Counters for admin and metrics. */
  readonly stats = {
    submitted: 0,
    completed: 0,
    failed: 0,
    exceptions: 0,
    retried: 0,
  };
  #stopped = false;
  #draining = false;
  readonly store: JobStore;
  /** Submit order, kept with stored jobs for replay. */
  #seq = 1;
  /** SUBMIT_JOB_SCHED fields of scheduled jobs, by slot (stored for replay). */
  #cron = new Map<number, string>();
  /** Jobs waiting for the store commit in progress or the next one. */
  #uncommitted: number[] = [];
  /** Peers whose output waits for that commit (they were sent JOB_CREATED). */
  #corked: Peer[] = [];
  #commitScheduled = false;
  /** Commits the store is running now (at most its `maxCommitsInFlight`). */
  #commitsInFlight = 0;
  readonly #maxCommitsInFlight: number;
  readonly #maxMemoryJobs: number;
  readonly #maxClientJobs: number;
  /**
   * Slots of jobs whose handle does not encode their slot (paged in from the
   * store's overflow, or replayed past the memory limit), by handle number.
   */
  #movedSlots = new Map<number, number>();
  /** Running jobs cancelled by an admin: finished, not requeued, when their worker goes. */
  #cancelled = new Set<number>();
  /** Cluster: GRABs waiting for a claim in flight (see #grab). */
  readonly #grabWaiters = new Set<GrabWaiter>();
  /** Foreground clients waiting on jobs still only in the store, by handle number. */
  #diskWaiters = new Map<number, number[]>();
  /** The shared queue, when the store is shared by a cluster of servers. */
  readonly #cluster: ClusterQueue | undefined;
  #clusterTimer: ReturnType<typeof setInterval> | undefined;

  constructor(options: DispatcherOptions) {
    const {
      handleHost,
      jobRetries = 0,
      maxQueue = 0,
      log = silentLog,
      now = Date.now,
      store = new MemoryJobStore() as JobStore,
      maxMemoryJobs = 1_000_000,
      maxClientJobs = 0,
    } = options;
    this.#maxClientJobs = maxClientJobs;
    this.store = store;
    this.#maxMemoryJobs = maxMemoryJobs;
    this.jobs.setBoot(store.boot);
    this.handlePrefix = byteStringBytes(`H:${handleHost}:`);
    this.jobRetries = jobRetries;
    this.defaultMaxQueue = maxQueue;
    this.log = log;
    this.#now = now;
    this.startedAt = now();
    this.#maxCommitsInFlight = Math.max(1, store.maxCommitsInFlight ?? 1);
    this.#cluster = store.cluster;
    if (this.#cluster !== undefined) {
      this.#cluster.onAvailable = (fn) => this.#jobsAvailable(fn);
      this.#cluster.onLeaseLost = () => this.#dropHeld(false);
      this.#clusterTimer = setInterval(() => this.#clusterPoll(), CLUSTER_POLL_MS);
    }
  }

  // ---------------------------------------------------------------- peers

  /** Register a new connection. */
  addPeer(conn: PeerConnection): Peer {
    const peer = new Peer(this.#nextPeerId++, conn);
    this.peers.set(peer.id, peer);
    return peer;
  }

  /** A connection went away: requeue what its worker held, forget its waits. */
  removePeer(peer: Peer): void {
    if (!this.peers.delete(peer.id)) return;
    // Stop being a worker first, so requeued jobs wake someone else.
    this.#unsleep(peer);
    const functions = peer.functions;
    for (const f of functions) f.workers.delete(peer);
    peer.functions = [];
    // A worker woken for jobs it never grabbed passes the wake-up on.
    if (peer.noopSent) { for (const f of functions) if (f.ready > 0) this.#wakeOne(f); }
    if (!peer.busy && peer.diskWaits.size === 0) return;
    for (const slot of [...peer.jobs]) this.#workerLost(peer, slot, "disconnected");
    for (const slot of [...peer.waiting]) this.#dropClient(slot, peer);
    for (const handle of peer.diskWaits) {
      const list = this.#diskWaiters.get(handle);
      if (list === undefined) continue;
      const rest = list.filter((id) => id !== peer.id);
      if (rest.length > 0) this.#diskWaiters.set(handle, rest);
      else this.#diskWaiters.delete(handle);
    }
  }

  /** Whether {@link drain} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Jobs that workers are running now. */
  get runningCount(): number {
    let n = 0;
    for (const f of this.functions.values()) n += f.running;
    return n;
  }

  /**
   * Stop handing out jobs and taking new ones, for a graceful shutdown.
   * Queued foreground jobs will not run: their clients get WORK_FAIL now,
   * so they can submit elsewhere. Running jobs finish as usual. Background
   * jobs stay queued (in the store, when it is durable). Returns how many
   * background jobs are left queued.
   */
  drain(): number {
    if (this.#draining) return 0;
    this.#draining = true;
    // GRABs waiting for a claim: nothing more is handed out.
    for (const waiter of [...this.#grabWaiters]) this.#answerGrab(waiter);
    const jobs = this.jobs;
    let background = 0;
    for (const slot of [...jobs.slots()]) {
      const state = jobs.state[slot];
      if (state === JobState.RUNNING) continue;
      if (jobs.background[slot] === 1) {
        background++;
        // Foreground clients that joined it will not see it run: tell them now.
        const clients = this.clientsOf(slot);
        if (clients.length > 0) {
          this.#relayFail(slot);
          for (const c of clients) this.#dropClient(slot, c);
        }
        continue;
      }
      this.#relayFail(slot);
      this.#finish(slot);
    }
    return background;
  }

  /** Drain timed out: clients of jobs still running get WORK_FAIL (the jobs stay stored, if durable). */
  failRunning(): void {
    const jobs = this.jobs;
    for (const slot of [...jobs.slots()]) {
      if (jobs.state[slot] !== JobState.RUNNING) continue;
      this.#relayFail(slot);
      for (const c of this.clientsOf(slot)) this.#dropClient(slot, c);
    }
  }

  /** Stop timers; the dispatcher is not used after this. */
  stop(): void {
    this.#stopped = true;
    for (const waiter of [...this.#grabWaiters]) this.#answerGrab(waiter);
    clearInterval(this.#clusterTimer);
    clearTimeout(this.#scheduleTimer);
    for (const t of this.#jobTimers.values()) clearTimeout(t);
    this.#jobTimers.clear();
  }

  // -------------------------------------------------------------- helpers

  /** The function named by `name` (a byte string), created on first use. */
  functionEntry(name: string): FunctionEntry {
    let f = this.functions.get(name);
    if (f === undefined) {
      const id = this.#functionsById.length;
      let metrics = this.metrics.get(name);
      if (metrics === undefined) this.metrics.set(name, metrics = new FunctionMetrics());
      f = new FunctionEntry(id, name, metrics);
      this.#functionsById.push(f);
      this.functions.set(name, f);
    }
    return f;
  }

  /** The function with this id. */
  functionById(id: number): FunctionEntry {
    return this.#functionsById[id]!;
  }

  /** Forget a function with no jobs and no workers; false if it has either. */
  dropFunction(name: string): boolean {
    const f = this.functions.get(name);
    if (f === undefined || f.total > 0 || f.workers.size > 0) return false;
    this.functions.delete(name);
    f.dropped = true;
    this.#functionsById[f.id] = undefined;
    return true;
  }

  /** Write a job's handle into a packet being built. */
  writeHandle(w: PacketWriter, slot: number): PacketWriter {
    return w.bytes(this.handlePrefix).decimal(this.jobs.handleNumber(slot));
  }

  /** A job's handle as a byte string. */
  handleString(slot: number): string {
    return byteString(this.handlePrefix) + String(this.jobs.handleNumber(slot));
  }

  /** The live slot a handle names, or 0. */
  slotOfHandle(handle: Uint8Array): number {
    const n = this.handleNumberOf(handle);
    if (this.#movedSlots.size > 0) {
      const moved = this.#movedSlots.get(n);
      if (moved !== undefined) return moved;
    }
    return n >= SPILL_BASE ? 0 : this.jobs.slotOf(n);
  }

  /** The number in a handle of this server (`H:host:N`), or -1. */
  handleNumberOf(handle: Uint8Array): number {
    const prefix = this.handlePrefix;
    if (!startsWith(handle, 0, prefix)) return -1;
    return parseDecimal(handle, prefix.length, handle.length);
  }

  /** A job kept only in the store (overflow), by handle, if any. */
  storedOnly(handle: Uint8Array): StoredJob | undefined {
    if (!this.store.durable) return undefined;
    const n = this.handleNumberOf(handle);
    if (n < 0 || this.#movedSlots.has(n) || (n < SPILL_BASE && this.jobs.slotOf(n) !== 0)) {
      return undefined;
    }
    this.#commitNow();
    return this.store.findByHandle(n);
  }

  /**
   * Cancel a job of the cluster's shared queue (a handle this server does
   * not have). Undefined when not in a cluster or not a handle of ours.
   */
  cancelInCluster(
    handle: Uint8Array,
  ): Promise<{ state: "cancelled" | "unknown" | "held"; heldBy?: string }> | undefined {
    const n = this.handleNumberOf(handle);
    return this.#cluster === undefined || n < 0 ? undefined : this.#cluster.cancel(n);
  }

  /** Cancel a job kept only in the store; false if there is none. */
  cancelStored(handle: Uint8Array): boolean {
    const j = this.storedOnly(handle);
    if (j === undefined) return false;
    const f = this.functionEntry(j.function);
    f.spilled[j.priority]!--;
    this.#storeWrite(() => this.store.remove(j.handle, 0));
    return true;
  }

  /** Peers waiting on a job (ids whose peer is still connected). */
  clientsOf(slot: number): Peer[] {
    const out: Peer[] = [];
    const first = this.jobs.client[slot]!;
    if (first !== 0) {
      const p = this.peers.get(first);
      if (p) out.push(p);
    }
    const more = this.#moreClients.get(slot);
    if (more) {
      for (const id of more) {
        const p = this.peers.get(id);
        if (p) out.push(p);
      }
    }
    return out;
  }

  /** Last status a worker reported for a job. */
  statusOf(slot: number): [Uint8Array, Uint8Array] | undefined {
    return this.#status.get(slot);
  }

  /** Run-at time (ms) of a scheduled job. */
  runAtOf(slot: number): number | undefined {
    return this.#runAt.get(slot);
  }

  #error(peer: Peer, code: string, text: string): void {
    peer.conn.out().begin(RES, T.ERROR).byteString(code).nul().text(text).end();
  }

  // ------------------------------------------------------------- dispatch

  /**
   * Handle one packet from a peer. `body` is a view valid only during the
   * call. Throws `ProtocolError` when the connection must be closed; the
   * caller sends the error to the peer.
   */
  packet(peer: Peer, type: number, body: Uint8Array, magic: number = Magic.REQ): void {
    if (magic !== Magic.REQ && type >= 1 && type <= 42) {
      this.#error(peer, "INVALID_MAGIC", "Request magic expected");
      return;
    }
    switch (type) {
      case T.SUBMIT_JOB:
        return this.#submit(peer, body, Priority.NORMAL, false, 0);
      case T.SUBMIT_JOB_BG:
        return this.#submit(peer, body, Priority.NORMAL, true, 0);
      case T.SUBMIT_JOB_HIGH:
        return this.#submit(peer, body, Priority.HIGH, false, 0);
      case T.SUBMIT_JOB_HIGH_BG:
        return this.#submit(peer, body, Priority.HIGH, true, 0);
      case T.SUBMIT_JOB_LOW:
        return this.#submit(peer, body, Priority.LOW, false, 0);
      case T.SUBMIT_JOB_LOW_BG:
        return this.#submit(peer, body, Priority.LOW, true, 0);
      case T.SUBMIT_JOB_EPOCH:
        return this.#submit(peer, body, Priority.NORMAL, true, 1);
      case T.SUBMIT_JOB_SCHED:
        return this.#submit(peer, body, Priority.NORMAL, true, 5);
      case T.SUBMIT_REDUCE_JOB:
        return this.#submit(peer, body, Priority.NORMAL, false, 2);
      case T.SUBMIT_REDUCE_JOB_BACKGROUND:
        return this.#submit(peer, body, Priority.NORMAL, true, 2);
      case T.GRAB_JOB:
      case T.GRAB_JOB_UNIQ:
      case T.GRAB_JOB_ALL:
        return this.#grab(peer, type);
      case T.PRE_SLEEP:
        return this.#preSleep(peer);
      case T.WORK_COMPLETE:
      case T.WORK_FAIL:
      case T.WORK_EXCEPTION:
        return this.#workDone(peer, type, body);
      case T.WORK_DATA:
      case T.WORK_WARNING:
      case T.WORK_STATUS:
        return this.#workUpdate(peer, type, body);
      case T.CAN_DO:
        return this.#canDo(peer, body, -1);
      case T.CAN_DO_TIMEOUT: {
        const nul = body.indexOf(0);
        const name = nul < 0 ? body : body.subarray(0, nul);
        const timeout = nul < 0 ? 0 : parseDecimal(body, nul + 1, body.length);
        // Milliseconds; under a second is raised to one, as gearmand does
        // (Perl's Gearman::Worker passes seconds-sized numbers).
        return this.#canDo(peer, name, timeout <= 0 ? 0 : Math.max(timeout, 1000));
      }
      case T.CANT_DO:
        return this.#cantDo(peer, byteString(body));
      case T.RESET_ABILITIES:
        for (const f of [...peer.functions]) this.#cantDo(peer, f.name);
        return;
      case T.GET_STATUS:
        return this.#getStatus(peer, body);
      case T.GET_STATUS_UNIQUE:
        return this.#getStatusUnique(peer, body);
      case T.ECHO_REQ:
        peer.conn.out().begin(RES, T.ECHO_RES).bytes(body).end();
        return;
      case T.OPTION_REQ: {
        const option = byteString(body);
        if (option.toLowerCase() === "exceptions") {
          peer.exceptions = true;
          peer.conn.out().begin(RES, T.OPTION_RES).bytes(body).end();
        } else {
          this.#error(peer, "UNKNOWN_OPTION", "Server does not recognize given option");
        }
        return;
      }
      case T.SET_CLIENT_ID:
        peer.clientId = body.length > 0 ? byteString(body, 0, Math.min(body.length, 127)) : "-";
        return;
      default:
        if (type >= 1 && type <= 42) {
          this.#error(peer, "INVALID_COMMAND", "Command not expected");
          return;
        }
        throw new ProtocolError(
          "UNKNOWN_COMMAND",
          `Unknown packet type ${type}; known types are 1 to 42. Closing the connection`,
        );
    }
  }

  // ------------------------------------------------------------- workers

  #canDo(peer: Peer, name: Uint8Array, timeout: number): void {
    if (name.length === 0 || name.length > MAX_FUNCTION_NAME_SIZE) {
      this.#error(
        peer,
        "INVALID_FUNCTION_NAME",
        `Function name must be 1 to ${MAX_FUNCTION_NAME_SIZE} bytes, got ${name.length}`,
      );
      return;
    }
    const f = this.functionEntry(byteString(name));
    if (!f.workers.has(peer)) {
      f.workers.add(peer);
      peer.functions.push(f);
      if (peer.sleeping) {
        f.sleepers.add(peer);
        // Asleep already, and this function has work: wake it now.
        if (f.ready > 0 && this.#handingOut) this.#noop(peer);
      }
    }
    if (timeout >= 0) {
      if (timeout > 0) (peer.timeouts ??= new Map()).set(f.id, timeout);
      else peer.timeouts?.delete(f.id);
    }
  }

  #cantDo(peer: Peer, name: string): void {
    const f = this.functions.get(name);
    if (f === undefined || !f.workers.delete(peer)) return;
    f.sleepers.delete(peer);
    peer.functions = peer.functions.filter((x) => x !== f);
    peer.timeouts?.delete(f.id);
    if (peer.noopSent && f.ready > 0) this.#wakeOne(f);
    // A worker that can no longer do a function gives its jobs back.
    for (const slot of [...peer.jobs]) {
      if (this.jobs.fn[slot] === f.id) this.#workerLost(peer, slot, "sent CANT_DO for");
    }
  }

  #preSleep(peer: Peer): void {
    for (const f of this.#handingOut ? peer.functions : []) {
      if (f.ready > 0) {
        this.#noop(peer);
        return;
      }
    }
    if (peer.sleeping) return;
    peer.sleeping = true;
    peer.noopSent = false;
    for (const f of peer.functions) f.sleepers.add(peer);
  }

  #unsleep(peer: Peer): void {
    if (!peer.sleeping) return;
    peer.sleeping = false;
    for (const f of peer.functions) f.sleepers.delete(peer);
  }

  /**
   * Whether workers may be given jobs: not while draining, nor in a cluster
   * while this server's lease is in doubt (no recent heartbeat: the others
   * may be taking its jobs over).
   */
  get #handingOut(): boolean {
    return !this.#draining && !this.#stopped &&
      (this.#cluster === undefined || this.#cluster.leaseHeld);
  }

  #noop(peer: Peer): void {
    this.#unsleep(peer);
    peer.noopSent = true;
    peer.conn.out().begin(RES, T.NOOP).end();
  }

  /**
   * Wake one sleeping worker of `f`, if any. One, not all (gearmand wakes
   * every sleeper, and all but one then get NO_JOB): a woken worker that
   * takes another job, leaves, or drops the function passes the wake-up on.
   */
  #wakeOne(f: FunctionEntry): void {
    if (f.sleepers.size === 0 || !this.#handingOut) return;
    for (const w of f.sleepers) {
      this.#noop(w);
      return;
    }
  }

  /**
   * GRAB_JOB (and _UNIQ, _ALL): the best job for this worker, or NO_JOB.
   * In a cluster, with nothing here but a claim of the worker's functions
   * in flight, the answer waits for the claim (its place in the output
   * kept), as a worker that registers and grabs right after a submit gets
   * the job from gearmand. `w`: where to answer (a held reply's place).
   */
  #grab(peer: Peer, type: number, w?: PacketWriter): void {
    this.#unsleep(peer);
    peer.noopSent = false;
    if (!this.#handingOut) {
      (w ?? peer.conn.out()).begin(RES, T.NO_JOB).end();
      return;
    }
    const jobs = this.jobs;
    const fns = peer.functions;
    // Priority first, across all the worker's functions (the protocol: HIGH
    // jobs "always take precedence"); within a priority, the most recently
    // registered function first, as gearmand orders functions.
    for (let p = 0; p < 3; p++) {
      for (let i = fns.length - 1; i >= 0; i--) {
        const f = fns[i]!;
        const q = f.queues[p]!;
        if (f.spilled[p]! > 0 && q.length < PAGE_LOW_WATER) this.#pageIn(f, p);
        else if (this.#cluster !== undefined && p === 0) {
          // Jobs may have come due in the shared queue (scheduled ones come
          // due without a notification): a worker that grabs without
          // sleeping looks, at most every CLUSTER_POLL_MS.
          if (!f.remote && coarseNow() - f.claimedAt >= CLUSTER_POLL_MS) f.remote = true;
          this.#claimSoon(f);
        }
        const slot = q.shift(jobs);
        if (slot === 0) continue;
        this.#assign(peer, f, slot, type, w);
        // Others may have been woken for jobs this worker did not take.
        for (const g of fns) if (g.ready > 0) this.#wakeOne(g);
        return;
      }
    }
    if (w === undefined && this.#cluster !== undefined && fns.some((f) => f.claims > 0)) {
      const held = peer.conn.holdReply();
      const waiter: GrabWaiter = { peer, type, held, timer: undefined };
      waiter.timer = setTimeout(() => this.#answerGrab(waiter), GRAB_WAIT_MS);
      this.#grabWaiters.add(waiter);
      return;
    }
    (w ?? peer.conn.out()).begin(RES, T.NO_JOB).end();
  }

  /** Answer a GRAB that waited for a claim: a job if one came, else NO_JOB. */
  #answerGrab(waiter: GrabWaiter): void {
    if (!this.#grabWaiters.delete(waiter)) return;
    clearTimeout(waiter.timer);
    const { peer, type, held } = waiter;
    if (this.peers.get(peer.id) === peer && !peer.conn.closed) this.#grab(peer, type, held.out);
    peer.conn.releaseReply(held);
  }

  /** A claim settled: answer the GRABs it may concern (those with no claim left in flight). */
  #claimSettled(): void {
    for (const waiter of this.#grabWaiters) {
      const fns = waiter.peer.functions;
      if (fns.every((f) => f.claims === 0) || fns.some((f) => f.ready > 0)) {
        this.#answerGrab(waiter);
      }
    }
  }

  #assign(peer: Peer, f: FunctionEntry, slot: number, type: number, out?: PacketWriter): void {
    const jobs = this.jobs;
    jobs.state[slot] = JobState.RUNNING;
    jobs.worker[slot] = peer.id;
    peer.holdJob(slot);
    f.running++;
    const now = coarseNow();
    f.metrics.wait.observe((now - jobs.stamp[slot]!) / 1000);
    jobs.stamp[slot] = now;
    const w = out ?? peer.conn.out();
    const unique = jobs.unique(slot);
    const data = jobs.data(slot);
    const reducer = type === T.GRAB_JOB_ALL ? this.#reducers.get(slot) : undefined;
    if (reducer !== undefined) {
      this.writeHandle(w.begin(RES, T.JOB_ASSIGN_ALL), slot).nul().bytes(f.nameBytes).nul()
        .bytes(unique).nul().bytes(reducer).nul().bytes(data).end();
    } else if (type === T.GRAB_JOB) {
      this.writeHandle(w.begin(RES, T.JOB_ASSIGN), slot).nul().bytes(f.nameBytes).nul().bytes(data)
        .end();
    } else {
      this.writeHandle(w.begin(RES, T.JOB_ASSIGN_UNIQ), slot).nul().bytes(f.nameBytes).nul()
        .bytes(unique).nul().bytes(data).end();
    }
    const timeout = peer.timeouts?.get(f.id);
    if (timeout !== undefined && !this.#stopped) {
      const gen = jobs.gen[slot]!;
      this.#jobTimers.set(
        slot,
        setTimeout(() => this.#timedOut(peer, slot, gen, timeout), timeout),
      );
    }
  }

  #timedOut(peer: Peer, slot: number, gen: number, timeout: number): void {
    tickClock();
    this.#jobTimers.delete(slot);
    const jobs = this.jobs;
    if (jobs.gen[slot] !== gen || jobs.worker[slot] !== peer.id) return;
    this.log.warn(
      "Job {handle} of {function} ran past its worker's CAN_DO_TIMEOUT of {timeout} ms; taking it back",
      {
        handle: this.handleString(slot),
        function: this.functionById(jobs.fn[slot]!).name,
        timeout,
      },
    );
    this.#workerLost(peer, slot, "timed out on");
  }

  /** A worker died or gave up holding a job: requeue it, or fail it past the retry limit. */
  #workerLost(peer: Peer, slot: number, why: string): void {
    const jobs = this.jobs;
    if (this.#cancelled.has(slot)) {
      this.#finish(slot);
      return;
    }
    if (this.#draining) {
      // Nothing will run it again before the server stops: its clients hear
      // now; a background job stays queued (in the store, when durable).
      if (jobs.background[slot] === 0) {
        this.#relayFail(slot);
        this.#finish(slot);
        return;
      }
      const clients = this.clientsOf(slot);
      if (clients.length > 0) {
        this.#relayFail(slot);
        for (const c of clients) this.#dropClient(slot, c);
      }
    }
    const f = this.functionById(jobs.fn[slot]!);
    const retries = ++jobs.retries[slot]!;
    if (this.jobRetries > 0 && retries >= this.jobRetries) {
      this.log.warn(
        "Job {handle} of {function} failed: its worker {why} it {retries} times (--job-retries {limit}); kept as a dead letter (admin: show dead)",
        { handle: this.handleString(slot), function: f.name, why, retries, limit: this.jobRetries },
      );
      this.store.addDeadLetter({
        handle: jobs.handleNumber(slot),
        function: f.name,
        unique: jobs.unique(slot).slice(),
        data: jobs.data(slot).slice(),
        priority: jobs.priority[slot]!,
        retries,
        failedAt: this.#now(),
        reason: `worker ${why} it`,
      });
      if (this.store.durable) this.#scheduleCommit();
      this.#relayFail(slot);
      this.#ended(slot, f);
      f.metrics.failed++;
      this.#finish(slot);
      this.stats.failed++;
      return;
    }
    if (jobs.background[slot] === 1) {
      this.#storeWrite(() =>
        this.store.setRetries(jobs.handleNumber(slot), retries, jobs.storeRef[slot]!)
      );
    }
    peer.dropJob(slot);
    this.#clearJobTimer(slot);
    f.running--;
    jobs.worker[slot] = 0;
    jobs.state[slot] = JobState.QUEUED;
    this.#status.delete(slot);
    // Back of its queue, as gearmand does: a job that kills workers does not
    // block the ones behind it.
    f.queues[jobs.priority[slot]!]!.push(jobs, slot);
    jobs.stamp[slot] = coarseNow();
    this.stats.retried++;
    f.metrics.retried++;
    this.#wakeOne(f);
  }

  #clearJobTimer(slot: number): void {
    const timer = this.#jobTimers.get(slot);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#jobTimers.delete(slot);
  }

  #relayException(slot: number, body: Uint8Array): void {
    for (const c of this.clientsOf(slot)) {
      if (c.exceptions) c.conn.out().begin(RES, T.WORK_EXCEPTION).bytes(body).end();
      else this.writeHandle(c.conn.out().begin(RES, T.WORK_FAIL), slot).end();
    }
  }

  #relayFail(slot: number): void {
    for (const c of this.clientsOf(slot)) {
      this.writeHandle(c.conn.out().begin(RES, T.WORK_FAIL), slot).end();
    }
  }

  /** The job `handle` names if this worker holds it; else an ERROR (gearmand's text) and 0. */
  #jobOfWorker(peer: Peer, handle: Uint8Array, type: number): number {
    const slot = this.slotOfHandle(handle);
    if (slot === 0 || this.jobs.worker[slot] !== peer.id) {
      this.#error(
        peer,
        "JOB_NOT_FOUND",
        type === T.WORK_DATA || type === T.WORK_WARNING
          ? "Job does not exist on server"
          : type === T.WORK_EXCEPTION
          ? "An exception was received for a job that does not exist"
          : "Job given in work result not found",
      );
      return 0;
    }
    return slot;
  }

  #workUpdate(peer: Peer, type: number, body: Uint8Array): void {
    const nul = body.indexOf(0);
    const handle = nul < 0 ? body : body.subarray(0, nul);
    const slot = this.#jobOfWorker(peer, handle, type);
    if (slot === 0) return;
    if (type === T.WORK_STATUS) {
      const rest = nul < 0 ? EMPTY : body.subarray(nul + 1);
      const nul2 = rest.indexOf(0);
      const num = (nul2 < 0 ? rest : rest.subarray(0, nul2)).slice();
      const den = (nul2 < 0 ? EMPTY : rest.subarray(nul2 + 1)).slice();
      this.#status.set(slot, [num, den]);
    }
    this.#relay(slot, type, body, false);
  }

  /**
   * Forward a worker's packet body to every client waiting on the job. A
   * handle-and-data body that came without its NUL (Perl Gearman::Worker
   * sends WORK_COMPLETE that way for an empty result) gets one, so clients
   * can split it.
   */
  #relay(slot: number, type: number, body: Uint8Array, exceptionsOnly: boolean): void {
    const jobs = this.jobs;
    const first = jobs.client[slot]!;
    const more = this.#moreClients.get(slot);
    if (first === 0 && more === undefined) return;
    const addNul = type !== T.WORK_STATUS && body.indexOf(0) < 0;
    const p = first === 0 ? undefined : this.peers.get(first);
    if (p !== undefined && (!exceptionsOnly || p.exceptions)) {
      const w = p.conn.out().begin(RES, type).bytes(body);
      (addNul ? w.nul() : w).end();
    }
    if (more === undefined) return;
    for (const id of more) {
      const c = this.peers.get(id);
      if (c !== undefined && (!exceptionsOnly || c.exceptions)) {
        const w = c.conn.out().begin(RES, type).bytes(body);
        (addNul ? w.nul() : w).end();
      }
    }
  }

  #workDone(peer: Peer, type: number, body: Uint8Array): void {
    const nul = body.indexOf(0);
    const handle = nul < 0 ? body : body.subarray(0, nul);
    const slot = this.#jobOfWorker(peer, handle, type);
    if (slot === 0) return;
    const f = this.functionById(this.jobs.fn[slot]!);
    this.#ended(slot, f);
    if (type === T.WORK_EXCEPTION) {
      // Clients that asked for exceptions get WORK_EXCEPTION; the others
      // WORK_FAIL, as gearmand does.
      this.#relayException(slot, body);
      this.stats.exceptions++;
      f.metrics.exceptions++;
    } else if (type === T.WORK_FAIL) {
      this.#relayFail(slot);
      this.stats.failed++;
      f.metrics.failed++;
    } else {
      this.#relay(slot, type, body, false);
      this.stats.completed++;
      f.metrics.completed++;
    }
    this.#finish(slot);
  }

  /** A running job ended: record how long it ran. */
  #ended(slot: number, f: FunctionEntry): void {
    if (this.jobs.state[slot] === JobState.RUNNING) {
      f.metrics.run.observe((coarseNow() - this.jobs.stamp[slot]!) / 1000);
    }
  }

  /** Take a job's unique id out of its function's coalescing index. */
  #forgetUnique(slot: number): void {
    const jobs = this.jobs;
    if (jobs.uniqueLen[slot] === 0) return;
    this.#uniques.delete(slot);
  }

  /** Remove a running or queued job for good. */
  #finish(slot: number): void {
    const jobs = this.jobs;
    const f = this.functionById(jobs.fn[slot]!);
    const state = jobs.state[slot];
    if (state === JobState.RUNNING) {
      f.running--;
      this.peers.get(jobs.worker[slot]!)?.dropJob(slot);
      this.#clearJobTimer(slot);
    } else if (state === JobState.QUEUED) {
      f.queues[jobs.priority[slot]!]!.remove(jobs, slot);
    } else if (state === JobState.SCHEDULED) {
      f.scheduled--;
      this.#runAt.delete(slot);
    } else if (state === JobState.PENDING) {
      f.scheduled--;
      this.#runAt.delete(slot);
    }
    if (jobs.background[slot] === 1) {
      this.#storeWrite(() => this.store.remove(jobs.handleNumber(slot), jobs.storeRef[slot]!));
    }
    this.#cron.delete(slot);
    this.#forgetUnique(slot);
    const first = jobs.client[slot]!;
    if (first !== 0) this.peers.get(first)?.stopWaiting(slot);
    const more = this.#moreClients.get(slot);
    if (more !== undefined) {
      for (const id of more) this.peers.get(id)?.stopWaiting(slot);
      this.#moreClients.delete(slot);
    }
    this.#status.delete(slot);
    this.#reducers.delete(slot);
    this.#cancelled.delete(slot);
    if (this.#movedSlots.size > 0) this.#movedSlots.delete(jobs.handleNumber(slot));
    jobs.free(slot);
  }

  /**
   * Cancel a job (admin `cancel job`): its clients get WORK_FAIL. A queued
   * or scheduled job is removed; a running one is detached from its clients
   * and its result, when it comes, goes nowhere.
   */
  cancel(slot: number): void {
    this.#relayFail(slot);
    if (this.jobs.state[slot] !== JobState.RUNNING) {
      this.#finish(slot);
      return;
    }
    for (const c of this.clientsOf(slot)) this.#dropClient(slot, c);
    this.#forgetUnique(slot);
    // Gone for good: out of the store now, and not requeued if its worker leaves.
    if (this.jobs.background[slot] === 1) {
      this.#storeWrite(() =>
        this.store.remove(this.jobs.handleNumber(slot), this.jobs.storeRef[slot]!)
      );
    }
    this.jobs.background[slot] = 0;
    this.#cancelled.add(slot);
  }

  // ------------------------------------------------------------- clients

  /** `peer` stops waiting on a job. */
  #dropClient(slot: number, peer: Peer): void {
    const jobs = this.jobs;
    const peerId = peer.id;
    peer.stopWaiting(slot);
    if (jobs.client[slot] === peerId) {
      const more = this.#moreClients.get(slot);
      const next = more?.shift() ?? 0;
      if (more !== undefined && more.length === 0) this.#moreClients.delete(slot);
      jobs.client[slot] = next;
    } else {
      const more = this.#moreClients.get(slot);
      if (more !== undefined) {
        const i = more.indexOf(peerId);
        if (i >= 0) more.splice(i, 1);
        if (more.length === 0) this.#moreClients.delete(slot);
      }
    }
    // A foreground job nobody waits for any more is not worth running.
    if (
      jobs.client[slot] === 0 && jobs.background[slot] === 0 &&
      jobs.state[slot] === JobState.QUEUED
    ) {
      this.#finish(slot);
    }
  }

  #submit(peer: Peer, body: Uint8Array, priority: number, background: boolean, extra: number) {
    if (this.#draining) {
      this.#error(
        peer,
        "SERVER_DRAINING",
        "The server is shutting down and takes no new jobs; submit to another server",
      );
      return;
    }
    // Arguments: function, unique, then `extra` more (epoch: 1, reduce: 2, sched: 5), then data.
    const n1 = body.indexOf(0);
    const n2 = n1 < 0 ? -1 : body.indexOf(0, n1 + 1);
    if (n2 < 0) {
      this.#error(
        peer,
        "INVALID_ARGUMENTS",
        "Cannot submit job: packet needs function name and unique id, each followed by a NUL byte",
      );
      return;
    }
    let dataStart = n2 + 1;
    let runAt = 0;
    let cronText = "";
    let reducer: Uint8Array | undefined;
    if (extra > 0) {
      const fields: [number, number][] = [];
      for (let i = 0; i < extra; i++) {
        const nul = body.indexOf(0, dataStart);
        if (nul < 0) {
          this.#error(
            peer,
            "INVALID_ARGUMENTS",
            `Cannot submit job: packet is missing ${extra - i} NUL-terminated argument(s)`,
          );
          return;
        }
        fields.push([dataStart, nul]);
        dataStart = nul + 1;
      }
      if (extra === 2 && fields[0]![1] > fields[0]![0]) {
        reducer = body.slice(fields[0]![0], fields[0]![1]);
      } else if (extra === 1) {
        const epoch = parseDecimal(body, fields[0]![0], fields[0]![1]);
        runAt = epoch > 0 ? epoch * 1000 : 0;
      } else if (extra === 5) {
        const cron = fields.map(([s, e]) => byteString(body, s, e));
        const at = nextCronTime(cron, this.#now());
        if (at === undefined) {
          this.#error(
            peer,
            "INVALID_ARGUMENTS",
            `Cannot schedule job: no time matches minute/hour/day/month/weekday "${
              cron.join(" ")
            }"`,
          );
          return;
        }
        runAt = at;
        cronText = cron.join(" ");
      }
    }
    if (n1 === 0 || n1 > MAX_FUNCTION_NAME_SIZE) {
      this.#error(
        peer,
        "INVALID_FUNCTION_NAME",
        `Cannot submit job: function name must be 1 to ${MAX_FUNCTION_NAME_SIZE} bytes, got ${n1}`,
      );
      return;
    }
    const uniqueLen = n2 - n1 - 1;
    if (uniqueLen > MAX_UNIQUE_SIZE) {
      this.#error(peer, "ARGUMENT_TOO_LARGE", "Unique value too large");
      return;
    }
    // Function lookup, skipping the decode when it is the same as last time.
    let f = peer.lastFn;
    if (
      f === undefined || f.dropped || f.nameBytes.length !== n1 || !startsWith(body, 0, f.nameBytes)
    ) {
      f = this.functionEntry(byteString(body, 0, n1));
      peer.lastFn = f;
    }
    const unique = body.subarray(n1 + 1, n2);
    const data = body.subarray(dataStart);
    const jobs = this.jobs;

    const keyed = uniqueLen > 0 && hasUniqueKey(unique, data);
    if (keyed) {
      let existing: number | undefined = this.#uniques.get(f.id, unique, data) || undefined;
      if (existing === undefined && f.spilled[0] + f.spilled[1] + f.spilled[2] > 0) {
        const j = this.store.findByUnique(f.name, unique, data);
        if (j !== undefined) {
          const inMemory = this.#movedSlots.get(j.handle) ??
            (j.handle < SPILL_BASE ? this.jobs.slotOf(j.handle) : 0);
          if (inMemory !== 0) existing = inMemory;
          else {
            // Still on disk: it keeps its place in the queue; a foreground
            // submitter is attached when it is paged in.
            if (!background) {
              const list = this.#diskWaiters.get(j.handle);
              if (list === undefined) this.#diskWaiters.set(j.handle, [peer.id]);
              else if (!list.includes(peer.id)) list.push(peer.id);
              peer.waitOnStored(j.handle);
            }
            if (this.store.pending) this.#cork(peer);
            peer.conn.out().begin(RES, T.JOB_CREATED).bytes(this.handlePrefix).decimal(j.handle)
              .end();
            return;
          }
        }
      }
      if (existing !== undefined) {
        // A background submit keeps the job alive even if its foreground
        // clients leave, and makes it durable.
        if (background && jobs.background[existing] === 0) {
          jobs.background[existing] = 1;
          this.#storeWrite(() => jobs.storeRef[existing] = this.store.add(this.#stored(existing)));
          if (this.store.durable) this.#cork(peer);
        } else if (!background) this.#addClient(existing, peer);
        if (jobs.state[existing] === JobState.PENDING) this.#cork(peer);
        this.writeHandle(peer.conn.out().begin(RES, T.JOB_CREATED), existing).end();
        return;
      }
    }

    if (!background && this.#maxClientJobs > 0 && peer.waiting.size >= this.#maxClientJobs) {
      this.#error(
        peer,
        "TOO_MANY_JOBS",
        `This connection already waits on ${peer.waiting.size} jobs, the most allowed (--max-client-jobs); wait for some to finish`,
      );
      this.log.warn("Refused a job from {remote}: it already waits on {count} jobs", {
        remote: peer.conn.remote,
        count: peer.waiting.size,
      });
      return;
    }
    const limit = f.maxQueue?.[priority] ?? this.defaultMaxQueue;
    // In a cluster the shared queue's jobs no server holds count too, as of
    // its last refresh (at most about a second old).
    if (
      limit > 0 &&
      f.total + (this.#cluster?.depth().get(f.name)?.queued ?? 0) >= limit
    ) {
      this.#error(peer, "QUEUE_ERROR", "Job queue is full");
      return;
    }

    if (background && this.#cluster !== undefined) {
      this.#clusterSubmit(peer, f, priority, unique, data, reducer, runAt, cronText, keyed);
      return;
    }
    if (
      background && this.store.durable && runAt === 0 &&
      (f.spilled[priority]! > 0 || jobs.count >= this.#maxMemoryJobs)
    ) {
      this.#spill(peer, f, priority, unique, data, reducer);
      return;
    }
    const slot = jobs.add(f.id, priority, background, unique, data);
    this.stats.submitted++;
    f.metrics.submitted[priority]!++;
    if (reducer !== undefined) this.#reducers.set(slot, reducer);
    if (keyed) this.#uniques.add(slot);
    if (!background) this.#addClient(slot, peer);
    if (runAt > 0) this.#runAt.set(slot, runAt);
    if (cronText !== "") this.#cron.set(slot, cronText);
    if (background && this.store.durable) {
      // Acknowledged means durable: the job runs, and JOB_CREATED leaves,
      // only once the store has committed it.
      jobs.state[slot] = JobState.PENDING;
      f.scheduled++;
      jobs.storeRef[slot] = this.store.add(this.#stored(slot));
      this.#uncommitted.push(slot);
      this.#cork(peer);
      this.#scheduleCommit();
      this.writeHandle(peer.conn.out().begin(RES, T.JOB_CREATED), slot).end();
      return;
    }
    this.writeHandle(peer.conn.out().begin(RES, T.JOB_CREATED), slot).end();
    this.#release(slot);
  }

  /** Put an accepted job where it can run: its queue, or the schedule. */
  #release(slot: number): void {
    const jobs = this.jobs;
    const f = this.functionById(jobs.fn[slot]!);
    const runAt = this.#runAt.get(slot) ?? 0;
    if (runAt > this.#now()) {
      jobs.state[slot] = JobState.SCHEDULED;
      f.scheduled++;
      this.#pushSchedule({ at: runAt, slot, gen: jobs.gen[slot]! });
      return;
    }
    this.#runAt.delete(slot);
    jobs.state[slot] = JobState.QUEUED;
    jobs.stamp[slot] = coarseNow();
    f.queues[jobs.priority[slot]!]!.push(jobs, slot);
    this.#wakeOne(f);
  }

  /**
   * The job at `slot` as the store keeps it. Unique and data are views of
   * the job's payload: valid until the job is freed, and a job freed before
   * the commit takes its add back (store.remove), so no copy is needed.
   */
  #stored(slot: number): StoredJob {
    const jobs = this.jobs;
    const f = this.functionById(jobs.fn[slot]!);
    return {
      handle: jobs.handleNumber(slot),
      seq: this.#seq++,
      function: f.name,
      functionBytes: f.nameBytes,
      unique: jobs.unique(slot),
      data: jobs.data(slot),
      priority: jobs.priority[slot]!,
      runAt: this.#runAt.get(slot) ?? 0,
      cron: this.#cron.get(slot) ?? "",
      retries: jobs.retries[slot]!,
      reducer: this.#reducers.get(slot) ?? EMPTY,
    };
  }

  // ------------------------------------------------------------- store

  /** Buffer a store write (durable stores only) and make sure a commit follows. */
  #storeWrite(write: () => void): void {
    if (!this.store.durable) return;
    write();
    this.#scheduleCommit();
  }

  #cork(peer: Peer): void {
    peer.conn.cork();
    this.#corked.push(peer);
    this.#scheduleCommit();
  }

  #scheduleCommit(): void {
    if (this.#commitScheduled || this.#commitsInFlight >= this.#maxCommitsInFlight) return;
    this.#commitScheduled = true;
    queueMicrotask(this.#commit);
  }

  /** Commit what the store buffered, then release the jobs and acks that waited. */
  #commit = (): void => {
    this.#commitScheduled = false;
    if (this.#commitsInFlight >= this.#maxCommitsInFlight) return;
    const slots = this.#uncommitted;
    const peers = this.#corked;
    this.#uncommitted = [];
    this.#corked = [];
    const gens = slots.map((s) => this.jobs.gen[s]!);
    let result: Promise<void> | void;
    try {
      result = this.store.commit();
    } catch (err) {
      this.#commitFailed(slots, gens, peers, err as Error);
      return;
    }
    if (result === undefined) {
      this.#committed(slots, gens, peers);
      return;
    }
    this.#commitsInFlight++;
    void result.then(
      () => this.#committed(slots, gens, peers),
      (err) => this.#commitFailed(slots, gens, peers, err as Error),
    ).finally(() => {
      this.#commitsInFlight--;
      if (this.store.pending || this.#corked.length > 0) this.#scheduleCommit();
    });
  };

  #committed(slots: number[], gens: number[], peers: Peer[]): void {
    const jobs = this.jobs;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      if (jobs.gen[slot] !== gens[i] || jobs.state[slot] !== JobState.PENDING) continue;
      this.functionById(jobs.fn[slot]!).scheduled--;
      this.#release(slot);
    }
    for (const p of peers) p.conn.uncork();
  }

  #commitFailed(slots: number[], gens: number[], peers: Peer[], err: Error): void {
    if (slots.length > 0 || peers.length > 0) {
      this.log.error(
        "{error}; {jobs} job(s) were not accepted: closing the connections of {clients} client(s) so they see no JOB_CREATED",
        { error: err.message, jobs: slots.length, clients: peers.length },
      );
    } else {
      // Only writes nobody waits for (or clients told already, e.g. unique submits).
      this.log.warn("{error}", { error: err.message });
    }
    const jobs = this.jobs;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      if (jobs.gen[slot] !== gens[i] || jobs.state[slot] !== JobState.PENDING) continue;
      jobs.background[slot] = 0; // never stored: nothing to remove
      this.#finish(slot);
    }
    for (const p of peers) p.conn.abort();
  }

  /**
   * Put stored jobs back after a restart, at the handles they had, in their
   * submit order: the first `maxMemoryJobs` in memory, the rest left in the
   * store to be paged in. Call once, before any connection.
   */
  restoreFrom(store: JobStore): number {
    const jobs = this.jobs;
    const rows: { j: StoredJob; f: FunctionEntry; slot: number }[] = [];
    let lastSeq = 0;
    // Slot handles go back to their slots first; overflow handles get slots after.
    for (const j of store.loadHead(this.#maxMemoryJobs)) {
      const f = this.functionEntry(j.function);
      const slot = j.handle < SPILL_BASE
        ? jobs.restore(j.handle, f.id, j.priority, j.unique, j.data)
        : 0;
      rows.push({ j, f, slot });
      lastSeq = Math.max(lastSeq, j.seq);
    }
    // Jobs with a run-at time come back whatever the limit, so their timers run.
    for (const j of store.loadTimed(lastSeq)) {
      const f = this.functionEntry(j.function);
      const slot = j.handle < SPILL_BASE
        ? jobs.restore(j.handle, f.id, j.priority, j.unique, j.data)
        : 0;
      rows.push({ j, f, slot });
    }
    jobs.endRestore();
    for (const row of rows) {
      const { j, f } = row;
      if (row.slot === 0) {
        row.slot = jobs.add(f.id, j.priority, true, j.unique, j.data);
        jobs.setHandle(row.slot, j.handle);
        this.#movedSlots.set(j.handle, row.slot);
      }
      this.#adopt(row.slot, f, j);
    }
    this.#seq = Math.max(this.#seq, lastSeq + 1);
    let spilled = 0;
    for (const b of store.backlog(lastSeq)) {
      const f = this.functionEntry(b.function);
      f.spilled[b.priority] = b.count;
      f.pagedUpTo[b.priority] = lastSeq;
      spilled += b.count;
    }
    if (spilled > 0) this.#seq = Math.max(this.#seq, store.maxSeq() + 1);
    return rows.length + spilled;
  }

  /** Set up a job read from the store and put it where it can run. */
  #adopt(slot: number, _f: FunctionEntry, j: StoredJob): void {
    const jobs = this.jobs;
    jobs.retries[slot] = Math.min(j.retries, 0xffff);
    jobs.storeRef[slot] = j.ref ?? 0;
    if (j.unique.length > 0) this.#uniques.add(slot);
    if (j.runAt > 0) this.#runAt.set(slot, j.runAt);
    if (j.cron !== "") this.#cron.set(slot, j.cron);
    if (j.reducer !== undefined && j.reducer.length > 0) this.#reducers.set(slot, j.reducer);
    this.#seq = Math.max(this.#seq, j.seq + 1);
    jobs.state[slot] = JobState.PENDING;
    this.#release(slot);
  }

  /** Keep a background job only in the store: memory is full, or its queue already overflows. */
  #spill(
    peer: Peer,
    f: FunctionEntry,
    priority: number,
    unique: Uint8Array,
    data: Uint8Array,
    reducer: Uint8Array | undefined,
  ): void {
    const seq = this.#seq++;
    const handle = SPILL_BASE + seq;
    if (f.spilled[priority] === 0) f.pagedUpTo[priority] = seq - 1;
    f.spilled[priority]!++;
    this.store.add(detachedJob(handle, seq, f, priority, unique, data, 0, "", reducer));
    this.stats.submitted++;
    f.metrics.submitted[priority]!++;
    this.#cork(peer);
    peer.conn.out().begin(RES, T.JOB_CREATED).bytes(this.handlePrefix).decimal(handle).end();
    this.#wakeOne(f);
  }

  /** Bring the next jobs of a queue in from the store. */
  #pageIn(f: FunctionEntry, p: number): void {
    this.#commitNow();
    const rows = this.store.page(f.name, p, f.pagedUpTo[p]!, PAGE_SIZE);
    for (const j of rows) {
      f.pagedUpTo[p] = j.seq;
      // Already in memory: paged in early for a coalescing submit, or never spilled.
      if (this.#movedSlots.has(j.handle)) continue;
      if (j.handle < SPILL_BASE && this.jobs.slotOf(j.handle) !== 0) continue;
      f.spilled[p]!--;
      this.#pageInJob(f, j);
    }
    if (rows.length === 0) f.spilled[p] = 0;
  }

  #pageInJob(f: FunctionEntry, j: StoredJob): number {
    const slot = this.jobs.add(f.id, j.priority, true, j.unique, j.data);
    this.jobs.setHandle(slot, j.handle);
    this.#movedSlots.set(j.handle, slot);
    const waiters = this.#diskWaiters.get(j.handle);
    if (waiters !== undefined) {
      this.#diskWaiters.delete(j.handle);
      for (const id of waiters) {
        const peer = this.peers.get(id);
        if (peer === undefined) continue;
        peer.stopWaitingOnStored(j.handle);
        this.#addClient(slot, peer);
      }
    }
    this.#adopt(slot, f, j);
    return slot;
  }

  /** Something was written to the store outside a job's life (e.g. a dead letter purged): commit it soon. */
  storeChanged(): void {
    if (this.store.durable && this.store.pending) this.#scheduleCommit();
  }

  /** Commit now (before reading the store), if anything is buffered. */
  #commitNow(): void {
    if (this.store.pending || this.#corked.length > 0) this.#commit();
  }

  /** Scheduled jobs (handle, function, run-at ms, unique), soonest first. */
  scheduledJobs(): { slot: number; runAt: number }[] {
    const out: { slot: number; runAt: number }[] = [];
    for (const [slot, runAt] of this.#runAt) {
      if (this.jobs.state[slot] === JobState.SCHEDULED) out.push({ slot, runAt });
    }
    return out.sort((a, b) => a.runAt - b.runAt);
  }

  /** Submit a background job from inside the server (admin: retry a dead letter); its slot, or 0 when it went to a cluster's shared queue. */
  resubmit(fnName: string, unique: Uint8Array, data: Uint8Array, priority: number): number {
    const f = this.functionEntry(fnName);
    const cluster = this.#cluster;
    if (cluster !== undefined) {
      // Into the shared queue, under a handle unique in the cluster.
      const handle = cluster.nextHandle();
      const job = detachedJob(handle, handle, f, priority, unique, data, 0, "", undefined);
      this.stats.submitted++;
      f.metrics.submitted[priority]!++;
      void cluster.enqueueUnique(job).catch(() => {}); // without a unique id: enqueue()
      this.#scheduleCommit();
      return 0;
    }
    const slot = this.jobs.add(f.id, priority, true, unique, data);
    this.stats.submitted++;
    f.metrics.submitted[priority]!++;
    if (unique.length > 0) this.#uniques.add(slot);
    this.#storeWrite(() => this.jobs.storeRef[slot] = this.store.add(this.#stored(slot)));
    this.#release(slot);
    return slot;
  }

  #addClient(slot: number, peer: Peer): void {
    const jobs = this.jobs;
    if (peer.waiting.has(slot)) return;
    peer.waitOn(slot);
    if (jobs.client[slot] === 0) {
      jobs.client[slot] = peer.id;
      return;
    }
    let more = this.#moreClients.get(slot);
    if (more === undefined) this.#moreClients.set(slot, more = []);
    more.push(peer.id);
  }

  #getStatus(peer: Peer, handle: Uint8Array): void {
    const slot = this.slotOfHandle(handle);
    if (slot === 0 && this.#cluster !== undefined) {
      const n = clusterHandleNumber(handle);
      if (n >= SPILL_BASE) {
        this.#clusterStatus(peer, handle.slice(), n);
        return;
      }
    }
    const w = peer.conn.out().begin(RES, T.STATUS_RES).bytes(handle).nul();
    if (slot === 0) {
      const onDisk = this.storedOnly(handle) !== undefined;
      w.byteString(onDisk ? "1\x000\x000\x000" : "0\x000\x000\x000").end();
      return;
    }
    const running = this.jobs.state[slot] === JobState.RUNNING;
    const st = this.#status.get(slot);
    w.byteString(running ? "1\x001\x00" : "1\x000\x00");
    if (st) w.bytes(st[0]).nul().bytes(st[1]).end();
    else w.byteString("0\x000").end();
  }

  /** The live job a submit of (unique, data) to `f` would coalesce onto, or 0. */
  uniqueSlotIn(f: FunctionEntry, unique: Uint8Array, data: Uint8Array): number {
    return this.#uniques.get(f.id, unique, data);
  }

  /** Jobs in the unique-id index (every live job with a unique key). */
  get uniqueCount(): number {
    return this.#uniques.size;
  }

  /** The live job with this unique id in any function, or 0. */
  slotOfUnique(unique: Uint8Array): number {
    if (unique.length === 0) return 0;
    for (const f of this.functions.values()) {
      // No data: a `-` unique id names nothing (its key is the job's data).
      const slot = this.#uniques.get(f.id, unique, EMPTY);
      if (slot !== 0) return slot;
    }
    return 0;
  }

  #getStatusUnique(peer: Peer, unique: Uint8Array): void {
    const slot = this.slotOfUnique(unique);
    if (slot === 0 && this.#cluster !== undefined && unique.length > 0) {
      this.#clusterStatusUnique(peer, unique.slice());
      return;
    }
    const w = peer.conn.out().begin(RES, T.STATUS_RES_UNIQUE).bytes(unique).nul();
    if (slot === 0) {
      w.byteString("0\x000\x000\x000\x000").end();
      return;
    }
    const running = this.jobs.state[slot] === JobState.RUNNING;
    const st = this.#status.get(slot);
    w.byteString(running ? "1\x001\x00" : "1\x000\x00");
    if (st) w.bytes(st[0]).nul().bytes(st[1]).nul();
    else w.byteString("0\x000\x00");
    w.decimal(this.clientsOf(slot).length).end();
  }

  // ------------------------------------------------------------ cluster

  /**
   * A background job in a cluster. Held here when this server's workers
   * will take it soon (no claim round trip); otherwise queued for every
   * server, whose workers claim it. Either way JOB_CREATED leaves after the
   * commit.
   */
  #clusterSubmit(
    peer: Peer,
    f: FunctionEntry,
    priority: number,
    unique: Uint8Array,
    data: Uint8Array,
    reducer: Uint8Array | undefined,
    runAt: number,
    cron: string,
    keyed: boolean,
  ): void {
    const cluster = this.#cluster!;
    let handle: number;
    try {
      handle = cluster.nextHandle();
    } catch (err) {
      this.#error(peer, "QUEUE_ERROR", (err as Error).message);
      return;
    }
    this.stats.submitted++;
    f.metrics.submitted[priority]!++;
    if (!keyed && runAt === 0 && f.workers.size > 0 && f.ready < HOLD_LIMIT) {
      const jobs = this.jobs;
      const slot = jobs.add(f.id, priority, true, unique, data);
      jobs.setHandle(slot, handle);
      this.#movedSlots.set(handle, slot);
      if (reducer !== undefined) this.#reducers.set(slot, reducer);
      jobs.state[slot] = JobState.PENDING;
      f.scheduled++;
      jobs.storeRef[slot] = this.store.add(this.#stored(slot));
      this.#uncommitted.push(slot);
      this.#cork(peer);
      this.writeHandle(peer.conn.out().begin(RES, T.JOB_CREATED), slot).end();
      return;
    }
    const job = detachedJob(handle, handle, f, priority, unique, data, runAt, cron, reducer);
    if (!keyed) {
      cluster.enqueue(job);
      this.#cork(peer);
      peer.conn.out().begin(RES, T.JOB_CREATED).bytes(this.handlePrefix).decimal(handle).end();
      return;
    }
    // A unique id: which job holds it in the cluster is known after the
    // commit. Its reply keeps its place: the replies to the connection's
    // next packets (often more submits, in the same commit) wait behind it.
    const conn = peer.conn;
    const reply = conn.holdReply();
    cluster.enqueueUnique(job).then((held) => {
      reply.out.begin(RES, T.JOB_CREATED).bytes(this.handlePrefix).decimal(held).end();
      conn.releaseReply(reply);
    }, (err: Error) => {
      this.log.error("{error}; closing the connection of {remote}, which sees no JOB_CREATED", {
        error: err.message,
        remote: conn.remote,
      });
      conn.abort();
    });
    this.#scheduleCommit();
  }

  /**
   * Claim jobs of `f` from the shared queue if its workers here may run
   * out: up to CLAIMS_IN_FLIGHT claims at once, so a batch arrives while
   * the workers run the one before. Two start together only once a claim
   * came back full: on a short queue they would split it between them
   * and hand its jobs out of order.
   */
  #claimSoon(f: FunctionEntry): void {
    if (!f.remote || this.#draining || this.#stopped || f.workers.size === 0) return;
    const queued = f.queues[0].length + f.queues[1].length + f.queues[2].length;
    if (f.claims >= CLAIMS_IN_FLIGHT || queued + f.claims * CLAIM_BATCH >= CLAIM_LOW_WATER) return;
    f.claims++;
    f.claimAgain = false;
    f.claimedAt = coarseNow();
    const cluster = this.#cluster!;
    const name = f.name;
    cluster.claim(name, CLAIM_BATCH).then((rows) => {
      f.claims--;
      if (this.#stopped || this.#draining) {
        if (rows.length > 0) {
          cluster.release(rows.map((j) => j.handle));
          this.#scheduleCommit();
        }
        return;
      }
      const g = this.functionEntry(name);
      for (const j of rows) this.#pageInJob(g, j);
      g.remote = rows.length >= CLAIM_BATCH || f.claimAgain;
      g.claimedFull = rows.length >= CLAIM_BATCH;
      this.#claimSoon(g);
      if (this.#grabWaiters.size > 0) this.#claimSettled();
    }, (err: Error) => {
      f.claims--;
      this.log.warn("Claiming jobs of {function} from the cluster failed: {error}; retrying soon", {
        function: name,
        error: err.message,
      });
      if (this.#grabWaiters.size > 0) this.#claimSettled();
    });
    // On a deep queue, a second claim right away, while the workers here
    // have little (on a short one it would split the queue and reorder it).
    if (f.claimedFull) this.#claimSoon(f);
  }

  /** Another server queued jobs of `fn` (or one died): claim if workers here can do it. */
  #jobsAvailable(fn: string): void {
    const f = this.functions.get(fn);
    if (f === undefined) return; // nobody here can run it
    f.remote = true;
    if (f.claims > 0) f.claimAgain = true;
    this.#claimSoon(f);
  }

  /**
   * Every CLUSTER_POLL_MS: functions with sleeping workers look for due
   * jobs (scheduled ones come due without a notification), and jobs held
   * for functions whose workers all left go back to the cluster.
   */
  #clusterPoll(): void {
    if (this.#stopped || this.#draining) return;
    for (const f of this.functions.values()) {
      if (f.workers.size === 0) {
        if (f.queues[0].length + f.queues[1].length + f.queues[2].length > 0) {
          this.#dropHeld(true, f);
        }
      } else if (f.sleepers.size > 0) {
        f.remote = true;
        this.#claimSoon(f);
        // Sleepers told NO_JOB while the lease was in doubt: wake one now.
        if (f.ready > 0) this.#wakeOne(f);
      }
    }
  }

  /**
   * Take queued cluster jobs out of memory (those no client here waits
   * on): give them back to the cluster (`release`), or just forget them
   * when the cluster already took them back (lease lost).
   */
  #dropHeld(release: boolean, only?: FunctionEntry): void {
    const jobs = this.jobs;
    const handles: number[] = [];
    for (const f of only === undefined ? this.functions.values() : [only]) {
      const drop: number[] = [];
      for (const q of f.queues) {
        const all: number[] = [];
        for (let slot = q.shift(jobs); slot !== 0; slot = q.shift(jobs)) all.push(slot);
        for (const slot of all) {
          q.push(jobs, slot);
          if (
            jobs.background[slot] === 1 && jobs.handleNumber(slot) >= SPILL_BASE &&
            jobs.client[slot] === 0 && !this.#moreClients.has(slot)
          ) drop.push(slot);
        }
      }
      for (const slot of drop) {
        handles.push(jobs.handleNumber(slot));
        jobs.background[slot] = 0; // not removed from the store: it stays queued there
        this.#finish(slot);
      }
      f.remote = true;
    }
    if (release && handles.length > 0) {
      this.#cluster!.release(handles);
      this.#scheduleCommit();
    }
    if (handles.length > 0) {
      this.log.info("Gave {count} held job(s) back to the cluster: {why}", {
        count: handles.length,
        why: release ? "no worker here can run them" : "this server's lease ended",
      });
    }
  }

  /** GET_STATUS for a job this server does not have: ask the cluster. */
  #clusterStatus(peer: Peer, handle: Uint8Array, n: number): void {
    this.#askCluster(
      peer,
      this.#cluster!.lookup(n),
      (where, w) =>
        w.begin(RES, T.STATUS_RES).bytes(handle).nul().byteString(
          where === "unknown"
            ? "0\x000\x000\x000"
            : where === "held"
            ? "1\x001\x000\x000"
            : "1\x000\x000\x000",
        ).end(),
    );
  }

  /** GET_STATUS_UNIQUE for a unique id this server does not have: ask the cluster. */
  #clusterStatusUnique(peer: Peer, unique: Uint8Array): void {
    this.#askCluster(
      peer,
      this.#cluster!.lookupUnique(unique),
      (found, w) =>
        w.begin(RES, T.STATUS_RES_UNIQUE).bytes(unique).nul().byteString(
          found === undefined
            ? "0\x000\x000\x000\x000"
            : found.held
            ? "1\x001\x000\x000\x000"
            : "1\x000\x000\x000\x000",
        ).end(),
    );
  }

  /**
   * Answer a packet from the shared store: the answer keeps its place in
   * the connection's output, so replies stay in request order.
   */
  #askCluster<T>(peer: Peer, lookup: Promise<T>, reply: (found: T, w: PacketWriter) => void) {
    const conn = peer.conn;
    const held = conn.holdReply();
    lookup.then((found) => reply(found, held.out), (err: Error) => {
      held.out.begin(RES, T.ERROR).byteString("QUEUE_ERROR").nul()
        .text(`Cannot look the job up in the cluster: ${err.message}`).end();
    }).finally(() => conn.releaseReply(held));
  }

  // ----------------------------------------------------------- schedule

  #pushSchedule(item: Scheduled): void {
    const heap = this.#schedule;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]!.at <= item.at) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = item;
    this.#armSchedule();
  }

  #popSchedule(): Scheduled | undefined {
    const heap = this.#schedule;
    const top = heap[0];
    const last = heap.pop();
    const n = heap.length;
    if (n > 0 && last !== undefined) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = -1;
        let best = last.at;
        if (l < n && heap[l]!.at < best) {
          m = l;
          best = heap[l]!.at;
        }
        if (r < n && heap[r]!.at < best) m = r;
        if (m < 0) break;
        heap[i] = heap[m]!;
        i = m;
      }
      heap[i] = last;
    }
    return top;
  }

  #armSchedule(): void {
    const next = this.#schedule[0];
    if (next === undefined || this.#stopped) return;
    if (next.at >= this.#scheduleTimerAt) return;
    clearTimeout(this.#scheduleTimer);
    this.#scheduleTimerAt = next.at;
    const delay = Math.max(0, Math.min(next.at - this.#now(), 2 ** 31 - 1));
    this.#scheduleTimer = setTimeout(this.#runSchedule, delay);
  }

  #runSchedule = (): void => {
    tickClock();
    this.#scheduleTimer = undefined;
    this.#scheduleTimerAt = Infinity;
    const now = this.#now();
    const jobs = this.jobs;
    while (this.#schedule.length > 0 && this.#schedule[0]!.at <= now) {
      const { slot, gen } = this.#popSchedule()!;
      if (jobs.gen[slot] !== gen || jobs.state[slot] !== JobState.SCHEDULED) continue;
      this.#runAt.delete(slot);
      const f = this.functionById(jobs.fn[slot]!);
      f.scheduled--;
      jobs.state[slot] = JobState.QUEUED;
      jobs.stamp[slot] = coarseNow();
      f.queues[jobs.priority[slot]!]!.push(jobs, slot);
      this.#wakeOne(f);
    }
    this.#armSchedule();
  };
}

/**
 * The coalescing key: the unique id, or the data when the unique is "-"
 * (undefined for "-" with no data: such jobs never coalesce, as in gearmand).
 */

/** The number at the end of any server's handle (`H:host:N`), or -1. */
function clusterHandleNumber(handle: Uint8Array): number {
  const colon = handle.lastIndexOf(58 /* : */);
  return colon < 0 ? -1 : parseDecimal(handle, colon + 1, handle.length);
}

/**
 * A job for the store alone (kept in no slot): unique and data are copied,
 * since the packet they came in is reused.
 */
function detachedJob(
  handle: number,
  seq: number,
  f: FunctionEntry,
  priority: number,
  unique: Uint8Array,
  data: Uint8Array,
  runAt: number,
  cron: string,
  reducer: Uint8Array | undefined,
): StoredJob {
  return {
    handle,
    seq,
    function: f.name,
    functionBytes: f.nameBytes,
    unique: unique.slice(),
    data: data.slice(),
    priority,
    runAt,
    cron,
    retries: 0,
    reducer: reducer ?? EMPTY, // already a copy (sliced when the packet was read)
  };
}
