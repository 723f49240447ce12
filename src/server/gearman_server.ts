// The Gearman server: accepts connections, frames their bytes, and hands
// packets to the dispatcher and admin lines to the admin commands.

import { getLogger, type Logger } from "@logtape/logtape";
import { Magic } from "../protocol/packet.ts";
import { PacketType } from "../protocol/packet_type.ts";
import { DEFAULT_MAX_PACKET_SIZE } from "../protocol/packet_framer.ts";
import type { ProtocolError } from "../protocol/protocol_error.ts";
import { byteString } from "../protocol/_bytes.ts";
import { Connection } from "../transport/connection.ts";
import { AdminCommands } from "./admin_commands.ts";
import { Dispatcher, type DispatcherLog } from "./dispatcher.ts";
import type { Peer } from "./peer.ts";
import type { JobStore } from "./store/job_store.ts";
import { MemoryJobStore } from "./store/memory_store.ts";
import { SqliteJobStore } from "./store/sqlite_store.ts";
import { VERSION } from "../version.ts";

/** The port IANA assigned to Gearman. */
export const DEFAULT_PORT = 4730;

/**
 * Options for {@link serve}.
 *
 * @example Listen on a free loopback port
 * ```ts
 * import { serve, type ServeOptions } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const options: ServeOptions = { hostname: "127.0.0.1", port: 0 };
 * await using server = serve(options);
 * assert.ok(server.addr.port > 0);
 * ```
 */
export interface ServeOptions {
  /**
   * Address to listen on.
   * @default "0.0.0.0"
   */
  hostname?: string;
  /**
   * Port to listen on; 0 picks a free one (read it back from `addr`).
   * @default 4730
   */
  port?: number;
  /**
   * Times a job is handed out to workers that die holding it before it is
   * failed (WORK_FAIL to its clients); 0 retries forever.
   * @default 0
   */
  jobRetries?: number;
  /**
   * Default most jobs queued per function and priority; 0 is unlimited.
   * The admin `maxqueue` command overrides it per function.
   * @default 0
   */
  maxQueue?: number;
  /**
   * Largest packet body accepted, in bytes; larger packets get an ERROR
   * and their connection is closed.
   * @default {64 MiB}
   */
  maxPacketSize?: number;
  /**
   * The host part of job handles (`H:<host>:<n>`).
   * @default the machine's hostname when readable, else "gearman"
   */
  handleHost?: string;
  /**
   * Where background and scheduled jobs are kept: `"memory"` (lost on
   * restart, like gearmand without a queue plugin) or `"sqlite:PATH"` (a
   * SQLite file: a job is committed before its JOB_CREATED is sent, and
   * replayed after a restart; needs --allow-read and --allow-write for
   * PATH's directory).
   * @default "memory"
   */
  store?: string;
  /**
   * SQLite durability: `"normal"` survives the server being killed (kill
   * -9); `"full"` also survives a power cut, at a cost per commit.
   * @default "normal"
   */
  storeSync?: "normal" | "full";
  /**
   * With a durable store: queued jobs kept in memory. Past this, new
   * background jobs are kept only in the store and paged in as workers
   * drain, so a queue can grow far larger than memory.
   * @default 1000000
   */
  maxMemoryJobs?: number;
  /** Aborting it shuts the server down (not gracefully). */
  signal?: AbortSignal;
}

/**
 * Open the store a `store` option names.
 *
 * @throws {TypeError} When the option is not `memory` or `sqlite:PATH`.
 * @throws {StoreError} When the SQLite file cannot be used.
 */
function openStore(spec: string, sync: "normal" | "full"): JobStore {
  if (spec === "memory") return new MemoryJobStore();
  if (spec.startsWith("sqlite:") && spec.length > "sqlite:".length) {
    return SqliteJobStore.open(spec.slice("sqlite:".length), { sync });
  }
  throw new TypeError(
    `Cannot start server: store must be "memory" or "sqlite:PATH", received ${
      JSON.stringify(spec)
    }`,
  );
}

/**
 * Options for {@link Server.shutdown}.
 *
 * @example Drain before stopping
 * ```ts
 * import { serve, type ShutdownOptions } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const server = serve({ hostname: "127.0.0.1", port: 0 });
 * const options: ShutdownOptions = { graceful: true };
 * await server.shutdown(options);
 * assert.equal(await server.finished, undefined);
 * ```
 */
export interface ShutdownOptions {
  /**
   * Stop accepting connections but let the open ones finish; `finished`
   * resolves when the last one closes. Otherwise close them all now.
   * @default false
   */
  graceful?: boolean;
}

function defaultHandleHost(): string {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
      return Deno.hostname();
    }
  } catch { /* no permission API: fall through */ }
  return "gearman";
}

function logAdapter(logger: Logger): DispatcherLog {
  return {
    debug: (m, p) => logger.debug(m, p),
    info: (m, p) => logger.info(m, p),
    warn: (m, p) => logger.warn(m, p),
    error: (m, p) => logger.error(m, p),
  };
}

/**
 * A running Gearman job server. Made by {@link serve}.
 *
 * @example Start, check the port, stop
 * ```ts
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const server = serve({ hostname: "127.0.0.1", port: 0 });
 * assert.equal(server.addr.hostname, "127.0.0.1");
 * await server.shutdown();
 * ```
 */
export class Server implements AsyncDisposable {
  readonly #listener: Deno.TcpListener;
  readonly #dispatcher: Dispatcher;
  readonly #store: JobStore;
  readonly #admin: AdminCommands;
  readonly #logger: Logger = getLogger(["gearman", "server"]);
  readonly #connections = new Set<Connection>();
  readonly #maxPacketSize: number;
  readonly #finished: PromiseWithResolvers<void> = Promise.withResolvers();
  #accepting = true;
  #stopping = false;
  #done = false;

