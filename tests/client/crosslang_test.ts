// Cross-language: our Client with Perl Gearman::Worker and PHP
// GearmanWorker peers, and Perl Gearman::Client and PHP GearmanClient peers
// with our Worker; each against our server and C++ gearmand.

import assert from "node:assert/strict";
import {
  AdminClient,
  Client,
  JobExceptionError,
  JobFailedError,
  type JobUpdate,
} from "../../client.ts";
import { Worker } from "../../worker.ts";
import {
  addr,
  assertSucceeded,
  HAVE_GEARMAND,
  HAVE_PERL,
  HAVE_PHP,
  HOST,
  PEERS,
  run,
  spawn,
  startGearmand,
  startOurs,
  type Target,
  until,
  within,
} from "./_servers.ts";

const KINDS: [string, () => Promise<Target>, boolean][] = [
  ["ours", startOurs, false],
  ["gearmand", startGearmand, !HAVE_GEARMAND],
];

function show(u: JobUpdate): string {
  return u.type === "status"
    ? `status ${u.numerator}/${u.denominator}`
    : `${u.type} ${u.data.text()}`;
}

async function updatesOf(client: Client, fn: string, data: string) {
  const job = client.submit(fn, data);
  const updates: string[] = [];
  for await (const u of job) updates.push(show(u));
  return { updates, result: (await job.result).text() };
}

async function waitForWorker(target: Target, fn: string): Promise<void> {
  await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
  await until(`a worker for ${fn}`, async () => {
    return ((await admin.status()).find((s) => s.function === fn)?.workers ?? 0) >= 1;
  }, 15000);
}

/** Our Worker serving what the Perl and PHP client peers call. */
function ourWorker(target: Target, background: string[]): Worker {
  const worker = new Worker({ servers: [addr(target)], concurrency: 4 });
  worker.register("rev", (job) => [...job.text()].reverse().join(""));
  worker.register("uniq", (job) => `${job.unique}|${job.text()}`);
  worker.register("progress", (job) => {
    for (let i = 1; i <= 3; i++) job.sendStatus(i, 3);
    return "done";
  });
  worker.register("updates", (job) => {
    job.sendStatus(1, 2);
    job.sendData("x");
    job.sendWarning("w");
    job.sendStatus(2, 2);
    return "done";
  });
  worker.register("throws", () => {
    throw new Error("deno boom");
  });
  worker.register("bg", (job) => {
    background.push(job.text());
  });
  return worker;
}

