// The Postgres store: several server processes on one real PostgreSQL
// (Debian's, started in a temp dir on a free port) share one durable queue.

import assert from "node:assert/strict";
import { runServer, ServerProcess } from "./_process.ts";
import {
  adminOf,
  closeAll,
  connect,
  expectPacket,
  grab,
  grabOne,
  type PacketClient,
  statusOf,
  submit,
  submitEpoch,
  sync,
  waitFor,
  waitForJob,
  worker,
} from "./_gearman.ts";
import { postgresBin, startPostgres, type TempPostgres } from "../_postgres.ts";
import { serve } from "../../server.ts";
import postgres from "postgres";
import { PostgresJobStore } from "../../postgres.ts";
import { MIGRATIONS } from "../../src/server/store/postgres_schema.ts";
import type { StoredJob } from "../../src/server/store/job_store.ts";

const INSTALLED = postgresBin() !== undefined;
const ignore = !INSTALLED;
if (!INSTALLED) {
  console.warn(
    "postgres tests skipped: PostgreSQL is not installed (apt-get install -y postgresql; .ci/run installs it)",
  );
}

let pg: Promise<TempPostgres> | undefined;
/** The shared PostgreSQL, started by the first test that needs it and stopped by the last. */
function postgresServer(): Promise<TempPostgres> {
  return pg ??= startPostgres();
}

/** Run SQL with psql in the database of `url` (one from freshDatabase); the output, trimmed. */
async function psqlIn(url: string, sql: string): Promise<string> {
  return (await (await postgresServer()).psql(sql, new URL(url).pathname.slice(1))).trim();
}

let databases = 0;
/** A fresh database for one test. */
async function freshDatabase(): Promise<string> {
  return (await postgresServer()).createDatabase(`gearman_t${++databases}_${Date.now() % 100000}`);
}

/** A background job of `fn` to hand to a store directly, under `handle`. */
function storedJob(handle: number, fn: string, unique: string, data: string): StoredJob {
  return {
    handle,
    seq: handle,
    function: fn,
    unique: new TextEncoder().encode(unique),
    data: new TextEncoder().encode(data),
    priority: 1,
    runAt: 0,
    cron: "",
    retries: 0,
  };
}

/** Server processes and connections of one test, all closed at the end. */
class Cluster implements AsyncDisposable {
  readonly servers: ServerProcess[] = [];
  readonly conns: PacketClient[] = [];
  readonly url: string;

  constructor(url: string) {
    this.url = url;
  }

  static async create(): Promise<Cluster> {
    return new Cluster(await freshDatabase());
  }

  async start(count: number, args: string[] = []): Promise<ServerProcess[]> {
    const started = await Promise.all(
      Array.from({ length: count }, () =>
        ServerProcess.start({
          args: ["--store", this.url, "--cluster-lease", "1.5", ...args],
        })),
    );
    this.servers.push(...started);
    return started;
  }

  async connect(server: ServerProcess): Promise<PacketClient> {
    const c = await connect(server.port);
    this.conns.push(c);
    return c;
  }

  async worker(server: ServerProcess, ...fns: string[]): Promise<PacketClient> {
    const w = await worker(server.port, ...fns);
    this.conns.push(w);
    return w;
  }

  /** Rows left in the shared queue. */
  async rows(where = "true"): Promise<number> {
    return Number(await psqlIn(this.url, `SELECT count(*) FROM gearman_jobs WHERE ${where}`));
  }

  /** Rows in a table of the cluster's database. */
  async count(table: string): Promise<number> {
    return Number(await psqlIn(this.url, `SELECT count(*) FROM ${table}`));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await closeAll(...this.conns);
    for (const s of this.servers) await s.kill("SIGTERM");
  }
}

/** Submit background jobs; returns their handles in order. */
async function submitBackground(
  conn: PacketClient,
  fn: string,
  data: string[],
  unique = (_: string) => "",
): Promise<string[]> {
  for (const d of data) conn.send("SUBMIT_JOB_BG", fn, unique(d), d);
  const handles: string[] = [];
  for (const _ of data) handles.push((await expectPacket(conn, "JOB_CREATED", 10_000))[0]!);
  return handles;
}

/**
 * A worker loop on a raw connection: grab, record, complete; sleep when
 * there is nothing. Stops when `stop()` is called or the connection ends.
 */
function runWorker(
  w: PacketClient,
  onJob: (data: string, handle: string) => void,
  delayMs = 0,
): { stop: () => void; done: Promise<void> } {
  let stopped = false;
  let failure: Error | undefined = undefined;
  const done = (async () => {
    try {
      while (!stopped) {
        w.send("GRAB_JOB_UNIQ");
        let p = await w.receive(10_000);
        while (p.name === "NOOP") p = await w.receive(10_000); // a late wake-up
        if (p.name === "NO_JOB") {
          w.send("PRE_SLEEP");
          // Wait for the NOOP, at most 300 ms: then grab again anyway (and check stop).
          if (!(await w.silentFor(300))) await w.receive(1000);
          if (w.ended) break;
          continue;
        }
        assert.equal(p.name, "JOB_ASSIGN_UNIQ");
        const [handle = "", , , data = ""] = p.args.map((a) => new TextDecoder().decode(a));
        onJob(data, handle);
        if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
        w.send("WORK_COMPLETE", handle, "ok");
      }
    } catch (err) {
      // The connection closed: the worker ends. Anything else is a test failure.
      if ((err as Error).name !== "ConnectionClosedError") failure = err as Error;
    }
    if (failure !== undefined) throw failure; // surfaces as the test's uncaught error
  })();
  return { stop: () => stopped = true, done };
}

Deno.test({
  name: "postgres: jobs submitted round-robin to three servers are all run by workers of one",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b, cs] = await c.start(3);
    const clients = [await c.connect(a!), await c.connect(b!), await c.connect(cs!)];
    const ran = new Map<string, number>();
    const w = await c.worker(cs!, "rr");
    const loop = runWorker(w, (d) => ran.set(d, (ran.get(d) ?? 0) + 1));
    const all: string[] = [];
    for (let round = 0; round < 10; round++) {
      await Promise.all(clients.map((cl, i) => {
        const data = Array.from({ length: 20 }, (_, k) => `job-${round}-${i}-${k}`);
        all.push(...data);
        return submitBackground(cl, "rr", data);
      }));
    }
    await waitFor("every job to run", () => ran.size === all.length, 20_000);
    loop.stop();
    for (const d of all) assert.equal(ran.get(d), 1, `${d} ran ${ran.get(d)} times`);
    await waitFor("the queue to empty", async () => await c.rows() === 0, 5000);
  },
});

