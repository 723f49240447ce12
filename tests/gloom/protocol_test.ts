// The Gloom protocol over raw sockets, as the Gloom README describes it:
// workers join a job type, get {"type":"job","id","body"}, answer
// {"type":"response","body"}; masters send {"type":"job","job_type","id","body"}
// and get {"id","body"} back.

import assert from "node:assert/strict";
import {
  assertError,
  RawGloom,
  rawWorker,
  startGloomServer,
  status,
  untilStatus,
} from "./_helpers.ts";

Deno.test("gloom: join, job, response", async () => {
  await using server = startGloomServer();
  await using w = await rawWorker(server, "echo");
  await using m = await RawGloom.master(server);
  await m.send({
    type: "job",
    job_type: "echo",
    id: "message_id",
    body: { text: "hi", n: [1, 2] },
  });
  const job = await w.recv();
  assert.equal(job.type, "job");
  assert.equal(job.id, "message_id");
  assert.deepEqual(job.body, { text: "hi", n: [1, 2] });
  await w.send({ type: "response", body: { echoed: job.body } });
  // The response is exactly {"id", "body"}.
  assert.deepEqual(await m.recv(), {
    id: "message_id",
    body: { echoed: { text: "hi", n: [1, 2] } },
  });
});

Deno.test("gloom: any JSON body round-trips; numeric ids work", async () => {
  await using server = startGloomServer();
  await using w = await rawWorker(server, "same");
  await using m = await RawGloom.master(server);
  const bodies = [null, 0, -1.5, "text", "", true, false, [], {}, [null, { a: "ü€😀" }]];
  for (let i = 0; i < bodies.length; i++) {
    await m.send({ type: "job", job_type: "same", id: i, body: bodies[i] });
    const job = await w.recv();
    assert.equal(job.id, i);
    assert.deepEqual(job.body, bodies[i]);
    await w.send({ type: "response", body: job.body });
    assert.deepEqual(await m.recv(), { id: i, body: bodies[i] });
  }
});

Deno.test("gloom: a worker gets the next job after answering, one at a time", async () => {
  await using server = startGloomServer();
  await using m = await RawGloom.master(server);
  for (let i = 1; i <= 3; i++) await m.send({ type: "job", job_type: "q", id: `j${i}`, body: i });
  await using w = await RawGloom.worker(server);
  await w.send({ type: "join", job_type: "q" });
  for (let i = 1; i <= 3; i++) {
    const job = await w.recv();
    assert.deepEqual([job.id, job.body], [`j${i}`, i]);
    // Nothing more until this one is answered.
    await w.expectNothing(50);
    await w.send({ type: "response", body: i * 10 });
    assert.deepEqual(await m.recv(), { id: `j${i}`, body: i * 10 });
  }
  await w.expectNothing(50);
});

Deno.test("gloom: jobs are shared out among the workers of a type", async () => {
  await using server = startGloomServer();
  await using w1 = await rawWorker(server, "share");
  await using w2 = await rawWorker(server, "share");
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "share", id: "a", body: 1 });
  await m.send({ type: "job", job_type: "share", id: "b", body: 2 });
  const [ja, jb] = [await w1.recv(), await w2.recv()];
  assert.deepEqual(new Set([ja.id, jb.id]), new Set(["a", "b"]));
  await w2.send({ type: "response", body: "second" });
  await w1.send({ type: "response", body: "first" });
  const got = [await m.recv(), await m.recv()];
  assert.deepEqual(
    new Set(got.map((r) => `${r.id}=${r.body}`)),
    new Set([`${ja.id}=first`, `${jb.id}=second`]),
  );
});

