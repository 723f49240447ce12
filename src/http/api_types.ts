/**
 * The JSON the server's HTTP endpoint (`--http`) returns: `/api/status`,
 * `/api/workers`, `/api/jobs`, `/api/history` and the state-changing
 * `POST` endpoints. The same facts the admin text protocol gives, typed.
 *
 * Names of functions, unique ids and handles are bytes on the wire. In
 * JSON they are text: the bytes decoded as UTF-8 when they are valid UTF-8,
 * else with each stray byte shown as `\xNN`. Where an exact name matters
 * (to put it in a URL), `urlName` has the bytes percent-encoded.
 *
 * @example Read the status
 * ```ts ignore
 * import type { ApiStatus } from "@x/gearman/server";
 * const status: ApiStatus = await (await fetch("http://127.0.0.1:8080/api/status")).json();
 * for (const f of status.functions) console.log(f.name, f.queued.normal, f.running, f.workers);
 * ```
 *
 * @module
 */

/**
 * A count for each job priority.
 *
 * @example
 * ```ts
 * import type { ApiByPriority } from "@x/gearman/server";
 * const queued: ApiByPriority = { high: 0, normal: 12, low: 3 };
 * console.assert(queued.normal === 12);
 * ```
 */
export interface ApiByPriority {
  /** SUBMIT_JOB_HIGH, SUBMIT_JOB_HIGH_BG. */
  high: number;
  /** SUBMIT_JOB, SUBMIT_JOB_BG, and scheduled jobs (EPOCH, SCHED) once due. */
  normal: number;
  /** SUBMIT_JOB_LOW, SUBMIT_JOB_LOW_BG. */
  low: number;
}

/**
 * A latency distribution (queue wait or run time), from the server's
 * histograms (buckets: see `gearman_job_wait_seconds` in /metrics).
 *
 * @example
 * ```ts
 * import type { ApiTiming } from "@x/gearman/server";
 * const wait: ApiTiming = { count: 2, sumSeconds: 0.004, p50: 0.001, p95: 0.0025, p99: 0.0025 };
 * console.assert(wait.sumSeconds / wait.count === 0.002);
 * ```
 */
export interface ApiTiming {
  /** Jobs measured. */
  count: number;
  /** Sum of their times, in seconds (mean: `sumSeconds / count`). */
  sumSeconds: number;
  /** Median in seconds, estimated from the buckets; `null` before any job. */
  p50: number | null;
  /** 95th percentile in seconds, estimated; `null` before any job. */
  p95: number | null;
  /** 99th percentile in seconds, estimated; `null` before any job. */
  p99: number | null;
}

/**
 * Where jobs are kept.
 *
 * @example
 * ```ts
 * import type { ApiStore } from "@x/gearman/server";
 * const store: ApiStore = { description: "memory", durable: false, open: true };
 * console.assert(!store.durable);
 * ```
 */
export interface ApiStore {
  /** `memory` or `sqlite:PATH`. */
  description: string;
  /** Whether background jobs survive a restart. */
  durable: boolean;
  /** Whether the store is open (it closes when the server stops). */
  open: boolean;
}

/**
 * The server itself.
 *
 * @example
 * ```ts
 * import type { ApiServer } from "@x/gearman/server";
 * const s: Pick<ApiServer, "ready" | "draining"> = { ready: true, draining: false };
 * console.assert(s.ready);
 * ```
 */
export interface ApiServer {
  /** Server version (admin `version`). */
  version: string;
  /** The Gearman port's address, `host:port`. */
  address: string;
  /** The Gloom listeners, when Gloom is on. */
  gloom: { master: string; worker: string } | null;
  /** When the server started (ISO 8601). */
  startedAt: string;
  /** Seconds since the server started. */
  uptimeSeconds: number;
  /** The server's clock when this was made, in ms since the epoch (for rates). */
  time: number;
  /** Whether it accepts new connections. */
  accepting: boolean;
  /** Whether it is shutting down (draining: running jobs finish, nothing new starts). */
  draining: boolean;
  /** What `/readyz` says: accepting, store open, not draining. */
  ready: boolean;
  /** The job store. */
  store: ApiStore;
  /** Whether the state-changing endpoints are on (`--admin-token` was given). */
  adminEnabled: boolean;
}

