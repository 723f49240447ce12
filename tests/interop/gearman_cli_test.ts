// The `gearman` command-line tool (gearman-tools, over C libgearman) as
// client and as worker, against our server and against C++ gearmand.

import {
  assertSameAsGearmand,
  assertSucceeded,
  HOST,
  onEachTarget,
  requirePeer,
  run,
  spawn,
  type Target,
} from "./_harness.ts";

const haveCli = requirePeer("gearman CLI", ["sh", "-c", "command -v gearman"]);

/** Run `gearman` as a client: its stdout (and a failure if it did not exit 0). */
async function client(target: Target, args: string[], stdin?: string): Promise<string> {
  const r = await run("gearman", ["-h", HOST, "-p", String(target.port), ...args], {
    timeoutMs: 30_000,
    ...(stdin === undefined ? {} : { stdin }),
  });
  assertSucceeded(r, `gearman ${args.join(" ")} against ${target.name}`);
  return r.stdout;
}

/**
 * Start `gearman -w` serving `fn` for `count` jobs with a shell command that
 * appends each job's data to a log file (the side effect we check) and
 * reverses it (the result).
 */
function worker(target: Target, fn: string, count: number, log: string) {
  return spawn(
    "gearman",
    [
      "-w",
      "-h",
      HOST,
      "-p",
      String(target.port),
      "-c",
      String(count),
      "-f",
      fn,
      "--",
      "sh",
      "-c",
      'tee -a "$0" | rev',
      log,
    ],
    { timeoutMs: 40_000 },
  );
}

Deno.test({
  name:
    "interop: gearman CLI as client and worker (stdin, -I, -L, -u, -n, args, -b) against ours and gearmand",
  ignore: !haveCli,
  async fn() {
    const results = await onEachTarget(async (target) => {
      const log = await Deno.makeTempFile({ prefix: "gearman_cli_interop_" });
      try {
        await using w = worker(target, "rev", 9, log);
        const out = {
          stdin: await client(target, ["-f", "rev"], "hello\n"),
          high: await client(target, ["-I", "-f", "rev"], "high\n"),
          low: await client(target, ["-L", "-f", "rev"], "low\n"),
          unique: await client(target, ["-u", "my-unique", "-f", "rev"], "unique\n"),
          lines: await client(target, ["-n", "-f", "rev"], "ab\ncd\n"),
          args: await client(target, ["-f", "rev", "--", "arg one", "arg two"]),
          background: await client(target, ["-b", "-f", "rev"], "background\n"),
          worker: "",
          log: "",
        };
        // The worker exits after its 9th job, the background one.
        const done = await w.result;
        assertSucceeded(done, `gearman -w against ${target.name}`);
        out.worker = done.stdout;
        out.log = await Deno.readTextFile(log);
        return out;
      } finally {
        await Deno.remove(log);
      }
    });
    assertSameAsGearmand(results, {
      stdin: "olleh\n",
      high: "hgih\n",
      low: "wol\n",
      unique: "euqinu\n",
      lines: "ba\ndc\n",
      args: "eno graowt gra",
      background: "",
      worker: "",
      log: "hello\nhigh\nlow\nunique\nab\ncd\narg onearg twobackground\n",
    });
  },
});

Deno.test({
  name:
    "interop: gearman CLI background jobs (-b -I / -b / -b -L) run in priority order against ours and gearmand",
  ignore: !haveCli,
  async fn() {
    const results = await onEachTarget(async (target) => {
      const log = await Deno.makeTempFile({ prefix: "gearman_cli_interop_" });
      try {
        // Queue with no worker connected, then let one worker take them all.
        const submitted = [
          await client(target, ["-b", "-L", "-f", "ord"], "low\n"),
          await client(target, ["-b", "-f", "ord"], "normal-1\n"),
          await client(target, ["-b", "-I", "-f", "ord"], "high\n"),
          await client(target, ["-b", "-f", "ord"], "normal-2\n"),
          await client(target, ["-b", "-I", "-u", "hi-2", "-f", "ord"], "high-2\n"),
        ];
        await using w = worker(target, "ord", 5, log);
        const done = await w.result;
        assertSucceeded(done, `gearman -w against ${target.name}`);
        return { submitted, log: await Deno.readTextFile(log) };
      } finally {
        await Deno.remove(log);
      }
    });
    assertSameAsGearmand(results, {
      submitted: ["", "", "", "", ""],
      log: "high\nhigh-2\nnormal-1\nnormal-2\nlow\n",
    });
  },
});
