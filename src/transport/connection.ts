/**
 * One Gearman connection over a `Deno.Conn`: a read loop feeding a
 * {@link PacketFramer}, and an outbox whose packets are coalesced into one
 * write per turn of the event loop, with at most one write in flight.
 *
 * @module
 */

import { PacketFramer, type PacketFramerOptions } from "../protocol/packet_framer.ts";
import type { FramerSink } from "../protocol/packet_framer.ts";
import { ProtocolError } from "../protocol/protocol_error.ts";
import { tickClock } from "./coarse_clock.ts";
import { PacketWriter } from "../protocol/packet_writer.ts";
import { HeldReplies, type HeldReply } from "./held_replies.ts";

/**
 * An address as people write it: `host:port`, IPv6 in brackets; `unix`
 * for a Unix socket.
 *
 * @param addr The address.
 * @returns Its text.
 *
 * @example
 * ```ts
 * import { addrText } from "./connection.ts";
 * console.assert(addrText({ transport: "tcp", hostname: "::1", port: 4730 }) === "[::1]:4730");
 * ```
 */
export function addrText(addr: Deno.Addr): string {
  if (!("hostname" in addr)) return "unix";
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}

/**
 * What was thrown, as an Error.
 *
 * @param err Anything thrown.
 * @returns `err` itself when it is an Error, else one with its text.
 */
export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Default outbox size past which a connection stops being read. */
export const DEFAULT_MAX_OUTBOX_BYTES: number = 8 * 1024 * 1024;

/**
 * Replies a connection may hold ({@link Connection.holdReply}) before it
 * stops reading: a client pipelining unique submits to a cluster waits
 * here, not in the server's memory.
 */
export const MAX_HELD_REPLIES: number = 1024;

/**
 * What the read loop feeds: a framer that hands out its free space and
 * parses what was read into it. `PacketFramer` (Gearman) and the Gloom
 * framer both are one.
 */
export interface StreamFramer {
  /** Free space to read the next bytes into. */
  readRegion(): Uint8Array;
  /** `n` bytes were read into that space: parse them (may throw a framing error). */
  commit(n: number): void;
  /** Report nothing more. */
  stop(): void;
  /** Hold back parsing after the current message until `resume` (backpressure, late replies). */
  pause?(): void;
  /** Parse what `pause` held back (may throw a framing error). */
  resume?(): void;
}

/**
 * What a {@link Connection} needs of its socket: a `Deno.Conn` is one; so
 * is the mutual-TLS adapter over a `node:tls` socket.
 *
 * @example A Deno.Conn is a ByteConn
 * ```ts ignore
 * const conn: ByteConn = await Deno.connect({ hostname: "127.0.0.1", port });
 * ```
 */
export interface ByteConn {
  /** Read into `p`; `null` at the end of the stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Write some of `p` (at least one byte); resolves with how many. */
  write(p: Uint8Array): Promise<number>;
  /** Close; a returned promise resolves once the socket is closed. */
  close(): void | Promise<void>;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
}

/**
 * Options for {@link Connection}.
 *
 * @example Limit the outbox
 * ```ts
 * import type { ConnectionOptions } from "./connection.ts";
 * const options: ConnectionOptions = { maxOutboxBytes: 1 << 20 };
 * console.assert(options.maxOutboxBytes === 1048576);
 * ```
 */
export interface ConnectionOptions extends PacketFramerOptions {
  /**
   * Outbox size past which the connection stops being read until the
   * peer has taken what was written (backpressure).
   * @default {8 MiB}
   */
  maxOutboxBytes?: number;
  /**
   * Unsent output past which the connection is closed: backpressure stops
   * what the peer itself asks for, but not what others send it (a worker
   * streaming WORK_DATA to a client that never reads). Servers set it;
   * a client's own pipelined requests are not limited.
   * @default {Infinity}
   */
  maxBacklogBytes?: number;
  /**
   * Called, with the unsent byte count and the connection, when
   * `maxBacklogBytes` closes the connection.
   */
  onOverflow?: (backlog: number, connection: Connection) => void;
  /**
   * Called when the bytes read break the protocol, before the connection
   * closes: a chance to write an ERROR packet (to `connection.out()`) that
   * will still be flushed.
   */
  onProtocolError?: (err: ProtocolError, connection: Connection) => void;
  /**
   * Called when {@link Connection.run} ends (the socket is closed), with
   * the connection and the error that ended it, if any: what a server
   * would otherwise await `run()` for, without a pending function per
   * connection.
   */
  onEnd?: (connection: Connection, err: Error | undefined) => void;
  /**
   * Which errors thrown while framing are protocol errors (passed to
   * `onProtocolError`).
   * @default err instanceof ProtocolError
   */
  isProtocolError?: (err: unknown) => boolean;
}

