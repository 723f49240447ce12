// The Gloom master (client): submits jobs over the master port and waits
// for their responses; asks the server for its queues.

import { DEFAULT_GLOOM_MASTER_PORT, DEFAULT_MAX_FRAME_SIZE } from "./frame.ts";
import { type GloomErrorCode, type GloomId, isGloomId } from "./messages.ts";
import { GloomSocket } from "./socket.ts";
import { connectGloom } from "./connect.ts";
import type { ClientTlsOptions } from "../client/tls_options.ts";

const decoder = new TextDecoder();

/**
 * An error frame from the server, or the connection ending with requests
 * outstanding. `code` is the frame's `error` field (see
 * {@link GloomErrorCode}); `id` the job it is about.
 *
 * @example Tell a duplicate id from other errors
 * ```ts
 * import { GloomError } from "@x/gearman/gloom";
 * import assert from "node:assert/strict";
 *
 * const err = new GloomError("duplicate_id", "Job id \"a\" is already outstanding", "a");
 * assert.equal(err.code, "duplicate_id");
 * assert.equal(err.id, "a");
 * assert.ok(err instanceof Error);
 * ```
 */
export class GloomError extends Error {
  /** The error code (the error frame's `error` field). */
  readonly code: GloomErrorCode;
  /** The job id the error is about, if any. */
  readonly id: GloomId | undefined;

  /**
   * Make an error.
   *
   * @param code The error code.
   * @param message What went wrong.
   * @param id The job id it is about.
   */
  constructor(code: GloomErrorCode, message: string, id?: GloomId) {
    super(message);
    this.name = "GloomError";
    this.code = code;
    this.id = id;
  }
}

/** The error an error frame from the server carries (for the master and worker clients). */
export function gloomErrorOf(msg: Record<string, unknown>): GloomError {
  return new GloomError(
    String(msg.error) as GloomErrorCode,
    String(msg.message ?? msg.error),
    isGloomId(msg.id) ? msg.id : undefined,
  );
}

/**
 * Where and how to connect, for {@link GloomMaster.connect} and
 * {@link GloomWorker.connect}.
 *
 * @example Connect to a server on another host
 * ```ts
 * import type { GloomConnectOptions } from "@x/gearman/gloom";
 * const options: GloomConnectOptions = { hostname: "jobs.internal", port: 9998 };
 * console.assert(options.port === 9998);
 * ```
 */
export interface GloomConnectOptions {
  /**
   * The server's host name or address.
   * @default "127.0.0.1"
   */
  hostname?: string;
  /**
   * The server's port.
   * @default 9998 for masters, 9999 for workers
   */
  port?: number;
  /**
   * Largest frame accepted from the server, in bytes.
   * @default {16 MiB}
   */
  maxFrameSize?: number;
  /**
   * Connect over TLS (a server started with `--gloom-tls`): CAs to trust
   * besides the system's (`caCerts`, PEM), and an optional client
   * certificate.
   * @default undefined (plain TCP)
   */
  tls?: ClientTlsOptions;
}

/**
 * Options for {@link GloomMaster.submit}.
 *
 * @example Give up waiting after a second
 * ```ts
 * import type { GloomSubmitOptions } from "@x/gearman/gloom";
 * const options: GloomSubmitOptions = { signal: AbortSignal.timeout(1000) };
 * console.assert(options.signal !== undefined);
 * ```
 */
export interface GloomSubmitOptions {
  /**
   * Stop waiting when aborted: the promise rejects with the signal's
   * reason. The job still runs; its id stays taken (submitting it again
   * from this master rejects with `duplicate_id`) until its response is in.
   */
  signal?: AbortSignal;
}

/**
 * One job type in a {@link GloomStatus}.
 *
 * @example
 * ```ts
 * import type { GloomJobTypeStatus } from "@x/gearman/gloom";
 * const s: GloomJobTypeStatus = { queued: 2, running: 1, workers: 3 };
 * console.assert(s.queued + s.running === 3);
 * ```
 */
export interface GloomJobTypeStatus {
  /** Jobs waiting for a worker. */
  queued: number;
  /** Jobs a worker holds. */
  running: number;
  /** Workers (Gloom and Gearman) that can do this job type. */
  workers: number;
}

/**
 * The server's queues, as {@link GloomMaster.status} returns them.
 *
 * @example
 * ```ts
 * import type { GloomStatus } from "@x/gearman/gloom";
 * const s: GloomStatus = { jobTypes: { echo: { queued: 0, running: 1, workers: 1 } } };
 * console.assert(s.jobTypes.echo?.running === 1);
 * ```
 */
