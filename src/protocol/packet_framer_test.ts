import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  buildPacket,
  DEFAULT_MAX_LINE_LENGTH,
  DEFAULT_MAX_PACKET_SIZE,
  type FramerSink,
  HEADER_SIZE,
  Magic,
  PacketFramer,
  type PacketFramerOptions,
  PacketType,
  ProtocolError,
} from "./mod.ts";

const enc = new TextEncoder();

// ---------------------------------------------------------------------------
// Helpers

/** A small seeded PRNG (mulberry32): the same seed, the same run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` seeded random bytes, about one in eight a NUL. */
function randomBytes(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const r = rand();
    out[i] = r < 0.125 ? 0 : Math.floor(r * 256);
  }
  return out;
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function latin1(b: Uint8Array): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return s;
}

/** A packet as the sink saw it, body copied out of the framer's buffer. */
interface Received {
  magic: number;
  type: number;
  body: Uint8Array;
}

/** A sink that copies every packet body (views die when the callback returns). */
function collector(): { sink: FramerSink; got: Received[] } {
  const got: Received[] = [];
  return {
    got,
    sink: {
      packet(type, body, magic) {
        got.push({ magic, type, body: body.slice() });
      },
    },
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function assertReceived(got: readonly Received[], expected: readonly Received[], how: string) {
  assert.equal(got.length, expected.length, `${how}: packet count`);
  for (let i = 0; i < expected.length; i++) {
    const g = got[i]!;
    const e = expected[i]!;
    assert.equal(g.magic, e.magic, `${how}: magic of packet ${i}`);
    assert.equal(g.type, e.type, `${how}: type of packet ${i}`);
    assert.ok(
      sameBytes(g.body, e.body),
      `${how}: body of packet ${i} (type ${e.type}, ${e.body.length} bytes) differs`,
    );
  }
}

function isProtocolError(code: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof ProtocolError, `expected ProtocolError, got ${e}`);
    assert.equal(e.code, code);
    return true;
  };
}

/** Read sizes for simulated socket reads: mostly small, now and then huge. */
function readSize(rand: () => number): number {
  const r = rand();
  if (r < 0.4) return 1 + Math.floor(rand() * 12);
  if (r < 0.8) return 1 + Math.floor(rand() * 2000);
  return 1 + Math.floor(rand() * 100_000);
}

/** Feed `stream` through readRegion() + commit() with seeded read sizes. */
function feedRegions(
  framer: PacketFramer,
  stream: Uint8Array,
  seed: number,
  min?: number,
): void {
  const rand = prng(seed);
  let off = 0;
  while (off < stream.length) {
    const region = min === undefined ? framer.readRegion() : framer.readRegion(min);
    assert.ok(region.length >= (min ?? 1), `region of ${region.length} bytes`);
    const n = Math.min(region.length, readSize(rand), stream.length - off);
    region.set(stream.subarray(off, off + n));
    off += n;
    framer.commit(n);
  }
}

/** How a BYOB reader hands the buffer back: moved to a new ArrayBuffer. */
type Transfer = (buffer: ArrayBuffer) => ArrayBuffer;
const byTransfer: Transfer = (b) => b.transfer();
const byStructuredClone: Transfer = (b) => structuredClone(b, { transfer: [b] });

/**
 * Feed `stream` as a BYOB reader would: read into the region readRegion()
 * returned, move its buffer, and commitView() the view over the moved one.
 */
function feedTransferred(
  framer: PacketFramer,
  stream: Uint8Array,
  seed: number,
  transfer: Transfer,
): void {
  const rand = prng(seed);
  let off = 0;
  while (off < stream.length) {
    const region = framer.readRegion();
    const n = Math.min(region.length, readSize(rand), stream.length - off);
    region.set(stream.subarray(off, off + n));
    off += n;
    const byteOffset = region.byteOffset; // A detached view's byteOffset reads 0.
    const moved = transfer(region.buffer as ArrayBuffer);
    assert.equal(region.byteLength, 0, "the framer's old buffer is detached");
    framer.commitView(new Uint8Array(moved, byteOffset, n));
  }
}

// ---------------------------------------------------------------------------
// The mixed stream

interface Stream {
  bytes: Uint8Array;
  expected: Received[];
  /** Where each packet's body starts and ends in `bytes`. */
  bodies: [number, number][];
}

