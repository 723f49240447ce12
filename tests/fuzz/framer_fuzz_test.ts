// Property-based fuzzing of PacketFramer (text mode, as the server runs it).
//
// Streams are built from valid packets and admin lines, then mutated (bit
// flips, truncation, inserted garbage, oversize headers, bad magic) and
// split into chunks at random points. Checked, whatever the input:
//
// - nothing but a ProtocolError ever escapes the framer;
// - a framer fed the whole stream at once agrees with a small reference
//   parser written from the protocol text (same packets, lines, error code
//   and bytes left pending);
// - the split points never change the result: the same packets and lines,
//   in the same order, and the same error (code and message), whether the
//   stream arrives whole, in random chunks, one byte at a time, or through
//   readRegion()/commit() with random read sizes;
// - a valid stream gives back exactly the packets and lines that were sent.
//
// Runs are seeded (seed 42), so a failure reproduces; fast-check prints the
// shrunk counterexample and the path to replay it.

import assert from "node:assert/strict";
import fc from "npm:fast-check@^4.10.2";
import { HEADER_SIZE, Magic } from "../../src/protocol/packet.ts";
import { PacketFramer, type PacketFramerOptions } from "../../src/protocol/packet_framer.ts";
import { ProtocolError } from "../../src/protocol/protocol_error.ts";

const SEED = 42;

// ---------------------------------------------------------------------------
// Events, as a sink sees them (copied out of the framer's buffer)

type Event =
  | { kind: "packet"; magic: number; type: number; body: Uint8Array }
  | { kind: "line"; line: Uint8Array };

interface Outcome {
  events: Event[];
  /** Code and message of the ProtocolError that ended the stream, if any. */
  error: { code: string; message: string } | undefined;
  /** Bytes left incomplete at the end (only meaningful without an error). */
  pending: number;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function describe(e: Event): string {
  return e.kind === "packet"
    ? `packet magic=${e.magic.toString(16)} type=${e.type} body=${e.body.length}B`
    : `line ${JSON.stringify(String.fromCharCode(...e.line.subarray(0, 40)))} (${e.line.length}B)`;
}

function assertSameEvents(got: readonly Event[], want: readonly Event[], how: string): void {
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const same = g.kind === "packet" && w.kind === "packet"
      ? g.magic === w.magic && g.type === w.type && sameBytes(g.body, w.body)
      : g.kind === "line" && w.kind === "line" && sameBytes(g.line, w.line);
    assert.ok(same, `${how}: event ${i} is ${describe(g)}, expected ${describe(w)}`);
  }
  assert.equal(got.length, want.length, `${how}: event count`);
}

function assertSameOutcome(got: Outcome, want: Outcome, how: string): void {
  assertSameEvents(got.events, want.events, how);
  assert.deepEqual(got.error, want.error, `${how}: error`);
  if (want.error === undefined) assert.equal(got.pending, want.pending, `${how}: pending bytes`);
}

// ---------------------------------------------------------------------------
// Feeding the framer

/** How bytes reach the framer. */
type Feed =
  | { how: "push"; cuts: number[] }
  | { how: "region"; sizes: number[]; mins: number[] };