export interface GloomStatus {
  /** Every job type (Gearman function) the server knows, by name. */
  jobTypes: Record<string, GloomJobTypeStatus>;
}

interface Pending {
  resolve(body: unknown): void;
  reject(err: unknown): void;
  /** The caller stopped waiting; the entry stays until the server answers. */
  abandoned: boolean;
  cleanup(): void;
}

/**
 * A Gloom master: submits jobs to a server's master port and resolves each
 * with its response body. Jobs go to Gloom workers or Gearman workers of
 * the same job type (function) alike.
 *
 * @example Submit a job and read the queues
 * ```ts
 * import { GloomMaster, GloomWorker } from "@x/gearman/gloom";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   gloom: { masterPort: 0, workerPort: 0 },
 * });
 * const { master, worker } = server.gloomAddrs!;
 * await using w = await GloomWorker.connect({ port: worker.port });
 * w.join("add", (body) => {
 *   const { a, b } = body as { a: number; b: number };
 *   return { sum: a + b };
 * });
 * await using m = await GloomMaster.connect({ port: master.port });
 * assert.deepEqual(await m.submit("add", "job-1", { a: 2, b: 3 }), { sum: 5 });
 * const status = await m.status();
 * assert.equal(status.jobTypes.add?.workers, 1);
 * ```
 */
export class GloomMaster implements AsyncDisposable {
  readonly #socket: GloomSocket;
  readonly #pending = new Map<string, Pending>();
  readonly #statusWaiters: PromiseWithResolvers<GloomStatus>[] = [];
  readonly #done: Promise<void>;
  #lastError: GloomError | undefined;
  #ended = false;

  private constructor(conn: Deno.Conn, maxFrameSize: number) {
    this.#socket = new GloomSocket(conn, (payload) => this.#frame(payload), { maxFrameSize });
    this.#done = this.#socket.run().then((err) => this.#end(err));
  }

  /**
   * Connect to a server's master port.
   *
   * @param options Host, port (default 9998) and frame limit.
   * @returns The connected master.
   * @throws {Deno.errors.ConnectionRefused} When nothing listens there.
   *
   * @example Connect and close
   * ```ts
   * import { GloomMaster } from "@x/gearman/gloom";
   * import { serve } from "@x/gearman/server";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
   * const master = await GloomMaster.connect({ port: server.gloomAddrs!.master.port });
   * await master.close();
   * ```
   */
  static async connect(options: GloomConnectOptions = {}): Promise<GloomMaster> {
    const {
      hostname = "127.0.0.1",
      port = DEFAULT_GLOOM_MASTER_PORT,
      maxFrameSize = DEFAULT_MAX_FRAME_SIZE,
      tls,
    } = options;
    const conn = await connectGloom(hostname, port, tls);
    return new GloomMaster(conn, maxFrameSize);
  }

  /** Whether the connection has ended (closed by either side). */
  get closed(): boolean {
    return this.#ended;
  }

