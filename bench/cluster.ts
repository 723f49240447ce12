// The `cluster` scenario of `deno task bench`: our servers on one
// PostgreSQL (`--store postgres://...`), 1 and then 3 of them.
//
// For each cluster size: background submits spread over the servers, then
// a quarter as many with a unique id each (coalescing is checked in the
// database, cluster-wide), then a drain by workers spread over the servers
// (all sharing one total: the driver stops them when the sum of their
// PROGRESS counts reaches it), and, with more than one server, the wake-up
// latency from a submit on one server to the NOOP a sleeping worker on
// another gets. The load is the same whatever the cluster's size (LOADS
// processes of 4 connections each, given to the servers in turn), so the
// 1- and 3-server rows differ only in the servers. PostgreSQL is Debian's,
// started in a temp dir on a free loopback port (tests/_postgres.ts);
// gearmand has no equivalent, so there is no ratio to it: the 3-server rows
// are compared with the 1-server rows.

import { Histogram, type LoadConfig, type LoadResult, type Progress } from "./_shared.ts";
import { postgresBin, startPostgres, type TempPostgres } from "../tests/_postgres.ts";
import { PacketClient } from "../src/client/packet_client.ts";
import { CpuLimit } from "./cpu_limit.ts";

/** What the driver lends this scenario: its child process and deadline types. */
export interface ClusterDeps {
  spawn(name: string, argv: string[]): ClusterProc;
  deadline(seconds: number): unknown;
}

/** The driver's child process, as used here. */
export interface ClusterProc {
  readonly pid: number;
  readonly progress: Progress[];
  readonly stderr: string;
  expect(prefix: string, dl: unknown): Promise<string>;
  send(line: string): void;
  stop(graceMs?: number): Promise<void>;
  kill(): Promise<void>;
}

/** One measured row. */
export interface ClusterRow {
  phase: "submit" | "unique" | "drain" | "wake";
  servers: number;
  jobs: number;
  rate?: number;
  p50Ms?: number;
  p99Ms?: number;
  /** Each server was held to this many CPUs (a cgroup quota); none: the whole machine. */
  cpuLimit?: number;
  /** Share of the machine's CPUs busy (all processes) while the jobs ran, 0-1. */
  cpuBusy?: number;
  /** CPU time (all processes: PostgreSQL, servers, load) per job, in microseconds. */
  cpuUsPerJob?: number;
  status: "ok" | "error" | "skipped";
  message?: string;
}

const SERVER_PATH = new URL("../server.ts", import.meta.url).pathname;
const LOAD_SCRIPT = new URL("./load_process.ts", import.meta.url).pathname;
const HOST = "127.0.0.1";
const FN = "pgbench";
const WAKES = 200;
/** Load processes (4 connections each) in every phase, whatever the number of servers. */
const LOADS = 3;

async function startServers(
  deps: ClusterDeps,
  url: string,
  n: number,
  dl: unknown,
): Promise<{ procs: ClusterProc[]; ports: number[] }> {
  const procs = Array.from({ length: n }, (_, i) =>
    deps.spawn(`server ${i + 1}/${n}`, [
      Deno.execPath(),
      "run",
      "-A",
      // As for the other scenarios' servers, e.g. BENCH_DENO_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof".
      ...(Deno.env.get("BENCH_DENO_FLAGS")?.split(" ").filter(Boolean) ?? []),
      SERVER_PATH,
      "--host",
      HOST,
      "--port",
      "0",
      "--log-level",
      "warning",
      "--store",
      url,
    ]));
  const ports: number[] = [];
  for (const p of procs) {
    const line = await p.expect("listening on", dl);
    ports.push(Number(line.slice(line.lastIndexOf(":") + 1)));
  }
  return { procs, ports };
}

async function spawnLoads(
  deps: ClusterDeps,
  cfgs: LoadConfig[],
  dl: unknown,
): Promise<ClusterProc[]> {
  const procs = cfgs.map((cfg, i) =>
    deps.spawn(`load ${cfg.role} #${i}`, [
      Deno.execPath(),
      "run",
      "-A",
      LOAD_SCRIPT,
      JSON.stringify(cfg),
    ])
  );
  await Promise.all(procs.map((p) => p.expect("READY", dl)));
  return procs;
}

/** The machine's CPU time so far (Linux /proc/stat, in clock ticks), or undefined elsewhere. */
interface CpuSample {
  busy: number;
  total: number;
}

