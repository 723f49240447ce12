/**
 * The admin client: the Gearman text admin protocol as typed calls.
 *
 * @module
 */

import type { ClientTlsOptions } from "./tls_options.ts";
import { AdminError, ConnectionError } from "./errors.ts";
import { PacketClient } from "./packet_client.ts";
import { parseServerAddress } from "./server_address.ts";

/**
 * One function's line of the `status` command.
 *
 * @example Read a status row
 * ```ts
 * import type { FunctionStatus } from "@x/gearman/client";
 * const row: FunctionStatus = { function: "resize", total: 5, running: 2, workers: 3 };
 * console.assert(row.total - row.running === 3);
 * ```
 */
export interface FunctionStatus {
  /** Function name. */
  function: string;
  /** Jobs queued plus running. */
  total: number;
  /** Jobs running. */
  running: number;
  /** Workers that can do the function. */
  workers: number;
}

/**
 * One function's line of the `prioritystatus` command: queued jobs by priority.
 *
 * @example Read a priority row
 * ```ts
 * import type { PriorityStatus } from "@x/gearman/client";
 * const row: PriorityStatus = { function: "f", high: 1, normal: 2, low: 0, workers: 1 };
 * console.assert(row.high + row.normal + row.low === 3);
 * ```
 */
export interface PriorityStatus {
  /** Function name. */
  function: string;
  /** Queued high-priority jobs. */
  high: number;
  /** Queued normal-priority jobs. */
  normal: number;
  /** Queued low-priority jobs. */
  low: number;
  /** Workers that can do the function. */
  workers: number;
}

/**
 * One connection's line of the `workers` command.
 *
 * @example Read a worker row
 * ```ts
 * import type { WorkerInfo } from "@x/gearman/client";
 * const row: WorkerInfo = { fd: "7", ip: "127.0.0.1", clientId: "-", functions: ["f"] };
 * console.assert(row.functions.length === 1);
 * ```
 */
export interface WorkerInfo {
  /** The server's id for the connection (a file descriptor on gearmand). */
  fd: string;
  /** The peer's IP address. */
  ip: string;
  /** The id set with SET_CLIENT_ID, or "-". */
  clientId: string;
  /** Functions it registered. */
  functions: string[];
}

/**
 * One job's line of the `show jobs` command.
 *
 * @example Read a job row
 * ```ts
 * import type { JobInfo } from "@x/gearman/client";
 * const row: JobInfo = { handle: "H:host:1", retries: 0, ignored: false, background: true };
 * console.assert(row.background);
 * ```
 */
export interface JobInfo {
  /** Job handle. */
  handle: string;
  /** Times a worker failed to finish it. */
  retries: number;
  /** No client waits for it any more. */
  ignored: boolean;
  /** A background job. */
  background: boolean;
}

/**
 * Options for {@link AdminClient.connect}.
 *
 * @example Connect with a timeout
 * ```ts
 * import type { AdminClientOptions } from "@x/gearman/client";
 * const options: AdminClientOptions = { timeoutMs: 2000 };
 * console.assert(options.timeoutMs === 2000);
 * ```
 */
export interface AdminClientOptions {
  /**
   * Longest wait for each reply line, in milliseconds.
   * @default 5000
   */
  timeoutMs?: number;
  /** Connect with TLS: CAs to trust besides the system's, and an optional client certificate. */
  tls?: ClientTlsOptions;
  /** Sent first (`auth TOKEN`) so state-changing commands are allowed remotely (--admin-token). */
  token?: string;
}

const LISTINGS = new Set([
  "status",
  "workers",
  "prioritystatus",
  "jobs",
  "clients",
  "show",
  "cluster",
]);

/**
 * A job waiting for its run-at time (`show scheduled`; this package's server).
 *
 * @example Read a scheduled row
 * ```ts
 * import type { ScheduledJobInfo } from "@x/gearman/client";
 * const row: ScheduledJobInfo = { handle: "H:h:1", function: "f", runAt: new Date(0), unique: "" };
 * console.assert(row.runAt.getTime() === 0);
 * ```
 */
export interface ScheduledJobInfo {
  /** Job handle. */
  handle: string;
  /** Function name. */
  function: string;
  /** When it runs. */
  runAt: Date;
  /** Unique id ("" if none). */
  unique: string;
}

/**
 * A job that ran out of retries (`show dead`; this package's server).
 *
 * @example Read a dead letter
 * ```ts
 * import type { DeadLetterInfo } from "@x/gearman/client";
 * const row: DeadLetterInfo = {
 *   id: 1, handle: "H:h:1", function: "f", unique: "", retries: 3, failedAt: new Date(0),
 *   reason: "worker disconnected it",
 * };
 * console.assert(row.retries === 3);
 * ```
 */
