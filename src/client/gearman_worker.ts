/**
 * The Gearman worker: registers functions with one or more servers and
 * runs their jobs.
 *
 * @module
 */

import type { ClientTlsOptions } from "./tls_options.ts";
import { getLogger } from "@logtape/logtape";
import { buildPacket, Magic, splitArgs } from "../protocol/packet.ts";
import { PacketType as T } from "../protocol/packet_type.ts";
import { DEFAULT_MAX_PACKET_SIZE } from "../protocol/packet_framer.ts";
import { byteString, byteStringBytes, fromUtf8, toBytes } from "../protocol/_bytes.ts";
import { ServerConnection } from "./server_connection.ts";
import { parseServerAddress } from "./server_address.ts";

/**
 * A job as a worker's handler sees it.
 *
 * @example A handler that reports progress
 * ```ts
 * import type { WorkerJob } from "@x/gearman/worker";
 *
 * async function resize(job: WorkerJob): Promise<string> {
 *   job.sendStatus(1, 2);
 *   job.sendData("half way");
 *   return `resized ${job.data.length} bytes`;
 * }
 * console.assert(typeof resize === "function");
 * ```
 */
export interface WorkerJob {
  /** The function name. */
  readonly function: string;
  /** The job handle the server gave it. */
  readonly handle: string;
  /** The unique id it was submitted with ("" if none). */
  readonly unique: string;
  /** The job data. */
  readonly data: Uint8Array;
  /** Aborted when the worker is stopped past its timeout or loses the job's server. */
  readonly signal: AbortSignal;
  /** The data decoded as UTF-8. */
  text(): string;
  /** The data parsed as JSON. */
  json<T = unknown>(): T;
  /** Send WORK_DATA (a partial result) to the waiting clients. */
  sendData(data: string | Uint8Array): void;
  /** Send WORK_WARNING to the waiting clients. */
  sendWarning(data: string | Uint8Array): void;
  /** Send WORK_STATUS (progress `numerator / denominator`). */
  sendStatus(numerator: number, denominator: number): void;
}

/**
 * Runs one job. Return a string or bytes (sent as the result), `undefined`
 * (empty result), or any other value (sent as JSON). Throw to fail the job:
 * the error message is sent as WORK_EXCEPTION, which clients that did not
 * ask for exceptions see as WORK_FAIL.
 *
 * @example A handler
 * ```ts
 * import type { JobHandler } from "@x/gearman/worker";
 * const reverse: JobHandler = (job) => [...job.text()].reverse().join("");
 * console.assert(typeof reverse === "function");
 * ```
 */
export type JobHandler = (job: WorkerJob) => unknown;

/**
 * Options for {@link Worker}.
 *
 * @example Four jobs at once from two servers
 * ```ts
 * import type { WorkerOptions } from "@x/gearman/worker";
 * import assert from "node:assert/strict";
 *
 * const options: WorkerOptions = { servers: ["127.0.0.1:4730", "127.0.0.1:4731"], concurrency: 4 };
 * assert.equal(options.concurrency, 4);
 * ```
 */
export interface WorkerOptions {
  /**
   * Servers as `"host"`, `"host:port"` or `"[ipv6]:port"`.
   * @default ["127.0.0.1:4730"]
   */
  servers?: string[];
  /**
   * Most jobs run at once, across all servers.
   * @default 1
   */
  concurrency?: number;
  /** Sent as SET_CLIENT_ID, shown by the admin `workers` command. */
  clientId?: string;
  /**
   * Report a thrown error as WORK_EXCEPTION (with its message); false sends
   * WORK_FAIL, for servers that do not know WORK_EXCEPTION.
   * @default true
   */
  exceptions?: boolean;
  /**
   * Longest wait for a TCP connection, in milliseconds. Only time the event
   * loop was free counts: a long synchronous stretch (a loop of submits)
   * does not time the connection out.
   * @default 5000
   */
  connectTimeoutMs?: number;
  /**
   * Connect with TLS (servers started with --tls-cert/--tls-key). `caCerts`
   * are PEM certificates to trust besides the system's (e.g. a private CA);
   * `cert` and `key` are this client's certificate, for servers that
   * require one (--tls-ca).
   * @default undefined (plain TCP)
   */
  tls?: ClientTlsOptions;
  /**
   * Largest job packet accepted, in bytes.
   * @default {64 MiB}
   */
  maxPacketSize?: number;
}

/**
 * Options for {@link Worker.register}.
 *
 * @example A function that may run at most 30 s
 * ```ts
 * import type { RegisterOptions } from "@x/gearman/worker";
 * const options: RegisterOptions = { timeoutMs: 30_000 };
 * console.assert(options.timeoutMs === 30000);
 * ```
 */
