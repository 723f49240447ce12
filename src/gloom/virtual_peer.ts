// A Gloom connection seen by the dispatcher as a Gearman peer: the packets
// the dispatcher writes into its outbox are framed back (RES magic) and
// handed to the Gloom session, which turns them into Gloom frames.

import { Magic } from "../protocol/packet.ts";
import { PacketFramer } from "../protocol/packet_framer.ts";
import { PacketWriter } from "../protocol/packet_writer.ts";
import type { PeerConnection } from "../server/peer.ts";
import { HeldReplies, type HeldReply } from "../transport/held_replies.ts";
import type { GloomSocket } from "./socket.ts";

/** Receives the dispatcher's packets for one Gloom connection. */
export type PacketHandler = (type: number, body: Uint8Array) => void;

/**
 * The {@link PeerConnection} of a Gloom connection. Whatever the dispatcher
 * writes is drained on a microtask (or at once, by {@link drain}) and parsed
 * back into packets; a packet handler may call the dispatcher again, and
 * what that writes is drained in the same loop.
 */
export class VirtualPeerConnection implements PeerConnection {
  readonly #socket: GloomSocket;
  readonly #framer: PacketFramer;
  #out = new PacketWriter(256);
  /** Written to while the other writer's bytes are being parsed. */
  #spare = new PacketWriter(256);
  #scheduled = false;
  #corked = 0;
  #draining = false;
  /** Replies whose place is kept; made on first use. */
  #replies: HeldReplies | undefined;

  constructor(socket: GloomSocket, onPacket: PacketHandler) {
    this.#socket = socket;
    this.#framer = new PacketFramer(
      { packet: (type, body) => onPacket(type, body) },
      { magic: Magic.RES, maxPacketSize: 0xffffffff },
    );
  }

  out(): PacketWriter {
    return this.#replies?.tail ?? this.#outbox();
  }

  #outbox = (): PacketWriter => {
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(this.#drainTask);
    }
    return this.#out;
  };

  holdReply(): HeldReply {
    return (this.#replies ??= new HeldReplies()).hold();
  }

  releaseReply(held: HeldReply): void {
    this.#replies?.release(held, this.#outbox);
  }

  #drainTask = (): void => {
    this.#scheduled = false;
    this.drain();
  };

  /**
   * Hand what the dispatcher wrote to the packet handler, until nothing is
   * left. Does nothing while corked or when already draining (the running
   * drain picks the new packets up). After the socket closed, discards.
   */
  drain(): void {
    if (this.#draining || this.#corked > 0) return;
    this.#draining = true;
    try {
      while (this.#out.length > 0) {
        const w = this.#out;
        this.#out = this.#spare;
        this.#spare = w;
        const bytes = w.take();
        if (!this.#socket.closed) this.#framer.push(bytes);
        w.reset(64 * 1024);
      }
    } finally {
      this.#draining = false;
    }
  }

  close(): void {
    this.#socket.close();
  }

  get remote(): string {
    return this.#socket.remote;
  }

  get remoteHost(): string {
    return this.#socket.remoteHost;
  }

  get closed(): boolean {
    return this.#socket.closed;
  }

  cork(): void {
    this.#corked++;
  }

  uncork(): void {
    if (this.#corked > 0 && --this.#corked === 0) this.drain();
  }

  abort(): void {
    this.#out.reset();
    this.#replies?.clear();
    this.#socket.abort();
  }
}