/**
 * Totals over all functions since the server started (functions dropped
 * since included).
 *
 * @example
 * ```ts
 * import type { ApiTotals } from "@x/gearman/server";
 * const t: Pick<ApiTotals, "submitted" | "completed"> = { submitted: 5, completed: 4 };
 * console.assert(t.submitted >= t.completed);
 * ```
 */
export interface ApiTotals {
  /** Jobs accepted (JOB_CREATED sent); coalesced submits are not new jobs. */
  submitted: number;
  /** Jobs that ended with WORK_COMPLETE. */
  completed: number;
  /** Jobs that ended with WORK_FAIL, or failed after `--job-retries` worker deaths. */
  failed: number;
  /** Jobs that ended with WORK_EXCEPTION. */
  exceptions: number;
  /** Times a job was requeued because its worker died, gave up or timed out. */
  retried: number;
  /** Jobs waiting in queues now (in memory and on disk). */
  queued: number;
  /** Jobs waiting for their run-at time, or for the store to commit them. */
  scheduled: number;
  /** Jobs workers are running now. */
  running: number;
  /** Time from submit (or requeue) to a worker taking the job. */
  wait: ApiTiming;
  /** Time from a worker taking a job to its end. */
  run: ApiTiming;
}

/**
 * Connections to the Gearman port.
 *
 * @example
 * ```ts
 * import type { ApiConnections } from "@x/gearman/server";
 * const c: Pick<ApiConnections, "clients" | "workers"> = { clients: 2, workers: 1 };
 * console.assert(c.clients + c.workers === 3);
 * ```
 */
export interface ApiConnections {
  /** Open connections (Gearman port only). */
  open: number;
  /** Connected peers that registered no function (clients, admin tools), Gloom included. */
  clients: number;
  /** Connected peers that registered at least one function, Gloom included. */
  workers: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Connections closed unserved since start (they arrived while the server was stopping). */
  refused: number;
  /** Bytes read from Gearman connections since start. */
  bytesReceived: number;
  /** Bytes written to Gearman connections since start. */
  bytesSent: number;
}

/**
 * One function, as admin `status` and `prioritystatus` show it, with its
 * counters and latencies.
 *
 * @example
 * ```ts
 * import type { ApiFunction } from "@x/gearman/server";
 * const f: Pick<ApiFunction, "name" | "urlName"> = { name: "résumé", urlName: "r%C3%A9sum%C3%A9" };
 * console.assert(decodeURIComponent(f.urlName) === f.name);
 * ```
 */
export interface ApiFunction {
  /** The name as text (see the module doc for names that are not UTF-8). */
  name: string;
  /** The exact name bytes, percent-encoded, for `/api/jobs?function=` and `/api/functions/:name/...`. */
  urlName: string;
  /** Queued + scheduled + running: admin `status`'s TOTAL column. */
  total: number;
  /** Jobs waiting in the queues, by priority (in memory and on disk). */
  queued: ApiByPriority;
  /** Of the queued jobs, those kept only in the store (beyond `--max-memory-jobs`). */
  onDisk: number;
  /** Jobs waiting for their run-at time or for a store commit. */
  scheduled: number;
  /** Jobs workers are running. */
  running: number;
  /** Connected workers that can do this function. */
  workers: number;
  /** Of those, the ones asleep (PRE_SLEEP) waiting for work. */
  idleWorkers: number;
  /** Queue limits by priority (0 = unlimited); `null`: the server default (`--max-queue`). */
  maxQueue: ApiByPriority | null;
  /** Jobs submitted since start, by priority. */
  submitted: ApiByPriority;
  /** Jobs completed since start. */
  completed: number;
  /** Jobs failed since start. */
  failed: number;
  /** Jobs ended with an exception since start. */
  exceptions: number;
  /** Requeues since start (worker died, gave up or timed out). */
  retried: number;
  /** Queue wait times. */
  wait: ApiTiming;
  /** Run times. */
  run: ApiTiming;
}