Deno.test("gloom: a repeated join recasts the worker's job type", async () => {
  await using server = startGloomServer();
  await using w = await rawWorker(server, "first");
  await w.send({ type: "join", job_type: "second" });
  let s = await untilStatus(server, (s) => s.second?.workers === 1);
  assert.equal(s.first.workers, 0);
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "first", id: "old", body: null });
  await w.expectNothing(100);
  await m.send({ type: "job", job_type: "second", id: "new", body: null });
  assert.equal((await w.recv()).id, "new");

  // A join while holding a job takes effect after the response: the job held
  // is not given back.
  await w.send({ type: "join", job_type: "first" });
  await w.expectNothing(50);
  s = await status(server);
  assert.deepEqual(s.second, { queued: 0, running: 1, workers: 1 });
  await w.send({ type: "response", body: "done" });
  assert.deepEqual(await m.recv(), { id: "new", body: "done" });
  const job = await w.recv();
  assert.deepEqual([job.id, job.body], ["old", null]);
  s = await status(server);
  assert.deepEqual(s.first, { queued: 0, running: 1, workers: 1 });
  assert.deepEqual(s.second, { queued: 0, running: 0, workers: 0 });

  // Joining the same type again changes nothing.
  await w.send({ type: "response", body: 1 });
  assert.deepEqual(await m.recv(), { id: "old", body: 1 });
  await w.send({ type: "join", job_type: "first" });
  await m.send({ type: "job", job_type: "first", id: "again", body: 2 });
  assert.equal((await w.recv()).id, "again");
});

Deno.test("gloom: an outstanding id is refused system-wide, and free again after its response", async () => {
  await using server = startGloomServer();
  await using m1 = await RawGloom.master(server);
  await using m2 = await RawGloom.master(server);
  await m1.send({ type: "job", job_type: "dup", id: "x", body: 1 });
  await m1.send({ type: "job", job_type: "dup", id: "x", body: 2 });
  assertError(await m1.recv(), "duplicate_id", "x");
  // Another master, even another job type: still the same id.
  await m2.send({ type: "job", job_type: "other", id: "x", body: 3 });
  const err = assertError(await m2.recv(), "duplicate_id", "x");
  assert.match(err.message, /"x"/);
  // 1 and "1" are different ids.
  await m2.send({ type: "job", job_type: "dup", id: 1, body: "n" });
  await m2.send({ type: "job", job_type: "dup", id: "1", body: "s" });
  await m2.expectNothing(50);
  let s = await untilStatus(server, (s) => s.dup?.queued === 3);

  await using w = await rawWorker(server, "dup");
  const seen = new Map<string, { m: RawGloom; body: unknown }>([
    [JSON.stringify("x"), { m: m1, body: 1 }],
    [JSON.stringify(1), { m: m2, body: "n" }],
    [JSON.stringify("1"), { m: m2, body: "s" }],
  ]);
  for (let i = 0; i < 3; i++) {
    const job = await w.recv();
    const want = seen.get(JSON.stringify(job.id))!;
    assert.deepEqual(job.body, want.body);
    await w.send({ type: "response", body: `r${i}` });
    assert.deepEqual(await want.m.recv(), { id: job.id, body: `r${i}` });
  }
  // After the response the id may be reused, from any master.
  await m2.send({ type: "job", job_type: "dup", id: "x", body: "reused" });
  const job = await w.recv();
  assert.deepEqual([job.id, job.body], ["x", "reused"]);
  await w.send({ type: "response", body: "ok" });
  assert.deepEqual(await m2.recv(), { id: "x", body: "ok" });
  s = await status(server);
  assert.deepEqual(s.dup, { queued: 0, running: 0, workers: 1 });
});

Deno.test("gloom: a master that leaves frees its ids and drops its queued jobs", async () => {
  await using server = startGloomServer();
  const m1 = await RawGloom.master(server);
  await m1.send({ type: "job", job_type: "gone", id: "mine", body: 1 });
  await m1.expectNothing(30);
  await untilStatus(server, (s) => s.gone?.queued === 1);
  await m1.close();
  await using m2 = await RawGloom.master(server);
  await untilStatus(server, (s) => s.gone?.queued === 0);
  await m2.send({ type: "job", job_type: "gone", id: "mine", body: 2 });
  await using w = await rawWorker(server, "gone");
  const job = await w.recv();
  assert.deepEqual([job.id, job.body], ["mine", 2]);
  await w.send({ type: "response", body: null });
  assert.deepEqual(await m2.recv(), { id: "mine", body: null });
});

Deno.test("gloom: a worker that disconnects holding a job gives it back to the queue", async () => {
  await using server = startGloomServer();
  await using m = await RawGloom.master(server);
  const w1 = await rawWorker(server, "fragile");
  await m.send({ type: "job", job_type: "fragile", id: "j", body: { try: 1 } });
  assert.equal((await w1.recv()).id, "j");
  let s = await status(server);
  assert.deepEqual(s.fragile, { queued: 0, running: 1, workers: 1 });
  await using w2 = await rawWorker(server, "fragile");
  await w2.expectNothing(50);
  await w1.close();
  const job = await w2.recv();
  assert.deepEqual(job, { type: "job", id: "j", job_type: "fragile", body: { try: 1 } });
  s = await status(server);
  assert.deepEqual(s.fragile, { queued: 0, running: 1, workers: 1 });
  await w2.send({ type: "response", body: "survived" });
  assert.deepEqual(await m.recv(), { id: "j", body: "survived" });
});

