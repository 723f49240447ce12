// The admin text protocol on the binary port, over real sockets.

import assert from "node:assert/strict";
import { VERSION } from "../src/version.ts";
import {
  admin,
  connect,
  expectClosed,
  expectPacket,
  grab,
  grabNothing,
  startServer,
  statusOf,
  submit,
  sync,
  waitFor,
  worker,
} from "./_helpers.ts";

Deno.test("server: admin workers lists every connection with its id and functions", async () => {
  await using server = startServer();
  await using w = await connect(server);
  w.send("SET_CLIENT_ID", "wid");
  w.send("CAN_DO", "fa");
  w.send("CAN_DO", "fb");
  await sync(w);
  await using c = await connect(server);
  await sync(c);
  await using a = await connect(server);
  const lines = await admin(a, "workers");
  assert.equal(lines.length, 3, JSON.stringify(lines));
  for (const line of lines) assert.match(line, /^\d+ 127\.0\.0\.1 \S+ :( \S+)*$/);
  const mine = lines.find((l) => l.includes(" wid :"));
  // Most recently registered first, as gearmand lists them.
  assert.match(mine!, /^\d+ 127\.0\.0\.1 wid : fb fa$/);
  assert.equal(
    lines.filter((l) => / - :$/.test(l)).length,
    2,
    "client and admin have no functions",
  );
  await w.close();
  await waitFor(
    "the worker to leave the listing",
    async () => (await admin(a, "workers")).length === 2,
  );
});

Deno.test("server: admin status shows total, running and worker counts per function", async () => {
  await using server = startServer();
  await using a = await connect(server);
  assert.deepEqual(await admin(a, "status"), []);
  await using c = await connect(server);
  await submit(c, "SUBMIT_JOB_BG", "st", "", "1");
  await submit(c, "SUBMIT_JOB", "st", "", "2");
  await using w = await worker(server, "st");
  await using _w2 = await worker(server, "st", "idle");
  await grab(w);
  assert.deepEqual((await admin(a, "status")).sort(), ["idle\t0\t0\t1", "st\t2\t1\t2"]);
});

Deno.test("server: admin prioritystatus shows queued jobs per priority and workers", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  await submit(c, "SUBMIT_JOB_HIGH_BG", "ps", "", "h");
  await submit(c, "SUBMIT_JOB_LOW_BG", "ps", "", "l1");
  await submit(c, "SUBMIT_JOB_LOW", "ps", "", "l2");
  await submit(c, "SUBMIT_JOB", "ps", "", "n");
  await submit(c, "SUBMIT_JOB_HIGH", "ps", "", "h2");
  assert.deepEqual(await admin(a, "prioritystatus"), ["ps\t2\t1\t2\t0"]);
  await using w = await worker(server, "ps");
  await grab(w); // a running job is not queued
  assert.deepEqual(await admin(a, "prioritystatus"), ["ps\t1\t1\t2\t1"]);
});

Deno.test("server: admin show jobs lists handle, retries, ignored and background columns", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  assert.deepEqual(await admin(a, "show jobs"), []);
  const fg = await submit(c, "SUBMIT_JOB", "sj", "", "fg");
  const bg = await submit(c, "SUBMIT_JOB_BG", "sj", "", "bg");
  await using w = await worker(server, "sj");
  await grab(w);
  assert.deepEqual(
    (await admin(a, "show jobs")).sort(),
    [`${fg}\t0\t0\t0`, `${bg}\t0\t0\t1`].sort(),
  );
  w.send("WORK_COMPLETE", fg, "");
  await expectPacket(c, "WORK_COMPLETE");
  assert.deepEqual(await admin(a, "show jobs"), [`${bg}\t0\t0\t1`]);
});

Deno.test("server: admin show unique jobs lists each job's unique id", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  await submit(c, "SUBMIT_JOB_BG", "su", "u-a", "1");
  await submit(c, "SUBMIT_JOB", "su", "u-b", "2");
  await submit(c, "SUBMIT_JOB_BG", "su2", "", "3");
  // gearmand prints an empty line for a job without a unique id.
  assert.deepEqual((await admin(a, "show unique jobs")).sort(), ["", "u-a", "u-b"]);
  await using w = await worker(server, "su");
  const job = await grab(w, "GRAB_JOB_UNIQ");
  w.send("WORK_COMPLETE", job.handle, "");
  await sync(w);
  assert.deepEqual(
    (await admin(a, "show unique jobs")).sort(),
    ["", job.unique === "u-a" ? "u-b" : "u-a"],
  );
});