/**
 * `GET /api/status`: the server, totals, connections and every function.
 *
 * @example
 * ```ts ignore
 * import type { ApiStatus } from "@x/gearman/server";
 * const s: ApiStatus = await (await fetch("http://127.0.0.1:8080/api/status")).json();
 * console.log(s.totals.completed, s.connections.workers);
 * ```
 */
export interface ApiStatus {
  /** The server. */
  server: ApiServer;
  /** Totals. */
  totals: ApiTotals;
  /** Connections. */
  connections: ApiConnections;
  /** Functions the server knows (by CAN_DO, a submit, or admin `create function`), by name. */
  functions: ApiFunction[];
  /** The cluster this server shares a store with (`--store postgres://...`); `null` without one. */
  cluster: ApiCluster | null;
}

/**
 * The cluster of servers sharing one store, as this server sees it
 * (refreshed every heartbeat, so up to about a second old).
 *
 * @example
 * ```ts
 * import type { ApiCluster } from "@x/gearman/server";
 * const c: Pick<ApiCluster, "serverId"> = { serverId: 3 };
 * console.assert(c.serverId === 3);
 * ```
 */
export interface ApiCluster {
  /** This server's id in the cluster (new at every start). */
  serverId: number;
  /** The servers with a live heartbeat. */
  servers: { id: number; name: string; heartbeatAgeMs: number; held: number; self: boolean }[];
  /**
   * The shared queue by function: jobs no server holds yet (`queued`, and
   * by priority) and jobs some server holds (`held`: queued there or running).
   */
  functions: { name: string; queued: ApiByPriority; held: number }[];
}

/**
 * One connection, as admin `workers` lists it.
 *
 * @example
 * ```ts
 * import type { ApiConnection } from "@x/gearman/server";
 * const c: Pick<ApiConnection, "kind" | "functions"> = { kind: "worker", functions: ["resize"] };
 * console.assert(c.kind === "worker");
 * ```
 */
export interface ApiConnection {
  /** Connection id (admin `workers`' first column). */
  id: number;
  /** Peer address, `host:port`. */
  address: string;
  /** SET_CLIENT_ID, or `-`. */
  clientId: string;
  /** `worker` once it registered a function, else `client`. */
  kind: "worker" | "client";
  /** Functions it can do, most recently registered first (as gearmand lists them). */
  functions: string[];
  /** Asleep after PRE_SLEEP, waiting for a NOOP. */
  sleeping: boolean;
  /** Handles of the jobs it is running. */
  jobs: string[];
  /** Foreground jobs it waits on (as a client). */
  waitingOn: number;
}

/**
 * `GET /api/workers`: every connection (workers, clients, admin tools).
 *
 * @example
 * ```ts ignore
 * import type { ApiWorkers } from "@x/gearman/server";
 * const w: ApiWorkers = await (await fetch("http://127.0.0.1:8080/api/workers")).json();
 * console.log(w.connections.filter((c) => c.kind === "worker").length);
 * ```
 */
export interface ApiWorkers {
  /** Connections, oldest first. */
  connections: ApiConnection[];
}

/**
 * One job in memory.
 *
 * @example
 * ```ts
 * import type { ApiJob } from "@x/gearman/server";
 * const j: Pick<ApiJob, "handle" | "state"> = { handle: "H:host:4294967297", state: "queued" };
 * console.assert(j.state === "queued");
 * ```
 */
