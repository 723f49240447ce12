/**
 * The Gearman client: submit jobs to one or more servers and follow them.
 *
 * @module
 */

import type { ClientTlsOptions } from "./tls_options.ts";
import { getLogger } from "@logtape/logtape";
import { buildPacket, Magic } from "../protocol/packet.ts";
import { PacketType as T } from "../protocol/packet_type.ts";
import { DEFAULT_MAX_PACKET_SIZE } from "../protocol/packet_framer.ts";
import { byteString, EMPTY, fromUtf8, toBytes } from "../protocol/_bytes.ts";
import { crc32 } from "./crc32.ts";
import { ConnectionError, JobExceptionError, JobFailedError, ServerError } from "./errors.ts";
import { Job, type JobControl, JobResult } from "./job.ts";
import { ServerConnection } from "./server_connection.ts";
import { parseServerAddress } from "./server_address.ts";

/**
 * How a job with a unique id picks its server.
 *
 * - `"consistent"`: rendezvous hashing of the unique over the server list;
 *   adding or removing a server moves only the uniques that must move.
 * - `"perl"`: as Perl's Gearman::Client does (CRC32 of the unique, shifted,
 *   modulo the server count), so Deno and Perl clients given the same server
 *   list send a unique to the same server and coalesce with each other.
 *
 * Jobs without a unique go round-robin in both modes.
 *
 * @example Pick the Perl-compatible mode
 * ```ts
 * import type { ServerSelection } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const mode: ServerSelection = "perl";
 * assert.equal(mode, "perl");
 * ```
 */
export type ServerSelection = "consistent" | "perl";

/**
 * Options for {@link Client}.
 *
 * @example Two servers, Perl-compatible placement
 * ```ts
 * import type { ClientOptions } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const options: ClientOptions = { servers: ["10.0.0.1:4730", "10.0.0.2"], selection: "perl" };
 * assert.equal(options.servers?.length, 2);
 * ```
 */
export interface ClientOptions {
  /**
   * Servers as `"host"`, `"host:port"` or `"[ipv6]:port"`.
   * @default ["127.0.0.1:4730"]
   */
  servers?: string[];
  /**
   * How a job with a unique id picks its server.
   * @default "consistent"
   */
  selection?: ServerSelection;
  /**
   * Ask servers to forward WORK_EXCEPTION (OPTION_REQ "exceptions"), so a
   * worker's error arrives as a {@link JobExceptionError} with its text
   * instead of a plain {@link JobFailedError}.
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
   * Largest response packet body accepted, in bytes.
   * @default {64 MiB}
   */
  maxPacketSize?: number;
  /**
   * Most submits one connection has written and the server has not yet
   * answered (JOB_CREATED or ERROR). Submits past it wait in the client,
   * in order, and are written as answers come in, so any number of submits
   * can be made at once without a huge send buffer on either side; a
   * submit's packet is also held back while more than 1 MiB of earlier
   * output waits to be written. Waiting in this queue is not a timeout.
   * @default 1024
   */
  maxInFlight?: number;
}

/**
 * Options for {@link Client.submit}.
 *
 * @example A high-priority job that coalesces on its unique id
 * ```ts
 * import type { SubmitOptions } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const options: SubmitOptions = { priority: "high", unique: "report-2026-11" };
 * assert.equal(options.priority, "high");
 * ```
 */
export interface SubmitOptions {
  /**
   * `"high"`, `"normal"` or `"low"`.
   * @default "normal"
   */
  priority?: "high" | "normal" | "low";
  /**
   * Unique id (at most 64 bytes): jobs with the same function and unique
   * run once, and every foreground submitter gets the result. `"-"` makes
   * the data the unique id.
   * @default undefined (never coalesces)
   */
  unique?: string;
  /**
   * Detach: the result resolves (empty) once the server has queued the job.
   * @default false
   */
  background?: boolean;
  /**
   * Run at this time (SUBMIT_JOB_EPOCH, which is always a normal-priority
   * background job). A `Date` or milliseconds since the epoch.
   */
  runAt?: Date | number;
  /** Aborting it stops following the job: its result rejects with the abort reason. */
  signal?: AbortSignal;
}