Deno.test("server: admin cancel job fails a queued job to its client; unknown handle is ERR", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  const h = await submit(c, "SUBMIT_JOB", "cj", "", "queued");
  const bg = await submit(c, "SUBMIT_JOB_BG", "cj", "", "bg");
  const kept = await submit(c, "SUBMIT_JOB_BG", "cj", "", "kept");
  assert.deepEqual(await admin(a, `cancel job ${h}`), ["OK"]);
  assert.deepEqual(await expectPacket(c, "WORK_FAIL"), [h]);
  assert.deepEqual(await admin(a, `cancel job ${bg}`), ["OK"]);
  assert.deepEqual(await statusOf(a, "cj"), [1, 0, 0]);
  await using w = await worker(server, "cj");
  assert.equal((await grab(w)).handle, kept);
  await grabNothing(w);
  const [err] = await admin(a, "cancel job H:test:999999");
  assert.match(err!, /^ERR /);
  const [err2] = await admin(a, `cancel job ${h}`);
  assert.match(err2!, /^ERR /, "a cancelled job is gone");
  assert.ok(await c.silentFor(50));
});

Deno.test("server: admin create function makes it show in status", async () => {
  await using server = startServer();
  await using a = await connect(server);
  assert.deepEqual(await admin(a, "create function newf"), ["OK"]);
  assert.deepEqual(await admin(a, "status"), ["newf\t0\t0\t0"]);
  const [err] = await admin(a, "create function");
  assert.match(err!, /^ERR /);
});

Deno.test("server: admin drop function is OK when idle; ERR with queued jobs, workers, or unknown", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  await admin(a, "create function idle");
  assert.deepEqual(await admin(a, "drop function idle"), ["OK"]);
  assert.equal(await statusOf(a, "idle"), undefined);
  const h = await submit(c, "SUBMIT_JOB_BG", "busy", "", "x");
  assert.match((await admin(a, "drop function busy"))[0]!, /^ERR /);
  assert.deepEqual(await statusOf(a, "busy"), [1, 0, 0]);
  const w = await worker(server, "manned");
  assert.match((await admin(a, "drop function manned"))[0]!, /^ERR /);
  assert.match((await admin(a, "drop function nosuch"))[0]!, /^ERR /);
  await w.close();
  await waitFor("the worker to go", async () => (await statusOf(a, "manned"))?.[2] === 0);
  assert.deepEqual(await admin(a, "drop function manned"), ["OK"]);
  // The refused drop left the job usable.
  await using w2 = await worker(server, "busy");
  assert.equal((await grab(w2)).handle, h);
});

Deno.test("server: admin maxqueue with one size limits a function; no size lifts it", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  assert.deepEqual(await admin(a, "maxqueue mq 2"), ["OK"]);
  await submit(c, "SUBMIT_JOB_BG", "mq", "", "1");
  const h2 = await submit(c, "SUBMIT_JOB_BG", "mq", "u2", "2");
  c.send("SUBMIT_JOB_BG", "mq", "", "3");
  assert.deepEqual(await expectPacket(c, "ERROR"), ["QUEUE_ERROR", "Job queue is full"]);
  c.send("SUBMIT_JOB_HIGH", "mq", "", "4");
  assert.equal((await expectPacket(c, "ERROR"))[0], "QUEUE_ERROR");
  // Joining an existing job is not a new job (as gearmand).
  assert.equal(await submit(c, "SUBMIT_JOB", "mq", "u2", "2"), h2);
  assert.deepEqual(await statusOf(a, "mq"), [2, 0, 0]);
  assert.deepEqual(await admin(a, "maxqueue mq"), ["OK"]);
  await submit(c, "SUBMIT_JOB_BG", "mq", "", "5");
  assert.deepEqual(await admin(a, "maxqueue mq -1"), ["OK"]);
  await submit(c, "SUBMIT_JOB_BG", "mq", "", "6");
  assert.deepEqual(await statusOf(a, "mq"), [4, 0, 0]);
});

