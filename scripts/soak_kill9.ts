/**
 * Kill -9 soak for the durable job stores (`--store sqlite:PATH`, or with
 * `--postgres` a PostgreSQL of its own, started in a temp dir).
 *
 * Each round starts the server on a SQLite file (the same one every round,
 * or a fresh one with `--fresh`) or database, runs client connections that
 * submit background jobs as fast as they are acknowledged (each job's data
 * is its name; every other one has its name as unique id, the rest none)
 * and workers that run them, and
 * SIGKILLs the server at a random moment while submits are in flight. It
 * then restarts the server and drains the queue with workers that record
 * every job they run; unless `--no-drain-kill`, that drain is itself killed
 * part way (so deletes race the kill too) and a third server drains the
 * rest. Then it checks:
 *
 * - lost: a job that got JOB_CREATED was never run (must be 0);
 * - re-run-after-kill: run by two server processes (allowed: its
 *   WORK_COMPLETE or the delete's commit did not make it before a kill),
 *   counted apart;
 * - duplicates: run twice by the same server process (must be 0);
 * - wrong handle / wrong data: a replayed job came back with another
 *   handle, unique or data (must be 0);
 * - leftover: jobs the store still held at the start of the next round,
 *   after a drain that ended with `status` at 0 (must be 0); after the last
 *   round the file itself is opened and must hold no jobs. With Postgres, a
 *   drain ends when the jobs table is empty (a killed server's jobs come
 *   back after its lease, 1 s here), and the table must be empty at the end.
 *
 * ```sh
 * deno run -A scripts/soak_kill9.ts [--rounds 20] [--clients 4] [--window 32]
 *   [--workers 2] [--kill-min 100] [--kill-max 1500] [--seed N] [--fresh] [--no-drain-kill]
 *   [--dir DIR] [--max-memory-jobs N] [--store-sync normal|full] [--postgres]
 * ```
 *
 * Exits 1 when any round breaks a rule above.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { ServerProcess } from "../tests/store/_process.ts";
import { startPostgres, type TempPostgres } from "../tests/_postgres.ts";
import { AdminClient, ConnectionClosedError, PacketClient } from "../client.ts";

const FN = "soak";

/** Soak settings. */
export interface SoakOptions {
  /** Rounds (kill + restart + drain each). */
  rounds: number;
  /** Client connections submitting per round. */
  clients: number;
  /** Submits each client keeps in flight. */
  window: number;
  /** Workers running jobs while submits go on (and draining after the restart). */
  workers: number;
  /** The kill comes this many ms after submits start, at least... */
  killMinMs: number;
  /** ...and at most. */
  killMaxMs: number;
  /** Seed of the random kill times. */
  seed: number;
  /** A new store file per round instead of one for all rounds. */
  fresh: boolean;
  /** Also kill -9 the server once part way through each round's drain. */
  drainKill: boolean;
  /** More server flags (e.g. `--max-memory-jobs 500`, `--store-sync full`). */
  serverArgs?: string[];
  /** Directory for the store file(s); a temp dir (removed after) when omitted. */
  dir?: string;
  /** A PostgreSQL of the soak's own instead of SQLite files. */
  postgres?: boolean;
  /** Longest drain per round, in ms. */
  drainTimeoutMs: number;
  /** Where progress lines go. */
  log: (line: string) => void;
}

/** What one round saw. */
export interface RoundResult {
  round: number;
  killAtMs: number;
  /** When the drain was killed, ms after the restart (-1: it was not). */
  drainKillAtMs: number;
  submitted: number;
  acknowledged: number;
  /** Job runs in all (a re-run counts twice). */
  runs: number;
  /** Runs before the kill. */
  runsBeforeKill: number;
  /** Acknowledged jobs never run. */
  lost: number;
  /** Jobs run by more than one server process (a kill came between run and delete). */
  reRunAfterKill: number;
  /** Jobs without JOB_CREATED (in flight at the kill) that ran anyway. */
  unacknowledgedRun: number;
  /** Jobs run twice by one server process (must not happen). */
  duplicates: number;
  /** Runs whose handle differs from the one JOB_CREATED gave. */
  wrongHandle: number;
  /** Runs whose unique or data differs from the job's name. */
  wrongData: number;
  /** Jobs in the store at the start of the round (left over from the last). */
  leftover: number;
  /** Runs of jobs this round never submitted. */
  phantom: number;
  /** Whether the drain emptied the queue in time. */
  drained: boolean;
}

