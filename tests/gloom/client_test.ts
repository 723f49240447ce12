// The package's Gloom master and worker (gloom.ts), against our server.

import assert from "node:assert/strict";
import { Client } from "../../client.ts";
import { Worker } from "../../worker.ts";
import {
  encodeFrame,
  GloomError,
  GloomFrameError,
  GloomFramer,
  GloomMaster,
  GloomWorker,
} from "../../gloom.ts";
import { gearmanAddr, RawGloom, startGloomServer, untilStatus } from "./_helpers.ts";
import type { Server } from "../../server.ts";

function ports(server: Server): { master: number; worker: number } {
  const a = server.gloomAddrs!;
  return { master: a.master.port, worker: a.worker.port };
}

Deno.test("GloomMaster + GloomWorker: submit, response, concurrent ids", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using w = await GloomWorker.connect({ port: p.worker });
  const ids: unknown[] = [];
  w.join("square", (body, job) => {
    ids.push(job.id);
    assert.equal(job.jobType, "square");
    return (body as number) ** 2;
  });
  assert.equal(w.jobType, "square");
  await using m = await GloomMaster.connect({ port: p.master });
  const results = await Promise.all([1, 2, 3, 4].map((n) => m.submit("square", `sq-${n}`, n)));
  assert.deepEqual(results, [1, 4, 9, 16]);
  assert.deepEqual(ids, ["sq-1", "sq-2", "sq-3", "sq-4"]);
});

Deno.test("GloomMaster: a duplicate id is refused (locally and by the server), then reusable", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using m1 = await GloomMaster.connect({ port: p.master });
  await using m2 = await GloomMaster.connect({ port: p.master });
  const first = m1.submit("later", "id-1", "one");
  await assert.rejects(m1.submit("later", "id-1", "two"), (err: GloomError) => {
    assert.ok(err instanceof GloomError);
    assert.equal(err.code, "duplicate_id");
    assert.equal(err.id, "id-1");
    return true;
  });
  await untilStatus(server, (s) => s.later?.queued === 1);
  await assert.rejects(m2.submit("later", "id-1", "three"), (err: GloomError) => {
    assert.equal(err.code, "duplicate_id");
    assert.equal(err.id, "id-1");
    return true;
  });
  await using w = await GloomWorker.connect({ port: p.worker });
  w.join("later", (body) => `done ${body}`);
  assert.equal(await first, "done one");
  assert.equal(await m2.submit("later", "id-1", "again"), "done again");
});

Deno.test("GloomMaster.status reports queues and workers", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using m = await GloomMaster.connect({ port: p.master });
  assert.deepEqual(await m.status(), { jobTypes: {} });
  const gate = Promise.withResolvers<void>();
  await using w = await GloomWorker.connect({ port: p.worker });
  w.join("slow", async () => {
    await gate.promise;
    return "ok";
  });
  const jobs = [m.submit("slow", 1, null), m.submit("slow", 2, null)];
  await untilStatus(server, (s) => s.slow?.running === 1);
  assert.deepEqual(await m.status(), {
    jobTypes: { slow: { queued: 1, running: 1, workers: 1 } },
  });
  gate.resolve();
  assert.deepEqual(await Promise.all(jobs), ["ok", "ok"]);
});

Deno.test("GloomWorker: a handler that throws answers with onError's body", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using w1 = await GloomWorker.connect({ port: p.worker });
  w1.join("boom", () => {
    throw new Error("kaput");
  });
  await using w2 = await GloomWorker.connect({
    port: p.worker,
    onError: (err, job) => ({ failed: true, id: job.id, why: (err as Error).message }),
  });
  w2.join("boom2", () => Promise.reject(new Error("async kaput")));
  await using w3 = await GloomWorker.connect({ port: p.worker });
  w3.join("circular", () => {
    const o: Record<string, unknown> = {};
    o.self = o;
    return o;
  });
  await using m = await GloomMaster.connect({ port: p.master });
  assert.deepEqual(await m.submit("boom", "b", null), { error: "kaput" });
  assert.deepEqual(await m.submit("boom2", "b2", null), {
    failed: true,
    id: "b2",
    why: "async kaput",
  });
  const circular = await m.submit("circular", "c", null) as { error: string };
  assert.match(circular.error, /circular/i);
});

