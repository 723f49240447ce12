// The benchmark driver: `deno task bench` (= deno run -A bench/main.ts).
//
// Starts our server (server.ts) and C++ gearmand as subprocesses on free
// loopback ports, drives each with the same load generator
// (bench/load_process.ts, several processes speaking the raw protocol over
// pipelined connections), and prints one table: per scenario jobs/s,
// p50/p99 latency, server RSS, and the ratio ours/gearmand. A full run
// also writes the table and the machine it ran on to docs/BENCHMARKS.md.
//
//   deno task bench                      full run, both servers
//   deno run -A bench/main.ts --quick --server ours     CI smoke (< 60 s)
//   deno run -A bench/main.ts --scenarios durable-bgsubmit,durable-drain,durable-10m
//   deno run -A bench/main.ts --scenarios cluster        our servers on one PostgreSQL (bench/cluster.ts)
//
// The durable-* scenarios run the servers with a SQLite queue (ours:
// --store sqlite:PATH; gearmand: -q libsqlite3) in a temp dir removed
// afterwards.
//
// Flags: --quick, --scenarios a,b, --jobs N, --connections N, --durable-unique,
// --server ours|gearmand|both, --procs N, --timeout SECONDS,
// --json PATH, --write / --no-write, --out PATH, -h.
//
// Environment: BENCH_DENO_FLAGS (extra deno flags for our server, e.g.
// --cpu-prof); BENCH_LOAD_NICE=N runs the load processes under `nice -n N`,
// so on a machine with few cores they do not preempt the servers (it
// changes the standing of the servers: see docs/BENCHMARKS.md).

import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { Histogram, type LoadConfig, type LoadResult, nowMs, type Progress } from "./_shared.ts";
import { type ClusterRow, clusterTable, runClusterBench } from "./cluster.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const LOAD_SCRIPT = new URL("./load_process.ts", import.meta.url).pathname;
const GEARMAND = "/usr/sbin/gearmand";
const HOST = "127.0.0.1";
/** Raise the fd limit as far as allowed (65536, else the hard limit), then exec. */
const ULIMIT = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"';
/** Saturation threshold for one load process, percent of a core. */
const SATURATED_PCT = 90;

const SCENARIOS = [
  "roundtrip",
  "pipelined",
  "kib",
  "bgsubmit",
  "drain1m",
  "drain10k",
  "connections",
  "durable-bgsubmit",
  "durable-drain",
  "durable-10m",
  "cluster",
] as const;
type Scenario = typeof SCENARIOS[number];
/** Left out of --quick unless named with --scenarios. */
const FULL_ONLY: readonly Scenario[] = ["durable-10m"];
/**
 * What is measured and reported as one row: a scenario, or the second half
 * of durable-10m (its drain), which runs whenever durable-10m does.
 */
type Phase = Scenario | "durable-10m-drain";
const PHASES: readonly Phase[] = [...SCENARIOS, "durable-10m-drain"];
const DURABLE_10M_SKIP = "gearmand's libsqlite3 queue commits each job in a transaction " +
  "of its own (~1k jobs/s on a 2-core box): 10M jobs would take hours";

/** Phases in one group share one server process (drain1m drains what bgsubmit queued). */
interface Group {
  phases: Phase[];
  /** Run the server with a SQLite queue in a fresh temp dir. */
  store?: boolean;
  /** When set, only ours runs; gearmand gets one SKIPPED row with this reason. */
  oursOnly?: string;
}
const GROUPS: Group[] = [
  { phases: ["roundtrip"] },
  { phases: ["pipelined"] },
  { phases: ["kib"] },
  { phases: ["bgsubmit", "drain1m"] },
  { phases: ["drain10k"] },
  { phases: ["connections"] },
  { phases: ["durable-bgsubmit", "durable-drain"], store: true },
  { phases: ["durable-10m", "durable-10m-drain"], store: true, oursOnly: DURABLE_10M_SKIP },
];
type ServerKind = "ours" | "gearmand";

const USAGE = `Usage: deno run -A bench/main.ts [options]

Benchmarks our Gearman server against C++ gearmand with the same load.

Options:
  --quick               small sizes (CI smoke test, < 60 s); leaves out ${FULL_ONLY.join(", ")}
  --scenarios a,b       run only these: ${SCENARIOS.join(", ")}
  --jobs N              jobs per scenario (roundtrip, pipelined, kib, bgsubmit/drain1m,
                        durable-bgsubmit/durable-drain: ours, and gearmand up to its
                        smaller default)
  --connections N       connections for the connections scenario
  --durable-unique      durable scenarios: give every job of ours a unique id too
                        (gearmand always gets them: its SQLite queue keys rows by unique
                        id, so jobs without one overwrite each other on disk)
  --server WHICH        ours, gearmand or both (default both)
  --procs N             load processes per role (default 2)
  --timeout SECONDS     time limit per scenario (default: by scenario and size)
  --json PATH           also write the results as JSON
  --write / --no-write  write docs/BENCHMARKS.md (default: only for a full default run)
  --out PATH            where to write the markdown (default docs/BENCHMARKS.md)
  -h, --help            this help
`;

// ---------------------------------------------------------------- options

interface Sizes {
  roundtrip: number;
  pipelined: number;
  kib: number;
  bgsubmit: number;
  drain10k: number;
  connections: number;
  /** durable-bgsubmit / durable-drain, ours. */
  durable: number;
  /** durable-bgsubmit / durable-drain, gearmand (its SQLite queue is slow). */
  durableGearmand: number;
  /** durable-10m: jobs queued, jobs then drained, --max-memory-jobs (undefined: default). */
  durable10m: number;
  durable10mDrain: number;
  durable10mMemory: number | undefined;
}

const FULL: Sizes = {
  roundtrip: 20_000,
  pipelined: 200_000,
  kib: 200_000,
  bgsubmit: 1_000_000,
  drain10k: 10_000,
  connections: 10_000,
  durable: 1_000_000,
  durableGearmand: 20_000,
  durable10m: 10_000_000,
  durable10mDrain: 1_000_000,
  durable10mMemory: undefined,
};
const QUICK: Sizes = {
  roundtrip: 2_000,
  pipelined: 20_000,
  kib: 10_000,
  bgsubmit: 50_000,
  drain10k: 10_000,
  connections: 1_000,
  durable: 20_000,
  durableGearmand: 1_000,
  // Scaled down 100x, the memory limit with it, so paging still happens.
  durable10m: 100_000,
  durable10mDrain: 20_000,
  durable10mMemory: 10_000,
};
/** Time limits per phase, seconds, at the default sizes. */
const FULL_TIMEOUT: Record<Phase, number> = {
  roundtrip: 120,
  pipelined: 120,
  kib: 120,
  bgsubmit: 240,
  drain1m: 600,
  drain10k: 60,
  connections: 120,
  // Includes an in-memory 1M reference submit when bgsubmit did not run.
  "durable-bgsubmit": 300,
  "durable-drain": 600,
  "durable-10m": 1200,
  "durable-10m-drain": 900,
  cluster: 600,
};
/** gearmand's durable phases, at FULL.durableGearmand jobs (~30 s each expected). */
const GEARMAND_DURABLE_TIMEOUT_S = 180;
const QUICK_TIMEOUT_S = 12;
/** Quick durable phases: SQLite and a second server start take longer. */
const QUICK_DURABLE_TIMEOUT: Partial<Record<Phase, number>> = {
  "durable-bgsubmit": 30,
  "durable-drain": 30,
  "durable-10m": 120,
  "durable-10m-drain": 60,
  cluster: 120,
};
/** The size a phase's time limit scales with. */
const TIMEOUT_SIZE: Record<Phase, keyof Sizes> = {
  roundtrip: "roundtrip",
  pipelined: "pipelined",
  kib: "kib",
  bgsubmit: "bgsubmit",
  drain1m: "bgsubmit",
  drain10k: "drain10k",
  connections: "connections",
  "durable-bgsubmit": "durable",
  "durable-drain": "durable",
  "durable-10m": "durable10m",
  "durable-10m-drain": "durable10mDrain",
  cluster: "durable",
};

interface Options {
  quick: boolean;
  scenarios: Scenario[];
  sizes: Sizes;
  servers: ServerKind[];
  procs: number;
  timeoutS: Record<Phase, number>;
  /** gearmand's own limits where they differ (durable phases). */
  gearmandTimeoutS: Partial<Record<Phase, number>>;
  /** Durable phases: unique ids for ours too. */
  durableUnique: boolean;
  json: string | undefined;
  write: boolean;
  out: string;
  argv: string[];
}

class UsageError extends Error {}