function run(stream: Uint8Array, options: PacketFramerOptions, feed: Feed): Outcome {
  const events: Event[] = [];
  const framer = new PacketFramer({
    packet(type, body, magic) {
      events.push({ kind: "packet", magic, type, body: body.slice() });
    },
    line(line) {
      events.push({ kind: "line", line: line.slice() });
    },
  }, options);
  try {
    if (feed.how === "push") {
      let at = 0;
      for (const cut of [...feed.cuts, stream.length]) {
        const end = Math.max(at, Math.min(cut, stream.length));
        framer.push(stream.subarray(at, end));
        at = end;
      }
    } else {
      let off = 0;
      let i = 0;
      while (off < stream.length) {
        const min = feed.mins.length > 0 ? feed.mins[i % feed.mins.length]! : undefined;
        const region = min === undefined ? framer.readRegion() : framer.readRegion(min);
        assert.ok(region.length >= (min ?? 1), `readRegion(${min}) gave ${region.length} bytes`);
        const want = feed.sizes.length > 0 ? feed.sizes[i % feed.sizes.length]! : 4096;
        const n = Math.min(region.length, Math.max(1, want), stream.length - off);
        region.set(stream.subarray(off, off + n));
        off += n;
        i++;
        framer.commit(n);
      }
    }
  } catch (err) {
    if (!(err instanceof ProtocolError)) {
      throw new Error(`framer threw a ${(err as Error)?.name ?? typeof err}, not a ProtocolError`, {
        cause: err,
      });
    }
    return { events, error: { code: err.code, message: err.message }, pending: -1 };
  }
  return { events, error: undefined, pending: framer.pending };
}

const whole: Feed = { how: "push", cuts: [] };

function byteByByte(length: number): Feed {
  return { how: "push", cuts: Array.from({ length }, (_, i) => i + 1) };
}

// ---------------------------------------------------------------------------
// The reference: the framing rules, read off the protocol text, applied to a
// whole stream with no buffering tricks.

function reference(stream: Uint8Array, options: Required<PacketFramerOptions>): Outcome {
  const events: Event[] = [];
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  const end = stream.length;
  let pos = 0;
  const fail = (code: string): Outcome => ({ events, error: { code, message: "" }, pending: -1 });
  const magicOk = (at: number): boolean => {
    const m = view.getUint32(at);
    if (m !== Magic.REQ && m !== Magic.RES) return false;
    return options.magic === undefined || m === options.magic;
  };
  while (pos < end) {
    if (stream[pos] !== 0) {
      // An admin text line, ended by "\n" (a "\r" before it is not part of it).
      const nl = stream.indexOf(10, pos);
      if (nl < 0) {
        const len = end - pos - (stream[end - 1] === 13 ? 1 : 0);
        if (len > options.maxLineLength) return fail("LINE_TOO_LONG");
        break;
      }
      const lineEnd = nl > pos && stream[nl - 1] === 13 ? nl - 1 : nl;
      if (lineEnd - pos > options.maxLineLength) return fail("LINE_TOO_LONG");
      events.push({ kind: "line", line: stream.slice(pos, lineEnd) });
      pos = nl + 1;
      continue;
    }
    if (end - pos < HEADER_SIZE) {
      if (end - pos >= 4 && !magicOk(pos)) return fail("BAD_MAGIC");
      break;
    }
    if (!magicOk(pos)) return fail("BAD_MAGIC");
    const size = view.getUint32(pos + 8);
    if (size > options.maxPacketSize) return fail("PACKET_TOO_LARGE");
    if (end - pos - HEADER_SIZE < size) break;
    events.push({
      kind: "packet",
      magic: view.getUint32(pos),
      type: view.getUint32(pos + 4),
      body: stream.slice(pos + HEADER_SIZE, pos + HEADER_SIZE + size),
    });
    pos += HEADER_SIZE + size;
  }
  return { events, error: undefined, pending: end - pos };
}

// ---------------------------------------------------------------------------
// Generators

function packetBytes(magic: number, type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, magic);
  v.setUint32(4, type);
  v.setUint32(8, body.length);
  out.set(body, HEADER_SIZE);
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

/** Bytes with plenty of NULs, "\r" and "\n" (the bytes framing cares about). */
const framingByte = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 255 }) },
  { weight: 2, arbitrary: fc.constant(0) },
  { weight: 1, arbitrary: fc.constantFrom(10, 13) },
);

const bodyArb = fc.oneof(
  { weight: 8, arbitrary: fc.uint8Array({ maxLength: 64, size: "max" }) },
  {
    weight: 3,
    arbitrary: fc.array(framingByte, { maxLength: 300, size: "large" }).map((a) =>
      new Uint8Array(a)
    ),
  },
  // Now and then a large body: past the 4 KiB start buffer and the read space.
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 4000, max: 70_000 }), fc.integer({ min: 0, max: 255 }))
      .map(([n, fill]) => new Uint8Array(n).fill(fill)),
  },
);

