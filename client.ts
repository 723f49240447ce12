/**
 * The Gearman client: submit jobs to any Gearman server (this package's,
 * C++ gearmand, Perl Gearman::Server) and follow them: results, streamed
 * WORK_DATA/WARNING/STATUS updates, failures as typed errors, status
 * queries, several servers with failover. Also the admin client, and the
 * low-level {@link PacketClient}.
 *
 * @example Submit a job and stream its updates
 * ```ts
 * import { Client } from "@x/gearman/client";
 * import { Worker } from "@x/gearman/worker";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const servers = [`127.0.0.1:${server.addr.port}`];
 * await using worker = new Worker({ servers });
 * worker.register("count", (job) => {
 *   for (let i = 1; i <= 3; i++) job.sendStatus(i, 3);
 *   return "done";
 * });
 * worker.start();
 * await using client = new Client({ servers });
 * const job = client.submit("count", "");
 * const seen: number[] = [];
 * for await (const u of job) if (u.type === "status") seen.push(u.numerator);
 * assert.deepEqual(seen, [1, 2, 3]);
 * assert.equal((await job.result).text(), "done");
 * ```
 *
 * @module
 */

export {
  Client,
  type ClientOptions,
  type JobStatus,
  type ServerSelection,
  type SubmitOptions,
} from "./src/client/gearman_client.ts";
export { Job, JobResult, type JobUpdate } from "./src/client/job.ts";
export type { ClientTlsOptions } from "./src/client/tls_options.ts";
export {
  AdminError,
  ConnectionError,
  JobExceptionError,
  JobFailedError,
  ServerError,
} from "./src/client/errors.ts";
export {
  ConnectionClosedError,
  PacketClient,
  type PacketClientOptions,
} from "./src/client/packet_client.ts";
export {
  AdminClient,
  type AdminClientOptions,
  type DeadLetterInfo,
  type FunctionStatus,
  type JobInfo,
  type PriorityStatus,
  type ScheduledJobInfo,
  type WorkerInfo,
} from "./src/client/admin_client.ts";
