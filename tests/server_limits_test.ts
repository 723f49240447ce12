// Connection limits and idle timeouts over real sockets.

import assert from "node:assert/strict";
import { serve } from "../server.ts";
import { PacketClient } from "../client.ts";

Deno.test("server: past maxConnections new connections are closed; the open ones go on", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0, maxConnections: 2 });
  const port = server.addr.port;
  await using a = await PacketClient.connect({ port });
  await using b = await PacketClient.connect({ port });
  a.send("ECHO_REQ", "a");
  b.send("ECHO_REQ", "b");
  assert.equal((await a.receive()).name, "ECHO_RES");
  assert.equal((await b.receive()).name, "ECHO_RES");
  await using c = await PacketClient.connect({ port });
  c.send("ECHO_REQ", "c");
  await assert.rejects(c.receive(2000), /closed/);
  // The first two are unaffected, and a slot frees when one leaves.
  a.send("ECHO_REQ", "again");
  assert.equal((await a.receive()).name, "ECHO_RES");
  await b.close();
  await new Promise((r) => setTimeout(r, 50));
  await using d = await PacketClient.connect({ port });
  d.send("ECHO_REQ", "d");
  assert.equal((await d.receive()).name, "ECHO_RES");
});

Deno.test("server: idleTimeoutMs closes silent connections with nothing pending, not a waiting client", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0, idleTimeoutMs: 300 });
  const port = server.addr.port;
  await using idle = await PacketClient.connect({ port });
  await using waiting = await PacketClient.connect({ port });
  waiting.send("SUBMIT_JOB", "nobody", "", "x");
  assert.equal((await waiting.receive()).name, "JOB_CREATED");
  idle.send("ECHO_REQ", "x");
  assert.equal((await idle.receive()).name, "ECHO_RES");
  await new Promise((r) => setTimeout(r, 900));
  assert.equal(idle.ended, true, "the idle connection was closed");
  assert.equal(waiting.ended, false, "a client waiting on a job is kept");
  waiting.send("ECHO_REQ", "still here");
  assert.equal((await waiting.receive()).name, "ECHO_RES");
});