Deno.test("server: admin maxqueue with HIGH NORMAL LOW sizes limits each priority", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  assert.deepEqual(await admin(a, "maxqueue pq 3 1 0"), ["OK"]);
  await submit(c, "SUBMIT_JOB_BG", "pq", "", "n1");
  c.send("SUBMIT_JOB_BG", "pq", "", "n2");
  assert.deepEqual(await expectPacket(c, "ERROR"), ["QUEUE_ERROR", "Job queue is full"]);
  await submit(c, "SUBMIT_JOB_LOW_BG", "pq", "", "l1"); // 0: unlimited
  await submit(c, "SUBMIT_JOB_LOW_BG", "pq", "", "l2");
  c.send("SUBMIT_JOB_HIGH_BG", "pq", "", "h1");
  // As gearmand: each limit is compared with all the function's jobs.
  assert.deepEqual(await expectPacket(c, "ERROR"), ["QUEUE_ERROR", "Job queue is full"]);
  assert.deepEqual(await admin(a, "prioritystatus"), ["pq\t0\t1\t2\t0"]);
});

Deno.test("server: admin maxqueue counts running jobs against the limit (as gearmand)", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  await using w = await worker(server, "rq");
  assert.deepEqual(await admin(a, "maxqueue rq 1"), ["OK"]);
  const h = await submit(c, "SUBMIT_JOB", "rq", "", "1");
  await grab(w);
  c.send("SUBMIT_JOB", "rq", "", "2");
  assert.deepEqual(await expectPacket(c, "ERROR"), ["QUEUE_ERROR", "Job queue is full"]);
  w.send("WORK_COMPLETE", h, "");
  await expectPacket(c, "WORK_COMPLETE");
  await submit(c, "SUBMIT_JOB", "rq", "", "3");
});

Deno.test("server: serve({ maxQueue }) is the default limit", async () => {
  await using server = startServer({ maxQueue: 1 });
  await using a = await connect(server);
  await using c = await connect(server);
  await submit(c, "SUBMIT_JOB_BG", "dq", "", "1");
  c.send("SUBMIT_JOB_BG", "dq", "", "2");
  assert.equal((await expectPacket(c, "ERROR"))[0], "QUEUE_ERROR");
  assert.deepEqual(await admin(a, "maxqueue dq 2"), ["OK"]);
  await submit(c, "SUBMIT_JOB_BG", "dq", "", "3");
});

Deno.test("server: admin getpid, verbose and version", async () => {
  await using server = startServer();
  await using a = await connect(server);
  assert.deepEqual(await admin(a, "getpid"), [`OK ${Deno.pid}`]);
  assert.match((await admin(a, "verbose"))[0]!, /^OK [A-Z]+$/);
  assert.deepEqual(await admin(a, "version"), [`OK ${VERSION}`]);
});

Deno.test("server: admin clients lists each client and the jobs it waits on", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c = await connect(server);
  await submit(c, "SUBMIT_JOB", "cl", "cu", "x");
  let lines = await admin(a, "clients");
  let i = lines.indexOf("\tcl\tcu\t");
  assert.ok(i > 0, JSON.stringify(lines));
  assert.match(lines[i - 1]!, /^127\.0\.0\.1:\d+$/);
  await using w = await worker(server, "cl");
  await grab(w);
  lines = await admin(a, "clients");
  i = lines.findIndex((l) => l.startsWith("\tcl\tcu\t"));
  assert.match(lines[i]!, /^\tcl\tcu\t127\.0\.0\.1:\d+$/);
});

Deno.test("server: admin jobs lists function, unique, worker address and listeners", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await using c1 = await connect(server);
  await using c2 = await connect(server);
  const h = await submit(c1, "SUBMIT_JOB", "jb", "ju", "x");
  await submit(c2, "SUBMIT_JOB", "jb", "ju", "x");
  assert.deepEqual(await admin(a, "jobs"), ["jb\tju\t\t2"]);
  await using w = await worker(server, "jb");
  await grab(w);
  const [line] = await admin(a, "jobs");
  assert.match(line!, /^jb\tju\t127\.0\.0\.1:\d+\t2$/);
  w.send("WORK_COMPLETE", h, "");
  await sync(w);
  assert.deepEqual(await admin(a, "jobs"), []);
});

