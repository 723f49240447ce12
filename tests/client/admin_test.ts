// The AdminClient against our server, C++ gearmand and the Perl server:
// status, workers, version, getpid, maxqueue, create/drop function, cancel
// job, show jobs, priority status.

import assert from "node:assert/strict";
import { AdminClient, AdminError, Client, JobFailedError, ServerError } from "../../client.ts";
import { Worker } from "../../worker.ts";
import { VERSION } from "../../src/version.ts";
import {
  addr,
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
];

const byName = <T extends { function: string }>(rows: T[]) =>
  [...rows].sort((a, b) => a.function.localeCompare(b.function));

for (const [name, start, ignore] of KINDS) {
  Deno.test({
    name: `admin on ${name}: status, workers, version, getpid, priority status, show jobs`,
    ignore,
    async fn() {
      await using target = await start();
      const servers = [addr(target)];
      await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
      assert.deepEqual(await admin.status(), []);

      await using worker = new Worker({ servers, clientId: "admin-test-worker" });
      worker.register("fa", () => "a");
      worker.register("fb", () => "b");
      worker.start();
      await using client = new Client({ servers });
      assert.equal((await client.run("fa", "")).text(), "a");

      // Queued background jobs at each priority, and a foreground one, for "fq".
      const bgHandles = await Promise.all(
        (["high", "high", "normal", "low"] as const).map((priority) =>
          client.submit("fq", "x", { background: true, priority, unique: `u-${Math.random()}` })
            .handle
        ),
      );
      const fg = client.submit("fq", "fg");
      const fgHandle = await fg.handle;

      assert.deepEqual(byName(await admin.status()), [
        { function: "fa", total: 0, running: 0, workers: 1 },
        { function: "fb", total: 0, running: 0, workers: 1 },
        { function: "fq", total: 5, running: 0, workers: 0 },
      ]);
      assert.deepEqual(byName(await admin.priorityStatus()), [
        { function: "fa", high: 0, normal: 0, low: 0, workers: 1 },
        { function: "fb", high: 0, normal: 0, low: 0, workers: 1 },
        { function: "fq", high: 2, normal: 2, low: 1, workers: 0 },
      ]);

      const workers = await admin.workers();
      const mine = workers.filter((w) => w.clientId === "admin-test-worker");
      assert.equal(mine.length, 1, JSON.stringify(workers));
      assert.deepEqual([...mine[0]!.functions].sort(), ["fa", "fb"]);
      assert.equal(mine[0]!.ip, "127.0.0.1");
      assert.ok(mine[0]!.fd.length > 0);
      // The client's and the admin's own connections are listed without functions.
      assert.ok(workers.some((w) => w.functions.length === 0), JSON.stringify(workers));

      const jobs = await admin.showJobs();
      const byHandle = new Map(jobs.map((j) => [j.handle, j]));
      for (const h of bgHandles) {
        assert.deepEqual(byHandle.get(h), {
          handle: h,
          retries: 0,
          ignored: false,
          background: true,
        });
      }
      assert.deepEqual(byHandle.get(fgHandle), {
        handle: fgHandle,
        retries: 0,
        ignored: false,
        background: false,
      });
      assert.equal(jobs.length, 5);

      if (name === "ours") {
        assert.equal(await admin.version(), VERSION);
        assert.equal(await admin.getpid(), Deno.pid);
      } else {
        assert.match(await admin.version(), /^1\.1\.\d+/);
        assert.equal(await admin.getpid(), target.pid);
      }

      // Raw commands, and an unknown one.
      const raw = await admin.command("status");
      assert.ok(raw.some((l) => l.startsWith("fq\t5\t0\t0")), JSON.stringify(raw));
      await assert.rejects(admin.command("no-such-command"), AdminError);
      // The connection still works after an error.
      assert.equal((await admin.status()).length, 3);
    },
  });

  Deno.test({
    name: `admin on ${name}: maxqueue, create/drop function, cancel job`,
    ignore,
    async fn() {
      await using target = await start();
      const servers = [addr(target)];
      await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
      await using client = new Client({ servers });

      // create / drop.
      await admin.createFunction("made");
      assert.deepEqual((await admin.status()).filter((s) => s.function === "made"), [
        { function: "made", total: 0, running: 0, workers: 0 },
      ]);
      await admin.dropFunction("made");
      assert.deepEqual((await admin.status()).filter((s) => s.function === "made"), []);
      await assert.rejects(admin.dropFunction("made"), (err: unknown) => {
        assert.ok(err instanceof AdminError);
        assert.equal(err.command, "drop function made");
        assert.match(err.reply, /^ERR/);
        return true;
      });

      // maxqueue: two jobs fit, the third is refused with QUEUE_ERROR.
      // (gearmand ignores maxqueue for a function it has not seen: create it first.)
      await admin.createFunction("limited");
      await admin.maxQueue("limited", 2);
      const a = client.submit("limited", "1", { background: true });
      const b = client.submit("limited", "2");
      assert.match(await a.handle, /^H:/);
      assert.match(await b.handle, /^H:/);
      await assert.rejects(
        within("the refused submit", 5000, client.run("limited", "3")),
        (err: unknown) => {
          assert.ok(err instanceof ServerError, `got ${err}`);
          assert.equal(err.code, "QUEUE_ERROR");
          assert.equal(err.server, addr(target));
          return true;
        },
      );
      await assert.rejects(
        client.submit("limited", "4", { background: true }).handle,
        (err) => err instanceof ServerError && err.code === "QUEUE_ERROR",
      );
      assert.equal((await admin.status()).find((s) => s.function === "limited")?.total, 2);

      // Cancel the queued foreground job: its client gets JobFailedError.
      await admin.cancelJob(await b.handle);
      await assert.rejects(within("the cancelled job", 5000, b.result), (err: unknown) => {
        assert.ok(err instanceof JobFailedError, `got ${err}`);
        assert.equal(err.handle, b.handleNow);
        assert.equal(err.function, "limited");
        return true;
      });
      await assert.rejects(admin.cancelJob("H:no-such-job:1"), AdminError);

      // Room again after the cancel: one more job fits. (gearmand keeps a
      // cancelled job as "ignored" in the queue, so only on ours.)
      if (name === "ours") {
        await until("the cancelled job to leave the queue", async () => {
          return (await admin.status()).find((s) => s.function === "limited")?.total === 1;
        }, 5000);
        assert.match(await client.submit("limited", "5", { background: true }).handle, /^H:/);
      }

      // maxqueue without a size lifts the limit.
      await admin.maxQueue("limited");
      for (let i = 0; i < 3; i++) {
        assert.match(
          await client.submit("limited", `more-${i}`, { background: true }).handle,
          /^H:/,
        );
      }
      // A negative size is unlimited too.
      await admin.maxQueue("limited", -1);
      assert.match(await client.submit("limited", "neg", { background: true }).handle, /^H:/);
    },
  });
}

Deno.test({
  name: "admin on perl: status and workers; version; unknown commands are AdminError",
  ignore: !HAVE_PERL_SERVER,
  async fn() {
    await using target = await startPerlServer();
    const servers = [addr(target)];
    await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
    await using worker = new Worker({ servers, clientId: "perl-admin-worker" });
    worker.register("pa", () => "a");
    worker.start();
    await using client = new Client({ servers });
    assert.equal((await client.run("pa", "")).text(), "a");
    await client.submit("pq", "x", { background: true }).handle;
    assert.deepEqual(byName(await admin.status()), [
      { function: "pa", total: 0, running: 0, workers: 1 },
      { function: "pq", total: 1, running: 0, workers: 0 },
    ]);
    const mine = (await admin.workers()).filter((w) => w.functions.includes("pa"));
    assert.equal(mine.length, 1);
    assert.equal(mine[0]!.clientId, "perl-admin-worker");
    await assert.rejects(admin.showJobs(), AdminError);
    await assert.rejects(admin.getpid(), AdminError);
    // The Perl server answers "version" with the bare version line (no "OK").
    assert.match(await admin.version(), /1\.\d+/);
  },
});