  /**
   * Start listening. Use {@link serve} to make one.
   *
   * @param options Listen and queue options.
   */
  constructor(options: ServeOptions = {}) {
    const {
      hostname = "0.0.0.0",
      port = DEFAULT_PORT,
      jobRetries = 0,
      maxQueue = 0,
      maxPacketSize = DEFAULT_MAX_PACKET_SIZE,
      handleHost = defaultHandleHost(),
      store = "memory",
      storeSync = "normal",
      maxMemoryJobs = 1_000_000,
      signal,
    } = options;
    checkInteger("port", port, 0, 65535);
    checkInteger("jobRetries", jobRetries, 0, 65535);
    checkInteger("maxQueue", maxQueue, 0, Number.MAX_SAFE_INTEGER);
    checkInteger("maxPacketSize", maxPacketSize, 1, 0xffffffff);
    checkInteger("maxMemoryJobs", maxMemoryJobs, 1, 2 ** 31);
    if (/[\s\0]/.test(handleHost) || handleHost === "") {
      throw new TypeError(
        `Cannot start server: handleHost must be non-empty with no spaces or NUL, received ${
          JSON.stringify(handleHost)
        }`,
      );
    }
    this.#maxPacketSize = maxPacketSize;
    this.#store = openStore(store, storeSync);
    this.#dispatcher = new Dispatcher({
      handleHost,
      jobRetries,
      maxQueue,
      log: logAdapter(this.#logger),
      store: this.#store,
      maxMemoryJobs,
    });
    if (this.#store.durable) {
      const restored = this.#dispatcher.restoreFrom(this.#store);
      this.#logger.info("Job store {store}: restored {count} job(s)", {
        store: this.#store.description,
        count: restored,
      });
    }
    this.#admin = new AdminCommands(this.#dispatcher, {
      version: VERSION,
      shutdown: (graceful) => void this.shutdown({ graceful }),
      logLevel: () => "INFO",
    });
    try {
      this.#listener = Deno.listen({ hostname, port, transport: "tcp" });
    } catch (err) {
      this.#dispatcher.stop();
      this.#store.close();
      throw err;
    }
    if (signal) {
      if (signal.aborted) queueMicrotask(() => void this.shutdown());
      else signal.addEventListener("abort", () => void this.shutdown(), { once: true });
    }
    void this.#acceptLoop();
  }

  /** The address the server listens on. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr as Deno.NetAddr;
  }

  /** Resolves once the server has stopped and every connection is closed. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#accept(conn);
      }
    } catch (err) {
      if (this.#accepting) {
        this.#logger.error("Stopped accepting connections: {error}", { error: String(err) });
      }
    }
  }

  #accept(conn: Deno.TcpConn): void {
    try {
      conn.setNoDelay(true);
    } catch { /* not TCP */ }
    const d = this.#dispatcher;
    // Assigned right after the connection is made; callbacks run later.
    // deno-lint-ignore prefer-const
    let peer!: Peer;
    const admin = this.#admin;
    const connection: Connection = new Connection(conn, {
      packet: (type, body, magic) => d.packet(peer, type, body, magic),
      line: (line) => {
        const reply = admin.run(peer, byteString(line));
        connection.out().byteString(reply);
      },
    }, {
      text: true,
      maxPacketSize: this.#maxPacketSize,
      onProtocolError: (err: ProtocolError) => {
        this.#logger.warn("Closing connection from {remote}: {error}", {
          remote: connection.remote,
          error: err.message,
        });
        connection.out().begin(Magic.RES, PacketType.ERROR).byteString(err.code).nul()
          .text(err.message).end();
      },
    });
    peer = d.addPeer(connection);
    this.#connections.add(connection);
    this.#logger.debug("Accepted connection {id} from {remote}", {
      id: peer.id,
      remote: connection.remote,
    });
    void connection.run().then((err) => {
      if (err && !(err.name === "ProtocolError")) {
        this.#logger.debug("Connection {id} ended: {error}", { id: peer.id, error: err.message });
      }
      d.removePeer(peer);
      this.#connections.delete(connection);
      if (this.#stopping && this.#connections.size === 0) this.#finish();
    });
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#dispatcher.stop();
    try {
      this.#store.close();
    } catch (err) {
      this.#logger.error("Closing job store {store} failed: {error}", {
        store: this.#store.description,
        error: (err as Error).message,
      });
    }
    this.#finished.resolve();
  }

  /**
   * Stop the server. Graceful: stop accepting, let open connections
   * finish, resolve when the last closes. Otherwise close everything now.
   * Safe to call more than once.
   *
   * @param options Shutdown mode.
   * @returns Resolves when the server has finished.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    const { graceful = false } = options;
    if (this.#accepting) {
      this.#accepting = false;
      try {
        this.#listener.close();
      } catch { /* already closed */ }
      this.#logger.info(graceful ? "Shutting down gracefully" : "Shutting down");
    }
    this.#stopping = true;
    if (!graceful) { for (const c of this.#connections) c.close(200); }
    if (this.#connections.size === 0) this.#finish();
    return this.#finished.promise;
  }

  /** Shut down (not gracefully) and wait until finished. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}

function checkInteger(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(
      `Cannot start server: ${name} must be an integer from ${min} to ${max}, received ${v}`,
    );
  }
}

/**
 * Start a Gearman job server.
 *
 * @param options Listen and queue options.
 * @returns The running server.
 * @throws {RangeError} When an option is out of range.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 *
 * @example Serve on a free port and stop
 * ```ts
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * assert.ok(server.addr.port > 0);
 * ```
 */
export function serve(options: ServeOptions = {}): Server {
  return new Server(options);
}