export interface ApiJob {
  /** The job handle. */
  handle: string;
  /** Function name as text. */
  function: string;
  /** Unique id as text (`""`: none). */
  unique: string;
  /** Where the job is. */
  state: "queued" | "running" | "scheduled" | "pending";
  /** Its priority. */
  priority: "high" | "normal" | "low";
  /** Submitted in the background (nobody waits for its result). */
  background: boolean;
  /** Times a worker died or gave up holding it. */
  retries: number;
  /** Connection id of the worker running it, or `null`. */
  workerId: number | null;
  /** Address of the worker running it, or `null`. */
  worker: string | null;
  /** Clients waiting for its result. */
  clients: number;
  /** Size of its data, in bytes. */
  dataBytes: number;
  /** Run-at time of a scheduled job (ISO 8601), or `null`. */
  runAt: string | null;
  /** Last WORK_STATUS of a running job, or `null`. */
  status: { numerator: string; denominator: string } | null;
  /** Seconds since it was queued (queued jobs) or taken by its worker (running jobs); `null` otherwise. */
  ageSeconds: number | null;
}

/**
 * `GET /api/jobs[?function=NAME][&limit=N]`: jobs in memory (admin `show jobs`
 * and `jobs`), in slot order.
 *
 * @example
 * ```ts ignore
 * import type { ApiJobs } from "@x/gearman/server";
 * const j: ApiJobs = await (await fetch("http://127.0.0.1:8080/api/jobs?function=resize")).json();
 * console.log(j.total, j.jobs.length, j.truncated);
 * ```
 */
export interface ApiJobs {
  /** The jobs, at most `limit` (default 1000). */
  jobs: ApiJob[];
  /** Jobs in memory that matched (may be more than listed). */
  total: number;
  /** Whether `limit` cut the list. */
  truncated: boolean;
  /** Matching queued jobs kept only in the store, not listed. */
  onDisk: number;
}

/**
 * One sample of `GET /api/history`: cumulative counters and gauges at a moment.
 *
 * @example
 * ```ts
 * import type { ApiSample } from "@x/gearman/server";
 * const a = { t: 0, completed: 10 }, b = { t: 1000, completed: 25 };
 * const perSecond = (b.completed - a.completed) / ((b.t - a.t) / 1000);
 * const s: Pick<ApiSample, "t" | "completed"> = b;
 * console.assert(perSecond === 15 && s.t === 1000);
 * ```
 */
export interface ApiSample {
  /** When, in ms since the epoch. */
  t: number;
  /** Jobs submitted since start. */
  submitted: number;
  /** Jobs completed since start. */
  completed: number;
  /** Jobs failed or ended with an exception since start. */
  failed: number;
  /** Jobs queued at that moment. */
  queued: number;
  /** Jobs running at that moment. */
  running: number;
  /** Connected workers at that moment. */
  workers: number;
  /** Jobs taken by workers since start (wait histogram count). */
  waitCount: number;
  /** Their summed queue wait, in seconds. */
  waitSumSeconds: number;
}

/**
 * `GET /api/history`: one sample a second for the last ten minutes, oldest
 * first (the dashboard's charts start from it).
 *
 * @example
 * ```ts ignore
 * import type { ApiHistory } from "@x/gearman/server";
 * const h: ApiHistory = await (await fetch("http://127.0.0.1:8080/api/history")).json();
 * console.log(h.samples.length, h.intervalMs);
 * ```
 */
export interface ApiHistory {
  /** Milliseconds between samples. */
  intervalMs: number;
  /** Samples, oldest first. */
  samples: ApiSample[];
}

/**
 * The body of every error reply (4xx, 5xx).
 *
 * @example
 * ```ts
 * import type { ApiError } from "@x/gearman/server";
 * const e: ApiError = { error: "No job has handle H:x:1" };
 * console.assert(e.error.length > 0);
 * ```
 */
export interface ApiError {
  /** What went wrong and what to do. */
  error: string;
}

/**
 * The body of a successful `POST`.
 *
 * @example
 * ```ts
 * import type { ApiOk } from "@x/gearman/server";
 * const ok: ApiOk = { ok: true, message: "Cancelled job H:x:1" };
 * console.assert(ok.ok);
 * ```
 */
export interface ApiOk {
  /** Always `true`. */
  ok: true;
  /** What was done. */
  message: string;
}