Deno.test({
  name:
    "postgres: a server killed with SIGKILL mid-run loses no acknowledged job; only jobs its worker had started run again",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b, victim] = await c.start(3);
    const acknowledged: string[] = [];
    const runs = new Map<string, number>();
    const startedOnVictim = new Set<string>();
    // Workers attach to the victim only, and work slowly, so it holds jobs when it dies.
    const w1 = await c.worker(victim!, "slow");
    const l1 = runWorker(w1, (d) => {
      startedOnVictim.add(d);
      runs.set(d, (runs.get(d) ?? 0) + 1);
    }, 5);
    const clients = [await c.connect(a!), await c.connect(b!), await c.connect(victim!)];
    for (let i = 0; i < 3; i++) {
      const data = Array.from({ length: 150 }, (_, k) => `k-${i}-${k}`);
      await submitBackground(clients[i]!, "slow", data);
      acknowledged.push(...data);
    }
    await waitFor("the victim's worker to be mid-run", () => startedOnVictim.size >= 60, 20_000);
    await victim!.kill("SIGKILL");
    const atKill = new Set(startedOnVictim);
    await l1.done;
    // A worker on another server takes over, once the victim's lease ends.
    const w2 = await c.worker(a!, "slow");
    const l2 = runWorker(w2, (d) => runs.set(d, (runs.get(d) ?? 0) + 1));
    await waitFor(
      "every acknowledged job to run",
      () => acknowledged.every((d) => runs.has(d)),
      30_000,
    );
    l2.stop();
    const twice = acknowledged.filter((d) => runs.get(d)! > 1);
    for (const d of twice) {
      assert.ok(atKill.has(d), `${d} ran twice but the killed server's worker never started it`);
      assert.equal(runs.get(d), 2, `${d} ran ${runs.get(d)} times`);
    }
    // Re-run: the job in progress, and the last ones it finished whose ends
    // were not yet written (ends are written every 5 ms; a job takes 5 ms
    // here). Not the jobs it held and never started.
    assert.ok(
      twice.length <= 10,
      `re-runs: ${twice.join(", ")} (expected the job in progress and the last few finished)`,
    );
    await waitFor("the queue to empty", async () => await c.rows() === 0, 5000);
    // The survivors list two live servers.
    const admin = await adminOf(b!.port);
    try {
      await waitFor("the dead server to leave the server list", async () => {
        const lines = await admin.command("cluster");
        return lines.filter((l) => l.startsWith("server\t")).length === 2;
      }, 10_000);
    } finally {
      await admin.close();
    }
  },
});

Deno.test({
  name:
    "postgres: a server paused past its lease loses its held jobs to the others, hands out none meanwhile, and runs none twice",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    // A worker on A, asleep: the jobs submitted to A are held by A.
    const wa = await c.worker(a!, "held");
    assert.equal(await grab(wa), undefined);
    const ca = await c.connect(a!);
    const data = Array.from({ length: 20 }, (_, i) => `h${i}`);
    await submitBackground(ca, "held", data);
    assert.equal(await c.rows(`owner IS NOT NULL`), 20, "A holds every job");
    // A stops answering (SIGSTOP) for longer than its lease (1.5 s).
    Deno.kill(a!.pid, "SIGSTOP");
    let resumed = false;
    try {
      const wb = await c.worker(b!, "held");
      const ran: string[] = [];
      const loop = runWorker(wb, (d) => ran.push(d));
      await waitFor("B's worker to run A's jobs", () => ran.length === 20, 15_000);
      loop.stop();
      assert.deepEqual(ran.sort(), [...data].sort());
      Deno.kill(a!.pid, "SIGCONT");
      resumed = true;
      // Back, A finds its lease gone and forgets what it held: its worker
      // gets nothing (before its first heartbeat too: the lease is in doubt).
      for (let i = 0; i < 5; i++) {
        assert.equal(await grab(wa), undefined, `grab ${i} after the pause`);
        await new Promise((r) => setTimeout(r, 300));
      }
      await waitFor("the queue to empty", async () => await c.rows() === 0, 5000);
    } finally {
      if (!resumed) Deno.kill(a!.pid, "SIGCONT");
    }
  },
});

Deno.test({
  name:
    "postgres: a unique submit waiting for its commit holds only its reply: the connection's next packets are handled, their replies follow it in order",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    const ca = await c.connect(a!);
    const cb = await c.connect(b!);
    const [queued] = await submitBackground(cb, "uq", ["first"], () => "k-1");
    const w = await c.worker(a!, "fg");
    w.send("PRE_SLEEP");
    await sync(w);
    // Commits to the job table wait while this transaction holds a SHARE lock.
    const db = postgres(c.url, { max: 1, onnotice: () => {} });
    const locked = Promise.withResolvers<void>();
    const unlock = Promise.withResolvers<void>();
    const holder = db.begin(async (tx) => {
      await tx`LOCK TABLE gearman_jobs IN SHARE MODE`;
      locked.resolve();
      await unlock.promise;
    });
    try {
      await locked.promise;
      ca.send("SUBMIT_JOB_BG", "uq", "k-1", "second"); // coalesces with b's job
      ca.send("SUBMIT_JOB_BG", "uq", "k-2", "third");
      ca.send("SUBMIT_JOB", "fg", "", "now"); // a foreground job: in memory, no commit
      ca.send("ECHO_REQ", "after");
      // The foreground job reaches the worker while the unique commits wait.
      await expectPacket(w, "NOOP", 2000);
      const job = await grabOne(w);
      assert.equal(job.data, "now");
      w.send("WORK_COMPLETE", job.handle, "done");
      await sync(w);
      assert.ok(
        await ca.silentFor(100),
        "a reply left before the JOB_CREATED of the unique submit waiting for its commit",
      );
      unlock.resolve();
      await holder;
      const [h1] = await expectPacket(ca, "JOB_CREATED", 10_000);
      const [h2] = await expectPacket(ca, "JOB_CREATED");
      const [h3] = await expectPacket(ca, "JOB_CREATED");
      assert.deepEqual(await expectPacket(ca, "ECHO_RES"), ["after"]);
      assert.deepEqual(await expectPacket(ca, "WORK_COMPLETE"), [job.handle, "done"]);
      assert.equal(h1, queued, "the submit got the handle of the job b queued");
      assert.notEqual(h2, queued);
      assert.equal(h3, job.handle);
      assert.equal(await c.rows(), 2);
    } finally {
      unlock.resolve();
      await holder.catch(() => {});
      await db.end();
    }
  },
});