function cpuSample(): CpuSample | undefined {
  try {
    const first = Deno.readTextFileSync("/proc/stat").split("\n", 1)[0]!;
    const ticks = first.trim().split(/\s+/).slice(1, 9).map(Number);
    const idle = ticks[3]! + ticks[4]!; // idle + iowait
    const total = ticks.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** How busy the machine was between two samples, and its CPU time per job. */
function cpuFigures(
  from: CpuSample | undefined,
  jobs: number,
): Pick<ClusterRow, "cpuBusy" | "cpuUsPerJob"> {
  const to = cpuSample();
  if (from === undefined || to === undefined || to.total === from.total || jobs === 0) return {};
  const busy = to.busy - from.busy;
  // Ticks are 1/100 s (USER_HZ) on Linux.
  return { cpuBusy: busy / (to.total - from.total), cpuUsPerJob: (busy * 10_000) / jobs };
}

async function results(procs: ClusterProc[], dl: unknown): Promise<LoadResult[]> {
  const lines = await Promise.all(procs.map((p) => p.expect("RESULT", dl)));
  return lines.map((l) => JSON.parse(l) as LoadResult);
}

/**
 * Submit `jobs` background jobs spread over the servers (with `unique`,
 * each with its own unique id); the rate at JOB_CREATED.
 */
async function submitPhase(
  deps: ClusterDeps,
  ports: number[],
  jobs: number,
  dl: unknown,
  maxMs: number,
  unique = false,
): Promise<ClusterRow> {
  const share = (i: number) => Math.floor(jobs / LOADS) + (i < jobs % LOADS ? 1 : 0);
  const loads = await spawnLoads(
    deps,
    Array.from({ length: LOADS }, (_, i) => ({
      role: "submit",
      host: HOST,
      port: ports[i % ports.length]!,
      connections: 4,
      maxMs,
      fn: FN,
      background: true,
      jobs: share(i),
      inflight: 64,
      payload: 64,
      ...(unique ? { uniquePrefix: `s${i}c` } : {}),
    })),
    dl,
  );
  try {
    const cpu0 = cpuSample();
    for (const l of loads) l.send("GO");
    const res = await results(loads, dl);
    const done = res.reduce((n, r) => n + r.count, 0);
    const cpu = cpuFigures(cpu0, done);
    const t0 = Math.min(...res.map((r) => r.goAt));
    const t1 = Math.max(...res.map((r) => r.doneAt));
    const hist = new Histogram();
    for (const r of res) hist.addPairs(r.hist);
    const ms = (us: number | undefined) => us === undefined ? undefined : us / 1000;
    return {
      phase: unique ? "unique" : "submit",
      servers: ports.length,
      jobs: done,
      rate: done / ((t1 - t0) / 1000),
      ...optional("p50Ms", ms(hist.quantileUs(0.5))),
      ...optional("p99Ms", ms(hist.quantileUs(0.99))),
      ...cpu,
      status: done === jobs ? "ok" : "error",
      ...(done === jobs ? {} : { message: `${done} of ${jobs} acknowledged` }),
    };
  } finally {
    await Promise.all(loads.map((l) => l.stop()));
  }
}

function optional<K extends string>(key: K, v: number | undefined): Partial<Record<K, number>> {
  return v === undefined ? {} : { [key]: v } as Record<K, number>;
}

/** Workers on every server drain `jobs` queued jobs; the rate to the last WORK_COMPLETE. */
async function drainPhase(
  deps: ClusterDeps,
  ports: number[],
  jobs: number,
  dl: unknown,
  maxMs: number,
): Promise<ClusterRow> {
  const loads = await spawnLoads(
    deps,
    Array.from({ length: LOADS }, (_, i) => ({
      role: "worker",
      host: HOST,
      port: ports[i % ports.length]!,
      connections: 4,
      maxMs,
      progressMs: 50,
      fn: FN,
      mode: "drain",
      // More than there is: no process ends by itself; STOP ends them all at the total.
      limit: jobs + 1,
    })),
    dl,
  );
  try {
    const cpu0 = cpuSample();
    for (const l of loads) l.send("GO");
    const deadline = Date.now() + maxMs;
    const latest = (p: ClusterProc) => p.progress.at(-1)?.count ?? 0;
    let ran = 0;
    while ((ran = loads.reduce((n, l) => n + latest(l), 0)) < jobs) {
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const cpu = cpuFigures(cpu0, ran);
    for (const l of loads) l.send("STOP");
    const res = await results(loads, dl);
    const done = res.reduce((n, r) => n + r.count, 0);
    const t0 = Math.min(...res.map((r) => r.goAt));
    const t1 = Math.max(...res.map((r) => r.lastAt));
    return {
      phase: "drain",
      servers: ports.length,
      jobs: done,
      rate: done / ((t1 - t0) / 1000),
      ...cpu,
      status: done >= jobs ? "ok" : "error",
      ...(done >= jobs ? {} : { message: `${done} of ${jobs} run in time` }),
    };
  } finally {
    await Promise.all(loads.map((l) => l.stop()));
  }
}

/** A sleeping worker on the last server; one submit at a time on the first: submit to NOOP. */
async function wakePhase(ports: number[]): Promise<ClusterRow> {
  const client = await PacketClient.connect({ hostname: HOST, port: ports[0]! });
  const worker = await PacketClient.connect({ hostname: HOST, port: ports.at(-1)! });
  const ms: number[] = [];
  try {
    worker.send("CAN_DO", "wake");
    for (let i = 0; i < WAKES; i++) {
      worker.send("GRAB_JOB");
      let p = await worker.receive(5000);
      while (p.name === "NOOP") p = await worker.receive(5000);
      if (p.name !== "NO_JOB") throw new Error(`expected NO_JOB, got ${p.name}`);
      worker.send("PRE_SLEEP");
      await new Promise((r) => setTimeout(r, 5));
      const t0 = performance.now();
      client.send("SUBMIT_JOB_BG", "wake", "", String(i));
      const noop = await worker.receive(5000);
      if (noop.name !== "NOOP") throw new Error(`expected NOOP, got ${noop.name}`);
      ms.push(performance.now() - t0);
      const created = await client.receive(5000);
      if (created.name !== "JOB_CREATED") {
        throw new Error(`expected JOB_CREATED, got ${created.name}`);
      }
      worker.send("GRAB_JOB");
      const job = await worker.receive(5000);
      if (job.name !== "JOB_ASSIGN") throw new Error(`expected JOB_ASSIGN, got ${job.name}`);
      worker.send("WORK_COMPLETE", job.args[0]!, "");
    }
  } finally {
    await client.close();
    await worker.close();
  }
  ms.sort((a, b) => a - b);
  return {
    phase: "wake",
    servers: ports.length,
    jobs: ms.length,
    p50Ms: ms[Math.floor(ms.length * 0.5)]!,
    p99Ms: ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))]!,
    status: "ok",
  };
}

