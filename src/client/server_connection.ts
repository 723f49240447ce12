// One client-side connection to one Gearman server: connects on demand,
// frames response packets, and remembers failures so a server that is down
// is skipped until its backoff has passed.

import { type ClientTlsOptions, connectTlsOptions } from "./tls_options.ts";
import { Magic } from "../protocol/packet.ts";
import { Connection } from "../transport/connection.ts";
import type { PacketWriter } from "../protocol/packet_writer.ts";
import { ConnectionError } from "./errors.ts";
import { loopTimeout, withinLoopTime } from "./loop_timeout.ts";
import type { ServerAddress } from "./server_address.ts";

/** What a server connection reports to its owner. */
export interface ServerConnectionEvents {
  /** A response packet; `body` is valid only during the call. */
  packet(type: number, body: Uint8Array): void;
  /** The connection ended after having been open. */
  closed(err: Error | undefined): void;
}

/** Options shared by clients and workers for their connections. */
export interface ServerConnectionOptions {
  connectTimeoutMs: number;
  maxPacketSize: number;
  /** First retry delay after a failure; doubles up to `maxBackoffMs`. */
  minBackoffMs: number;
  maxBackoffMs: number;
  /** Connect with TLS, trusting these CA certificates (PEM) or the system's. */
  tls?: ClientTlsOptions | undefined;
}

/** A lazily opened, failure-remembering connection to one server. */
export class ServerConnection {
  readonly address: ServerAddress;
  readonly #events: ServerConnectionEvents;
  readonly #options: ServerConnectionOptions;
  #conn: Connection | undefined;
  #opening: Promise<Connection> | undefined;
  #failures = 0;
  #retryAt = 0;
  #closed = false;
  #generation = 0;
  #runs = new Set<Promise<unknown>>();

  constructor(
    address: ServerAddress,
    events: ServerConnectionEvents,
    options: ServerConnectionOptions,
  ) {
    this.address = address;
    this.#events = events;
    this.#options = options;
  }

  /** Counts connections made: a job grabbed on one must not be answered on the next. */
  get generation(): number {
    return this.#generation;
  }

  /** Whether the connection is open now. */
  get isOpen(): boolean {
    return this.#conn !== undefined && !this.#conn.closed;
  }

  /** Bytes written to the open connection and not yet taken by the socket (0 when closed). */
  get backlog(): number {
    return this.#conn === undefined || this.#conn.closed ? 0 : this.#conn.backlog;
  }

  /** Whether a connect may be tried now (not backing off after failures). */
  get available(): boolean {
    return this.isOpen || Date.now() >= this.#retryAt;
  }

  /** When the next connect may be tried (ms since the epoch). */
  get retryAt(): number {
    return this.#retryAt;
  }

  /** The outbox of the open connection; throws when not open. */
  out(): PacketWriter {
    if (this.#conn === undefined || this.#conn.closed) {
      throw new ConnectionError(
        this.address.label,
        `Cannot send to ${this.address.label}: not connected`,
      );
    }
    return this.#conn.out();
  }

