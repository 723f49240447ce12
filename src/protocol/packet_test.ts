import assert from "node:assert/strict";
import {
  buildPacket,
  HEADER_SIZE,
  Magic,
  MAX_PACKET_TYPE,
  packetArgCount,
  PacketType,
  type PacketTypeName,
  packetTypeName,
  parsePacket,
  ProtocolError,
  splitArgs,
} from "./mod.ts";

const enc = new TextEncoder();

/** Bytes from a hex dump such as "00 52 45 51". */
function hex(s: string): Uint8Array {
  return new Uint8Array(s.trim().split(/\s+/).map((b) => parseInt(b, 16)));
}

/** A byte string (one char per byte) of the given bytes, for readable asserts. */
function latin1(b: Uint8Array): string {
  return String.fromCharCode(...b);
}

function isProtocolError(code: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof ProtocolError, `expected ProtocolError, got ${e}`);
    assert.equal(e.code, code);
    return true;
  };
}

/**
 * Every packet type, with its number and argument count, written out from
 * the protocol text and gearmand's libgearman/command.cc (argc, plus one
 * when the packet carries data), independently of packet_type.ts.
 */
const TYPES: readonly [PacketTypeName, number, number][] = [
  ["CAN_DO", 1, 1],
  ["CANT_DO", 2, 1],
  ["RESET_ABILITIES", 3, 0],
  ["PRE_SLEEP", 4, 0],
  ["UNUSED", 5, 0],
  ["NOOP", 6, 0],
  ["SUBMIT_JOB", 7, 3],
  ["JOB_CREATED", 8, 1],
  ["GRAB_JOB", 9, 0],
  ["NO_JOB", 10, 0],
  ["JOB_ASSIGN", 11, 3],
  ["WORK_STATUS", 12, 3],
  ["WORK_COMPLETE", 13, 2],
  ["WORK_FAIL", 14, 1],
  ["GET_STATUS", 15, 1],
  ["ECHO_REQ", 16, 1],
  ["ECHO_RES", 17, 1],
  ["SUBMIT_JOB_BG", 18, 3],
  ["ERROR", 19, 2],
  ["STATUS_RES", 20, 5],
  ["SUBMIT_JOB_HIGH", 21, 3],
  ["SET_CLIENT_ID", 22, 1],
  ["CAN_DO_TIMEOUT", 23, 2],
  ["ALL_YOURS", 24, 0],
  ["WORK_EXCEPTION", 25, 2],
  ["OPTION_REQ", 26, 1],
  ["OPTION_RES", 27, 1],
  ["WORK_DATA", 28, 2],
  ["WORK_WARNING", 29, 2],
  ["GRAB_JOB_UNIQ", 30, 0],
  ["JOB_ASSIGN_UNIQ", 31, 4],
  ["SUBMIT_JOB_HIGH_BG", 32, 3],
  ["SUBMIT_JOB_LOW", 33, 3],
  ["SUBMIT_JOB_LOW_BG", 34, 3],
  ["SUBMIT_JOB_SCHED", 35, 8],
  ["SUBMIT_JOB_EPOCH", 36, 4],
  ["SUBMIT_REDUCE_JOB", 37, 5],
  ["SUBMIT_REDUCE_JOB_BACKGROUND", 38, 5],
  ["GRAB_JOB_ALL", 39, 0],
  ["JOB_ASSIGN_ALL", 40, 5],
  ["GET_STATUS_UNIQUE", 41, 1],
  ["STATUS_RES_UNIQUE", 42, 6],
];

Deno.test({
  name: "PacketType numbers every type as gearmand does",
  permissions: "none",
  fn() {
    assert.equal(TYPES.length, 42);
    assert.equal(MAX_PACKET_TYPE, 42);
    assert.deepEqual(
      Object.entries(PacketType),
      TYPES.map(([name, type]) => [name, type]),
    );
  },
});

Deno.test({
  name: "packetTypeName() names all 42 types and no others",
  permissions: "none",
  fn() {
    for (const [name, type] of TYPES) assert.equal(packetTypeName(type), name, `type ${type}`);
    for (const type of [0, 43, 99, -1, 1.5, NaN, 2 ** 32 - 1]) {
      assert.equal(packetTypeName(type), undefined, `type ${type}`);
    }
  },
});

Deno.test({
  name: "packetArgCount() counts the arguments of all 42 types, and 0 for unknown ones",
  permissions: "none",
  fn() {
    for (const [name, type, count] of TYPES) assert.equal(packetArgCount(type), count, name);
    for (const type of [0, 43, 99, -1, 1.5, NaN]) assert.equal(packetArgCount(type), 0, `${type}`);
  },
});

