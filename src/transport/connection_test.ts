import assert from "node:assert/strict";
import {
  type ByteConn,
  Connection,
  type ConnectionOptions,
  MAX_HELD_REPLIES,
} from "./connection.ts";
import type { HeldReply } from "./held_replies.ts";
import { PacketWriter } from "../protocol/packet_writer.ts";
import { Magic } from "../protocol/packet.ts";
import { PacketType } from "../protocol/packet_type.ts";
import { PacketFramer } from "../protocol/packet_framer.ts";

/**
 * A socket that takes at most `chunk` bytes per write, each write finishing
 * on a later turn of the event loop (so writes are in flight while more
 * packets are written), and whose reads wait until it is closed.
 */
class SlowSocket implements ByteConn {
  readonly written: number[] = [];
  readonly remoteAddr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };
  writes = 0;
  #closed = Promise.withResolvers<null>();

  constructor(readonly chunk: number) {}

  read(_p: Uint8Array): Promise<number | null> {
    return this.#closed.promise;
  }

  write(p: Uint8Array): Promise<number> {
    this.writes++;
    // Copied now, as the kernel would: what the caller does to its buffer later must not matter.
    const n = Math.min(p.length, this.chunk);
    for (let i = 0; i < n; i++) this.written.push(p[i]!);
    return new Promise((resolve) => setTimeout(() => resolve(n), 0));
  }

  close(): void {
    this.#closed.resolve(null);
  }
}

const noSink = { packet() {} };
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Packets of `WORK_DATA` carrying `text`, parsed back from what was written. */
function parsed(bytes: number[]): string[] {
  const texts: string[] = [];
  const framer = new PacketFramer({
    packet: (_type, body) => texts.push(new TextDecoder().decode(body)),
  });
  framer.push(new Uint8Array(bytes));
  assert.equal(framer.pending, 0, "a packet was cut short");
  return texts;
}

function send(c: Connection, text: string): void {
  const w = c.out();
  w.end(w.begin(Magic.RES, PacketType.WORK_DATA).text(text));
}

Deno.test("connection: packets written while a write is in flight go out after it, whole and in order", async () => {
  const socket = new SlowSocket(100);
  const c = new Connection(socket, noSink);
  const running = c.run();
  const sent: string[] = [];
  // A first packet of 1 KiB takes 11 writes of 100 bytes; packets written
  // meanwhile, on later turns, must not touch the bytes being written.
  const big = "a".repeat(1024);
  send(c, big);
  sent.push(big);
  for (let i = 0; i < 20; i++) {
    await turn();
    const text = `packet ${i} `.repeat(i + 1);
    send(c, text);
    sent.push(text);
    assert.ok(c.backlog > 0);
  }
  await c.drained();
  assert.equal(c.backlog, 0);
  assert.deepEqual(parsed(socket.written), sent);
  assert.ok(
    socket.writes > 11,
    "the writes were not split: the test did not exercise a write in flight",
  );
  c.close();
  assert.equal(await running, undefined);
});

Deno.test("connection: one answer at a time, turn after turn, comes out whole", async () => {
  const socket = new SlowSocket(1 << 20);
  const c = new Connection(socket, noSink);
  const running = c.run();
  const sent: string[] = [];
  for (let i = 0; i < 50; i++) {
    const text = `reply ${i}`;
    send(c, text);
    sent.push(text);
    await c.drained();
  }
  assert.deepEqual(parsed(socket.written), sent);
  c.close();
  await running;
});

Deno.test("connection: one options object serves many connections; its callbacks are told which one", async () => {
  const overflowed: Connection[] = [];
  const options: ConnectionOptions = {
    maxBacklogBytes: 64,
    onOverflow: (_backlog, connection) => overflowed.push(connection),
  };
  const slow = new SlowSocket(1);
  const fine = new SlowSocket(1 << 20);
  const a = new Connection(slow, noSink, options);
  const b = new Connection(fine, noSink, options);
  const runs = [a.run(), b.run()];
  send(a, "x".repeat(200));
  send(b, "y");
  await turn();
  // a's peer reads one byte per turn: the next flush finds 200 bytes waiting.
  send(a, "more");
  await turn();
  assert.deepEqual(overflowed, [a]);
  assert.ok(a.closed);
  assert.equal(b.closed, false);
  assert.deepEqual(parsed(fine.written), ["y"]);
  b.close();
  const [errA, errB] = await Promise.all(runs);
  assert.match(errA?.message ?? "", /bytes of output waited for the peer to read \(limit 64\)/);
  assert.equal(errB, undefined);
});

Deno.test("connection: `done` resolves for a connection that closed before anyone asked", async () => {
  const c = new Connection(new SlowSocket(1 << 20), noSink);
  const running = c.run();
  c.close();
  assert.equal(await running, undefined);
  assert.equal(await c.done, undefined);
});

