/**
 * The Gearman worker: register functions and run their jobs, from any
 * Gearman server (this package's, C++ gearmand, Perl Gearman::Server),
 * several at once, with reconnects and a graceful stop.
 *
 * @example Serve a function until stopped
 * ```ts
 * import { Worker } from "@x/gearman/worker";
 * import { Client } from "@x/gearman/client";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const servers = [`127.0.0.1:${server.addr.port}`];
 * const worker = new Worker({ servers, concurrency: 2 });
 * worker.register("upper", (job) => job.text().toUpperCase());
 * worker.start();
 * await using client = new Client({ servers });
 * assert.equal((await client.run("upper", "abc")).text(), "ABC");
 * await worker.stop();
 * ```
 *
 * @module
 */

export {
  type JobHandler,
  type RegisterOptions,
  type StopOptions,
  Worker,
  type WorkerJob,
  type WorkerOptions,
} from "./src/client/gearman_worker.ts";
export { PacketClient } from "./src/client/packet_client.ts";
export type { ClientTlsOptions } from "./src/client/tls_options.ts";