Deno.test("server: an unknown admin command gets ERR UNKNOWN_COMMAND and the connection stays", async () => {
  await using server = startServer();
  await using a = await connect(server);
  const [err] = await admin(a, "frobnicate now");
  assert.match(err!, /^ERR UNKNOWN_COMMAND /);
  assert.deepEqual(await admin(a, "version"), [`OK ${VERSION}`]);
});

Deno.test("server: admin commands accept \\r\\n endings, pipelining and mixing with packets", async () => {
  await using server = startServer();
  await using a = await connect(server);
  await admin(a, "create function crlf");
  a.sendRaw("status\r\nversion\r\n");
  assert.equal(await a.receiveLine(), "crlf\t0\t0\t0");
  assert.equal(await a.receiveLine(), ".");
  assert.equal(await a.receiveLine(), `OK ${VERSION}`);
  a.sendRaw("VERSION\r\n");
  assert.equal(await a.receiveLine(), `OK ${VERSION}`, "command names are case-insensitive");
  await sync(a);
  assert.deepEqual(await admin(a, "getpid"), [`OK ${Deno.pid}`]);
  await sync(a);
});

Deno.test("server: admin shutdown graceful drains: running jobs finish, queued foreground jobs fail, nothing new starts", async () => {
  await using server = startServer();
  const port = server.addr.port;
  await using c = await connect(server);
  await using w = await worker(server, "late");
  await using a = await connect(server);
  // One job running, one queued behind it, one background job queued.
  const running = await submit(c, "SUBMIT_JOB", "late", "", "running");
  assert.deepEqual(await grab(w), { handle: running, fn: "late", data: "running" });
  const queued = await submit(c, "SUBMIT_JOB", "late", "", "queued");
  await submit(c, "SUBMIT_JOB_BG", "late", "", "background");
  assert.deepEqual(await admin(a, "shutdown graceful"), ["OK"]);
  await waitFor("the listener to close", async () => {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return false;
    } catch (err) {
      return err instanceof Deno.errors.ConnectionRefused;
    }
  });
  // The queued foreground job will not run: its client hears so at once.
  assert.deepEqual(await expectPacket(c, "WORK_FAIL"), [queued]);
  // No new jobs, none handed out.
  c.send("SUBMIT_JOB", "late", "", "too late");
  assert.equal((await expectPacket(c, "ERROR"))[0], "SERVER_DRAINING");
  w.send("GRAB_JOB");
  await expectPacket(w, "NO_JOB");
  let finished = false;
  void server.finished.then(() => (finished = true));
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(!finished, "not finished while a job runs");
  // The running job finishes and its result is delivered; then the server stops.
  w.send("WORK_COMPLETE", running, "served");
  assert.deepEqual(await expectPacket(c, "WORK_COMPLETE"), [running, "served"]);
  await server.finished;
  await expectClosed(c);
  await expectClosed(w);
});

Deno.test("server: a graceful shutdown past its timeout fails the jobs still running", async () => {
  await using server = startServer();
  await using c = await connect(server);
  await using w = await worker(server, "stuck");
  const h = await submit(c, "SUBMIT_JOB", "stuck", "", "x");
  assert.deepEqual(await grab(w), { handle: h, fn: "stuck", data: "x" });
  const done = server.shutdown({ graceful: true, timeoutMs: 200 });
  assert.deepEqual(await expectPacket(c, "WORK_FAIL"), [h]);
  await done;
  await expectClosed(c);
});

Deno.test("server: admin shutdown closes every connection after replying OK", async () => {
  await using server = startServer();
  await using c = await connect(server);
  await using a = await connect(server);
  await sync(c);
  assert.deepEqual(await admin(a, "shutdown"), ["OK"]);
  await expectClosed(a);
  await expectClosed(c);
  await server.finished;
});
