// What the HTTP endpoint reports, computed at request time from the
// dispatcher's own state and counters: /metrics (Prometheus text) and the
// JSON of /api/status, /api/workers, /api/jobs and /api/history.

import type { Dispatcher } from "../server/dispatcher.ts";
import { JobState } from "../server/job_table.ts";
import { type Histogram, HISTOGRAM_BUCKETS } from "../server/job_metrics.ts";
import type { Traffic } from "../server/traffic.ts";
import { byteString } from "../protocol/_bytes.ts";
import { addrText } from "../transport/connection.ts";
import { displayText, percentEncode } from "./byte_text.ts";
import { ExpositionWriter } from "./exposition.ts";
import type {
  ApiByPriority,
  ApiCluster,
  ApiConnection,
  ApiFunction,
  ApiJob,
  ApiJobs,
  ApiSample,
  ApiStatus,
  ApiTiming,
  ApiWorkers,
} from "./api_types.ts";

/** What the HTTP endpoint needs to see of a running server. */
export interface ObservedServer {
  /** The server's dispatcher: functions, peers, jobs, counters. */
  readonly dispatcher: Dispatcher;
  /** Server version. */
  readonly version: string;
  /** Connection and byte counters of the Gearman port. */
  readonly traffic: Traffic;
  /** The Gearman listener's address. */
  address(): Deno.NetAddr;
  /** The Gloom listeners' addresses, when Gloom is on. */
  gloomAddrs(): { master: Deno.NetAddr; worker: Deno.NetAddr } | undefined;
  /** Open Gearman connections. */
  openConnections(): number;
  /** Bytes read from and written to Gearman connections since start. */
  bytes(): { received: number; sent: number };
  /** Whether new connections are accepted. */
  accepting(): boolean;
  /** Whether the server is shutting down. */
  draining(): boolean;
  /** Whether the job store is open. */
  storeOpen(): boolean;
}

const PRIORITIES = ["high", "normal", "low"] as const;

/** Whether the server is ready for traffic (what /readyz answers). */
export function isReady(s: ObservedServer): boolean {
  return s.accepting() && s.storeOpen() && !s.draining();
}

/**
 * Text labels for byte-string names, one per name and all different: a
 * name that is not UTF-8 could show as the same text as another name (it
 * shows stray bytes as `\xNN`, which a UTF-8 name may spell out); the
 * second one then gets ` #2` appended, so no two series collide.
 */
function labelsFor(names: Iterable<string>): Map<string, string> {
  const out = new Map<string, string>();
  const used = new Set<string>();
  for (const name of names) {
    if (out.has(name)) continue;
    let text = displayText(name);
    for (let n = 2; used.has(text); n++) text = `${displayText(name)} #${n}`;
    used.add(text);
    out.set(name, text);
  }
  return out;
}

/** Estimate a quantile from a histogram, as Prometheus' `histogram_quantile` does. */
export function quantile(h: Histogram, q: number): number | null {
  if (h.count === 0) return null;
  const rank = q * h.count;
  let cumulative = 0;
  const b = HISTOGRAM_BUCKETS;
  for (let i = 0; i < h.counts.length; i++) {
    const inBucket = h.counts[i]!;
    if (cumulative + inBucket >= rank && inBucket > 0) {
      // In the +Inf bucket: the highest finite bound is the best we know.
      if (i === b.length) return b[b.length - 1]!;
      const lower = i === 0 ? 0 : b[i - 1]!;
      const upper = b[i]!;
      return lower + (upper - lower) * ((rank - cumulative) / inBucket);
    }
    cumulative += inBucket;
  }
  return b[b.length - 1]!;
}

function timing(h: Histogram): ApiTiming {
  return {
    count: h.count,
    sumSeconds: h.sum,
    p50: quantile(h, 0.5),
    p95: quantile(h, 0.95),
    p99: quantile(h, 0.99),
  };
}

/** Add histograms' buckets together (for the totals). */
function merged(hs: Iterable<Histogram>): Histogram {
  const out = { counts: new Float64Array(HISTOGRAM_BUCKETS.length + 1), sum: 0, count: 0 };
  for (const h of hs) {
    for (let i = 0; i < out.counts.length; i++) out.counts[i]! += h.counts[i]!;
    out.sum += h.sum;
    out.count += h.count;
  }
  return out as Histogram;
}

const byPriority = (v: readonly number[]): ApiByPriority => ({
  high: v[0]!,
  normal: v[1]!,
  low: v[2]!,
});

