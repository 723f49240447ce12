// The HTTP endpoint's health checks, JSON API and state-changing endpoints.

import assert from "node:assert/strict";
import { AdminClient, Client, PacketClient } from "../../client.ts";
import { Worker } from "../../worker.ts";
import type { ApiHistory, ApiJobs, ApiStatus, ApiWorkers } from "../../server.ts";
import { eventually, gearmanAddress, get, getJson, post, startHttpServer, TOKEN } from "./_http.ts";
import { serve } from "../../server.ts";
import { parseServerFlags, UsageError } from "../../src/server/cli.ts";

Deno.test("http: off by default", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 });
  assert.equal(server.httpAddr, undefined);
});

Deno.test("http: /healthz and /readyz", async () => {
  await using server = startHttpServer();
  const health = await get(server, "/healthz");
  assert.equal(health.status, 200);
  assert.equal(health.body, "ok\n");
  const ready = await get(server, "/readyz");
  assert.equal(ready.status, 200);
  assert.equal(ready.body, "ready\n");
  const missing = await get(server, "/nope");
  assert.equal(missing.status, 404);
});

Deno.test("http: /readyz answers 503 while draining, and the endpoint stays up until the end", async () => {
  await using server = startHttpServer({ adminToken: TOKEN });
  const servers = [gearmanAddress(server)];
  // A running job keeps the drain from finishing.
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  let started!: () => void;
  const running = new Promise<void>((r) => started = r);
  await using worker = new Worker({ servers });
  worker.register("hold", async () => {
    started();
    await gate;
    return "done";
  });
  worker.start();
  await using client = new Client({ servers });
  const job = client.submit("hold", "");
  await running;
  const r = await post(server, "/api/drain");
  assert.equal(r.status, 202, JSON.stringify(r.json));
  await eventually("draining", async () => (await get(server, "/readyz")).status === 503);
  const ready = await get(server, "/readyz");
  assert.match(ready.body, /^not ready: .*draining/);
  const status = await getJson<ApiStatus>(server, "/api/status");
  assert.equal(status.server.draining, true);
  assert.equal(status.server.ready, false);
  assert.equal(status.server.accepting, false);
  const metrics = await get(server, "/metrics");
  assert.match(metrics.body, /^gearman_ready 0$/m);
  assert.match(metrics.body, /^gearman_draining 1$/m);
  release();
  assert.equal((await job.result).text(), "done");
  await server.finished;
  await assert.rejects(fetch(`http://127.0.0.1:${server.httpAddr!.port}/healthz`));
});

