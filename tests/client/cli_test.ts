// The gearman-compatible CLI (cli.ts) as a process: client mode flags
// compared with the real `gearman` tool, worker mode with `gearman`
// clients, our client with a `gearman -w` worker, admin flags compared with
// `gearadmin`, usage errors (exit 2) and unreachable servers (exit 1);
// against our server, C++ gearmand and the Perl server.

import assert from "node:assert/strict";
import { AdminClient, Client, JobExceptionError } from "../../client.ts";
import { Worker } from "../../worker.ts";
import { VERSION } from "../../src/version.ts";
import {
  addr,
  assertSucceeded,
  DENO,
  HAVE_GEARMAND,
  HAVE_PERL_SERVER,
  HOST,
  ROOT,
  run,
  type RunResult,
  spawn,
  startGearmand,
  startOurs,
  startPerlServer,
  type Target,
  until,
  within,
} from "./_servers.ts";

const CLI = `${ROOT}cli.ts`;

/** Run our CLI (`deno run -A cli.ts ...`). */
function cli(args: string[], stdin?: string, timeoutMs = 15000): Promise<RunResult> {
  return run(DENO, ["run", "-A", CLI, ...args], {
    timeoutMs,
    ...(stdin === undefined ? {} : { stdin }),
  });
}

/** Run the real `gearman` tool. */
function gearman(args: string[], stdin?: string, timeoutMs = 15000): Promise<RunResult> {
  return run("gearman", args, { timeoutMs, ...(stdin === undefined ? {} : { stdin }) });
}

const at = (t: Target) => ["-h", HOST, "-p", String(t.port)];

const KINDS: [string, () => Promise<Target>, boolean][] = [
  ["ours", startOurs, false],
  ["gearmand", startGearmand, !HAVE_GEARMAND],
];

async function functionRow(target: Target, fn: string) {
  await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
  return (await admin.status()).find((s) => s.function === fn);
}

async function waitForWorkers(target: Target, fn: string, n = 1) {
  await until(`${n} worker(s) for ${fn}`, async () => {
    return ((await functionRow(target, fn))?.workers ?? 0) >= n;
  }, 15000);
}

/** Our Worker serving the functions the client-mode cases call. */
function testWorker(target: Target, seen: { fn: string; unique: string; data: string }[]) {
  const worker = new Worker({ servers: [addr(target)], concurrency: 8 });
  const bytesRev = (d: Uint8Array) => d.slice().reverse();
  worker.register("rev", (job) => {
    seen.push({ fn: "rev", unique: job.unique, data: job.text() });
    return bytesRev(job.data);
  });
  worker.register("up", (job) => job.text().toUpperCase());
  worker.register("uniq", (job) => `${job.unique}|${job.text()}`);
  worker.register("fail", () => {
    throw new Error("cli boom");
  });
  worker.register("chunks", (job) => {
    job.sendData("x\n");
    job.sendData("y\n");
    return `${job.text()}\n`;
  });
  return worker;
}

// Each case: our CLI and `gearman` get the same flags and stdin; the
// output must be the expected one for both.
const CLIENT_CASES: { name: string; args: string[]; stdin?: string; out: string }[] = [
  {
    name: "data from args, one job each",
    args: ["-f", "rev", "hello", "world"],
    out: "ollehdlrow",
  },
  { name: "data from stdin", args: ["-f", "rev"], stdin: "ab\ncd", out: "dc\nba" },
  { name: "-n: a job per line", args: ["-n", "-f", "rev"], stdin: "ab\ncd\n", out: "\nba\ndc" },
  {
    name: "-N: a job per line, stripped",
    args: ["-N", "-f", "rev"],
    stdin: "ab\ncd\n",
    out: "badc",
  },
  {
    name: "-P -N: prefixed",
    args: ["-P", "-N", "-f", "rev"],
    stdin: "ab\ncd\n",
    out: "rev: barev: dc",
  },
  { name: "-P with data", args: ["-P", "-f", "up", "x"], out: "up: X" },
  { name: "-s: no stdin, empty data", args: ["-s", "-f", "rev"], stdin: "ignored", out: "" },
  { name: "-u: unique id", args: ["-u", "my-unique", "-f", "uniq", "x"], out: "my-unique|x" },
  { name: "-I: high priority", args: ["-I", "-f", "rev", "hi"], out: "ih" },
  { name: "-L: low priority", args: ["-L", "-f", "rev", "lo"], out: "ol" },
  { name: "-b: background", args: ["-b", "-f", "rev", "bg"], out: "" },
  { name: "UTF-8 data", args: ["-f", "up", "héllo"], out: "HÉLLO" },
];