/**
 * What a server knows of a job (GET_STATUS, GET_STATUS_UNIQUE).
 *
 * @example Read a status
 * ```ts
 * import type { JobStatus } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const s: JobStatus = { known: true, running: true, numerator: 1, denominator: 4 };
 * assert.equal(s.numerator / s.denominator, 0.25);
 * ```
 */
export interface JobStatus {
  /** The server knows the job (queued or running). */
  known: boolean;
  /** A worker is running it. */
  running: boolean;
  /** Last WORK_STATUS numerator (0 if none). */
  numerator: number;
  /** Last WORK_STATUS denominator (0 if none). */
  denominator: number;
  /** Clients waiting on it (GET_STATUS_UNIQUE only). */
  clients?: number;
}

type Request =
  | {
    kind: "submit";
    job: JobControl;
    fn: string;
    background: boolean;
    packet: Uint8Array;
    unique: string | undefined;
    aborted: boolean;
  }
  | { kind: "status"; resolve(s: JobStatus): void; reject(e: Error): void; unique: boolean }
  | { kind: "echo"; resolve(b: Uint8Array): void; reject(e: Error): void }
  | { kind: "option" };

type SubmitRequest = Request & { kind: "submit" };

/** A first-in first-out queue with cheap removal from the front. */
class Fifo<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined as T;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  takeAll(): T[] {
    const rest = this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return rest;
  }
}

/** Output past which a submit waits for answers before it is written. */
const MAX_SUBMIT_BACKLOG = 1024 * 1024;

/** Per-server state of a client. */
class ClientServer {
  readonly conn: ServerConnection;
  /** Requests written and waiting for their reply, in the order sent. */
  readonly pending: Fifo<Request> = new Fifo();
  /** Submits for this server not written yet (too many in flight), in order. */
  readonly waiting: Fifo<SubmitRequest> = new Fifo();
  /** OPTION_REQ "exceptions" was sent on the current connection. */
  optionSent = false;
  /** Foreground jobs by handle. */
  readonly jobs: Map<string, Set<{ job: JobControl; fn: string }>> = new Map();

  constructor(conn: ServerConnection) {
    this.conn = conn;
  }

  push(r: Request): void {
    this.pending.push(r);
  }

  shift(): Request | undefined {
    return this.pending.shift();
  }

  /** Everything written or waiting to be, in order, leaving both queues empty. */
  takeAll(): Request[] {
    const written = this.pending.takeAll();
    for (const r of this.waiting.takeAll()) written.push(r);
    return written;
  }
}

const SUBMIT_TYPES = {
  high: [T.SUBMIT_JOB_HIGH, T.SUBMIT_JOB_HIGH_BG],
  normal: [T.SUBMIT_JOB, T.SUBMIT_JOB_BG],
  low: [T.SUBMIT_JOB_LOW, T.SUBMIT_JOB_LOW_BG],
} as const;

/**
 * A Gearman client. Submits jobs to one or more servers (chosen by unique
 * id, with failover past servers that are down), follows their updates and
 * results, and asks for job status. Connections open on first use.
 *
 * @example Run a job against a worker
 * ```ts
 * import { Client } from "@x/gearman/client";
 * import { Worker } from "@x/gearman/worker";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const servers = [`127.0.0.1:${server.addr.port}`];
 * await using worker = new Worker({ servers });
 * worker.register("reverse", (job) => [...job.text()].reverse().join(""));
 * worker.start();
 * await using client = new Client({ servers });
 * const result = await client.run("reverse", "hello");
 * assert.equal(result.text(), "olleh");
 * ```
 */
export class Client implements AsyncDisposable {
  readonly #servers: ClientServer[];
  readonly #selection: ServerSelection;
  readonly #exceptions: boolean;
  readonly #maxInFlight: number;
  readonly #log = getLogger(["gearman", "client"]);
  #next = 0;
  #closed = false;

