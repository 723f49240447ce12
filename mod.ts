/**
 * Gearman for Deno: a job server that every Gearman client and worker
 * speaks to, plus the protocol and connections to build clients and
 * workers.
 *
 * - `@x/gearman/server`: {@link serve} a job server (also a CLI).
 * - `@x/gearman/client`, `@x/gearman/worker`: Client, Worker and AdminClient for
 *   any Gearman server.
 * - `@x/gearman/cli`: a command line with the gearman and gearadmin flags.
 * - `@x/gearman/protocol`: the packet table, framer and encoder, no I/O.
 *
 * @example Run a job through the server by hand
 * ```ts
 * import { PacketClient, serve } from "@x/gearman";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const { port } = server.addr;
 * await using worker = await PacketClient.connect({ port });
 * await using client = await PacketClient.connect({ port });
 * worker.send("CAN_DO", "reverse");
 * client.send("SUBMIT_JOB", "reverse", "", "hello");
 * const created = await client.receive();
 * worker.send("GRAB_JOB");
 * const assigned = await worker.receive();
 * assert.equal(assigned.name, "JOB_ASSIGN");
 * worker.send("WORK_COMPLETE", assigned.args[0]!, "olleh");
 * const done = await client.receive();
 * assert.deepEqual(done.args[0], created.args[0]);
 * assert.equal(new TextDecoder().decode(done.args[1]), "olleh");
 * ```
 *
 * @module
 */

export * from "./src/protocol/mod.ts";
export * from "./server.ts";
export * from "./postgres.ts";
export * from "./client.ts";
export * from "./worker.ts";