/**
 * A framed, write-coalescing connection. Packets are written with
 * {@link out}, which schedules one flush per turn of the event loop.
 *
 * @example Wrap an accepted connection
 * ```ts ignore
 * const conn = new Connection(await listener.accept(), sink, { magic: Magic.REQ });
 * conn.out().end(conn.out().begin(Magic.RES, PacketType.NOOP));
 * await conn.run();
 * ```
 */
export class Connection {
  readonly #conn: ByteConn;
  readonly #framer: StreamFramer;
  readonly #maxOutbox: number;
  /** The options given: callbacks are read from it, so one object can serve many connections. */
  readonly #options: ConnectionOptions;
  #out: PacketWriter = new PacketWriter();
  /**
   * The second buffer, made when packets are written while a write is in
   * flight: they go there while the socket takes the other. A connection
   * that answers one request at a time never needs it.
   */
  #spare: PacketWriter | undefined;
  /** The writer whose bytes the socket is taking, if a write is in flight. */
  #inFlight: PacketWriter | undefined;
  #flushScheduled = false;
  /** The framer was paused because the outbox went past its limit. */
  #backpressured = false;
  /** While above 0, output is held back (e.g. until a store commit). */
  #corked = 0;
  #lastRead: number = performance.now();
  #bytesIn = 0;
  #bytesOut = 0;
  /** Bytes of the write in flight not yet accepted by the socket. */
  #writing = 0;
  /** No more reads; pending output is flushed, then the socket closes. */
  #closing = false;
  #socketClosed = false;
  /** The socket finished closing ({@link done} resolves at once). */
  #closed = false;
  #drained: PromiseWithResolvers<void> | undefined;
  /** Set while {@link pause}d: the read loop waits for it. */
  #replyWait: PromiseWithResolvers<void> | undefined;
  /** Replies whose place is kept ({@link holdReply}); made on first use. */
  #replies: HeldReplies | undefined;
  /** The newest reply held (output goes behind it), else undefined. */
  #heldLast: HeldReply | undefined;
  /** Reading stopped because {@link MAX_HELD_REPLIES} replies were held. */
  #heldFull = false;
  /** Made when someone waits for the close (most connections end without a waiter). */
  #done: PromiseWithResolvers<Error | undefined> | undefined;
  /** Why the connection ended, when it was not a plain EOF or close. */
  #error: Error | undefined;

  /**
   * Wrap a socket.
   *
   * @param conn The socket.
   * @param framing Receives Gearman packets and admin lines (a
   *   `PacketFramer` is made with `options`), or another protocol's framer.
   * @param options Framing and outbox options; kept, not copied, so one
   *   object can serve every connection of a server.
   */
  constructor(
    conn: ByteConn,
    framing: FramerSink | StreamFramer,
    options: ConnectionOptions = {},
  ) {
    this.#conn = conn;
    this.#framer = "readRegion" in framing ? framing : new PacketFramer(framing, options);
    this.#maxOutbox = options.maxOutboxBytes ?? DEFAULT_MAX_OUTBOX_BYTES;
    this.#options = options;
  }