/** One cluster to measure: its size, and the CPU budget of each server (none: the whole machine). */
interface ClusterSetup {
  servers: number;
  cpuLimit?: number;
}

/**
 * Run the cluster scenario on a fresh PostgreSQL: 1 and 3 servers, then
 * (if `cpuLimit` is given and the machine allows) 1 and 3 servers each held
 * to that many CPUs, as if each had a small machine of its own: on a small
 * machine, the uncapped servers share its CPUs with PostgreSQL and the load,
 * so adding servers cannot show what they add. Returns its rows (errors as
 * rows) and prints progress.
 */
export async function runClusterBench(
  deps: ClusterDeps,
  options: { jobs: number; timeoutS: number; cpuLimit?: number },
): Promise<ClusterRow[]> {
  const rows: ClusterRow[] = [];
  if (postgresBin() === undefined) {
    const message = "PostgreSQL is not installed (apt-get install -y postgresql)";
    console.log(`  cluster: SKIPPED: ${message}`);
    return [{ phase: "submit", servers: 0, jobs: 0, status: "skipped", message }];
  }
  const setups: ClusterSetup[] = [{ servers: 1 }, { servers: 3 }];
  if (options.cpuLimit !== undefined) {
    setups.push({ servers: 1, cpuLimit: options.cpuLimit }, {
      servers: 3,
      cpuLimit: options.cpuLimit,
    });
  }
  let pg: TempPostgres | undefined;
  try {
    pg = await startPostgres();
    for (const [i, setup] of setups.entries()) {
      rows.push(...await runSetup(deps, pg, `gearman_bench_${i}`, setup, options));
    }
  } catch (err) {
    rows.push({
      phase: "submit",
      servers: 0,
      jobs: 0,
      status: "error",
      message: `cannot run the cluster scenario: ${(err as Error).message}`,
    });
    console.log(`  cluster: ERROR: ${(err as Error).message}`);
  } finally {
    await pg?.stop();
  }
  return rows;
}

/**
 * One cluster: submits, unique submits, a drain and (with several servers)
 * wake-ups; capped clusters submit half the jobs and drain them (a quarter
 * of a CPU drains a few thousand jobs a second).
 */