/** Totals over all rounds. */
export interface SoakSummary {
  rounds: RoundResult[];
  acknowledged: number;
  runs: number;
  lost: number;
  reRunAfterKill: number;
  unacknowledgedRun: number;
  duplicates: number;
  wrongHandle: number;
  wrongData: number;
  leftover: number;
  phantom: number;
  /** Jobs rows in the store file after the final check (-1: not checked). */
  finalStoreJobs: number;
  /** Every rule held. */
  ok: boolean;
}

const decoder = new TextDecoder();

/** A small seeded PRNG (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Run {
  name: string;
  unique: string;
  data: string;
  handle: string;
  life: number;
}

/** A worker: grabs, records, completes, until its connection ends or it is stopped. */
class SoakWorker {
  readonly #conn: PacketClient;
  readonly #runs: Run[];
  readonly #life: number;
  #stopped = false;
  readonly done: Promise<void>;

  private constructor(conn: PacketClient, runs: Run[], life: number) {
    this.#conn = conn;
    this.#runs = runs;
    this.#life = life;
    this.done = this.#loop();
  }

  static async start(port: number, runs: Run[], life: number): Promise<SoakWorker> {
    const conn = await PacketClient.connect({ hostname: "127.0.0.1", port });
    conn.send("CAN_DO", FN);
    return new SoakWorker(conn, runs, life);
  }

  async #loop(): Promise<void> {
    const conn = this.#conn;
    try {
      while (!this.#stopped) {
        conn.send("GRAB_JOB_UNIQ");
        let p = await conn.receive(30_000);
        while (p.name === "NOOP") p = await conn.receive(30_000); // a late wake-up
        if (p.name === "JOB_ASSIGN_UNIQ") {
          const [handle, , unique, data] = p.args.map((a) => decoder.decode(a));
          this.#runs.push({
            name: data ?? "",
            unique: unique ?? "",
            data: data ?? "",
            handle: handle ?? "",
            life: this.#life,
          });
          conn.send("WORK_COMPLETE", handle ?? "", "done");
          continue;
        }
        if (p.name !== "NO_JOB") throw new Error(`worker got ${p.name}`);
        conn.send("PRE_SLEEP");
        try {
          const wake = await conn.receive(200);
          if (wake.name !== "NOOP") throw new Error(`sleeping worker got ${wake.name}`);
        } catch (err) {
          if (!(err instanceof ConnectionClosedError) || conn.ended) throw err;
          // No wake-up in 200 ms: grab again anyway.
        }
      }
    } catch (err) {
      if (!(err instanceof ConnectionClosedError) || !(conn.ended || this.#stopped)) throw err;
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#conn.close();
    await this.done;
  }
}

/** A client: submits jobs named `r<round>-c<id>-<n>`, `window` at a time, until its connection ends. */
class SoakClient {
  readonly #conn: PacketClient;
  readonly submitted = new Set<string>();
  readonly acked = new Map<string, string>();
  readonly done: Promise<void>;

  private constructor(conn: PacketClient, prefix: string, window: number) {
    this.#conn = conn;
    this.done = this.#loop(prefix, window);
  }

  static async start(port: number, prefix: string, window: number): Promise<SoakClient> {
    const conn = await PacketClient.connect({ hostname: "127.0.0.1", port });
    return new SoakClient(conn, prefix, window);
  }

  async #loop(prefix: string, window: number): Promise<void> {
    const conn = this.#conn;
    const inFlight: string[] = [];
    const types = ["SUBMIT_JOB_BG", "SUBMIT_JOB_HIGH_BG", "SUBMIT_JOB_LOW_BG"] as const;
    let n = 0;
    const send = () => {
      const name = `${prefix}-${n}`;
      conn.send(types[n % 3]!, FN, n % 2 === 0 ? name : "", name);
      n++;
      this.submitted.add(name);
      inFlight.push(name);
    };
    try {
      for (let i = 0; i < window; i++) send();
      for (;;) {
        const p = await conn.receive(30_000);
        if (p.name !== "JOB_CREATED") throw new Error(`client got ${p.name}`);
        const name = inFlight.shift();
        if (name === undefined) throw new Error("JOB_CREATED for nothing submitted");
        this.acked.set(name, decoder.decode(p.args[0]));
        send();
      }
    } catch (err) {
      if (!(err instanceof ConnectionClosedError) || !conn.ended) throw err;
    }
  }

  async close(): Promise<void> {
    await this.#conn.close();
    await this.done.catch(() => {});
  }
}

