// Bad input on one Gloom connection gets an error frame
// ({"type":"error","error":CODE,"message":TEXT[,"id":ID]}); framing errors
// (a length over the limit) also close that connection. Nothing else is
// lost: each attack runs while another master and worker push jobs through,
// and a job queued before it is still there afterwards and runs once.

import assert from "node:assert/strict";
import type { Server } from "../../server.ts";
import {
  assertError,
  frame,
  type Json,
  RawGloom,
  rawWorker,
  startGloomServer,
  status,
  untilStatus,
} from "./_helpers.ts";

const MAX_FRAME = 4096;

/** Run `attack` next to healthy Gloom traffic, then check nothing was lost. */
async function survives(
  port: "master" | "worker",
  attack: (bad: RawGloom, server: Server) => Promise<void>,
): Promise<void> {
  await using server = startGloomServer({}, { maxFrameSize: MAX_FRAME });
  await using waiting = await RawGloom.master(server);
  await waiting.send({ type: "job", job_type: "queued", id: "before", body: "kept" });
  await untilStatus(server, (s) => s.queued?.queued === 1);
  await using m = await RawGloom.master(server);
  await using w = await rawWorker(server, "live");
  await using bad = port === "master"
    ? await RawGloom.master(server)
    : await RawGloom.worker(server);

  let stop = false;
  let rounds = 0;
  const traffic = async () => {
    while (!stop || rounds < 3) {
      await m.send({ type: "job", job_type: "live", id: `live-${rounds}`, body: rounds });
      const job = await w.recv();
      assert.deepEqual(job, { type: "job", id: `live-${rounds}`, job_type: "live", body: rounds });
      await w.send({ type: "response", body: rounds + 1000 });
      assert.deepEqual(await m.recv(), { id: `live-${rounds}`, body: rounds + 1000 });
      rounds++;
    }
  };
  await Promise.all([traffic(), attack(bad, server).finally(() => (stop = true))]);
  assert.ok(rounds >= 3);

  // The job queued before is still there, and runs exactly once.
  await using late = await rawWorker(server, "queued");
  const job = await late.recv();
  assert.deepEqual([job.id, job.body], ["before", "kept"]);
  await late.send({ type: "response", body: "ran" });
  assert.deepEqual(await waiting.recv(), { id: "before", body: "ran" });
  await late.expectNothing(30);
  await waiting.expectNothing(10);
}

/** The attacked connection still works: a status request is answered. */
async function stillOpenMaster(bad: RawGloom): Promise<void> {
  await bad.send({ type: "status" });
  assert.equal((await bad.recv()).type, "status");
}

/** Send raw frames, expect one error frame each with this code. */
async function expectErrors(bad: RawGloom, payloads: (string | Uint8Array)[], code: string) {
  for (const p of payloads) {
    await bad.sendBytes(frame(p));
    const msg = await bad.recv();
    assertError(msg, code);
  }
}

const encoder = new TextEncoder();

Deno.test("bad input (master): invalid JSON gets invalid_json; the connection goes on", async () => {
  await survives("master", async (bad) => {
    await expectErrors(bad, [
      '{"type":',
      "{type: 'job'}",
      "",
      "   ",
      "nul\0l",
      new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), // not UTF-8
    ], "invalid_json");
    await stillOpenMaster(bad);
  });
});

Deno.test("bad input (master): JSON that is not an object gets not_an_object", async () => {
  await survives("master", async (bad) => {
    await expectErrors(bad, ["[1,2]", "42", '"job"', "null", "true", "[]"], "not_an_object");
    await stillOpenMaster(bad);
  });
});

Deno.test("bad input (master): unknown types get unknown_type", async () => {
  await survives("master", async (bad) => {
    for (
      const msg of [
        { type: "dance" },
        { type: "join", job_type: "live" }, // a worker message on the master port
        { type: "response", body: 1 },
        { type: 5 },
        { type: null },
        { type: "JOB", job_type: "live", id: "x", body: 1 },
      ]
    ) {
      await bad.send(msg);
      assertError(await bad.recv(), "unknown_type");
    }
    await stillOpenMaster(bad);
  });
});

