/**
 * The Gearman protocol with no sockets: the packet table, building and
 * parsing packets, a zero-copy framer for byte streams, and a packet
 * writer. Pure code: no Deno APIs, no timers, no promises.
 *
 * @example Round-trip a packet through the framer
 * ```ts
 * import { buildPacket, Magic, PacketFramer, splitArgs } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const seen: string[] = [];
 * const framer = new PacketFramer({
 *   packet(type, body) {
 *     const [fn] = splitArgs(type, body);
 *     seen.push(new TextDecoder().decode(fn));
 *   },
 * });
 * framer.push(buildPacket(Magic.REQ, "CAN_DO", "reverse"));
 * assert.deepEqual(seen, ["reverse"]);
 * ```
 *
 * @module
 */

export * from "./packet_type.ts";
export * from "./packet.ts";
export * from "./packet_framer.ts";
export * from "./packet_writer.ts";
export * from "./protocol_error.ts";
