/**
 * A submitted job: its handle, streamed updates and final result.
 *
 * @module
 */

import { fromUtf8 } from "../protocol/_bytes.ts";

/**
 * The bytes a job (or an update) carried, with easy text and JSON access.
 *
 * @example Read a result three ways
 * ```ts
 * import { JobResult } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const r = new JobResult(new TextEncoder().encode('{"n":1}'));
 * assert.equal(r.bytes.length, 7);
 * assert.equal(r.text(), '{"n":1}');
 * assert.deepEqual(r.json(), { n: 1 });
 * ```
 */
export class JobResult {
  /** The raw bytes. */
  readonly bytes: Uint8Array;

  /**
   * Wrap bytes.
   *
   * @param bytes The raw bytes.
   */
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }

  /**
   * The bytes decoded as UTF-8.
   *
   * @returns The text.
   */
  text(): string {
    return fromUtf8(this.bytes);
  }

  /**
   * The bytes parsed as JSON.
   *
   * @returns The parsed value.
   * @throws {SyntaxError} When the bytes are not JSON.
   */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

/**
 * An update a worker sent while running a job: WORK_DATA, WORK_WARNING or
 * WORK_STATUS.
 *
 * @example Tell updates apart
 * ```ts
 * import type { JobUpdate } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const u: JobUpdate = { type: "status", numerator: 3, denominator: 10 };
 * assert.equal(u.type === "status" ? u.numerator / u.denominator : 0, 0.3);
 * ```
 */
export type JobUpdate =
  | { type: "data"; data: JobResult }
  | { type: "warning"; data: JobResult }
  | { type: "status"; numerator: number; denominator: number };

/** Internal hooks the client uses to drive a job. */
export interface JobControl {
  created(handle: string): void;
  update(update: JobUpdate): void;
  complete(result: JobResult): void;
  /** End the job with this reason (an Error, or an abort signal's reason). */
  fail(err: unknown): void;
}

/**
 * A job submitted by a {@link Client}. Await {@link result} for the
 * outcome, and iterate the job (`for await`) to see WORK_DATA,
 * WORK_WARNING and WORK_STATUS updates in the order the worker sent them.
 * Iteration ends when the job completes and throws when it fails. A
 * background job's result is empty: it resolves once the server has
 * queued the job.
 *
 * @example Stream a job's updates
 * ```ts ignore
 * const job = client.submit("resize", image);
 * for await (const update of job) {
 *   if (update.type === "status") console.log(update.numerator, "/", update.denominator);
 * }
 * const result = await job.result;
 * ```
 */
export class Job implements AsyncIterable<JobUpdate> {
  /** The function the job runs. */
  readonly function: string;
  /** The unique id it was submitted with, if any. */
  readonly unique: string | undefined;
  /** Whether it was submitted as a background job. */
  readonly background: boolean;
  // Promises, update lists and waiters are made when first asked for: a
  // client may hold hundreds of thousands of jobs waiting to be sent.
  #handle: PromiseWithResolvers<string> | undefined;
  #result: PromiseWithResolvers<JobResult> | undefined;
  #updates: JobUpdate[] | undefined;
  #ended = false;
  #failed = false;
  #error: unknown;
  #waiters: (() => void)[] | undefined;
  #handleValue: string | undefined;
  #resultValue: JobResult | undefined;
  /** The hooks a client drives a job with: one small object per job, no closures. */
  static #Hooks: new (job: Job) => JobControl;
  static {
    Job.#Hooks = class implements JobControl {
      readonly #job: Job;
      constructor(job: Job) {
        this.#job = job;
      }
      created(handle: string): void {
        const job = this.#job;
        job.#handleValue = handle;
        job.#handle?.resolve(handle);
      }
      update(u: JobUpdate): void {
        const job = this.#job;
        if (job.#ended) return;
        (job.#updates ??= []).push(u);
        job.#signal();
      }
      complete(r: JobResult): void {
        const job = this.#job;
        if (job.#ended) return;
        job.#ended = true;
        job.#resultValue = r;
        job.#result?.resolve(r);
        job.#signal();
      }
      fail(err: unknown): void {
        const job = this.#job;
        if (job.#ended) return;
        job.#ended = true;
        job.#failed = true;
        job.#error = err;
        job.#handle?.reject(err);
        job.#result?.reject(err);
        job.#signal();
      }
    };
  }

  /**
   * Made by {@link Client.submit}; not constructed directly.
   *
   * @param fn The function.
   * @param unique The unique id.
   * @param background Whether it is a background job.
   * @param bind Receives the control hooks.
   */
  constructor(
    fn: string,
    unique: string | undefined,
    background: boolean,
    bind: (control: JobControl) => void,
  ) {
    this.function = fn;
    this.unique = unique;
    this.background = background;
    bind(new Job.#Hooks(this));
  }

  #signal(): void {
    const waiters = this.#waiters;
    if (waiters === undefined) return;
    this.#waiters = undefined;
    for (const w of waiters) w();
  }

  /** Resolves with the handle once the server has accepted the job. */
  get handle(): Promise<string> {
    if (this.#handle === undefined) {
      const h = this.#handle = Promise.withResolvers();
      // Unobserved rejections are the caller's choice, not a crash.
      h.promise.catch(() => {});
      if (this.#handleValue !== undefined) h.resolve(this.#handleValue);
      else if (this.#failed) h.reject(this.#error);
    }
    return this.#handle.promise;
  }

  /** The handle, once known. */
  get handleNow(): string | undefined {
    return this.#handleValue;
  }

  /** Resolves with the result (WORK_COMPLETE), or rejects with why the job did not complete. */
  get result(): Promise<JobResult> {
    if (this.#result === undefined) {
      const r = this.#result = Promise.withResolvers();
      r.promise.catch(() => {});
      if (this.#resultValue !== undefined) r.resolve(this.#resultValue);
      else if (this.#failed) r.reject(this.#error);
    }
    return this.#result.promise;
  }

  /** Whether the job has ended (completed or failed). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * The updates, in order, until the job ends; throws the job's error if
   * it failed. Every iteration sees every update from the start.
   *
   * @returns An async iterator of updates.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<JobUpdate> {
    let next = 0;
    for (;;) {
      while (this.#updates !== undefined && next < this.#updates.length) {
        yield this.#updates[next++]!;
      }
      if (this.#ended) {
        if (this.#failed) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#waiters ??= []).push(resolve));
    }
  }
}
