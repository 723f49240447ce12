// A Client that submits many jobs at once: the connect timeout counts only
// time the event loop was free (a long synchronous submit loop right after
// making the client must not time the connection out), and at most
// `maxInFlight` submits are written and unanswered per connection, the rest
// waiting in the client in order.

import assert from "node:assert/strict";
import { AdminClient, Client } from "../../client.ts";
import { buildPacket, Magic } from "../../src/protocol/packet.ts";
import { PacketType as T } from "../../src/protocol/packet_type.ts";
import { HOST, within } from "./_servers.ts";
import { serve } from "../../server.ts";
import { loopTimeout } from "../../src/client/loop_timeout.ts";

Deno.test("client pipeline: 100,000 background submits made at once all get handles and are all queued", async () => {
  await using server = serve({ hostname: HOST, port: 0 });
  const at = `${HOST}:${server.addr.port}`;
  // A short connect timeout: the synchronous loop below blocks the event
  // loop for longer than that, which must not count against the connect.
  await using client = new Client({ servers: [at], connectTimeoutMs: 250 });
  const N = 100_000;
  const handles: Promise<string>[] = [];
  for (let i = 0; i < N; i++) {
    handles.push(client.submit("pipelined", String(i), { background: true }).handle);
  }
  const got = await within("100,000 handles", 60_000, Promise.all(handles));
  assert.equal(new Set(got).size, N, "every job got its own handle");
  await using admin = await AdminClient.connect(at, { timeoutMs: 10_000 });
  const row = (await admin.status()).find((s) => s.function === "pipelined");
  assert.deepEqual(row, { function: "pipelined", total: N, running: 0, workers: 0 });
});

Deno.test("client pipeline: a connect is not timed out by synchronous work after the submit", async () => {
  await using server = serve({ hostname: HOST, port: 0 });
  await using client = new Client({
    servers: [`${HOST}:${server.addr.port}`],
    connectTimeoutMs: 100,
  });
  const job = client.submit("blocked", "x", { background: true });
  // Keep the event loop busy for several connect timeouts: the connection
  // has come meanwhile, and the expired timer must not win over it.
  const end = Date.now() + 600;
  while (Date.now() < end) { /* busy */ }
  assert.match(await job.handle, /^H:/);
});

Deno.test("client pipeline: loopTimeout does not count time the event loop was blocked", async () => {
  let fired = false;
  const cancel = loopTimeout(300, () => (fired = true));
  try {
    const end = Date.now() + 400;
    while (Date.now() < end) { /* busy */ }
    // A plain 300 ms timer would have fired by now; this one has counted
    // at most one step of the blocked time.
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(fired, false);
    await within(
      "the loop timeout",
      10_000,
      (async () => {
        while (!fired) await new Promise((r) => setTimeout(r, 20));
      })(),
    );
  } finally {
    cancel();
  }
});

/**
 * A fake server that reads request packets and answers SUBMIT_JOB_BG only
 * when told to, recording the most submits ever unanswered at once.
 */
class HoldingServer implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #done: Promise<void>;
  #conn: Deno.Conn | undefined;
  /** Data of the submits received, in order. */
  readonly received: string[] = [];
  answered = 0;
  maxUnanswered = 0;
  #arrived: (() => void) | undefined;

  constructor() {
    this.#listener = Deno.listen({ hostname: HOST, port: 0 });
    this.#done = this.#serve();
  }

  get address(): string {
    return `${HOST}:${this.#listener.addr.port}`;
  }

  async #serve(): Promise<void> {
    const conn = await this.#listener.accept();
    this.#conn = conn;
    await readPackets(conn, (type, body) => {
      if (type === T.OPTION_REQ) {
        void conn.write(buildPacket(Magic.RES, T.OPTION_RES, body)).catch(() => {});
      } else if (type === T.SUBMIT_JOB_BG) {
        const parts = new TextDecoder().decode(body).split("\0");
        this.received.push(parts[2] ?? "");
        this.maxUnanswered = Math.max(this.maxUnanswered, this.received.length - this.answered);
      }
      this.#arrived?.();
    });
  }

  /** Resolves once at least `count` submits have arrived. */
  async receivedAtLeast(count: number): Promise<void> {
    while (this.received.length < count) {
      await new Promise<void>((resolve) => (this.#arrived = resolve));
    }
  }

  /** Answer the oldest unanswered submit with JOB_CREATED "H:<its data>". */
  async answerOne(): Promise<void> {
    const data = this.received[this.answered++]!;
    await this.#conn!.write(buildPacket(Magic.RES, T.JOB_CREATED, `H:${data}`));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    try {
      this.#conn?.close();
    } catch { /* closed by the client */ }
    await this.#done;
  }
}