function mixedStream(): Stream {
  const rand = prng(0x6ea2);
  const packets: Uint8Array[] = [];
  const add = (type: PacketType, ...args: (string | Uint8Array)[]) => {
    packets.push(buildPacket(Magic.REQ, type, ...args));
  };
  const T = PacketType;
  add(T.CAN_DO, "reverse");
  add(T.SUBMIT_JOB, "reverse", "unique-1", new Uint8Array([0, 0, 1, 0, 255, 0, 10, 13, 0, 0]));
  add(T.GRAB_JOB);
  add(T.SUBMIT_JOB, "reverse", "", "");
  add(T.ECHO_REQ, "ping\0\0pong\0");
  add(T.WORK_COMPLETE, "H:lap:1", new Uint8Array([0, 116, 0, 115, 0]));
  add(T.SUBMIT_JOB_BG, "big", "u-big", randomBytes(rand, 200 * 1024 - "big\0u-big\0".length));
  add(T.GRAB_JOB);
  add(T.WORK_DATA, "H:lap:1", randomBytes(rand, 17 * 1024)); // over the 16 KiB read space
  add(T.CAN_DO, "fünction-✓");
  for (let i = 0; i < 60; i++) {
    switch (i % 6) {
      case 0:
        add(T.CAN_DO, `fn-${i}`);
        break;
      case 1:
        add(T.SUBMIT_JOB, `fn-${i}`, `u${i}`, randomBytes(rand, i * 23));
        break;
      case 2:
        add(T.GRAB_JOB);
        break;
      case 3:
        add(T.WORK_COMPLETE, `H:lap:${i}`, randomBytes(rand, i * 7));
        break;
      case 4:
        add(T.ECHO_REQ, randomBytes(rand, i));
        break;
      case 5:
        add(T.WORK_STATUS, `H:lap:${i}`, String(i), "60");
        break;
    }
  }
  add(T.ECHO_REQ, "the end");
  const expected = packets.map((p) => ({
    magic: Magic.REQ,
    type: new DataView(p.buffer).getUint32(4),
    body: p.subarray(HEADER_SIZE),
  }));
  assert.equal(packets.length, 71);
  assert.equal(expected[6]!.body.length, 200 * 1024);
  const bodies: [number, number][] = [];
  let at = 0;
  for (const p of packets) {
    bodies.push([at + HEADER_SIZE, at + p.length]);
    at += p.length;
  }
  return { bytes: concat(packets), expected, bodies };
}

const MIXED = mixedStream();

// ---------------------------------------------------------------------------
// Framing a stream however it is cut

Deno.test({
  name: "PacketFramer.push() frames a mixed stream fed in one chunk",
  permissions: "none",
  fn() {
    const { sink, got } = collector();
    const framer = new PacketFramer(sink);
    framer.push(MIXED.bytes);
    assertReceived(got, MIXED.expected, "one chunk");
    assert.equal(framer.pending, 0);
  },
});

Deno.test({
  name: "PacketFramer.push() frames a mixed stream split at every byte boundary",
  permissions: "none",
  async fn(t) {
    const { bytes, expected, bodies } = MIXED;

    await t.step("one framer reused for every split", () => {
      // ~225k splits of a ~225 KiB stream: bodies are checked in the callback
      // (native compare) rather than copied, to keep this quick.
      let i = 0;
      let failure: string | undefined;
      const framer = new PacketFramer({
        packet(type, body, magic) {
          const e = expected[i++];
          if (
            failure === undefined &&
            (!e || type !== e.type || magic !== e.magic || !sameBytes(body, e.body))
          ) {
            failure = `packet ${i - 1}`;
          }
        },
      });
      for (let k = 0; k <= bytes.length; k++) {
        i = 0;
        framer.push(bytes.subarray(0, k));
        framer.push(bytes.subarray(k));
        if (failure !== undefined || i !== expected.length || framer.pending !== 0) {
          assert.fail(`split at ${k}: ${failure ?? `${i} packets, ${framer.pending} pending`}`);
        }
      }
    });

    await t.step("a fresh framer for every split but those deep inside long bodies", () => {
      // A fresh framer costs a buffer or two per split: split everywhere in
      // headers and short bodies, within 32 bytes of every body's edges, at
      // every 16 KiB step into a body (±2), and every 997th byte.
      const deep = new Uint8Array(bytes.length + 1);
      for (const [start, end] of bodies) if (end - start > 64) deep.fill(1, start + 32, end - 31);
      for (let k = 0; k <= bytes.length; k++) {
        if (deep[k] && k % 997 !== 0) {
          const [start] = bodies.find(([start, end]) => k > start && k < end)!;
          if ((k - start + 2) % 16384 > 4) continue;
        }
        const { sink, got } = collector();
        const framer = new PacketFramer(sink);
        framer.push(bytes.subarray(0, k));
        framer.push(bytes.subarray(k));
        assertReceived(got, expected, `split at ${k}`);
        assert.equal(framer.pending, 0);
      }
    });
  },
});

