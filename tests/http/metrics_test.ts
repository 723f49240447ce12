// /metrics while real clients and workers run jobs: the counters, gauges
// and histograms move as they should, and every scrape is valid
// Prometheus text (checked by the strict parser in _prom.ts).

import assert from "node:assert/strict";
import { Client, JobExceptionError, JobFailedError, PacketClient } from "../../client.ts";
import { Worker } from "../../worker.ts";
import { HISTOGRAM_BUCKETS } from "../../src/server/job_metrics.ts";
import { eventually, gearmanAddress, scrape, startHttpServer } from "./_http.ts";
import { type Family, valueOf } from "./_prom.ts";

const fn = (name: string) => ({ function: name });

/** Sum of a family's samples named `name` whose labels include `labels`. */
function total(f: Map<string, Family>, family: string, name: string, labels = {}): number {
  let sum = 0;
  for (const s of f.get(family)?.samples ?? []) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

Deno.test("metrics: every family is named and typed by Prometheus conventions", async () => {
  await using server = startHttpServer();
  await using client = new Client({ servers: [gearmanAddress(server)] });
  await client.submit("conv", "x", { background: true }).handle;
  const f = await scrape(server);
  for (const family of f.values()) {
    assert.match(family.name, /^gearman_[a-z_]+$/);
    assert.ok(family.help !== undefined && family.help.length > 0, `${family.name} has HELP`);
    if (family.type === "counter") assert.match(family.name, /_total$/);
    else assert.doesNotMatch(family.name, /_total$/);
    if (family.name.includes("seconds")) assert.match(family.name, /_seconds$/);
  }
  for (
    const name of [
      "gearman_jobs_submitted_total",
      "gearman_jobs_completed_total",
      "gearman_jobs_failed_total",
      "gearman_jobs_exceptions_total",
      "gearman_jobs_retried_total",
      "gearman_jobs_queued",
      "gearman_jobs_running",
      "gearman_connected_clients",
      "gearman_connected_workers",
      "gearman_connections_accepted_total",
      "gearman_connections_refused_total",
      "gearman_received_bytes_total",
      "gearman_sent_bytes_total",
      "gearman_job_wait_seconds",
      "gearman_job_run_seconds",
      "gearman_store_info",
    ]
  ) assert.ok(f.has(name), `${name} is exposed`);
  assert.equal(f.get("gearman_job_wait_seconds")?.type, "histogram");
  // The buckets are the server's, plus +Inf.
  const les = f.get("gearman_job_wait_seconds")!.samples
    .filter((s) => s.name.endsWith("_bucket") && s.labels.function === "conv")
    .map((s) => Number(s.labels.le!.replace("+Inf", "Infinity")));
  assert.deepEqual(les, [...HISTOGRAM_BUCKETS, Infinity]);
  assert.equal(
    valueOf(f, "gearman_store_info", {
      backend: "memory",
      description: "memory",
      durable: "false",
    }),
    1,
  );
});

Deno.test("metrics: counters, gauges and histograms follow jobs as they run", async () => {
  await using server = startHttpServer();
  const servers = [gearmanAddress(server)];
  let f = await scrape(server);
  assert.equal(valueOf(f, "gearman_connections_accepted_total"), 0);
  assert.equal(f.get("gearman_jobs_submitted_total")?.samples.length, 0);

  // A worker whose jobs wait for the test to let them go.
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  await using worker = new Worker({ servers, concurrency: 2, clientId: "metrics-worker" });
  worker.register("resize", async (job) => {
    await gate;
    return `done ${job.text()}`;
  });
  worker.start();
  await using client = new Client({ servers });
  // If an assertion fails, let the jobs end so the worker can stop.
  using _release = { [Symbol.dispose]: () => release() };

  const foreground = [1, 2, 3].map((i) => client.run("resize", `fg${i}`));
  await client.submit("resize", "hi", { background: true, priority: "high" }).handle;
  await client.submit("resize", "lo", { background: true, priority: "low" }).handle;

  await eventually("two jobs running", async () => {
    f = await scrape(server);
    return valueOf(f, "gearman_jobs_running", fn("resize")) === 2;
  });
  assert.equal(
    valueOf(f, "gearman_jobs_submitted_total", { ...fn("resize"), priority: "high" }),
    1,
  );
  assert.equal(
    valueOf(f, "gearman_jobs_submitted_total", { ...fn("resize"), priority: "normal" }),
    3,
  );
  assert.equal(valueOf(f, "gearman_jobs_submitted_total", { ...fn("resize"), priority: "low" }), 1);
  assert.equal(total(f, "gearman_jobs_queued", "gearman_jobs_queued", fn("resize")), 3);
  assert.equal(valueOf(f, "gearman_function_workers", fn("resize")), 1);
  assert.equal(valueOf(f, "gearman_connected_workers"), 1);
  assert.ok(valueOf(f, "gearman_connected_clients")! >= 1);
  assert.ok(valueOf(f, "gearman_connections_accepted_total")! >= 2);
  assert.equal(
    valueOf(f, "gearman_open_connections"),
    valueOf(f, "gearman_connections_accepted_total"),
  );
  const received = valueOf(f, "gearman_received_bytes_total")!;
  const sent = valueOf(f, "gearman_sent_bytes_total")!;
  assert.ok(received > 0 && sent > 0, "bytes are counted");
  // Two jobs were taken: their wait is measured, no run has ended yet.
  assert.equal(valueOf(f, "gearman_job_wait_seconds_count", fn("resize")), 2);
  assert.equal(valueOf(f, "gearman_job_run_seconds_count", fn("resize")), 0);
  assert.equal(valueOf(f, "gearman_jobs_completed_total", fn("resize")), 0);

  await new Promise((r) => setTimeout(r, 60)); // the first two jobs run for 60 ms or more
  release();
  assert.deepEqual((await Promise.all(foreground)).map((r) => r.text()), [
    "done fg1",
    "done fg2",
    "done fg3",
  ]);
  await eventually("all five completed", async () => {
    f = await scrape(server);
    return valueOf(f, "gearman_jobs_completed_total", fn("resize")) === 5;
  });
  assert.equal(valueOf(f, "gearman_jobs_running", fn("resize")), 0);
  assert.equal(total(f, "gearman_jobs_queued", "gearman_jobs_queued", fn("resize")), 0);
  assert.equal(valueOf(f, "gearman_job_wait_seconds_count", fn("resize")), 5);
  assert.equal(valueOf(f, "gearman_job_run_seconds_count", fn("resize")), 5);
  // At least the two held jobs ran past 50 ms: they are above the 0.05 bucket.
  const under50ms = valueOf(f, "gearman_job_run_seconds_bucket", { ...fn("resize"), le: "0.05" })!;
  assert.ok(under50ms <= 3, `at most 3 of 5 runs under 50 ms, got ${under50ms}`);
  assert.ok(valueOf(f, "gearman_job_run_seconds_sum", fn("resize"))! >= 0.1);
  // Three queued jobs waited for the first two to finish: 50 ms or more.
  assert.ok(valueOf(f, "gearman_job_wait_seconds_sum", fn("resize"))! >= 0.15);
  assert.ok(valueOf(f, "gearman_received_bytes_total")! > received);
  assert.ok(valueOf(f, "gearman_sent_bytes_total")! > sent);
});

Deno.test("metrics: failures, exceptions and retries are counted by function", async () => {
  await using server = startHttpServer();
  const servers = [gearmanAddress(server)];
  await using throwing = new Worker({ servers });
  throwing.register("boom", () => {
    throw new Error("kaboom");
  });
  throwing.start();
  await using failing = new Worker({ servers, exceptions: false });
  failing.register("nope", () => {
    throw new Error("no");
  });
  failing.start();
  await using client = new Client({ servers, exceptions: true });
  await assert.rejects(client.run("boom", "x"), JobExceptionError);
  await assert.rejects(client.run("nope", "x"), JobFailedError);

  // A raw worker takes a job and dies holding it: the job is requeued (retried).
  const raw = await PacketClient.connect({ hostname: "127.0.0.1", port: server.addr.port });
  raw.send("CAN_DO", "flaky");
  const result = client.run("flaky", "again");
  raw.send("GRAB_JOB_UNIQ");
  for (;;) {
    const p = await raw.receive();
    if (p.name === "JOB_ASSIGN_UNIQ") break;
    if (p.name === "NO_JOB") {
      raw.send("PRE_SLEEP");
      continue;
    }
    if (p.name === "NOOP") raw.send("GRAB_JOB_UNIQ");
  }
  await raw.close();
  await using good = new Worker({ servers });
  good.register("flaky", (job) => job.text());
  good.start();
  assert.equal((await result).text(), "again");

  const f = await scrape(server);
  assert.equal(valueOf(f, "gearman_jobs_exceptions_total", fn("boom")), 1);
  assert.equal(valueOf(f, "gearman_jobs_failed_total", fn("boom")), 0);
  assert.equal(valueOf(f, "gearman_jobs_failed_total", fn("nope")), 1);
  assert.equal(valueOf(f, "gearman_jobs_retried_total", fn("flaky")), 1);
  assert.equal(valueOf(f, "gearman_jobs_completed_total", fn("flaky")), 1);
  // The retried job waited twice (before each worker took it) and ran twice.
  assert.equal(valueOf(f, "gearman_job_wait_seconds_count", fn("flaky")), 2);
  assert.equal(valueOf(f, "gearman_job_run_seconds_count", fn("flaky")), 1);
  assert.equal(valueOf(f, "gearman_job_run_seconds_count", fn("boom")), 1);
});

Deno.test("metrics: scrapes stay valid and monotonic under load", async () => {
  await using server = startHttpServer();
  const servers = [gearmanAddress(server)];
  await using worker = new Worker({ servers, concurrency: 4 });
  worker.register("echo", (job) => job.data);
  worker.register("slow", async (job) => {
    await new Promise((r) => setTimeout(r, 2));
    return job.data;
  });
  worker.start();
  await using client = new Client({ servers });
  const jobs: Promise<unknown>[] = [];
  for (let i = 0; i < 600; i++) {
    const name = i % 3 === 0 ? "slow" : "echo";
    const priority = (["high", "normal", "low"] as const)[i % 3]!;
    jobs.push(client.run(name, `job ${i}`, { priority }));
  }
  const all = Promise.all(jobs);
  let done = false;
  void all.finally(() => done = true);
  const counters = [
    "gearman_jobs_submitted_total",
    "gearman_jobs_completed_total",
    "gearman_received_bytes_total",
    "gearman_sent_bytes_total",
    "gearman_job_wait_seconds",
    "gearman_job_run_seconds",
  ];
  let previous = new Map<string, number>();
  let scrapes = 0;
  while (!done || scrapes < 3) {
    const f = await scrape(server); // throws if not valid exposition
    scrapes++;
    const now = new Map<string, number>();
    for (const name of counters) {
      for (const s of f.get(name)?.samples ?? []) {
        now.set(s.name + JSON.stringify(s.labels), s.value);
      }
    }
    for (const [key, value] of previous) {
      assert.ok((now.get(key) ?? -1) >= value, `${key} went from ${value} to ${now.get(key)}`);
    }
    previous = now;
    // Every job that ended was taken first.
    const completed = total(f, "gearman_jobs_completed_total", "gearman_jobs_completed_total");
    const taken = total(f, "gearman_job_wait_seconds", "gearman_job_wait_seconds_count");
    assert.ok(taken >= completed);
    if (done && scrapes >= 3) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  await all;
  const f = await scrape(server);
  assert.equal(total(f, "gearman_jobs_completed_total", "gearman_jobs_completed_total"), 600);
  assert.equal(total(f, "gearman_jobs_submitted_total", "gearman_jobs_submitted_total"), 600);
  assert.equal(
    total(f, "gearman_jobs_submitted_total", "gearman_jobs_submitted_total", { priority: "high" }),
    200,
  );
  assert.equal(total(f, "gearman_job_run_seconds", "gearman_job_run_seconds_count"), 600);
  assert.ok(scrapes >= 3);
});

Deno.test("metrics: function names that need escaping or are not UTF-8 give valid, distinct labels", async () => {
  await using server = startHttpServer();
  const enc = new TextEncoder();
  const names: [Uint8Array, string][] = [
    [enc.encode('say "hi"'), 'say "hi"'],
    [enc.encode("back\\slash"), "back\\slash"],
    [enc.encode("two\nlines"), "two\nlines"],
    [enc.encode("résumé ✓"), "résumé ✓"],
    [new Uint8Array([0x62, 0xff, 0xfe, 0x61]), "b\\xff\\xfea"],
    [new Uint8Array([0xc3, 0x28]), "\\xc3("],
    // A UTF-8 name spelling what the non-UTF-8 one below is shown as.
    [enc.encode("z\\xff"), "z\\xff"],
    [new Uint8Array([0x7a, 0xff]), "z\\xff #2"],
  ];
  const w = await PacketClient.connect({ hostname: "127.0.0.1", port: server.addr.port });
  for (const [bytes] of names) w.send("CAN_DO", bytes);
  w.send("ECHO_REQ", "sync");
  await w.receive();
  const c = await PacketClient.connect({ hostname: "127.0.0.1", port: server.addr.port });
  for (const [bytes] of names) {
    c.send("SUBMIT_JOB_BG", bytes, "", "data");
    assert.equal((await c.receive()).name, "JOB_CREATED");
  }
  const f = await scrape(server); // valid UTF-8 and valid exposition, or it throws
  const labels = f.get("gearman_jobs_queued")!.samples
    .filter((s) => s.labels.priority === "normal")
    .map((s) => s.labels.function!);
  assert.deepEqual(labels, names.map(([, label]) => label));
  for (const [, label] of names) {
    assert.equal(valueOf(f, "gearman_function_workers", fn(label)), 1, label);
    assert.equal(
      valueOf(f, "gearman_jobs_submitted_total", { ...fn(label), priority: "normal" }),
      1,
    );
  }
  await w.close();
  await c.close();
});