export interface RegisterOptions {
  /**
   * Registered with CAN_DO_TIMEOUT: the server takes the job back (and
   * gives it to another worker) if it runs longer than this.
   */
  timeoutMs?: number;
}

/**
 * Options for {@link Worker.stop}.
 *
 * @example Give jobs 10 s to finish
 * ```ts
 * import type { StopOptions } from "@x/gearman/worker";
 * const options: StopOptions = { timeoutMs: 10_000 };
 * console.assert(options.timeoutMs === 10000);
 * ```
 */
export interface StopOptions {
  /**
   * After this long, the signals of jobs still running are aborted (stop
   * still waits for them to return).
   * @default Infinity
   */
  timeoutMs?: number;
}

interface Registration {
  handler: JobHandler;
  timeoutMs: number;
}

interface RunningJob {
  controller: AbortController;
  server: WorkerServer;
}

/** Per-server state of a worker. */
class WorkerServer {
  readonly conn: ServerConnection;
  /** A GRAB is out and its answer has not come. */
  grabbing = false;
  /** PRE_SLEEP was sent; waiting for NOOP. */
  sleeping = false;
  /** Use GRAB_JOB_UNIQ (falls back to GRAB_JOB on servers without it). */
  uniq = true;
  reconnectTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(conn: ServerConnection) {
    this.conn = conn;
  }
}

/**
 * A Gearman worker. Register handlers, then `start()`: it connects to every
 * server, registers the functions, grabs jobs (GRAB_JOB_UNIQ), sleeps with
 * PRE_SLEEP when there are none and wakes on NOOP, runs up to
 * `concurrency` jobs at once, and reconnects to servers that go away.
 * `stop()` (or `await using`) stops grabbing, lets jobs in flight finish
 * and closes the connections.
 *
 * @example Serve a function
 * ```ts
 * import { Worker } from "@x/gearman/worker";
 * import { Client } from "@x/gearman/client";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const servers = [`127.0.0.1:${server.addr.port}`];
 * await using worker = new Worker({ servers });
 * worker.register("sum", (job) => job.json<number[]>().reduce((a, b) => a + b, 0));
 * worker.start();
 * await using client = new Client({ servers });
 * assert.equal((await client.run("sum", "[1,2,3]")).json(), 6);
 * ```
 */
export class Worker implements AsyncDisposable {
  readonly #servers: WorkerServer[];
  readonly #functions = new Map<string, Registration>();
  readonly #concurrency: number;
  readonly #clientId: string | undefined;
  readonly #exceptions: boolean;
  readonly #running = new Set<RunningJob>();
  readonly #log = getLogger(["gearman", "worker"]);
  #started = false;
  #stopping = false;
  #stopped: PromiseWithResolvers<void> | undefined;
  #idle: PromiseWithResolvers<void> | undefined;
  #rotate = 0;

