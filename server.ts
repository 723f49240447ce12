/**
 * The Gearman job server. Start it from the command line:
 *
 * ```sh
 * deno run -N jsr:@x/gearman/server --port 4730
 * ```
 *
 * or from code with {@link serve}. Every Gearman client and worker (C
 * libgearman, PHP, Perl, Python, Go, Node, and this package's own) talks to
 * it unchanged, and `gearadmin` or `nc` can use its admin text protocol on
 * the same port.
 *
 * @example Serve on a free port
 * ```ts
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * assert.ok(server.addr.port > 0);
 * ```
 *
 * @module
 */

import { runServerCli } from "./src/server/cli.ts";

export type { AdminReadAccess } from "./src/server/admin_commands.ts";
export type { TlsAccessRule, TlsAccessRules } from "./src/server/tls_access.ts";
export {
  DEFAULT_PORT,
  serve,
  type ServeOptions,
  Server,
  type ShutdownOptions,
} from "./src/server/gearman_server.ts";
export { StoreError } from "./src/server/store/sqlite_store.ts";
export { RevocationListError } from "./src/transport/revocation_list.ts";
export type {
  ClusterDepth,
  ClusterJob,
  ClusterQueue,
  ClusterServer,
  DeadLetter,
  JobStore,
  StoredJob,
} from "./src/server/store/job_store.ts";
export type {
  ApiByPriority,
  ApiCluster,
  ApiConnection,
  ApiConnections,
  ApiError,
  ApiFunction,
  ApiHistory,
  ApiJob,
  ApiJobs,
  ApiOk,
  ApiSample,
  ApiServer,
  ApiStatus,
  ApiStore,
  ApiTiming,
  ApiTotals,
  ApiWorkers,
} from "./src/http/api_types.ts";

if (import.meta.main) {
  Deno.exit(await runServerCli(Deno.args));
}