/** `GET /api/status`. */
export function apiStatus(s: ObservedServer, adminEnabled: boolean): ApiStatus {
  const d = s.dispatcher;
  const now = Date.now();
  const labels = labelsFor(d.functions.keys());
  const functions: ApiFunction[] = [];
  let queued = 0;
  let scheduled = 0;
  let running = 0;
  for (const f of d.functions.values()) {
    const q = [0, 1, 2].map((p) => f.queues[p]!.length + f.spilled[p]!);
    queued += q[0]! + q[1]! + q[2]!;
    scheduled += f.scheduled;
    running += f.running;
    const m = f.metrics;
    functions.push({
      name: labels.get(f.name)!,
      urlName: percentEncode(f.name),
      total: f.total,
      queued: byPriority(q),
      onDisk: f.spilled[0] + f.spilled[1] + f.spilled[2],
      scheduled: f.scheduled,
      running: f.running,
      workers: f.workers.size,
      idleWorkers: f.sleepers.size,
      maxQueue: f.maxQueue === undefined ? null : byPriority(f.maxQueue),
      submitted: byPriority(m.submitted),
      completed: m.completed,
      failed: m.failed,
      exceptions: m.exceptions,
      retried: m.retried,
      wait: timing(m.wait),
      run: timing(m.run),
    });
  }
  functions.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let workers = 0;
  for (const p of d.peers.values()) if (p.isWorker) workers++;
  const all = [...d.metrics.values()];
  const gloom = s.gloomAddrs();
  const t = s.traffic;
  const bytes = s.bytes();
  return {
    server: {
      version: s.version,
      address: addrText(s.address()),
      gloom: gloom === undefined
        ? null
        : { master: addrText(gloom.master), worker: addrText(gloom.worker) },
      startedAt: new Date(d.startedAt).toISOString(),
      uptimeSeconds: (now - d.startedAt) / 1000,
      time: now,
      accepting: s.accepting(),
      draining: s.draining(),
      ready: isReady(s),
      store: { description: d.store.description, durable: d.store.durable, open: s.storeOpen() },
      adminEnabled,
    },
    totals: {
      submitted: d.stats.submitted,
      completed: d.stats.completed,
      failed: d.stats.failed,
      exceptions: d.stats.exceptions,
      retried: d.stats.retried,
      queued,
      scheduled,
      running,
      wait: timing(merged(all.map((m) => m.wait))),
      run: timing(merged(all.map((m) => m.run))),
    },
    connections: {
      open: s.openConnections(),
      clients: d.peers.size - workers,
      workers,
      accepted: t.accepted,
      refused: t.refused,
      bytesReceived: bytes.received,
      bytesSent: bytes.sent,
    },
    functions,
    cluster: apiCluster(d),
  };
}

/** The cluster section of `/api/status` (null without a shared store). */
function apiCluster(d: Dispatcher): ApiCluster | null {
  const cluster = d.store.cluster;
  if (cluster === undefined) return null;
  const depth = cluster.depth();
  const labels = labelsFor(depth.keys());
  const functions = [...depth].map(([fn, dd]) => ({
    name: labels.get(fn)!,
    queued: byPriority(dd.queuedByPriority ?? [0, dd.queued, 0]),
    held: dd.held,
  }));
  functions.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    serverId: cluster.serverId,
    servers: cluster.servers().map((s) => ({ ...s, self: s.id === cluster.serverId })),
    functions,
  };
}

/** `GET /api/workers`. */
export function apiWorkers(s: ObservedServer): ApiWorkers {
  const d = s.dispatcher;
  const connections: ApiConnection[] = [];
  for (const p of d.peers.values()) {
    const functions: string[] = [];
    for (let i = p.functions.length - 1; i >= 0; i--) {
      functions.push(displayText(p.functions[i]!.name));
    }
    connections.push({
      id: p.id,
      address: p.conn.remote,
      clientId: displayText(p.clientId),
      kind: p.isWorker ? "worker" : "client",
      functions,
      sleeping: p.sleeping,
      jobs: [...p.jobs].map((slot) => displayText(d.handleString(slot))),
      waitingOn: p.waiting.size,
    });
  }
  return { connections };
}

const STATES: Record<number, ApiJob["state"]> = {
  [JobState.QUEUED]: "queued",
  [JobState.RUNNING]: "running",
  [JobState.SCHEDULED]: "scheduled",
  [JobState.PENDING]: "pending",
};

/**
 * `GET /api/jobs`: jobs in memory, of one function (a byte string) or all.
 * Undefined when the function is unknown.
 */