Deno.test({
  name: "buildPacket() matches the byte dumps of the protocol text",
  permissions: "none",
  async fn(t) {
    await t.step("CAN_DO reverse", () => {
      assert.deepEqual(
        buildPacket(Magic.REQ, "CAN_DO", "reverse"),
        hex("00 52 45 51 00 00 00 01 00 00 00 07 72 65 76 65 72 73 65"),
      );
    });
    await t.step("SUBMIT_JOB reverse with an empty unique id", () => {
      assert.deepEqual(
        buildPacket(Magic.REQ, "SUBMIT_JOB", "reverse", "", "test"),
        hex("00 52 45 51 00 00 00 07 00 00 00 0d 72 65 76 65 72 73 65 00 00 74 65 73 74"),
      );
    });
    await t.step("JOB_CREATED H:lap:1 as a response", () => {
      assert.deepEqual(
        buildPacket(Magic.RES, "JOB_CREATED", "H:lap:1"),
        hex("00 52 45 53 00 00 00 08 00 00 00 07 48 3a 6c 61 70 3a 31"),
      );
    });
    await t.step("GRAB_JOB with no body", () => {
      assert.deepEqual(
        buildPacket(Magic.REQ, "GRAB_JOB"),
        hex("00 52 45 51 00 00 00 09 00 00 00 00"),
      );
    });
    await t.step("JOB_ASSIGN H:lap:1 reverse test as a response", () => {
      assert.deepEqual(
        buildPacket(Magic.RES, "JOB_ASSIGN", "H:lap:1", "reverse", "test"),
        hex(
          "00 52 45 53 00 00 00 0b 00 00 00 14 48 3a 6c 61 70 3a 31 00 " +
            "72 65 76 65 72 73 65 00 74 65 73 74",
        ),
      );
    });
    await t.step("WORK_COMPLETE H:lap:1 tset", () => {
      assert.deepEqual(
        buildPacket(Magic.REQ, "WORK_COMPLETE", "H:lap:1", "tset"),
        hex("00 52 45 51 00 00 00 0d 00 00 00 0c 48 3a 6c 61 70 3a 31 00 74 73 65 74"),
      );
    });
  },
});

Deno.test({
  name: "buildPacket() gives the same bytes for a type name and its number",
  permissions: "none",
  fn() {
    for (const [name, type, count] of TYPES) {
      const args = Array.from({ length: count }, (_, i) => `arg${i}`);
      assert.deepEqual(
        buildPacket(Magic.RES, name, ...args),
        buildPacket(Magic.RES, type, ...args),
      );
      const view = new DataView(buildPacket(Magic.REQ, name).buffer);
      assert.equal(view.getUint32(4), type, name);
    }
  },
});

Deno.test({
  name: "buildPacket() throws RangeError for an unknown type name",
  permissions: "none",
  fn() {
    for (const name of ["NOT_A_TYPE", "", "TOSTRING", "__proto__", "CAN_DO "]) {
      assert.throws(
        () => buildPacket(Magic.REQ, name as PacketTypeName, "x"),
        RangeError,
        JSON.stringify(name),
      );
    }
  },
});

Deno.test({
  name: "buildPacket() joins string and byte arguments with single NULs",
  permissions: "none",
  async fn(t) {
    await t.step("no arguments make an empty body", () => {
      assert.equal(buildPacket(Magic.REQ, "NOOP").length, HEADER_SIZE);
    });
    await t.step("one empty argument makes an empty body", () => {
      assert.equal(buildPacket(Magic.REQ, "ECHO_REQ", "").length, HEADER_SIZE);
    });
    await t.step("three empty arguments make two NULs", () => {
      const p = buildPacket(Magic.REQ, "SUBMIT_JOB", "", "", "");
      assert.deepEqual(p.subarray(8), hex("00 00 00 02 00 00"));
    });
    await t.step("strings are UTF-8 and bytes are kept as they are", () => {
      const data = new Uint8Array([0, 255, 0, 10, 0]);
      const p = buildPacket(Magic.REQ, "SUBMIT_JOB", "réverse", "ü", data);
      const body = p.subarray(HEADER_SIZE);
      assert.deepEqual(body, new Uint8Array([...enc.encode("réverse\0ü\0"), ...data]));
      assert.equal(new DataView(p.buffer).getUint32(8), body.length);
    });
  },
});

Deno.test({
  name: "parsePacket() reads back what buildPacket() wrote",
  permissions: "none",
  fn() {
    const data = new Uint8Array([1, 0, 2, 0, 0, 3]);
    const bytes = buildPacket(Magic.RES, "JOB_ASSIGN_UNIQ", "H:x:1", "fn", "uniq", data);
    const p = parsePacket(bytes);
    assert.ok(p);
    assert.equal(p.magic, Magic.RES);
    assert.equal(p.type, PacketType.JOB_ASSIGN_UNIQ);
    assert.equal(p.name, "JOB_ASSIGN_UNIQ");
    assert.equal(p.size, bytes.length);
    assert.deepEqual(p.args.map(latin1), ["H:x:1", "fn", "uniq", latin1(data)]);
    // Arguments are views into the input, not copies.
    assert.equal(p.args[0]!.buffer, bytes.buffer);
  },
});

