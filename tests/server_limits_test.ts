// Connection limits and idle timeouts over real sockets.

import assert from "node:assert/strict";
import { serve } from "../server.ts";
import { PacketClient } from "../client.ts";
import { buildPacket, Magic } from "../src/protocol/mod.ts";
import {
  concat,
  connect,
  expectPacket,
  startServer,
  statusOf,
  waitFor,
  worker,
} from "./_helpers.ts";

Deno.test("server: past maxConnections new connections are closed; the open ones go on", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0, maxConnections: 2 });
  const port = server.addr.port;
  await using a = await PacketClient.connect({ port });
  await using b = await PacketClient.connect({ port });
  a.send("ECHO_REQ", "a");
  b.send("ECHO_REQ", "b");
  assert.equal((await a.receive()).name, "ECHO_RES");
  assert.equal((await b.receive()).name, "ECHO_RES");
  await using c = await PacketClient.connect({ port });
  c.send("ECHO_REQ", "c");
  await assert.rejects(c.receive(2000), /closed/);
  // The first two are unaffected, and a slot frees when one leaves.
  a.send("ECHO_REQ", "again");
  assert.equal((await a.receive()).name, "ECHO_RES");
  await b.close();
  await new Promise((r) => setTimeout(r, 50));
  await using d = await PacketClient.connect({ port });
  d.send("ECHO_REQ", "d");
  assert.equal((await d.receive()).name, "ECHO_RES");
});

Deno.test("server: idleTimeoutMs closes silent connections with nothing pending, not a waiting client", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0, idleTimeoutMs: 300 });
  const port = server.addr.port;
  await using idle = await PacketClient.connect({ port });
  await using waiting = await PacketClient.connect({ port });
  waiting.send("SUBMIT_JOB", "nobody", "", "x");
  assert.equal((await waiting.receive()).name, "JOB_CREATED");
  idle.send("ECHO_REQ", "x");
  assert.equal((await idle.receive()).name, "ECHO_RES");
  await new Promise((r) => setTimeout(r, 900));
  assert.equal(idle.ended, true, "the idle connection was closed");
  assert.equal(waiting.ended, false, "a client waiting on a job is kept");
  waiting.send("ECHO_REQ", "still here");
  assert.equal((await waiting.receive()).name, "ECHO_RES");
});

Deno.test("server: a client that submits and never reads stops being read (backpressure)", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0, maxOutboxBytes: 16 * 1024 });
  const port = server.addr.port;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const packet = (i: number) => {
    const body = new TextEncoder().encode(`bp\0\0${i}`);
    const p = new Uint8Array(12 + body.length);
    const v = new DataView(p.buffer);
    v.setUint32(0, 0x00524551);
    v.setUint32(4, 18); // SUBMIT_JOB_BG
    v.setUint32(8, body.length);
    p.set(body, 12);
    return p;
  };
  // Write 1M submits without reading a byte of the replies: more replies
  // (~30 MB) than the kernel's socket buffers on both ends can hold.
  const total = 1_000_000;
  const chunk: Uint8Array[] = [];
  for (let i = 0; i < total; i++) chunk.push(packet(i));
  const all = new Uint8Array(chunk.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of chunk) {
    all.set(p, at);
    at += p.length;
  }
  const writing = (async () => {
    let off = 0;
    while (off < all.length) off += await conn.write(all.subarray(off));
  })().catch(() => {});
  await using admin = await PacketClient.connect({ port });
  const queued = async () => {
    const lines = await admin.admin("status");
    const row = lines.find((l) => l.startsWith("bp\t"));
    return row ? Number(row.split("\t")[1]) : 0;
  };
  // The server stops reading: the count settles far below what was sent.
  let before = -1;
  let now = await queued();
  for (let i = 0; i < 50 && now !== before; i++) {
    await new Promise((r) => setTimeout(r, 100));
    before = now;
    now = await queued();
  }
  assert.ok(now > 0 && now < total, `server accepted ${now} of ${total} while replies went unread`);
  // Other connections are served meanwhile.
  admin.send("ECHO_REQ", "still served");
  assert.equal((await admin.receive()).name, "ECHO_RES");
  // Once the client reads its replies, the rest goes through.
  const buf = new Uint8Array(64 * 1024);
  const reading = (async () => {
    try {
      while ((await conn.read(buf)) !== null) { /* drain replies */ }
    } catch { /* closed */ }
  })();
  for (let i = 0; i < 100 && (await queued()) < total; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await queued(), total);
  await writing;
  conn.close();
  await reading;
});

