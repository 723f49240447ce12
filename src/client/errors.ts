/**
 * Errors raised by the Gearman client, worker and admin client.
 *
 * @module
 */

/**
 * A Gearman server could not be reached, or the connection to it was lost.
 *
 * @example Recognise an unreachable server
 * ```ts
 * import { Client, ConnectionError } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * await using client = new Client({ servers: ["127.0.0.1:1"], connectTimeoutMs: 500 });
 * await assert.rejects(client.echo("ping"), ConnectionError);
 * ```
 */
export class ConnectionError extends Error {
  /** The server, as `host:port`. */
  readonly server: string;
  /**
   * Make the error.
   *
   * @param server The server, as `host:port`.
   * @param message What happened and what to do.
   * @param options Standard error options (`cause`).
   */
  constructor(server: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionError";
    this.server = server;
  }
}

/**
 * The server answered a request with an ERROR packet.
 *
 * @example Read the server's code
 * ```ts
 * import { ServerError } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const err = new ServerError("127.0.0.1:4730", "QUEUE_ERROR", "Job queue is full");
 * assert.equal(err.code, "QUEUE_ERROR");
 * assert.match(err.message, /Job queue is full/);
 * ```
 */
export class ServerError extends Error {
  /** The server, as `host:port`. */
  readonly server: string;
  /** The ERROR packet's code, e.g. `"QUEUE_ERROR"`. */
  readonly code: string;
  /**
   * Make the error.
   *
   * @param server The server, as `host:port`.
   * @param code The ERROR packet's code.
   * @param text The ERROR packet's text.
   * @param options Standard error options.
   */
  constructor(server: string, code: string, text: string, options?: ErrorOptions) {
    super(`Server ${server} refused the request: ${code}: ${text}`, options);
    this.name = "ServerError";
    this.server = server;
    this.code = code;
  }
}

/**
 * A job ended with WORK_FAIL: the worker gave up on it, it was cancelled,
 * or it ran out of retries.
 *
 * @example Catch a failed job
 * ```ts
 * import { JobFailedError } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const err = new JobFailedError("resize", "H:host:1");
 * assert.match(err.message, /WORK_FAIL/);
 * ```
 */
export class JobFailedError extends Error {
  /** The job's function. */
  readonly function: string;
  /** The job's handle. */
  readonly handle: string;
  /**
   * Make the error.
   *
   * @param fn The job's function.
   * @param handle The job's handle.
   * @param options Standard error options.
   */
  constructor(fn: string, handle: string, options?: ErrorOptions) {
    super(`Job ${handle} of function "${fn}" failed: the worker sent WORK_FAIL`, options);
    this.name = "JobFailedError";
    this.function = fn;
    this.handle = handle;
  }
}

/**
 * A job's worker threw: WORK_EXCEPTION, with the exception's data.
 *
 * @example Read the exception text
 * ```ts
 * import { JobExceptionError } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const err = new JobExceptionError("resize", "H:host:1", new TextEncoder().encode("bad size"));
 * assert.equal(err.text, "bad size");
 * ```
 */
export class JobExceptionError extends Error {
  /** The job's function. */
  readonly function: string;
  /** The job's handle. */
  readonly handle: string;
  /** The exception data the worker sent. */
  readonly data: Uint8Array;
  /**
   * Make the error.
   *
   * @param fn The job's function.
   * @param handle The job's handle.
   * @param data The exception data the worker sent.
   * @param options Standard error options.
   */
  constructor(fn: string, handle: string, data: Uint8Array, options?: ErrorOptions) {
    const text = new TextDecoder().decode(data);
    super(`Job ${handle} of function "${fn}" threw: ${text}`, options);
    this.name = "JobExceptionError";
    this.function = fn;
    this.handle = handle;
    this.data = data;
  }

  /** The exception data as UTF-8 text. */
  get text(): string {
    return new TextDecoder().decode(this.data);
  }
}

/**
 * An admin command got an `ERR` reply.
 *
 * @example Read the reply
 * ```ts
 * import { AdminError } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const err = new AdminError("drop function f", "ERR function not found");
 * assert.equal(err.reply, "ERR function not found");
 * ```
 */
export class AdminError extends Error {
  /** The command sent. */
  readonly command: string;
  /** The server's reply line. */
  readonly reply: string;
  /**
   * Make the error.
   *
   * @param command The command sent.
   * @param reply The server's `ERR` line.
   * @param options Standard error options.
   */
  constructor(command: string, reply: string, options?: ErrorOptions) {
    super(`Admin command "${command}" failed: ${reply}`, options);
    this.name = "AdminError";
    this.command = command;
    this.reply = reply;
  }
}