Deno.test("http: /api/status, /api/workers and /api/jobs report what the admin protocol reports", async () => {
  await using server = startHttpServer();
  const servers = [gearmanAddress(server)];
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  await using worker = new Worker({ servers, clientId: "api-worker" });
  worker.register("thumb", async () => {
    await gate;
    return "ok";
  });
  worker.start();
  await using client = new Client({ servers });
  const running = client.run("thumb", "a", { unique: "img-1" });
  // If an assertion fails, let the job end so the worker can stop.
  using _release = { [Symbol.dispose]: () => release() };
  await eventually("the first job running", async () => {
    return (await getJson<ApiStatus>(server, "/api/status")).totals.running === 1;
  });
  await client.submit("thumb", "b", { background: true, priority: "high", unique: "img-2" }).handle;
  await client.submit("thumb", "c", { background: true, priority: "low" }).handle;
  await client.submit("idle", "d", { background: true }).handle;
  await using admin = await AdminClient.connect(gearmanAddress(server));
  const status = await getJson<ApiStatus>(server, "/api/status");
  const adminStatus = await admin.status();
  for (const a of adminStatus) {
    const f = status.functions.find((f) => f.name === a.function);
    assert.ok(f, `${a.function} is listed`);
    assert.equal(f.total, a.total);
    assert.equal(f.running, a.running);
    assert.equal(f.workers, a.workers);
  }
  assert.deepEqual(status.functions.map((f) => f.name), ["idle", "thumb"]);
  const thumb = status.functions.find((f) => f.name === "thumb")!;
  assert.deepEqual(thumb.queued, { high: 1, normal: 0, low: 1 });
  assert.deepEqual(thumb.submitted, { high: 1, normal: 1, low: 1 });
  assert.equal(thumb.wait.count, 1);
  assert.equal(thumb.urlName, "thumb");
  assert.equal(status.totals.submitted, 4);
  assert.equal(status.totals.queued, 3);
  assert.equal(status.connections.workers, 1);
  assert.equal(status.server.store.durable, false);
  assert.equal(status.server.address, gearmanAddress(server));
  assert.equal(status.server.adminEnabled, false);

  const workers = await getJson<ApiWorkers>(server, "/api/workers");
  const adminWorkers = await admin.workers();
  assert.equal(workers.connections.length, adminWorkers.length);
  const w = workers.connections.find((c) => c.kind === "worker")!;
  assert.equal(w.clientId, "api-worker");
  assert.deepEqual(w.functions, ["thumb"]);
  assert.equal(w.jobs.length, 1);

  const jobs = await getJson<ApiJobs>(server, "/api/jobs?function=thumb");
  assert.equal(jobs.total, 3);
  assert.equal(jobs.truncated, false);
  const byUnique = Object.fromEntries(jobs.jobs.map((j) => [j.unique, j]));
  assert.equal(byUnique["img-1"]?.state, "running");
  assert.equal(byUnique["img-1"]?.workerId, w.id);
  assert.equal(byUnique["img-1"]?.clients, 1);
  assert.equal(byUnique["img-1"]?.handle, w.jobs[0]);
  assert.equal(byUnique["img-2"]?.state, "queued");
  assert.equal(byUnique["img-2"]?.priority, "high");
  assert.equal(byUnique["img-2"]?.background, true);
  const adminJobs = await admin.showJobs();
  assert.equal(adminJobs.length, 4);
  const limited = await getJson<ApiJobs>(server, "/api/jobs?limit=1");
  assert.equal(limited.jobs.length, 1);
  assert.equal(limited.total, 4);
  assert.equal(limited.truncated, true);
  assert.equal((await get(server, "/api/jobs?function=missing")).status, 404);
  assert.equal((await get(server, "/api/jobs?limit=-1")).status, 400);

  const history = await getJson<ApiHistory>(server, "/api/history");
  assert.equal(history.intervalMs, 1000);
  assert.ok(history.samples.length >= 1);
  release();
  assert.equal((await running).text(), "ok");
});

Deno.test("http: names that are not UTF-8 round-trip through urlName", async () => {
  await using server = startHttpServer({ adminToken: TOKEN });
  const c = await PacketClient.connect({ hostname: "127.0.0.1", port: server.addr.port });
  c.send("SUBMIT_JOB_BG", new Uint8Array([0x66, 0xff, 0x20, 0x2f]), "", "x");
  assert.equal((await c.receive()).name, "JOB_CREATED");
  await c.close();
  const status = await getJson<ApiStatus>(server, "/api/status");
  const f = status.functions[0]!;
  assert.equal(f.name, "f\\xff /");
  assert.equal(f.urlName, "f%FF%20%2F");
  const jobs = await getJson<ApiJobs>(server, `/api/jobs?function=${f.urlName}`);
  assert.equal(jobs.total, 1);
  assert.equal(jobs.jobs[0]!.function, "f\\xff /");
  const cancel = await post(server, `/api/jobs/${encodeURIComponent(jobs.jobs[0]!.handle)}/cancel`);
  assert.equal(cancel.status, 200, JSON.stringify(cancel.json));
  const drop = await post(server, `/api/functions/${f.urlName}/drop`);
  assert.equal(drop.status, 200, JSON.stringify(drop.json));
  assert.deepEqual((await getJson<ApiStatus>(server, "/api/status")).functions, []);
});

Deno.test("http: state-changing endpoints are refused without a configured token", async () => {
  await using server = startHttpServer();
  for (
    const path of [
      "/api/drain",
      "/api/jobs/H:test:1/cancel",
      "/api/functions/f/drop",
      "/api/functions/f/maxqueue",
    ]
  ) {
    const r = await post(server, path, { max: 1 });
    assert.equal(r.status, 403, path);
    assert.match(String(r.json.error), /--admin-token/);
  }
  assert.equal((await getJson<ApiStatus>(server, "/api/status")).server.draining, false);
});