function positiveInt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1) {
    throw new UsageError(`--${name} must be a positive integer, got "${v}"`);
  }
  return Number(v);
}

function parseOptions(args: string[]): Options | undefined {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: "boolean" },
      scenarios: { type: "string" },
      jobs: { type: "string" },
      connections: { type: "string" },
      "durable-unique": { type: "boolean" },
      server: { type: "string" },
      procs: { type: "string" },
      timeout: { type: "string" },
      json: { type: "string" },
      write: { type: "boolean" },
      "no-write": { type: "boolean" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  const quick = values.quick ?? false;
  let scenarios: Scenario[] = SCENARIOS.filter((s) => !quick || !FULL_ONLY.includes(s));
  if (values.scenarios !== undefined) {
    const names = values.scenarios.split(",").map((s) => s.trim()).filter((s) => s !== "");
    for (const n of names) {
      if (!(SCENARIOS as readonly string[]).includes(n)) {
        throw new UsageError(`unknown scenario "${n}"; known: ${SCENARIOS.join(", ")}`);
      }
    }
    scenarios = SCENARIOS.filter((s) => names.includes(s));
  }
  const defaults = quick ? QUICK : FULL;
  const sizes = { ...defaults };
  const jobs = positiveInt("jobs", values.jobs);
  if (jobs !== undefined) {
    sizes.roundtrip =
      sizes.pipelined =
      sizes.kib =
      sizes.bgsubmit =
      sizes.durable =
        jobs;
    sizes.durableGearmand = Math.min(jobs, defaults.durableGearmand);
  }
  const connections = positiveInt("connections", values.connections);
  if (connections !== undefined) sizes.connections = connections;
  const server = values.server ?? "both";
  if (!["ours", "gearmand", "both"].includes(server)) {
    throw new UsageError(`--server must be ours, gearmand or both, got "${server}"`);
  }
  const servers: ServerKind[] = server === "both" ? ["ours", "gearmand"] : [server as ServerKind];
  const procs = positiveInt("procs", values.procs) ?? 2;
  const timeoutFlag = positiveInt("timeout", values.timeout);
  const timeoutS = {} as Record<Phase, number>;
  const gearmandTimeoutS: Partial<Record<Phase, number>> = {};
  const scaled = (full: number, scale: number) =>
    Math.max(30, Math.ceil(full * Math.max(scale, quick ? 0.1 : 1)));
  for (const s of PHASES) {
    const key = TIMEOUT_SIZE[s];
    if (timeoutFlag !== undefined) timeoutS[s] = timeoutFlag;
    else if (quick && jobs === undefined && connections === undefined) {
      timeoutS[s] = QUICK_DURABLE_TIMEOUT[s] ?? QUICK_TIMEOUT_S;
    } else {
      // Scale the full-size limit with the size asked for (never below 30 s).
      timeoutS[s] = scaled(FULL_TIMEOUT[s], (sizes[key] ?? 0) / (FULL[key] ?? 1));
    }
  }
  for (const s of ["durable-bgsubmit", "durable-drain"] as const) {
    gearmandTimeoutS[s] = timeoutFlag ??
      (quick && jobs === undefined
        ? QUICK_DURABLE_TIMEOUT[s]!
        : scaled(GEARMAND_DURABLE_TIMEOUT_S, sizes.durableGearmand / FULL.durableGearmand));
  }
  const fullDefault = !quick && jobs === undefined && connections === undefined &&
    values.scenarios === undefined && server === "both" && values.procs === undefined &&
    !values["durable-unique"];
  const write = values["no-write"] ? false : (values.write ?? fullDefault);
  return {
    quick,
    scenarios,
    sizes,
    servers,
    procs,
    timeoutS,
    gearmandTimeoutS,
    durableUnique: values["durable-unique"] ?? false,
    json: values.json,
    write,
    out: values.out ?? `${ROOT}docs/BENCHMARKS.md`,
    argv: args,
  };
}

// ---------------------------------------------------------------- processes

class TimeoutError extends Error {}

/** A point in time every wait of one scenario races against. */
class Deadline {
  readonly at: number;
  readonly seconds: number;
  constructor(seconds: number) {
    this.seconds = seconds;
    this.at = Date.now() + seconds * 1000;
  }
  race<T>(p: Promise<T>, what: string): Promise<T> {
    const left = this.at - Date.now();
    if (left <= 0) return Promise.reject(new TimeoutError(`timed out ${what}`));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`timed out ${what}`)), left);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

const live = new Set<Proc>();

/** A child process (run through bash for the fd limit), with its stdout as lines. */
class Proc {
  readonly name: string;
  readonly child: Deno.ChildProcess;
  readonly pid: number;
  status: Deno.CommandStatus | undefined;
  readonly exited: Promise<Deno.CommandStatus>;
  /** `PROGRESS` samples printed so far (kept apart from the other lines). */
  readonly progress: Progress[] = [];
  #lines: string[] = [];
  #wake: (() => void) | undefined;
  #eof = false;
  #stderr = "";
  #stdin: WritableStreamDefaultWriter<Uint8Array>;

  constructor(name: string, argv: string[]) {
    this.name = name;
    this.child = new Deno.Command("bash", {
      args: ["-c", ULIMIT, "bash", ...argv],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.child.pid;
    this.#stdin = this.child.stdin.getWriter();
    this.#stdin.closed.catch(() => {});
    live.add(this);
    this.exited = this.child.status.then((s) => {
      this.status = s;
      live.delete(this);
      return s;
    });
    this.#pumpStdout();
    this.#pumpStderr();
  }

  async #pumpStdout(): Promise<void> {
    let buf = "";
    try {
      for await (const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.startsWith("PROGRESS ")) {
            try {
              this.progress.push(JSON.parse(line.slice(9)) as Progress);
            } catch { /* a torn line: skip it */ }
          } else this.#lines.push(line);
        }
        this.#wake?.();
      }
    } catch { /* killed */ }
    if (buf !== "") this.#lines.push(buf);
    this.#eof = true;
    this.#wake?.();
  }

  async #pumpStderr(): Promise<void> {
    try {
      for await (const chunk of this.child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr = (this.#stderr + chunk).slice(-2000);
      }
    } catch { /* killed */ }
  }

  /** The last stderr output, for error messages. */
  get stderr(): string {
    return this.#stderr.trim();
  }

  /** The next stdout line; throws when the process ends first. */
  async line(): Promise<string> {
    while (this.#lines.length === 0) {
      if (this.#eof) {
        const s = await this.exited;
        const err = this.stderr;
        throw new Error(
          `${this.name} exited (code ${s.code}) before answering${
            err ? `: ${err.split("\n").slice(-3).join(" / ")}` : ""
          }`,
        );
      }
      await new Promise<void>((resolve) => this.#wake = resolve);
      this.#wake = undefined;
    }
    return this.#lines.shift()!;
  }

  /** Wait for a line starting with `prefix` (other lines are skipped); ERROR lines throw. */
  async expect(prefix: string, dl: Deadline): Promise<string> {
    while (true) {
      const line = await dl.race(this.line(), `waiting for ${prefix} from ${this.name}`);
      if (line.startsWith("ERROR")) throw new Error(`${this.name}: ${line.slice(6)}`);
      if (line.startsWith(prefix)) return line.slice(prefix.length).trim();
    }
  }

  send(line: string): void {
    this.#stdin.write(new TextEncoder().encode(line + "\n")).catch(() => {});
  }

  get running(): boolean {
    return this.status === undefined;
  }

  /** SIGKILL if still running; resolves when it has exited. */
  async kill(): Promise<void> {
    if (this.running) {
      try {
        this.child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
    await this.exited;
  }

  /** Ask to exit (EXIT on stdin), then kill after `graceMs`. */
  async stop(graceMs = 1000): Promise<void> {
    if (!this.running) return;
    this.send("EXIT");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const t = new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs));
    await Promise.race([this.exited, t]);
    clearTimeout(timer);
    await this.kill();
  }
}