Deno.test("bad input (master): missing and invalid fields; the job's id is not taken", async () => {
  await survives("master", async (bad) => {
    const cases: [Json, string, unknown][] = [
      [{}, "missing_field", undefined],
      [{ job_type: "live", id: "a", body: 1 }, "missing_field", undefined],
      [{ type: "job", job_type: "live", body: 1 }, "missing_field", undefined],
      [{ type: "job", id: "a", body: 1 }, "missing_field", "a"],
      [{ type: "job", job_type: "live", id: "a" }, "missing_field", "a"],
      [{ type: "job", job_type: "live", id: null, body: 1 }, "invalid_field", undefined],
      [{ type: "job", job_type: "live", id: { x: 1 }, body: 1 }, "invalid_field", undefined],
      [{ type: "job", job_type: "live", id: true, body: 1 }, "invalid_field", undefined],
      [{ type: "job", job_type: 7, id: "a", body: 1 }, "invalid_field", "a"],
      [{ type: "job", job_type: "", id: "a", body: 1 }, "invalid_field", "a"],
      [{ type: "job", job_type: "a\0b", id: "a", body: 1 }, "invalid_field", "a"],
      [{ type: "job", job_type: "x".repeat(513), id: "a", body: 1 }, "invalid_field", "a"],
    ];
    for (const [msg, code, id] of cases) {
      await bad.send(msg);
      const err = assertError(await bad.recv(), code, id);
      if (code === "missing_field") assert.match(err.message, /"(type|id|job_type|body)"/);
    }
    // None of those took the id "a".
    await bad.send({ type: "job", job_type: "nobody-does-this", id: "a", body: 1 });
    await bad.expectNothing(30);
    await stillOpenMaster(bad);
  });
});

Deno.test("bad input (master): an oversize frame gets frame_too_large, then the connection closes", async () => {
  await survives("master", async (bad, server) => {
    // A job already submitted on this connection before the bad frame.
    await bad.send({ type: "job", job_type: "orphan", id: "o", body: 1 });
    const prefix = new Uint8Array(4);
    new DataView(prefix.buffer).setUint32(0, MAX_FRAME + 1);
    await bad.sendBytes(prefix);
    const got = await bad.expectClosed();
    assert.equal(got.length, 1, JSON.stringify(got));
    const err = assertError(got[0], "frame_too_large");
    assert.match(err.message, new RegExp(`${MAX_FRAME + 1} bytes.*${MAX_FRAME} bytes`));
    // The server forgot the connection: its queued job and id are gone.
    await untilStatus(server, (s) => s.orphan?.queued === 0);
    await using m2 = await RawGloom.master(server);
    await m2.send({ type: "job", job_type: "orphan", id: "o", body: 2 });
    await m2.expectNothing(30);
  });
});

Deno.test("bad input (master): a 4 GiB length prefix closes the connection", async () => {
  await survives("master", async (bad) => {
    await bad.sendBytes(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7b]));
    const got = await bad.expectClosed();
    assert.equal(got.length, 1);
    assertError(got[0], "frame_too_large");
  });
});

Deno.test("bad input (master): frames at the limit and split byte by byte are fine", async () => {
  await survives("master", async (bad) => {
    const filler = "x".repeat(MAX_FRAME - '{"type":"status","id":""}'.length);
    const exact = encoder.encode(`{"type":"status","id":"${filler}"}`);
    assert.equal(exact.length, MAX_FRAME);
    await bad.sendBytes(frame(exact));
    assert.equal((await bad.recv()).id, filler);
    const bytes = frame('{"type":"status","id":"slow"}');
    for (const b of bytes) await bad.sendBytes(new Uint8Array([b]));
    assert.equal((await bad.recv()).id, "slow");
    // Several frames in one write.
    await bad.sendBytes(new Uint8Array([...frame("[1]"), ...frame('{"type":"status"}')]));
    assertError(await bad.recv(), "not_an_object");
    assert.equal((await bad.recv()).type, "status");
  });
});

