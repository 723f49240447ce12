/**
 * A zero-copy framer: turns a byte stream into Gearman packets (and admin
 * text lines) without a socket.
 *
 * @module
 */

import { HEADER_SIZE, Magic } from "./packet.ts";
import { ProtocolError } from "./protocol_error.ts";
import { fromUtf8 } from "./_bytes.ts";

/** Default largest packet body accepted: 64 MiB. */
export const DEFAULT_MAX_PACKET_SIZE: number = 64 * 1024 * 1024;
/** Default longest admin text line accepted: 64 KiB. */
export const DEFAULT_MAX_LINE_LENGTH: number = 64 * 1024;
/**
 * A new framer's buffer: small, so idle connections cost little (10,000
 * idle connections hold 5 MiB of buffers, not 40).
 */
const DEFAULT_BUFFER_SIZE = 512;
/**
 * Reads start at this size and double, up to MAX_READ_SPACE, while they
 * come back full: a busy connection reaches 4 KiB in four reads.
 */
const MIN_READ_SPACE = 512;
const MAX_READ_SPACE = 256 * 1024;

/**
 * Receives what a {@link PacketFramer} finds. The `body` and `line` views
 * point into the framer's buffer and are valid only until the callback
 * returns: copy what must outlive it.
 *
 * @example Count packets
 * ```ts
 * import { buildPacket, Magic, PacketFramer, type FramerSink } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * let count = 0;
 * const sink: FramerSink = { packet() { count++; } };
 * new PacketFramer(sink).push(buildPacket(Magic.REQ, "GRAB_JOB"));
 * assert.equal(count, 1);
 * ```
 */
export interface FramerSink {
  /** A whole binary packet arrived. */
  packet(type: number, body: Uint8Array, magic: Magic): void;
  /** A whole admin text line arrived (without its `\n` or `\r\n`). */
  line?(line: Uint8Array): void;
}

/**
 * Options for {@link PacketFramer}.
 *
 * @example A server-side framer
 * ```ts
 * import { Magic, PacketFramer, type PacketFramerOptions } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const options: PacketFramerOptions = { magic: Magic.REQ, text: true };
 * assert.ok(new PacketFramer({ packet() {}, line() {} }, options));
 * ```
 */
export interface PacketFramerOptions {
  /**
   * Which magic to accept; the other one is a protocol error.
   * @default undefined (either)
   */
  magic?: Magic;
  /**
   * Accept admin text lines (a message whose first byte is not NUL).
   * @default false
   */
  text?: boolean;
  /**
   * Largest packet body accepted, in bytes.
   * @default {64 MiB}
   */
  maxPacketSize?: number;
  /**
   * Longest admin text line accepted, in bytes.
   * @default {64 KiB}
   */
  maxLineLength?: number;
}

function checkSize(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new RangeError(`Cannot create framer: ${name} must be a positive integer, received ${v}`);
  }
}

/**
 * Splits a byte stream into packets and admin lines, reporting each to a
 * {@link FramerSink} as a view into its own buffer: no copy for packets
 * that arrive whole. Bytes are fed either by copying ({@link push}) or by
 * reading straight into the framer's free space ({@link readRegion} then
 * {@link commit}, or {@link commitView} for BYOB readers that transfer the
 * buffer). Only the tail of an incomplete packet is ever moved.
 *
 * @example Feed a stream split anywhere
 * ```ts
 * import { buildPacket, Magic, PacketFramer } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const types: number[] = [];
 * const framer = new PacketFramer({ packet(type) { types.push(type); } });
 * const bytes = buildPacket(Magic.REQ, "SUBMIT_JOB", "reverse", "", "test");
 * framer.push(bytes.subarray(0, 7));
 * framer.push(bytes.subarray(7));
 * assert.deepEqual(types, [7]);
 * ```
 */
export class PacketFramer {
  readonly #sink: FramerSink;
  readonly #magic: number | undefined;
  readonly #text: boolean;
  readonly #maxPacketSize: number;
  readonly #maxLineLength: number;
  #buf: Uint8Array = new Uint8Array(DEFAULT_BUFFER_SIZE);
  #view: DataView = new DataView(this.#buf.buffer);
  /** Offset of the first unparsed byte. */
  #start = 0;
  /** Offset one past the last received byte. */
  #end = 0;
  /** How far a pending text line has been scanned for `\n`. */
  #lineScan = 0;
  #stopped = false;
  /** Parsing is held back until resume(); received bytes are kept. */
  #paused = false;
  /** Size of the next read region: grows while reads fill it, shrinks when idle. */
  #readSpace = MIN_READ_SPACE;
  /** Length of the last region handed out by readRegion(). */
  #lastRegion = 0;

