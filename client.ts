/**
 * Gearman clients. For now this is the low-level {@link PacketClient}: one
 * connection that sends request packets and receives responses and admin
 * replies. The high-level `Client` (job handles, results, failover) builds
 * on it.
 *
 * @example Ask a server for its status
 * ```ts
 * import { PacketClient } from "@x/gearman/client";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * await using conn = await PacketClient.connect({ port: server.addr.port });
 * assert.deepEqual(await conn.admin("status"), []);
 * ```
 *
 * @module
 */

export {
  ConnectionClosedError,
  PacketClient,
  type PacketClientOptions,
} from "./src/client/packet_client.ts";