export function apiJobs(
  s: ObservedServer,
  fn: string | undefined,
  limit: number,
): ApiJobs | undefined {
  const d = s.dispatcher;
  const jobs = d.jobs;
  let fnId = -1;
  let onDisk = 0;
  if (fn !== undefined) {
    const f = d.functions.get(fn);
    if (f === undefined) return undefined;
    fnId = f.id;
    onDisk = f.spilled[0] + f.spilled[1] + f.spilled[2];
  } else {
    for (const f of d.functions.values()) onDisk += f.spilled[0] + f.spilled[1] + f.spilled[2];
  }
  const out: ApiJob[] = [];
  let total = 0;
  const now = performance.now();
  for (const slot of jobs.slots()) {
    if (fnId >= 0 && jobs.fn[slot] !== fnId) continue;
    total++;
    if (out.length >= limit) continue;
    const state = STATES[jobs.state[slot]!] ?? "queued";
    const workerId = jobs.worker[slot]!;
    const worker = workerId === 0 ? undefined : d.peers.get(workerId);
    const runAt = d.runAtOf(slot);
    const st = d.statusOf(slot);
    out.push({
      handle: displayText(d.handleString(slot)),
      function: displayText(d.functionById(jobs.fn[slot]!).name),
      unique: displayText(byteString(jobs.unique(slot))),
      state,
      priority: PRIORITIES[jobs.priority[slot]!] ?? "normal",
      background: jobs.background[slot] === 1,
      retries: jobs.retries[slot]!,
      workerId: worker === undefined ? null : worker.id,
      worker: worker === undefined ? null : worker.conn.remote,
      clients: d.clientsOf(slot).length,
      dataBytes: jobs.dataLen[slot]!,
      runAt: runAt === undefined ? null : new Date(runAt).toISOString(),
      status: st === undefined ? null : {
        numerator: displayText(byteString(st[0])),
        denominator: displayText(byteString(st[1])),
      },
      ageSeconds: state === "queued" || state === "running"
        ? Math.max(0, (now - jobs.stamp[slot]!) / 1000)
        : null,
    });
  }
  return { jobs: out, total, truncated: total > out.length, onDisk };
}

/** One sample for the history ring (and the dashboard's charts). */
export function sample(s: ObservedServer): ApiSample {
  const d = s.dispatcher;
  let queued = 0;
  let running = 0;
  for (const f of d.functions.values()) {
    queued += f.ready;
    running += f.running;
  }
  let workers = 0;
  for (const p of d.peers.values()) if (p.isWorker) workers++;
  let waitCount = 0;
  let waitSum = 0;
  for (const m of d.metrics.values()) {
    waitCount += m.wait.count;
    waitSum += m.wait.sum;
  }
  return {
    t: Date.now(),
    submitted: d.stats.submitted,
    completed: d.stats.completed,
    failed: d.stats.failed + d.stats.exceptions,
    queued,
    running,
    workers,
    waitCount,
    waitSumSeconds: waitSum,
  };
}

