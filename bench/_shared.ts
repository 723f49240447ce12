// Types and helpers shared by the benchmark driver (bench/main.ts) and the
// load processes (bench/load_process.ts).

/**
 * What one load process does. It opens `connections` connections to
 * 127.0.0.1:`port`, prints `READY`, waits for `GO` on stdin, does its work,
 * prints `RESULT <json>` (a {@link LoadResult}) and waits for `EXIT` (or
 * stdin EOF) before it closes its connections and exits.
 */
export type LoadConfig =
  | SubmitConfig
  | WorkerConfig
  | EchoConfig;

interface BaseConfig {
  /** Always 127.0.0.1: load only ever targets the loopback interface. */
  host: "127.0.0.1";
  port: number;
  /** Connections this process opens. */
  connections: number;
  /** The process exits by itself (printing ERROR) after this long. */
  maxMs: number;
  /**
   * From GO until done, print `PROGRESS <json>` (a {@link Progress}) this
   * often, for rates over time. Off when absent.
   */
  progressMs?: number;
}

/** Clients: submit `jobs` jobs in all, `inflight` at a time per connection. */
export interface SubmitConfig extends BaseConfig {
  role: "submit";
  fn: string;
  /** SUBMIT_JOB_BG (done at JOB_CREATED) instead of SUBMIT_JOB (done at WORK_COMPLETE). */
  background: boolean;
  jobs: number;
  inflight: number;
  payload: number;
  /**
   * Give every job a unique id: this prefix, the connection number, "-" and a
   * sequence number (so prefixes must differ between processes). Without it
   * the unique id is empty.
   */
  uniquePrefix?: string;
}

/**
 * Workers. `serve`: grab, complete, sleep when idle, until `STOP`.
 * `drain`: grab from `GO` on, and a connection stops at its first NO_JOB;
 * with `limit`, the process instead stops once it has completed `limit`
 * jobs (no GRAB_JOB is sent past that), and a NO_JOB sends it to sleep
 * (PRE_SLEEP) until the server's NOOP, as a real worker would.
 */
export interface WorkerConfig extends BaseConfig {
  role: "worker";
  fn: string;
  mode: "serve" | "drain";
  limit?: number;
}

/** Idle connections: open them all (at most `concurrency` connecting at once), ECHO_REQ each. */
export interface EchoConfig extends BaseConfig {
  role: "echo";
  concurrency: number;
}

/** What a load process reports. Times are wall-clock milliseconds (epoch, fractional). */
export interface LoadResult {
  role: LoadConfig["role"];
  connections: number;
  /** Jobs completed (submit: by the server; worker: by this worker), or echoes answered. */
  count: number;
  /** When GO arrived. */
  goAt: number;
  /** When the work ended (last reply; for serve workers, STOP). */
  doneAt: number;
  /** Workers: when the last WORK_COMPLETE was sent (0 when none). */
  lastAt: number;
  /** CPU this process used between GO and doneAt, microseconds. */
  cpuUserUs: number;
  cpuSystemUs: number;
  /** Latency histogram, sparse [bucket, count] pairs (see {@link Histogram}). */
  hist: [number, number][];
  /** Workers: NO_JOB answers received between GO and done. */
  noJobs: number;
}

/** One `PROGRESS` sample: `count` as in {@link LoadResult}, at wall-clock time `t` (ms). */
export interface Progress {
  t: number;
  count: number;
}

/** Wall-clock now in milliseconds, fractional, comparable across processes. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const LOG_BASE = Math.log(1.02);
const BUCKETS = 1024;

/**
 * A latency histogram in microseconds with 2% wide logarithmic buckets:
 * cheap to record, small to send, and mergeable across processes.
 */
export class Histogram {
  readonly counts: Float64Array = new Float64Array(BUCKETS);
  total = 0;

  /** Record one latency in milliseconds. */
  record(ms: number): void {
    const us = ms * 1000;
    const i = us <= 1 ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(us) / LOG_BASE));
    this.counts[i]!++;
    this.total++;
  }

  /** Sparse form for JSON. */
  toPairs(): [number, number][] {
    const pairs: [number, number][] = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i]! > 0) pairs.push([i, this.counts[i]!]);
    return pairs;
  }

  /** Add sparse pairs from another histogram. */
  addPairs(pairs: [number, number][]): void {
    for (const [i, n] of pairs) {
      this.counts[i]! += n;
      this.total += n;
    }
  }

  /** The q-quantile (0..1) in microseconds (bucket midpoint), or undefined when empty. */
  quantileUs(q: number): number | undefined {
    if (this.total === 0) return undefined;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return i === 0 ? 1 : Math.exp((i + 0.5) * LOG_BASE);
    }
    return undefined;
  }
}
