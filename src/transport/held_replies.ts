/**
 * Replies that are known later than the packets after them (a unique
 * submit in a cluster learns its handle from the database's commit): each
 * keeps its place in a connection's output, and what is written after it
 * waits behind it, so the peer still reads replies in request order while
 * the connection goes on reading and handling its next packets.
 *
 * @module
 */

import { PacketWriter } from "../protocol/packet_writer.ts";

/**
 * A reply's place in a connection's output: write the reply to
 * {@link HeldReply.out}, then release it with the connection.
 *
 * @example
 * ```ts
 * import { HeldReplies } from "./held_replies.ts";
 * import { PacketWriter } from "../protocol/packet_writer.ts";
 * const queue = new HeldReplies();
 * const held = queue.hold();
 * held.out.byteString("first");
 * const outbox = new PacketWriter();
 * queue.release(held, () => outbox);
 * console.assert(outbox.length === 5);
 * ```
 */
export class HeldReply {
  /** Where the reply is written (room for a JOB_CREATED without growing). */
  readonly out: PacketWriter = new PacketWriter(64);
  #after: PacketWriter | undefined;
  /** The reply is written: it and what follows may go once those before it have. */
  ready = false;

  /** What the connection writes after this place and before the next one (made on first use). */
  get after(): PacketWriter {
    return this.#after ??= new PacketWriter(256);
  }

  /** Whether anything was written after this place. */
  get followed(): boolean {
    return this.#after !== undefined && this.#after.length > 0;
  }
}

/**
 * The held replies of one connection, oldest first.
 *
 * @example Two replies released out of order leave in order
 * ```ts
 * import { HeldReplies } from "./held_replies.ts";
 * import { PacketWriter } from "../protocol/packet_writer.ts";
 * const outbox = new PacketWriter();
 * const queue = new HeldReplies();
 * const a = queue.hold();
 * const b = queue.hold();
 * queue.tail!.byteString("c");
 * b.out.byteString("b");
 * queue.release(b, () => outbox);
 * console.assert(outbox.length === 0);
 * a.out.byteString("a");
 * queue.release(a, () => outbox);
 * console.assert(new TextDecoder().decode(outbox.take()) === "abc");
 * ```
 */
export class HeldReplies {
  #held: HeldReply[] = [];
  /** Index of the oldest reply not yet sent. */
  #head = 0;

  /** Replies held and not yet sent. */
  get size(): number {
    return this.#held.length - this.#head;
  }

  /** The newest reply held and not yet sent (output goes behind it), or undefined when none is. */
  get last(): HeldReply | undefined {
    const held = this.#held;
    return held.length > this.#head ? held[held.length - 1] : undefined;
  }

  /** Where output goes while a reply is held (behind the newest), or undefined when none is. */
  get tail(): PacketWriter | undefined {
    return this.last?.after;
  }

  /**
   * Keep a place for a reply after everything written so far.
   *
   * @returns The place.
   */
  hold(): HeldReply {
    const h = new HeldReply();
    this.#held.push(h);
    return h;
  }

  /**
   * Mark `h` written, and move every reply that may now go (with what was
   * written after each) to the outbox, in order.
   *
   * @param h A reply from {@link hold}, written.
   * @param outbox Gives the writer the connection sends from.
   * @returns How many replies were moved.
   */
  release(h: HeldReply, outbox: () => PacketWriter): number {
    h.ready = true;
    const held = this.#held;
    let i = this.#head;
    while (i < held.length && held[i]!.ready) {
      const r = held[i++]!;
      const w = outbox();
      if (r.out.length > 0) w.bytes(r.out.take());
      if (r.followed) w.bytes(r.after.take());
    }
    const moved = i - this.#head;
    if (i === held.length) {
      held.length = 0;
      this.#head = 0;
    } else if (i > 64 && i * 2 > held.length) {
      held.splice(0, i);
      this.#head = 0;
    } else {
      this.#head = i;
    }
    return moved;
  }

  /** Drop every held reply (the connection closed at once). */
  clear(): void {
    this.#held.length = 0;
    this.#head = 0;
  }
}