function statusBytes(pid: number, field: string): number | undefined {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+)\\s+kB`).exec(
      Deno.readTextFileSync(`/proc/${pid}/status`),
    );
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

function rssBytes(pid: number): number | undefined {
  return statusBytes(pid, "VmRSS");
}

/** Peak RSS since the process started. */
function peakRssBytes(pid: number): number | undefined {
  return statusBytes(pid, "VmHWM");
}

/**
 * Rows in gearmand's queue table, read while it is idle (undefined when unreadable). Ours
 * keeps its file locked, so only gearmand's is read.
 */
function dbRows(h: ServerHandle): number | undefined {
  if (h.kind !== "gearmand" || !h.db) return undefined;
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(h.db, { readOnly: true });
    const row = db.prepare("SELECT count(*) AS n FROM gearman_queue").get() as { n: number };
    return Number(row.n);
  } catch {
    return undefined;
  } finally {
    db?.close();
  }
}

/** Bytes of a SQLite database with its -wal, -shm and -journal files (undefined when none). */
function dbBytes(path: string): number | undefined {
  let total: number | undefined;
  for (const f of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      total = (total ?? 0) + Deno.statSync(f).size;
    } catch { /* absent */ }
  }
  return total;
}

/** utime + stime of a whole process (all threads), seconds. */
function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // CLK_TCK is 100 on Linux
  } catch {
    return undefined;
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: HOST, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- servers

interface ServerHandle {
  kind: ServerKind;
  proc: Proc;
  port: number;
  /** With a store: the temp dir holding it (removed by stopServer) and the database. */
  dir?: string;
  db?: string;
}

interface ServerOptions {
  /** Run with a SQLite queue in a fresh temp dir. */
  store?: boolean;
  /** Ours: --max-memory-jobs (default: the server's own). */
  maxMemoryJobs?: number | undefined;
}

/** Temp dirs of running servers, removed on exit even when interrupted. */
const tempDirs = new Set<string>();

function removeDir(dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* already gone */ }
  tempDirs.delete(dir);
}

/** Kill a server and remove its temp dir. */
async function stopServer(h: ServerHandle | undefined): Promise<void> {
  if (!h) return;
  if (h.kind === "ours" && Deno.env.get("BENCH_DENO_FLAGS")?.includes("--cpu-prof")) {
    // A profile is written only at a clean exit: SIGINT first, SIGKILL after 10 s.
    try {
      h.proc.child.kill("SIGINT");
    } catch { /* already gone */ }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      h.proc.exited,
      new Promise<void>((resolve) => timer = setTimeout(resolve, 10_000)),
    ]);
    clearTimeout(timer);
  }
  await h.proc.kill();
  if (h.dir) removeDir(h.dir);
}

function gearmandInstalled(): boolean {
  try {
    return Deno.statSync(GEARMAND).isFile;
  } catch {
    return false;
  }
}

let sqliteQueue: Promise<boolean> | undefined;

/** Whether this gearmand was built with its libsqlite3 queue (it lists the options in --help). */
function gearmandHasSqlite(): Promise<boolean> {
  sqliteQueue ??= new Deno.Command(GEARMAND, { args: ["--help"], stdout: "piped", stderr: "piped" })
    .output()
    .then((o) => new TextDecoder().decode(o.stdout).includes("--libsqlite3-db"), () => false);
  return sqliteQueue;
}

async function startServer(
  kind: ServerKind,
  dl: Deadline,
  so: ServerOptions = {},
): Promise<ServerHandle> {
  const port = freePort();
  let dir: string | undefined;
  let db: string | undefined;
  if (so.store) {
    dir = Deno.makeTempDirSync({ prefix: "gearman-bench-" });
    tempDirs.add(dir);
    db = `${dir}/jobs.db`;
  }
  const storeArgs = !db ? [] : kind === "ours"
    ? [
      `--store=sqlite:${db}`,
      ...(so.maxMemoryJobs !== undefined ? [`--max-memory-jobs=${so.maxMemoryJobs}`] : []),
    ]
    : ["-q", "libsqlite3", `--libsqlite3-db=${db}`];
  const argv = kind === "ours"
    ? [
      Deno.execPath(),
      "run",
      "-A",
      // Extra deno flags for our server, e.g. BENCH_DENO_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
      ...(Deno.env.get("BENCH_DENO_FLAGS")?.split(" ").filter(Boolean) ?? []),
      "server.ts",
      "--host",
      HOST,
      "--port",
      String(port),
      "--log-level",
      "error",
      ...storeArgs,
    ]
    : [
      GEARMAND,
      `--listen=${HOST}`,
      `--port=${port}`,
      "-t",
      "4",
      "-b",
      "4096",
      "--log-file=none",
      ...storeArgs,
    ];
  const proc = new Proc(kind === "ours" ? "our server" : "gearmand", argv);
  const handle: ServerHandle = { kind, proc, port, ...(dir && db ? { dir, db } : {}) };
  // Ready when it accepts a connection.
  while (true) {
    if (!proc.running) {
      await stopServer(handle);
      throw new Error(`${proc.name} exited at startup: ${proc.stderr || "(no output)"}`);
    }
    try {
      const c = await dl.race(Deno.connect({ hostname: HOST, port }), `starting ${proc.name}`);
      c.close();
      break;
    } catch (err) {
      if (err instanceof TimeoutError) {
        await stopServer(handle);
        throw err;
      }
      await sleep(50);
    }
  }
  return handle;
}

// ---------------------------------------------------------------- load processes

interface Ctx {
  server: ServerHandle;
  sizes: Sizes;
  procs: number;
  dl: Deadline;
  /** Every load process started, stopped when the scenario ends. */
  loads: Proc[];
  /** Background jobs left queued by bgsubmit / durable-bgsubmit / durable-10m on this server. */
  queued: number;
  /** Rows so far in this run (durable phases compare with in-memory ones). */
  rows: Row[];
  /** Our in-memory bgsubmit, measured by a durable phase when bgsubmit did not run. */
  reference: { value?: Baseline };
  /** Durable phases: unique ids for ours too (gearmand always). */
  durableUnique: boolean;
}

type NoBase<T> = T extends unknown ? Omit<T, "host" | "port" | "maxMs"> : never;

/** Split `total` into `parts` near-equal integers (none zero unless total < parts). */
function split(total: number, parts: number): number[] {
  const n = Math.max(1, Math.min(parts, total));
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
}

async function spawnLoads(ctx: Ctx, cfgs: NoBase<LoadConfig>[]): Promise<Proc[]> {
  const maxMs = Math.max(1000, ctx.dl.at - Date.now() + 5000);
  const procs = cfgs.map((c, i) => {
    const cfg = { ...c, host: HOST, port: ctx.server.port, maxMs } as LoadConfig;
    // BENCH_LOAD_NICE: the load processes at a lower priority (see the file comment).
    const nice = Deno.env.get("BENCH_LOAD_NICE");
    const p = new Proc(`load ${c.role} #${i}`, [
      ...(nice ? ["nice", "-n", nice] : []),
      Deno.execPath(),
      "run",
      "-A",
      LOAD_SCRIPT,
      JSON.stringify(cfg),
    ]);
    ctx.loads.push(p);
    return p;
  });
  await Promise.all(procs.map((p) => p.expect("READY", ctx.dl)));
  return procs;
}

async function collect(ctx: Ctx, procs: Proc[]): Promise<LoadResult[]> {
  const lines = await Promise.all(procs.map((p) => p.expect("RESULT", ctx.dl)));
  return lines.map((l) => JSON.parse(l) as LoadResult);
}

/** Worker configs: `n` connections over the load processes (a drain: `limit` jobs in all). */
function workerCfgs(
  ctx: Ctx,
  fn: string,
  n: number,
  mode: "serve" | "drain",
  limit?: number,
): NoBase<LoadConfig>[] {
  const conns = split(n, ctx.procs);
  const limits = limit === undefined ? undefined : split(limit, conns.length);
  return conns.map((connections, i) => ({
    role: "worker",
    fn,
    mode,
    connections,
    ...(limits ? { limit: limits[i] ?? 0 } : {}),
  }));
}

/** Client configs: `n` connections and `jobs` jobs over the load processes. */
function submitCfgs(
  ctx: Ctx,
  fn: string,
  n: number,
  jobs: number,
  inflight: number,
  payload: number,
  background: boolean,
  unique = false,
): NoBase<LoadConfig>[] {
  const conns = split(n, ctx.procs);
  let left = jobs;
  return conns.map((connections, i) => {
    const share = i === conns.length - 1 ? left : Math.round(jobs * connections / n);
    left -= share;
    return {
      role: "submit",
      fn,
      background,
      jobs: share,
      inflight,
      payload,
      connections,
      ...(unique ? { uniquePrefix: `p${i}c` } : {}),
    };
  });
}

// ---------------------------------------------------------------- results

/** An in-memory run a durable phase is compared with. */
interface Baseline {
  /** Where it comes from, for the notes. */
  source: string;
  count: number;
  rate: number;
  p50Us?: number;
  p99Us?: number;
  rssBytes?: number;
  bytesPerJob?: number;
}