async function totalOf(port: number): Promise<number> {
  const admin = await AdminClient.connect(`127.0.0.1:${port}`, { timeoutMs: 10_000 });
  try {
    return (await admin.status()).find((r) => r.function === FN)?.total ?? 0;
  } finally {
    await admin.close();
  }
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where the jobs are kept: how a server is started on it, and how many jobs it holds. */
interface SoakStore {
  /** Start a server on it. */
  start(): Promise<ServerProcess>;
  /**
   * The jobs it holds, read from the store itself: for Postgres any time
   * after a server started (it makes the table); for SQLite only with no
   * server running (undefined otherwise).
   */
  jobs(serverRunning: boolean): Promise<number | undefined>;
}

function sqliteStore(path: string, serverArgs: string[]): SoakStore {
  return {
    start: () => ServerProcess.start({ storePath: path, args: serverArgs }),
    jobs: (serverRunning) => Promise.resolve(serverRunning ? undefined : storeJobs(path)),
  };
}

/** A database on `pg`; servers on it give a killed server's jobs back after 1 s. */
async function postgresStore(
  pg: TempPostgres,
  name: string,
  serverArgs: string[],
): Promise<SoakStore> {
  const url = await pg.createDatabase(name);
  const db = new URL(url).pathname.slice(1);
  return {
    start: () =>
      ServerProcess.start({ args: ["--store", url, "--cluster-lease", "1", ...serverArgs] }),
    jobs: async () => Number((await pg.psql("SELECT count(*) FROM gearman_jobs", db)).trim()),
  };
}

async function runRound(
  round: number,
  store: SoakStore,
  options: SoakOptions,
  rand: () => number,
): Promise<RoundResult> {
  const killAtMs = Math.round(
    options.killMinMs + rand() * (options.killMaxMs - options.killMinMs),
  );
  const runs: Run[] = [];
  const clients: SoakClient[] = [];
  const workers: SoakWorker[] = [];
  let server: ServerProcess | undefined;
  let leftover = 0;
  let drained = false;
  let runsBeforeKill = 0;
  let drainKillAtMs = -1;
  try {
    // Life 1: submits and work, then kill -9.
    server = await store.start();
    leftover = await store.jobs(true) ?? await totalOf(server.port);
    let life = 1;
    for (let i = 0; i < options.workers; i++) {
      workers.push(await SoakWorker.start(server.port, runs, life));
    }
    for (let c = 0; c < options.clients; c++) {
      clients.push(await SoakClient.start(server.port, `r${round}-c${c}`, options.window));
    }
    await delay(killAtMs);
    await server.kill("SIGKILL");
    await Promise.all(clients.map((c) => c.done));
    await Promise.all(workers.map((w) => w.done));
    runsBeforeKill = runs.length;
    for (const w of workers.splice(0)) await w.stop();

    // Life 2: restart and drain, killed part way (when --drain-kill);
    // then one more life that drains everything.
    for (;;) {
      life++;
      server = await store.start();
      for (let i = 0; i < options.workers; i++) {
        workers.push(await SoakWorker.start(server.port, runs, life));
      }
      if (life === 2 && options.drainKill) {
        drainKillAtMs = Math.round(20 + rand() * 180);
        await delay(drainKillAtMs);
        await server.kill("SIGKILL");
        await Promise.all(workers.map((w) => w.done));
        for (const w of workers.splice(0)) await w.stop();
        continue;
      }
      const deadline = Date.now() + options.drainTimeoutMs;
      while (Date.now() < deadline) {
        // Postgres: the table, since status does not count jobs a killed
        // server held until its lease ends.
        if ((await store.jobs(true) ?? await totalOf(server.port)) === 0) {
          drained = true;
          break;
        }
        await delay(50);
      }
      for (const w of workers.splice(0)) await w.stop();
      await server.kill("SIGKILL");
      server = undefined;
      break;
    }

    // Verdicts.
    const submitted = new Set<string>();
    const acked = new Map<string, string>();
    for (const c of clients) {
      for (const n of c.submitted) submitted.add(n);
      for (const [n, h] of c.acked) acked.set(n, h);
    }
    const byName = new Map<string, Run[]>();
    let wrongData = 0;
    let wrongHandle = 0;
    let phantom = 0;
    for (const r of runs) {
      if (r.unique !== "" && r.unique !== r.data) wrongData++;
      if (!submitted.has(r.name)) phantom++;
      const h = acked.get(r.name);
      if (h !== undefined && h !== r.handle) wrongHandle++;
      let list = byName.get(r.name);
      if (list === undefined) byName.set(r.name, list = []);
      list.push(r);
    }
    let lost = 0;
    for (const name of acked.keys()) if (!byName.has(name)) lost++;
    let reRunAfterKill = 0;
    let duplicates = 0;
    let unacknowledgedRun = 0;
    for (const [name, list] of byName) {
      const lives = new Set(list.map((r) => r.life));
      if (lives.size < list.length) duplicates++;
      if (lives.size > 1) reRunAfterKill++;
      if (!acked.has(name) && submitted.has(name)) unacknowledgedRun++;
    }
    return {
      round,
      killAtMs,
      drainKillAtMs,
      submitted: submitted.size,
      acknowledged: acked.size,
      runs: runs.length,
      runsBeforeKill,
      lost,
      reRunAfterKill,
      unacknowledgedRun,
      duplicates,
      wrongHandle,
      wrongData,
      leftover,
      phantom,
      drained,
    };
  } finally {
    for (const c of clients) await c.close();
    for (const w of workers) await w.stop().catch(() => {});
    await server?.kill("SIGKILL");
  }
}

function roundFailed(r: RoundResult): boolean {
  return r.lost > 0 || r.duplicates > 0 || r.wrongHandle > 0 || r.wrongData > 0 ||
    r.leftover > 0 || r.phantom > 0 || !r.drained;
}

/** Count the rows of the jobs table in a store file (the server must be stopped). */
function storeJobs(path: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const row = db.prepare("SELECT count(*) AS n FROM jobs").get() as { n: number };
    return Number(row.n);
  } finally {
    db.close();
  }
}