Deno.test({
  name:
    "postgres: status, prioritystatus and cluster on a server whose figures nobody asked for count the jobs another server just queued",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    const ca = await c.connect(a!);
    await submitBackground(ca, "counted", ["1", "2", "3", "4", "5"]);
    // B has not been asked for its figures since it started (before these jobs).
    await new Promise((r) => setTimeout(r, 300));
    await using admin = await adminOf(b!.port);
    const status = await admin.status();
    assert.deepEqual(status.find((f) => f.function === "counted"), {
      function: "counted",
      total: 5,
      running: 0,
      workers: 0,
    });
    const cb = await c.connect(b!);
    assert.deepEqual(await cb.admin("prioritystatus"), ["counted\t0\t5\t0\t0"]);
    assert.ok(
      (await cb.admin("cluster")).includes("function\tcounted\t5\t0"),
      "the cluster command shows the jobs",
    );
  },
});

Deno.test({
  name:
    "postgres: a worker that registers and grabs at once gets the jobs queued in the shared queue, first in first out (the GRAB waits for the claim); show unique jobs lists them on any server",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    const ca = await c.connect(a!);
    const handles = await submitBackground(ca, "at-once", ["1", "2", "3"], (d) => `su-${d}`);
    const cb = await c.connect(b!);
    assert.deepEqual((await cb.admin("show unique jobs")).sort(), ["su-1", "su-2", "su-3"]);
    // No worker anywhere until now: the jobs are in the shared queue only.
    const w = await c.connect(b!);
    w.send("CAN_DO", "at-once");
    for (const h of handles) {
      w.send("GRAB_JOB");
      const [handle, , data] = await expectPacket(w, "JOB_ASSIGN");
      assert.equal(handle, h, "jobs came in the order they were queued");
      w.send("WORK_COMPLETE", handle!, data!);
    }
    w.send("GRAB_JOB");
    await expectPacket(w, "NO_JOB");
  },
});

Deno.test({
  name: "postgres: a worker that grabs without ever sleeping gets a scheduled job once it is due",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a] = await c.start(1);
    const ca = await c.connect(a!);
    const due = Math.ceil(Date.now() / 1000) + 1;
    const handle = await submitEpoch(ca, "due-later", "", due, "later");
    const w = await c.connect(a!);
    w.send("CAN_DO", "due-later");
    w.send("GRAB_JOB");
    await expectPacket(w, "NO_JOB");
    // Past the due time (whole seconds) and a poll interval: grab again, never having slept.
    await new Promise((r) => setTimeout(r, Math.max(0, due * 1000 - Date.now()) + 700));
    w.send("GRAB_JOB");
    const [got, , data] = await expectPacket(w, "JOB_ASSIGN");
    assert.deepEqual([got, data], [handle, "later"]);
  },
});

Deno.test({
  name: "postgres: a unique id coalesces across servers; GET_STATUS works on any server",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    const ca = await c.connect(a!);
    const cb = await c.connect(b!);
    const [h1] = await submitBackground(ca, "uq", ["payload"], () => "order-42");
    const [h2] = await submitBackground(cb, "uq", ["other payload"], () => "order-42");
    assert.equal(h2, h1, "the second server gave the handle of the job already queued");
    // Pipelined after a unique submit: replies stay in order.
    cb.send("SUBMIT_JOB_BG", "uq", "order-43", "x");
    cb.send("ECHO_REQ", "after");
    const [h3] = await expectPacket(cb, "JOB_CREATED");
    assert.deepEqual(await expectPacket(cb, "ECHO_RES"), ["after"]);
    assert.notEqual(h3, h1);
    assert.equal(await c.rows(), 2);
    // Either server knows either job.
    for (const conn of [ca, cb]) {
      conn.send("GET_STATUS", h1!);
      assert.deepEqual(await expectPacket(conn, "STATUS_RES"), [h1, "1", "0", "0", "0"]);
      conn.send("GET_STATUS_UNIQUE", "order-43");
      assert.deepEqual((await expectPacket(conn, "STATUS_RES_UNIQUE")).slice(0, 3), [
        "order-43",
        "1",
        "0",
      ]);
    }
    cb.send("GET_STATUS", "H:test:4503599627370495");
    assert.deepEqual(await expectPacket(cb, "STATUS_RES"), [
      "H:test:4503599627370495",
      "0",
      "0",
      "0",
      "0",
    ]);
    // Each job runs once, on a worker of the other server.
    const w = await c.worker(b!, "uq");
    const ran: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { job } = await waitForJob(w, 10_000);
      ran.push(job.data);
      w.send("WORK_COMPLETE", job.handle, "");
    }
    assert.deepEqual(ran.sort(), ["payload", "x"]);
    // Done (the server has the WORK_COMPLETE): the unique id is free again
    // at once on that server.
    await sync(w);
    const [h4] = await submitBackground(cb, "uq", ["again"], () => "order-42");
    assert.notEqual(h4, h1, "a submit right after the end makes a new job");
    const { job } = await waitForJob(w, 10_000);
    assert.equal(job.data, "again");
    w.send("WORK_COMPLETE", job.handle, "");
    // On another server, once the end is committed (within milliseconds).
    await waitFor("the end to be committed", async () => await c.rows() === 0, 5000);
    const [h5] = await submitBackground(ca, "uq", ["and again"], () => "order-42");
    assert.notEqual(h5, h4);
    assert.equal((await waitForJob(w, 10_000)).job.data, "and again");
  },
});

Deno.test({
  name:
    "postgres: a sleeping worker on one server is woken by a submit to another; status and the cluster command show the shared queue",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    const w = await c.worker(b!, "wake");
    assert.equal(await grab(w), undefined);
    w.send("PRE_SLEEP");
    await sync(await c.connect(b!));
    const ca = await c.connect(a!);
    await submitBackground(ca, "wake", ["hello"]);
    await expectPacket(w, "NOOP", 5000);
    const job = await grab(w);
    assert.equal(job?.data, "hello");
    w.send("WORK_COMPLETE", job!.handle, "");
    // Nobody can run "nobody": its jobs wait in the shared queue, and every
    // server's status counts them.
    await submitBackground(ca, "nobody", ["1", "2", "3"]);
    for (const s of [a!, b!]) {
      const admin = await adminOf(s.port);
      try {
        await waitFor("status to show the shared queue", async () => {
          const row = (await admin.status()).find((r) => r.function === "nobody");
          return row?.total === 3;
        }, 10_000);
        const lines = await admin.command("cluster");
        assert.equal(lines.filter((l) => l.startsWith("server\t")).length, 2, lines.join("\n"));
        assert.ok(lines.some((l) => l.endsWith("\tself")), lines.join("\n"));
        // Each server is listed by the address it listens on.
        for (const p of [a!.port, b!.port]) {
          assert.ok(lines.some((l) => l.includes(`\ttest:${p}\t`)), lines.join("\n"));
        }
        assert.ok(lines.includes("function\tnobody\t3\t0"), lines.join("\n"));
      } finally {
        await admin.close();
      }
    }
  },
});