Deno.test("GloomWorker: undefined results are sent as null; recasting with join", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using w = await GloomWorker.connect({ port: p.worker });
  await using m = await GloomMaster.connect({ port: p.master });
  w.join("void", () => {});
  assert.equal(await m.submit("void", 1, "x"), null);
  w.join("other", (body) => ({ other: body }));
  assert.deepEqual(await m.submit("other", 2, "y"), { other: "y" });
  const s = await m.status();
  assert.equal(s.jobTypes.void?.workers, 0);
  assert.equal(s.jobTypes.other?.workers, 1);
});

Deno.test("GloomWorker: recast while a job is in flight runs it with its own handler", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using w = await GloomWorker.connect({ port: p.worker });
  const gate = Promise.withResolvers<void>();
  w.join("a", async () => {
    await gate.promise;
    return "a-handler";
  });
  await using m = await GloomMaster.connect({ port: p.master });
  const ja = m.submit("a", "ja", null);
  await untilStatus(server, (s) => s.a?.running === 1);
  const jb = m.submit("b", "jb", null);
  w.join("b", () => "b-handler");
  gate.resolve();
  assert.equal(await ja, "a-handler");
  assert.equal(await jb, "b-handler");
});

Deno.test("GloomWorker.close with a job running: the job goes to another worker; its signal aborts", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  const w1 = await GloomWorker.connect({ port: p.worker });
  const started = Promise.withResolvers<AbortSignal>();
  w1.join("handoff", (_body, job) => {
    started.resolve(job.signal);
    return new Promise(() => {}); // never finishes
  });
  await using m = await GloomMaster.connect({ port: p.master });
  const result = m.submit("handoff", "h", { n: 1 });
  const signal = await started.promise;
  await using w2 = await GloomWorker.connect({ port: p.worker });
  w2.join("handoff", (body) => ({ second: body }));
  await untilStatus(server, (s) => s.handoff?.workers === 2);
  await w1.close();
  assert.ok(signal.aborted);
  assert.ok(w1.closed);
  assert.deepEqual(await result, { second: { n: 1 } });
});

Deno.test("GloomMaster: close rejects outstanding submits; abort stops waiting but keeps the id", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using m = await GloomMaster.connect({ port: p.master });
  const ac = new AbortController();
  const aborted = m.submit("nobody", "ab", 1, { signal: ac.signal });
  ac.abort(new Error("gave up"));
  await assert.rejects(aborted, /gave up/);
  // The job is still out there: the id is still taken.
  await assert.rejects(
    m.submit("nobody", "ab", 2),
    (err: GloomError) => err.code === "duplicate_id",
  );
  await assert.rejects(
    m.submit("nobody", "pre", 1, { signal: AbortSignal.abort(new Error("already")) }),
    /already/,
  );

  const m2 = await GloomMaster.connect({ port: p.master });
  const pending = m2.submit("nobody", "p", 1);
  const statusPending = m2.status();
  await m2.close();
  await assert.rejects(pending, (err: GloomError) => err.code === "connection_closed");
  await statusPending.catch(() => {}); // answered or rejected, either is fine
  await assert.rejects(
    m2.submit("nobody", "q", 1),
    (err: GloomError) => err.code === "connection_closed",
  );
  assert.ok(m2.closed);
});