/** Run the soak. */
export async function runSoak(options: SoakOptions): Promise<SoakSummary> {
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "gearman-soak-" });
  const rand = random(options.seed);
  const results: RoundResult[] = [];
  let finalStoreJobs = -1;
  let pg: TempPostgres | undefined;
  try {
    const serverArgs = options.serverArgs ?? [];
    if (options.postgres) pg = await startPostgres();
    const storeFor = (n: string) =>
      pg !== undefined
        ? postgresStore(pg, `soak_${n}`, serverArgs)
        : Promise.resolve(sqliteStore(join(dir, `soak-${n}.db`), serverArgs));
    let store = await storeFor("all");
    for (let round = 1; round <= options.rounds; round++) {
      if (options.fresh) store = await storeFor(String(round));
      const r = await runRound(round, store, options, rand);
      results.push(r);
      options.log(
        `round ${r.round}/${options.rounds}: kill at ${r.killAtMs} ms${
          r.drainKillAtMs >= 0 ? ` and ${r.drainKillAtMs} ms into the drain` : ""
        }; submitted ${r.submitted}, ` +
          `acknowledged ${r.acknowledged}, run ${r.runs} (${r.runsBeforeKill} before the kill), ` +
          `lost ${r.lost}, re-run-after-kill ${r.reRunAfterKill}, ` +
          `unacknowledged-but-run ${r.unacknowledgedRun}, duplicates ${r.duplicates}, ` +
          `wrong handle ${r.wrongHandle}, wrong data ${r.wrongData}, leftover ${r.leftover}, ` +
          `phantom ${r.phantom}${r.drained ? "" : ", NOT DRAINED"}${
            roundFailed(r) ? "  <-- FAIL" : ""
          }`,
      );
    }
    // The last drain ended with a kill -9: a last start must find nothing,
    // and after a clean stop the file must hold no jobs.
    const server = await store.start();
    try {
      const left = await store.jobs(true) ?? await totalOf(server.port);
      if (left > 0) options.log(`after the last round the server replayed ${left} job(s)`);
      results.at(-1)!.leftover += left;
    } finally {
      await server.kill("SIGTERM");
    }
    finalStoreJobs = (await store.jobs(false))!;
  } finally {
    await pg?.stop();
    if (options.dir === undefined) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const sum = (k: keyof RoundResult) => results.reduce((n, r) => n + Number(r[k]), 0);
  const summary: SoakSummary = {
    rounds: results,
    acknowledged: sum("acknowledged"),
    runs: sum("runs"),
    lost: sum("lost"),
    reRunAfterKill: sum("reRunAfterKill"),
    unacknowledgedRun: sum("unacknowledgedRun"),
    duplicates: sum("duplicates"),
    wrongHandle: sum("wrongHandle"),
    wrongData: sum("wrongData"),
    leftover: sum("leftover"),
    phantom: sum("phantom"),
    finalStoreJobs,
    ok: false,
  };
  summary.ok = !results.some(roundFailed) && finalStoreJobs === 0;
  options.log(
    `summary: ${results.length} rounds, acknowledged ${summary.acknowledged}, run ${summary.runs}, ` +
      `lost ${summary.lost}, re-run-after-kill ${summary.reRunAfterKill}, ` +
      `unacknowledged-but-run ${summary.unacknowledgedRun}, duplicates ${summary.duplicates}, ` +
      `wrong handle ${summary.wrongHandle}, wrong data ${summary.wrongData}, ` +
      `leftover ${summary.leftover}, phantom ${summary.phantom}, ` +
      `jobs in store at the end ${finalStoreJobs}: ${summary.ok ? "OK" : "FAILED"}`,
  );
  return summary;
}

