/**
 * The error raised for bytes that break the Gearman protocol.
 *
 * @module
 */

/**
 * Bytes on the wire broke the Gearman protocol: bad magic, an oversize or
 * unknown packet, a malformed admin line. The connection that sent them
 * cannot be trusted to be in sync any more and should be closed.
 *
 * @example Catch a framing error
 * ```ts
 * import { PacketFramer, ProtocolError } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const framer = new PacketFramer({ packet() {} });
 * assert.throws(
 *   () => framer.push(new Uint8Array([0, 0x58, 0x58, 0x58, 0, 0, 0, 1, 0, 0, 0, 0])),
 *   ProtocolError,
 * );
 * ```
 */
export class ProtocolError extends Error {
  /** A short machine-readable code, as sent in ERROR packets (e.g. `"BAD_MAGIC"`). */
  readonly code: string;

  /**
   * Make a protocol error.
   *
   * @param code Short code, e.g. `"BAD_MAGIC"`.
   * @param message What went wrong and what to do about it.
   * @param options Standard error options (`cause`).
   */
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
    this.code = code;
  }
}