type Item =
  | { kind: "packet"; magic: number; type: number; body: Uint8Array }
  | { kind: "line"; content: Uint8Array; crlf: boolean };

const packetItem: fc.Arbitrary<Item> = fc.record({
  kind: fc.constant("packet" as const),
  magic: fc.constantFrom(Magic.REQ, Magic.RES),
  type: fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 1, max: 42 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
  ),
  body: bodyArb,
});

/** Admin-ish line contents: start with a non-NUL byte, no "\n", no trailing "\r". */
const lineContent = fc.oneof(
  fc.constantFrom(
    "status",
    "workers",
    "version",
    "show jobs",
    "show unique jobs",
    "cancel job H:x:1",
    "maxqueue f 10",
    "shutdown graceful",
    "",
    "\t",
    "ÿÿÿ",
  ).map((s) => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff)),
  fc.array(fc.integer({ min: 1, max: 255 }).filter((b) => b !== 10), {
    maxLength: 120,
    size: "large",
  })
    .map((a) => new Uint8Array(a)),
  // Near the line limit used below (100 bytes).
  fc.integer({ min: 95, max: 105 }).map((n) => new Uint8Array(n).fill(0x61)),
).map((c) => {
  // A line cannot start with NUL (that starts a packet) nor end with "\r"
  // (it would be taken as part of "\r\n").
  let b = c;
  while (b.length > 0 && b[b.length - 1] === 13) b = b.subarray(0, b.length - 1);
  if (b.length > 0 && b[0] === 0) b = b.subarray(1);
  return b;
});

const lineItem: fc.Arbitrary<Item> = fc.record({
  kind: fc.constant("line" as const),
  content: lineContent,
  crlf: fc.boolean(),
});

function itemBytes(item: Item): Uint8Array {
  if (item.kind === "packet") return packetBytes(item.magic, item.type, item.body);
  const c = item.content;
  const out = new Uint8Array(c.length + (item.crlf ? 2 : 1));
  out.set(c);
  if (item.crlf) out[c.length] = 13;
  out[out.length - 1] = 10;
  return out;
}

/** A framer configuration: the server's defaults, or small limits that the generators reach. */
const optionsArb: fc.Arbitrary<Required<PacketFramerOptions>> = fc.record({
  magic: fc.constantFrom(undefined, Magic.REQ),
  text: fc.constant(true),
  maxPacketSize: fc.constantFrom(64 * 1024 * 1024, 100_000, 300, 40),
  maxLineLength: fc.constantFrom(64 * 1024, 100),
}) as fc.Arbitrary<Required<PacketFramerOptions>>;

/** A mutation of a stream. Positions are fractions of its length, so they shrink well. */
type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "truncate"; at: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "oversize"; at: number; size: number }
  | { op: "magic"; at: number; magic: Uint8Array };

const fraction = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant("flip" as const),
      at: fraction,
      bit: fc.integer({ min: 0, max: 7 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("truncate" as const), at: fraction }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("insert" as const),
      at: fraction,
      bytes: fc.oneof(
        fc.array(framingByte, { minLength: 1, maxLength: 40, size: "max" }).map((a) =>
          new Uint8Array(a)
        ),
        // A header alone, or a stray magic.
        fc.constantFrom(
          new Uint8Array([0, 0x52, 0x45, 0x51]),
          new Uint8Array([0, 0x52, 0x45, 0x53, 0, 0, 0, 7]),
          new Uint8Array([0, 0x52, 0x45, 0x51, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]),
          Uint8Array.from("status\r\n", (c) => c.charCodeAt(0)),
          Uint8Array.from("\r\r\n\n", (c) => c.charCodeAt(0)),
        ),
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("oversize" as const),
      at: fraction,
      size: fc.constantFrom(0xffffffff, 0x80000000, 64 * 1024 * 1024 + 1, 100_001, 301, 41),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("magic" as const),
      at: fraction,
      magic: fc.constantFrom(
        new Uint8Array([0, 0x52, 0x45, 0x58]),
        new Uint8Array([0, 0x72, 0x65, 0x71]),
        new Uint8Array([0, 0, 0, 0]),
        new Uint8Array([0, 0x52, 0x45, 0x53]),
      ),
    }),
  },
);