  /**
   * Make a worker; nothing connects until {@link start}.
   *
   * @param options Servers and behaviour.
   * @throws {TypeError} When a server address is malformed or the list is empty.
   * @throws {RangeError} When concurrency is not a positive integer.
   */
  constructor(options: WorkerOptions = {}) {
    const {
      servers = ["127.0.0.1:4730"],
      concurrency = 1,
      clientId,
      exceptions = true,
      connectTimeoutMs = 5000,
      maxPacketSize = DEFAULT_MAX_PACKET_SIZE,
      tls,
    } = options;
    if (servers.length === 0) throw new TypeError("Cannot make worker: the server list is empty");
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(
        `Cannot make worker: concurrency must be a positive integer, received ${concurrency}`,
      );
    }
    this.#concurrency = concurrency;
    this.#clientId = clientId;
    this.#exceptions = exceptions;
    this.#servers = servers.map((s) => {
      // Assigned right below; the callbacks run later.
      // deno-lint-ignore prefer-const
      let server!: WorkerServer;
      const conn = new ServerConnection(parseServerAddress(s), {
        packet: (type, body) => this.#packet(server, type, body),
        closed: (err) => this.#lost(server, err),
      }, { connectTimeoutMs, maxPacketSize, minBackoffMs: 100, maxBackoffMs: 10_000, tls });
      server = new WorkerServer(conn);
      return server;
    });
  }

  /** Jobs running now. */
  get activeJobs(): number {
    return this.#running.size;
  }

  /**
   * Register (or replace) the handler of a function. Servers already
   * connected are told at once.
   *
   * @param fn The function name.
   * @param handler Runs each job.
   * @param options Timeout.
   */
  register(fn: string, handler: JobHandler, options: RegisterOptions = {}): void {
    const { timeoutMs = 0 } = options;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0) {
      throw new RangeError(
        `Cannot register "${fn}": timeoutMs must be a non-negative integer, received ${timeoutMs}`,
      );
    }
    this.#functions.set(fn, { handler, timeoutMs });
    for (const s of this.#servers) {
      if (s.conn.isOpen) {
        s.conn.out().bytes(this.#canDo(fn, timeoutMs));
        this.#pump(s);
      }
    }
  }

  /**
   * Stop taking jobs of a function (CANT_DO).
   *
   * @param fn The function name.
   */
  unregister(fn: string): void {
    if (!this.#functions.delete(fn)) return;
    for (const s of this.#servers) {
      if (s.conn.isOpen) s.conn.out().bytes(buildPacket(Magic.REQ, T.CANT_DO, fn));
    }
  }

  #canDo(fn: string, timeoutMs: number): Uint8Array {
    return timeoutMs > 0
      ? buildPacket(Magic.REQ, T.CAN_DO_TIMEOUT, fn, String(timeoutMs))
      : buildPacket(Magic.REQ, T.CAN_DO, fn);
  }

  /** Connect to every server and start taking jobs. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#stopped = Promise.withResolvers();
    for (const s of this.#servers) void this.#connect(s);
  }

  /**
   * Start, and resolve once the worker has been stopped.
   *
   * @returns Resolves after {@link stop}.
   */
  run(): Promise<void> {
    this.start();
    return this.#stopped!.promise;
  }

  async #connect(server: WorkerServer): Promise<void> {
    server.reconnectTimer = undefined;
    if (this.#stopping) return;
    try {
      await server.conn.open();
    } catch (err) {
      this.#log.warn("{error}", { error: (err as Error).message });
      this.#scheduleReconnect(server);
      return;
    }
    if (this.#stopping) return;
    server.grabbing = false;
    server.sleeping = false;
    const out = server.conn.out();
    if (this.#clientId !== undefined) {
      out.bytes(buildPacket(Magic.REQ, T.SET_CLIENT_ID, this.#clientId));
    }
    for (const [fn, r] of this.#functions) out.bytes(this.#canDo(fn, r.timeoutMs));
    this.#pump(server);
  }

  #scheduleReconnect(server: WorkerServer): void {
    if (this.#stopping || server.reconnectTimer !== undefined) return;
    const delay = Math.max(50, server.conn.retryAt - Date.now());
    server.reconnectTimer = setTimeout(() => void this.#connect(server), delay);
  }

  /** Ask `server` for a job if there is room for one. */
  #pump(server: WorkerServer): void {
    if (
      this.#stopping || server.grabbing || server.sleeping || !server.conn.isOpen ||
      this.#functions.size === 0
    ) return;
    let reserved = this.#running.size;
    for (const s of this.#servers) if (s.grabbing) reserved++;
    if (reserved >= this.#concurrency) return;
    server.grabbing = true;
    server.conn.out().bytes(buildPacket(Magic.REQ, server.uniq ? T.GRAB_JOB_UNIQ : T.GRAB_JOB));
  }

  /** Room for a job: ask the servers that are awake, starting at a rotating one. */
  #pumpAll(): void {
    const n = this.#servers.length;
    const start = this.#rotate++ % n;
    for (let i = 0; i < n; i++) this.#pump(this.#servers[(start + i) % n]!);
  }

  #packet(server: WorkerServer, type: number, body: Uint8Array): void {
    switch (type) {
      case T.NOOP:
        server.sleeping = false;
        this.#pump(server);
        return;
      case T.NO_JOB:
        server.grabbing = false;
        if (this.#stopping) return;
        server.sleeping = true;
        server.conn.out().bytes(buildPacket(Magic.REQ, T.PRE_SLEEP));
        this.#pumpAll();
        return;
      case T.JOB_ASSIGN:
      case T.JOB_ASSIGN_UNIQ:
      case T.JOB_ASSIGN_ALL: {
        server.grabbing = false;
        const args = splitArgs(type, body);
        const handle = byteString(args[0]!);
        const fn = fromUtf8(args[1]!);
        const unique = type === T.JOB_ASSIGN ? "" : fromUtf8(args[2]!);
        const data = args[args.length - 1]!.slice();
        void this.#run(server, handle, fn, unique, data);
        this.#pump(server);
        return;
      }
      case T.ERROR: {
        const [code, text] = splitArgs(T.ERROR, body).map(fromUtf8);
        if (code === "JOB_NOT_FOUND") {
          // A result for a job the server took back (timeout, reconnect).
          this.#log.debug("Server {server} no longer knows a job we answered: {text}", {
            server: server.conn.address.label,
            text,
          });
          return;
        }
        if (code === "PERMISSION_DENIED") {
          // A CAN_DO this worker's certificate may not send (--tls-access).
          this.#log.error("Server {server} refused: {text}", {
            server: server.conn.address.label,
            text,
          });
          return;
        }
        if (server.grabbing && server.uniq) {
          // Servers without GRAB_JOB_UNIQ (Perl Gearman::Server) refuse it: use GRAB_JOB.
          server.uniq = false;
          server.grabbing = false;
          this.#log.info("Server {server} refused GRAB_JOB_UNIQ ({code}); using GRAB_JOB", {
            server: server.conn.address.label,
            code,
          });
          this.#pump(server);
          return;
        }
        this.#log.warn("Server {server} sent ERROR {code}: {text}", {
          server: server.conn.address.label,
          code,
          text,
        });
        return;
      }
      default:
        return;
    }
  }

  async #run(
    server: WorkerServer,
    handle: string,
    fn: string,
    unique: string,
    data: Uint8Array,
  ): Promise<void> {
    const controller = new AbortController();
    const entry: RunningJob = { controller, server };
    this.#running.add(entry);
    const handleBytes = byteStringBytes(handle);
    const generation = server.conn.generation;
    // Answer on the connection the job came from; after a reconnect the server
    // has requeued it and the answer would only be refused.
    const send = (t: number, ...rest: (string | Uint8Array)[]) => {
      if (server.conn.isOpen && server.conn.generation === generation) {
        server.conn.out().bytes(buildPacket(Magic.REQ, t, handleBytes, ...rest));
      }
    };
    const registration = this.#functions.get(fn);
    try {
      if (registration === undefined) {
        throw new Error(`This worker has no handler for function "${fn}"`);
      }
      const job: WorkerJob = {
        function: fn,
        handle,
        unique,
        data,
        signal: controller.signal,
        text: () => fromUtf8(data),
        json: <J>() => JSON.parse(fromUtf8(data)) as J,
        sendData: (d) => send(T.WORK_DATA, toBytes(d)),
        sendWarning: (d) => send(T.WORK_WARNING, toBytes(d)),
        sendStatus: (n, d) => send(T.WORK_STATUS, String(n), String(d)),
      };
      const value = await registration.handler(job);
      send(T.WORK_COMPLETE, resultBytes(value));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.#log.warn("Job {handle} of {function} failed: {error}", {
        handle,
        function: fn,
        error: message,
      });
      if (this.#exceptions) {
        send(T.WORK_EXCEPTION, message);
        // The Perl server (no GRAB_JOB_UNIQ) relays WORK_EXCEPTION but ends jobs on WORK_FAIL only.
        if (!server.uniq) send(T.WORK_FAIL);
      } else send(T.WORK_FAIL);
    } finally {
      this.#running.delete(entry);
      if (this.#running.size === 0 && this.#idle) {
        const idle = this.#idle;
        this.#idle = undefined;
        idle.resolve();
      }
      this.#pumpAll();
    }
  }

  #lost(server: WorkerServer, err: Error | undefined): void {
    server.grabbing = false;
    server.sleeping = false;
    for (const job of this.#running) {
      if (job.server === server) {
        job.controller.abort(
          new Error(
            `Lost the connection to ${server.conn.address.label}: the server requeues the job`,
          ),
        );
      }
    }
    if (this.#stopping) return;
    this.#log.warn("Lost the connection to {server}{why}; reconnecting", {
      server: server.conn.address.label,
      why: err ? `: ${err.message}` : "",
    });
    this.#scheduleReconnect(server);
  }

  /**
   * Stop taking jobs, let the jobs in flight finish, then close the
   * connections. Safe to call more than once.
   *
   * @param options How long to wait before aborting jobs' signals.
   * @returns Resolves once every job has finished and connections are closed.
   */
  async stop(options: StopOptions = {}): Promise<void> {
    const { timeoutMs = Infinity } = options;
    if (!this.#stopping) {
      this.#stopping = true;
      for (const s of this.#servers) {
        clearTimeout(s.reconnectTimer);
        s.reconnectTimer = undefined;
      }
    }
    // A GRAB already sent may still bring a job: take it and run it rather
    // than drop it on close (the server would requeue it, but later).
    const grabDeadline = Date.now() + 2000;
    while (
      this.#servers.some((s) => s.grabbing && s.conn.isOpen) && Date.now() < grabDeadline
    ) {
      await new Promise((r) => setTimeout(r, 5));
    }
    if (this.#running.size > 0) {
      this.#idle ??= Promise.withResolvers();
      let timer: ReturnType<typeof setTimeout> | undefined;
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          for (const j of this.#running) {
            j.controller.abort(new Error("The worker is stopping"));
          }
        }, timeoutMs);
      }
      await this.#idle.promise;
      clearTimeout(timer);
    }
    await Promise.all(this.#servers.map((s) => s.conn.close()));
    this.#stopped?.resolve();
  }

  /** Stop (waiting for jobs in flight). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** A handler's return value as result bytes. */
function resultBytes(value: unknown): Uint8Array {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (typeof value === "string") return toBytes(value);
  if (value instanceof Uint8Array) return value;
  return toBytes(JSON.stringify(value));
}
