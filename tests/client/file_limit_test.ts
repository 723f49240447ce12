// A Client and a Worker in a process that runs out of file descriptors
// (EMFILE on connect): the error says so and what to do, and both connect
// again once descriptors free up. The process is limited with prlimit
// (util-linux, in every Debian), which only a child process can be.

import assert from "node:assert/strict";
import { serve } from "../../server.ts";

const SCRIPT = new URL("./_few_files.ts", import.meta.url).pathname;

Deno.test("client and worker out of file descriptors: a clear error, then they connect again once some are free", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 });
  const out = await new Deno.Command("prlimit", {
    args: [
      "--nofile=64",
      Deno.execPath(),
      "run",
      "-N",
      "-R",
      SCRIPT,
      `127.0.0.1:${server.addr.port}`,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `the script failed:\n${stdout}\n${stderr}`);
  const r = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
    refused: string;
    result: string;
    attempts: number;
  };
  assert.match(r.refused, /Too many open files/);
  assert.match(r.refused, /raise this process.s limit \(ulimit -n\)/);
  assert.doesNotMatch(r.refused, /is it running/);
  assert.equal(r.result, "cba");
});