Deno.test({
  name: "postgres: a scheduled job submitted to one server runs once, on time, on another's worker",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    const ca = await c.connect(a!);
    const at = Math.floor(Date.now() / 1000) + 2;
    ca.send("SUBMIT_JOB_EPOCH", "later", "", String(at), "tick");
    await expectPacket(ca, "JOB_CREATED");
    const w = await c.worker(b!, "later");
    const ran: number[] = [];
    const loop = runWorker(w, () => ran.push(Date.now()));
    await waitFor("the scheduled job to run", () => ran.length === 1, 10_000);
    await new Promise((r) => setTimeout(r, 1000));
    loop.stop();
    assert.equal(ran.length, 1);
    assert.ok(ran[0]! >= at * 1000, `ran ${at * 1000 - ran[0]!} ms early`);
  },
});

Deno.test({
  name:
    "postgres: a job whose workers keep dying becomes a dead letter visible on every server; `purge dead` is committed at once",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2, ["--job-retries", "1"]);
    const ca = await c.connect(a!);
    const [handle] = await submitBackground(ca, "crash", ["boom"]);
    const w = await worker(a!.port, "crash");
    const { job } = await waitForJob(w, 5000);
    assert.equal(job.handle, handle);
    await w.close(); // dies holding it: retries exhausted
    await waitFor("the job to leave the queue", async () => await c.rows() === 0, 5000);
    const admin = await adminOf(b!.port);
    try {
      await waitFor("the dead letter to show", async () => {
        const lines = await admin.command("show dead");
        return lines.some((l) => l.includes("crash"));
      }, 10_000);
      // Nothing else is written after the purge: it must reach the database by itself.
      assert.equal(await c.count("gearman_dead"), 1);
      assert.equal(await admin.purgeDeadLetters("all"), 1);
      await waitFor(
        "the purge to reach the database",
        async () => await c.count("gearman_dead") === 0,
        5000,
      );
    } finally {
      await admin.close();
    }
  },
});

/** The one line a failed start printed. */
function oneErrorLine(stderr: string): string {
  const lines = stderr.trim().split("\n").filter((l) => l !== "");
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  return lines[0]!;
}

Deno.test({
  name: "postgres: bad configuration gives one clear error line and exit code 1",
  ignore,
  async fn() {
    const p = await postgresServer();
    // Nothing listens on this port.
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const deadPort = (l.addr as Deno.NetAddr).port;
    l.close();
    const unreachable = await runServer({
      args: ["--store", `postgres://gearman:x@127.0.0.1:${deadPort}/gearman`],
    });
    assert.equal(unreachable.code, 1);
    assert.match(oneErrorLine(unreachable.stderr), /ECONNREFUSED|refused.*is PostgreSQL running/);

    const wrongPassword = await runServer({
      args: ["--store", p.urlFor("postgres", p.user, "not-the-password")],
    });
    assert.equal(wrongPassword.code, 1);
    const pwLine = oneErrorLine(wrongPassword.stderr);
    assert.match(pwLine, /password authentication failed.*check the user and password/);
    assert.ok(!pwLine.includes("not-the-password"), "the password is not printed");

    await p.psql("DROP ROLE IF EXISTS limited; CREATE ROLE limited LOGIN PASSWORD 'limited'");
    await p.createDatabase("gearman_limited");
    const noPermission = await runServer({
      args: ["--store", p.urlFor("gearman_limited", "limited", "limited")],
    });
    assert.equal(noPermission.code, 1);
    assert.match(oneErrorLine(noPermission.stderr), /permission denied.*GRANT CREATE/);

    // A role allowed 3 connections: the server needs 10, and says so at start.
    await p.psql(
      "DROP ROLE IF EXISTS few; CREATE ROLE few LOGIN PASSWORD 'few' CONNECTION LIMIT 3",
    );
    const fewDb = new URL(await p.createDatabase("gearman_few")).pathname.slice(1);
    await p.psql(`ALTER DATABASE ${fewDb} OWNER TO few`);
    const fewSlots = await runServer({ args: ["--store", p.urlFor(fewDb, "few", "few")] });
    assert.equal(fewSlots.code, 1);
    assert.match(
      oneErrorLine(fewSlots.stderr),
      /too many connections.*opens 10 .*raise max_connections \(or the role's CONNECTION LIMIT\)/,
    );

    const noEnv = await runServer({ permissions: ["-N"], args: ["--store", p.urlFor("postgres")] });
    assert.equal(noEnv.code, 1);
    assert.match(oneErrorLine(noEnv.stderr), /--allow-env/);

    const badUrl = await runServer({ args: ["--store", "postgres:/nope"] });
    assert.equal(badUrl.code, 2);
  },
});

Deno.test({
  name: "postgres: the schema is versioned; a database from a newer server is refused untouched",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [s] = await c.start(1);
    await s!.kill("SIGTERM");
    assert.equal(
      await psqlIn(c.url, "SELECT version FROM gearman_schema"),
      String(MIGRATIONS.length),
    );
    await psqlIn(c.url, "UPDATE gearman_schema SET version = 99");
    const r = await runServer({ args: ["--store", c.url] });
    assert.equal(r.code, 1);
    assert.match(
      oneErrorLine(r.stderr),
      new RegExp(`schema is version 99, newer than this server's ${MIGRATIONS.length}; upgrade`),
    );
    assert.equal(await psqlIn(c.url, "SELECT version FROM gearman_schema"), "99");
  },
});

