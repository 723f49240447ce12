// Gloom and Gearman share queues: a job type is a function name. Gloom
// masters' jobs run on Gearman workers, Gearman clients' jobs on Gloom
// workers, and all of them show in the admin protocol.

import assert from "node:assert/strict";
import { Client, PacketClient } from "../../client.ts";
import { Worker } from "../../worker.ts";
import {
  assertError,
  gearmanAddr,
  RawGloom,
  rawWorker,
  startGloomServer,
  untilStatus,
} from "./_helpers.ts";

Deno.test("mixed: a Gloom master's job served by a Gearman worker", async () => {
  await using server = startGloomServer();
  const seen: string[] = [];
  await using worker = new Worker({ servers: [gearmanAddr(server)] });
  worker.register("g", (job) => {
    seen.push(job.text());
    const body = job.json<{ op: string; n: number }>();
    if (body.op === "json") return JSON.stringify({ doubled: body.n * 2 });
    return `plain text ${body.n}`; // not JSON: the master gets it as a string
  });
  worker.start();
  await untilStatus(server, (s) => s.g?.workers === 1);
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "g", id: "a", body: { op: "json", n: 21 } });
  assert.deepEqual(await m.recv(), { id: "a", body: { doubled: 42 } });
  await m.send({ type: "job", job_type: "g", id: "b", body: { op: "text", n: 1 } });
  assert.deepEqual(await m.recv(), { id: "b", body: "plain text 1" });
  // The Gearman worker got the body's JSON text as its data.
  assert.deepEqual(seen, ['{"op":"json","n":21}', '{"op":"text","n":1}']);
  await worker.stop();
});

Deno.test("mixed: a Gearman client's job served by a Gloom worker", async () => {
  await using server = startGloomServer();
  await using w = await rawWorker(server, "gw");
  await using client = new Client({ servers: [gearmanAddr(server)] });

  // JSON data arrives parsed; the id is the job handle when there is no unique.
  const run1 = client.run("gw", '{"a":1,"list":[true,null]}');
  const job1 = await w.recv();
  assert.equal(job1.type, "job");
  assert.match(job1.id, /^H:test:\d+$/);
  assert.deepEqual(job1.body, { a: 1, list: [true, null] });
  await w.send({ type: "response", body: { b: 2 } });
  // The response body comes back as its JSON text.
  assert.equal((await run1).text(), '{"b":2}');

  // Data that is not JSON arrives as a string; the id is the unique when given.
  const run2 = client.run("gw", "hello world", { unique: "u-17" });
  const job2 = await w.recv();
  assert.deepEqual([job2.id, job2.body], ["u-17", "hello world"]);
  await w.send({ type: "response", body: "HELLO WORLD" });
  assert.equal((await run2).text(), '"HELLO WORLD"');

  // Empty data is the empty string.
  const run3 = client.run("gw", "");
  assert.equal((await w.recv()).body, "");
  await w.send({ type: "response", body: null });
  assert.equal((await run3).text(), "null");
});

Deno.test("mixed: Gloom and Gearman workers of one type share its queue", async () => {
  await using server = startGloomServer();
  let gearmanRan = 0;
  await using worker = new Worker({ servers: [gearmanAddr(server)] });
  worker.register("both", async (job) => {
    gearmanRan++;
    await new Promise((r) => setTimeout(r, 5));
    return JSON.stringify({ by: "gearman", n: job.json<number>() });
  });
  worker.start();
  await using w = await rawWorker(server, "both");
  await untilStatus(server, (s) => s.both?.workers === 2);
  let gloomRan = 0;
  const gloomServing = (async () => {
    try {
      for (;;) {
        const job = await w.recv(300);
        gloomRan++;
        await w.send({ type: "response", body: { by: "gloom", n: job.body } });
      }
    } catch { /* idle: done */ }
  })();
  await using m = await RawGloom.master(server);
  await using client = new Client({ servers: [gearmanAddr(server)] });
  const N = 40;
  for (let i = 0; i < N; i++) await m.send({ type: "job", job_type: "both", id: i, body: i });
  const fromClient = Array.from({ length: N }, (_, i) => client.run("both", String(N + i)));
  const got = new Map<number, unknown>();
  for (let i = 0; i < N; i++) {
    const r = await m.recv();
    got.set(r.id, r.body);
  }
  for (let i = 0; i < N; i++) assert.equal((got.get(i) as { n: number }).n, i);
  const clientResults = (await Promise.all(fromClient)).map((r) => r.json<{ n: number }>().n);
  assert.deepEqual(clientResults, Array.from({ length: N }, (_, i) => N + i));
  await gloomServing;
  assert.equal(gloomRan + gearmanRan, 2 * N);
  assert.ok(gloomRan > 0 && gearmanRan > 0, `gloom ran ${gloomRan}, gearman ran ${gearmanRan}`);
  await worker.stop();
});