  /** The peer's address, as `host:port` (IPv6 in brackets). */
  get remote(): string {
    return addrText(this.#conn.remoteAddr);
  }

  /** The peer's IP address alone. */
  get remoteHost(): string {
    const a = this.#conn.remoteAddr as Deno.NetAddr;
    return "hostname" in a ? a.hostname : "unix";
  }

  /** Whether the connection is closing or closed. */
  get closed(): boolean {
    return this.#closing;
  }

  /** When bytes last arrived (performance.now() ms), for idle timeouts. */
  get lastRead(): number {
    return this.#lastRead;
  }

  /** Bytes read from the peer so far. */
  get bytesIn(): number {
    return this.#bytesIn;
  }

  /** Bytes written to the peer so far. */
  get bytesOut(): number {
    return this.#bytesOut;
  }

  /** Bytes written to the outbox and not yet taken by the socket. */
  get backlog(): number {
    return this.#out.length + this.#writing;
  }

  /** Resolves with the ending error (or `undefined`) once the socket is closed. */
  get done(): Promise<Error | undefined> {
    if (this.#done === undefined) {
      if (this.#closed) return Promise.resolve(this.#error);
      this.#done = Promise.withResolvers();
    }
    return this.#done.promise;
  }

  /**
   * The writer to append packets to; a flush is scheduled for the end of
   * this turn of the event loop.
   *
   * @returns The outbox writer.
   */
  out(): PacketWriter {
    const last = this.#heldLast;
    return last === undefined ? this.#outbox() : last.after;
  }

  /** The writer the socket is fed from (what {@link out} gives when no reply is held). */
  #outbox = (): PacketWriter => {
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flush);
    }
    // Past the limit, take no more requests, not even the rest of the
    // chunk being parsed: one read can hold thousands of GRAB_JOBs, each
    // answered with a job's whole payload.
    if (!this.#backpressured && this.#out.length + this.#writing > this.#maxOutbox) {
      const framer = this.#framer;
      if (framer.pause !== undefined) {
        this.#backpressured = true;
        framer.pause();
      }
    }
    if (this.#out === this.#inFlight) {
      // Its bytes are being written: append to the other buffer meanwhile.
      const other = this.#spare ?? new PacketWriter();
      this.#spare = this.#out;
      this.#out = other;
    }
    return this.#out;
  };

  /**
   * Keep the place of a reply that is known later (a store's answer):
   * what is written after it waits behind it, so the peer reads replies in
   * request order, while this connection goes on handling its packets.
   * Write the reply to the returned place's `out`, then {@link releaseReply}.
   * With {@link MAX_HELD_REPLIES} held, reading stops until half are sent.
   *
   * @returns The reply's place.
   */
  holdReply(): HeldReply {
    const replies = this.#replies ??= new HeldReplies();
    const held = replies.hold();
    this.#heldLast = held;
    if (replies.size >= MAX_HELD_REPLIES && !this.#heldFull) {
      this.#heldFull = true;
      this.pause();
    }
    return held;
  }

  /**
   * Send a reply kept by {@link holdReply}, once those held before it are
   * sent, followed by what was written after it.
   *
   * @param held The place, with the reply written to its `out`.
   */
  releaseReply(held: HeldReply): void {
    const replies = this.#replies;
    if (replies === undefined) return;
    replies.release(held, this.#outbox);
    this.#heldLast = replies.last;
    if (this.#heldFull && replies.size <= MAX_HELD_REPLIES / 2) {
      this.#heldFull = false;
      this.resume();
    }
  }

  /**
   * Hold output back until the matching {@link uncork}: replies that must
   * not leave before something else happens (a JOB_CREATED before its job
   * is committed to a store) wait in the outbox, in order with the rest.
   */
  cork(): void {
    this.#corked++;
  }

  /** Release one {@link cork}; at zero, what waited is written. */
  uncork(): void {
    if (this.#corked > 0 && --this.#corked === 0) this.#flush();
  }

  /** Drop everything in the outbox and close at once (no flush). */
  abort(): void {
    this.#out.reset();
    this.#replies?.clear();
    this.#heldLast = undefined;
    this.#closing = true;
    this.#framer.stop();
    this.#releaseReplyWait();
    this.#closeSocket();
  }

  #flush = (): void => {
    this.#flushScheduled = false;
    if (this.#socketClosed) {
      this.#out.reset();
      return;
    }
    const backlog = this.backlog;
    const maxBacklog = this.#options.maxBacklogBytes ?? Infinity;
    if (backlog > maxBacklog && !this.#closing) {
      // The peer does not read what others send it: let it go.
      this.#error ??= new Error(
        `Closed: ${backlog} bytes of output waited for the peer to read (limit ${maxBacklog})`,
      );
      this.#options.onOverflow?.(backlog, this);
      this.abort();
      return;
    }
    if (this.#corked > 0) return;
    if (this.#writing === 0 && this.#out.length > 0) void this.#writeLoop();
  };

  async #writeLoop(): Promise<void> {
    try {
      while (this.#out.length > 0 && !this.#socketClosed) {
        const w = this.#out;
        this.#inFlight = w;
        const bytes = w.take();
        let off = 0;
        this.#writing = bytes.length;
        while (off < bytes.length) {
          const n = await this.#conn.write(bytes.subarray(off));
          off += n;
          this.#bytesOut += n;
          this.#writing = bytes.length - off;
        }
        this.#inFlight = undefined;
        w.reset();
      }
    } catch (err) {
      this.#out.reset();
      this.#spare?.reset();
      this.#error ??= asError(err);
      this.#closeSocket();
    } finally {
      this.#writing = 0;
      this.#inFlight = undefined;
      const d = this.#drained;
      this.#drained = undefined;
      d?.resolve();
    }
  }

  /**
   * Stop handling packets after the current one until {@link resume}: a
   * packet answered asynchronously (a store lookup) pauses its connection,
   * so the packets after it are answered after it, in order. Nothing more
   * is read meanwhile. A framer that cannot pause ignores it.
   */
  pause(): void {
    if (this.#framer.pause === undefined || this.#closing) return;
    this.#framer.pause();
    this.#replyWait ??= Promise.withResolvers();
  }

  #releaseReplyWait(): void {
    const gate = this.#replyWait;
    this.#replyWait = undefined;
    gate?.resolve();
  }

  /**
   * Handle the packets {@link pause} held back, then read again (once the
   * outbox is below its limit, if it is not).
   */
  resume(): void {
    const gate = this.#replyWait;
    if (gate === undefined) return;
    this.#replyWait = undefined;
    if (!this.#closing && !this.#backpressured) {
      try {
        this.#framer.resume?.();
      } catch (err) {
        this.#error ??= asError(err);
        this.#protocolError(err);
        this.close();
      }
    }
    gate.resolve();
  }

  /**
   * Resolves when the outbox is empty (or the socket is gone).
   *
   * @returns A promise for the drain.
   */
  drained(): Promise<void> {
    if (this.backlog === 0 || this.#socketClosed) return Promise.resolve();
    this.#drained ??= Promise.withResolvers();
    return this.#drained.promise;
  }

  /**
   * Read and frame packets until EOF, an error, or {@link close}, then
   * flush and close. Resolves with the error that ended the connection
   * (a `ProtocolError` from the framer or the sink, a socket error), or
   * `undefined` for EOF or a close.
   *
   * @returns The error that ended the connection, if any.
   */
  async run(): Promise<Error | undefined> {
    const framer = this.#framer;
    try {
      while (!this.#closing) {
        if (this.#replyWait !== undefined) {
          await this.#replyWait.promise;
          continue;
        }
        if (this.backlog > this.#maxOutbox) {
          await this.drained();
          continue;
        }
        if (this.#backpressured) {
          // The peer caught up: handle what was held back before reading more.
          this.#backpressured = false;
          tickClock();
          framer.resume?.();
          continue;
        }
        const n = await this.#conn.read(framer.readRegion());
        if (n === null) break;
        this.#lastRead = tickClock();
        this.#bytesIn += n;
        framer.commit(n);
      }
    } catch (err) {
      if (!this.#socketClosed) this.#error ??= asError(err);
      if (!this.#socketClosed) this.#protocolError(err);
    }
    this.close();
    const err = await this.done;
    this.#options.onEnd?.(this, err);
    return err;
  }

  /** Tell `onProtocolError` of `err` if it breaks the protocol. */
  #protocolError(err: unknown): void {
    const { isProtocolError, onProtocolError } = this.#options;
    if (onProtocolError === undefined) return;
    if (isProtocolError === undefined ? err instanceof ProtocolError : isProtocolError(err)) {
      onProtocolError(err as ProtocolError, this);
    }
  }

  /**
   * Stop reading; write what the outbox holds (waiting at most
   * `flushTimeoutMs`), then close the socket. Safe to call more than once
   * and from a sink callback.
   *
   * @param flushTimeoutMs Longest wait for pending output to be taken.
   */
  close(flushTimeoutMs = 2000): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#framer.stop();
    this.#releaseReplyWait();
    void this.#shutdown(flushTimeoutMs);
  }

  async #shutdown(flushTimeoutMs: number): Promise<void> {
    this.#flush();
    if (this.backlog > 0 && !this.#socketClosed) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, flushTimeoutMs);
      });
      while (this.backlog > 0 && !this.#socketClosed) {
        const before = this.backlog;
        await Promise.race([this.drained(), timeout]);
        if (this.backlog >= before) break;
      }
      clearTimeout(timer);
    }
    this.#closeSocket();
  }

  #closeSocket(): void {
    if (this.#socketClosed) return;
    this.#socketClosed = true;
    this.#closing = true;
    this.#framer.stop();
    let closing: void | Promise<void> = undefined;
    try {
      closing = this.#conn.close();
    } catch { /* already closed by the peer */ }
    if (closing instanceof Promise) {
      const done = () => this.#settle();
      closing.then(done, done);
    } else {
      this.#settle();
    }
  }

  /** The socket is closed: tell whoever waits on {@link done}. */
  #settle(): void {
    this.#closed = true;
    this.#done?.resolve(this.#error);
  }
}
