// The Gloom listeners as part of the server: options, addresses, shutdown,
// and the command line flags.

import assert from "node:assert/strict";
import { serve } from "../../server.ts";
import { parseServerFlags } from "../../src/server/cli.ts";
import { RawGloom, rawWorker, startGloomServer } from "./_helpers.ts";

const serverPath = new URL("../../server.ts", import.meta.url).pathname;

Deno.test("gloom server: no listeners unless asked; port 0 picks free ports on the server's host", async () => {
  await using plain = serve({ hostname: "127.0.0.1", port: 0 });
  assert.equal(plain.gloomAddrs, undefined);
  await using server = startGloomServer();
  const { master, worker } = server.gloomAddrs!;
  assert.equal(master.hostname, "127.0.0.1");
  assert.equal(worker.hostname, "127.0.0.1");
  assert.ok(master.port > 0 && worker.port > 0);
  assert.notEqual(master.port, worker.port);
  assert.notEqual(master.port, server.addr.port);
});

Deno.test("gloom server: a taken Gloom port fails serve() and releases the other listeners", () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  assert.throws(
    () =>
      serve({
        hostname: "127.0.0.1",
        port: 0,
        gloom: { masterPort: 0, workerPort: taken.addr.port },
      }),
    (err: Error) => {
      assert.ok(err instanceof Deno.errors.AddrInUse);
      assert.match(err.message, new RegExp(`Gloom workers on 127\\.0\\.0\\.1:${taken.addr.port}`));
      return true;
    },
  );
  // (The leak sanitizer checks that the Gearman and master listeners were closed.)
});

Deno.test("gloom server: bad Gloom options are refused", () => {
  for (
    const gloom of [
      { masterPort: -1 },
      { workerPort: 65536 },
      { masterPort: 1.5 },
      { maxFrameSize: 0 },
    ]
  ) {
    assert.throws(() => serve({ hostname: "127.0.0.1", port: 0, gloom }), RangeError);
  }
});

Deno.test("gloom server: shutdown closes Gloom connections and listeners", async () => {
  const server = startGloomServer();
  const { master } = server.gloomAddrs!;
  const m = await RawGloom.master(server);
  const w = await rawWorker(server, "t");
  await server.shutdown();
  await m.expectClosed();
  await w.expectClosed();
  await m.close();
  await w.close();
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: master.port }),
    Deno.errors.ConnectionRefused,
  );
});

Deno.test("gloom server: a graceful shutdown lets a running Gloom job finish, then closes", async () => {
  const server = startGloomServer();
  const m = await RawGloom.master(server);
  const w = await rawWorker(server, "t");
  await m.send({ type: "job", job_type: "t", id: 1, body: "still served" });
  // The job is running (the worker has it) when the drain starts.
  const job = await w.recv();
  let finished = false;
  const done = server.shutdown({ graceful: true }).then(() => (finished = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(finished, false, "not finished while the job runs");
  await w.send({ type: "response", body: job.body });
  assert.deepEqual(await m.recv(), { id: 1, body: "still served" });
  await done;
  assert.equal(finished, true);
  await m.close();
  await w.close();
});

Deno.test("gloom CLI flags", () => {
  assert.equal(parseServerFlags([]).gloom, undefined);
  assert.deepEqual(parseServerFlags(["--gloom"]).gloom, {
    masterPort: 9998,
    workerPort: 9999,
    maxFrameSize: 16 * 1024 * 1024,
    tls: false,
  });
  assert.deepEqual(parseServerFlags(["--gloom-worker-port", "7001"]).gloom, {
    masterPort: 9998,
    workerPort: 7001,
    maxFrameSize: 16 * 1024 * 1024,
    tls: false,
  });
  assert.deepEqual(
    parseServerFlags(["--gloom-master-port", "0", "--gloom-max-frame-size", "1024"]).gloom,
    { masterPort: 0, workerPort: 9999, maxFrameSize: 1024, tls: false },
  );
  assert.deepEqual(
    parseServerFlags(["--gloom-tls", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).gloom,
    { masterPort: 9998, workerPort: 9999, maxFrameSize: 16 * 1024 * 1024, tls: true },
  );
  assert.throws(() => parseServerFlags(["--gloom-master-port", "x"]), /--gloom-master-port/);
  assert.throws(() => parseServerFlags(["--gloom-max-frame-size", "0"]), /at least 1/);
});

Deno.test("gloom CLI: prints the Gloom addresses, serves a job, stops on SIGTERM", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-N",
      serverPath,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--gloom-master-port",
      "0",
      "--gloom-worker-port",
      "0",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/gloom masters on .*\n/.test(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const match = text.match(/gloom masters on 127\.0\.0\.1:(\d+), workers on 127\.0\.0\.1:(\d+)/);
  assert.ok(match, text);
  assert.match(text, /^listening on 127\.0\.0\.1:\d+\n/);
  {
    await using w = await RawGloom.connect(Number(match[2]));
    await w.send({ type: "join", job_type: "cli" });
    await using m = await RawGloom.connect(Number(match[1]));
    await m.send({ type: "job", job_type: "cli", id: "c", body: 1 });
    const job = await w.recv();
    await w.send({ type: "response", body: job.body + 1 });
    assert.deepEqual(await m.recv(), { id: "c", body: 2 });
  }
  child.kill("SIGTERM");
  const status = await child.status;
  await reader.cancel();
  await child.stderr.cancel();
  assert.equal(status.code, 0);
});

Deno.test("gloom CLI: a taken Gloom port exits 1 and names it", async () => {
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-N",
      serverPath,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--gloom-master-port",
      String(taken.addr.port),
      "--gloom-worker-port",
      "0",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 1);
  assert.match(stderr, new RegExp(`Gloom masters on 127\\.0\\.0\\.1:${taken.addr.port}`));
  assert.match(stderr, /--gloom-master-port/);
});
