/**
 * Gloom framing with no socket: every message is a 32-bit big-endian byte
 * count followed by that many bytes of UTF-8 JSON.
 *
 * @module
 */

/**
 * Default largest frame accepted: 16 MiB of JSON.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_FRAME_SIZE } from "@x/gearman/gloom";
 * console.assert(DEFAULT_MAX_FRAME_SIZE === 16 * 1024 * 1024);
 * ```
 */
export const DEFAULT_MAX_FRAME_SIZE: number = 16 * 1024 * 1024;

/**
 * The port Gloom masters connect to by default.
 *
 * @example
 * ```ts
 * import { DEFAULT_GLOOM_MASTER_PORT } from "@x/gearman/gloom";
 * console.assert(DEFAULT_GLOOM_MASTER_PORT === 9998);
 * ```
 */
export const DEFAULT_GLOOM_MASTER_PORT = 9998;

/**
 * The port Gloom workers ("slaves") connect to by default.
 *
 * @example
 * ```ts
 * import { DEFAULT_GLOOM_WORKER_PORT } from "@x/gearman/gloom";
 * console.assert(DEFAULT_GLOOM_WORKER_PORT === 9999);
 * ```
 */
export const DEFAULT_GLOOM_WORKER_PORT = 9999;

/** Size of the length prefix. */
const PREFIX = 4;
/** A new framer's buffer, and the least free space a read gets. */
const MIN_BUFFER = 4 * 1024;
/** A buffer grown past this for one large frame is let go once it is read. */
const KEEP_BUFFER = 256 * 1024;

const encoder = new TextEncoder();

/**
 * A frame that cannot be read: the stream is out of step and its
 * connection must be closed.
 *
 * @example Catch an oversize frame
 * ```ts
 * import { GloomFrameError, GloomFramer } from "@x/gearman/gloom";
 * import assert from "node:assert/strict";
 *
 * const framer = new GloomFramer(() => {}, 10);
 * assert.throws(() => framer.push(new Uint8Array([0, 0, 1, 0])), GloomFrameError);
 * ```
 */
export class GloomFrameError extends Error {
  /** The error code sent in the error frame (`frame_too_large`). */
  readonly code: string;

  /**
   * Make a framing error.
   *
   * @param code The error code.
   * @param message What went wrong.
   */
  constructor(code: string, message: string) {
    super(message);
    this.name = "GloomFrameError";
    this.code = code;
  }
}

/**
 * Encode a value as one Gloom frame: 4-byte big-endian length, then the
 * value's JSON text as UTF-8.
 *
 * @param value Any value `JSON.stringify` accepts.
 * @returns The frame bytes.
 * @throws {TypeError} When the value has no JSON form (`undefined`, a function).
 *
 * @example Frame a join message
 * ```ts
 * import { encodeFrame } from "@x/gearman/gloom";
 * import assert from "node:assert/strict";
 *
 * const frame = encodeFrame({ type: "join", job_type: "echo" });
 * assert.equal(new DataView(frame.buffer).getUint32(0), frame.length - 4);
 * ```
 */
export function encodeFrame(value: unknown): Uint8Array {
  const json = JSON.stringify(value);
  if (json === undefined) throw new TypeError("Cannot frame a value that has no JSON form");
  // At most 3 bytes per UTF-16 unit.
  const out = new Uint8Array(PREFIX + json.length * 3);
  const { written } = encoder.encodeInto(json, out.subarray(PREFIX));
  new DataView(out.buffer).setUint32(0, written);
  return out.subarray(0, PREFIX + written);
}

/**
 * Splits a byte stream into Gloom frame payloads (the JSON bytes, without
 * the length prefix). Each payload is a view into the framer's buffer,
 * valid only during the callback. A length over the limit throws
 * {@link GloomFrameError}; nothing after it is read.
 *
 * @example Feed a frame in two pieces
 * ```ts
 * import { encodeFrame, GloomFramer } from "@x/gearman/gloom";
 * import assert from "node:assert/strict";
 *
 * const seen: string[] = [];
 * const framer = new GloomFramer((p) => seen.push(new TextDecoder().decode(p)));
 * const bytes = encodeFrame({ id: 1 });
 * framer.push(bytes.subarray(0, 3));
 * framer.push(bytes.subarray(3));
 * assert.deepEqual(seen, ['{"id":1}']);
 * ```
 */