const USAGE = `Usage: deno run -A scripts/soak_kill9.ts [options]

  --rounds N      rounds (default 20)
  --clients N     submitting connections (default 4)
  --window N      submits in flight per connection (default 32)
  --workers N     workers (default 2)
  --kill-min MS   earliest kill after submits start (default 100)
  --kill-max MS   latest kill (default 1500)
  --seed N        seed for the kill times (default: random, printed)
  --fresh         a new store file every round (default: one file for all)
  --no-drain-kill do not also kill the server part way through each drain
  --max-memory-jobs N   passed to the server (small values make it page jobs from disk)
  --store-sync MODE     passed to the server (normal or full)
  --dir DIR       keep the store file(s) in DIR (default: a temp dir, removed)
  --postgres      a PostgreSQL of its own (Debian's, in a temp dir) instead of SQLite files;
                  --fresh: a new database every round
`;

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string" },
      clients: { type: "string" },
      window: { type: "string" },
      workers: { type: "string" },
      "kill-min": { type: "string" },
      "kill-max": { type: "string" },
      seed: { type: "string" },
      fresh: { type: "boolean" },
      "no-drain-kill": { type: "boolean" },
      "max-memory-jobs": { type: "string" },
      "store-sync": { type: "string" },
      dir: { type: "string" },
      postgres: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const int = (v: string | undefined, def: number) => {
    if (v === undefined) return def;
    if (!/^\d+$/.test(v)) {
      console.error(`error: expected a number, got "${v}"\n\n${USAGE}`);
      Deno.exit(2);
    }
    return Number(v);
  };
  const seed = int(values.seed, Math.floor(Math.random() * 2 ** 31));
  const options: SoakOptions = {
    rounds: int(values.rounds, 20),
    clients: int(values.clients, 4),
    window: int(values.window, 32),
    workers: int(values.workers, 2),
    killMinMs: int(values["kill-min"], 100),
    killMaxMs: int(values["kill-max"], 1500),
    seed,
    fresh: values.fresh ?? false,
    drainKill: !(values["no-drain-kill"] ?? false),
    serverArgs: [
      ...(values["max-memory-jobs"] !== undefined
        ? ["--max-memory-jobs", String(int(values["max-memory-jobs"], 0))]
        : []),
      ...(values["store-sync"] !== undefined ? ["--store-sync", values["store-sync"]] : []),
    ],
    ...(values.dir !== undefined ? { dir: values.dir } : {}),
    postgres: values.postgres ?? false,
    drainTimeoutMs: 120_000,
    log: (line) => console.log(line),
  };
  console.log(
    `soak: ${options.rounds} rounds, ${options.clients} clients x ${options.window} in flight, ` +
      `${options.workers} workers, kill at ${options.killMinMs}-${options.killMaxMs} ms, ` +
      `seed ${seed}, ${options.postgres ? "PostgreSQL" : "SQLite"}, ` +
      `${options.fresh ? "a fresh store per round" : "one store"}` +
      `${options.drainKill ? ", a second kill during each drain" : ""}` +
      `${options.serverArgs!.length > 0 ? `, server ${options.serverArgs!.join(" ")}` : ""}`,
  );
  const summary = await runSoak(options);
  Deno.exit(summary.ok ? 0 : 1);
}
