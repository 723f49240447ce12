// The Worker: graceful stop with jobs in flight (stop() waits for them,
// their results reach the client, no new job is taken), stop timeouts that
// abort the job signals, the concurrency limit, and unregister; against
// our server, C++ gearmand and the Perl server.

import assert from "node:assert/strict";
import { AdminClient, Client } from "../../client.ts";
import { Worker } from "../../worker.ts";
import {
  addr,
  delay,
  HAVE_GEARMAND,
  HAVE_PERL_SERVER,
  startGearmand,
  startOurs,
  startPerlServer,
  type Target,
  until,
  within,
} from "./_servers.ts";

const KINDS: [string, () => Promise<Target>, boolean][] = [
  ["ours", startOurs, false],
  ["gearmand", startGearmand, !HAVE_GEARMAND],
  ["perl", startPerlServer, !HAVE_PERL_SERVER],
];

async function statusOf(admin: AdminClient, fn: string) {
  const row = (await admin.status()).find((s) => s.function === fn);
  return row ? { total: row.total, running: row.running, workers: row.workers } : undefined;
}

for (const [name, start, ignore] of KINDS) {
  Deno.test({
    name: `worker on ${name}: stop() waits for jobs in flight and takes no new ones`,
    ignore,
    async fn() {
      await using target = await start();
      const servers = [addr(target)];
      await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
      await using client = new Client({ servers });
      const gate = Promise.withResolvers<void>();
      const started: string[] = [];
      const worker = new Worker({ servers, concurrency: 3 });
      let stopped = false;
      try {
        worker.register("hold", async (job) => {
          started.push(job.text());
          await gate.promise;
          return `done ${job.text()}`;
        });
        const running = worker.run();
        let runResolved = false;
        void running.then(() => (runResolved = true));
        const jobs = ["a", "b", "c", "d", "e"].map((d) => client.submit("hold", d));
        await Promise.all(jobs.map((j) => j.handle));
        await until("three jobs running", () => worker.activeJobs === 3, 5000);
        assert.equal(started.length, 3);

        const stopping = worker.stop();
        let stopResolved = false;
        void stopping.then(() => (stopResolved = true));
        await delay(150);
        assert.equal(stopResolved, false, "stop() must wait for the jobs in flight");
        assert.equal(worker.activeJobs, 3);

        gate.resolve();
        await within("stop()", 5000, stopping);
        stopped = true;
        assert.equal(worker.activeJobs, 0);
        await within("run()", 1000, running);
        assert.equal(runResolved, true);

        // The three results reached the client.
        const data = ["a", "b", "c", "d", "e"];
        const finished = await Promise.all(
          jobs.filter((_, i) => started.includes(data[i]!)).map((j) =>
            within("a result", 5000, j.result)
          ),
        );
        assert.deepEqual(
          finished.map((r) => r.text()).sort(),
          started.map((d) => `done ${d}`).sort(),
        );

        // The other two stay queued: not taken by the stopped worker.
        await delay(150);
        assert.equal(started.length, 3, "no job may start after stop()");
        const left = jobs.filter((j) => !j.ended);
        assert.equal(left.length, 2);
        const st = await statusOf(admin, "hold");
        assert.equal(st?.total, 2);
        assert.equal(st?.running, 0);
        assert.equal(st?.workers, 0);

        // Another worker picks them up.
        await using next = new Worker({ servers });
        next.register("hold", (job) => `later ${job.text()}`);
        next.start();
        const rest = await within("the queued jobs", 5000, Promise.all(left.map((j) => j.result)));
        assert.deepEqual(
          rest.map((r) => r.text()).sort(),
          data.filter((d) => !started.includes(d)).map((d) => `later ${d}`),
        );
      } finally {
        gate.resolve();
        if (!stopped) await worker.stop();
      }
    },
  });

  Deno.test({
    name: `worker on ${name}: stop() in a stream of jobs loses none`,
    ignore,
    async fn() {
      await using target = await start();
      const servers = [addr(target)];
      await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
      await using client = new Client({ servers });
      const worker = new Worker({ servers, concurrency: 4 });
      let stopCalled = false;
      let startedAfterStop = 0;
      let ranTotal = 0;
      try {
        worker.register("sq", async (job) => {
          if (stopCalled) startedAfterStop++;
          ranTotal++;
          await delay(5);
          return String(Number(job.text()) ** 2);
        });
        worker.start();
        const N = 300;
        const jobs = Array.from({ length: N }, (_, i) => client.submit("sq", String(i)));
        await until("some jobs done", () => ranTotal >= 40, 10000);
        stopCalled = true;
        await within("stop()", 5000, worker.stop());
        // Only grabs already sent when stop() was called may still start a job.
        assert.ok(startedAfterStop <= 4, `${startedAfterStop} jobs started after stop()`);
        const ranBeforeNext = ranTotal;
        await delay(100);
        assert.equal(ranTotal, ranBeforeNext, "a stopped worker runs no job");
        const st = await statusOf(admin, "sq");
        const pending = jobs.filter((j) => !j.ended).length;
        assert.equal(st?.running ?? 0, 0, "no job is left running on the server");
        assert.equal(st?.total ?? 0, pending, "every job not answered is still queued");
        assert.ok(pending > 0, "the stream was still going when stop() was called");

        await using next = new Worker({ servers, concurrency: 8 });
        next.register("sq", (job) => String(Number(job.text()) ** 2));
        next.start();
        const results = await within("all results", 15000, Promise.all(jobs.map((j) => j.result)));
        results.forEach((r, i) => assert.equal(r.text(), String(i * i)));
      } finally {
        await worker.stop();
      }
    },
  });
}