interface Row {
  scenario: Phase;
  server: ServerKind;
  status: "ok" | "timeout" | "error" | "skipped";
  message?: string;
  count?: number;
  seconds?: number;
  rate?: number;
  p50Us?: number;
  p99Us?: number;
  rssBytes?: number;
  bytesPerJob?: number;
  /** CPU of all load processes over the window, percent of one core. */
  genCpuPct?: number;
  /** The busiest load process, percent of one core. */
  genMaxPct?: number;
  /** Server CPU over the window, percent of one core. */
  srvCpuPct?: number;
  /** The whole machine's CPU over the window, percent of all cores. */
  boxCpuPct?: number;
  note?: string;
  /** Durable phases: the in-memory run of ours to compare with. */
  baseline?: Baseline;
  /** Peak server RSS (VmHWM) at the end. */
  peakRssBytes?: number;
  /** Size of the SQLite files at the end. */
  dbBytes?: number;
  /** Samples over the run: [seconds since GO, jobs done, server RSS bytes]. */
  timeline?: [number, number, number][];
}

type Measured = Omit<Row, "scenario" | "server" | "status">;

function genCpu(results: LoadResult[], windowMs: number): Pick<Row, "genCpuPct" | "genMaxPct"> {
  let sum = 0;
  let max = 0;
  for (const r of results) {
    const cpuMs = (r.cpuUserUs + r.cpuSystemUs) / 1000;
    sum += cpuMs;
    max = Math.max(max, cpuMs / Math.max(1e-3, r.doneAt - r.goAt) * 100);
  }
  return { genCpuPct: sum / windowMs * 100, genMaxPct: max };
}

