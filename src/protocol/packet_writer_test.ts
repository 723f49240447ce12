import assert from "node:assert/strict";
import {
  buildPacket,
  HEADER_SIZE,
  Magic,
  type Packet,
  PacketType,
  PacketWriter,
  parsePacket,
} from "./mod.ts";

const enc = new TextEncoder();

function latin1(b: Uint8Array): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return s;
}

/** Parse every packet in `bytes`, which must hold whole packets only. */
function parseAll(bytes: Uint8Array): Packet[] {
  const out: Packet[] = [];
  let at = 0;
  while (at < bytes.length) {
    const p = parsePacket(bytes.subarray(at));
    assert.ok(p, `whole packet at offset ${at}`);
    out.push(p);
    at += p.size;
  }
  assert.equal(at, bytes.length);
  return out;
}

function sizeField(bytes: Uint8Array, at = 0): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at + 8);
}

Deno.test({
  name: "PacketWriter.begin() writes a header and end() fills in the body size",
  permissions: "none",
  async fn(t) {
    await t.step("a header on its own", () => {
      const w = new PacketWriter();
      w.begin(Magic.REQ, PacketType.CAN_DO);
      assert.equal(w.length, HEADER_SIZE);
      w.end();
      assert.deepEqual(w.take(), buildPacket(Magic.REQ, "CAN_DO"));
    });
    await t.step("arguments between begin() and end()", () => {
      const w = new PacketWriter();
      w.end(
        w.begin(Magic.RES, PacketType.JOB_ASSIGN).text("H:lap:1").nul().text("reverse").nul()
          .text("test"),
      );
      assert.equal(w.length, HEADER_SIZE + 20);
      assert.deepEqual(
        w.take(),
        buildPacket(Magic.RES, "JOB_ASSIGN", "H:lap:1", "reverse", "test"),
      );
    });
    await t.step("several packets, each with its own size", () => {
      const w = new PacketWriter();
      w.end(w.begin(Magic.REQ, PacketType.CAN_DO).text("a"));
      w.end(w.begin(Magic.REQ, PacketType.GRAB_JOB));
      w.end(w.begin(Magic.REQ, PacketType.ECHO_REQ).text("hello"));
      const bytes = w.take();
      assert.equal(bytes.length, 3 * HEADER_SIZE + 1 + 0 + 5);
      assert.equal(sizeField(bytes, 0), 1);
      assert.equal(sizeField(bytes, HEADER_SIZE + 1), 0);
      assert.equal(sizeField(bytes, 2 * HEADER_SIZE + 1), 5);
    });
  },
});

Deno.test({
  name: "PacketWriter grows past its initial capacity and keeps what it wrote",
  permissions: "none",
  fn() {
    const w = new PacketWriter(16);
    assert.equal(w.capacity, 16);
    const big = new Uint8Array(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131 + (i >> 9)) & 0xff;
    w.end(w.begin(Magic.REQ, PacketType.CAN_DO).text("first"));
    w.end(w.begin(Magic.REQ, PacketType.WORK_DATA).byteString("H:1").nul().bytes(big));
    w.end(w.begin(Magic.REQ, PacketType.WORK_COMPLETE).text("H:1").nul());
    assert.ok(w.capacity >= w.length, `capacity ${w.capacity} < length ${w.length}`);
    assert.equal(w.length, 3 * HEADER_SIZE + 5 + 4 + big.length + 4);
    const packets = parseAll(w.take());
    assert.deepEqual(packets.map((p) => p.name), ["CAN_DO", "WORK_DATA", "WORK_COMPLETE"]);
    assert.equal(latin1(packets[0]!.args[0]!), "first");
    assert.equal(latin1(packets[1]!.args[0]!), "H:1");
    assert.deepEqual(packets[1]!.args[1], big);
    assert.deepEqual(packets[2]!.args.map(latin1), ["H:1", ""]);
  },
});

Deno.test({
  name: "PacketWriter grows from an initial capacity of 0",
  permissions: "none",
  fn() {
    const w = new PacketWriter(0);
    w.end(w.begin(Magic.REQ, PacketType.ECHO_REQ).text("ping"));
    assert.deepEqual(w.take(), buildPacket(Magic.REQ, "ECHO_REQ", "ping"));
  },
});

Deno.test({
  name: "PacketWriter.text() writes UTF-8",
  permissions: "none",
  async fn(t) {
    for (
      const s of [
        "",
        "plain ascii",
        "héllo wörld",
        "€uro",
        "日本語のテキスト",
        "emoji 🎉 and 𝄞 clef",
        "a\0b",
      ]
    ) {
      await t.step(JSON.stringify(s), () => {
        const w = new PacketWriter(16);
        w.end(w.begin(Magic.REQ, PacketType.ECHO_REQ).text(s));
        const bytes = w.take();
        assert.deepEqual(bytes.subarray(HEADER_SIZE), enc.encode(s));
        assert.equal(sizeField(bytes), enc.encode(s).length);
      });
    }
    await t.step("many three-byte characters into a small writer", () => {
      const s = "€".repeat(5000);
      const w = new PacketWriter(16);
      w.text("x").text(s).text("y");
      assert.deepEqual(w.take(), enc.encode(`x${s}y`));
    });
  },
});

