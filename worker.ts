/**
 * Gearman workers. For now a worker speaks through the low-level
 * {@link PacketClient} (CAN_DO, GRAB_JOB_UNIQ, PRE_SLEEP, WORK_*); the
 * high-level `Worker` builds on it.
 *
 * @example Register and grab a job by hand
 * ```ts
 * import { PacketClient } from "@x/gearman/worker";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * await using worker = await PacketClient.connect({ port: server.addr.port });
 * worker.send("CAN_DO", "reverse");
 * worker.send("GRAB_JOB_UNIQ");
 * assert.equal((await worker.receive()).name, "NO_JOB");
 * ```
 *
 * @module
 */

export { PacketClient } from "./src/client/packet_client.ts";