Deno.test({
  name: "parsePacket() returns undefined until the whole packet is there",
  permissions: "none",
  fn() {
    for (
      const bytes of [
        buildPacket(Magic.REQ, "SUBMIT_JOB", "reverse", "", "test"),
        buildPacket(Magic.RES, "NO_JOB"),
      ]
    ) {
      for (let n = 0; n < bytes.length; n++) {
        assert.equal(parsePacket(bytes.subarray(0, n)), undefined, `${n} bytes`);
      }
      assert.equal(parsePacket(bytes)?.size, bytes.length);
    }
  },
});

Deno.test({
  name: "parsePacket() reads only the first packet and honours the view's offset",
  permissions: "none",
  fn() {
    const first = buildPacket(Magic.REQ, "CAN_DO", "a");
    const second = buildPacket(Magic.REQ, "CAN_DO", "bb");
    const backing = new Uint8Array(5 + first.length + second.length);
    backing.fill(0xee, 0, 5);
    backing.set(first, 5);
    backing.set(second, 5 + first.length);
    const p = parsePacket(backing.subarray(5));
    assert.ok(p);
    assert.equal(p.size, first.length);
    assert.deepEqual(p.args.map(latin1), ["a"]);
    const q = parsePacket(backing.subarray(5 + p.size));
    assert.deepEqual(q?.args.map(latin1), ["bb"]);
  },
});

Deno.test({
  name: "parsePacket() passes unknown types through with no arguments",
  permissions: "none",
  fn() {
    const p = parsePacket(buildPacket(Magic.REQ, 99, "whatever"));
    assert.ok(p);
    assert.equal(p.type, 99);
    assert.equal(p.name, undefined);
    assert.deepEqual(p.args, []);
    assert.equal(p.size, HEADER_SIZE + 8);
  },
});

Deno.test({
  name: "parsePacket() throws ProtocolError BAD_MAGIC for a wrong magic",
  permissions: "none",
  async fn(t) {
    await t.step("\\0XYZ with a full header", () => {
      const bytes = buildPacket(Magic.REQ, "CAN_DO", "x");
      bytes.set(enc.encode("XYZ"), 1);
      assert.throws(() => parsePacket(bytes), isProtocolError("BAD_MAGIC"));
    });
    await t.step("as soon as four bytes are there", () => {
      assert.throws(() => parsePacket(enc.encode("\0XYZ")), isProtocolError("BAD_MAGIC"));
      assert.throws(() => parsePacket(enc.encode("GET / HTTP/1.1")), isProtocolError("BAD_MAGIC"));
    });
    await t.step("\\0req in the wrong case", () => {
      assert.throws(
        () => parsePacket(enc.encode("\0req\0\0\0\x01\0\0\0\0")),
        isProtocolError("BAD_MAGIC"),
      );
    });
  },
});

Deno.test({
  name: "splitArgs() splits every type with arguments, keeping NULs in the last one",
  permissions: "none",
  fn() {
    for (const [name, type, count] of TYPES) {
      if (count === 0) continue;
      const args = Array.from({ length: count - 1 }, (_, i) => `a${i}`);
      args.push("last\0with\0\0nuls\0");
      const body = enc.encode(args.join("\0"));
      const got = splitArgs(type, body);
      assert.deepEqual(got.map(latin1), args, name);
      for (const arg of got) assert.equal(arg.buffer, body.buffer, `${name}: views, not copies`);
    }
  },
});

Deno.test({
  name: "splitArgs() returns missing arguments empty",
  permissions: "none",
  async fn(t) {
    await t.step("empty body", () => {
      for (const [name, type, count] of TYPES) {
        assert.deepEqual(
          splitArgs(type, new Uint8Array(0)).map(latin1),
          Array(count).fill(""),
          name,
        );
      }
    });
    await t.step("first argument only, no NUL", () => {
      for (const [name, type, count] of TYPES) {
        if (count === 0) continue;
        const expected = ["first", ...Array(count - 1).fill("")];
        assert.deepEqual(splitArgs(type, enc.encode("first")).map(latin1), expected, name);
      }
    });
    await t.step("first argument and a trailing NUL", () => {
      const got = splitArgs(PacketType.SUBMIT_JOB, enc.encode("reverse\0"));
      assert.deepEqual(got.map(latin1), ["reverse", "", ""]);
    });
    await t.step("empty arguments between NULs", () => {
      const got = splitArgs(PacketType.STATUS_RES, enc.encode("\0\0\0\0"));
      assert.deepEqual(got.map(latin1), ["", "", "", "", ""]);
    });
  },
});

Deno.test({
  name: "splitArgs() returns no arguments for types without any, whatever the body",
  permissions: "none",
  fn() {
    for (const [name, type, count] of TYPES) {
      if (count !== 0) continue;
      assert.deepEqual(splitArgs(type, enc.encode("a\0b")), [], name);
    }
    assert.deepEqual(splitArgs(0, enc.encode("a\0b")), []);
    assert.deepEqual(splitArgs(43, enc.encode("a\0b")), []);
  },
});
