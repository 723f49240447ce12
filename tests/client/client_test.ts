// The high-level Client and Worker against our server (serve()), C++
// gearmand and the Perl Gearman::Server: results, background jobs,
// priorities, unique ids, streamed updates, exceptions, abort signals,
// status queries, 16 MiB payloads and 10,000 concurrent jobs.

import assert from "node:assert/strict";
import {
  Client,
  ConnectionError,
  JobExceptionError,
  JobFailedError,
  type JobUpdate,
  ServerError,
} from "../../client.ts";
import { Worker, type WorkerJob } from "../../worker.ts";
import {
  addr,
  delay,
  HAVE_GEARMAND,
  HAVE_PERL_SERVER,
  pattern,
  sha256,
  startGearmand,
  startOurs,
  startPerlServer,
  type Target,
  within,
} from "./_servers.ts";

const reverse = (s: string) => [...s].reverse().join("");

interface Kind {
  name: string;
  start: () => Promise<Target>;
  ignore: boolean;
  /**
   * Knows the whole protocol. The Perl server does not know WORK_DATA,
   * WORK_WARNING, SUBMIT_JOB_LOW or GRAB_JOB_UNIQ (so workers see no unique).
   */
  full: boolean;
}

const KINDS: Kind[] = [
  { name: "ours", start: startOurs, ignore: false, full: true },
  { name: "gearmand", start: startGearmand, ignore: !HAVE_GEARMAND, full: true },
  { name: "perl", start: startPerlServer, ignore: !HAVE_PERL_SERVER, full: false },
];

/** Show an update compactly: "data:x", "warning:x", "status:1/2". */
function show(u: JobUpdate): string {
  return u.type === "status"
    ? `status:${u.numerator}/${u.denominator}`
    : `${u.type}:${u.data.text()}`;
}