Deno.test({
  name: "PacketFramer.push() frames a mixed stream fed one byte at a time",
  permissions: "none",
  fn() {
    const { sink, got } = collector();
    const framer = new PacketFramer(sink);
    const { bytes } = MIXED;
    for (let i = 0; i < bytes.length; i++) framer.push(bytes.subarray(i, i + 1));
    assertReceived(got, MIXED.expected, "one byte at a time");
    assert.equal(framer.pending, 0);
  },
});

Deno.test({
  name: "PacketFramer.commit() frames a mixed stream read into readRegion() in random sizes",
  permissions: "none",
  async fn(t) {
    for (const seed of [1, 2, 3, 42, 0xdecaf]) {
      for (const min of [undefined, 1, 100_000]) {
        await t.step(`seed ${seed}, readRegion(${min ?? ""})`, () => {
          const { sink, got } = collector();
          const framer = new PacketFramer(sink);
          feedRegions(framer, MIXED.bytes, seed, min);
          assertReceived(got, MIXED.expected, `seed ${seed}`);
          assert.equal(framer.pending, 0);
        });
      }
    }
  },
});

Deno.test({
  name: "PacketFramer.commitView() frames a mixed stream read into buffers a BYOB reader transfers",
  permissions: "none",
  async fn(t) {
    for (
      const [how, transfer] of [["transfer()", byTransfer], [
        "structuredClone()",
        byStructuredClone,
      ]] as const
    ) {
      for (const seed of [7, 8, 9]) {
        await t.step(`${how}, seed ${seed}`, () => {
          const { sink, got } = collector();
          const framer = new PacketFramer(sink);
          feedTransferred(framer, MIXED.bytes, seed, transfer);
          assertReceived(got, MIXED.expected, `${how} seed ${seed}`);
          assert.equal(framer.pending, 0);
        });
      }
    }
  },
});

Deno.test({
  name: "PacketFramer passes RES packets and unknown types through when no magic is set",
  permissions: "none",
  fn() {
    const { sink, got } = collector();
    const framer = new PacketFramer(sink);
    framer.push(concat([
      buildPacket(Magic.RES, "JOB_CREATED", "H:lap:1"),
      buildPacket(Magic.REQ, 99, "unknown"),
      buildPacket(Magic.RES, "NOOP"),
    ]));
    assert.deepEqual(
      got.map((r) => [r.magic, r.type, latin1(r.body)]),
      [[Magic.RES, 8, "H:lap:1"], [Magic.REQ, 99, "unknown"], [Magic.RES, 6, ""]],
    );
  },
});

Deno.test({
  name: "PacketFramer body views are valid only in the callback; copies survive any feeding",
  permissions: "none",
  async fn(t) {
    const rand = prng(0xc10b);
    const packets: Uint8Array[] = [];
    const expected: Received[] = [];
    for (let i = 0; i < 50; i++) {
      const body = randomBytes(rand, 300 * 1024);
      new DataView(body.buffer).setUint32(0, i); // no two bodies alike
      packets.push(buildPacket(Magic.REQ, PacketType.WORK_DATA, body));
      expected.push({ magic: Magic.REQ, type: PacketType.WORK_DATA, body });
      const echo = `echo ${i}`;
      packets.push(buildPacket(Magic.REQ, PacketType.ECHO_REQ, echo));
      expected.push({ magic: Magic.REQ, type: PacketType.ECHO_REQ, body: enc.encode(echo) });
    }
    const stream = concat(packets);

    await t.step("push() in odd-size chunks", () => {
      const { sink, got } = collector();
      const framer = new PacketFramer(sink);
      const sizes = [1, 7, 4093, 65537, 12, 300_007, 131_071, 3, 11, 16_385];
      for (let off = 0, i = 0; off < stream.length; i++) {
        const n = sizes[i % sizes.length]!;
        framer.push(stream.subarray(off, off + n));
        off += n;
      }
      assertReceived(got, expected, "push()");
    });
    await t.step("readRegion() and commit()", () => {
      const { sink, got } = collector();
      const framer = new PacketFramer(sink);
      feedRegions(framer, stream, 99);
      assertReceived(got, expected, "commit()");
    });
    await t.step("commitView() over transferred buffers", () => {
      const { sink, got } = collector();
      const framer = new PacketFramer(sink);
      feedTransferred(framer, stream, 98, byTransfer);
      assertReceived(got, expected, "commitView()");
    });
  },
});