function latency(results: LoadResult[]): Pick<Row, "p50Us" | "p99Us"> {
  const h = new Histogram();
  for (const r of results) h.addPairs(r.hist);
  const out: Pick<Row, "p50Us" | "p99Us"> = {};
  const p50 = h.quantileUs(0.5);
  const p99 = h.quantileUs(0.99);
  if (p50 !== undefined) out.p50Us = p50;
  if (p99 !== undefined) out.p99Us = p99;
  return out;
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
function machineJiffies(): [number, number] | undefined {
  try {
    const line = Deno.readTextFileSync("/proc/stat").split("\n")[0]!;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    return [total - idle, total];
  } catch {
    return undefined;
  }
}

/** Server CPU (percent of one core) and machine CPU (percent of all cores) over a window. */
function serverMeter(ctx: Ctx): () => Pick<Row, "srvCpuPct" | "boxCpuPct"> {
  const t0 = performance.now();
  const c0 = cpuSeconds(ctx.server.proc.pid);
  const m0 = machineJiffies();
  return () => {
    const out: Pick<Row, "srvCpuPct" | "boxCpuPct"> = {};
    const c1 = cpuSeconds(ctx.server.proc.pid);
    const m1 = machineJiffies();
    if (c0 !== undefined && c1 !== undefined) {
      out.srvCpuPct = (c1 - c0) / ((performance.now() - t0) / 1000) * 100;
    }
    if (m0 && m1 && m1[1] > m0[1]) out.boxCpuPct = (m1[0] - m0[0]) / (m1[1] - m0[1]) * 100;
    return out;
  };
}

function assertCount(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${what}: ${got} of ${want}`);
}

// ---------------------------------------------------------------- scenarios

/** Foreground jobs: serving workers, pipelined clients. */
async function foreground(
  ctx: Ctx,
  fn: string,
  workers: number,
  clients: number,
  inflight: number,
  payload: number,
  jobs: number,
): Promise<Measured> {
  const wk = await spawnLoads(ctx, workerCfgs(ctx, fn, workers, "serve"));
  const cl = await spawnLoads(ctx, submitCfgs(ctx, fn, clients, jobs, inflight, payload, false));
  const srv = serverMeter(ctx);
  for (const p of [...wk, ...cl]) p.send("GO");
  const cres = await collect(ctx, cl);
  for (const p of wk) p.send("STOP");
  const wres = await collect(ctx, wk);
  const cpu = srv();
  const rss = rssBytes(ctx.server.proc.pid);
  const count = cres.reduce((a, r) => a + r.count, 0);
  assertCount("jobs completed (clients)", count, jobs);
  assertCount("jobs completed (workers)", wres.reduce((a, r) => a + r.count, 0), jobs);
  const t0 = Math.min(...cres.map((r) => r.goAt));
  const t1 = Math.max(...cres.map((r) => r.doneAt));
  return {
    count,
    seconds: (t1 - t0) / 1000,
    rate: count / ((t1 - t0) / 1000),
    ...latency(cres),
    ...(rss !== undefined ? { rssBytes: rss } : {}),
    ...genCpu([...cres, ...wres], t1 - t0),
    ...cpu,
    note: `${fmtCount(count)} jobs`,
  };
}

/** Progress and RSS sampling for the durable phases: rates over time, peak RSS, db size. */
const TRACK_MS = 1000;
/** Window for the slowest-rate figure, ms. */
const WINDOW_MS = 5000;

/** Samples the server's RSS every TRACK_MS until the returned function is called. */
function rssSampler(ctx: Ctx): () => [number, number][] {
  const pid = ctx.server.proc.pid;
  const samples: [number, number][] = [];
  const take = () => {
    const r = rssBytes(pid);
    if (r !== undefined) samples.push([nowMs(), r]);
  };
  take();
  const timer = setInterval(take, TRACK_MS);
  return () => {
    clearInterval(timer);
    take();
    return samples;
  };
}

/** Each load process's count over time: [GO, 0], its PROGRESS samples, [done, count]. */
function seriesOf(procs: Proc[], results: LoadResult[]): Progress[][] {
  return procs.map((p, i) => {
    const r = results[i]!;
    return [
      { t: r.goAt, count: 0 },
      ...p.progress.filter((x) => x.t > r.goAt && x.t < r.doneAt),
      { t: r.doneAt, count: r.count },
    ];
  });
}

/** Jobs done by all load processes at wall-clock time `t`, interpolated. */
function countAt(series: Progress[][], t: number): number {
  let sum = 0;
  for (const s of series) {
    const last = s[s.length - 1]!;
    if (t >= last.t) {
      sum += last.count;
      continue;
    }
    let i = 0;
    while (i + 1 < s.length && s[i + 1]!.t <= t) i++;
    const a = s[i]!;
    const b = s[i + 1];
    if (t <= a.t || !b) sum += t < a.t ? 0 : a.count;
    else sum += a.count + (b.count - a.count) * (t - a.t) / (b.t - a.t);
  }
  return sum;
}

/** The first time at which `count` jobs were done (bisection; counts only grow). */
function timeAt(series: Progress[][], count: number, t0: number, t1: number): number {
  let lo = t0;
  let hi = t1;
  for (let i = 0; i < 40 && hi - lo > 1; i++) {
    const mid = (lo + hi) / 2;
    if (countAt(series, mid) >= count) hi = mid;
    else lo = mid;
  }
  return hi;
}

interface Profile {
  firstTenth: number;
  lastTenth: number;
  /** Slowest and fastest WINDOW_MS window (undefined when the run is shorter than two). */
  slowest: number | undefined;
  fastest: number | undefined;
}

/** Rates over the run: the first and last 10% of the jobs, the slowest and fastest window. */
function profile(series: Progress[][], total: number, t0: number, t1: number): Profile {
  const tenth = total / 10;
  const a = timeAt(series, tenth, t0, t1);
  const b = timeAt(series, total - tenth, t0, t1);
  let slowest: number | undefined;
  let fastest: number | undefined;
  if (t1 - t0 >= 2 * WINDOW_MS) {
    for (let t = t0; t + WINDOW_MS <= t1; t += WINDOW_MS) {
      const r = (countAt(series, t + WINDOW_MS) - countAt(series, t)) / (WINDOW_MS / 1000);
      slowest = Math.min(slowest ?? r, r);
      fastest = Math.max(fastest ?? r, r);
    }
  }
  return {
    firstTenth: tenth / Math.max(1e-3, (a - t0) / 1000),
    lastTenth: tenth / Math.max(1e-3, (t1 - b) / 1000),
    slowest,
    fastest,
  };
}

function fmtProfile(p: Profile): string {
  return `first 10% ${nf.format(p.firstTenth)}/s, last 10% ${nf.format(p.lastTenth)}/s` +
    (p.slowest !== undefined && p.fastest !== undefined
      ? `, ${WINDOW_MS / 1000} s windows ${nf.format(p.slowest)}-${nf.format(p.fastest)}/s`
      : "");
}

/** Timeline, peak RSS, db size and a profile note for a tracked phase. */
function tracked(
  ctx: Ctx,
  procs: Proc[],
  results: LoadResult[],
  rss: [number, number][],
  total: number,
  t0: number,
  t1: number,
): { extra: Measured; note: string } {
  const series = seriesOf(procs, results);
  const extra: Measured = {
    timeline: rss.map(([t, r]) => [
      Math.round((t - t0) / 100) / 10,
      Math.round(countAt(series, t)),
      r,
    ]),
  };
  const peak = peakRssBytes(ctx.server.proc.pid);
  if (peak !== undefined) extra.peakRssBytes = peak;
  const db = ctx.server.db ? dbBytes(ctx.server.db) : undefined;
  if (db !== undefined) extra.dbBytes = db;
  const notes: string[] = [];
  if (peak !== undefined) notes.push(`peak RSS ${fmtMiB(peak)}`);
  if (db !== undefined) notes.push(`db ${fmtSize(db)}`);
  notes.push(fmtProfile(profile(series, total, t0, t1)));
  return { extra, note: notes.join(", ") };
}

/**
 * Queue `jobs` background jobs: 4 clients x 64 in flight. `track`: progress and RSS over
 * time; `unique`: every job gets a unique id (else empty).
 */
async function submitBackground(
  ctx: Ctx,
  fn: string,
  jobs: number,
  { track = false, unique = false }: { track?: boolean; unique?: boolean } = {},
): Promise<Measured> {
  const cfgs = submitCfgs(ctx, fn, 4, jobs, 64, 64, true, unique)
    .map((c) => track ? { ...c, progressMs: TRACK_MS } : c);
  const cl = await spawnLoads(ctx, cfgs);
  const rss0 = rssBytes(ctx.server.proc.pid);
  const srv = serverMeter(ctx);
  const sampler = track ? rssSampler(ctx) : undefined;
  for (const p of cl) p.send("GO");
  const cres = await collect(ctx, cl);
  const cpu = srv();
  const count = cres.reduce((a, r) => a + r.count, 0);
  assertCount("jobs queued", count, jobs);
  await sleep(300);
  const rss1 = rssBytes(ctx.server.proc.pid);
  const rssSamples = sampler?.();
  for (const p of cl) await p.stop();
  const t0 = Math.min(...cres.map((r) => r.goAt));
  const t1 = Math.max(...cres.map((r) => r.doneAt));
  const out: Measured = {
    count,
    seconds: (t1 - t0) / 1000,
    rate: count / ((t1 - t0) / 1000),
    ...latency(cres),
    ...genCpu(cres, t1 - t0),
    ...cpu,
  };
  if (rss1 !== undefined) out.rssBytes = rss1;
  if (rss0 !== undefined && rss1 !== undefined) out.bytesPerJob = (rss1 - rss0) / count;
  out.note = `${fmtCount(count)} queued` + (unique ? " with unique ids" : "") +
    (out.bytesPerJob !== undefined ? `, ${Math.round(out.bytesPerJob)} B/job` : "");
  const rows = ctx.server.db ? dbRows(ctx.server) : undefined;
  if (rows !== undefined) {
    out.note += `, ${nf.format(rows)} rows on disk${rows < count ? " (fewer than queued!)" : ""}`;
  }
  if (rssSamples) {
    const t = tracked(ctx, cl, cres, rssSamples, count, t0, t1);
    Object.assign(out, t.extra);
    out.note += `, ${t.note}`;
  }
  return out;
}

/**
 * 4 workers drain `expected` queued jobs of `fn`; rate to the last completion.
 * `limit`: stop after `expected` jobs with more still queued. `track`: progress and RSS over time.
 */
async function drain(
  ctx: Ctx,
  fn: string,
  expected: number,
  { limit = false, track = false }: { limit?: boolean; track?: boolean } = {},
): Promise<Measured> {
  const cfgs = workerCfgs(ctx, fn, 4, "drain", limit ? expected : undefined)
    .map((c) => track ? { ...c, progressMs: TRACK_MS } : c);
  const wk = await spawnLoads(ctx, cfgs);
  const srv = serverMeter(ctx);
  const sampler = track ? rssSampler(ctx) : undefined;
  for (const p of wk) p.send("GO");
  const wres = await collect(ctx, wk);
  const cpu = srv();
  const rss = rssBytes(ctx.server.proc.pid);
  const rssSamples = sampler?.();
  const count = wres.reduce((a, r) => a + r.count, 0);
  assertCount("jobs drained", count, expected);
  const t0 = Math.min(...wres.map((r) => r.goAt));
  const t1 = Math.max(...wres.map((r) => r.lastAt));
  const out: Measured = {
    count,
    seconds: (t1 - t0) / 1000,
    rate: count / ((t1 - t0) / 1000),
    ...(rss !== undefined ? { rssBytes: rss } : {}),
    ...genCpu(wres, t1 - t0),
    ...cpu,
    note: `${fmtCount(count)} drained`,
  };
  // A limited drain ends with jobs still queued, so every NO_JOB is worth a mention.
  const noJobs = wres.reduce((a, r) => a + (r.noJobs ?? 0), 0);
  if (limit && noJobs > 0) out.note += `, ${nf.format(noJobs)} NO_JOB with jobs queued`;
  if (rssSamples) {
    const t = tracked(ctx, wk, wres, rssSamples, count, t0, t1);
    Object.assign(out, t.extra);
    out.note += `, ${t.note}`;
  }
  return out;
}

async function connections(ctx: Ctx, n: number): Promise<Measured> {
  const cfgs: NoBase<LoadConfig>[] = split(n, ctx.procs).map((c) => ({
    role: "echo",
    connections: c,
    concurrency: 64,
  }));
  const ec = await spawnLoads(ctx, cfgs);
  const rss0 = rssBytes(ctx.server.proc.pid);
  const srv = serverMeter(ctx);
  for (const p of ec) p.send("GO");
  const res = await collect(ctx, ec);
  const cpu = srv();
  const count = res.reduce((a, r) => a + r.count, 0);
  assertCount("connections answered", count, n);
  await sleep(300);
  const rss = rssBytes(ctx.server.proc.pid); // all still open
  const t0 = Math.min(...res.map((r) => r.goAt));
  const t1 = Math.max(...res.map((r) => r.doneAt));
  const seconds = (t1 - t0) / 1000;
  const perConn = rss0 !== undefined && rss !== undefined ? (rss - rss0) / n : undefined;
  return {
    count,
    seconds,
    rate: count / seconds,
    ...latency(res),
    ...(rss !== undefined ? { rssBytes: rss } : {}),
    ...(perConn !== undefined ? { bytesPerJob: perConn } : {}),
    ...genCpu(res, t1 - t0),
    ...cpu,
    note: `${fmtCount(count)} conns in ${seconds.toFixed(2)} s` +
      (perConn !== undefined ? `, ${fmtKiB(perConn)}/conn` : ""),
  };
}

function baselineOf(m: Measured, source: string): Baseline | undefined {
  if (m.rate === undefined || m.count === undefined) return undefined;
  const b: Baseline = { source, count: m.count, rate: m.rate };
  if (m.p50Us !== undefined) b.p50Us = m.p50Us;
  if (m.p99Us !== undefined) b.p99Us = m.p99Us;
  if (m.rssBytes !== undefined) b.rssBytes = m.rssBytes;
  if (m.bytesPerJob !== undefined) b.bytesPerJob = m.bytesPerJob;
  return b;
}

/** Our ok row of `phase` in this run, as a baseline. */
function rowBaseline(ctx: Ctx, phase: Phase): Baseline | undefined {
  const row = ctx.rows.find((r) =>
    r.scenario === phase && r.server === "ours" && r.status === "ok"
  );
  return row ? baselineOf(row, `${phase}, ${fmtCount(row.count ?? 0)}`) : undefined;
}

/**
 * Our in-memory background submit rate in this run: the bgsubmit row, else
 * measured now (same load, bgsubmit's size) on a second, in-memory server.
 */
async function inMemoryBaseline(ctx: Ctx): Promise<Baseline | undefined> {
  const row = rowBaseline(ctx, "bgsubmit");
  if (row) return row;
  if (ctx.reference.value) return ctx.reference.value;
  const durable = ctx.server;
  const mem = await startServer("ours", ctx.dl);
  try {
    ctx.server = mem;
    const m = await submitBackground(ctx, "bench_ref", ctx.sizes.bgsubmit);
    const b = baselineOf(m, `bgsubmit, ${fmtCount(ctx.sizes.bgsubmit)}, measured alongside`);
    if (b) ctx.reference.value = b;
    console.log(
      `  (in-memory reference for the durable phases: ${nf.format(m.rate ?? 0)} jobs/s, ${
        fmtCount(ctx.sizes.bgsubmit)
      } jobs)`,
    );
  } finally {
    ctx.server = durable;
    await stopServer(mem);
  }
  return ctx.reference.value;
}

function withBaseline(m: Measured, b: Baseline | undefined): Measured {
  if (!b || m.rate === undefined) return m;
  return {
    ...m,
    baseline: b,
    note: `${m.note ?? ""}; ${(m.rate / b.rate).toFixed(2)}x in-memory (${
      nf.format(b.rate)
    } jobs/s, ${b.source})`,
  };
}

async function runScenario(ctx: Ctx, s: Phase): Promise<Measured> {
  const z = ctx.sizes;
  const ours = ctx.server.kind === "ours";
  const durableJobs = ours ? z.durable : z.durableGearmand;
  // gearmand's SQLite queue keys rows by (unique id, function): jobs without a unique id
  // overwrite each other there, so it gets one per job (as libgearman clients send).
  const unique = !ours || ctx.durableUnique;
  switch (s) {
    case "roundtrip":
      return await foreground(ctx, "bench_rt", 1, 1, 1, 64, z.roundtrip);
    case "pipelined":
      return await foreground(ctx, "bench_pipe", 4, 4, 16, 64, z.pipelined);
    case "kib":
      return await foreground(ctx, "bench_kib", 16, 16, 8, 1024, z.kib);
    case "bgsubmit": {
      ctx.queued = 0;
      const m = await submitBackground(ctx, "bench_bg", z.bgsubmit);
      ctx.queued = z.bgsubmit;
      return m;
    }
    case "drain1m": {
      if (ctx.queued !== z.bgsubmit) {
        // bgsubmit did not run (or failed) on this server: queue them untimed.
        await submitBackground(ctx, "bench_bg", z.bgsubmit);
      }
      ctx.queued = 0;
      return await drain(ctx, "bench_bg", z.bgsubmit);
    }
    case "drain10k":
      await submitBackground(ctx, "bench_d10k", z.drain10k);
      return await drain(ctx, "bench_d10k", z.drain10k);
    case "connections":
      return await connections(ctx, z.connections);
    case "durable-bgsubmit": {
      ctx.queued = 0;
      const base = ours ? await inMemoryBaseline(ctx) : undefined;
      const m = await submitBackground(ctx, "bench_durable", durableJobs, { track: true, unique });
      ctx.queued = durableJobs;
      return withBaseline(m, base);
    }
    case "durable-drain": {
      if (ctx.queued !== durableJobs) {
        // durable-bgsubmit did not run (or failed) on this server: queue them untimed.
        await submitBackground(ctx, "bench_durable", durableJobs, { unique });
      }
      ctx.queued = 0;
      const m = await drain(ctx, "bench_durable", durableJobs, { track: true });
      return withBaseline(m, ours ? rowBaseline(ctx, "drain1m") : undefined);
    }
    case "durable-10m": {
      ctx.queued = 0;
      const base = await inMemoryBaseline(ctx);
      const m = await submitBackground(ctx, "bench_10m", z.durable10m, { track: true, unique });
      ctx.queued = z.durable10m;
      return withBaseline(m, base);
    }
    case "cluster":
      throw new Error("the cluster scenario runs on its own (bench/cluster.ts)");
    case "durable-10m-drain": {
      if (ctx.queued !== z.durable10m) throw new Error("durable-10m did not leave its queue");
      const m = await drain(ctx, "bench_10m", z.durable10mDrain, { limit: true, track: true });
      ctx.queued -= z.durable10mDrain;
      m.note = `${fmtCount(z.durable10mDrain)} of ${fmtCount(z.durable10m)} drained${
        (m.note ?? "").replace(/^[^,]*/, "")
      }`;
      return withBaseline(m, rowBaseline(ctx, "drain1m"));
    }
  }
}

// ---------------------------------------------------------------- formatting

const nf = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function fmtCount(n: number): string {
  if (n >= 1_000_000 && n % 1_000_000 === 0) return `${n / 1_000_000}M`;
  if (n >= 1000 && n % 1000 === 0) return `${n / 1000}k`;
  return nf.format(n);
}

function fmtUs(us: number | undefined): string {
  if (us === undefined) return "";
  if (us < 1000) return `${us.toFixed(0)} µs`;
  if (us < 100_000) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1000).toFixed(0)} ms`;
}

function fmtMiB(b: number | undefined): string {
  return b === undefined ? "" : `${(b / 1048576).toFixed(1)} MiB`;
}

/** A file size: KiB below 1 MiB, GiB from 1 GiB. */
function fmtSize(b: number): string {
  if (b < 1048576) return fmtKiB(b);
  if (b >= 1073741824) return `${(b / 1073741824).toFixed(2)} GiB`;
  return fmtMiB(b);
}

function fmtKiB(b: number): string {
  return `${(b / 1024).toFixed(1)} KiB`;
}

function fmtPct(p: number | undefined): string {
  return p === undefined ? "" : `${p.toFixed(0)}%`;
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || b === 0) return "";
  return `${(a / b).toFixed(2)}x`;
}

