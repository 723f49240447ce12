/**
 * One Gloom connection over a `Deno.Conn`: the shared transport
 * {@link Connection} (read loop, one coalesced write per turn of the event
 * loop, backpressure, flush-then-close) fed by a {@link GloomFramer}. Used
 * by the server's Gloom front end and by the Gloom client and worker.
 *
 * @module
 */

import { type ByteConn, Connection } from "../transport/connection.ts";
import type { ProtocolError } from "../protocol/protocol_error.ts";
import { encodeFrame, GloomFrameError, GloomFramer } from "./frame.ts";

/** Options for {@link GloomSocket}. */
export interface GloomSocketOptions {
  /** Largest frame accepted, in bytes (larger: error, then close). */
  maxFrameSize?: number;
  /** Outbox size past which reading pauses (backpressure). */
  maxOutboxBytes?: number;
  /** Called on a framing error before the connection closes: a last frame may still be sent. */
  onFrameError?: (err: GloomFrameError) => void;
}

/** A length-prefixed JSON connection with a coalescing outbox. */
export class GloomSocket {
  readonly #connection: Connection;

  /**
   * @param conn The socket.
   * @param onFrame Receives each frame's payload (a view valid during the call).
   * @param options Limits and the framing-error hook.
   */
  constructor(
    conn: ByteConn,
    onFrame: (payload: Uint8Array) => void,
    options: GloomSocketOptions = {},
  ) {
    const { onFrameError } = options;
    this.#connection = new Connection(conn, new GloomFramer(onFrame, options.maxFrameSize), {
      ...(options.maxOutboxBytes !== undefined ? { maxOutboxBytes: options.maxOutboxBytes } : {}),
      isProtocolError: (err) => err instanceof GloomFrameError,
      ...(onFrameError
        ? {
          onProtocolError: (err: ProtocolError) => onFrameError(err as unknown as GloomFrameError),
        }
        : {}),
    });
  }

  /** The peer's address as `host:port` (IPv6 in brackets). */
  get remote(): string {
    return this.#connection.remote;
  }

  /** The peer's IP address. */
  get remoteHost(): string {
    return this.#connection.remoteHost;
  }

  /** Whether the connection is closing or closed. */
  get closed(): boolean {
    return this.#connection.closed;
  }

  /** Resolves with the ending error (or `undefined`) once the socket is closed. */
  get done(): Promise<Error | undefined> {
    return this.#connection.done;
  }

  /** Bytes queued or being written. */
  get backlog(): number {
    return this.#connection.backlog;
  }

  /**
   * Queue a value as one frame; it is written at the end of this turn.
   * Dropped once the connection is closed.
   *
   * @param value Any JSON-serialisable value.
   */
  send(value: unknown): void {
    this.#connection.out().bytes(encodeFrame(value));
  }

  /**
   * Resolves when the outbox is empty (or the socket is gone).
   *
   * @returns A promise for the drain.
   */
  drained(): Promise<void> {
    return this.#connection.drained();
  }

  /**
   * Read frames until EOF, an error or {@link close}; then flush and close.
   *
   * @returns The error that ended the connection (a {@link GloomFrameError},
   * a socket error), or `undefined` for EOF or a close.
   */
  run(): Promise<Error | undefined> {
    return this.#connection.run();
  }

  /**
   * Stop reading, write what is queued (waiting at most `flushTimeoutMs`),
   * then close. Safe to call more than once.
   *
   * @param flushTimeoutMs Longest wait for queued output to be taken.
   */
  close(flushTimeoutMs = 2000): void {
    this.#connection.close(flushTimeoutMs);
  }

  /** Close at once, dropping queued output. */
  abort(): void {
    this.#connection.abort();
  }
}