Deno.test({
  name: "PacketFramer.readRegion() returns at least the space asked for and keeps pending bytes",
  permissions: "none",
  fn() {
    const { sink, got } = collector();
    const framer = new PacketFramer(sink);
    const packet = buildPacket(Magic.REQ, "ECHO_REQ", "hello");
    framer.push(packet.subarray(0, 9));
    const region = framer.readRegion(500_000);
    assert.ok(region.length >= 500_000, `region of ${region.length} bytes`);
    assert.equal(framer.pending, 9);
    region.set(packet.subarray(9));
    framer.commit(packet.length - 9);
    assert.deepEqual(got.map((r) => latin1(r.body)), ["hello"]);
  },
});

Deno.test({
  name: "PacketFramer.readRegion() gives back the memory of a large packet once it has gone",
  permissions: "none",
  fn() {
    const { sink, got } = collector();
    const framer = new PacketFramer(sink);
    framer.push(buildPacket(Magic.REQ, "ECHO_REQ", new Uint8Array(1024 * 1024)));
    assert.equal(got.length, 1);
    assert.ok(framer.readRegion(1).length <= 64 * 1024);
  },
});

// ---------------------------------------------------------------------------
// Admin text lines

type Event = ["packet", number, string] | ["line", string];

function eventCollector(): { sink: Required<FramerSink>; events: Event[] } {
  const events: Event[] = [];
  return {
    events,
    sink: {
      packet(type, body) {
        events.push(["packet", type, body.length > 256 ? `${body.length} bytes` : latin1(body)]);
      },
      line(line) {
        events.push(["line", latin1(line)]);
      },
    },
  };
}

Deno.test({
  name: "PacketFramer reports admin lines without their line ending when text is on",
  permissions: "none",
  async fn(t) {
    const cases: [string, string[]][] = [
      ["status\n", ["status"]],
      ["workers\r\n", ["workers"]],
      ["status\nworkers\r\nversion\n", ["status", "workers", "version"]],
      ["\n", [""]],
      ["\r\n", [""]],
      ["maxqueue reverse 10\n", ["maxqueue reverse 10"]],
      ["a\rb\n", ["a\rb"]],
      ["trailing cr\r\r\n", ["trailing cr\r"]],
    ];
    for (const [input, lines] of cases) {
      await t.step(JSON.stringify(input), () => {
        const { sink, events } = eventCollector();
        const framer = new PacketFramer(sink, { text: true });
        framer.push(enc.encode(input));
        assert.deepEqual(events, lines.map((l) => ["line", l]));
        assert.equal(framer.pending, 0);
      });
    }
  },
});

Deno.test({
  name: "PacketFramer reports lines mixed between binary packets in order, however cut",
  permissions: "none",
  async fn(t) {
    const stream = concat([
      buildPacket(Magic.REQ, "CAN_DO", "reverse"),
      enc.encode("status\n"),
      buildPacket(Magic.REQ, "SUBMIT_JOB", "reverse", "", new Uint8Array([0, 10, 0, 13])),
      enc.encode("workers\r\n"),
      enc.encode("version\n"),
      buildPacket(Magic.REQ, "GRAB_JOB"),
      enc.encode("\r\n"),
      buildPacket(Magic.REQ, "ECHO_REQ", "\n\n"),
      enc.encode("show jobs\n"),
    ]);
    const expected: Event[] = [
      ["packet", PacketType.CAN_DO, "reverse"],
      ["line", "status"],
      ["packet", PacketType.SUBMIT_JOB, "reverse\0\0\0\n\0\r"],
      ["line", "workers"],
      ["line", "version"],
      ["packet", PacketType.GRAB_JOB, ""],
      ["line", ""],
      ["packet", PacketType.ECHO_REQ, "\n\n"],
      ["line", "show jobs"],
    ];
    await t.step("one chunk", () => {
      const { sink, events } = eventCollector();
      new PacketFramer(sink, { text: true }).push(stream);
      assert.deepEqual(events, expected);
    });
    await t.step("split at every byte boundary", () => {
      for (let k = 0; k <= stream.length; k++) {
        const { sink, events } = eventCollector();
        const framer = new PacketFramer(sink, { text: true });
        framer.push(stream.subarray(0, k));
        framer.push(stream.subarray(k));
        assert.deepEqual(events, expected, `split at ${k}`);
        assert.equal(framer.pending, 0);
      }
    });
    await t.step("one byte at a time", () => {
      const { sink, events } = eventCollector();
      const framer = new PacketFramer(sink, { text: true });
      for (let i = 0; i < stream.length; i++) framer.push(stream.subarray(i, i + 1));
      assert.deepEqual(events, expected);
    });
    await t.step("commitView() over transferred buffers", () => {
      for (const seed of [1, 2, 3, 4, 5]) {
        const { sink, events } = eventCollector();
        const framer = new PacketFramer(sink, { text: true });
        feedTransferred(framer, stream, seed, byTransfer);
        assert.deepEqual(events, expected, `seed ${seed}`);
      }
    });
  },
});