Deno.test("worker: stop({ timeoutMs }) aborts the signals of jobs still running", async () => {
  await using target = await startOurs();
  const servers = [addr(target)];
  await using client = new Client({ servers });
  const worker = new Worker({ servers });
  const reasons: unknown[] = [];
  try {
    worker.register("stubborn", async (job) => {
      await new Promise<void>((resolve) => {
        job.signal.addEventListener("abort", () => resolve(), { once: true });
      });
      reasons.push(job.signal.reason);
      return "gave up";
    });
    worker.start();
    const job = client.submit("stubborn", "x");
    await until("the job to start", () => worker.activeJobs === 1, 5000);
    const t0 = Date.now();
    await within("stop()", 5000, worker.stop({ timeoutMs: 200 }));
    assert.ok(Date.now() - t0 >= 150, "stop() waited for the timeout");
    assert.equal(reasons.length, 1);
    assert.match(String((reasons[0] as Error).message), /stopping/);
    // The handler returned after the abort: its result still reached the client.
    assert.equal((await within("the result", 3000, job.result)).text(), "gave up");
  } finally {
    await worker.stop();
  }
});

Deno.test("worker: never runs more than `concurrency` jobs; unregister stops a function", async () => {
  await using target = await startOurs();
  const servers = [addr(target)];
  await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
  await using client = new Client({ servers });
  await using worker = new Worker({ servers, concurrency: 3 });
  let active = 0;
  let peak = 0;
  worker.register("busy", async (job) => {
    active++;
    peak = Math.max(peak, active);
    await delay(10);
    active--;
    return job.text();
  });
  worker.register("other", () => "other");
  worker.start();
  const results = await within(
    "60 jobs",
    10000,
    Promise.all(Array.from({ length: 60 }, (_, i) => client.run("busy", `${i}`))),
  );
  assert.deepEqual(results.map((r) => r.text()), Array.from({ length: 60 }, (_, i) => `${i}`));
  assert.equal(peak, 3);

  worker.unregister("other");
  await until("the server to drop the worker's 'other'", async () => {
    return (await statusOf(admin, "other"))?.workers === 0;
  }, 5000);
  const job = client.submit("other", "x");
  await job.handle;
  await delay(100);
  assert.equal(job.ended, false, "an unregistered function is not run");
  assert.equal((await statusOf(admin, "busy"))?.workers, 1);
});

Deno.test("worker: reconnects to a server that comes back and keeps serving", async () => {
  // A port with nothing behind it yet: the worker keeps retrying.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const servers = [`127.0.0.1:${port}`];
  await using worker = new Worker({ servers, connectTimeoutMs: 500 });
  worker.register("late", (job) => `late ${job.text()}`);
  worker.start();
  await delay(200);
  const { serve } = await import("../../server.ts");
  await using server = serve({ hostname: "127.0.0.1", port });
  await using client = new Client({ servers });
  assert.equal(server.addr.port, port);
  assert.equal((await within("the job", 8000, client.run("late", "x"))).text(), "late x");
});
