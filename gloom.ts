/**
 * Gloom for this server: a master (client) and a worker for the Gloom
 * protocol, a JSON job protocol in which every message is a 32-bit
 * big-endian byte count followed by that many bytes of JSON. Start the
 * server with `--gloom` (or `serve({ gloom: {} })`): masters connect to port
 * 9998, workers to 9999.
 *
 * Gloom job types are Gearman function names, so the two protocols share
 * queues: a Gloom master's job can be run by a Gearman worker (it gets the
 * body's JSON text as its data) and a Gearman client's job by a Gloom
 * worker (it gets the data parsed as JSON, or as a string). See
 * docs/GLOOM.md for the wire format, the error frames and the status reply.
 *
 * @example A master and a worker
 * ```ts
 * import { GloomMaster, GloomWorker } from "@x/gearman/gloom";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({
 *   hostname: "127.0.0.1",
 *   port: 0,
 *   gloom: { masterPort: 0, workerPort: 0 },
 * });
 * const { master, worker } = server.gloomAddrs!;
 *
 * await using w = await GloomWorker.connect({ port: worker.port });
 * w.join("echo", (body, job) => ({ echoed: body, id: job.id }));
 *
 * await using m = await GloomMaster.connect({ port: master.port });
 * assert.deepEqual(await m.submit("echo", "msg-1", [1, 2]), { echoed: [1, 2], id: "msg-1" });
 * ```
 *
 * @example A Gearman client served by a Gloom worker
 * ```ts
 * import { GloomWorker } from "@x/gearman/gloom";
 * import { Client } from "@x/gearman/client";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, workerPort: 0 } });
 * await using w = await GloomWorker.connect({ port: server.gloomAddrs!.worker.port });
 * w.join("sum", (body) => (body as number[]).reduce((a, b) => a + b, 0));
 * await using client = new Client({ servers: [`127.0.0.1:${server.addr.port}`] });
 * assert.equal((await client.run("sum", "[1,2,3]")).text(), "6");
 * ```
 *
 * @module
 */

export {
  type GloomConnectOptions,
  GloomError,
  type GloomJobTypeStatus,
  GloomMaster,
  type GloomStatus,
  type GloomSubmitOptions,
} from "./src/gloom/gloom_master.ts";
export {
  type GloomHandler,
  type GloomJob,
  GloomWorker,
  type GloomWorkerOptions,
} from "./src/gloom/gloom_worker.ts";
export type { GloomErrorCode, GloomErrorFrame, GloomId } from "./src/gloom/messages.ts";
export {
  DEFAULT_GLOOM_MASTER_PORT,
  DEFAULT_GLOOM_WORKER_PORT,
  DEFAULT_MAX_FRAME_SIZE,
  encodeFrame,
  GloomFrameError,
  GloomFramer,
} from "./src/gloom/frame.ts";