Deno.test({
  name: "PacketFramer holds a line split across chunks until its newline arrives",
  permissions: "none",
  fn() {
    const { sink, events } = eventCollector();
    const framer = new PacketFramer(sink, { text: true });
    framer.push(enc.encode("sta"));
    assert.deepEqual(events, []);
    assert.equal(framer.pending, 3);
    framer.push(enc.encode("tus\r"));
    assert.deepEqual(events, []);
    assert.equal(framer.pending, 7);
    framer.push(enc.encode("\nwork"));
    assert.deepEqual(events, [["line", "status"]]);
    assert.equal(framer.pending, 4);
    framer.push(enc.encode("ers\n"));
    assert.deepEqual(events, [["line", "status"], ["line", "workers"]]);
    assert.equal(framer.pending, 0);
  },
});

Deno.test({
  name: "PacketFramer finds a pending line's newline after moving the line in its buffer",
  permissions: "none",
  fn() {
    // A packet that almost fills the 64 KiB buffer leaves a line pending at
    // its end; more bytes then move the line to the front of the buffer.
    for (let pad = 0; pad <= 24; pad++) {
      const body = new Uint8Array(64 * 1024 - HEADER_SIZE - pad);
      const stream = concat([
        buildPacket(Magic.REQ, "ECHO_REQ", body),
        enc.encode("status\nworkers\r\n"),
        buildPacket(Magic.REQ, "NOOP"),
      ]);
      const expected: Event[] = [
        ["packet", PacketType.ECHO_REQ, `${body.length} bytes`],
        ["line", "status"],
        ["line", "workers"],
        ["packet", PacketType.NOOP, ""],
      ];
      for (let k = stream.length - 40; k <= stream.length; k++) {
        for (const step of [1, 3, 16]) {
          const { sink, events } = eventCollector();
          const framer = new PacketFramer(sink, { text: true });
          framer.push(stream.subarray(0, k));
          for (let i = k; i < stream.length; i += step) {
            framer.push(stream.subarray(i, Math.min(i + step, stream.length)));
          }
          assert.deepEqual(events, expected, `pad ${pad}, split at ${k}, then ${step}-byte chunks`);
        }
      }
    }
  },
});

Deno.test({
  name: "PacketFramer drops lines but keeps framing when text is on and the sink has no line()",
  permissions: "none",
  fn() {
    const { sink, got } = collector();
    const framer = new PacketFramer(sink, { text: true });
    framer.push(concat([enc.encode("status\n"), buildPacket(Magic.REQ, "CAN_DO", "x")]));
    assert.deepEqual(got.map((r) => [r.type, latin1(r.body)]), [[PacketType.CAN_DO, "x"]]);
  },
});