for (const kind of KINDS) {
  Deno.test({
    name: `client+worker on ${kind.name}: results, background, priorities, unique, updates, errors`,
    ignore: kind.ignore,
    async fn() {
      await using target = await kind.start();
      const servers = [addr(target)];
      const seen: { fn: string; unique: string; data: string }[] = [];
      const bgDone = Promise.withResolvers<void>();
      await using worker = new Worker({ servers, concurrency: 4 });
      worker.register("rev", (job) => {
        seen.push({ fn: job.function, unique: job.unique, data: job.text() });
        return reverse(job.text());
      });
      worker.register("json", (job) => ({ got: job.json<{ n: number }>().n + 1 }));
      worker.register("nothing", () => undefined);
      worker.register("bytes", () => new Uint8Array([0, 1, 255]));
      worker.register("bg", (job) => {
        seen.push({ fn: job.function, unique: job.unique, data: job.text() });
        bgDone.resolve();
        return "ignored";
      });
      worker.register("updates", (job) => {
        const n = Number(job.text());
        for (let i = 1; i <= n; i++) {
          job.sendData(`d${i}`);
          job.sendStatus(i, n);
          if (i % 2 === 0) job.sendWarning(`w${i}`);
        }
        return "finished";
      });
      worker.register("throws", (job) => {
        throw new Error(`bad input: ${job.text()}`);
      });
      worker.register("async-throws", async () => {
        await delay(5);
        throw new RangeError("too far");
      });
      worker.start();
      await using client = new Client({ servers });

      // Foreground results: strings, JSON values, empty, binary.
      assert.equal((await client.run("rev", "hello")).text(), "olleh");
      assert.deepEqual((await client.run("json", JSON.stringify({ n: 41 }))).json(), { got: 42 });
      assert.equal((await client.run("nothing", "x")).bytes.length, 0);
      assert.deepEqual([...(await client.run("bytes", "")).bytes], [0, 1, 255]);
      assert.equal((await client.run("rev", "日本語")).text(), "語本日");

      // Every priority runs and the handle is known before the result.
      // The Perl server knows no SUBMIT_JOB_LOW: its ERROR becomes a ServerError.
      if (!kind.full) {
        await assert.rejects(client.run("rev", "x", { priority: "low" }), (err: unknown) => {
          assert.ok(err instanceof ServerError, `got ${err}`);
          assert.equal(err.server, servers[0]);
          return true;
        });
      }
      for (
        const priority of kind.full
          ? ["high", "normal", "low"] as const
          : ["high", "normal"] as const
      ) {
        const job = client.submit("rev", `p-${priority}`, { priority });
        const handle = await within("handle", 5000, job.handle);
        assert.match(handle, /^H:/);
        assert.equal(job.handleNow, handle);
        assert.equal((await job.result).text(), reverse(`p-${priority}`));
        assert.equal(job.ended, true);
      }

      // A unique id reaches the worker.
      assert.equal((await client.run("rev", "u", { unique: "uniq-42" })).text(), "u");
      assert.equal(seen.find((s) => s.data === "u")?.unique, kind.full ? "uniq-42" : "");

      // Background: resolves (empty) once queued; the worker still runs it.
      const bg = client.submit("bg", "later", { background: true });
      assert.equal(bg.background, true);
      assert.match(await bg.handle, /^H:/);
      assert.equal((await bg.result).bytes.length, 0);
      await within("the background job to run", 5000, bgDone.promise);
      assert.ok(seen.some((s) => s.fn === "bg" && s.data === "later"));

      // Updates, in the order sent, then the result; the iterator ends.
      const job = client.submit("updates", "4");
      const updates: string[] = [];
      for await (const u of job) updates.push(show(u));
      const expected = [
        "data:d1",
        "status:1/4",
        "data:d2",
        "status:2/4",
        "warning:w2",
        "data:d3",
        "status:3/4",
        "data:d4",
        "status:4/4",
        "warning:w4",
      ];
      assert.deepEqual(
        updates,
        kind.full ? expected : expected.filter((u) => u.startsWith("status:")),
      );
      assert.equal((await job.result).text(), "finished");
      // A second iteration replays every update from the start.
      const again: string[] = [];
      for await (const u of job) again.push(show(u));
      assert.deepEqual(again, updates);

      // A thrown error reaches the client as JobExceptionError with its message.
      const thrown = client.submit("throws", "xyz");
      await assert.rejects(thrown.result, (err: unknown) => {
        assert.ok(err instanceof JobExceptionError, `got ${err}`);
        assert.equal(err.text, "bad input: xyz");
        assert.equal(err.function, "throws");
        assert.equal(err.handle, thrown.handleNow);
        assert.match(err.message, /bad input: xyz/);
        return true;
      });
      // The iterator throws the same error.
      await assert.rejects(async () => {
        for await (const _ of thrown) { /* no updates */ }
      }, JobExceptionError);
      await assert.rejects(client.run("async-throws", ""), (err: unknown) => {
        assert.ok(err instanceof JobExceptionError);
        assert.equal(err.text, "too far");
        return true;
      });

      // The worker is still healthy after the failures.
      assert.equal((await client.run("rev", "still ok")).text(), "ko llits");

      // ECHO round trip.
      assert.equal(new TextDecoder().decode(await client.echo("ping\0pong")), "ping\0pong");
    },
  });

  Deno.test({
    name: `client on ${kind.name}: exceptions off gives JobFailedError; status of handles`,
    ignore: kind.ignore,
    async fn() {
      await using target = await kind.start();
      const servers = [addr(target)];
      await using worker = new Worker({ servers });
      worker.register("throws", () => {
        throw new Error("nope");
      });
      worker.start();
      await using plain = new Client({ servers, exceptions: false });
      await assert.rejects(plain.run("throws", ""), (err: unknown) => {
        assert.ok(err instanceof JobFailedError, `got ${err}`);
        assert.equal(err.function, "throws");
        assert.match(err.message, /WORK_FAIL/);
        return true;
      });

      // A queued background job (no worker for it) is known and not running.
      await using client = new Client({ servers });
      const handle = await client.submit("nobody-serves-this", "x", { background: true }).handle;
      const st = await client.status(handle);
      assert.equal(st.known, true);
      assert.equal(st.running, false);
      const unknown = await client.status("H:no-such-host:987654");
      assert.equal(unknown.known, false);
      assert.equal(unknown.running, false);
    },
  });

  Deno.test({
    name: `client on ${kind.name}: an AbortSignal rejects the job with its reason`,
    ignore: kind.ignore,
    async fn() {
      await using target = await kind.start();
      const servers = [addr(target)];
      const release = Promise.withResolvers<void>();
      const started = Promise.withResolvers<void>();
      await using worker = new Worker({ servers });
      worker.register("slow", async (job) => {
        started.resolve();
        await release.promise;
        return job.text();
      });
      worker.start();
      await using client = new Client({ servers });
      try {
        // Aborted while the worker runs it: rejects at once with the reason.
        const ac = new AbortController();
        const reason = new Error("user gave up");
        const job = client.submit("slow", "a", { signal: ac.signal });
        await within("the job to start", 5000, started.promise);
        assert.equal(job.ended, false);
        ac.abort(reason);
        await assert.rejects(within("the aborted job", 1000, job.result), (err) => err === reason);
        assert.equal(job.ended, true);

        // Already aborted: rejects without submitting.
        const pre = new AbortController();
        const preReason = new Error("too late");
        pre.abort(preReason);
        await assert.rejects(
          client.submit("slow", "b", { signal: pre.signal }).result,
          (err) => err === preReason,
        );

        // The default reason is the signal's own (an AbortError).
        const dflt = new AbortController();
        const job2 = client.submit("never-served", "c", { signal: dflt.signal });
        await job2.handle;
        dflt.abort();
        await assert.rejects(job2.result, (err) => err === dflt.signal.reason);
        assert.equal((dflt.signal.reason as DOMException).name, "AbortError");

        // A timeout signal.
        await assert.rejects(
          client.run("never-served", "d", { signal: AbortSignal.timeout(50) }),
          (err) => err instanceof DOMException && err.name === "TimeoutError",
        );
      } finally {
        release.resolve();
      }
      // The aborted job's late result does not disturb later jobs.
      assert.equal((await client.run("slow", "after")).text(), "after");
    },
  });

  if (kind.name === "perl") continue;

  Deno.test({
    name: `client+worker on ${kind.name}: 16 MiB payloads both ways`,
    ignore: kind.ignore,
    async fn() {
      await using target = await kind.start();
      const servers = [addr(target)];
      await using worker = new Worker({ servers });
      const got: string[] = [];
      worker.register("echo16", async (job: WorkerJob) => {
        got.push(await sha256(job.data));
        job.sendData(job.data.subarray(0, 1024 * 1024));
        const out = job.data.slice();
        out.reverse();
        return out;
      });
      worker.start();
      await using client = new Client({ servers });
      const payload = pattern(16 * 1024 * 1024, 7);
      const job = client.submit("echo16", payload);
      const updates: JobUpdate[] = [];
      for await (const u of job) updates.push(u);
      const result = (await job.result).bytes;
      assert.equal(result.length, payload.length);
      const expected = payload.slice();
      expected.reverse();
      assert.equal(await sha256(result), await sha256(expected));
      assert.deepEqual(got, [await sha256(payload)]);
      assert.equal(updates.length, 1);
      const u = updates[0]!;
      assert.ok(u.type === "data");
      assert.deepEqual(u.data.bytes, payload.subarray(0, 1024 * 1024));
    },
  });

  Deno.test({
    name: `client+worker on ${kind.name}: 10,000 concurrent jobs from one client`,
    ignore: kind.ignore,
    async fn() {
      await using target = await kind.start();
      const servers = [addr(target)];
      await using worker = new Worker({ servers, concurrency: 64 });
      worker.register("square", (job) => String(Number(job.text()) ** 2));
      worker.start();
      await using client = new Client({ servers });
      const N = 10_000;
      const jobs = Array.from({ length: N }, (_, i) => client.submit("square", String(i)));
      const results = await within("10,000 jobs", 40_000, Promise.all(jobs.map((j) => j.result)));
      const wrong = results
        .map((r, i) => [i, r.text()] as const)
        .filter(([i, t]) => t !== String(i * i));
      assert.deepEqual(wrong, []);
      const handles = new Set(await Promise.all(jobs.map((j) => j.handle)));
      assert.equal(handles.size, N, "every job got its own handle");
    },
  });
}