for (const [name, start, ignore] of KINDS) {
  Deno.test({
    name: `our Client with a Perl Gearman::Worker on ${name}`,
    ignore: ignore || !HAVE_PERL,
    async fn() {
      await using target = await start();
      await using peer = spawn(
        "perl",
        [`${PEERS}perl_worker.pl`, HOST, String(target.port), "30"],
        {
          timeoutMs: 40000,
        },
      );
      await waitForWorker(target, "quit");
      await using client = new Client({ servers: [addr(target)] });
      assert.equal((await client.run("rev", "hello")).text(), "olleh");
      assert.equal((await client.run("rev", "high", { priority: "high" })).text(), "hgih");
      assert.equal((await client.run("rev", "low", { priority: "low" })).text(), "wol");
      assert.deepEqual(await updatesOf(client, "status", "3"), {
        updates: ["status 1/3", "status 2/3", "status 3/3"],
        result: "done",
      });
      assert.deepEqual(await updatesOf(client, "data", ""), {
        updates: ["data a", "data b", "warning careful"],
        result: "end",
      });
      await assert.rejects(client.run("fail", "x"), JobFailedError);
      for (const i of [1, 2]) {
        assert.match(await client.submit("bg", `perl-bg-${i}`, { background: true }).handle, /^H:/);
      }
      // Many at once through a single-threaded Perl worker.
      const many = await within(
        "200 jobs",
        20000,
        Promise.all(Array.from({ length: 200 }, (_, i) => client.run("rev", `m${i}`))),
      );
      many.forEach((r, i) => assert.equal(r.text(), [...`m${i}`].reverse().join("")));
      // Gearman::Worker sends a Storable-frozen exception, then WORK_FAIL.
      // (It takes no job after that, so this comes last.)
      await assert.rejects(client.run("die", "x"), (err: unknown) => {
        assert.ok(err instanceof JobExceptionError, `got ${err}`);
        assert.ok(new TextDecoder("latin1").decode(err.data).includes("perl boom"));
        return true;
      });
      try {
        Deno.kill(peer.pid, "SIGTERM");
      } catch { /* Gearman::Worker sometimes exits by itself after the die */ }
      const r = await within("the Perl worker to exit", 5000, peer.result);
      const lines = r.stdout.split("\n");
      assert.ok(lines.includes("bg perl-bg-1") && lines.includes("bg perl-bg-2"), r.stdout);
    },
  });

  Deno.test({
    name: `our Client with a PHP GearmanWorker on ${name}`,
    ignore: ignore || !HAVE_PHP,
    async fn() {
      await using target = await start();
      await using peer = spawn("php", [`${PEERS}php_worker.php`, HOST, String(target.port), "30"], {
        timeoutMs: 40000,
      });
      await waitForWorker(target, "quit");
      await using client = new Client({ servers: [addr(target)] });
      assert.equal((await client.run("rev", "hello")).text(), "olleh");
      assert.equal(
        (await client.run("uniq", "payload", { unique: "deno-u1" })).text(),
        "deno-u1|payload",
      );
      assert.deepEqual(await updatesOf(client, "status", "3"), {
        updates: ["status 1/3", "status 2/3", "status 3/3", "data a", "data b"],
        result: "done",
      });
      assert.deepEqual(await updatesOf(client, "warn", ""), {
        updates: ["warning careful"],
        result: "fine",
      });
      await assert.rejects(client.run("exception", "x"), (err: unknown) => {
        assert.ok(err instanceof JobExceptionError, `got ${err}`);
        assert.equal(err.text, "php boom");
        assert.equal(err.function, "exception");
        return true;
      });
      await assert.rejects(client.run("fail", "x"), JobFailedError);
      await using noExceptions = new Client({ servers: [addr(target)], exceptions: false });
      await assert.rejects(noExceptions.run("exception", "x"), JobFailedError);
      assert.match(await client.submit("bg", "php-bg-1", { background: true }).handle, /^H:/);
      const many = await within(
        "200 jobs",
        20000,
        Promise.all(Array.from({ length: 200 }, (_, i) => client.run("rev", `m${i}`))),
      );
      many.forEach((r, i) => assert.equal(r.text(), [...`m${i}`].reverse().join("")));
      assert.equal((await client.run("quit", "")).text(), "bye");
      const r = await peer.result;
      assertSucceeded(r, "php_worker.php");
      assert.ok(r.stdout.includes("bg php-bg-1\n"), r.stdout);
      assert.ok(r.stdout.includes("jobs 209\n"), r.stdout);
    },
  });

  Deno.test({
    name: `a Perl Gearman::Client with our Worker on ${name}`,
    ignore: ignore || !HAVE_PERL,
    async fn() {
      await using target = await start();
      const background: string[] = [];
      await using worker = ourWorker(target, background);
      worker.start();
      await waitForWorker(target, "rev");
      // gearmand turns WORK_EXCEPTION into a WORK_FAIL that Gearman::Client dies on.
      const args = [`${PEERS}perl_client.pl`, HOST, String(target.port)];
      if (name === "gearmand") args.push("nothrow");
      const r = await run("perl", args, { timeoutMs: 30000 });
      assertSucceeded(r, "perl_client.pl");
      assert.deepEqual(JSON.parse(r.stdout), {
        normal: "olleh",
        high: "hgih",
        uniq: "perl-u1|payload",
        progress: "done",
        status: ["1/3", "2/3", "3/3"],
        ...(name === "gearmand" ? {} : { throws: { defined: false, on_fail: 1 } }),
        bg_handles: 3,
        taskset: { ok: 100, bad: 0 },
      });
      await until("the background jobs", () => background.length === 3, 5000);
      assert.deepEqual(background.sort(), ["perl-bg-1", "perl-bg-2", "perl-bg-3"]);
    },
  });

  Deno.test({
    name: `a PHP GearmanClient with our Worker on ${name}`,
    ignore: ignore || !HAVE_PHP,
    async fn() {
      await using target = await start();
      const background: string[] = [];
      await using worker = ourWorker(target, background);
      worker.start();
      await waitForWorker(target, "rev");
      const r = await run("php", [`${PEERS}php_client.php`, HOST, String(target.port)], {
        timeoutMs: 30000,
      });
      assertSucceeded(r, "php_client.php");
      assert.deepEqual(JSON.parse(r.stdout), {
        normal: ["olleh", true],
        high: ["hgih", true],
        low: ["wol", true],
        uniq: ["php-u1|payload", true],
        bg_handles: 3,
        throws_rc: "exception",
        run_tasks: true,
        events: [
          "status 1/2",
          "data x",
          "warning w",
          "status 2/2",
          "complete updates done",
          "exception deno boom",
        ],
      });
      await until("the background jobs", () => background.length === 3, 5000);
      assert.deepEqual(background.sort(), ["php-bg-1", "php-bg-2", "php-bg-3"]);
    },
  });
}