Deno.test({
  name: "PacketFramer throws LINE_TOO_LONG for a line over maxLineLength",
  permissions: "none",
  async fn(t) {
    const max = 8;
    /** Feed `input` with the given cut points; return lines seen or the error code. */
    const run = (input: string, cuts: number[]): string[] | string => {
      const { sink, events } = eventCollector();
      const framer = new PacketFramer(sink, { text: true, maxLineLength: max });
      const bytes = enc.encode(input);
      try {
        let from = 0;
        for (const cut of [...cuts, bytes.length]) {
          framer.push(bytes.subarray(from, cut));
          from = cut;
        }
      } catch (e) {
        if (e instanceof ProtocolError) return e.code;
        throw e;
      }
      return events.map((e) => e[1] as string);
    };
    const everyCut = (input: string, expected: string[] | string) => {
      const n = enc.encode(input).length;
      assert.deepEqual(run(input, []), expected, "one chunk");
      assert.deepEqual(run(input, Array.from({ length: n }, (_, i) => i)), expected, "bytewise");
      for (let k = 0; k <= n; k++) assert.deepEqual(run(input, [k]), expected, `split at ${k}`);
    };

    await t.step("a line of exactly maxLineLength is accepted", () => {
      everyCut("12345678\n", ["12345678"]);
      everyCut("12345678\r\n", ["12345678"]);
    });
    await t.step("a line one byte over is refused however it is cut", () => {
      everyCut("123456789\n", "LINE_TOO_LONG");
      everyCut("123456789\r\n", "LINE_TOO_LONG");
      everyCut("ok\n123456789\n", "LINE_TOO_LONG");
    });
    await t.step("refused as soon as the line is too long, before any newline", () => {
      const { sink, events } = eventCollector();
      const framer = new PacketFramer(sink, { text: true, maxLineLength: max });
      framer.push(enc.encode("12345678"));
      assert.throws(() => framer.push(enc.encode("9")), isProtocolError("LINE_TOO_LONG"));
      assert.deepEqual(events, []);
    });
    await t.step("the default limit is DEFAULT_MAX_LINE_LENGTH", () => {
      assert.equal(DEFAULT_MAX_LINE_LENGTH, 64 * 1024);
      const ok = eventCollector();
      new PacketFramer(ok.sink, { text: true }).push(
        enc.encode("x".repeat(DEFAULT_MAX_LINE_LENGTH) + "\n"),
      );
      assert.equal((ok.events[0]![1] as string).length, DEFAULT_MAX_LINE_LENGTH);
      const framer = new PacketFramer(eventCollector().sink, { text: true });
      assert.throws(
        () => framer.push(enc.encode("x".repeat(DEFAULT_MAX_LINE_LENGTH + 1))),
        isProtocolError("LINE_TOO_LONG"),
      );
    });
  },
});

Deno.test({
  name: "PacketFramer throws BAD_MAGIC for text when text is off",
  permissions: "none",
  async fn(t) {
    for (const input of ["status\n", "s", "GET / HTTP/1.1\r\n", "\n"]) {
      await t.step(JSON.stringify(input), () => {
        const { sink, got } = collector();
        const framer = new PacketFramer(sink);
        assert.throws(() => framer.push(enc.encode(input)), isProtocolError("BAD_MAGIC"));
        assert.equal(got.length, 0);
      });
    }
    await t.step("after a good packet in the same chunk", () => {
      const { sink, got } = collector();
      const framer = new PacketFramer(sink);
      const bytes = concat([buildPacket(Magic.REQ, "CAN_DO", "x"), enc.encode("status\n")]);
      assert.throws(() => framer.push(bytes), isProtocolError("BAD_MAGIC"));
      assert.equal(got.length, 1);
    });
  },
});

// ---------------------------------------------------------------------------
// Protocol errors

Deno.test({
  name: "PacketFramer throws BAD_MAGIC for \\0XYZ as soon as four bytes arrive",
  permissions: "none",
  async fn(t) {
    for (const text of [false, true]) {
      await t.step(`text: ${text}`, () => {
        const { sink, got } = collector();
        const framer = new PacketFramer(sink, { text });
        framer.push(enc.encode("\0XY"));
        assert.equal(framer.pending, 3);
        assert.throws(() => framer.push(enc.encode("Z")), isProtocolError("BAD_MAGIC"));
        assert.equal(got.length, 0);
      });
    }
    await t.step("with a whole header and body", () => {
      const bytes = buildPacket(Magic.REQ, "CAN_DO", "x");
      bytes.set(enc.encode("XYZ"), 1);
      const framer = new PacketFramer(collector().sink);
      assert.throws(() => framer.push(bytes), isProtocolError("BAD_MAGIC"));
    });
  },
});

Deno.test({
  name: "PacketFramer throws BAD_MAGIC for the other magic when magic is set",
  permissions: "none",
  async fn(t) {
    await t.step("magic: REQ refuses a RES packet", () => {
      const { sink, got } = collector();
      const framer = new PacketFramer(sink, { magic: Magic.REQ });
      framer.push(buildPacket(Magic.REQ, "CAN_DO", "x"));
      assert.equal(got.length, 1);
      assert.throws(
        () => framer.push(buildPacket(Magic.RES, "NOOP")),
        isProtocolError("BAD_MAGIC"),
      );
      assert.equal(got.length, 1);
    });
    await t.step("magic: RES refuses a REQ packet after four bytes", () => {
      const { sink, got } = collector();
      const framer = new PacketFramer(sink, { magic: Magic.RES });
      framer.push(buildPacket(Magic.RES, "NOOP"));
      assert.equal(got.length, 1);
      assert.equal(got[0]!.magic, Magic.RES);
      framer.push(enc.encode("\0RE"));
      assert.throws(() => framer.push(enc.encode("Q")), isProtocolError("BAD_MAGIC"));
    });
  },
});