  /**
   * Make a framer reporting to `sink`.
   *
   * @param sink Receives packets and lines.
   * @param options Framing options.
   * @throws {RangeError} When a size limit is not a positive integer.
   */
  constructor(sink: FramerSink, options: PacketFramerOptions = {}) {
    const {
      magic,
      text = false,
      maxPacketSize = DEFAULT_MAX_PACKET_SIZE,
      maxLineLength = DEFAULT_MAX_LINE_LENGTH,
    } = options;
    // Checked without building arrays: a server makes one framer per connection.
    checkSize("maxPacketSize", maxPacketSize);
    checkSize("maxLineLength", maxLineLength);
    this.#sink = sink;
    this.#magic = magic;
    this.#text = text;
    this.#maxPacketSize = maxPacketSize;
    this.#maxLineLength = maxLineLength;
  }

  /** Bytes received but not yet reported (an incomplete packet or line). */
  get pending(): number {
    return this.#end - this.#start;
  }

  /**
   * Stop reporting: the rest of the current chunk, and anything fed later,
   * is ignored. Call from a sink callback to drop a connection mid-chunk.
   */
  stop(): void {
    this.#stopped = true;
  }

  /** Whether parsing is held back by {@link pause}. */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Stop parsing after the packet or line being reported, until
   * {@link resume}: bytes already received, and any fed meanwhile, are
   * kept, not reported. For backpressure (a sink whose replies pile up
   * stops taking requests mid-chunk) and for replies that come later (a
   * store lookup): the packets after it are answered after it, in order.
   */
  pause(): void {
    this.#paused = true;
  }

  /**
   * Parse what {@link pause} held back (reporting may pause again).
   *
   * @throws {ProtocolError} When the held-back bytes break the protocol.
   */
  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    if (!this.#stopped && this.#end > this.#start) this.#parse();
  }