export class GloomFramer {
  readonly #sink: (payload: Uint8Array) => void;
  readonly #max: number;
  #buf: Uint8Array = new Uint8Array(MIN_BUFFER);
  #view: DataView = new DataView(this.#buf.buffer);
  #start = 0;
  #end = 0;
  #stopped = false;

  /**
   * Make a framer reporting to `sink`.
   *
   * @param sink Receives each frame's payload.
   * @param maxFrameSize Largest payload accepted, in bytes.
   * @throws {RangeError} When `maxFrameSize` is not a positive integer.
   */
  constructor(sink: (payload: Uint8Array) => void, maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE) {
    if (!Number.isSafeInteger(maxFrameSize) || maxFrameSize < 1 || maxFrameSize > 0xffffffff) {
      throw new RangeError(
        `Cannot create Gloom framer: maxFrameSize must be an integer from 1 to 4294967295, received ${maxFrameSize}`,
      );
    }
    this.#sink = sink;
    this.#max = maxFrameSize;
  }

  /** Bytes received that do not yet make a whole frame. */
  get pending(): number {
    return this.#end - this.#start;
  }

  /** Stop reporting frames (the rest of the chunk and later ones are ignored). */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Free space to read the next bytes into (valid until the next call).
   *
   * @returns The region; report what was read with {@link commit}.
   */
  readRegion(): Uint8Array {
    this.#makeRoom(MIN_BUFFER);
    return this.#buf.subarray(this.#end);
  }

  /**
   * Report `n` bytes read into {@link readRegion}'s region, and parse.
   *
   * @param n Bytes read.
   * @throws {GloomFrameError} When a frame's length is over the limit.
   */
  commit(n: number): void {
    this.#end += n;
    this.#parse();
  }

  /**
   * Copy `chunk` in and parse it.
   *
   * @param chunk Bytes received.
   * @throws {GloomFrameError} When a frame's length is over the limit.
   */
  push(chunk: Uint8Array): void {
    this.#makeRoom(chunk.length);
    this.#buf.set(chunk, this.#end);
    this.commit(chunk.length);
  }

  #makeRoom(min: number): void {
    const pending = this.#end - this.#start;
    // A frame whose prefix has arrived: room for all of it at once.
    if (pending >= PREFIX) {
      const need = PREFIX + this.#view.getUint32(this.#start) - pending;
      if (need > min) min = need;
    }
    if (this.#buf.length - this.#end >= min) return;
    let size = Math.max(this.#buf.length, MIN_BUFFER);
    while (size - pending < min) size *= 2;
    if (size === this.#buf.length) {
      this.#buf.copyWithin(0, this.#start, this.#end);
    } else {
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(this.#start, this.#end));
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
    this.#start = 0;
    this.#end = pending;
  }

  #parse(): void {
    while (!this.#stopped && this.#end - this.#start >= PREFIX) {
      const size = this.#view.getUint32(this.#start);
      if (size > this.#max) {
        this.#stopped = true;
        throw new GloomFrameError(
          "frame_too_large",
          `Frame of ${size} bytes is over the limit of ${this.#max} bytes; closing the connection`,
        );
      }
      const at = this.#start + PREFIX;
      if (this.#end - at < size) break;
      this.#start = at + size;
      this.#sink(this.#buf.subarray(at, at + size));
    }
    if (this.#start === this.#end) {
      this.#start = this.#end = 0;
      // Let go of a buffer grown for one large frame.
      if (this.#buf.length > KEEP_BUFFER) {
        this.#buf = new Uint8Array(MIN_BUFFER);
        this.#view = new DataView(this.#buf.buffer);
      }
    }
  }
}