Deno.test({
  name: "PacketFramer throws PACKET_TOO_LARGE as soon as the header arrives",
  permissions: "none",
  async fn(t) {
    const header = (size: number) => {
      const h = buildPacket(Magic.REQ, "SUBMIT_JOB");
      new DataView(h.buffer).setUint32(8, size);
      return h;
    };
    await t.step("size 0xFFFFFFFF, header in one chunk", () => {
      const { sink, got } = collector();
      const framer = new PacketFramer(sink);
      assert.throws(() => framer.push(header(0xffffffff)), isProtocolError("PACKET_TOO_LARGE"));
      assert.equal(got.length, 0);
    });
    await t.step("size 0xFFFFFFFF, header one byte at a time", () => {
      const framer = new PacketFramer(collector().sink);
      const h = header(0xffffffff);
      for (let i = 0; i < HEADER_SIZE - 1; i++) framer.push(h.subarray(i, i + 1));
      assert.throws(
        () => framer.push(h.subarray(HEADER_SIZE - 1)),
        isProtocolError("PACKET_TOO_LARGE"),
      );
    });
    await t.step("size 0xFFFFFFFF, header through readRegion() and commit()", () => {
      const framer = new PacketFramer(collector().sink);
      const region = framer.readRegion();
      region.set(header(0xffffffff));
      assert.throws(() => framer.commit(HEADER_SIZE), isProtocolError("PACKET_TOO_LARGE"));
    });
    await t.step("one byte over the default limit", () => {
      assert.equal(DEFAULT_MAX_PACKET_SIZE, 64 * 1024 * 1024);
      const framer = new PacketFramer(collector().sink);
      assert.throws(
        () => framer.push(header(DEFAULT_MAX_PACKET_SIZE + 1)),
        isProtocolError("PACKET_TOO_LARGE"),
      );
    });
    await t.step("the maxPacketSize option", () => {
      const { sink, got } = collector();
      const framer = new PacketFramer(sink, { maxPacketSize: 1000 });
      framer.push(buildPacket(Magic.REQ, "ECHO_REQ", new Uint8Array(1000)));
      assert.equal(got.length, 1);
      assert.throws(() => framer.push(header(1001)), isProtocolError("PACKET_TOO_LARGE"));
      assert.equal(got.length, 1);
    });
  },
});

Deno.test({
  name: "PacketFramer constructor throws RangeError for a bad size limit",
  permissions: "none",
  fn() {
    const sink = collector().sink;
    for (const v of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) {
      for (const key of ["maxPacketSize", "maxLineLength"] as const) {
        const options: PacketFramerOptions = { [key]: v };
        assert.throws(() => new PacketFramer(sink, options), RangeError, `${key}: ${v}`);
      }
    }
    assert.ok(new PacketFramer(sink, { maxPacketSize: 1, maxLineLength: 1 }));
  },
});

// ---------------------------------------------------------------------------
// pending and stop()

Deno.test({
  name: "PacketFramer.pending counts the bytes of an incomplete packet",
  permissions: "none",
  fn() {
    const { sink, got } = collector();
    const framer = new PacketFramer(sink);
    const a = buildPacket(Magic.REQ, "CAN_DO", "reverse");
    const b = buildPacket(Magic.REQ, "SUBMIT_JOB", "reverse", "", "test");
    assert.equal(framer.pending, 0);
    framer.push(a.subarray(0, 5));
    assert.equal(framer.pending, 5);
    framer.push(a.subarray(5, HEADER_SIZE + 1));
    assert.equal(framer.pending, HEADER_SIZE + 1);
    framer.push(concat([a.subarray(HEADER_SIZE + 1), b.subarray(0, 20)]));
    assert.equal(got.length, 1);
    assert.equal(framer.pending, 20);
    framer.push(b.subarray(20));
    assert.equal(got.length, 2);
    assert.equal(framer.pending, 0);
  },
});