  /**
   * The free space at the end of the buffer to read the next bytes into;
   * at least `min` bytes, made by moving an incomplete tail to the front or
   * growing the buffer. The view is valid until the next call on the framer.
   *
   * @param min Smallest region wanted.
   * @returns The free region.
   */
  readRegion(min: number = this.#readSpace): Uint8Array {
    if (this.#buf.length - this.#end < min) this.#makeRoom(min);
    const region = this.#buf.subarray(this.#end);
    this.#lastRegion = region.length;
    return region;
  }

  /**
   * Report that `n` bytes were read into the region {@link readRegion}
   * returned, and parse them.
   *
   * @param n Bytes read.
   * @throws {ProtocolError} When the bytes break the protocol.
   */
  commit(n: number): void {
    // A read that filled its region: the peer is sending fast, read more at once.
    if (n >= this.#lastRegion && this.#readSpace < MAX_READ_SPACE) this.#readSpace *= 2;
    this.#end += n;
    this.#parse();
  }

  /**
   * For BYOB readers, which transfer the buffer they read into: report
   * the view the read returned (over the transferred buffer) and parse it.
   *
   * @param view The view a `read(readRegion())` resolved with.
   * @throws {ProtocolError} When the bytes break the protocol.
   */
  commitView(view: Uint8Array): void {
    if (view.buffer !== this.#buf.buffer) {
      this.#buf = new Uint8Array(view.buffer as ArrayBuffer);
      this.#view = new DataView(view.buffer as ArrayBuffer);
    }
    this.#end = view.byteOffset + view.byteLength;
    this.#parse();
  }

  /**
   * Copy `chunk` in and parse it.
   *
   * @param chunk Bytes received.
   * @throws {ProtocolError} When the bytes break the protocol.
   */
  push(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length && !this.#stopped) {
      const region = this.readRegion(Math.min(MIN_READ_SPACE, chunk.length - offset));
      const n = Math.min(region.length, chunk.length - offset);
      region.set(chunk.subarray(offset, offset + n));
      offset += n;
      this.commit(n);
    }
  }

  #makeRoom(min: number): void {
    const pending = this.#end - this.#start;
    let size = this.#buf.length;
    // A packet whose header has arrived: grow towards its size as its bytes
    // come (doubling what has arrived), never to the declared size at once,
    // so a bare header declaring 64 MiB costs no more than what was sent.
    if (pending >= HEADER_SIZE && this.#buf[this.#start] === 0) {
      const need = HEADER_SIZE + this.#view.getUint32(this.#start + 8);
      if (need > pending) min = Math.max(min, Math.min(need - pending, Math.max(pending, min)));
    }
    while (size - pending < min) size *= 2;
    if (size === this.#buf.length && this.#start > 0) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      // Grow, or shrink back after a large packet has gone.
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
    this.#lineScan -= this.#start;
    this.#start = 0;
    this.#end = pending;
  }

  #parse(): void {
    const buf = this.#buf;
    const end = this.#end;
    let pos = this.#start;
    while (pos < end && !this.#stopped && !this.#paused) {
      if (buf[pos] !== 0) {
        if (!this.#text) {
          throw new ProtocolError(
            "BAD_MAGIC",
            `Cannot read packet: expected a NUL byte starting "\\0REQ" or "\\0RES", got byte ${
              buf[pos]
            }; is the peer speaking the Gearman protocol?`,
          );
        }
        const nl = buf.indexOf(10, Math.max(pos, this.#lineScan));
        if (nl < 0 || nl >= end) {
          // The line so far, less a last "\r" that may yet turn out to end it.
          if (end - pos - (buf[end - 1] === 13 ? 1 : 0) > this.#maxLineLength) {
            throw this.#lineTooLong();
          }
          this.#lineScan = end;
          break;
        }
        const lineEnd = nl > pos && buf[nl - 1] === 13 ? nl - 1 : nl;
        // Checked here too, or a long line arriving whole would get through.
        if (lineEnd - pos > this.#maxLineLength) throw this.#lineTooLong();
        this.#lineScan = 0;
        const start = pos;
        pos = nl + 1;
        this.#start = pos;
        this.#sink.line?.(buf.subarray(start, lineEnd));
        continue;
      }
      if (end - pos < HEADER_SIZE) {
        if (end - pos >= 4) this.#checkMagic(pos);
        break;
      }
      const magic = this.#checkMagic(pos);
      const size = this.#view.getUint32(pos + 8);
      if (size > this.#maxPacketSize) {
        throw new ProtocolError(
          "PACKET_TOO_LARGE",
          `Cannot read packet: body of ${size} bytes is over the limit of ${this.#maxPacketSize} bytes`,
        );
      }
      if (end - pos - HEADER_SIZE < size) break;
      const type = this.#view.getUint32(pos + 4);
      const bodyStart = pos + HEADER_SIZE;
      pos = bodyStart + size;
      this.#start = pos;
      this.#sink.packet(type, buf.subarray(bodyStart, pos), magic);
    }
    if (this.#stopped) return;
    if (pos === end && !this.#paused) {
      this.#start = this.#end = this.#lineScan = 0;
      // Release a buffer grown for one large packet.
      if (buf.length > Math.max(this.#readSpace, DEFAULT_BUFFER_SIZE) * 4 && this.#buf === buf) {
        // A large packet has gone: give its memory back and start small again.
        this.#readSpace = MIN_READ_SPACE;
        this.#buf = new Uint8Array(DEFAULT_BUFFER_SIZE);
        this.#view = new DataView(this.#buf.buffer);
      }
    } else {
      this.#start = pos;
    }
  }

  #lineTooLong(): ProtocolError {
    return new ProtocolError(
      "LINE_TOO_LONG",
      `Cannot read admin command: line is longer than ${this.#maxLineLength} bytes`,
    );
  }

  #checkMagic(pos: number): Magic {
    const magic = this.#view.getUint32(pos);
    if (magic === Magic.REQ || magic === Magic.RES) {
      if (this.#magic === undefined || magic === this.#magic) return magic;
      throw new ProtocolError(
        "BAD_MAGIC",
        `Cannot read packet: got ${magic === Magic.REQ ? '"\\0REQ"' : '"\\0RES"'} magic where ${
          this.#magic === Magic.REQ ? '"\\0REQ"' : '"\\0RES"'
        } was expected`,
      );
    }
    throw new ProtocolError(
      "BAD_MAGIC",
      `Cannot read packet: expected "\\0REQ" or "\\0RES" magic, got ${
        JSON.stringify(fromUtf8(this.#buf.subarray(pos, pos + 4)))
      }`,
    );
  }
}