  /**
   * Open the connection if it is not open. Rejects with ConnectionError
   * (and starts a backoff) when the server cannot be reached.
   */
  open(): Promise<Connection> {
    if (this.#conn !== undefined && !this.#conn.closed) return Promise.resolve(this.#conn);
    if (this.#closed) {
      return Promise.reject(
        new ConnectionError(this.address.label, `Cannot connect to ${this.address.label}: closed`),
      );
    }
    this.#opening ??= this.#connect().finally(() => (this.#opening = undefined));
    return this.#opening;
  }

  async #connect(): Promise<Connection> {
    const { hostname, port, label } = this.address;
    // A connection that is closing (flushing, or its close not yet reported)
    // hands its requests back first: until it has, a request written on a
    // new connection would be taken back with them and sent twice.
    if (this.#runs.size > 0) await Promise.all(this.#runs);
    let tcp: Deno.TcpConn | Deno.TlsConn;
    // Settled: the attempt won or lost the race; a connection that comes
    // after is closed at once.
    let settled = false;
    let cancelTimeout: (() => void) | undefined;
    try {
      const tls = this.#options.tls;
      const attempt: Promise<Deno.TcpConn | Deno.TlsConn> = tls
        ? Deno.connectTls({ hostname, port, ...connectTlsOptions(tls) })
        : Deno.connect({ hostname, port });
      // Counts only time the event loop ran: a caller that submits for
      // seconds in one synchronous loop right after making the client must
      // not find its connection "timed out" when the loop ends.
      const timeout = new Promise<never>((_, reject) => {
        cancelTimeout = loopTimeout(
          this.#options.connectTimeoutMs,
          () => reject(new Error(`no answer in ${this.#options.connectTimeoutMs} ms`)),
        );
      });
      attempt.then((c) => {
        if (this.#closed || settled) c.close();
      }, () => {});
      try {
        tcp = await Promise.race([attempt, timeout]);
      } finally {
        settled = true;
        cancelTimeout?.();
      }
    } catch (err) {
      this.#failures++;
      const delay = Math.min(
        this.#options.minBackoffMs * 2 ** (this.#failures - 1),
        this.#options.maxBackoffMs,
      );
      this.#retryAt = Date.now() + delay;
      throw new ConnectionError(
        label,
        `Cannot connect to Gearman server ${label}: ${(err as Error).message}; ${connectHint(err)}`,
        { cause: err },
      );
    }
    if (this.#closed) {
      try {
        tcp.close();
      } catch { /* closed already when it came */ }
      throw new ConnectionError(label, `Cannot connect to ${label}: closed`);
    }
    if ("setNoDelay" in tcp) tcp.setNoDelay(true);
    if (this.#options.tls) {
      try {
        // A server that takes the TCP connection but never answers the TLS
        // handshake (not TLS, or stuck) must not hold the connect forever.
        const ms = this.#options.connectTimeoutMs;
        await withinLoopTime(
          (tcp as Deno.TlsConn).handshake(),
          ms,
          `no TLS handshake in ${ms} ms`,
        );
      } catch (err) {
        tcp.close();
        this.#failures++;
        this.#retryAt = Date.now() + this.#options.minBackoffMs;
        throw new ConnectionError(
          label,
          `Cannot connect to Gearman server ${label} with TLS: ${
            (err as Error).message
          }; check the server's certificate and the CA given to the client${
            this.#options.tls.cert === undefined
              ? " (a server started with --tls-ca also needs a client certificate: tls.cert and tls.key)"
              : ", and that the server's --tls-ca CA signed the client certificate"
          }`,
          { cause: err },
        );
      }
    }
    this.#failures = 0;
    this.#retryAt = 0;
    const events = this.#events;
    const conn = new Connection(tcp, {
      packet: (type, body) => events.packet(type, body),
    }, { magic: Magic.RES, maxPacketSize: this.#options.maxPacketSize });
    this.#conn = conn;
    this.#generation++;
    const run: Promise<unknown> = conn.run().then((err) => {
      this.#runs.delete(run);
      if (this.#conn === conn) this.#conn = undefined;
      events.closed(err);
    });
    this.#runs.add(run);
    return conn;
  }

  /** Flush and close; no reconnects after this. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#conn?.close();
    await this.#opening?.catch(() => {});
    await Promise.all(this.#runs);
  }

  /** Drop the current connection (it may reconnect later). */
  disconnect(): void {
    this.#conn?.close();
  }
}

/** What to do about a failed connect: the usual cause of its error code. */
function connectHint(err: unknown): string {
  const code = (err as { code?: string }).code;
  if (code === "EMFILE" || code === "ENFILE") {
    return "close some files or connections, or raise this process's limit (ulimit -n)";
  }
  if (/failed to lookup address/.test((err as Error).message)) {
    return "the host name does not resolve; check the server address";
  }
  return "is it running?";
}