Deno.test({
  name: "PacketFramer.stop() in a sink callback stops callbacks for the rest of the chunk",
  permissions: "none",
  async fn(t) {
    const chunk = concat([
      buildPacket(Magic.REQ, "CAN_DO", "a"),
      buildPacket(Magic.REQ, "CAN_DO", "b"),
      buildPacket(Magic.REQ, "CAN_DO", "c"),
      buildPacket(Magic.REQ, "CAN_DO", "d"),
    ]);
    await t.step("from packet()", () => {
      const seen: string[] = [];
      const framer = new PacketFramer({
        packet(_type, body) {
          seen.push(latin1(body));
          if (seen.length === 2) framer.stop();
        },
      });
      framer.push(chunk);
      assert.deepEqual(seen, ["a", "b"]);
      framer.push(buildPacket(Magic.REQ, "CAN_DO", "e"));
      assert.deepEqual(seen, ["a", "b"], "nothing reported after stop()");
    });
    await t.step("from packet(), bytes fed through commit()", () => {
      const seen: string[] = [];
      const framer = new PacketFramer({
        packet(_type, body) {
          seen.push(latin1(body));
          framer.stop();
        },
      });
      const region = framer.readRegion();
      region.set(chunk);
      framer.commit(chunk.length);
      assert.deepEqual(seen, ["a"]);
    });
    await t.step("from line()", () => {
      const seen: string[] = [];
      const framer = new PacketFramer({
        packet(_type, body) {
          seen.push(latin1(body));
        },
        line(line) {
          seen.push(latin1(line));
          if (latin1(line) === "shutdown") framer.stop();
        },
      }, { text: true });
      framer.push(concat([enc.encode("status\nshutdown\nworkers\n"), chunk]));
      assert.deepEqual(seen, ["status", "shutdown"]);
    });
    await t.step("before a bad packet later in the chunk", () => {
      const framer = new PacketFramer({ packet: () => framer.stop() });
      const bytes = concat([chunk.subarray(0, HEADER_SIZE + 1), enc.encode("\0XYZ garbage")]);
      assert.doesNotThrow(() => framer.push(bytes));
    });
  },
});

Deno.test({
  name: "PacketFramer.pause() holds the packets after the current one until resume(), in order",
  permissions: "none",
  fn() {
    const got: string[] = [];
    const framer: PacketFramer = new PacketFramer({
      packet(type, body) {
        got.push(`${type}:${latin1(body)}`);
        // A packet answered later: hold the rest.
        if (latin1(body) === "wait") framer.pause();
      },
      line(line) {
        got.push(`line:${latin1(line)}`);
      },
    }, { text: true });
    const bytes = concat([
      buildPacket(Magic.REQ, PacketType.ECHO_REQ, "a"),
      buildPacket(Magic.REQ, PacketType.ECHO_REQ, "wait"),
      buildPacket(Magic.REQ, PacketType.ECHO_REQ, "b"),
      enc.encode("status\n"),
      buildPacket(Magic.REQ, PacketType.ECHO_REQ, "wait"),
      buildPacket(Magic.REQ, PacketType.ECHO_REQ, "c"),
    ]);
    framer.push(bytes);
    assert.deepEqual(got, ["16:a", "16:wait"]);
    assert.ok(framer.paused);
    assert.ok(framer.pending > 0, "the held bytes stay buffered");
    framer.resume();
    assert.deepEqual(got, ["16:a", "16:wait", "16:b", "line:status", "16:wait"]);
    assert.ok(framer.paused, "paused again by the second packet");
    framer.resume();
    assert.deepEqual(got.slice(5), ["16:c"]);
    assert.ok(!framer.paused);
    assert.equal(framer.pending, 0);
    framer.resume(); // not paused: nothing happens
    assert.equal(got.length, 6);
  },
});

Deno.test({
  name: "PacketFramer.pause() stops after the current packet; resume() reports the rest in order",
  permissions: "none",
  fn() {
    const seen: string[] = [];
    // deno-lint-ignore prefer-const
    let framer: PacketFramer;
    const sink: FramerSink = {
      packet(_type, body) {
        seen.push(new TextDecoder().decode(body));
        if (seen.length % 2 === 1) framer.pause();
      },
      line(line) {
        seen.push(`line:${new TextDecoder().decode(line)}`);
      },
    };
    framer = new PacketFramer(sink, { text: true });
    const bytes = Buffer.concat([
      buildPacket(Magic.REQ, "ECHO_REQ", "a"),
      buildPacket(Magic.REQ, "ECHO_REQ", "b"),
      buildPacket(Magic.REQ, "ECHO_REQ", "c"),
      enc.encode("status\n"),
    ]);
    framer.push(bytes.subarray(0, 20));
    assert.deepEqual(seen, ["a"]);
    assert.equal(framer.paused, true);
    // Bytes fed while paused are kept, not reported.
    framer.push(bytes.subarray(20));
    assert.deepEqual(seen, ["a"]);
    framer.resume();
    assert.deepEqual(seen, ["a", "b", "c"]);
    framer.resume();
    assert.deepEqual(seen, ["a", "b", "c", "line:status"]);
    assert.equal(framer.pending, 0);
    assert.equal(framer.paused, false);
  },
});
