/**
 * A growable buffer that packets are written straight into: no argument
 * arrays, no intermediate copies.
 *
 * @module
 */

import { HEADER_SIZE, type Magic } from "./packet.ts";
import { utf8Into } from "./_bytes.ts";

/** A new writer's buffer: small (it grows), since every connection has two. */
const INITIAL_SIZE = 256;

/**
 * Writes packets into one growable buffer. A packet is opened with
 * {@link begin}, its arguments appended, and closed with {@link end},
 * which fills in the body size. {@link take} returns everything written.
 *
 * @example Write two packets
 * ```ts
 * import { Magic, PacketType, PacketWriter, parsePacket } from "@x/gearman/protocol";
 * import assert from "node:assert/strict";
 *
 * const w = new PacketWriter();
 * w.end(w.begin(Magic.REQ, PacketType.CAN_DO).text("reverse"));
 * w.end(w.begin(Magic.REQ, PacketType.GRAB_JOB));
 * const bytes = w.take();
 * assert.equal(parsePacket(bytes)!.name, "CAN_DO");
 * assert.equal(bytes.length, 12 + 7 + 12);
 * ```
 */
export class PacketWriter {
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;
  #open = -1;

  /**
   * Make an empty writer.
   *
   * @param initialSize Starting capacity in bytes.
   */
  constructor(initialSize: number = INITIAL_SIZE) {
    this.#buf = new Uint8Array(initialSize);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes written and not yet taken. */
  get length(): number {
    return this.#len;
  }

  /** Current capacity in bytes. */
  get capacity(): number {
    return this.#buf.length;
  }

  #reserve(n: number): void {
    const need = this.#len + n;
    if (need <= this.#buf.length) return;
    // At least 1 before doubling: a writer made with initialSize 0 would loop forever.
    let size = Math.max(this.#buf.length, 1) * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  /**
   * Open a packet: write its header with the size left blank.
   *
   * @param magic `Magic.REQ` or `Magic.RES`.
   * @param type Packet type number.
   * @returns This writer, to chain arguments.
   */
  begin(magic: Magic, type: number): this {
    this.#reserve(HEADER_SIZE);
    this.#open = this.#len;
    const v = this.#view;
    v.setUint32(this.#len, magic);
    v.setUint32(this.#len + 4, type);
    this.#len += HEADER_SIZE;
    return this;
  }

  /**
   * Close the packet opened by {@link begin}: fill in its body size.
   *
   * @param _chain Ignored; lets `w.end(w.begin(...).text(x))` read in order.
   */
  end(_chain?: unknown): void {
    this.#view.setUint32(this.#open + 8, this.#len - this.#open - HEADER_SIZE);
    this.#open = -1;
  }

  /**
   * Append raw bytes.
   *
   * @param b The bytes.
   * @returns This writer.
   */
  bytes(b: Uint8Array): this {
    this.#reserve(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }

  /**
   * Append one NUL separator.
   *
   * @returns This writer.
   */
  nul(): this {
    this.#reserve(1);
    this.#buf[this.#len++] = 0;
    return this;
  }

  /**
   * Append a byte string (one char code 0-255 per byte).
   *
   * @param s The byte string.
   * @returns This writer.
   */
  byteString(s: string): this {
    const n = s.length;
    this.#reserve(n);
    const buf = this.#buf;
    let at = this.#len;
    for (let i = 0; i < n; i++) buf[at++] = s.charCodeAt(i);
    this.#len = at;
    return this;
  }

  /**
   * Append text as UTF-8.
   *
   * @param s The text.
   * @returns This writer.
   */
  text(s: string): this {
    this.#reserve(s.length * 3);
    this.#len += utf8Into(s, this.#buf, this.#len);
    return this;
  }

  /**
   * Append a non-negative integer in decimal.
   *
   * @param n The number.
   * @returns This writer.
   */
  decimal(n: number): this {
    if (n < 10) {
      this.#reserve(1);
      this.#buf[this.#len++] = 48 + n;
      return this;
    }
    return this.byteString(String(n));
  }

  /**
   * Everything written so far, as a view of the internal buffer; the writer
   * is then empty. The view stays valid only until the next write, which
   * reuses the buffer from its start: take it, use it, then {@link reset}.
   *
   * @returns The bytes written.
   */
  take(): Uint8Array {
    const out = this.#buf.subarray(0, this.#len);
    this.#len = 0;
    return out;
  }

  /**
   * Drop everything written, and shrink a buffer grown past `keep` bytes.
   *
   * @param keep Capacity to keep.
   */
  reset(keep: number = 1024 * 1024): void {
    this.#len = 0;
    if (this.#buf.length > keep) {
      this.#buf = new Uint8Array(INITIAL_SIZE);
      this.#view = new DataView(this.#buf.buffer);
    }
  }
}