const HEADER = [
  "scenario",
  "server",
  "jobs/s",
  "p50",
  "p99",
  "server RSS",
  "notes",
  "load CPU all / max",
  "server CPU",
  "box CPU",
];

function rowCells(r: Row): string[] {
  if (r.status !== "ok") {
    return [
      r.scenario,
      r.server,
      "",
      "",
      "",
      fmtMiB(r.rssBytes),
      `**${r.status.toUpperCase()}**: ${(r.message ?? "").replaceAll("|", "/").slice(0, 160)}`,
      "",
      "",
      "",
    ];
  }
  const gen = r.genCpuPct === undefined
    ? ""
    : `${fmtPct(r.genCpuPct)} / ${fmtPct(r.genMaxPct)}${
      (r.genMaxPct ?? 0) >= SATURATED_PCT ? " (saturated)" : ""
    }`;
  return [
    r.scenario,
    r.server,
    r.rate === undefined ? "" : nf.format(r.rate),
    fmtUs(r.p50Us),
    fmtUs(r.p99Us),
    fmtMiB(r.rssBytes),
    r.note ?? "",
    gen,
    fmtPct(r.srvCpuPct),
    fmtPct(r.boxCpuPct),
  ];
}

function ratioCells(a: Row, b: Row): string[] {
  const ok = a.status === "ok" && b.status === "ok";
  return [
    a.scenario,
    "ours/gearmand",
    ok ? ratio(a.rate, b.rate) : "",
    ok ? ratio(a.p50Us, b.p50Us) : "",
    ok ? ratio(a.p99Us, b.p99Us) : "",
    ok ? ratio(a.rssBytes, b.rssBytes) : "",
    ok && a.bytesPerJob !== undefined && b.bytesPerJob !== undefined && b.bytesPerJob > 0
      ? `${ratio(a.bytesPerJob, b.bytesPerJob)} ${
        a.scenario === "connections" ? "per conn" : "B/job"
      }`
      : "",
    "",
    "",
    "",
  ];
}

/** Ours durable against ours in memory (the row's baseline). */
function baselineCells(r: Row, b: Baseline): string[] {
  const sameCount = r.count === b.count;
  return [
    r.scenario,
    "durable/in-memory",
    ratio(r.rate, b.rate),
    ratio(r.p50Us, b.p50Us),
    ratio(r.p99Us, b.p99Us),
    sameCount ? ratio(r.rssBytes, b.rssBytes) : "",
    `vs ours ${b.source}` +
    (sameCount && r.bytesPerJob !== undefined && b.bytesPerJob !== undefined && b.bytesPerJob > 0
      ? `; ${ratio(r.bytesPerJob, b.bytesPerJob)} B/job`
      : ""),
    "",
    "",
    "",
  ];
}

function markdownTable(rows: Row[], servers: ServerKind[]): string {
  const lines: string[][] = [HEADER];
  for (const s of PHASES) {
    const rs = rows.filter((r) => r.scenario === s);
    for (const r of rs) lines.push(rowCells(r));
    const ours = rs.find((r) => r.server === "ours");
    const theirs = rs.find((r) => r.server === "gearmand");
    if (ours?.status === "ok" && ours.baseline) lines.push(baselineCells(ours, ours.baseline));
    if (
      servers.length === 2 && ours && theirs && ours.status !== "skipped" &&
      theirs.status !== "skipped"
    ) lines.push(ratioCells(ours, theirs));
  }
  const widths = HEADER.map((_, i) => Math.max(...lines.map((l) => [...l[i]!].length)));
  const fmt = (l: string[]) =>
    `| ${l.map((c, i) => c + " ".repeat(widths[i]! - [...c].length)).join(" | ")} |`;
  const numeric = new Set([2, 3, 4, 5, 8, 9]);
  const sep = `|${
    widths.map((w, i) => numeric.has(i) ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2)).join("|")
  }|`;
  return [fmt(lines[0]!), sep, ...lines.slice(1).map(fmt)].join("\n");
}

