// Two servers, one killed (SIGKILL) while a stream of background and
// foreground jobs is being submitted by one Client and run by one Worker
// connected to both. Background jobs acknowledged by the killed in-memory
// server die with it; everything else must hold:
//
// - no submit hangs;
// - every background submit resolves with a handle (from the server that
//   acknowledged it, or re-sent to the live one), and every background job
//   the live server acknowledged runs;
// - every foreground job completes with the right result, or rejects with a
//   ConnectionError naming the killed server;
// - everything submitted after the kill completes on the live server.

import assert from "node:assert/strict";
import { Client, ConnectionError, type Job } from "../../client.ts";
import { Worker } from "../../worker.ts";
import {
  addr,
  delay,
  HAVE_GEARMAND,
  type ProcessTarget,
  settle,
  startGearmandProcess,
  startOurServerProcess,
  until,
  within,
} from "./_servers.ts";

const reverse = (s: string) => [...s].reverse().join("");

interface Submitted {
  job: Job;
  data: string;
  background: boolean;
  afterKill: boolean;
}

async function failover(
  start: (tag: string) => Promise<ProcessTarget>,
  handleHosts: boolean,
): Promise<void> {
  await using a = await start("A");
  await using b = await start("B");
  const servers = [addr(a), addr(b)];
  const ranBg = new Set<string>();
  const worker = new Worker({ servers, concurrency: 16, connectTimeoutMs: 1000 });
  const client = new Client({ servers, connectTimeoutMs: 1000 });
  const ac = new AbortController();
  try {
    worker.register("fg", async (job) => {
      await delay(10);
      return reverse(job.text());
    });
    worker.register("bg", (job) => {
      ranBg.add(job.text());
      return "";
    });
    worker.start();
    // Both servers serve the worker before the stream starts.
    assert.equal((await within("warm-up", 5000, client.run("fg", "w1"))).text(), "1w");
    assert.equal((await within("warm-up", 5000, client.run("fg", "w2"))).text(), "2w");

    // Two foreground jobs nobody serves, submitted back to back: round robin
    // puts one on each server. The one on A must reject when A dies.
    const orphans = [
      client.submit("orphan", "o1", { signal: ac.signal }),
      client.submit("orphan", "o2", { signal: ac.signal }),
    ];
    await within("orphan handles", 5000, Promise.all(orphans.map((o) => o.handle)));

    const submitted: Submitted[] = [];
    let afterKill = false;
    let killing: Promise<void> | undefined;
    const N = 600;
    for (let i = 0; i < N; i++) {
      const background = i % 3 === 0;
      const data = `${background ? "bg" : "fg"}-${i}`;
      const job = client.submit(background ? "bg" : "fg", data, { background });
      submitted.push({ job, data, background, afterKill });
      if (i === N / 2) {
        killing = a.kill().then(() => {
          afterKill = true;
        });
      }
      if (i % 20 === 19) await delay(3);
    }
    await within("the kill", 5000, killing!);
    // A few more, now that A is surely gone.
    for (let i = N; i < N + 40; i++) {
      const background = i % 3 === 0;
      const data = `${background ? "bg" : "fg"}-${i}`;
      submitted.push({
        job: client.submit(background ? "bg" : "fg", data, { background }),
        data,
        background,
        afterKill: true,
      });
    }

    // No submit hangs.
    const outcomes = await within(
      "every submit to settle",
      20000,
      Promise.all(submitted.map((s) => settle(s.job.result))),
    );
    const handles = await Promise.all(submitted.map((s) => settle(s.job.handle)));

    let lostForeground = 0;
    const liveBg: string[] = [];
    submitted.forEach((s, i) => {
      const outcome = outcomes[i]!;
      const handle = handles[i]!;
      if (s.background) {
        assert.ok(handle.ok, `background ${s.data} got no handle: ${!handle.ok && handle.error}`);
        assert.ok(outcome.ok);
        if (handleHosts) {
          assert.match(handle.value, /^H:[AB]:/);
          if (handle.value.startsWith("H:B:")) liveBg.push(s.data);
          if (s.afterKill) assert.match(handle.value, /^H:B:/, `${s.data} went to the dead server`);
        } else if (s.afterKill) liveBg.push(s.data);
        return;
      }
      if (outcome.ok) {
        assert.equal(outcome.value.text(), reverse(s.data));
        if (handleHosts && handle.ok && s.afterKill) assert.match(handle.value, /^H:B:/);
        return;
      }
      assert.ok(!s.afterKill, `${s.data}, submitted after the kill, failed: ${outcome.error}`);
      const err = outcome.error;
      assert.ok(err instanceof ConnectionError, `${s.data} failed with ${err}`);
      assert.equal(err.server, addr(a));
      assert.match(
        err.message,
        new RegExp(`Lost the connection to ${addr(a).replaceAll(".", "\\.")}`),
      );
      lostForeground++;
    });
    assert.ok(liveBg.length > 0);

    // Every background job the live server acknowledged runs.
    await until(
      "the live server's background jobs to run",
      () => liveBg.every((d) => ranBg.has(d)),
      10000,
    ).catch(() => {
      const missing = liveBg.filter((d) => !ranBg.has(d));
      throw new Error(`background jobs acknowledged by B never ran: ${missing.join(", ")}`);
    });

    // The orphan on A rejected with a clear ConnectionError; the one on B still waits.
    const orphanOutcomes = orphans.map((o) => o.ended);
    assert.deepEqual(orphanOutcomes.sort(), [false, true]);
    const dead = orphans.find((o) => o.ended)!;
    const why = await settle(dead.result);
    assert.ok(!why.ok && why.error instanceof ConnectionError, `orphan on A: ${why}`);
    assert.equal(why.error.server, addr(a));
    assert.match(why.error.message, /Lost the connection to .* while job H:\S+ was running/);
    if (handleHosts) assert.match(await orphans.find((o) => !o.ended)!.handle, /^H:B:/);
    // Jobs were running or queued on A when it died (the stream outpaces the worker).
    assert.ok(lostForeground > 0, "no foreground job was in flight on the killed server");

    // Business as usual on the live server.
    assert.equal(
      (await within("a job after failover", 5000, client.run("fg", "end"))).text(),
      "dne",
    );
  } finally {
    ac.abort(new Error("test over"));
    await client.close();
    await worker.stop({ timeoutMs: 1000 });
  }
}

Deno.test("failover between two of our servers (subprocesses), one killed mid-run", async () => {
  await failover((tag) => startOurServerProcess(["--handle-host", tag]), true);
});

Deno.test({
  name: "failover between two gearmand processes, one killed mid-run",
  ignore: !HAVE_GEARMAND,
  async fn() {
    await failover(() => startGearmandProcess(), false);
  },
});