export interface DeadLetterInfo {
  /** Id to retry or purge it by. */
  id: number;
  /** The handle the job had. */
  handle: string;
  /** Function name. */
  function: string;
  /** Unique id ("" if none). */
  unique: string;
  /** Retries it had. */
  retries: number;
  /** When it failed. */
  failedAt: Date;
  /** Why its last worker lost it. */
  reason: string;
}

/**
 * Runs admin commands on one Gearman server (ours, C++ gearmand or the Perl
 * server) and parses the replies. Commands run one at a time, in order.
 *
 * @example Read status and version
 * ```ts
 * import { AdminClient } from "@x/gearman/client";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * await using admin = await AdminClient.connect(`127.0.0.1:${server.addr.port}`);
 * await admin.createFunction("resize");
 * assert.deepEqual(await admin.status(), [
 *   { function: "resize", total: 0, running: 0, workers: 0 },
 * ]);
 * assert.match(await admin.version(), /^\d+\.\d+/);
 * ```
 */
export class AdminClient implements AsyncDisposable {
  readonly #conn: PacketClient;
  readonly #timeoutMs: number;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(conn: PacketClient, timeoutMs: number) {
    this.#conn = conn;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Connect to a server's admin protocol (the Gearman port).
   *
   * @param server `"host:port"` (port defaults to 4730).
   * @param options Reply timeout.
   * @returns The admin client.
   * @throws {ConnectionError} When the server cannot be reached.
   */
  static async connect(server: string, options: AdminClientOptions = {}): Promise<AdminClient> {
    const { hostname, port, label } = parseServerAddress(server);
    let conn: PacketClient;
    try {
      conn = await PacketClient.connect({
        hostname,
        port,
        ...(options.tls ? { tls: options.tls } : {}),
        timeoutMs: options.timeoutMs ?? 5000,
      });
    } catch (err) {
      throw new ConnectionError(
        label,
        `Cannot connect to Gearman server ${label}: ${(err as Error).message}; is it running?`,
        { cause: err },
      );
    }
    const admin = new AdminClient(conn, options.timeoutMs ?? 5000);
    if (options.token !== undefined) {
      try {
        await admin.command(`auth ${options.token}`);
      } catch (err) {
        await admin.close();
        throw err;
      }
    }
    return admin;
  }