Deno.test({
  name:
    "postgres: from code, serve({ store: await PostgresJobStore.open(url) }); /metrics shows the shared queue",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const store = await PostgresJobStore.open(url, { name: "in-process", leaseMs: 2000 });
    await using server = serve({
      hostname: "127.0.0.1",
      port: 0,
      store,
      http: { hostname: "127.0.0.1", port: 0 },
    });
    const client = await connect(server.addr.port);
    try {
      await submitBackground(client, "metered", ["1", "2"]);
    } finally {
      await client.close();
    }
    const http = server.httpAddr!;
    await waitFor("the metrics to show the shared queue", async () => {
      const text = await (await fetch(`http://127.0.0.1:${http.port}/metrics`)).text();
      return text.includes('gearman_cluster_queued_jobs{function="metered"} 2') &&
        text.includes(`gearman_cluster_server_id ${store.serverId}`) &&
        text.includes("gearman_cluster_servers 1");
    }, 10_000);
    // /api/status has the same figures, by priority, and the server list.
    const status = await (await fetch(`http://127.0.0.1:${http.port}/api/status`)).json();
    assert.equal(status.cluster.serverId, store.serverId);
    assert.deepEqual(status.cluster.functions, [
      { name: "metered", queued: { high: 0, normal: 2, low: 0 }, held: 0 },
    ]);
    assert.deepEqual(
      status.cluster.servers.map((s: { id: number; self: boolean }) => [s.id, s.self]),
      [[store.serverId, true]],
    );
    await server.shutdown();
    // The store was closed with the server: this server left the server list.
    assert.equal(await psqlIn(url, "SELECT count(*) FROM gearman_servers"), "0");
  },
});

Deno.test({
  name:
    "postgres: the database restarting loses no acknowledged job; submits during the outage are refused, and the servers recover",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    const p = await postgresServer();
    const ca = await c.connect(a!);
    const before = ["b1", "b2", "b3"];
    await submitBackground(ca, "outage", before);
    await p.halt();
    let restarted = false;
    try {
      // No JOB_CREATED without a commit: the submitter's connection is closed.
      const during = await c.connect(a!);
      during.send("SUBMIT_JOB_BG", "outage", "", "lost");
      await assert.rejects(
        during.receive(15_000),
        (err: Error) => err.name === "ConnectionClosedError" && !/nothing came/.test(err.message),
      );
      await p.start();
      restarted = true;
    } finally {
      if (!restarted) await p.start();
    }
    // The servers reconnect by themselves: submits work again, on both.
    const after: string[] = [];
    await waitFor("submits to work again", async () => {
      try {
        const conn = await c.connect(a!);
        const d = `a${after.length}`;
        await submitBackground(conn, "outage", [d]);
        after.push(d);
        return true;
      } catch {
        return false;
      }
    }, 20_000);
    await submitBackground(await c.connect(b!), "outage", ["from-b"]);
    // Every acknowledged job runs, once.
    const w = await c.worker(b!, "outage");
    const ran: string[] = [];
    const loop = runWorker(w, (d) => ran.push(d));
    const expected = [...before, ...after, "from-b"].sort();
    await waitFor("every acknowledged job to run", () => ran.length >= expected.length, 20_000);
    loop.stop();
    assert.deepEqual(ran.sort(), expected);
  },
});

Deno.test({
  name:
    "postgres: `show jobs`, `show scheduled` and `prioritystatus` on any server list the shared queue too, each job once",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    const ca = await c.connect(a!);
    // No workers anywhere: the jobs wait in the shared queue, held by no server.
    const listed = [
      await submit(ca, "SUBMIT_JOB_HIGH_BG", "listed", "u-high", "h"),
      await submit(ca, "SUBMIT_JOB_BG", "listed", "", "n"),
      await submit(ca, "SUBMIT_JOB_LOW_BG", "listed", "", "l1"),
      await submit(ca, "SUBMIT_JOB_LOW_BG", "listed", "", "l2"),
    ];
    const at = Math.floor(Date.now() / 1000) + 3600;
    const later = await submitEpoch(ca, "later", "u-later", at, "x");
    const all = [...listed, later].sort();
    const handles = (lines: string[]): string[] => lines.map((l) => l.split("\t")[0]!).sort();
    const admins = [await adminOf(a!.port), await adminOf(b!.port)];
    try {
      for (const admin of admins) {
        const jobs = await admin.command("show jobs");
        assert.deepEqual(handles(jobs), all);
        // retries 0, ignored 0, background 1
        for (const l of jobs) assert.match(l, /^H:test:\d+\t0\t0\t1$/);
        assert.deepEqual(await admin.command("show scheduled"), [
          `${later}\tlater\t${new Date(at * 1000).toISOString()}\tu-later`,
        ]);
        await waitFor("prioritystatus to count the shared queue", async () => {
          const lines = await admin.command("prioritystatus");
          return lines.includes("listed\t1\t1\t2\t0") && lines.includes("later\t0\t1\t0\t0");
        }, 10_000);
      }
      // A worker on a: a takes the jobs (holds them in memory); b lists them from the
      // database (held by a), a from memory, each once.
      const wa = await c.worker(a!, "listed");
      const { job } = await waitForJob(wa, 5000);
      assert.ok(listed.includes(job.handle));
      await waitFor(
        "a to hold the queued jobs",
        async () => await c.rows(`function = 'listed' AND owner IS NULL`) === 0,
        5000,
      );
      for (const admin of admins) assert.deepEqual(handles(await admin.command("show jobs")), all);
    } finally {
      await closeAll(...admins);
    }
  },
});

Deno.test({
  name: "postgres: --max-queue counts the shared queue: a full function is refused on every server",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2, ["--max-queue", "3"]);
    const ca = await c.connect(a!);
    const cb = await c.connect(b!);
    for (let i = 0; i < 3; i++) await submit(ca, "SUBMIT_JOB_BG", "capped", "", `j${i}`);
    const admins = [await adminOf(a!.port), await adminOf(b!.port)];
    try {
      // Each server sees the shared queue's depth once it has refreshed it.
      for (const admin of admins) {
        await waitFor(
          "status to count the shared queue",
          async () => (await statusOf(admin, "capped"))?.total === 3,
          10_000,
        );
      }
      for (const conn of [ca, cb]) {
        conn.send("SUBMIT_JOB_BG", "capped", "", "one too many");
        const [code] = await expectPacket(conn, "ERROR");
        assert.equal(code, "QUEUE_ERROR");
      }
      assert.equal(await c.rows("function = 'capped'"), 3);
    } finally {
      await closeAll(...admins);
    }
  },
});

Deno.test({
  name:
    "postgres: a dead letter written again (its commit timed out, then landed) is kept once; a later failure of the same job is its own letter",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const store = await PostgresJobStore.open(url, { name: "dead-once" });
    const letter = {
      handle: 77,
      function: "poison",
      unique: new TextEncoder().encode("u-1"),
      data: new TextEncoder().encode("bad"),
      priority: 1,
      retries: 3,
      failedAt: 1_700_000_000_000,
      reason: "worker disconnected it",
    };
    try {
      store.addDeadLetter(letter);
      await store.commit();
      // The retry of a commit that timed out writes the same letter again.
      store.addDeadLetter(letter);
      await store.commit();
      // The same job failing again later (retried by an operator) is a new letter.
      store.addDeadLetter({ ...letter, failedAt: letter.failedAt + 5000 });
      await store.commit();
    } finally {
      await store.close();
    }
    assert.equal(
      await psqlIn(url, "SELECT string_agg(failed_at::text, ',' ORDER BY id) FROM gearman_dead"),
      "1700000000000,1700000005000",
    );
  },
});

