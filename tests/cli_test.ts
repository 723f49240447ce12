// The server command line, run as a real process.

import assert from "node:assert/strict";
import { PacketClient } from "../client.ts";
import { VERSION } from "../src/version.ts";

const serverPath = new URL("../server.ts", import.meta.url).pathname;
const denoJson = JSON.parse(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
) as { version: string };

async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-N", serverPath, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A running server CLI on 127.0.0.1 and a free port, and what it printed so far. */
interface SpawnedCli {
  child: Deno.ChildProcess;
  stdout: ReadableStreamDefaultReader<string>;
  /** Its stdout up to the address line(s). */
  text: string;
  port: number;
  httpPort: number | undefined;
}

/**
 * Spawn the server CLI (under `wrapper`, e.g. prlimit) on 127.0.0.1 and a
 * free port; resolves once it printed its address, and with --http the
 * HTTP one too.
 */
async function spawnCli(flags: string[], wrapper: string[] = []): Promise<SpawnedCli> {
  const argv = [Deno.execPath(), "run", "-N", serverPath, "--host", "127.0.0.1", "--port", "0"];
  const [cmd, ...args] = [...wrapper, ...argv, ...flags];
  const child = new Deno.Command(cmd!, {
    args,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const lines = flags.includes("--http") ? 2 : 1;
  let text = "";
  while (text.split("\n").length <= lines) {
    const { value, done } = await stdout.read();
    if (done) break;
    text += value;
  }
  const port = Number(text.match(/^listening on 127\.0\.0\.1:(\d+)\n/)?.[1]);
  const http = text.match(/\nhttp on 127\.0\.0\.1:(\d+)\n/)?.[1];
  assert.ok(port > 0 && (lines === 1 || http), `unexpected output: ${JSON.stringify(text)}`);
  return { child, stdout, text, port, httpPort: http === undefined ? undefined : Number(http) };
}

/** The rest of a stream, until it ends. */
async function readRest(r: ReadableStreamDefaultReader<string>): Promise<string> {
  let out = "";
  for (let x = await r.read(); !x.done; x = await r.read()) out += x.value;
  return out;
}

Deno.test("VERSION matches deno.json", () => {
  assert.equal(VERSION, denoJson.version);
});

Deno.test("server CLI --help prints usage and exits 0", async () => {
  const r = await runCli(["--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: deno run -N jsr:@x\/gearman\/server/);
  assert.match(r.stdout, /--job-retries N/);
});

Deno.test("server CLI --version prints the version", async () => {
  const r = await runCli(["--version"]);
  assert.equal(r.code, 0);
  assert.equal(r.stdout.trim(), `gearman-deno ${VERSION}`);
});

Deno.test("server CLI rejects bad flags with usage and exit code 2", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /Unknown option '--bogus'/],
    [["--port", "abc"], /--port must be an integer from 0 to 65535, got "abc"/],
    [["--port", "70000"], /--port must be an integer/],
    [["--log-level", "loud"], /--log-level must be one of/],
    [["--job-retries", "-1"], /job-retries/],
    [["--max-queue", "1.5"], /--max-queue must be an integer/],
    [["--max-packet-size", "0"], /--max-packet-size must be at least 1/],
    [["extra"], /Unexpected argument 'extra'/],
    [["--admin-read", "all"], /--admin-read must be any, loopback or token, got "all"/],
    [["--admin-read", "token"], /--admin-read token needs --admin-token TOKEN/],
    [["--tls-ca", "ca.pem"], /--tls-ca needs --tls-cert and --tls-key/],
    [
      ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-access", "a.json"],
      /--tls-access needs --tls-ca/,
    ],
    [["--http-tls"], /--http-tls needs --http \[HOST:\]PORT/],
    [["--gloom-tls"], /--gloom-tls needs --tls-cert and --tls-key/],
    [
      ["--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-crl", "crl.pem"],
      /--tls-crl needs --tls-ca/,
    ],
    [["--http", "8080", "--http-tls"], /--http-tls needs --tls-cert and --tls-key/],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), async () => {
      const r = await runCli(args);
      assert.equal(r.code, 2);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /Usage:/);
      assert.equal(r.stdout, "");
    });
  }
});

Deno.test("server CLI says when the port is taken, exit code 1", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const r = await runCli(["--host", "127.0.0.1", "--port", String(listener.addr.port)]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the port is in use/);
});