  /**
   * Send one command line and return its reply lines (without the final
   * "." of listings). `ERR` replies throw.
   *
   * @param line The command, e.g. `"status"`.
   * @returns The reply lines.
   * @throws {AdminError} When the server answers `ERR ...`.
   */
  command(line: string): Promise<string[]> {
    const run = this.#queue.then(() => this.#command(line));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #command(line: string): Promise<string[]> {
    const conn = this.#conn;
    conn.sendRaw(line + "\r\n");
    const first = await conn.receiveLine(this.#timeoutMs);
    if (first.startsWith("ERR")) throw new AdminError(line, first);
    const name = line.trim().split(/\s+/)[0]!.toLowerCase();
    if (!LISTINGS.has(name)) return [first];
    const lines: string[] = [];
    for (let l = first; l !== "."; l = await conn.receiveLine(this.#timeoutMs)) lines.push(l);
    return lines;
  }

  async #ok(line: string): Promise<string> {
    const [reply = ""] = await this.command(line);
    if (!reply.startsWith("OK")) throw new AdminError(line, reply);
    return reply.slice(2).trim();
  }

  /**
   * Functions with their queued, running and worker counts.
   *
   * @returns One row per function.
   */
  async status(): Promise<FunctionStatus[]> {
    return (await this.command("status")).map((l) => {
      const [fn = "", total, running, workers] = l.split("\t");
      return {
        function: fn,
        total: Number(total),
        running: Number(running),
        workers: Number(workers),
      };
    });
  }

  /**
   * Queued jobs per function and priority (C++ gearmand and ours).
   *
   * @returns One row per function.
   */
  async priorityStatus(): Promise<PriorityStatus[]> {
    return (await this.command("prioritystatus")).map((l) => {
      const [fn = "", high, normal, low, workers] = l.split("\t");
      return {
        function: fn,
        high: Number(high),
        normal: Number(normal),
        low: Number(low),
        workers: Number(workers),
      };
    });
  }

  /**
   * Every connection with its client id and registered functions.
   *
   * @returns One row per connection.
   */
  async workers(): Promise<WorkerInfo[]> {
    return (await this.command("workers")).map((l) => {
      const colon = l.indexOf(" :");
      const head = (colon < 0 ? l : l.slice(0, colon)).split(" ");
      const fns = colon < 0 ? "" : l.slice(colon + 2).trim();
      return {
        fd: head[0] ?? "",
        ip: head[1] ?? "",
        clientId: head.slice(2).join(" "),
        functions: fns === "" ? [] : fns.split(" "),
      };
    });
  }

  /**
   * Jobs the server holds (C++ gearmand and ours).
   *
   * @returns One row per job.
   */
  async showJobs(): Promise<JobInfo[]> {
    return (await this.command("show jobs")).map((l) => {
      const [handle = "", retries, ignored, background] = l.split("\t");
      return {
        handle,
        retries: Number(retries),
        ignored: ignored === "1",
        background: background === "1",
      };
    });
  }

  /**
   * Unique ids of the jobs the server holds.
   *
   * @returns One entry per job ("" for jobs without one).
   */
  showUniqueJobs(): Promise<string[]> {
    return this.command("show unique jobs");
  }

  /**
   * Jobs waiting for their run-at time, soonest first (this package's server).
   *
   * @returns One row per scheduled job.
   */
  async showScheduled(): Promise<ScheduledJobInfo[]> {
    return (await this.command("show scheduled")).map((l) => {
      const [handle = "", fn = "", at = "", unique = ""] = l.split("\t");
      return { handle, function: fn, runAt: new Date(at), unique };
    });
  }

  /**
   * Jobs that ran out of retries (this package's server, with `--job-retries`).
   *
   * @returns One row per dead letter, oldest first.
   */
  async deadLetters(): Promise<DeadLetterInfo[]> {
    return (await this.command("show dead")).map((l) => {
      const [id, handle = "", fn = "", unique = "", retries, at = "", reason = ""] = l.split("\t");
      return {
        id: Number(id),
        handle,
        function: fn,
        unique,
        retries: Number(retries),
        failedAt: new Date(at),
        reason,
      };
    });
  }

  /**
   * Queue dead letters again as new background jobs.
   *
   * @param id A dead letter's id, or `"all"`.
   * @returns How many were queued.
   */
  async retryDeadLetters(id: number | "all"): Promise<number> {
    return Number(await this.#ok(`retry dead ${id}`));
  }

  /**
   * Forget dead letters.
   *
   * @param id A dead letter's id, or `"all"`.
   * @returns How many were removed.
   */
  async purgeDeadLetters(id: number | "all"): Promise<number> {
    return Number(await this.#ok(`purge dead ${id}`));
  }

  /**
   * The server's version string.
   *
   * @returns The version.
   */
  async version(): Promise<string> {
    // gearmand and ours answer "OK 1.1.20"; the Perl server a bare "1.130".
    const [reply = ""] = await this.command("version");
    return reply.startsWith("OK") ? reply.slice(2).trim() : reply.trim();
  }

  /**
   * The server's process id.
   *
   * @returns The pid.
   */
  async getpid(): Promise<number> {
    return Number(await this.#ok("getpid"));
  }

  /**
   * Limit a function's queue: one size for every priority, one per
   * priority, or none to go back to the server default. Negative is unlimited.
   *
   * @param fn The function.
   * @param size The limit(s).
   */
  async maxQueue(
    fn: string,
    size?: number | { high: number; normal: number; low: number },
  ): Promise<void> {
    const arg = size === undefined
      ? ""
      : typeof size === "number"
      ? ` ${size}`
      : ` ${size.high} ${size.normal} ${size.low}`;
    await this.#ok(`maxqueue ${fn}${arg}`);
  }

  /**
   * Create a function (so it shows in status before any job or worker).
   *
   * @param fn The function.
   */
  async createFunction(fn: string): Promise<void> {
    await this.#ok(`create function ${fn}`);
  }

  /**
   * Forget a function that has no workers and no jobs.
   *
   * @param fn The function.
   * @throws {AdminError} When it is unknown or busy.
   */
  async dropFunction(fn: string): Promise<void> {
    await this.#ok(`drop function ${fn}`);
  }

  /**
   * Cancel a job: its clients get WORK_FAIL.
   *
   * @param handle The job handle.
   * @throws {AdminError} When the job is unknown.
   */
  async cancelJob(handle: string): Promise<void> {
    await this.#ok(`cancel job ${handle}`);
  }

  /**
   * Ask the server to shut down (ours and the Perl server).
   *
   * @param graceful Stop accepting but let connections finish.
   */
  async shutdown(graceful = false): Promise<void> {
    await this.#ok(graceful ? "shutdown graceful" : "shutdown");
  }

  /**
   * Close the connection.
   *
   * @returns Resolves once closed.
   */
  async close(): Promise<void> {
    await this.#conn.close();
  }

  /** Close the connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