Deno.test("bad input (master): a truncated frame then EOF loses nothing else", async () => {
  await survives("master", async (bad, server) => {
    await bad.sendBytes(frame('{"type":"status"}').subarray(0, 10));
    await bad.close();
    // The server is still answering.
    assert.ok(await status(server));
  });
});

Deno.test("bad input (worker): invalid JSON, non-objects, unknown types, missing fields", async () => {
  await survives("worker", async (bad) => {
    await expectErrors(bad, ['{"type":"join"', "", new Uint8Array([0xc0])], "invalid_json");
    await expectErrors(bad, ['["join","x"]', "3", "null"], "not_an_object");
    for (
      const [msg, code] of [
        [{ type: "job", job_type: "live", id: "x", body: 1 }, "unknown_type"], // master message
        [{ type: "status" }, "unknown_type"],
        [{ type: "leave" }, "unknown_type"],
        [{ job_type: "live" }, "missing_field"],
        [{ type: "join" }, "missing_field"],
        [{ type: "join", job_type: 1 }, "invalid_field"],
        [{ type: "join", job_type: "" }, "invalid_field"],
        [{ type: "response", body: 1 }, "no_job"], // no job held
      ] as [Json, string][]
    ) {
      await bad.send(msg);
      assertError(await bad.recv(), code);
    }
  });
});

Deno.test("bad input (worker): a response without a body keeps the job; a good one then completes it", async () => {
  await survives("worker", async (bad, server) => {
    await bad.send({ type: "join", job_type: "careful" });
    await using m = await RawGloom.master(server);
    await m.send({ type: "job", job_type: "careful", id: "c", body: 1 });
    assert.equal((await bad.recv()).id, "c");
    await bad.send({ type: "response" });
    assertError(await bad.recv(), "missing_field");
    await bad.send({ type: "response", bdoy: 2 });
    assertError(await bad.recv(), "missing_field");
    await m.expectNothing(30);
    await bad.send({ type: "response", body: 2 });
    assert.deepEqual(await m.recv(), { id: "c", body: 2 });
    // And it can answer only once.
    await bad.send({ type: "response", body: 3 });
    assertError(await bad.recv(), "no_job");
    await m.expectNothing(30);
  });
});

Deno.test("bad input (worker): an oversize frame while holding a job closes it; the job goes to another worker", async () => {
  await survives("worker", async (bad, server) => {
    await bad.send({ type: "join", job_type: "heavy" });
    await using m = await RawGloom.master(server);
    await m.send({ type: "job", job_type: "heavy", id: "h", body: "payload" });
    assert.equal((await bad.recv()).id, "h");
    // A response too large for the server.
    await bad.sendBytes(frame(JSON.stringify({ type: "response", body: "y".repeat(MAX_FRAME) })));
    const got = await bad.expectClosed();
    assert.equal(got.length, 1);
    assertError(got[0], "frame_too_large");
    await using other = await rawWorker(server, "heavy");
    const job = await other.recv();
    assert.deepEqual([job.id, job.body], ["h", "payload"]);
    await other.send({ type: "response", body: "small" });
    assert.deepEqual(await m.recv(), { id: "h", body: "small" });
  });
});

Deno.test("bad input: the default frame limit is 16 MiB", async () => {
  await using server = startGloomServer();
  await using bad = await RawGloom.master(server);
  const prefix = new Uint8Array(4);
  new DataView(prefix.buffer).setUint32(0, 16 * 1024 * 1024 + 1);
  await bad.sendBytes(prefix);
  const got = await bad.expectClosed();
  assertError(got[0], "frame_too_large");
  assert.match(got[0].message, /16777217 bytes is over the limit of 16777216 bytes/);
});