/** `GET /metrics`: the Prometheus text exposition. */
export function metricsText(s: ObservedServer): string {
  const d = s.dispatcher;
  const t = s.traffic;
  const w = new ExpositionWriter();
  const gauge = (name: string, help: string, value: number) =>
    w.family(name, "gauge", help).sample(name, undefined, value);
  const counter = (name: string, help: string, value: number) =>
    w.family(name, "counter", help).sample(name, undefined, value);

  w.family("gearman_build_info", "gauge", "Version of this Gearman server (always 1).")
    .sample("gearman_build_info", { version: s.version }, 1);
  gauge(
    "gearman_start_time_seconds",
    "When the server started, in seconds since the epoch.",
    d.startedAt / 1000,
  );
  gauge(
    "gearman_ready",
    "1 when accepting, the store is open and not draining (/readyz).",
    +isReady(s),
  );
  gauge("gearman_draining", "1 while the server is shutting down (draining).", +s.draining());
  const store = d.store.description;
  w.family("gearman_store_info", "gauge", "The job store (always 1): backend and durability.")
    .sample("gearman_store_info", {
      backend: store.includes(":") ? store.slice(0, store.indexOf(":")) : store,
      description: store,
      durable: String(d.store.durable),
    }, 1);
  const cluster = d.store.cluster;
  if (cluster !== undefined) {
    const servers = cluster.servers();
    gauge(
      "gearman_cluster_server_id",
      "This server's id in the cluster (a shared store).",
      cluster.serverId,
    );
    gauge(
      "gearman_cluster_servers",
      "Servers of the cluster with a live heartbeat.",
      servers.length,
    );
    const depth = cluster.depth();
    const names = labelsFor([...depth.keys()]);
    w.family(
      "gearman_cluster_queued_jobs",
      "gauge",
      "Jobs in the cluster's shared queue that no server holds yet, by function (refreshed every heartbeat).",
    );
    for (const [fn, dd] of depth) {
      w.sample("gearman_cluster_queued_jobs", { function: names.get(fn)! }, dd.queued);
    }
    w.family(
      "gearman_cluster_held_jobs",
      "gauge",
      "Jobs some server of the cluster holds (queued there or running), by function.",
    );
    for (const [fn, dd] of depth) {
      w.sample("gearman_cluster_held_jobs", { function: names.get(fn)! }, dd.held);
    }
  }

  counter(
    "gearman_connections_accepted_total",
    "Connections accepted on the Gearman port.",
    t.accepted,
  );
  counter(
    "gearman_connections_refused_total",
    "Connections closed unserved (they arrived while the server was stopping).",
    t.refused,
  );
  gauge("gearman_open_connections", "Open connections on the Gearman port.", s.openConnections());
  let workers = 0;
  for (const p of d.peers.values()) if (p.isWorker) workers++;
  gauge(
    "gearman_connected_clients",
    "Connected peers that registered no function (clients, admin tools; Gloom included).",
    d.peers.size - workers,
  );
  gauge(
    "gearman_connected_workers",
    "Connected peers that registered a function (Gloom included).",
    workers,
  );
  const bytes = s.bytes();
  counter("gearman_received_bytes_total", "Bytes read from Gearman connections.", bytes.received);
  counter("gearman_sent_bytes_total", "Bytes written to Gearman connections.", bytes.sent);

  // Counters and histograms cover every function seen since start (a
  // dropped function keeps its counts); gauges the functions known now.
  const labels = labelsFor([...d.metrics.keys(), ...d.functions.keys()]);
  const counted = [...d.metrics].map(([name, m]) => ({ fn: labels.get(name)!, m }));
  const live = [...d.functions.values()].map((f) => ({ fn: labels.get(f.name)!, f }));

  w.family("gearman_jobs_submitted_total", "counter", "Jobs accepted, by function and priority.");
  for (const { fn, m } of counted) {
    for (let p = 0; p < 3; p++) {
      w.sample(
        "gearman_jobs_submitted_total",
        { function: fn, priority: PRIORITIES[p]! },
        m.submitted[p]!,
      );
    }
  }
  const perFunction = (
    name: string,
    help: string,
    value: (m: (typeof counted)[number]["m"]) => number,
  ) => {
    w.family(name, "counter", help);
    for (const { fn, m } of counted) w.sample(name, { function: fn }, value(m));
  };
  perFunction("gearman_jobs_completed_total", "Jobs ended with WORK_COMPLETE.", (m) => m.completed);
  perFunction(
    "gearman_jobs_failed_total",
    "Jobs ended with WORK_FAIL, or failed after --job-retries worker deaths.",
    (m) => m.failed,
  );
  perFunction(
    "gearman_jobs_exceptions_total",
    "Jobs ended with WORK_EXCEPTION.",
    (m) => m.exceptions,
  );
  perFunction(
    "gearman_jobs_retried_total",
    "Jobs requeued because their worker died, gave up or timed out.",
    (m) => m.retried,
  );

  w.family("gearman_jobs_queued", "gauge", "Jobs waiting for a worker, by function and priority.");
  for (const { fn, f } of live) {
    for (let p = 0; p < 3; p++) {
      w.sample(
        "gearman_jobs_queued",
        { function: fn, priority: PRIORITIES[p]! },
        f.queues[p]!.length + f.spilled[p]!,
      );
    }
  }
  const liveGauge = (
    name: string,
    help: string,
    value: (f: (typeof live)[number]["f"]) => number,
  ) => {
    w.family(name, "gauge", help);
    for (const { fn, f } of live) w.sample(name, { function: fn }, value(f));
  };
  liveGauge(
    "gearman_jobs_queued_on_disk",
    "Of the queued jobs, those kept only in the store (past --max-memory-jobs).",
    (f) => f.spilled[0] + f.spilled[1] + f.spilled[2],
  );
  liveGauge(
    "gearman_jobs_scheduled",
    "Jobs waiting for their run-at time or for the store to commit them.",
    (f) => f.scheduled,
  );
  liveGauge("gearman_jobs_running", "Jobs workers are running.", (f) => f.running);
  liveGauge(
    "gearman_function_workers",
    "Connected workers that can do the function.",
    (f) => f.workers.size,
  );
  liveGauge(
    "gearman_function_idle_workers",
    "Workers of the function asleep (PRE_SLEEP) waiting for a job.",
    (f) => f.sleepers.size,
  );

  w.family(
    "gearman_job_wait_seconds",
    "histogram",
    "Time from submit (or requeue) to a worker taking the job.",
  );
  for (const { fn, m } of counted) {
    w.histogram({ function: fn }, HISTOGRAM_BUCKETS, m.wait.counts, m.wait.sum);
  }
  w.family("gearman_job_run_seconds", "histogram", "Time from a worker taking a job to its end.");
  for (const { fn, m } of counted) {
    w.histogram({ function: fn }, HISTOGRAM_BUCKETS, m.run.counts, m.run.sum);
  }
  return w.text();
}