function drainSummary(rows: Row[]): string {
  const out: string[] = [];
  for (const server of ["ours", "gearmand"] as const) {
    const big = rows.find((r) =>
      r.scenario === "drain1m" && r.server === server && r.status === "ok"
    );
    const small = rows.find((r) =>
      r.scenario === "drain10k" && r.server === server && r.status === "ok"
    );
    if (big?.rate && small?.rate) {
      out.push(
        `drain1m/drain10k rate, ${server}: ${
          (big.rate / small.rate).toFixed(2)
        } (target for ours: >= 0.90)`,
      );
    }
  }
  return out.join("\n");
}

// ---------------------------------------------------------------- machine

interface Machine {
  date: string;
  cores: number;
  cpu: string;
  memory: string;
  kernel: string;
  deno: string;
  v8: string;
  gearmand: string;
  /** Machine CPU busy (percent of all cores) over 1 s before the run: other load. */
  busyBeforePct: number | undefined;
}

async function machine(): Promise<Machine> {
  let cpuinfo = "";
  try {
    cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  } catch { /* not Linux */ }
  const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length || navigator.hardwareConcurrency;
  const cpu = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown";
  let memory = "unknown";
  try {
    const kb = /MemTotal:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"))?.[1];
    if (kb) memory = `${(Number(kb) / 1048576).toFixed(1)} GiB`;
  } catch { /* not Linux */ }
  const j0 = machineJiffies();
  await sleep(1000);
  const j1 = machineJiffies();
  const busyBeforePct = j0 && j1 && j1[1] > j0[1]
    ? (j1[0] - j0[0]) / (j1[1] - j0[1]) * 100
    : undefined;
  let gearmand = "not installed";
  if (gearmandInstalled()) {
    try {
      const o = await new Deno.Command(GEARMAND, {
        args: ["--version"],
        stdout: "piped",
        stderr: "piped",
      })
        .output();
      gearmand = (new TextDecoder().decode(o.stdout).trim().split("\n")[0] ?? "unknown")
        .replace(/ - https?:.*$/, "");
    } catch {
      gearmand = "unknown";
    }
  }
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    cores,
    cpu,
    memory,
    kernel: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    gearmand,
    busyBeforePct,
  };
}

// ---------------------------------------------------------------- docs

const BEGIN = "<!-- bench:results:begin (written by bench/main.ts; edit outside these markers) -->";
const END = "<!-- bench:results:end -->";

function resultsSection(
  m: Machine,
  opts: Options,
  table: string,
  summary: string,
  totalS: number,
): string {
  return `${BEGIN}

## Latest results

Run ${m.date} with \`deno run -A bench/main.ts${opts.argv.length ? " " + opts.argv.join(" ") : ""}\`
(${totalS.toFixed(0)} s in all).

| machine | |
|---|---|
| CPU | ${m.cpu}, ${m.cores} cores |
| memory | ${m.memory} |
| kernel | ${m.kernel} |
| Deno | ${m.deno} (V8 ${m.v8}) |
| gearmand | ${m.gearmand} |
| CPU busy before the run | ${
    m.busyBeforePct === undefined ? "?" : fmtPct(m.busyBeforePct)
  } of all cores (other load on the machine) |

${table}
${summary ? `\n${summary}\n` : ""}
${END}`;
}

const DOC_INTRO = `# Benchmarks

\`deno task bench\` runs our server and C++ gearmand side by side with the same load generator.
See "How it works" below for what each scenario does.

`;

const DOC_METHOD = `
## How it works

- \`bench/main.ts\` starts each server as a subprocess on a free port of 127.0.0.1: ours as
  \`deno run -A server.ts --host 127.0.0.1 --port P --log-level error\`, gearmand as
  \`/usr/sbin/gearmand --listen=127.0.0.1 --port=P -t 4 -b 4096 --log-file=none\` (skipped with
  a notice when not installed). Both are run through \`bash -c 'ulimit -n 65536 ...; exec ...'\`
  (falling back to the hard limit), so the fd limit is raised and the PID is the server's own.
  A fresh server is started for each scenario, except that drain1m drains what bgsubmit left
  (and durable-drain what durable-bgsubmit left, durable-10m-drain what durable-10m left).
  The durable scenarios add the store flags; the temp dir is removed when the server stops.
- The load comes from \`bench/load_process.ts\` processes (\`--procs\`, default 2 per role), each
  given a JSON config. They speak the raw protocol with the project's \`PacketFramer\` and
  \`PacketWriter\` (no client library), keep several jobs in flight per connection, coalesce
  writes, print \`READY\` once connected, start on \`GO\`, and print a JSON result with their
  own CPU time (\`process.cpuUsage()\`).
- Workers answer \`JOB_ASSIGN\` with \`WORK_COMPLETE\` (echoing the payload) and the next
  \`GRAB_JOB\` in one write; on \`NO_JOB\` they send \`PRE_SLEEP\`, on \`NOOP\` \`GRAB_JOB\`.
  Draining workers stop at their first \`NO_JOB\`.
- jobs/s is jobs over the time from the first \`GO\` to the last reply (for drains: to the last
  \`WORK_COMPLETE\` sent). Latency is per job, from its submit to its \`WORK_COMPLETE\`
  (\`JOB_CREATED\` for background jobs; for connections, from connect to \`ECHO_RES\`), from
  merged 2%-wide log histograms. For connections, jobs/s is connections opened and answered
  per second.
- server RSS is \`VmRSS\` from \`/proc/PID/status\` when the scenario ends (bgsubmit: all jobs
  queued; drain1m: after the drain; connections: all connections still open). B/job is the
  RSS growth during bgsubmit divided by the jobs queued; per conn, the RSS growth during
  connections divided by the connections.
- load CPU is the CPU time of all load processes over the measured window (percent of one
  core) and that of the busiest one; "saturated" marks a load process at >= ${SATURATED_PCT}% of a core,
  where the generator, not the server, may be the limit. server CPU is utime+stime of the server
  process (all threads) over the window, percent of one core. box CPU is the whole machine's busy
  time over the window, percent of all cores: near 100% the machine itself is the limit. On a
  machine with few cores the server and the load processes share them: compare the ratio rows
  rather than absolute numbers.
- Every scenario has a time limit; a scenario that runs out is reported as TIMEOUT and every
  subprocess is killed. The run exits 1 when a scenario failed or timed out.

| scenario | load |
|---|---|
| roundtrip | 1 client, 1 worker, one 64 B job at a time |
| pipelined | 4 clients x 16 in flight, 4 workers, 64 B foreground jobs (SUBMIT_JOB) |
| kib | 16 clients x 8 in flight, 16 workers, 1 KiB payloads |
| bgsubmit | 1M background jobs (quick: 50k), 4 clients x 64 in flight, no workers |
| drain1m | 4 workers drain the queue bgsubmit left |
| drain10k | 10k background jobs queued, then 4 workers drain them |
| connections | 10,000 connections (quick: 1,000), 64 connecting at a time per load process, each ECHO_REQ / ECHO_RES, all kept open |
| durable-bgsubmit | bgsubmit against a SQLite queue in a temp dir (ours: \`--store sqlite:PATH\`, 1M jobs, quick 20k; gearmand: \`-q libsqlite3 --libsqlite3-db=PATH\`, 20k jobs, quick 1k, as it commits each job on its own, each with a unique id, as its queue keys rows by it); ours is also compared with its in-memory bgsubmit of the same run (measured alongside when bgsubmit is not run) |
| durable-drain | 4 workers drain what durable-bgsubmit left |
| durable-10m | full run only (or named in \`--scenarios\`), ours only: 10M 64 B background jobs into a store with the default \`--max-memory-jobs\` (1M; the rest wait on disk), RSS at 10M queued; then durable-10m-drain: 4 workers drain the first 1M (quick: 100k jobs, \`--max-memory-jobs 10000\`, 20k drained) |

Flags: \`--quick\` (small sizes, CI smoke, < 60 s), \`--scenarios a,b\`, \`--jobs N\`,
\`--connections N\`, \`--durable-unique\`, \`--server ours|gearmand|both\`, \`--procs N\`, \`--timeout S\`,
\`--json PATH\`, \`--write\`/\`--no-write\` (docs/BENCHMARKS.md is written by default only by a
full default run), \`--out PATH\`.
`;