for (const [name, start, ignore] of KINDS) {
  Deno.test({
    name: `cli client mode on ${name}: same output as the gearman tool`,
    ignore,
    async fn() {
      await using target = await start();
      const seen: { fn: string; unique: string; data: string }[] = [];
      await using worker = testWorker(target, seen);
      worker.start();
      await waitForWorkers(target, "rev");
      const results = await Promise.all(CLIENT_CASES.map(async (c) => {
        const [ours, theirs] = await Promise.all([
          cli([...at(target), ...c.args], c.stdin ?? ""),
          gearman([...at(target), ...c.args], c.stdin ?? ""),
        ]);
        return { c, ours, theirs };
      }));
      for (const { c, ours, theirs } of results) {
        assertSucceeded(ours, `our cli (${c.name})`);
        assertSucceeded(theirs, `gearman (${c.name})`);
        assert.equal(theirs.stdout, c.out, `gearman tool, ${c.name}`);
        assert.equal(ours.stdout, theirs.stdout, `our cli differs from gearman: ${c.name}`);
      }
      // -n sends the lines with their newline, -N without, from both tools.
      assert.equal(seen.filter((s) => s.data === "cd\n").length, 2);
      assert.equal(seen.filter((s) => s.data === "cd").length, 4);
      // Background jobs ran (twice: once per tool).
      await until("the background jobs", () => seen.filter((s) => s.data === "bg").length === 2);
    },
  });

  Deno.test({
    name: `cli client mode on ${name}: WORK_DATA is printed as it comes, like gearman`,
    ignore,
    async fn() {
      await using target = await start();
      await using worker = testWorker(target, []);
      worker.start();
      await waitForWorkers(target, "chunks");
      const args = [...at(target), "-f", "chunks", "z"];
      const [ours, theirs] = await Promise.all([cli(args), gearman(args)]);
      assertSucceeded(ours, "our cli -f chunks");
      assertSucceeded(theirs, "gearman -f chunks");
      assert.equal(theirs.stdout, "x\ny\nz\n");
      assert.equal(ours.stdout, theirs.stdout, "our cli differs from gearman");
    },
  });

  Deno.test({
    name: `cli client mode on ${name}: -b with -I/-L queues at that priority, like gearman`,
    ignore,
    async fn() {
      await using target = await start();
      for (const tool of [cli, gearman]) {
        const fn = tool === cli ? "ours-queued" : "theirs-queued";
        for (const flags of [["-b", "-I"], ["-b"], ["-b", "-L"], ["-b", "-L"]]) {
          assertSucceeded(await tool([...at(target), ...flags, "-f", fn, "x"]), `${flags}`);
        }
      }
      await using admin = await AdminClient.connect(addr(target), { timeoutMs: 3000 });
      const rows = await admin.priorityStatus();
      const strip = (fn: string) => {
        const r = rows.find((r) => r.function === fn)!;
        return { high: r.high, normal: r.normal, low: r.low, workers: r.workers };
      };
      assert.deepEqual(strip("theirs-queued"), { high: 1, normal: 1, low: 2, workers: 0 });
      assert.deepEqual(strip("ours-queued"), strip("theirs-queued"));
    },
  });

  Deno.test({
    name: `cli client mode on ${name}: a failing job, -t timeout, several functions`,
    ignore,
    async fn() {
      await using target = await start();
      await using worker = testWorker(target, []);
      worker.start();
      await waitForWorkers(target, "fail");
      const failed = await cli([...at(target), "-f", "fail", "x"]);
      assert.equal(failed.code, 1, failed.stderr);
      assert.equal(failed.stdout, "");
      assert.match(failed.stderr, /cli boom/);

      // -i writes the process id.
      const pidfile = await Deno.makeTempFile({ prefix: "gearman-cli-test-" });
      try {
        const withPid = await cli([...at(target), "-i", pidfile, "-f", "up", "p"]);
        assertSucceeded(withPid, "cli -i");
        assert.equal(withPid.stdout, "P");
        assert.match(await Deno.readTextFile(pidfile), /^\d+\n$/);
      } finally {
        await Deno.remove(pidfile);
      }

      // -t: a job nobody serves gives up after the timeout.
      const t0 = Date.now();
      const timedOut = await cli([...at(target), "-t", "300", "-f", "nobody", "x"]);
      assert.equal(timedOut.code, 1, timedOut.stderr);
      assert.ok(Date.now() - t0 < 5000);
      assert.match(timedOut.stderr, /time|abort/i);

      // Several -f: every function gets the data (ours runs them in order).
      const both = await cli([...at(target), "-P", "-f", "rev", "-f", "up", "abc"]);
      assertSucceeded(both, "cli -f rev -f up");
      assert.equal(both.stdout, "rev: cbaup: ABC");
    },
  });

  Deno.test({
    name: `cli worker mode on ${name}: a command per job, for gearman clients; -c count`,
    ignore,
    async fn() {
      await using target = await start();
      // -c 3: three jobs, then exit 0.
      await using w = spawn(DENO, [
        "run",
        "-A",
        CLI,
        ...at(target),
        "-w",
        "-c",
        "3",
        "-f",
        "rev",
        "--",
        "rev",
      ], {
        timeoutMs: 20000,
      });
      await waitForWorkers(target, "rev");
      for (const word of ["hello", "gearman", "abc"]) {
        const r = await gearman([...at(target), "-f", "rev", word]);
        assertSucceeded(r, `gearman -f rev ${word}`);
        assert.equal(r.stdout, [...word].reverse().join(""));
      }
      const done = await within("the -c 3 worker to exit", 10000, w.result);
      assertSucceeded(done, "cli -w -c 3");
      await until("the worker to leave", async () => {
        return ((await functionRow(target, "rev"))?.workers ?? 0) === 0;
      });

      // Data from stdin through a command with arguments; -N turns each
      // line of its output into a WORK_DATA packet (stripped).
      {
        const args = [
          ...at(target),
          "-w",
          "-c",
          "2",
          "-N",
          "-f",
          "lines",
          "--",
          "tr",
          "a-z",
          "A-Z",
        ];
        await using wk = spawn(DENO, ["run", "-A", CLI, ...args], { timeoutMs: 20000 });
        await waitForWorkers(target, "lines");
        await using client = new Client({ servers: [addr(target)] });
        const job = client.submit("lines", "one\ntwo\nthree\n");
        const updates: string[] = [];
        for await (const u of job) updates.push(u.type === "data" ? u.data.text() : u.type);
        assert.deepEqual(updates, ["ONE", "TWO", "THREE"]);
        assert.equal((await job.result).text(), "");
        const r = await gearman([...at(target), "-f", "lines"], "four\nfive\n");
        assertSucceeded(r, "gearman client of a -N worker");
        assert.equal(r.stdout, "FOURFIVE");
        assertSucceeded(await within("the -N worker", 10000, wk.result), "cli -w -N");
      }

      // No command: prints each job's data, returns an empty result.
      await using printer = spawn(DENO, [
        "run",
        "-A",
        CLI,
        ...at(target),
        "-w",
        "-c",
        "2",
        "-f",
        "print",
      ], {
        timeoutMs: 20000,
      });
      await waitForWorkers(target, "print");
      const p1 = await gearman([...at(target), "-f", "print", "first;"]);
      const p2 = await gearman([...at(target), "-f", "print", "second"]);
      assert.deepEqual([p1.stdout, p2.stdout], ["", ""]);
      const printed = await within("the printing worker", 10000, printer.result);
      assertSucceeded(printed, "cli -w without a command");
      assert.equal(printed.stdout, "first;second");
    },
  });

  Deno.test({
    name: `cli worker mode on ${name}: a failing command fails the job; SIGTERM stops it`,
    ignore,
    async fn() {
      await using target = await start();
      await using w = spawn(DENO, [
        "run",
        "-A",
        CLI,
        ...at(target),
        "-w",
        "-f",
        "sh",
        "--",
        "sh",
        "-c",
        "cat >/dev/null; exit 3",
      ], {
        timeoutMs: 20000,
      });
      await waitForWorkers(target, "sh");
      await using client = new Client({ servers: [addr(target)] });
      await assert.rejects(client.run("sh", "x"), (err: unknown) => {
        assert.ok(err instanceof JobExceptionError, `got ${err}`);
        assert.match(err.text, /exited with code 3/);
        return true;
      });
      Deno.kill(w.pid, "SIGTERM");
      const r = await within("the worker to stop on SIGTERM", 10000, w.result);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.timedOut, false);
    },
  });

  Deno.test({
    name: `cli client mode on ${name}: our cli with a \`gearman -w\` worker`,
    ignore,
    async fn() {
      await using target = await start();
      await using _gearmanWorker = spawn(
        "gearman",
        [...at(target), "-w", "-f", "rev", "--", "rev"],
        {
          timeoutMs: 20000,
        },
      );
      await waitForWorkers(target, "rev");
      const a = await cli([...at(target), "-f", "rev", "hello"]);
      assertSucceeded(a, "cli -f rev hello");
      assert.equal(a.stdout, "olleh");
      const b = await cli([...at(target), "-f", "rev"], "line one\nline two\n");
      assertSucceeded(b, "cli -f rev < stdin");
      assert.equal(b.stdout, "eno enil\nowt enil\n");
      const c = await cli([...at(target), "-n", "-f", "rev"], "ab\ncd\n");
      assert.equal(
        c.stdout,
        (await gearman([...at(target), "-n", "-f", "rev"], "ab\ncd\n")).stdout,
      );
    },
  });

  Deno.test({
    name: `cli admin flags on ${name}: same output as gearadmin`,
    ignore,
    async fn() {
      await using target = await start();
      await using worker = new Worker({ servers: [addr(target)], clientId: "cli-admin" });
      worker.register("fa", () => "a");
      worker.start();
      await waitForWorkers(target, "fa");
      await using client = new Client({ servers: [addr(target)] });
      const h = await client.submit("fq", "x", {
        background: true,
        priority: "high",
        unique: "uq-1",
      })
        .handle;
      const low = await client.submit("fq", "y", {
        background: true,
        priority: "low",
        unique: "uq-2",
      })
        .handle;

      const normalize = (flag: string, text: string) => {
        const lines = text.split("\n").filter((l) => l !== "");
        // Connection ids differ between the two tools' own connections.
        if (flag === "--workers") return lines.map((l) => l.replace(/^\d+ /, "N ")).sort();
        return lines.sort();
      };
      for (
        const flag of [
          "--status",
          "--priority-status",
          "--workers",
          "--show-jobs",
          "--show-unique-jobs",
          "--getpid",
        ]
      ) {
        const [ours, theirs] = await Promise.all([
          cli([...at(target), flag]),
          run("gearadmin", [...at(target), flag], { timeoutMs: 10000 }),
        ]);
        assertSucceeded(ours, `cli ${flag}`);
        assertSucceeded(theirs, `gearadmin ${flag}`);
        assert.deepEqual(normalize(flag, ours.stdout), normalize(flag, theirs.stdout), flag);
        if (flag !== "--getpid") assert.ok(ours.stdout.endsWith(".\n"), `${flag}: ${ours.stdout}`);
        if (flag === "--status") assert.ok(ours.stdout.includes("fq\t2\t0\t0\n"), ours.stdout);
        if (flag === "--priority-status") assert.ok(ours.stdout.includes("fq\t1\t0\t1\t0\n"));
        if (flag === "--workers") assert.match(ours.stdout, /\d+ 127\.0\.0\.1 cli-admin : fa\n/);
        if (flag === "--show-unique-jobs") {
          assert.deepEqual(normalize(flag, ours.stdout), [".", "uq-1", "uq-2"]);
        }
        if (flag === "--show-jobs") assert.ok(ours.stdout.includes(`${h}\t0\t0\t1\n`), ours.stdout);
        if (flag === "--getpid") {
          assert.equal(ours.stdout, `${name === "ours" ? Deno.pid : target.pid}\n`);
        }
      }
      const version = await cli([...at(target), "--server-version"]);
      assertSucceeded(version, "cli --server-version");
      assert.equal(version.stdout, name === "ours" ? `${VERSION}\n` : "1.1.20+ds\n");
      if (name === "gearmand") {
        const theirs = await run("gearadmin", [...at(target), "--server-version"], {
          timeoutMs: 10000,
        });
        assert.equal(version.stdout, theirs.stdout);
      }

      const created = await cli([...at(target), "--create-function", "made"]);
      assertSucceeded(created, "cli --create-function");
      assert.equal(created.stdout, "OK\n");
      assert.deepEqual(await functionRow(target, "made"), {
        function: "made",
        total: 0,
        running: 0,
        workers: 0,
      });
      const dropped = await cli([...at(target), "--drop-function", "made"]);
      assertSucceeded(dropped, "cli --drop-function");
      assert.equal(dropped.stdout, "OK\n");
      assert.equal(await functionRow(target, "made"), undefined);
      // Dropping it again fails: exit 1 with the server's reply.
      const again = await cli([...at(target), "--drop-function", "made"]);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /ERR/);

      // --cancel-job: OK for a queued job, exit 1 for an unknown one.
      const cancelled = await cli([...at(target), "--cancel-job", low]);
      assertSucceeded(cancelled, "cli --cancel-job");
      assert.equal(cancelled.stdout, "OK\n");
      if (name === "ours") assert.equal((await functionRow(target, "fq"))?.total, 1);
      const unknown = await cli([...at(target), "--cancel-job", "H:no-such:1"]);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /ERR/);
    },
  });
}