  /**
   * Make a client; nothing connects until the first request.
   *
   * @param options Servers and behaviour.
   * @throws {TypeError} When a server address is malformed or the list is empty.
   */
  constructor(options: ClientOptions = {}) {
    const {
      servers = ["127.0.0.1:4730"],
      selection = "consistent",
      exceptions = true,
      connectTimeoutMs = 5000,
      maxPacketSize = DEFAULT_MAX_PACKET_SIZE,
      maxInFlight = 1024,
      tls,
    } = options;
    if (servers.length === 0) throw new TypeError("Cannot make client: the server list is empty");
    if (selection !== "consistent" && selection !== "perl") {
      throw new TypeError(
        `Cannot make client: selection must be "consistent" or "perl", received ${selection}`,
      );
    }
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
      throw new TypeError(
        `Cannot make client: maxInFlight must be a positive integer, received ${maxInFlight}`,
      );
    }
    this.#selection = selection;
    this.#exceptions = exceptions;
    this.#maxInFlight = maxInFlight;
    this.#servers = servers.map((s) => {
      const address = parseServerAddress(s);
      // Assigned right below; the callbacks run later.
      // deno-lint-ignore prefer-const
      let server!: ClientServer;
      const conn = new ServerConnection(address, {
        packet: (type, body) => this.#packet(server, type, body),
        closed: (err) => this.#lost(server, err),
      }, { connectTimeoutMs, maxPacketSize, minBackoffMs: 100, maxBackoffMs: 30_000, tls });
      server = new ClientServer(conn);
      return server;
    });
  }

  /**
   * Submit a job. Returns at once; the job's `handle` resolves when a
   * server has accepted it and `result` when it ends.
   *
   * @param fn The function name.
   * @param data The job data (strings are sent as UTF-8).
   * @param options Priority, unique id, background, run-at time, abort signal.
   * @returns The job.
   *
   * @example Submit in the background
   * ```ts
   * import { Client } from "@x/gearman/client";
   * import { serve } from "@x/gearman/server";
   * import assert from "node:assert/strict";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0 });
   * await using client = new Client({ servers: [`127.0.0.1:${server.addr.port}`] });
   * const job = client.submit("index", "doc-42", { background: true });
   * assert.match(await job.handle, /^H:/);
   * ```
   */
  submit(fn: string, data: string | Uint8Array, options: SubmitOptions = {}): Job {
    const { priority = "normal", unique, runAt, signal } = options;
    const background = options.background === true || runAt !== undefined;
    let control!: JobControl;
    const job = new Job(fn, unique, background, (c) => (control = c));
    if (this.#closed) {
      control.fail(new ConnectionError("-", "Cannot submit job: the client is closed"));
      return job;
    }
    const types = SUBMIT_TYPES[priority];
    if (types === undefined) {
      control.fail(
        new TypeError(`Cannot submit job: priority must be high, normal or low, got ${priority}`),
      );
      return job;
    }
    const dataBytes = toBytes(data);
    const uniqueBytes = unique === undefined ? EMPTY : toBytes(unique);
    if (uniqueBytes.length > 64) {
      control.fail(
        new RangeError(
          `Cannot submit job: unique id is ${uniqueBytes.length} bytes, the limit is 64`,
        ),
      );
      return job;
    }
    const fnBytes = toBytes(fn);
    let type: number = types[background ? 1 : 0];
    const parts: Uint8Array[] = [fnBytes, uniqueBytes];
    if (runAt !== undefined) {
      type = T.SUBMIT_JOB_EPOCH;
      const ms = runAt instanceof Date ? runAt.getTime() : runAt;
      parts.push(toBytes(String(Math.max(0, Math.floor(ms / 1000)))));
    }
    parts.push(dataBytes);
    const packet = buildPacket(Magic.REQ, type, ...parts);
    const request: SubmitRequest = {
      kind: "submit",
      job: control,
      fn,
      background,
      packet,
      unique: unique === "-" ? byteString(dataBytes) : unique,
      aborted: false,
    };
    if (signal) {
      const onAbort = () => {
        request.aborted = true;
        control.fail(signal.reason ?? new DOMException("Aborted", "AbortError"));
      };
      if (signal.aborted) {
        onAbort();
        return job;
      }
      signal.addEventListener("abort", onAbort, { once: true });
      job.result.finally(() => signal.removeEventListener("abort", onAbort)).catch(() => {});
    }
    void this.#send(request, request.unique, []);
    return job;
  }

  /**
   * Submit a foreground job and wait for its result.
   *
   * @param fn The function name.
   * @param data The job data.
   * @param options Priority, unique id, abort signal.
   * @returns The result.
   * @throws {JobFailedError} When the worker sent WORK_FAIL.
   * @throws {JobExceptionError} When the worker sent WORK_EXCEPTION.
   * @throws {ConnectionError} When no server could take the job, or the connection was lost.
   *
   * @example Run and read JSON
   * ```ts ignore
   * const stats = (await client.run("stats", JSON.stringify({ day: 1 }))).json();
   * ```
   */
  run(
    fn: string,
    data: string | Uint8Array,
    options: Omit<SubmitOptions, "background" | "runAt"> = {},
  ): Promise<JobResult> {
    return this.submit(fn, data, options).result;
  }

  /**
   * Ask the servers what they know of a job handle (each in turn until one
   * knows it).
   *
   * @param handle A job handle.
   * @returns The status; `known: false` when no server knows it.
   */
  async status(handle: string): Promise<JobStatus> {
    let last: JobStatus = { known: false, running: false, numerator: 0, denominator: 0 };
    let reached = false;
    let error: Error | undefined;
    for (const server of this.#servers) {
      try {
        const s = await this.#statusOn(server, T.GET_STATUS, handle);
        reached = true;
        if (s.known) return s;
        last = s;
      } catch (err) {
        error = err as Error;
      }
    }
    if (!reached && error) throw error;
    return last;
  }

  /**
   * Ask the server a unique id maps to what it knows of that job
   * (GET_STATUS_UNIQUE; C++ gearmand and this package's server).
   *
   * @param unique The unique id.
   * @returns The status, with the count of waiting clients.
   */
  async statusByUnique(unique: string): Promise<JobStatus> {
    for (const server of this.#order(unique)) {
      try {
        return await this.#statusOn(server, T.GET_STATUS_UNIQUE, unique);
      } catch (err) {
        if (!(err instanceof ConnectionError)) throw err;
      }
    }
    throw this.#noServer("ask for job status");
  }

  async #statusOn(server: ClientServer, type: number, key: string): Promise<JobStatus> {
    await this.#open(server);
    const { promise, resolve, reject } = Promise.withResolvers<JobStatus>();
    server.push({ kind: "status", resolve, reject, unique: type === T.GET_STATUS_UNIQUE });
    server.conn.out().bytes(buildPacket(Magic.REQ, type, key));
    return promise;
  }

  /**
   * Send ECHO_REQ to the first reachable server and return its answer.
   *
   * @param data What to echo.
   * @returns The bytes echoed back.
   * @throws {ConnectionError} When no server can be reached.
   */
  async echo(data: string | Uint8Array): Promise<Uint8Array> {
    let last: Error | undefined;
    for (const server of this.#order(undefined)) {
      try {
        await this.#open(server);
      } catch (err) {
        if (err instanceof ConnectionError) {
          last = err;
          continue;
        }
        throw err;
      }
      const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
      server.push({ kind: "echo", resolve, reject });
      server.conn.out().bytes(buildPacket(Magic.REQ, T.ECHO_REQ, data));
      return await promise;
    }
    throw this.#noServer("echo", last);
  }

  /** Servers in the order a request with this unique should try them. */
  #order(unique: string | undefined): ClientServer[] {
    const servers = this.#servers;
    const n = servers.length;
    if (n === 1) return servers;
    if (unique === undefined || unique === "") {
      const start = this.#next++ % n;
      return [...servers.slice(start), ...servers.slice(0, start)];
    }
    const bytes = toBytes(unique);
    if (this.#selection === "perl") {
      const hv = (crc32(bytes) >>> 16) & 0x7fff;
      const out: ClientServer[] = [];
      for (let off = 0; off < n; off++) out.push(servers[(hv + off) % n]!);
      return out;
    }
    const scored = servers.map((s) => {
      const label = toBytes(s.conn.address.label + "\0");
      const key = new Uint8Array(label.length + bytes.length);
      key.set(label);
      key.set(bytes, label.length);
      return { s, score: crc32(key) };
    });
    scored.sort((a, b) => b.score - a.score);
    return scored.map((x) => x.s);
  }

  #noServer(what: string, last?: Error): ConnectionError {
    const list = this.#servers.map((s) => s.conn.address.label).join(", ");
    return new ConnectionError(
      list,
      `Cannot ${what}: no Gearman server could be reached (tried ${list}${
        last ? `; last error: ${last.message}` : ""
      }); check they are running`,
      last ? { cause: last } : undefined,
    );
  }

  async #open(server: ClientServer): Promise<void> {
    await server.conn.open();
    if (this.#exceptions && !server.optionSent) {
      // First request on this connection: ask for exceptions before anything else.
      server.optionSent = true;
      server.push({ kind: "option" });
      server.conn.out().bytes(buildPacket(Magic.REQ, T.OPTION_REQ, "exceptions"));
    }
  }

  /** Send a submit to the first server that takes it, skipping `tried`. */
  async #send(
    request: SubmitRequest,
    unique: string | undefined,
    tried: ClientServer[],
  ): Promise<void> {
    const order = this.#order(unique).filter((s) => !tried.includes(s));
    // Servers backing off go last, so a server that is down is skipped while others are up.
    order.sort((a, b) => Number(b.conn.available) - Number(a.conn.available));
    let lastError: Error | undefined;
    for (const server of order) {
      if (request.aborted) return;
      // Once open (and asked for exceptions), submits go straight to the queue.
      if (!server.conn.isOpen || (this.#exceptions && !server.optionSent)) {
        try {
          await this.#open(server);
        } catch (err) {
          lastError = err as Error;
          continue;
        }
        if (request.aborted) return;
        if (!server.conn.isOpen) {
          lastError = new ConnectionError(
            server.conn.address.label,
            `Lost the connection to ${server.conn.address.label} as it opened`,
          );
          continue;
        }
      }
      server.waiting.push(request);
      this.#pump(server);
      return;
    }
    request.job.fail(
      lastError instanceof ConnectionError && this.#servers.length === 1
        ? lastError
        : this.#noServer(`submit job of function "${request.fn}"`, lastError),
    );
  }

  /**
   * Write waiting submits while fewer than `maxInFlight` are unanswered
   * and the outbox is not backed up. Called when a submit is queued and
   * when an answer frees a place.
   */
  #pump(server: ClientServer): void {
    const { waiting, pending, conn } = server;
    if (waiting.length === 0 || !conn.isOpen) return;
    const max = this.#maxInFlight;
    while (waiting.length > 0 && pending.length < max) {
      // Always let one through when nothing is in flight, however large.
      if (pending.length > 0 && conn.backlog > MAX_SUBMIT_BACKLOG) return;
      const r = waiting.shift()!;
      if (r.aborted) continue;
      server.push(r);
      conn.out().bytes(r.packet);
    }
  }

  #packet(server: ClientServer, type: number, body: Uint8Array): void {
    this.#answer(server, type, body);
    if (server.waiting.length > 0) this.#pump(server);
  }

  #answer(server: ClientServer, type: number, body: Uint8Array): void {
    switch (type) {
      case T.JOB_CREATED: {
        const r = server.shift();
        if (r?.kind !== "submit") return this.#confused(server, "JOB_CREATED");
        const handle = byteString(body);
        r.job.created(handle);
        if (r.background) {
          r.job.complete(new JobResult(EMPTY));
        } else if (!r.aborted) {
          let set = server.jobs.get(handle);
          if (set === undefined) server.jobs.set(handle, set = new Set());
          set.add({ job: r.job, fn: r.fn });
        }
        return;
      }
      case T.ERROR: {
        const nul = body.indexOf(0);
        const code = fromUtf8(nul < 0 ? body : body.subarray(0, nul));
        const text = nul < 0 ? "" : fromUtf8(body.subarray(nul + 1));
        const r = server.shift();
        const err = new ServerError(server.conn.address.label, code, text);
        if (r === undefined) {
          this.#log.warn("Server {server} sent an ERROR nobody asked for: {code} {text}", {
            server: server.conn.address.label,
            code,
            text,
          });
        } else if (r.kind === "submit") r.job.fail(err);
        else if (r.kind === "status" || r.kind === "echo") r.reject(err);
        // An "option" refused (old servers) just means no exceptions.
        return;
      }
      case T.STATUS_RES:
      case T.STATUS_RES_UNIQUE: {
        const r = server.shift();
        if (r?.kind !== "status") return this.#confused(server, "STATUS_RES");
        const a = fromUtf8(body).split("\0");
        r.resolve({
          known: a[1] === "1",
          running: a[2] === "1",
          numerator: Number(a[3]) || 0,
          denominator: Number(a[4]) || 0,
          ...(type === T.STATUS_RES_UNIQUE ? { clients: Number(a[5]) || 0 } : {}),
        });
        return;
      }
      case T.ECHO_RES: {
        const r = server.shift();
        if (r?.kind !== "echo") return this.#confused(server, "ECHO_RES");
        r.resolve(body.slice());
        return;
      }
      case T.OPTION_RES: {
        const r = server.shift();
        if (r?.kind !== "option") return this.#confused(server, "OPTION_RES");
        return;
      }
      case T.WORK_DATA:
      case T.WORK_WARNING:
      case T.WORK_STATUS:
      case T.WORK_COMPLETE:
      case T.WORK_FAIL:
      case T.WORK_EXCEPTION:
        return this.#work(server, type, body);
      default:
        this.#log.warn("Server {server} sent an unexpected packet type {type}; ignoring it", {
          server: server.conn.address.label,
          type,
        });
    }
  }

  #work(server: ClientServer, type: number, body: Uint8Array): void {
    const nul = body.indexOf(0);
    const handle = byteString(body, 0, nul < 0 ? body.length : nul);
    const set = server.jobs.get(handle);
    if (set === undefined) return;
    const rest = nul < 0 ? EMPTY : body.subarray(nul + 1);
    switch (type) {
      case T.WORK_DATA:
      case T.WORK_WARNING: {
        const data = new JobResult(rest.slice());
        for (const { job } of set) {
          job.update({ type: type === T.WORK_DATA ? "data" : "warning", data });
        }
        return;
      }
      case T.WORK_STATUS: {
        const [num = "0", den = "0"] = fromUtf8(rest).split("\0");
        for (const { job } of set) {
          job.update({
            type: "status",
            numerator: Number(num) || 0,
            denominator: Number(den) || 0,
          });
        }
        return;
      }
      case T.WORK_COMPLETE: {
        server.jobs.delete(handle);
        const result = new JobResult(rest.slice());
        for (const { job } of set) job.complete(result);
        return;
      }
      case T.WORK_FAIL:
        server.jobs.delete(handle);
        for (const { job, fn } of set) job.fail(new JobFailedError(fn, handle));
        return;
      case T.WORK_EXCEPTION: {
        server.jobs.delete(handle);
        const data = rest.slice();
        for (const { job, fn } of set) job.fail(new JobExceptionError(fn, handle, data));
        return;
      }
    }
  }

  #confused(server: ClientServer, what: string): void {
    this.#log.warn("Server {server} sent {what} out of order; reconnecting", {
      server: server.conn.address.label,
      what,
    });
    server.conn.disconnect();
  }

  /** A connection ended: resend what was not accepted, fail what was running. */
  #lost(server: ClientServer, err: Error | undefined): void {
    server.optionSent = false;
    const label = server.conn.address.label;
    const why = err ? `: ${err.message}` : "";
    for (const r of server.takeAll()) {
      if (r.kind === "submit") {
        if (!r.aborted && !this.#closed) void this.#send(r, r.unique, [server]);
        else if (!r.aborted) {
          r.job.fail(new ConnectionError(label, `Cannot submit job: the client was closed`));
        }
      } else if (r.kind === "status" || r.kind === "echo") {
        r.reject(new ConnectionError(label, `Lost the connection to ${label}${why}`));
      }
    }
    for (const [handle, set] of server.jobs) {
      for (const { job } of set) {
        job.fail(
          new ConnectionError(
            label,
            this.#closed
              ? `Cannot follow job ${handle}: the client was closed while it ran`
              : `Lost the connection to ${label} while job ${handle} was running${why}; the job may still run, but its result cannot reach this client`,
          ),
        );
      }
    }
    server.jobs.clear();
  }

  /**
   * Close every connection. Jobs still running reject with ConnectionError.
   *
   * @returns Resolves once closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#servers.map((s) => s.conn.close()));
  }

  /** Close every connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