Deno.test("mixed: Gearman failures and exceptions reach the Gloom master as error frames", async () => {
  await using server = startGloomServer();
  await using failing = new Worker({ servers: [gearmanAddr(server)], exceptions: false });
  failing.register("fails", () => {
    throw new Error("no");
  });
  failing.start();
  await using throwing = new Worker({ servers: [gearmanAddr(server)] });
  throwing.register("throws", () => {
    throw new Error("disk on fire");
  });
  throwing.start();
  await untilStatus(server, (s) => s.fails?.workers === 1 && s.throws?.workers === 1);
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "fails", id: "f", body: null });
  assertError(await m.recv(), "job_failed", "f");
  await m.send({ type: "job", job_type: "throws", id: "t", body: null });
  const err = assertError(await m.recv(), "job_exception", "t");
  assert.match(err.message, /disk on fire/);
  // Both ids are free again.
  await m.send({ type: "job", job_type: "fails", id: "t", body: null });
  assertError(await m.recv(), "job_failed", "t");
  await failing.stop();
  await throwing.stop();
});

Deno.test("mixed: Gloom jobs and workers show in the admin protocol", async () => {
  await using server = startGloomServer();
  await using w = await rawWorker(server, "adm");
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "adm", id: 1, body: 1 });
  await m.send({ type: "job", job_type: "adm", id: 2, body: 2 });
  await w.recv();
  await using admin = await PacketClient.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  const status = await admin.admin("status", 3000);
  assert.ok(status.includes("adm\t2\t1\t1"), JSON.stringify(status));
  const workers = await admin.admin("workers", 3000);
  assert.ok(
    workers.some((l) => / gloom-worker : adm$/.test(l)),
    JSON.stringify(workers),
  );
  assert.ok(workers.some((l) => / gloom-master :$/.test(l)), JSON.stringify(workers));
  const jobs = await admin.admin("show jobs", 3000);
  assert.equal(jobs.filter((l) => l.startsWith("H:test:")).length, 2, JSON.stringify(jobs));
  // Cancelling a Gloom job fails it for its master, and frees its id.
  const handle = jobs.find((l) => l.startsWith("H:test:"))!.split("\t")[0]!;
  assert.deepEqual(await admin.admin(`cancel job ${handle}`, 3000), ["OK"]);
  const failed = await m.recv();
  assertError(failed, "job_failed", failed.id);
  assert.ok(failed.id === 1 || failed.id === 2);
  await m.send({ type: "job", job_type: "adm", id: failed.id, body: "again" });
  await m.expectNothing(50);
});

Deno.test("mixed: a Gearman client that leaves does not upset the Gloom worker", async () => {
  await using server = startGloomServer();
  await using w = await rawWorker(server, "left");
  const client = new Client({ servers: [gearmanAddr(server)] });
  const run = client.run("left", "1").catch((err) => err);
  await w.recv();
  await client.close();
  assert.ok((await run) instanceof Error);
  await w.send({ type: "response", body: "nobody listens" });
  await using m = await RawGloom.master(server);
  await m.send({ type: "job", job_type: "left", id: "next", body: 2 });
  const job = await w.recv();
  assert.deepEqual([job.id, job.body], ["next", 2]);
  await w.send({ type: "response", body: 3 });
  assert.deepEqual(await m.recv(), { id: "next", body: 3 });
});