Deno.test({
  name:
    "postgres: a version-1 database is upgraded on open; dead letters written twice before are kept once",
  ignore,
  async fn() {
    const url = await freshDatabase();
    await psqlIn(
      url,
      `${MIGRATIONS[0]}
      CREATE TABLE gearman_schema (version integer NOT NULL);
      INSERT INTO gearman_schema VALUES (1);
      INSERT INTO gearman_dead (handle, function, uniq, data, priority, retries, failed_at, reason)
        VALUES (5, 'f', '', 'a', 1, 2, 1000, 'r'), (5, 'f', '', 'a', 1, 2, 1000, 'r'),
          (5, 'f', '', 'a', 1, 3, 9000, 'r'), (6, 'g', '', 'b', 1, 2, 1000, 'r');`,
    );
    const store = await PostgresJobStore.open(url, { name: "upgrade" });
    try {
      assert.deepEqual(
        store.deadLetters().map((d) => [d.handle, d.retries, d.failedAt]),
        [[5, 2, 1000], [5, 3, 9000], [6, 2, 1000]],
      );
    } finally {
      await store.close();
    }
    assert.equal(
      await psqlIn(url, "SELECT version FROM gearman_schema"),
      String(MIGRATIONS.length),
    );
  },
});

Deno.test({
  name:
    "postgres: a held job whose unique id another server queued is skipped by the commit; a taken id fails the commit, acknowledging nothing",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const a = await PostgresJobStore.open(url, { name: "a" });
    const b = await PostgresJobStore.open(url, { name: "b" });
    try {
      const job = (handle: number, unique: string, data: string) =>
        storedJob(handle, "both", unique, data);
      const queued = b.enqueueUnique(job(b.nextHandle(), "same-id", "from b"));
      await b.commit();
      const hb = await queued;
      // A holds a job with that id (a background submit onto its foreground
      // job) and a plain one: one commit, which succeeds; B's job stands.
      a.add(job(a.nextHandle(), "same-id", "from a"));
      const plain = a.nextHandle();
      a.enqueue(job(plain, "", "plain"));
      await a.commit();
      const rows = (where: string) =>
        psqlIn(url, `SELECT count(*) FROM gearman_jobs WHERE ${where}`);
      assert.equal(await rows("uniq = 'same-id'"), "1");
      assert.equal(await rows(`id = ${hb} AND data = 'from b'`), "1");
      assert.equal(await rows(`id = ${plain}`), "1");
      // A job under an id that is taken (never given twice; a bug if it
      // were) fails its commit instead of acknowledging a job not stored.
      a.enqueue(job(hb, "", "under b's id"));
      await assert.rejects(Promise.resolve(a.commit()), /Cannot commit to job store/);
      assert.equal(await rows("data = 'under b''s id'"), "0");
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres: the unique submits of one commit go in one statement: repeats share a handle, and a key another server commits meanwhile is read again, each submit getting its own answer",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const store = await PostgresJobStore.open(url, { name: "uniques" });
    const db = postgres(url, { max: 2, onnotice: () => {} });
    const inserted = Promise.withResolvers<void>();
    const commitIt = Promise.withResolvers<void>();
    // Another server's commit of "raced", in flight: the store's insert waits for it.
    const other = db.begin(async (tx) => {
      await tx`INSERT INTO gearman_jobs (id, function, uniq, ukey, data, priority)
        VALUES (4242, 'u', 'raced', 'raced', 'other server', 1)`;
      inserted.resolve();
      await commitIt.promise;
    });
    try {
      await inserted.promise;
      const submit = (unique: string, data: string) =>
        store.enqueueUnique(storedJob(store.nextHandle(), "u", unique, data));
      const answers = [
        submit("raced", "mine"),
        submit("fresh", "first"),
        submit("fresh", "repeat"),
        submit("other", "alone"),
      ];
      const committed = store.commit();
      // The commit's statement started and waits on the row in flight; its
      // snapshot does not have that row once committed, so the key is read again.
      await waitFor(
        "the commit to wait for the other transaction",
        async () =>
          (await db`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE '%ON CONFLICT%'`)[0]!.n === 1,
        5000,
      );
      commitIt.resolve();
      await other;
      await committed;
      const [raced, fresh, repeat, alone] = await Promise.all(answers);
      assert.equal(raced, 4242, "the submit got the job the other server committed");
      assert.equal(repeat, fresh, "a repeat in the same commit got the first one's handle");
      assert.notEqual(alone, fresh);
      const rows = await db`SELECT id, data FROM gearman_jobs ORDER BY id`;
      assert.deepEqual(
        rows.map((r) => [Number(r.id), new TextDecoder().decode(r.data)]).sort((a, b) =>
          (a[0] as number) - (b[0] as number)
        ),
        [[fresh!, "first"], [alone!, "alone"], [4242, "other server"]].sort((a, b) =>
          (a[0] as number) - (b[0] as number)
        ),
      );
    } finally {
      commitIt.resolve();
      await other.catch(() => {});
      await db.end();
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres: two servers committing the same unique ids in opposite orders at once both succeed and agree on every handle (no deadlock)",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const a = await PostgresJobStore.open(url, { name: "a" });
    const b = await PostgresJobStore.open(url, { name: "b" });
    try {
      for (let round = 0; round < 5; round++) {
        const keys = Array.from(
          { length: 200 },
          (_, i) => `r${round}-${String(i).padStart(3, "0")}`,
        );
        const submit = (store: PostgresJobStore, key: string) =>
          store.enqueueUnique(storedJob(store.nextHandle(), "both-ways", key, key));
        const fromA = keys.map((k) => submit(a, k));
        const fromB = keys.toReversed().map((k) => submit(b, k)).toReversed();
        await Promise.all([a.commit(), b.commit()]);
        assert.deepEqual(await Promise.all(fromB), await Promise.all(fromA), `round ${round}`);
      }
      assert.equal(await psqlIn(url, "SELECT count(*) FROM gearman_jobs"), "1000");
    } finally {
      await a.close();
      await b.close();
    }
  },
});

Deno.test({
  name:
    "postgres: function names and cron fields with quotes, backslashes, commas and braces are stored as given, in plain and unique commits",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const store = await PostgresJobStore.open(url, { name: "names" });
    try {
      const names = ['say "hi"', "back\\slash", "a,b", "{braces}", "", "NULL", "é ü 漢"];
      for (const [i, fn] of names.entries()) {
        store.enqueue({
          ...storedJob(store.nextHandle(), fn, "", `plain ${i}`),
          cron: `${fn}|cron`,
        });
        void store.enqueueUnique(storedJob(store.nextHandle(), fn, `u${i}`, `unique ${i}`));
      }
      await store.commit();
      for (const [i, fn] of names.entries()) {
        const jobs = await store.claim(fn, 10);
        assert.deepEqual(
          jobs.map((j) => [new TextDecoder().decode(j.data), j.cron]).sort(),
          [[`plain ${i}`, `${fn}|cron`], [`unique ${i}`, ""]],
          `function ${JSON.stringify(fn)}`,
        );
        store.release(jobs.map((j) => j.handle));
      }
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres: jobs held by servers that are not in the cluster are given back after two heartbeats; a live server's are kept",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const store = await PostgresJobStore.open(url, { name: "sweeper", leaseMs: 2000 });
    const psql = (q: string) => psqlIn(url, q);
    try {
      for (let i = 0; i < 6; i++) {
        store.enqueue(storedJob(store.nextHandle(), "orphaned", "", `job ${i}`));
      }
      await store.commit();
      // Two jobs each for two servers that are gone, two for this live one.
      await psql(`
        UPDATE gearman_jobs SET owner = v.o FROM (
          SELECT id, (ARRAY[424242, 424243, ${store.serverId}])[(row_number() OVER (ORDER BY id) - 1) / 2 + 1] AS o
          FROM gearman_jobs) v
        WHERE gearman_jobs.id = v.id`);
      assert.equal(await psql("SELECT count(DISTINCT owner) FROM gearman_jobs"), "3");
      await waitFor(
        "the orphaned jobs to be free",
        async () => await psql("SELECT count(*) FROM gearman_jobs WHERE owner IS NULL") === "4",
        10_000,
      );
      assert.equal(
        await psql(`SELECT count(*) FROM gearman_jobs WHERE owner = ${store.serverId}`),
        "2",
      );
    } finally {
      await store.close();
    }
  },
});

Deno.test({
  name:
    "postgres: in one commit, the end of a job with a unique id comes before a new submit with that id (a new job, not lost)",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const store = await PostgresJobStore.open(url, { name: "direct" });
    try {
      const job = (handle: number, data: string) => storedJob(handle, "uq", "same-id", data);
      const first = store.enqueueUnique(job(store.nextHandle(), "first"));
      await store.commit();
      const h1 = await first;
      const [claimed] = await store.claim("uq", 10);
      assert.equal(claimed?.handle, h1);
      // It ends, and a submit with the same id comes in the same batch.
      store.remove(h1);
      const second = store.enqueueUnique(job(store.nextHandle(), "second"));
      await store.commit();
      const h2 = await second;
      assert.notEqual(h2, h1, "the new submit got the ended job's handle");
      const rows = await store.claim("uq", 10);
      assert.deepEqual(rows.map((r) => new TextDecoder().decode(r.data)), ["second"]);
      // An end still buffered at close is written by close().
      store.remove(h2);
      assert.ok(store.pending);
    } finally {
      await store.close();
    }
    assert.equal(await psqlIn(url, "SELECT count(*) FROM gearman_jobs"), "0");
  },
});

