/**
 * One Gloom connection over a `Deno.Conn`: a read loop feeding a
 * {@link GloomFramer}, and an outbox of frames written once per turn of the
 * event loop with one write in flight (as `src/transport/connection.ts`
 * does for Gearman packets). Used by the server's Gloom front end and by
 * the Gloom client and worker.
 *
 * @module
 */

import { encodeFrame, GloomFrameError, GloomFramer } from "./frame.ts";

/** Outbox size past which a connection stops being read until it drains. */
const DEFAULT_MAX_OUTBOX_BYTES = 8 * 1024 * 1024;

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
  readonly #conn: Deno.Conn;
  readonly #framer: GloomFramer;
  readonly #maxOutbox: number;
  readonly #onFrameError: ((err: GloomFrameError) => void) | undefined;
  #chunks: Uint8Array[] = [];
  #queued = 0;
  #writing = 0;
  #flushScheduled = false;
  #closing = false;
  #socketClosed = false;
  #drained: PromiseWithResolvers<void> | undefined;
  readonly #done: PromiseWithResolvers<Error | undefined> = Promise.withResolvers();
  #error: Error | undefined;

  /**
   * @param conn The socket.
   * @param onFrame Receives each frame's payload (a view valid during the call).
   * @param options Limits and the framing-error hook.
   */
  constructor(
    conn: Deno.Conn,
    onFrame: (payload: Uint8Array) => void,
    options: GloomSocketOptions = {},
  ) {
    this.#conn = conn;
    this.#framer = new GloomFramer(onFrame, options.maxFrameSize);
    this.#maxOutbox = options.maxOutboxBytes ?? DEFAULT_MAX_OUTBOX_BYTES;
    this.#onFrameError = options.onFrameError;
  }

  /** The peer's address as `host:port` (IPv6 in brackets). */
  get remote(): string {
    const a = this.#conn.remoteAddr as Deno.NetAddr;
    if (!("hostname" in a)) return "unix";
    return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
  }

  /** The peer's IP address. */
  get remoteHost(): string {
    const a = this.#conn.remoteAddr as Deno.NetAddr;
    return "hostname" in a ? a.hostname : "unix";
  }

  /** Whether the connection is closing or closed. */
  get closed(): boolean {
    return this.#closing;
  }

  /** Resolves with the ending error (or `undefined`) once the socket is closed. */
  get done(): Promise<Error | undefined> {
    return this.#done.promise;
  }

  /** Bytes queued or being written. */
  get backlog(): number {
    return this.#queued + this.#writing;
  }

  /**
   * Queue a value as one frame; it is written at the end of this turn.
   * Dropped once the connection is closed.
   *
   * @param value Any JSON-serialisable value.
   */
  send(value: unknown): void {
    if (this.#socketClosed) return;
    const frame = encodeFrame(value);
    this.#chunks.push(frame);
    this.#queued += frame.length;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flush);
    }
  }

  #flush = (): void => {
    this.#flushScheduled = false;
    if (this.#socketClosed) {
      this.#chunks = [];
      this.#queued = 0;
      return;
    }
    if (this.#writing === 0 && this.#queued > 0) void this.#writeLoop();
  };

  async #writeLoop(): Promise<void> {
    try {
      while (this.#queued > 0 && !this.#socketClosed) {
        const chunks = this.#chunks;
        const size = this.#queued;
        this.#chunks = [];
        this.#queued = 0;
        let bytes: Uint8Array;
        if (chunks.length === 1) bytes = chunks[0]!;
        else {
          bytes = new Uint8Array(size);
          let at = 0;
          for (const c of chunks) {
            bytes.set(c, at);
            at += c.length;
          }
        }
        let off = 0;
        this.#writing = bytes.length;
        while (off < bytes.length) {
          off += await this.#conn.write(bytes.subarray(off));
          this.#writing = bytes.length - off;
        }
      }
    } catch (err) {
      this.#chunks = [];
      this.#queued = 0;
      this.#error ??= err instanceof Error ? err : new Error(String(err));
      this.#closeSocket();
    } finally {
      this.#writing = 0;
      const d = this.#drained;
      this.#drained = undefined;
      d?.resolve();
    }
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
   * Read frames until EOF, an error or {@link close}; then flush and close.
   *
   * @returns The error that ended the connection (a {@link GloomFrameError},
   * a socket error), or `undefined` for EOF or a close.
   */
  async run(): Promise<Error | undefined> {
    const framer = this.#framer;
    try {
      while (!this.#closing) {
        if (this.backlog > this.#maxOutbox) {
          await this.drained();
          continue;
        }
        const n = await this.#conn.read(framer.readRegion());
        if (n === null) break;
        framer.commit(n);
      }
    } catch (err) {
      if (!this.#socketClosed) this.#error ??= err instanceof Error ? err : new Error(String(err));
      if (err instanceof GloomFrameError && !this.#socketClosed) this.#onFrameError?.(err);
    }
    this.close();
    return await this.#done.promise;
  }

  /**
   * Stop reading, write what is queued (waiting at most `flushTimeoutMs`),
   * then close. Safe to call more than once.
   *
   * @param flushTimeoutMs Longest wait for queued output to be taken.
   */
  close(flushTimeoutMs = 2000): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#framer.stop();
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

  /** Close at once, dropping queued output. */
  abort(): void {
    this.#chunks = [];
    this.#queued = 0;
    this.#closing = true;
    this.#framer.stop();
    this.#closeSocket();
  }

  #closeSocket(): void {
    if (this.#socketClosed) return;
    this.#socketClosed = true;
    this.#closing = true;
    this.#framer.stop();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    this.#done.resolve(this.#error);
  }
}
