/**
 * Packet headers, magic codes, and building and parsing whole packets with
 * no socket (in the spirit of Perl's Protocol::Gearman).
 *
 * @module
 */

import {
  packetArgCount,
  type PacketType,
  type PacketTypeName,
  packetTypeName,
} from "./packet_type.ts";
import { ProtocolError } from "./protocol_error.ts";
import { fromUtf8, toBytes } from "./_bytes.ts";

/** Size of a packet header: 4-byte magic, 4-byte type, 4-byte body size. */
export const HEADER_SIZE = 12;

/**
 * The two packet magic codes, as big-endian 32-bit integers:
 * `"\0REQ"` (to a server) and `"\0RES"` (from a server).
 *
 * @example Compare a header's magic
 * ```ts
 * import { Magic } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const header = new Uint8Array([0, 0x52, 0x45, 0x51, 0, 0, 0, 16, 0, 0, 0, 0]);
 * assert.equal(new DataView(header.buffer).getUint32(0), Magic.REQ);
 * ```
 */
export const Magic = {
  /** `"\0REQ"`: a request, sent by a client or worker to a server. */
  REQ: 0x00524551,
  /** `"\0RES"`: a response, sent by a server. */
  RES: 0x00524553,
} as const;

/**
 * One of the two magic codes.
 *
 * @example Use as a type
 * ```ts
 * import { Magic } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const m: Magic = Magic.RES;
 * assert.equal(m, 0x00524553);
 * ```
 */
export type Magic = typeof Magic[keyof typeof Magic];

/**
 * A decoded packet: its magic, type, name and arguments. Arguments are
 * views into the bytes parsed (copy them to keep them past the buffer's
 * life).
 *
 * @example Read a parsed packet
 * ```ts
 * import { buildPacket, parsePacket, Magic } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const p = parsePacket(buildPacket(Magic.REQ, "CAN_DO", "reverse"))!;
 * assert.equal(p.name, "CAN_DO");
 * assert.equal(new TextDecoder().decode(p.args[0]), "reverse");
 * ```
 */
export interface Packet {
  /** `Magic.REQ` or `Magic.RES`. */
  magic: Magic;
  /** The packet type number. */
  type: number;
  /** The type's protocol name, or `undefined` for an unknown type. */
  name: PacketTypeName | undefined;
  /** The arguments, split at NUL bytes as the type defines. */
  args: Uint8Array[];
  /** Bytes the whole packet took (header and body). */
  size: number;
}

/**
 * Build a whole packet. String arguments are encoded as UTF-8; the last
 * argument may hold any bytes.
 *
 * @param magic `Magic.REQ` or `Magic.RES`.
 * @param type The packet type number or name.
 * @param args The arguments, joined with NUL bytes.
 * @returns The packet bytes.
 * @throws {RangeError} When the type name is unknown.
 *
 * @example Build the protocol text's CAN_DO example
 * ```ts
 * import { buildPacket, Magic } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const bytes = buildPacket(Magic.REQ, "CAN_DO", "reverse");
 * assert.deepEqual([...bytes.subarray(0, 12)], [0, 0x52, 0x45, 0x51, 0, 0, 0, 1, 0, 0, 0, 7]);
 * ```
 */
export function buildPacket(
  magic: Magic,
  type: PacketType | PacketTypeName | number,
  ...args: (string | Uint8Array)[]
): Uint8Array {
  const t = typeof type === "string" ? typeNumber(type) : type;
  const parts = args.map(toBytes);
  let size = parts.length > 0 ? parts.length - 1 : 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(HEADER_SIZE + size);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic);
  view.setUint32(4, t);
  view.setUint32(8, size);
  let at = HEADER_SIZE;
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) out[at++] = 0;
    out.set(parts[i]!, at);
    at += parts[i]!.length;
  }
  return out;
}

function typeNumber(name: string): number {
  const upper = name.toUpperCase();
  const n = packetTypeNumbers.get(upper);
  if (n === undefined) throw new RangeError(`Cannot build packet: unknown packet type "${name}"`);
  return n;
}

const packetTypeNumbers: Map<string, number> = (() => {
  const m = new Map<string, number>();
  for (let t = 1; t <= 42; t++) m.set(packetTypeName(t)!, t);
  return m;
})();

/**
 * Split a packet body into the arguments its type defines. The last
 * argument takes the rest of the body, NUL bytes included; missing
 * arguments come back empty. Returns views, not copies.
 *
 * @param type The packet type number.
 * @param body The packet body.
 * @returns The arguments.
 *
 * @example Split a SUBMIT_JOB body
 * ```ts
 * import { splitArgs, PacketType } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const body = new TextEncoder().encode("reverse\0\0te\0st");
 * const [fn, unique, data] = splitArgs(PacketType.SUBMIT_JOB, body);
 * assert.equal(new TextDecoder().decode(fn), "reverse");
 * assert.equal(unique!.length, 0);
 * assert.equal(new TextDecoder().decode(data), "te\0st");
 * ```
 */
export function splitArgs(type: number, body: Uint8Array): Uint8Array[] {
  const count = packetArgCount(type);
  const args: Uint8Array[] = [];
  if (count === 0) return args;
  let start = 0;
  for (let i = 0; i < count - 1; i++) {
    const nul = body.indexOf(0, start);
    if (nul < 0) {
      args.push(body.subarray(start));
      start = body.length;
      continue;
    }
    args.push(body.subarray(start, nul));
    start = nul + 1;
  }
  args.push(body.subarray(Math.min(start, body.length)));
  return args;
}

/**
 * Parse one whole packet from the start of `bytes`. Returns `undefined`
 * when `bytes` does not yet hold a whole packet.
 *
 * @param bytes Bytes received.
 * @returns The packet (arguments are views into `bytes`), or `undefined`.
 * @throws {ProtocolError} When the bytes do not start with a packet magic.
 *
 * @example Parse, and wait for more bytes
 * ```ts
 * import { buildPacket, parsePacket, Magic } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const bytes = buildPacket(Magic.RES, "JOB_CREATED", "H:lap:1");
 * assert.equal(parsePacket(bytes.subarray(0, 5)), undefined);
 * const p = parsePacket(bytes)!;
 * assert.equal(p.name, "JOB_CREATED");
 * assert.equal(p.size, bytes.length);
 * ```
 */
export function parsePacket(bytes: Uint8Array): Packet | undefined {
  if (bytes.length < 4) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  if (magic !== Magic.REQ && magic !== Magic.RES) {
    throw new ProtocolError(
      "BAD_MAGIC",
      `Cannot parse packet: expected "\\0REQ" or "\\0RES" magic, got ${
        JSON.stringify(fromUtf8(bytes.subarray(0, 4)))
      }`,
    );
  }
  if (bytes.length < HEADER_SIZE) return undefined;
  const type = view.getUint32(4);
  const size = view.getUint32(8);
  if (bytes.length < HEADER_SIZE + size) return undefined;
  const body = bytes.subarray(HEADER_SIZE, HEADER_SIZE + size);
  return {
    magic,
    type,
    name: packetTypeName(type),
    args: splitArgs(type, body),
    size: HEADER_SIZE + size,
  };
}