Deno.test("server CLI prints its address, serves, and stops cleanly on SIGTERM and SIGINT", async (t) => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    await t.step(signal, async () => {
      const { child, stdout, text, port } = await spawnCli([]);
      {
        await using c = await PacketClient.connect({ port });
        c.send("ECHO_REQ", "hi");
        assert.equal((await c.receive()).name, "ECHO_RES");
      }
      child.kill(signal);
      const status = await child.status;
      assert.equal(status.code, 0);
      // Info lines go to stdout (console.info), after the address.
      const log = text + await readRest(stdout);
      await child.stderr.cancel();
      if (signal === "SIGTERM") {
        // One readable sentence, no quoted fragments.
        assert.match(
          log,
          /Draining: 0 running job\(s\) may finish \(waiting up to 30 s\); 0 background job\(s\) are lost when it stops: no durable store \(--store\)\n/,
        );
      }
    });
  }
});

Deno.test("server CLI --admin-read token refuses admin commands without the token, and logs it", async () => {
  const { child, stdout, text, port } = await spawnCli([
    "--admin-token",
    "s3cret",
    "--admin-read",
    "token",
  ]);
  {
    await using c = await PacketClient.connect({ port });
    const [reply] = await c.admin("status");
    assert.match(reply!, /^ERR PERMISSION_DENIED /);
    assert.deepEqual(await c.admin("auth s3cret"), ["OK"]);
    assert.deepEqual(await c.admin("status"), []);
  }
  child.kill("SIGINT");
  assert.equal((await child.status).code, 0);
  const logs = text + await readRest(stdout) +
    await readRest(child.stderr.pipeThrough(new TextDecoderStream()).getReader());
  assert.match(
    logs,
    /Refused admin command "status" from "127\.0\.0\.1:\d+": "every admin command needs the admin token/,
  );
});

Deno.test("README's server command line section is the --help text", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const r = await runCli(["--help"]);
  const section = readme.slice(readme.indexOf("## Server command line"));
  const start = section.indexOf("```\n") + 4;
  const block = section.slice(start, section.indexOf("\n```", start));
  assert.equal(block.trim(), r.stdout.trim());
});

/**
 * The server CLI with only 64 file descriptors (prlimit, from util-linux,
 * in every Debian): 100 connections at once use them up (EMFILE on accept).
 * Resolves once it printed its addresses (the Gearman port, and the HTTP
 * port with --http).
 */
function startWithFewFiles(args: string[]): Promise<SpawnedCli> {
  return spawnCli(args, ["prlimit", "--nofile=64"]);
}

/** Open up to `count` connections to `port`, stopping at the first refused. */
async function flood(port: number, count: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i++) {
    try {
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    } catch {
      break; // the listener went away: what the server must survive
    }
  }
  return conns;
}

/** SIGINT, exit code 0, and what it logged to stderr. */
async function stopAndLog(server: SpawnedCli): Promise<string> {
  server.child.kill("SIGINT");
  assert.equal((await server.child.status).code, 0);
  await server.stdout.cancel();
  return await new Response(server.child.stderr).text();
}

const echoed = async (c: PacketClient, text: string): Promise<string> => {
  c.send("ECHO_REQ", text);
  return new TextDecoder().decode((await c.receive(5000)).args[0]);
};

Deno.test("server CLI: when it runs out of file descriptors it says so and keeps accepting once they free up", async () => {
  const server = await startWithFewFiles([]);
  // A client connected before the flood is not harmed by it.
  await using before = await PacketClient.connect({ port: server.port });
  const conns = await flood(server.port, 100);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await echoed(before, "during"), "during");
  for (const c of conns) c.close();
  // The server kept trying: a new connection is answered.
  await using after = await PacketClient.connect({ port: server.port });
  assert.equal(await echoed(after, "after"), "after");
  assert.match(
    await stopAndLog(server),
    /Accepting a Gearman connection failed: "Too many open files \(os error 24\)"; trying again in \d+ ms \(\d+ failure\(s\) since the last such line\)\. With too many open files, raise the limit \(ulimit -n\) or set --max-connections below it/,
  );
});

Deno.test("server CLI: a flood on the HTTP port past the file limit does not end the server; the endpoint listens again", async () => {
  // Deno.serve's accept loop stops on EMFILE and rejects: unhandled, that
  // ended the whole process (and every in-memory job with it).
  const server = await startWithFewFiles(["--http", "127.0.0.1:0"]);
  await using gearman = await PacketClient.connect({ port: server.port });
  for (const c of await flood(server.httpPort!, 100)) c.close();
  // The Gearman side never noticed, and the HTTP endpoint comes back.
  assert.equal(await echoed(gearman, "still here"), "still here");
  let status = 0;
  for (let i = 0; i < 50 && status !== 200; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${server.httpPort}/healthz`);
      await res.body?.cancel();
      status = res.status;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.equal(status, 200);
  assert.match(
    await stopAndLog(server),
    /The HTTP endpoint stopped: "Http: Error: Too many open files \(os error 24\)"; listening again in \d+ ms \(the Gearman port is not affected\)/,
  );
});