Deno.test("client pipeline: at most maxInFlight submits are unanswered; the rest wait in order", async () => {
  await using fake = new HoldingServer();
  await using client = new Client({ servers: [fake.address], maxInFlight: 4 });
  const N = 20;
  const jobs = Array.from(
    { length: N },
    (_, i) => client.submit("f", `job-${i}`, { background: true }),
  );
  await within("the first submits", 10_000, fake.receivedAtLeast(4));
  // Answer one at a time: each answer lets exactly one more through.
  for (let i = 0; i < N; i++) {
    await within("the next submit", 10_000, fake.receivedAtLeast(Math.min(N, i + 4)));
    await fake.answerOne();
  }
  const handles = await within("all handles", 10_000, Promise.all(jobs.map((j) => j.handle)));
  assert.deepEqual(handles, jobs.map((_, i) => `H:job-${i}`));
  assert.deepEqual(fake.received, jobs.map((_, i) => `job-${i}`));
  assert.equal(fake.maxUnanswered, 4);
});

Deno.test("client pipeline: a submit aborted while it waits is never written", async () => {
  await using fake = new HoldingServer();
  await using client = new Client({ servers: [fake.address], maxInFlight: 1 });
  const ac = new AbortController();
  const first = client.submit("f", "first", { background: true });
  const second = client.submit("f", "second", { background: true, signal: ac.signal });
  const third = client.submit("f", "third", { background: true });
  await within("the first submit", 10_000, fake.receivedAtLeast(1));
  ac.abort(new Error("changed my mind"));
  await assert.rejects(second.handle, /changed my mind/);
  await fake.answerOne();
  assert.equal(await first.handle, "H:first");
  await within("the third submit", 10_000, fake.receivedAtLeast(2));
  await fake.answerOne();
  assert.equal(await within("the third handle", 10_000, third.handle), "H:third");
  assert.deepEqual(fake.received, ["first", "third"]);
});

Deno.test("client pipeline: maxInFlight must be a positive integer", () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    assert.throws(() => new Client({ maxInFlight: bad }), TypeError);
  }
});

/** Read packets (12-byte header + body) from a socket until it closes, calling `each` with type and body. */
async function readPackets(
  conn: Deno.Conn,
  each: (type: number, body: Uint8Array) => void,
): Promise<void> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(64 * 1024);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(chunk);
    } catch {
      return;
    }
    if (n === null) return;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    while (buf.length >= 12) {
      const view = new DataView(buf.buffer, buf.byteOffset);
      const size = view.getUint32(8);
      if (buf.length < 12 + size) break;
      each(view.getUint32(4), buf.slice(12, 12 + size));
      buf = buf.subarray(12 + size);
    }
  }
}

Deno.test("client pipeline: a submit made while a broken connection is still closing is sent once, on the next connection", async () => {
  // The first connection breaks (the server sends garbage) while the client
  // still has a large submit to flush to it (the server stopped reading), so
  // it takes a while to close. A submit made meanwhile opens a second
  // connection; when the first finally closes, the client takes back the
  // requests written on it (to fail them or send them elsewhere), and the
  // new submit, written on the second connection, must not be among them.
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const seen: string[] = [];
  let firstBroken!: () => void;
  const broken = new Promise<void>((r) => (firstBroken = r));
  const done: Promise<void>[] = [];
  const serving = (async () => {
    let n = 0;
    for await (const conn of listener) {
      const index = n++;
      if (index === 0) {
        done.push((async () => {
          // Read the start of the big submit, then stop reading and send garbage.
          await conn.read(new Uint8Array(1024));
          await conn.write(new TextEncoder().encode("\0BAD\0\0\0\0\0\0\0\0"));
          firstBroken();
          await new Promise((r) => setTimeout(r, 3000));
          conn.close();
        })());
        continue;
      }
      let handle = 0;
      done.push(
        readPackets(conn, (type, body) => {
          if (type === T.OPTION_REQ) {
            void conn.write(buildPacket(Magic.RES, T.OPTION_RES, body)).catch(() => {});
          }
          if (type !== T.SUBMIT_JOB_BG) return;
          const fields = new TextDecoder("latin1").decode(body.subarray(0, 64)).split("\0");
          seen.push(fields[1]!);
          void conn.write(buildPacket(Magic.RES, T.JOB_CREATED, `H:fake:${++handle}`)).catch(
            () => {},
          );
        }).finally(() => conn.close()),
      );
    }
  })();
  try {
    const client = new Client({ servers: [`${HOST}:${listener.addr.port}`] });
    try {
      const big = client.submit("f", new Uint8Array(32 * 1024 * 1024), {
        background: true,
        unique: "big",
      });
      await within("the first connection to break", 10_000, broken);
      await new Promise((r) => setTimeout(r, 200));
      const small = client.submit("f", "small", { background: true, unique: "small" });
      // The big one was lost with the first connection: with one server, a
      // submit whose connection broke before JOB_CREATED fails (it may have
      // been queued), it is not sent to that server again.
      await assert.rejects(big.handle, /reached|Lost|connect/);
      assert.match(await within("the small job's handle", 20_000, small.handle), /^H:fake:/);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(seen, ["small"], "only the small job reached the second connection, once");
    } finally {
      await client.close();
    }
  } finally {
    listener.close();
    await serving.catch(() => {});
    await Promise.all(done);
  }
});