Deno.test({
  name: "PacketWriter.byteString() writes one byte per char code",
  permissions: "none",
  fn() {
    const w = new PacketWriter(4);
    w.byteString("\x00\x01\x7f\x80\xe9\xff").byteString("").byteString("H:lap:1");
    assert.deepEqual(
      w.take(),
      new Uint8Array([0, 1, 0x7f, 0x80, 0xe9, 0xff, ...enc.encode("H:lap:1")]),
    );
  },
});

Deno.test({
  name: "PacketWriter.decimal() writes non-negative integers in decimal",
  permissions: "none",
  async fn(t) {
    for (const n of [0, 9, 10, 99, 100, 12345678901, Number.MAX_SAFE_INTEGER]) {
      await t.step(String(n), () => {
        const w = new PacketWriter(1);
        w.decimal(n);
        assert.equal(latin1(w.take()), String(n));
      });
    }
    await t.step("as WORK_STATUS arguments", () => {
      const w = new PacketWriter();
      w.end(
        w.begin(Magic.REQ, PacketType.WORK_STATUS).text("H:1").nul().decimal(9).nul().decimal(10),
      );
      const p = parsePacket(w.take());
      assert.deepEqual(p?.args.map(latin1), ["H:1", "9", "10"]);
    });
  },
});

Deno.test({
  name: "PacketWriter.take() returns everything written and empties the writer",
  permissions: "none",
  fn() {
    const w = new PacketWriter();
    w.end(w.begin(Magic.REQ, PacketType.CAN_DO).text("a"));
    const first = w.take().slice();
    assert.deepEqual(first, buildPacket(Magic.REQ, "CAN_DO", "a"));
    assert.equal(w.length, 0);
    assert.equal(w.take().length, 0);
    w.end(w.begin(Magic.REQ, PacketType.CANT_DO).text("b"));
    assert.deepEqual(w.take(), buildPacket(Magic.REQ, "CANT_DO", "b"));
  },
});

Deno.test({
  name: "PacketWriter.reset() drops what was written and shrinks a grown buffer",
  permissions: "none",
  async fn(t) {
    await t.step("drops written bytes", () => {
      const w = new PacketWriter();
      w.end(w.begin(Magic.REQ, PacketType.CAN_DO).text("dropped"));
      w.reset();
      assert.equal(w.length, 0);
      w.end(w.begin(Magic.REQ, PacketType.GRAB_JOB));
      assert.deepEqual(w.take(), buildPacket(Magic.REQ, "GRAB_JOB"));
    });
    await t.step("take() then reset() then write again", () => {
      const w = new PacketWriter(16);
      w.end(w.begin(Magic.REQ, PacketType.ECHO_REQ).bytes(new Uint8Array(3 * 1024 * 1024)));
      const taken = w.take();
      assert.equal(taken.length, HEADER_SIZE + 3 * 1024 * 1024);
      w.reset();
      assert.ok(w.capacity <= 1024 * 1024, `capacity ${w.capacity} kept after reset()`);
      w.end(w.begin(Magic.REQ, PacketType.CAN_DO).text("next"));
      assert.deepEqual(w.take(), buildPacket(Magic.REQ, "CAN_DO", "next"));
    });
    await t.step("keeps a buffer no bigger than keep", () => {
      const w = new PacketWriter(16);
      w.bytes(new Uint8Array(100_000));
      const capacity = w.capacity;
      w.reset(capacity);
      assert.equal(w.capacity, capacity);
      assert.equal(w.length, 0);
      w.reset(capacity - 1);
      assert.ok(w.capacity < capacity);
    });
  },
});

Deno.test({
  name: "PacketWriter output parses back with parsePacket()",
  permissions: "none",
  fn() {
    const data = new Uint8Array([0, 1, 2, 0, 255, 0]);
    const w = new PacketWriter(32);
    w.end(
      w.begin(Magic.REQ, PacketType.SUBMIT_JOB).text("reverse").nul().byteString("u\xff").nul()
        .bytes(data),
    );
    w.end(w.begin(Magic.RES, PacketType.JOB_CREATED).byteString("H:lap:1"));
    w.end(w.begin(Magic.RES, PacketType.NO_JOB));
    w.end(
      w.begin(Magic.RES, PacketType.STATUS_RES).text("H:lap:1").nul().decimal(1).nul().decimal(0)
        .nul().decimal(12345678901).nul().decimal(10),
    );
    w.end(w.begin(Magic.RES, PacketType.ECHO_RES).text("ünïcödé"));
    const packets = parseAll(w.take());
    assert.deepEqual(
      packets.map((p) => [p.magic, p.name, p.args.map(latin1)]),
      [
        [Magic.REQ, "SUBMIT_JOB", ["reverse", "u\xff", latin1(data)]],
        [Magic.RES, "JOB_CREATED", ["H:lap:1"]],
        [Magic.RES, "NO_JOB", []],
        [Magic.RES, "STATUS_RES", ["H:lap:1", "1", "0", "12345678901", "10"]],
        [Magic.RES, "ECHO_RES", [latin1(enc.encode("ünïcödé"))]],
      ],
    );
  },
});