function writeDocs(path: string, section: string): void {
  let text: string;
  try {
    const old = Deno.readTextFileSync(path);
    const a = old.indexOf(BEGIN);
    const b = old.indexOf(END);
    text = a >= 0 && b > a
      ? old.slice(0, a) + section + old.slice(b + END.length)
      : DOC_INTRO + section + "\n" + DOC_METHOD;
  } catch {
    text = DOC_INTRO + section + "\n" + DOC_METHOD;
  }
  Deno.writeTextFileSync(path, text);
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  let opts: Options | undefined;
  try {
    opts = parseOptions(Deno.args);
  } catch (err) {
    console.error(`error: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!opts) return 0;
  const started = performance.now();
  let servers = opts.servers;
  if (servers.includes("gearmand") && !gearmandInstalled()) {
    console.log(
      `notice: ${GEARMAND} is not installed: skipping gearmand (apt-get install gearman-job-server)`,
    );
    servers = servers.filter((s) => s !== "gearmand");
  }
  if (servers.length === 0) return 0;
  const m = await machine();
  console.log(
    `bench: ${m.cpu}, ${m.cores} cores; Deno ${m.deno}; ${m.gearmand}; ` +
      `CPU busy before the run ${fmtPct(m.busyBeforePct)}; ` +
      `scenarios ${opts.scenarios.join(",")}; servers ${servers.join(",")}`,
  );

  const rows: Row[] = [];
  const reference: Ctx["reference"] = {};
  const report = (row: Row, secs: string) => {
    rows.push(row);
    console.log(
      `  ${row.scenario.padEnd(17)} ${row.server.padEnd(8)} ${
        row.status === "ok"
          ? `${nf.format(row.rate ?? 0)} jobs/s  p50 ${fmtUs(row.p50Us) || "-"}  p99 ${
            fmtUs(row.p99Us) || "-"
          }  RSS ${fmtMiB(row.rssBytes)}  ${row.note ?? ""}`
          : `${row.status.toUpperCase()}: ${row.message}`
      }  [${secs} s]`,
    );
  };
  for (const group of GROUPS) {
    const chosen = group.phases.filter((s) =>
      opts.scenarios.includes(s as Scenario) ||
      (s === "durable-10m-drain" && opts.scenarios.includes("durable-10m"))
    );
    if (chosen.length === 0) continue;
    for (const kind of servers) {
      if (kind === "gearmand" && group.oursOnly) {
        report({
          scenario: chosen[0]!,
          server: kind,
          status: "skipped",
          message: gearmandSkipReason(group.oursOnly, rows),
        }, "0.0");
        continue;
      }
      if (kind === "gearmand" && group.store && !(await gearmandHasSqlite())) {
        for (const s of chosen) {
          report({
            scenario: s,
            server: kind,
            status: "skipped",
            message: `${GEARMAND} was built without its libsqlite3 queue (no --libsqlite3-db ` +
              `in --help)`,
          }, "0.0");
        }
        continue;
      }
      const ctx: Ctx = {
        server: undefined as unknown as ServerHandle,
        sizes: opts.sizes,
        procs: opts.procs,
        dl: new Deadline(1),
        loads: [],
        queued: 0,
        rows,
        reference,
        durableUnique: opts.durableUnique,
      };
      const serverOpts: ServerOptions = {
        store: group.store ?? false,
        maxMemoryJobs: group.phases.includes("durable-10m")
          ? opts.sizes.durable10mMemory
          : undefined,
      };
      let server: ServerHandle | undefined;
      try {
        for (const s of chosen) {
          if (s === "durable-10m-drain" && (!server || ctx.queued !== opts.sizes.durable10m)) {
            report({
              scenario: s,
              server: kind,
              status: "skipped",
              message: "durable-10m did not complete, so there is no 10M queue to drain",
            }, "0.0");
            continue;
          }
          const dl = new Deadline(
            (kind === "gearmand" ? opts.gearmandTimeoutS[s] : undefined) ?? opts.timeoutS[s],
          );
          ctx.dl = dl;
          const t0 = performance.now();
          let row: Row;
          try {
            if (!server || !server.proc.running) {
              await stopServer(server);
              server = await startServer(kind, dl, serverOpts);
              ctx.queued = 0;
            }
            ctx.server = server;
            const measured = await runScenario(ctx, s);
            row = { scenario: s, server: kind, status: "ok", ...measured };
          } catch (err) {
            const timeout = err instanceof TimeoutError;
            let message = (err as Error).message;
            if (timeout) message = `no result within ${dl.seconds} s (${message})`;
            if (server && !server.proc.running) {
              message += `; the server exited (code ${server.proc.status?.code})` +
                (server.proc.stderr
                  ? `: ${server.proc.stderr.split("\n").slice(-2).join(" / ")}`
                  : "");
            }
            row = { scenario: s, server: kind, status: timeout ? "timeout" : "error", message };
            const rss = server ? rssBytes(server.proc.pid) : undefined;
            if (rss !== undefined) row.rssBytes = rss;
            // Whatever the scenario left behind, the next one gets a fresh server.
            await stopServer(server);
            server = undefined;
            ctx.queued = 0;
          } finally {
            await Promise.all(ctx.loads.map((p) => p.stop()));
            ctx.loads = [];
          }
          report(row, ((performance.now() - t0) / 1000).toFixed(1));
        }
      } finally {
        await stopServer(server);
      }
    }
  }

  let clusterRows: ClusterRow[] = [];
  if (opts.scenarios.includes("cluster")) {
    // Ours only: several of our servers on one PostgreSQL (gearmand has no shared queue).
    clusterRows = await runClusterBench({
      spawn: (name, argv) => new Proc(name, argv),
      deadline: (seconds) => new Deadline(seconds),
    }, {
      jobs: Math.max(2000, Math.round(opts.sizes.durable / 5)),
      timeoutS: opts.timeoutS.cluster,
      // Servers held to a quarter of a CPU each, as if each had a small machine of its own.
      ...(opts.quick ? {} : { cpuLimit: 0.25 }),
    });
  }
  const totalS = (performance.now() - started) / 1000;
  const table = markdownTable(rows, servers);
  const clusterSection = clusterRows.length === 0 ? "" : "### Postgres cluster (`cluster`)\n\n" +
    "Ours only (gearmand has no shared queue): 1, then 3 servers on one PostgreSQL " +
    "(Debian's, default settings, fsync on), the same load for both (3 load processes of 4 " +
    "connections): background submits (then a quarter as many, each with a unique id) and a " +
    "drain spread over the servers, and the time from a submit on one server to the NOOP a " +
    "sleeping worker on another gets. Then 1 and 3 servers each held to 0.25 CPU (a cgroup " +
    "quota), as if each had a small machine of its own: uncapped, the servers share this " +
    "machine's cores with PostgreSQL and the load, so a second and third server cannot show " +
    "what they add. CPUs busy and CPU per job count every process (PostgreSQL, servers, " +
    "load).\n\n" + clusterTable(clusterRows);
  // The drain ratios as a list; the cluster section (a heading and a table) as it is.
  const drains = drainSummary(rows);
  const summary = [
    drains === "" ? "" : drains.split("\n").map((l) => `- ${l}`).join("\n"),
    clusterSection,
  ].filter((x) => x !== "").join("\n\n");
  console.log(`\n${table}\n${summary ? `\n${summary}\n` : ""}`);
  console.log(`total ${totalS.toFixed(1)} s`);
  if (opts.json) {
    Deno.writeTextFileSync(
      opts.json,
      JSON.stringify({ machine: m, argv: opts.argv, totalSeconds: totalS, rows }, null, 2) + "\n",
    );
  }
  if (opts.write) {
    writeDocs(opts.out, resultsSection(m, opts, table, summary, totalS));
    console.log(`wrote ${opts.out}`);
  } else {
    console.log("(docs/BENCHMARKS.md not written: pass --write to write it)");
  }
  return rows.every((r) => r.status === "ok" || r.status === "skipped") &&
      clusterRows.every((r) => r.status === "ok" || r.status === "skipped")
    ? 0
    : 1;
}

/** Why gearmand skips an ours-only group, with the time it would take at its measured rate. */
function gearmandSkipReason(reason: string, rows: Row[]): string {
  const measured = rows.find((r) =>
    r.scenario === "durable-bgsubmit" && r.server === "gearmand" && r.status === "ok"
  );
  if (!measured?.rate) return reason;
  return `${reason} (${(10_000_000 / measured.rate / 3600).toFixed(1)} h at the ${
    nf.format(measured.rate)
  } jobs/s of durable-bgsubmit)`;
}

if (import.meta.main) {
  const killAll = () => {
    for (const p of live) {
      try {
        p.child.kill("SIGKILL");
      } catch { /* gone */ }
    }
    // The servers are gone (or going): their stores with them.
    for (const d of [...tempDirs]) removeDir(d);
  };
  const onSignal = () => {
    killAll();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let code = 1;
  try {
    code = await main();
  } finally {
    killAll();
  }
  Deno.exit(code);
}
