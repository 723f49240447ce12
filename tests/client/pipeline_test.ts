// A Client that submits many jobs at once: the connect timeout counts only
// time the event loop was free (a long synchronous submit loop right after
// making the client must not time the connection out).

import assert from "node:assert/strict";
import { AdminClient, Client } from "../../client.ts";
import { HOST, within } from "./_servers.ts";
import { serve } from "../../server.ts";
import { loopTimeout } from "../../src/client/loop_timeout.ts";

Deno.test("client pipeline: 100,000 background submits made at once all get handles and are all queued", async () => {
  await using server = serve({ hostname: HOST, port: 0 });
  const at = `${HOST}:${server.addr.port}`;
  // A short connect timeout: the synchronous loop below blocks the event
  // loop for longer than that, which must not count against the connect.
  await using client = new Client({ servers: [at], connectTimeoutMs: 250 });
  const N = 100_000;
  const handles: Promise<string>[] = [];
  for (let i = 0; i < N; i++) {
    handles.push(client.submit("pipelined", String(i), { background: true }).handle);
  }
  const got = await within("100,000 handles", 60_000, Promise.all(handles));
  assert.equal(new Set(got).size, N, "every job got its own handle");
  await using admin = await AdminClient.connect(at, { timeoutMs: 10_000 });
  const row = (await admin.status()).find((s) => s.function === "pipelined");
  assert.deepEqual(row, { function: "pipelined", total: N, running: 0, workers: 0 });
});

Deno.test("client pipeline: a connect is not timed out by synchronous work after the submit", async () => {
  await using server = serve({ hostname: HOST, port: 0 });
  await using client = new Client({
    servers: [`${HOST}:${server.addr.port}`],
    connectTimeoutMs: 100,
  });
  const job = client.submit("blocked", "x", { background: true });
  // Keep the event loop busy for several connect timeouts: the connection
  // has come meanwhile, and the expired timer must not win over it.
  const end = Date.now() + 600;
  while (Date.now() < end) { /* busy */ }
  assert.match(await job.handle, /^H:/);
});

Deno.test("client pipeline: loopTimeout does not count time the event loop was blocked", async () => {
  let fired = false;
  const cancel = loopTimeout(300, () => (fired = true));
  try {
    const end = Date.now() + 400;
    while (Date.now() < end) { /* busy */ }
    // A plain 300 ms timer would have fired by now; this one has counted
    // at most one step of the blocked time.
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(fired, false);
    await within(
      "the loop timeout",
      10_000,
      (async () => {
        while (!fired) await new Promise((r) => setTimeout(r, 20));
      })(),
    );
  } finally {
    cancel();
  }
});