Deno.test("server: a worker that grabs jobs and never reads is not given more than its outbox holds; other workers get the rest", async () => {
  const maxOutboxBytes = 64 * 1024;
  await using server = startServer({ maxOutboxBytes });
  const port = server.addr.port;
  // 96 jobs of 1 MiB: far more than the kernel's socket buffers hold, so
  // most of what a non-reading worker is given would pile up in the server.
  const total = 96;
  const payload = new Uint8Array(1024 * 1024).fill(120);
  await using client = await connect(server);
  for (let i = 0; i < total; i++) client.send("SUBMIT_JOB_BG", "big", `u${i}`, payload);
  for (let i = 0; i < total; i++) await expectPacket(client, "JOB_CREATED", 10_000);

  // The stuck worker: registers, asks for every job at once, never reads.
  const stuck = await Deno.connect({ hostname: "127.0.0.1", port });
  const grabs = [buildPacket(Magic.REQ, "CAN_DO", "big")];
  for (let i = 0; i < total; i++) grabs.push(buildPacket(Magic.REQ, "GRAB_JOB"));
  const request = concat(...grabs);
  let off = 0;
  while (off < request.length) off += await stuck.write(request.subarray(off));

  // The jobs it holds settle at what the socket buffers and one outbox take.
  let before = -1;
  let running = (await statusOf(client, "big"))![1];
  for (let i = 0; i < 50 && running !== before; i++) {
    await new Promise((r) => setTimeout(r, 100));
    before = running;
    running = (await statusOf(client, "big"))![1];
  }
  assert.ok(running > 0, "the stuck worker was given some jobs");
  assert.ok(
    running <= total / 4,
    `the stuck worker holds ${running} of ${total} 1 MiB jobs: the server kept assigning past a full outbox`,
  );

  // Other connections are served, and another worker runs every job the
  // stuck one was not given.
  await using good = await worker(server, "big");
  let done = 0;
  for (;;) {
    good.send("GRAB_JOB");
    const p = await good.receive(10_000);
    if (p.name === "NO_JOB") break;
    assert.equal(p.name, "JOB_ASSIGN");
    assert.equal(p.args[2]!.length, payload.length);
    good.send("WORK_COMPLETE", p.args[0]!, "ok");
    done++;
  }
  assert.equal(done, total - running);

  // When the stuck worker is dropped, the jobs it held are run too.
  stuck.close();
  await waitFor("the stuck worker's jobs to be requeued", async () => {
    const s = await statusOf(client, "big");
    return s !== undefined && s[1] === 0 && s[2] === 1;
  }, 10_000);
  for (;;) {
    good.send("GRAB_JOB");
    const p = await good.receive(10_000);
    if (p.name === "NO_JOB") break;
    good.send("WORK_COMPLETE", p.args[0]!, "ok");
    done++;
  }
  assert.equal(done, total);
  assert.equal((await statusOf(client, "big"))?.[0] ?? 0, 0);
});

Deno.test("server: a client that never reads while a worker streams WORK_DATA to it is closed past its backlog limit; the worker and others go on", async () => {
  // Backlog limit: 4 x 64 KiB + 1 MiB packets = 1.25 MiB of unread replies.
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    maxOutboxBytes: 64 * 1024,
    maxPacketSize: 1024 * 1024,
  });
  const port = server.addr.port;
  const w = await worker(server, "stream");
  // The client submits one foreground job and then never reads.
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  const submit = buildPacket(Magic.REQ, "SUBMIT_JOB", "stream", "", "go");
  let off = 0;
  while (off < submit.length) off += await client.write(submit.subarray(off));
  w.send("GRAB_JOB");
  const [handle] = await expectPacket(w, "JOB_ASSIGN");
  // 128 x 256 KiB = 32 MiB of WORK_DATA: far more than socket buffers hold.
  const chunk = "x".repeat(256 * 1024);
  for (let i = 0; i < 128; i++) w.send("WORK_DATA", handle!, chunk);
  w.send("WORK_COMPLETE", handle!, "done");
  // The worker is served throughout, and so are others.
  w.send("ECHO_REQ", "worker still served");
  assert.deepEqual(await expectPacket(w, "ECHO_RES", 10_000), ["worker still served"]);
  const other = await connect(server);
  other.send("ECHO_REQ", "others too");
  assert.deepEqual(await expectPacket(other, "ECHO_RES"), ["others too"]);
  // The client was let go: reading gives what the kernel held, then the end.
  const buf = new Uint8Array(1 << 20);
  let received = 0;
  let ended = false;
  try {
    for (;;) {
      const n = await client.read(buf);
      if (n === null) break;
      received += n;
    }
    ended = true;
  } catch (err) {
    ended = err instanceof Deno.errors.ConnectionReset; // closed with unsent output
  }
  assert.ok(ended, "the server closed the client's connection");
  assert.ok(
    received < 32 * 1024 * 1024,
    `the client got ${received} bytes: all of it, so nothing was dropped`,
  );
  client.close();
  await other.close();
  await w.close();
});