Deno.test("client: an abort reason that is not an Error is still the reason", async () => {
  // SubmitOptions.signal: "its result rejects with the abort reason".
  await using target = await startOurs();
  await using client = new Client({ servers: [addr(target)] });
  const ac = new AbortController();
  const job = client.submit("never-served", "e", { signal: ac.signal });
  await job.handle;
  ac.abort("stop please");
  await assert.rejects(job.result, (err) => err === "stop please");
  const pre = new AbortController();
  pre.abort(42);
  await assert.rejects(
    client.run("never-served", "f", { signal: pre.signal }),
    (err) => err === 42,
  );
});

Deno.test("client: runAt submits an epoch job that runs at that second", async () => {
  await using target = await startOurs();
  const servers = [addr(target)];
  const ran = Promise.withResolvers<number>();
  await using worker = new Worker({ servers });
  worker.register("timed", () => void ran.resolve(Date.now()));
  worker.start();
  await using client = new Client({ servers });
  const runAt = Date.now() + 2000;
  const job = client.submit("timed", "x", { runAt: new Date(runAt) });
  assert.equal(job.background, true);
  assert.match(await job.handle, /^H:/);
  assert.equal((await job.result).bytes.length, 0);
  const at = await within("the epoch job", 5000, ran.promise);
  assert.ok(at >= Math.floor(runAt / 1000) * 1000 - 50, `ran ${runAt - at} ms early`);
});