Deno.test("gloom: a worker that leaves while idle is forgotten; jobs wait for the next", async () => {
  await using server = startGloomServer();
  const w1 = await rawWorker(server, "idle");
  await w1.close();
  await untilStatus(server, (s) => s.idle?.workers === 0);
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "idle", id: 1, body: 1 });
  await m.expectNothing(30);
  assert.deepEqual((await status(server)).idle, { queued: 1, running: 0, workers: 0 });
  await using w2 = await rawWorker(server, "idle");
  assert.equal((await w2.recv()).id, 1);
});

Deno.test("gloom: status lists queued and running jobs and workers per type", async () => {
  await using server = startGloomServer();
  await using m = await RawGloom.master(server);
  await m.send({ type: "status" });
  assert.deepEqual(await m.recv(), { type: "status", job_types: {} });

  await using w = await rawWorker(server, "busy");
  await using idle = await rawWorker(server, "spare");
  for (let i = 0; i < 3; i++) await m.send({ type: "job", job_type: "busy", id: i, body: i });
  await m.send({ type: "job", job_type: "nobody", id: "n", body: null });
  await w.recv();
  await m.send({ type: "status", id: "st-1" });
  assert.deepEqual(await m.recv(), {
    type: "status",
    id: "st-1",
    job_types: {
      busy: { queued: 2, running: 1, workers: 1 },
      spare: { queued: 0, running: 0, workers: 1 },
      nobody: { queued: 1, running: 0, workers: 0 },
    },
  });
  await idle.expectNothing(10);
});

Deno.test("gloom: non-ASCII job types work and show in status", async () => {
  await using server = startGloomServer();
  await using w = await rawWorker(server, "größe/😀");
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "größe/😀", id: "u", body: "x" });
  const job = await w.recv();
  assert.equal(job.job_type, "größe/😀");
  await w.send({ type: "response", body: "y" });
  assert.deepEqual(await m.recv(), { id: "u", body: "y" });
  assert.deepEqual((await status(server))["größe/😀"], { queued: 0, running: 0, workers: 1 });
});

Deno.test("gloom: many jobs through several workers, each answered once", async () => {
  await using server = startGloomServer();
  const workers = await Promise.all([1, 2, 3].map(() => rawWorker(server, "many")));
  const serving = workers.map(async (w) => {
    let n = 0;
    try {
      for (;;) {
        const job = await w.recv(500);
        await w.send({ type: "response", body: job.body * 2 });
        n++;
      }
    } catch { /* no more jobs */ }
    return n;
  });
  await using m = await RawGloom.master(server);
  const N = 200;
  for (let i = 0; i < N; i++) await m.send({ type: "job", job_type: "many", id: `m${i}`, body: i });
  const results = new Map<string, number>();
  for (let i = 0; i < N; i++) {
    const r = await m.recv();
    assert.ok(!results.has(r.id));
    results.set(r.id, r.body);
  }
  for (let i = 0; i < N; i++) assert.equal(results.get(`m${i}`), i * 2);
  const counts = await Promise.all(serving);
  assert.equal(counts.reduce((a, b) => a + b, 0), N);
  for (const w of workers) await w.close();
});

Deno.test("gloom: a full queue answers queue_full, and the id is not taken", async () => {
  await using server = startGloomServer({ maxQueue: 1 });
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "small", id: "a", body: 1 });
  await m.send({ type: "job", job_type: "small", id: "b", body: 2 });
  const err = assertError(await m.recv(), "queue_full", "b");
  assert.match(err.message, /queue is full/);
  await using w = await rawWorker(server, "small");
  assert.equal((await w.recv()).id, "a");
  await w.send({ type: "response", body: "A" });
  assert.deepEqual(await m.recv(), { id: "a", body: "A" });
  await m.send({ type: "job", job_type: "small", id: "b", body: 2 });
  assert.equal((await w.recv()).id, "b");
  await w.send({ type: "response", body: "B" });
  assert.deepEqual(await m.recv(), { id: "b", body: "B" });
});