  /**
   * Submit a job and wait for its response.
   *
   * @param jobType The job type (Gearman function name).
   * @param id The job's id: unique in the server until its response is in.
   * @param body The job's body: any JSON value.
   * @param options A signal to stop waiting.
   * @returns The response body the worker sent.
   * @throws {GloomError} `duplicate_id` when the id is outstanding; `job_failed`,
   * `job_exception`, `queue_full`, `rejected` as the server says;
   * `connection_closed` when the connection ends first.
   * @throws {TypeError} When `body` is `undefined` or has no JSON form.
   *
   * @example Two jobs at once
   * ```ts
   * import { GloomMaster, GloomWorker } from "@x/gearman/gloom";
   * import { serve } from "@x/gearman/server";
   * import assert from "node:assert/strict";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
   * await using w = await GloomWorker.connect({ port: server.gloomAddrs!.worker.port });
   * w.join("upper", (body) => String(body).toUpperCase());
   * await using m = await GloomMaster.connect({ port: server.gloomAddrs!.master.port });
   * const results = await Promise.all([m.submit("upper", 1, "a"), m.submit("upper", 2, "b")]);
   * assert.deepEqual(results, ["A", "B"]);
   * ```
   */
  submit(
    jobType: string,
    id: GloomId,
    body: unknown,
    options: GloomSubmitOptions = {},
  ): Promise<unknown> {
    if (!isGloomId(id)) {
      return Promise.reject(new TypeError("Cannot submit: id must be a string or a finite number"));
    }
    if (body === undefined || JSON.stringify(body) === undefined) {
      return Promise.reject(
        new TypeError("Cannot submit: body must be a JSON value (use null for none)"),
      );
    }
    if (this.#ended) return Promise.reject(this.#closedError());
    const key = JSON.stringify(id);
    if (this.#pending.has(key)) {
      return Promise.reject(
        new GloomError(
          "duplicate_id",
          `Job id ${key} is still outstanding on this connection; wait for its response`,
          id,
        ),
      );
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const onAbort = () => {
      entry.abandoned = true;
      entry.cleanup();
      reject(signal!.reason);
    };
    const entry: Pending = {
      resolve,
      reject,
      abandoned: false,
      cleanup: () => signal?.removeEventListener("abort", onAbort),
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#pending.set(key, entry);
    this.#socket.send({ type: "job", job_type: jobType, id, body });
    return promise;
  }

  /**
   * Ask the server for its queues: jobs queued and running, and workers,
   * per job type (Gearman's included).
   *
   * @returns The status.
   * @throws {GloomError} `connection_closed` when the connection ends first; the server's
   * error (e.g. `permission_denied` under --tls-access rules) when it refuses.
   *
   * @example Count queued jobs
   * ```ts
   * import { GloomMaster } from "@x/gearman/gloom";
   * import { serve } from "@x/gearman/server";
   * import assert from "node:assert/strict";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
   * await using m = await GloomMaster.connect({ port: server.gloomAddrs!.master.port });
   * const pending = m.submit("later", "x", null).catch(() => {}); // no worker yet
   * const status = await m.status();
   * assert.deepEqual(status.jobTypes.later, { queued: 1, running: 0, workers: 0 });
   * await m.close();
   * await pending;
   * ```
   */
  status(): Promise<GloomStatus> {
    if (this.#ended) return Promise.reject(this.#closedError());
    const waiter = Promise.withResolvers<GloomStatus>();
    this.#statusWaiters.push(waiter);
    this.#socket.send({ type: "status" });
    return waiter.promise;
  }

  #frame(payload: Uint8Array): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(decoder.decode(payload));
    } catch {
      return;
    }
    if (typeof msg !== "object" || msg === null) return;
    if (msg.type === "status") {
      const jobTypes = (typeof msg.job_types === "object" && msg.job_types !== null
        ? msg.job_types
        : {}) as Record<string, GloomJobTypeStatus>;
      this.#statusWaiters.shift()?.resolve({ jobTypes });
      return;
    }
    if (msg.type === "error") {
      const err = gloomErrorOf(msg);
      const entry = err.id === undefined ? undefined : this.#take(err.id);
      if (entry !== undefined) {
        if (!entry.abandoned) entry.reject(err);
        return;
      }
      // An error with no job id answers the oldest request without one: a status.
      const status = err.id === undefined ? this.#statusWaiters.shift() : undefined;
      if (status !== undefined) status.reject(err);
      else this.#lastError = err;
      return;
    }
    if (isGloomId(msg.id)) {
      const entry = this.#take(msg.id);
      if (entry !== undefined && !entry.abandoned) entry.resolve(msg.body);
    }
  }

  #take(id: GloomId): Pending | undefined {
    const key = JSON.stringify(id);
    const entry = this.#pending.get(key);
    if (entry === undefined) return undefined;
    this.#pending.delete(key);
    entry.cleanup();
    return entry;
  }

  #closedError(): GloomError {
    const why = this.#lastError ? ` (last error from the server: ${this.#lastError.message})` : "";
    return new GloomError("connection_closed", `The Gloom connection is closed${why}`);
  }

  #end(err: Error | undefined): void {
    this.#ended = true;
    if (err !== undefined && this.#lastError === undefined) {
      this.#lastError = new GloomError("connection_closed", err.message);
    }
    const closed = this.#closedError();
    for (const entry of this.#pending.values()) {
      entry.cleanup();
      if (!entry.abandoned) entry.reject(closed);
    }
    this.#pending.clear();
    for (const w of this.#statusWaiters.splice(0)) w.reject(closed);
  }

  /**
   * Close the connection. Outstanding submits reject with
   * `connection_closed`; the server forgets their ids (jobs not yet
   * started are dropped).
   *
   * @returns Resolves when the socket is closed.
   *
   * @example
   * ```ts
   * import { GloomMaster } from "@x/gearman/gloom";
   * import { serve } from "@x/gearman/server";
   * import assert from "node:assert/strict";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
   * const m = await GloomMaster.connect({ port: server.gloomAddrs!.master.port });
   * await m.close();
   * assert.ok(m.closed);
   * ```
   */
  async close(): Promise<void> {
    this.#socket.close();
    await this.#done;
  }

  /** Close the connection ({@link close}). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