Deno.test({
  name:
    "postgres: a commit with more job data than one statement takes (3 x 20 MiB) is split, and every job comes back whole; unique submits too",
  ignore,
  async fn() {
    const url = await freshDatabase();
    const store = await PostgresJobStore.open(url, { name: "big" });
    try {
      const sizes = [20, 21, 22].map((m) => m * 1024 * 1024);
      for (const [i, size] of sizes.entries()) {
        const data = new Uint8Array(size).fill(97 + i);
        store.enqueue({
          handle: store.nextHandle(),
          seq: 0,
          function: "big",
          unique: new Uint8Array(0),
          data,
          priority: 1,
          runAt: 0,
          cron: "",
          retries: 0,
        });
      }
      await store.commit();
      const rows = await store.claim("big", 10);
      assert.deepEqual(rows.map((r) => r.data.length), sizes);
      for (const [i, r] of rows.entries()) {
        assert.ok(r.data.every((b) => b === 97 + i), `job ${i} came back with other bytes`);
      }
      // Unique submits too: two statements, the second seeing the first's rows.
      const unique = (key: string, size: number) =>
        store.enqueueUnique({
          ...storedJob(store.nextHandle(), "big-unique", key, ""),
          data: new Uint8Array(size).fill(120),
        });
      const answers = [unique("u1", sizes[0]!), unique("u2", sizes[1]!), unique("u1", 1)];
      await store.commit();
      const [u1, u2, again] = await Promise.all(answers);
      assert.equal(again, u1, "the repeat in the second statement got the first job's handle");
      const held = await store.claim("big-unique", 10);
      assert.deepEqual(held.map((j) => [j.handle, j.data.length]), [[u1, sizes[0]], [
        u2,
        sizes[1],
      ]]);
    } finally {
      await store.close();
    }
  },
});

/**
 * A TCP proxy to PostgreSQL that can stall: while frozen it reads nothing
 * from either side, so queries and answers wait in the sockets' buffers
 * with the connections open, as on a half-open or black-holed network path.
 */
class StallingProxy implements AsyncDisposable {
  readonly #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  readonly #conns: Deno.Conn[] = [];
  readonly #pipes: Promise<void>[] = [];
  #gate: PromiseWithResolvers<void> | undefined;
  readonly #accepting: Promise<void>;

  constructor(targetPort: number) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#listener = listener;
    this.#accepting = (async () => {
      for await (const inbound of listener) {
        const outbound = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
        this.#conns.push(inbound, outbound);
        this.#pipes.push(this.#pipe(inbound, outbound), this.#pipe(outbound, inbound));
      }
    })().catch(() => {});
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  freeze(): void {
    this.#gate ??= Promise.withResolvers();
  }

  thaw(): void {
    this.#gate?.resolve();
    this.#gate = undefined;
  }

  /** Resolves once the proxy is not frozen. */
  async #passable(): Promise<void> {
    for (let gate = this.#gate; gate !== undefined; gate = this.#gate) await gate.promise;
  }

  async #pipe(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        await this.#passable();
        const n = await from.read(buf);
        if (n === null) break;
        await this.#passable();
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* closed */ }
    try {
      to.close();
    } catch { /* closed already */ }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.thaw();
    this.#listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed already */ }
    }
    await this.#accepting;
    await Promise.all(this.#pipes);
  }
}