Deno.test("client: a dead server in the list is skipped", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const dead = `127.0.0.1:${(l.addr as Deno.NetAddr).port}`;
  l.close();
  await using target = await startOurs();
  const servers = [dead, addr(target)];
  await using worker = new Worker({ servers: [addr(target)] });
  worker.register("rev", (job) => reverse(job.text()));
  worker.start();
  await using client = new Client({ servers, connectTimeoutMs: 1000 });
  const results = await within(
    "jobs past a dead server",
    10000,
    Promise.all(Array.from({ length: 20 }, (_, i) => client.run("rev", `j${i}`))),
  );
  results.forEach((r, i) => assert.equal(r.text(), reverse(`j${i}`)));
  assert.equal(new TextDecoder().decode(await client.echo("e")), "e");
  // Uniques that hash to the dead server go to the live one too.
  for (let i = 0; i < 10; i++) {
    assert.equal((await client.run("rev", "u", { unique: `u-${i}` })).text(), "u");
  }
});

Deno.test("client: unreachable server and closed client reject with ConnectionError", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  await using client = new Client({ servers: [`127.0.0.1:${port}`], connectTimeoutMs: 1000 });
  await assert.rejects(within("submit", 5000, client.run("f", "x")), (err: unknown) => {
    assert.ok(err instanceof ConnectionError);
    assert.equal(err.server, `127.0.0.1:${port}`);
    assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.match(err.message, /refused.*is it running\?/);
    return true;
  });
  await assert.rejects(client.echo("x"), ConnectionError);
  await client.close();
  await assert.rejects(client.run("f", "x"), (err: unknown) => {
    assert.ok(err instanceof ConnectionError);
    assert.match(err.message, /closed/);
    return true;
  });
});

Deno.test("client: a server name that does not resolve is named as such in the error", async () => {
  await using client = new Client({
    servers: ["no-such-host.invalid:4730"],
    connectTimeoutMs: 5000,
  });
  await assert.rejects(within("submit", 10_000, client.run("f", "x")), (err: unknown) => {
    assert.ok(err instanceof ConnectionError);
    assert.match(err.message, /no-such-host\.invalid:4730/);
    assert.match(err.message, /does not resolve; check the server address/);
    return true;
  });
});

Deno.test("client: jobs still running when the client closes reject with ConnectionError", async () => {
  await using target = await startOurs();
  const servers = [addr(target)];
  const client = new Client({ servers });
  const job = client.submit("never-served", "x");
  await job.handle;
  await client.close();
  await assert.rejects(within("the job after close", 2000, job.result), ConnectionError);
});

Deno.test("client: bad arguments are refused up front", async () => {
  assert.throws(() => new Client({ servers: [] }), TypeError);
  assert.throws(() => new Client({ servers: ["host:notaport"] }), TypeError);
  await using target = await startOurs();
  await using client = new Client({ servers: [addr(target)] });
  await assert.rejects(client.run("f", "x", { unique: "u".repeat(65) }), RangeError);
  // A 64-byte unique is fine (queued; nobody serves it).
  assert.match(await client.submit("f", "x", { unique: "u".repeat(64) }).handle, /^H:/);
  assert.throws(() => new Worker({ concurrency: 0 }), RangeError);
});
