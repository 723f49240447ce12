// The Gloom worker ("slave"): joins a job type on the worker port, runs a
// handler per job, sends its result back as the response.

import { DEFAULT_GLOOM_WORKER_PORT, DEFAULT_MAX_FRAME_SIZE } from "./frame.ts";
import { type GloomConnectOptions, type GloomError, gloomErrorOf } from "./gloom_master.ts";
import { type GloomId, isGloomId } from "./messages.ts";
import { GloomSocket } from "./socket.ts";
import { connectGloom } from "./connect.ts";

const decoder = new TextDecoder();

/**
 * The job a {@link GloomHandler} is running.
 *
 * @example Read the id in a handler
 * ```ts
 * import type { GloomHandler } from "@x/gearman/gloom";
 * const handler: GloomHandler = (body, job) => ({ id: job.id, type: job.jobType, body });
 * console.assert(typeof handler === "function");
 * ```
 */
export interface GloomJob {
  /**
   * The job's id: the master's id for jobs from Gloom masters; for jobs from
   * Gearman clients, their unique id, or the job handle when they gave none.
   */
  readonly id: GloomId;
  /** The job type it was submitted as. */
  readonly jobType: string;
  /** Aborted when the worker is closed while the job runs (the server requeues it). */
  readonly signal: AbortSignal;
}

/**
 * Runs one job: gets its body (any JSON value; a Gearman client's data
 * that is not JSON comes as a string) and returns the response body (any
 * JSON value, or a promise of one; `undefined` is sent as `null`).
 *
 * @example An async handler
 * ```ts
 * import type { GloomHandler } from "@x/gearman/gloom";
 * const double: GloomHandler = async (body) => {
 *   await Promise.resolve();
 *   return (body as number) * 2;
 * };
 * console.assert(await double(21, { id: 1, jobType: "double", signal: new AbortController().signal }) === 42);
 * ```
 */
export type GloomHandler = (body: unknown, job: GloomJob) => unknown;

/**
 * Options for {@link GloomWorker.connect}.
 *
 * @example Answer failures with a custom body
 * ```ts
 * import type { GloomWorkerOptions } from "@x/gearman/gloom";
 * const options: GloomWorkerOptions = {
 *   port: 9999,
 *   onError: (error) => ({ ok: false, reason: String(error) }),
 * };
 * console.assert(options.onError !== undefined);
 * ```
 */
export interface GloomWorkerOptions extends GloomConnectOptions {
  /**
   * The response body sent when a handler throws (or returns something
   * with no JSON form). Gloom has no failure message, so the job is
   * answered with this.
   * @default `(error) => ({ error: error.message })`
   */
  onError?: (error: unknown, job: GloomJob) => unknown;
  /**
   * Called with each error frame the server sends this worker (a join it
   * refuses: a bad job type, or one its certificate may not work on under
   * `--tls-access`). The last one is also {@link GloomWorker.lastServerError}.
   * @default undefined (kept in lastServerError only)
   */
  onServerError?: (error: GloomError) => void;
}

function defaultOnError(error: unknown): unknown {
  return { error: error instanceof Error ? error.message : String(error) };
}

/**
 * A Gloom worker: one connection to a server's worker port, serving one job
 * type at a time (joining another recasts it), one job at a time. Jobs come
 * from Gloom masters and Gearman clients alike.
 *
 * @example Serve a job type until closed
 * ```ts
 * import { GloomMaster, GloomWorker } from "@x/gearman/gloom";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
 * const worker = await GloomWorker.connect({ port: server.gloomAddrs!.worker.port });
 * worker.join("reverse", (body) => [...String(body)].reverse().join(""));
 * await using master = await GloomMaster.connect({ port: server.gloomAddrs!.master.port });
 * assert.equal(await master.submit("reverse", "r1", "hello"), "olleh");
 * await worker.close();
 * ```
 */
export class GloomWorker implements AsyncDisposable {
  readonly #socket: GloomSocket;
  readonly #done: Promise<void>;
  readonly #onError: (error: unknown, job: GloomJob) => unknown;
  /** Handlers by job type; the current type's is also in #handler. */
  readonly #handlers = new Map<string, GloomHandler>();
  #jobType: string | undefined;
  #handler: GloomHandler | undefined;
  #running: AbortController | undefined;
  readonly #onServerError: ((error: GloomError) => void) | undefined;
  #lastServerError: GloomError | undefined;

  private constructor(
    conn: Deno.Conn,
    maxFrameSize: number,
    onError: (error: unknown, job: GloomJob) => unknown,
    onServerError: ((error: GloomError) => void) | undefined,
  ) {
    this.#onError = onError;
    this.#onServerError = onServerError;
    this.#socket = new GloomSocket(conn, (payload) => this.#frame(payload), { maxFrameSize });
    this.#done = this.#socket.run().then(() => this.#running?.abort());
  }