Deno.test({
  name: "cli on the Perl server: client mode with our worker, background, admin --status",
  ignore: !HAVE_PERL_SERVER,
  async fn() {
    await using target = await startPerlServer();
    const seen: { fn: string; unique: string; data: string }[] = [];
    await using worker = testWorker(target, seen);
    worker.start();
    await waitForWorkers(target, "rev");
    const a = await cli([...at(target), "-f", "rev", "hello", "perl"]);
    assertSucceeded(a, "cli -f rev on perl");
    assert.equal(a.stdout, "ollehlrep");
    const b = await cli([...at(target), "-N", "-P", "-f", "up"], "x\ny\n");
    assertSucceeded(b, "cli -N -P on perl");
    assert.equal(b.stdout, "up: Xup: Y");
    const bg = await cli([...at(target), "-b", "-f", "rev", "in the background"]);
    assertSucceeded(bg, "cli -b on perl");
    await until("the background job", () => seen.some((s) => s.data === "in the background"));
    const st = await cli([...at(target), "--status"]);
    assertSucceeded(st, "cli --status on perl");
    assert.ok(st.stdout.includes("rev\t0\t0\t1\n"), st.stdout);
    assert.ok(st.stdout.endsWith(".\n"));
  },
});

Deno.test("cli: wrong usage exits 2 with the help on stderr", async () => {
  const cases = [
    ["--bogus"],
    [],
    ["-h", HOST, "-p", "1"],
    ["-f", "x", "-I", "-L", "data"],
    ["-p", "notaport", "-f", "x", "data"],
    ["-p", "70000", "-f", "x", "data"],
    ["-c", "3", "-f", "x", "data"],
    ["-w", "-c", "many", "-f", "x"],
    ["--status", "-f", "x"],
    ["--status", "-w"],
    ["-t", "-5", "-f", "x"],
  ];
  const results = await Promise.all(cases.map((args) => cli(args, "")));
  results.forEach((r, i) => {
    const what = JSON.stringify(cases[i]);
    assert.equal(r.code, 2, `${what}: ${r.stderr}`);
    assert.equal(r.stdout, "", what);
    assert.match(r.stderr, /^gearman: /, what);
    assert.ok(r.stderr.includes("Usage:"), `${what}: no help on stderr`);
    assert.ok(r.stderr.includes("Client options:"), what);
  });
  const help = await cli(["-H"]);
  assert.equal(help.code, 0);
  assert.ok(help.stdout.includes("Usage:"));
  assert.equal(help.stderr, "");
  const version = await cli(["--version"]);
  assert.equal(version.code, 0);
  assert.equal(version.stdout, `gearman-deno ${VERSION}\n`);
});