async function runSetup(
  deps: ClusterDeps,
  pg: TempPostgres,
  database: string,
  setup: ClusterSetup,
  options: { jobs: number; timeoutS: number },
): Promise<ClusterRow[]> {
  const n = setup.servers;
  const capped = setup.cpuLimit !== undefined;
  const label = capped ? `${n} server(s) x ${setup.cpuLimit} CPU` : `${n} server(s)`;
  const tag = (row: ClusterRow): ClusterRow => capped ? { ...row, cpuLimit: setup.cpuLimit! } : row;
  const limits: CpuLimit[] = [];
  for (let i = 0; capped && i < n; i++) {
    const limit = CpuLimit.create(`gearman-bench-${Deno.pid}-${i}`, setup.cpuLimit!);
    if (typeof limit === "string") {
      for (const l of limits) l.remove();
      console.log(`  cluster ${label}: SKIPPED: ${limit}`);
      return [tag({ phase: "submit", servers: n, jobs: 0, status: "skipped", message: limit })];
    }
    limits.push(limit);
  }
  const url = await pg.createDatabase(database);
  const dl = deps.deadline(options.timeoutS);
  const maxMs = options.timeoutS * 1000;
  const jobs = capped ? Math.round(options.jobs / 2) : options.jobs;
  const uniqueJobs = capped ? 0 : Math.round(jobs / 4);
  const phases = capped
    ? ["submit", "drain"] as const
    : n === 1
    ? ["submit", "unique", "drain"] as const
    : ["submit", "unique", "drain", "wake"] as const;
  const rows: ClusterRow[] = [];
  let servers: ClusterProc[] = [];
  try {
    const started = await startServers(deps, url, n, dl);
    servers = started.procs;
    servers.forEach((s, i) => limits[i]?.add(s.pid));
    for (const phase of phases) {
      const t0 = performance.now();
      let row: ClusterRow;
      try {
        row = phase === "submit"
          ? await submitPhase(deps, started.ports, jobs, dl, maxMs)
          : phase === "unique"
          ? await submitPhase(deps, started.ports, uniqueJobs, dl, maxMs, true)
          : phase === "drain"
          ? await drainPhase(deps, started.ports, jobs + uniqueJobs, dl, maxMs)
          : await wakePhase(started.ports);
      } catch (err) {
        row = { phase, servers: n, jobs: 0, status: "error", message: (err as Error).message };
      }
      rows.push(tag(row));
      console.log(
        `  cluster-${phase.padEnd(10)} ${label}  ${describeRow(row)}  [${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s]`,
      );
    }
  } finally {
    if (Deno.env.get("BENCH_DENO_FLAGS")?.includes("--cpu-prof")) {
      // A profile is written only at a clean exit: SIGINT (the server drains and exits).
      for (const s of servers) {
        try {
          Deno.kill(s.pid, "SIGINT");
        } catch { /* already gone */ }
      }
    }
    await Promise.all(servers.map((s) => s.stop(3000)));
    for (const l of limits) l.remove();
  }
  return rows;
}

const nf = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

function describeRow(r: ClusterRow): string {
  if (r.status !== "ok") return `${r.status.toUpperCase()}: ${r.message}`;
  if (r.phase === "wake") {
    return `submit to NOOP p50 ${r.p50Ms!.toFixed(2)} ms, p99 ${r.p99Ms!.toFixed(2)} ms`;
  }
  return `${nf.format(r.rate!)} jobs/s (${nf.format(r.jobs)} jobs)${
    r.p50Ms !== undefined ? `  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms!.toFixed(2)} ms` : ""
  }${cpuText(r)}`;
}

function cpuText(r: ClusterRow): string {
  return r.cpuBusy === undefined
    ? ""
    : `  CPUs ${(r.cpuBusy * 100).toFixed(0)}% busy, ${r.cpuUsPerJob!.toFixed(1)} µs CPU/job`;
}

function serversText(r: ClusterRow): string {
  return r.cpuLimit === undefined ? String(r.servers) : `${r.servers}, ${r.cpuLimit} CPU each`;
}

/** The rows as a markdown table, with the 3-server/1-server ratios. */
export function clusterTable(rows: ClusterRow[]): string {
  const lines = [
    "| phase | servers | jobs | jobs/s | p50 | p99 | CPUs busy | CPU per job | 3 servers / 1 server |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    if (r.status !== "ok") {
      lines.push(
        `| ${r.phase} | ${serversText(r)} | | ${r.status.toUpperCase()}: ${r.message} | | | | | |`,
      );
      continue;
    }
    const one = rows.find((o) =>
      o.phase === r.phase && o.servers === 1 && o.cpuLimit === r.cpuLimit && o.status === "ok"
    );
    const scale = r.servers === 3 && one?.rate && r.rate
      ? `${(r.rate / one.rate).toFixed(2)}x`
      : "";
    lines.push(
      `| ${
        r.phase === "wake"
          ? "wake (submit on one server to NOOP on another)"
          : r.phase === "unique"
          ? "submit, each with a unique id"
          : r.phase
      } | ${serversText(r)} | ${nf.format(r.jobs)} | ${
        r.rate !== undefined ? nf.format(r.rate) : ""
      } | ${r.p50Ms !== undefined ? `${r.p50Ms.toFixed(2)} ms` : ""} | ${
        r.p99Ms !== undefined ? `${r.p99Ms.toFixed(2)} ms` : ""
      } | ${r.cpuBusy !== undefined ? `${(r.cpuBusy * 100).toFixed(0)}%` : ""} | ${
        r.cpuUsPerJob !== undefined ? `${r.cpuUsPerJob.toFixed(1)} µs` : ""
      } | ${scale} |`,
    );
  }
  return lines.join("\n");
}