Deno.test("connection: onEnd is told once, with the connection and what ended it", async () => {
  const ended: [Connection, Error | undefined][] = [];
  const options: ConnectionOptions = { onEnd: (c, err) => ended.push([c, err]) };
  const quiet = new Connection(new SlowSocket(1 << 20), noSink, options);
  const broken = new SlowSocket(1 << 20);
  broken.read = () => Promise.reject(new Error("connection reset by peer"));
  const failing = new Connection(broken, noSink, options);
  const runs = [quiet.run(), failing.run()];
  quiet.close();
  await Promise.all(runs);
  assert.equal(ended.length, 2);
  assert.deepEqual(ended.find(([c]) => c === quiet), [quiet, undefined]);
  assert.equal(ended.find(([c]) => c === failing)?.[1]?.message, "connection reset by peer");
});

/** A socket whose reads return the chunks given to {@link feed}, and whose writes are kept. */
class FeedSocket implements ByteConn {
  readonly written: number[] = [];
  readonly remoteAddr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };
  #chunks: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  feed(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#closed) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    const chunk = this.#chunks[0]!;
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    for (const b of p) this.written.push(b);
    return Promise.resolve(p.length);
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }
}

/** ECHO_REQ packets carrying each text, as one chunk. */
function echoes(...texts: string[]): Uint8Array {
  const w = new PacketWriter();
  for (const t of texts) w.end(w.begin(Magic.REQ, PacketType.ECHO_REQ).text(t));
  return w.take().slice();
}

/**
 * A connection whose sink answers each ECHO_REQ with WORK_DATA of its text,
 * except texts starting with "hold": their replies are held (in `held`).
 */
function echoConnection(socket: FeedSocket) {
  const handled: string[] = [];
  const held: HeldReply[] = [];
  const c: Connection = new Connection(socket, {
    packet(_type, body) {
      const text = new TextDecoder().decode(body);
      handled.push(text);
      if (text.startsWith("hold")) held.push(c.holdReply());
      else send(c, text);
    },
  });
  return { c, handled, held };
}

function answer(c: Connection, held: HeldReply, text: string): void {
  held.out.end(held.out.begin(Magic.RES, PacketType.WORK_DATA).text(text));
  c.releaseReply(held);
}

Deno.test("connection: a held reply keeps its place; packets after it are handled at once and their replies wait behind it", async () => {
  const socket = new FeedSocket();
  const { c, handled, held } = echoConnection(socket);
  const running = c.run();
  socket.feed(echoes("hold 1", "a", "hold 2", "b"));
  await turn();
  assert.deepEqual(
    handled,
    ["hold 1", "a", "hold 2", "b"],
    "packets after a held reply were not handled",
  );
  assert.deepEqual(socket.written, [], "a reply left before the held one before it");
  answer(c, held[1]!, "H2");
  await turn();
  assert.deepEqual(socket.written, [], "the second held reply left before the first");
  answer(c, held[0]!, "H1");
  await turn();
  assert.deepEqual(parsed(socket.written), ["H1", "a", "H2", "b"]);
  // Nothing held: replies go straight out again.
  socket.feed(echoes("c"));
  await turn();
  assert.deepEqual(parsed(socket.written), ["H1", "a", "H2", "b", "c"]);
  c.close();
  socket.close();
  assert.equal(await running, undefined);
});

Deno.test("connection: with MAX_HELD_REPLIES held it stops reading, and reads again once half are sent", async () => {
  const socket = new FeedSocket();
  const { c, handled, held } = echoConnection(socket);
  const running = c.run();
  const texts = Array.from({ length: MAX_HELD_REPLIES + 10 }, (_, i) => `hold ${i}`);
  socket.feed(echoes(...texts));
  for (let i = 0; i < 5; i++) await turn();
  assert.equal(handled.length, MAX_HELD_REPLIES, "it went on reading past the limit");
  // Sending fewer than half keeps it stopped; half lets it go on.
  for (let i = 0; i < MAX_HELD_REPLIES / 2 - 1; i++) answer(c, held[i]!, `H${i}`);
  await turn();
  assert.equal(handled.length, MAX_HELD_REPLIES);
  answer(c, held[MAX_HELD_REPLIES / 2 - 1]!, `H${MAX_HELD_REPLIES / 2 - 1}`);
  await turn();
  assert.equal(handled.length, MAX_HELD_REPLIES + 10);
  for (let i = MAX_HELD_REPLIES / 2; i < held.length; i++) answer(c, held[i]!, `H${i}`);
  await turn();
  assert.deepEqual(parsed(socket.written), texts.map((_, i) => `H${i}`));
  c.close();
  socket.close();
  await running;
});

Deno.test("connection: abort drops held replies and what waits behind them; a late release writes nothing", async () => {
  const socket = new FeedSocket();
  const { c, held } = echoConnection(socket);
  const running = c.run();
  socket.feed(echoes("hold 1", "a"));
  await turn();
  c.abort();
  answer(c, held[0]!, "H1");
  await turn();
  assert.deepEqual(socket.written, []);
  socket.close();
  await running;
});