Deno.test({
  name:
    "postgres: a database that stops answering (connections open, nothing comes back) fails submits within the lease, not when TCP gives up; the server recovers when it answers again",
  ignore,
  async fn() {
    const url = new URL(await freshDatabase());
    await using proxy = new StallingProxy(Number(url.port));
    url.port = String(proxy.port);
    await using cluster = new Cluster(url.toString());
    const [s] = await cluster.start(1, ["--cluster-lease", "2"]);
    const c1 = await cluster.connect(s!);
    const [before] = await submitBackground(c1, "stall", ["before"]);

    proxy.freeze();
    const started = Date.now();
    c1.send("SUBMIT_JOB_BG", "stall", "", "during");
    // No JOB_CREATED: the connection is closed once the commit has had no
    // answer for the lease (2 s), far from TCP's many minutes.
    const ended = await (async () => {
      for (;;) {
        const p = await c1.receive(30_000).catch((e: Error) => e);
        if (p instanceof Error) return p;
        assert.notEqual(
          p.name,
          "JOB_CREATED",
          "a job was acknowledged while nothing was committed",
        );
      }
    })();
    assert.ok(Date.now() - started < 25_000, `closed after ${Date.now() - started} ms`);
    assert.match(ended.message, /closed|ended|EOF/i, ended.message);
    assert.match(s!.stderr, /did not answer a commit in 2000 ms/);

    proxy.thaw();
    // Back: new submits are acknowledged again (the pool's stalled
    // connections got their answers, or were replaced).
    const c2 = await cluster.connect(s!);
    let after: string | undefined;
    await waitFor("a submit to be acknowledged again", async () => {
      c2.send("SUBMIT_JOB_BG", "stall", "", "after");
      const p = await c2.receive(5000).catch(() => undefined);
      if (p?.name !== "JOB_CREATED") return false;
      after = new TextDecoder().decode(p.args[0] as Uint8Array);
      return true;
    }, 30_000);
    // Both acknowledged jobs run, once each; the unacknowledged one may run
    // too (its commit may have landed late), but not twice.
    const w = await cluster.worker(s!, "stall");
    const ran: string[] = [];
    await waitFor("the acknowledged jobs to run", async () => {
      const job = await grab(w, 1000);
      if (job !== undefined) {
        ran.push(job.data);
        w.send("WORK_COMPLETE", job.handle, "");
      }
      return ran.includes("before") && ran.filter((d) => d === "after").length >= 1;
    }, 30_000);
    for (;;) {
      const job = await grab(w, 1500);
      if (job === undefined) break;
      ran.push(job.data);
      w.send("WORK_COMPLETE", job.handle, "");
    }
    assert.ok(before !== undefined && after !== undefined);
    assert.equal(ran.filter((d) => d === "before").length, 1, ran.join());
    assert.ok(ran.filter((d) => d === "during").length <= 1, ran.join());
  },
});

Deno.test({
  name:
    "postgres: a foreground job a background submit made durable (same unique id) is stored under a cluster handle, survives its server's SIGKILL and runs on another server",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    // A worker on A that takes the job and never finishes it.
    const wa = await c.worker(a!, "convert");
    const fg = await c.connect(a!);
    fg.send("SUBMIT_JOB", "convert", "same-id", "payload");
    const [fgHandle] = await expectPacket(fg, "JOB_CREATED", 10_000);
    const bg = await c.connect(a!);
    bg.send("SUBMIT_JOB_BG", "convert", "same-id", "payload");
    const [bgHandle] = await expectPacket(bg, "JOB_CREATED", 10_000);
    assert.equal(bgHandle, fgHandle, "the background submit coalesced onto the foreground job");
    const job = await grabOne(wa);
    assert.equal(job.unique, "same-id");
    // Stored (acknowledged means durable) under a handle no other server gives.
    await waitFor("the job's row", async () => await c.rows() === 1, 5000);
    assert.equal(await c.rows(`id >= ${2 ** 52} AND owner IS NOT NULL`), 1);
    // A dies with the job in its worker's hands; B's worker runs it.
    await a!.kill("SIGKILL");
    const wb = await c.worker(b!, "convert");
    const ran: string[] = [];
    const loop = runWorker(wb, (d) => ran.push(d));
    await waitFor("B's worker to run the job", () => ran.length === 1, 15_000);
    loop.stop();
    assert.deepEqual(ran, ["payload"]);
    await waitFor("the queue to empty", async () => await c.rows() === 0, 5000);
  },
});

Deno.test({
  name:
    "postgres: `cancel job` on any server cancels a job of the shared queue no server holds; a held one is refused with the server that holds it; replies stay in order",
  ignore,
  async fn() {
    await using c = await Cluster.create();
    const [a, b] = await c.start(2);
    // No workers anywhere: the jobs go to the shared queue.
    const ca = await c.connect(a!);
    const [queued, other] = await submitBackground(ca, "cancelme", ["q1", "q2"]);
    assert.equal(await c.rows("owner IS NULL"), 2);
    const admin = await adminOf(b!.port);
    try {
      // Pipelined: the cancel's reply (from the database) comes before status's.
      const [cancelled, rows] = await Promise.all([
        admin.command(`cancel job ${queued}`),
        admin.command("status"),
      ]);
      assert.deepEqual(cancelled, ["OK"]);
      assert.ok(Array.isArray(rows));
      assert.equal(await c.rows(), 1);
      await assert.rejects(admin.command(`cancel job ${queued}`), /ERR UNKNOWN_JOB/);

      // A job held by A (its worker is asleep there) can only be cancelled on A.
      const wa = await c.worker(a!, "held-there");
      assert.equal(await grab(wa), undefined);
      const [held] = await submitBackground(ca, "held-there", ["h1"]);
      await waitFor("A to hold the job", async () => await c.rows("owner IS NOT NULL") === 1, 5000);
      await assert.rejects(
        admin.command(`cancel job ${held}`),
        (err: Error) =>
          err.message.includes(`ERR JOB_HELD_ELSEWHERE held+by+`) &&
          err.message.includes(`%3A${a!.port};+cancel+it+there`),
      );
      assert.equal(await c.rows(), 2, "the held job and the other queued one are still there");
      assert.ok(other !== undefined);
    } finally {
      await admin.close();
    }
  },
});

// Last in the file: the tests above share one PostgreSQL.
Deno.test({
  name: "postgres: stop the test database",
  ignore,
  async fn() {
    const p = await postgresServer();
    await p.stop();
    pg = undefined;
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: p.port }),
      Deno.errors.ConnectionRefused,
      "the test database is down",
    );
  },
});