Deno.test("http: state-changing endpoints need the right bearer token", async () => {
  await using server = startHttpServer({ adminToken: TOKEN });
  const none = await post(server, "/api/functions/f/maxqueue", { max: 1 }, null);
  assert.equal(none.status, 401);
  assert.match(none.headers.get("www-authenticate") ?? "", /^Bearer/);
  const wrong = await post(server, "/api/functions/f/maxqueue", { max: 1 }, TOKEN + "x");
  assert.equal(wrong.status, 401);
  const get405 = await get(server, "/api/drain");
  assert.equal(get405.status, 405);
  assert.equal((await getJson<ApiStatus>(server, "/api/status")).functions.length, 0);
});

Deno.test("http: cancel, drop and maxqueue act as their admin commands do", async () => {
  await using server = startHttpServer({ adminToken: TOKEN });
  const servers = [gearmanAddress(server)];
  await using client = new Client({ servers });
  await using admin = await AdminClient.connect(gearmanAddress(server));

  // maxqueue: one limit for all priorities, then per priority, then the default.
  let r = await post(server, "/api/functions/limited/maxqueue", { max: 1 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  await client.submit("limited", "1", { background: true }).handle;
  await assert.rejects(
    client.submit("limited", "2", { background: true }).handle,
    /queue is full/i,
  );
  r = await post(server, "/api/functions/limited/maxqueue", { high: 5, normal: 0, low: 1 });
  assert.equal(r.status, 200);
  let status = await getJson<ApiStatus>(server, "/api/status");
  assert.deepEqual(status.functions.find((f) => f.name === "limited")?.maxQueue, {
    high: 5,
    normal: 0,
    low: 1,
  });
  r = await post(server, "/api/functions/limited/maxqueue", { max: null });
  assert.equal(r.status, 200);
  status = await getJson<ApiStatus>(server, "/api/status");
  assert.equal(status.functions.find((f) => f.name === "limited")?.maxQueue, null);
  for (const bad of [{ max: -1 }, { max: 1.5 }, { high: 1 }, [1], "x"]) {
    assert.equal((await post(server, "/api/functions/limited/maxqueue", bad)).status, 400);
  }

  // cancel: the job goes; an unknown handle is a 404.
  const handle = await client.submit("limited", "3", { background: true }).handle;
  const jobs = await getJson<ApiJobs>(server, "/api/jobs?function=limited");
  assert.equal(jobs.total, 2);
  r = await post(server, `/api/jobs/${encodeURIComponent(handle)}/cancel`);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal((await getJson<ApiJobs>(server, "/api/jobs?function=limited")).total, 1);
  assert.equal((await post(server, `/api/jobs/${encodeURIComponent(handle)}/cancel`)).status, 404);

  // drop: refused while jobs are queued or workers are connected, then done.
  r = await post(server, "/api/functions/limited/drop");
  assert.equal(r.status, 409);
  assert.match(String(r.json.error), /queued jobs/);
  const last = (await getJson<ApiJobs>(server, "/api/jobs?function=limited")).jobs[0]!;
  assert.equal(
    (await post(server, `/api/jobs/${encodeURIComponent(last.handle)}/cancel`)).status,
    200,
  );
  await using worker = new Worker({ servers });
  worker.register("limited", () => "x");
  worker.start();
  await eventually("the worker registered", async () => {
    const s = await getJson<ApiStatus>(server, "/api/status");
    return s.functions.find((f) => f.name === "limited")?.workers === 1;
  });
  assert.equal((await post(server, "/api/functions/limited/drop")).status, 409);
  await worker.stop();
  await eventually("the worker gone", async () => {
    const s = await getJson<ApiStatus>(server, "/api/status");
    return s.functions.find((f) => f.name === "limited")?.workers === 0;
  });
  r = await post(server, "/api/functions/limited/drop");
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.ok(!(await admin.status()).some((f) => f.function === "limited"));
  assert.equal((await post(server, "/api/functions/limited/drop")).status, 404);
});

Deno.test("http: the dashboard and its files are served with a strict CSP", async () => {
  await using server = startHttpServer();
  const page = await get(server, "/");
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(page.headers.get("content-security-policy") ?? "", /script-src 'self'/);
  assert.match(page.body, /<script src="dashboard\.js"/);
  assert.doesNotMatch(page.body, /https?:\/\//, "nothing from a CDN");
  const js = await get(server, "/dashboard.js");
  assert.match(js.headers.get("content-type") ?? "", /^text\/javascript/);
  assert.match(js.body, /api\/status/);
  const css = await get(server, "/dashboard.css");
  assert.match(css.headers.get("content-type") ?? "", /^text\/css/);
});

Deno.test("http: options and flags are checked", () => {
  assert.throws(
    () => serve({ hostname: "127.0.0.1", port: 0, http: { port: 0 }, adminToken: "has space" }),
    /no spaces/,
  );
  assert.throws(
    () => serve({ hostname: "127.0.0.1", port: 0, adminToken: "" }),
    /adminToken must be/,
  );
  assert.throws(
    () => serve({ hostname: "127.0.0.1", port: 0, http: { port: 70000 } }),
    /http\.port/,
  );
  assert.deepEqual(parseServerFlags(["--http", "0.0.0.0:9100"]).http, {
    hostname: "0.0.0.0",
    port: 9100,
    tls: false,
  });
  assert.deepEqual(parseServerFlags(["--http", "9100"]).http, {
    hostname: "127.0.0.1",
    port: 9100,
    tls: false,
  });
  assert.deepEqual(parseServerFlags(["--http", "[::1]:9100"]).http, {
    hostname: "::1",
    port: 9100,
    tls: false,
  });
  assert.equal(parseServerFlags([]).http, undefined);
  assert.deepEqual(
    parseServerFlags(["--http", "9100", "--http-tls", "--tls-cert", "c", "--tls-key", "k"]).http,
    { hostname: "127.0.0.1", port: 9100, tls: true },
  );
  assert.throws(() => parseServerFlags(["--http", "host:"]), UsageError);
  assert.throws(() => parseServerFlags(["--http", "x:99999"]), UsageError);
  assert.equal(parseServerFlags(["--admin-token", TOKEN]).adminToken, TOKEN);
  assert.throws(() => parseServerFlags(["--http", "1", "--admin-token", "a b"]), UsageError);
  assert.equal(parseServerFlags(["--http", "1", "--admin-token", TOKEN]).adminToken, TOKEN);
});

Deno.test("http: a taken HTTP port fails the start and leaves nothing open", async () => {
  await using first = startHttpServer();
  assert.throws(
    () =>
      serve({
        hostname: "127.0.0.1",
        port: 0,
        http: { hostname: "127.0.0.1", port: first.httpAddr!.port },
      }),
    (err: unknown) => err instanceof Deno.errors.AddrInUse && /HTTP/.test((err as Error).message),
  );
});

Deno.test("http: the command line serves HTTP with --http and says where", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-N",
      new URL("../../server.ts", import.meta.url).pathname,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--http",
      "127.0.0.1:0",
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/http on .*\n/.test(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const m = text.match(/^http on 127\.0\.0\.1:(\d+)$/m);
  assert.ok(m, `unexpected output: ${JSON.stringify(text)}`);
  const res = await fetch(`http://127.0.0.1:${m[1]}/healthz`);
  assert.equal(await res.text(), "ok\n");
  child.kill("SIGTERM");
  assert.equal((await child.status).code, 0);
  await reader.cancel();
  await child.stderr.cancel();
});

Deno.test("http: the admin token is the admin text protocol's too (auth TOKEN)", async () => {
  await using server = startHttpServer({ adminToken: TOKEN });
  using conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const line = async (command: string) => {
    await conn.write(new TextEncoder().encode(command + "\n"));
    const buf = new Uint8Array(256);
    const n = await conn.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  };
  assert.match(await line("auth wrong-token-wrong-token"), /^ERR PERMISSION_DENIED/);
  assert.equal(await line(`auth ${TOKEN}`), "OK\r\n");
});