Deno.test("GloomMaster: argument checks", async () => {
  await using server = startGloomServer();
  await using m = await GloomMaster.connect({ port: ports(server).master });
  await assert.rejects(m.submit("t", "x", undefined), TypeError);
  await assert.rejects(m.submit("t", "x", () => 1), TypeError);
  await assert.rejects(m.submit("t", NaN, 1), TypeError);
  // A job type the server refuses comes back as a GloomError with the id.
  await assert.rejects(m.submit("", "x", 1), (err: GloomError) => {
    assert.equal(err.code, "invalid_field");
    assert.equal(err.id, "x");
    return true;
  });
});

Deno.test("GloomMaster: the server going away rejects what is outstanding", async () => {
  const server = startGloomServer();
  const m = await GloomMaster.connect({ port: ports(server).master });
  const pending = m.submit("never", "n", 1);
  await untilStatus(server, (s) => s.never?.queued === 1);
  await server.shutdown();
  await assert.rejects(pending, (err: GloomError) => err.code === "connection_closed");
  await m.close();
});

Deno.test("GloomMaster and Gearman Worker; Gearman Client and GloomWorker", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using gw = new Worker({ servers: [gearmanAddr(server)] });
  gw.register("gearman-side", (job) => JSON.stringify({ got: job.json() }));
  gw.start();
  await using w = await GloomWorker.connect({ port: p.worker });
  w.join("gloom-side", (body, job) => ({ got: body, id: job.id }));
  await untilStatus(server, (s) => s["gearman-side"]?.workers === 1);
  await using m = await GloomMaster.connect({ port: p.master });
  assert.deepEqual(await m.submit("gearman-side", "x", [1, "two"]), { got: [1, "two"] });
  await using client = new Client({ servers: [gearmanAddr(server)] });
  const r = await client.run("gloom-side", '{"k":"v"}', { unique: "uniq-1" });
  assert.deepEqual(r.json(), { got: { k: "v" }, id: "uniq-1" });
  await gw.stop();
});

Deno.test("GloomWorker talks to a raw master; GloomMaster to a raw worker", async () => {
  await using server = startGloomServer();
  const p = ports(server);
  await using w = await GloomWorker.connect({ port: p.worker });
  w.join("raw", (body) => ({ wrapped: body }));
  await using rm = await RawGloom.master(server);
  await rm.send({ type: "job", job_type: "raw", id: "r", body: 5 });
  assert.deepEqual(await rm.recv(), { id: "r", body: { wrapped: 5 } });

  await using rw = await RawGloom.worker(server);
  await rw.send({ type: "join", job_type: "raw2" });
  await using m = await GloomMaster.connect({ port: p.master });
  const result = m.submit("raw2", 9, "nine");
  const job = await rw.recv();
  assert.deepEqual([job.id, job.body], [9, "nine"]);
  await rw.send({ type: "response", body: 99 });
  assert.equal(await result, 99);
});

Deno.test("encodeFrame / GloomFramer round trip and limits", () => {
  const frames: string[] = [];
  const framer = new GloomFramer((p) => frames.push(new TextDecoder().decode(p)), 64);
  const bytes = new Uint8Array([
    ...encodeFrame({ a: "ü" }),
    ...encodeFrame([1, 2]),
    ...encodeFrame("s"),
  ]);
  for (let i = 0; i < bytes.length; i++) framer.push(bytes.subarray(i, i + 1));
  assert.deepEqual(frames, ['{"a":"ü"}', "[1,2]", '"s"']);
  assert.equal(framer.pending, 0);
  // Large frames grow the buffer once, and are delivered whole.
  const big = new GloomFramer((p) => frames.push(String(p.length)), 1 << 20);
  const payload = encodeFrame("z".repeat(300_000));
  big.push(payload.subarray(0, 100_000));
  big.push(payload.subarray(100_000));
  assert.equal(frames.at(-1), String(300_002));
  assert.throws(() => framer.push(encodeFrame("x".repeat(100))), GloomFrameError);
  assert.throws(() => encodeFrame(undefined), TypeError);
  assert.throws(() => new GloomFramer(() => {}, 0), RangeError);
});
