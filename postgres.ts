/**
 * The PostgreSQL job store: several servers on one database share one
 * durable queue (a cluster). In its own entry point so a server without it
 * never loads the `postgres` client (about 4 MB of memory). From the
 * command line it is `--store postgres://...`; from code:
 *
 * ```ts ignore
 * import { serve } from "@x/gearman/server";
 * import { PostgresJobStore } from "@x/gearman/postgres";
 *
 * const store = await PostgresJobStore.open("postgres://gearman@db/gearman", { name: "a" });
 * await using server = serve({ port: 4730, store });
 * ```
 *
 * @example The options of a store
 * ```ts
 * import type { PostgresStoreOptions } from "@x/gearman/postgres";
 *
 * const options: PostgresStoreOptions = { name: "gearman-a:4730", leaseMs: 30_000 };
 * console.assert(options.leaseMs === 30_000);
 * ```
 *
 * @module
 */

export { PostgresJobStore, type PostgresStoreOptions } from "./src/server/store/postgres_store.ts";