  /**
   * Connect to a server's worker port. Call {@link join} to start taking jobs.
   *
   * @param options Host, port (default 9999), frame limit, error body.
   * @returns The connected worker.
   * @throws {Deno.errors.ConnectionRefused} When nothing listens there.
   *
   * @example
   * ```ts
   * import { GloomWorker } from "@x/gearman/gloom";
   * import { serve } from "@x/gearman/server";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
   * await using worker = await GloomWorker.connect({ port: server.gloomAddrs!.worker.port });
   * worker.join("noop", () => null);
   * ```
   */
  static async connect(options: GloomWorkerOptions = {}): Promise<GloomWorker> {
    const {
      hostname = "127.0.0.1",
      port = DEFAULT_GLOOM_WORKER_PORT,
      maxFrameSize = DEFAULT_MAX_FRAME_SIZE,
      onError = defaultOnError,
      onServerError,
      tls,
    } = options;
    const conn = await connectGloom(hostname, port, tls);
    return new GloomWorker(conn, maxFrameSize, onError, onServerError);
  }

  /** The last error frame the server sent this worker, if any (see `onServerError`). */
  get lastServerError(): GloomError | undefined {
    return this.#lastServerError;
  }

  /** The job type last joined, or `undefined` before {@link join}. */
  get jobType(): string | undefined {
    return this.#jobType;
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.#socket.closed;
  }

  /** Resolves when the connection has ended (closed by either side). */
  get finished(): Promise<void> {
    return this.#done;
  }

  /**
   * Serve `jobType` with `handler`: sends `{"type":"join","job_type":...}`.
   * Joining again recasts the connection to the new type (a job already
   * running finishes first, with the handler it started with).
   *
   * @param jobType The job type (Gearman function name).
   * @param handler Runs each job; its return value is the response body.
   * @returns This worker.
   *
   * @example Recast to another type
   * ```ts
   * import { GloomMaster, GloomWorker } from "@x/gearman/gloom";
   * import { serve } from "@x/gearman/server";
   * import assert from "node:assert/strict";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
   * await using w = await GloomWorker.connect({ port: server.gloomAddrs!.worker.port });
   * await using m = await GloomMaster.connect({ port: server.gloomAddrs!.master.port });
   * w.join("a", () => "from a");
   * assert.equal(await m.submit("a", 1, null), "from a");
   * w.join("b", () => "from b");
   * assert.equal(await m.submit("b", 2, null), "from b");
   * ```
   */
  join(jobType: string, handler: GloomHandler): this {
    if (typeof jobType !== "string" || jobType === "") {
      throw new TypeError("Cannot join: jobType must be a non-empty string");
    }
    this.#jobType = jobType;
    this.#handler = handler;
    this.#handlers.set(jobType, handler);
    this.#socket.send({ type: "join", job_type: jobType });
    return this;
  }

  #frame(payload: Uint8Array): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(decoder.decode(payload));
    } catch {
      return;
    }
    if (typeof msg !== "object" || msg === null) return;
    if (msg.type === "error") {
      const err = gloomErrorOf(msg);
      this.#lastServerError = err;
      this.#onServerError?.(err);
      return;
    }
    if (msg.type !== "job") return;
    const jobType = typeof msg.job_type === "string" ? msg.job_type : this.#jobType ?? "";
    const handler = this.#handlers.get(jobType) ?? this.#handler;
    const controller = new AbortController();
    this.#running = controller;
    const job: GloomJob = {
      id: isGloomId(msg.id) ? msg.id : String(msg.id),
      jobType,
      signal: controller.signal,
    };
    void this.#run(handler, msg.body, job);
  }

  async #run(handler: GloomHandler | undefined, body: unknown, job: GloomJob): Promise<void> {
    let failure: unknown;
    try {
      if (handler === undefined) throw new Error(`No handler for job type "${job.jobType}"`);
      const result = await handler(body, job);
      if (this.#finish(job)) this.#socket.send({ type: "response", body: result ?? null });
      return;
    } catch (err) {
      // The handler threw, or its result has no JSON form (send throws before queueing).
      failure = err;
    }
    let result: unknown;
    try {
      result = this.#onError(failure, job) ?? null;
    } catch (err) {
      result = defaultOnError(err);
    }
    if (!this.#finish(job)) return;
    try {
      this.#socket.send({ type: "response", body: result });
    } catch (err) {
      this.#socket.send({ type: "response", body: defaultOnError(err) });
    }
  }

  /** The job is over; whether its response should still be sent. */
  #finish(job: GloomJob): boolean {
    if (this.#running?.signal === job.signal) this.#running = undefined;
    return !job.signal.aborted;
  }

  /**
   * Close the connection. A job still running is given back to the queue
   * by the server (for another worker) and its `signal` is aborted.
   *
   * @returns Resolves when the socket is closed.
   *
   * @example
   * ```ts
   * import { GloomWorker } from "@x/gearman/gloom";
   * import { serve } from "@x/gearman/server";
   * import assert from "node:assert/strict";
   *
   * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
   * const w = await GloomWorker.connect({ port: server.gloomAddrs!.worker.port });
   * await w.close();
   * assert.ok(w.closed);
   * ```
   */
  async close(): Promise<void> {
    this.#running?.abort();
    this.#socket.close();
    await this.#done;
  }

  /** Close the connection ({@link close}). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