Deno.test("cli: an unreachable server exits 1 with a message naming it", async () => {
  const l = Deno.listen({ hostname: HOST, port: 0 });
  const port = String((l.addr as Deno.NetAddr).port);
  l.close();
  const where = `${HOST}:${port}`;
  const [client, bg, admin] = await Promise.all([
    cli(["-h", HOST, "-p", port, "-f", "f", "data"]),
    cli(["-h", HOST, "-p", port, "-b", "-f", "f", "data"]),
    cli(["-h", HOST, "-p", port, "--status"]),
  ]);
  for (const [what, r] of [["client", client], ["background", bg], ["admin", admin]] as const) {
    assert.equal(r.code, 1, `${what}: ${r.stderr}`);
    assert.equal(r.stdout, "", what);
    assert.ok(r.stderr.includes(where), `${what}: the message does not name ${where}: ${r.stderr}`);
    assert.match(r.stderr, /connect|refused/i, what);
    assert.ok(!r.stderr.includes("Usage:"), `${what}: no usage for a runtime error`);
  }
});

Deno.test("cli: worker mode without --allow-run says how to grant it", async () => {
  await using target = await startOurs();
  const r = await run(DENO, ["run", "-N", CLI, ...at(target), "-w", "-f", "f", "--", "rev"], {
    timeoutMs: 15000,
  });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /--allow-run/);
});