/** Apply mutations; `starts` are the packet starts in the unmutated stream. */
function mutate(stream: Uint8Array, starts: number[], mutations: Mutation[]): Uint8Array {
  let s: Uint8Array = stream.slice();
  for (const m of mutations) {
    if (s.length === 0 && m.op !== "insert") continue;
    const at = Math.floor(m.at * s.length);
    switch (m.op) {
      case "flip":
        s[at] = s[at]! ^ (1 << m.bit);
        break;
      case "truncate":
        s = s.slice(0, at);
        break;
      case "insert":
        s = concat([s.subarray(0, at), m.bytes, s.subarray(at)]);
        break;
      case "oversize":
      case "magic": {
        // Aim at a real header when there is one, so the mutation is not just noise.
        const start = starts.length > 0 ? starts[Math.floor(m.at * starts.length)]! : at;
        if (start + HEADER_SIZE > s.length || s[start] !== 0) break;
        if (m.op === "oversize") new DataView(s.buffer).setUint32(start + 8, m.size);
        else s.set(m.magic, start);
        break;
      }
    }
  }
  return s;
}

/** Split points: fractions of the stream length, sorted. */
const cutsArb = fc.array(fraction, { maxLength: 24, size: "max" });

function cutsFor(fractions: number[], length: number): number[] {
  return fractions.map((f) => Math.floor(f * (length + 1))).sort((a, b) => a - b);
}

const regionFeedArb = fc.record({
  sizes: fc.array(fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 100_000 })), {
    minLength: 1,
    maxLength: 8,
    size: "max",
  }),
  mins: fc.array(fc.integer({ min: 1, max: 70_000 }), { maxLength: 3 }),
});

// ---------------------------------------------------------------------------
// Properties

Deno.test("framer fuzz: a valid stream gives back exactly what was sent, however it is split", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof({ weight: 3, arbitrary: packetItem }, { weight: 1, arbitrary: lineItem }), {
        maxLength: 30,
        size: "max",
      }),
      cutsArb,
      regionFeedArb,
      (items, cutFractions, region) => {
        const stream = concat(items.map(itemBytes));
        const expected: Event[] = items.map((it) =>
          it.kind === "packet"
            ? { kind: "packet", magic: it.magic, type: it.type, body: it.body }
            : { kind: "line", line: it.content }
        );
        const options = { text: true }; // server defaults: 64 MiB packets, 64 KiB lines
        const sent: Outcome = { events: expected, error: undefined, pending: 0 };
        assertSameOutcome(run(stream, options, whole), sent, "whole");
        assertSameOutcome(
          run(stream, options, { how: "push", cuts: cutsFor(cutFractions, stream.length) }),
          sent,
          "random chunks",
        );
        assertSameOutcome(run(stream, options, { how: "region", ...region }), sent, "regions");
      },
    ),
    { seed: SEED, numRuns: 1000, interruptAfterTimeLimit: 6000 },
  );
});

Deno.test("framer fuzz: mutated streams: only ProtocolError, the reference's result, whatever the split", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof({ weight: 3, arbitrary: packetItem }, { weight: 1, arbitrary: lineItem }), {
        maxLength: 20,
        size: "max",
      }),
      fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
      optionsArb,
      cutsArb,
      regionFeedArb,
      (items, mutations, options, cutFractions, region) => {
        const parts = items.map(itemBytes);
        const starts: number[] = [];
        let at = 0;
        for (let i = 0; i < parts.length; i++) {
          if (items[i]!.kind === "packet") starts.push(at);
          at += parts[i]!.length;
        }
        const stream = mutate(concat(parts), starts, mutations);
        const once = run(stream, options, whole);
        const ref = reference(stream, options);
        assertSameEvents(once.events, ref.events, "whole vs reference");
        assert.equal(once.error?.code, ref.error?.code, "whole vs reference: error code");
        if (ref.error === undefined) assert.equal(once.pending, ref.pending, "pending bytes");
        assertSameOutcome(
          run(stream, options, { how: "push", cuts: cutsFor(cutFractions, stream.length) }),
          once,
          "random chunks vs whole",
        );
        assertSameOutcome(
          run(stream, options, { how: "region", ...region }),
          once,
          "regions vs whole",
        );
        if (stream.length <= 4096) {
          assertSameOutcome(run(stream, options, byteByByte(stream.length)), once, "byte by byte");
        }
      },
    ),
    { seed: SEED, numRuns: 3000, interruptAfterTimeLimit: 6000 },
  );
});

Deno.test("framer fuzz: random bytes: only ProtocolError, the reference's result, whatever the split", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 512, size: "max" }),
        fc.array(framingByte, { maxLength: 512, size: "max" }).map((a) => new Uint8Array(a)),
        // Mostly-valid looking: NUL R E Q/S then anything.
        fc.array(
          fc.oneof(
            fc.constantFrom(
              new Uint8Array([0, 0x52, 0x45, 0x51]),
              new Uint8Array([0, 0x52, 0x45, 0x53]),
              new Uint8Array([0, 0, 0, 0]),
              new Uint8Array([10]),
              new Uint8Array([13, 10]),
            ),
            fc.uint8Array({ maxLength: 8 }),
          ),
          { maxLength: 60, size: "max" },
        ).map(concat),
      ),
      optionsArb,
      cutsArb,
      (stream, options, cutFractions) => {
        const once = run(stream, options, whole);
        const ref = reference(stream, options);
        assertSameEvents(once.events, ref.events, "whole vs reference");
        assert.equal(once.error?.code, ref.error?.code, "whole vs reference: error code");
        if (ref.error === undefined) assert.equal(once.pending, ref.pending, "pending bytes");
        assertSameOutcome(
          run(stream, options, { how: "push", cuts: cutsFor(cutFractions, stream.length) }),
          once,
          "random chunks vs whole",
        );
        assertSameOutcome(run(stream, options, byteByByte(stream.length)), once, "byte by byte");
      },
    ),
    { seed: SEED, numRuns: 5000, interruptAfterTimeLimit: 4000 },
  );
});

/**
 * Found by the garbage soak, not fixed yet: a 12-byte header declaring the
 * largest allowed body makes the framer allocate room for all of it at once
 * (doubled: 128 MiB for the default 64 MiB limit) before any body byte has
 * arrived. Set to false once the buffer grows with the bytes received.
 */
const PREALLOCATES_DECLARED_BODY = false;

Deno.test({
  name: "framer fuzz: a header alone does not make the framer allocate its declared body",
  ignore: PREALLOCATES_DECLARED_BODY,
  fn() {
    fc.assert(
      fc.property(
        fc.integer({ min: 1024 * 1024, max: 64 * 1024 * 1024 }),
        fc.integer({ min: 0, max: 4096 }),
        (size, sent) => {
          const framer = new PacketFramer({ packet() {}, line() {} }, { text: true });
          const head = packetBytes(Magic.REQ, 7, new Uint8Array(0));
          new DataView(head.buffer).setUint32(8, size);
          framer.push(head);
          framer.push(new Uint8Array(sent));
          // What the next socket read would be given to fill.
          const region = framer.readRegion();
          assert.ok(
            region.buffer.byteLength <= 4 * 1024 * 1024,
            `${HEADER_SIZE + sent} bytes received, ${region.buffer.byteLength} bytes allocated`,
          );
        },
      ),
      { seed: SEED, numRuns: 50 },
    );
  },
});
