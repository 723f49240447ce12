// Helpers for the interop tests: start our server and the reference C++
// gearmand on free ports, run peer programs with hard timeouts, and skip
// (locally) or fail (in CI) when a peer is not installed.
//
// Every test runs the same scenario against both servers (`targets`) and
// compares what the peers print.

import assert from "node:assert/strict";
import { serve } from "../../server.ts";
import { startGearmand as startFreshGearmand } from "../../src/conformance/targets.ts";

/** A running job server the peers can talk to. */
export interface Target extends AsyncDisposable {
  /** Which server this is: "ours" or "gearmand". */
  readonly name: string;
  /** Its TCP port on 127.0.0.1. */
  readonly port: number;
  /** Process id of the server (this process for ours). */
  readonly pid: number;
}

/** Starts one kind of server. */
export type StartTarget = () => Promise<Target>;

/** The loopback address every server listens on and every peer connects to. */
export const HOST = "127.0.0.1";

/** Path of the reference server. */
export const GEARMAND = "/usr/sbin/gearmand";

/** Directory of the peer scripts. */
export const PEERS_DIR: string = new URL("./peers/", import.meta.url).pathname;

/** Start our server in this process on a free loopback port. */
export function startOurServer(): Promise<Target> {
  const server = serve({ hostname: HOST, port: 0 });
  return Promise.resolve({
    name: "ours",
    port: server.addr.port,
    pid: Deno.pid,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
    },
  });
}

/** A port that was free a moment ago (the OS picks it). */
export function freePort(): number {
  const l = Deno.listen({ hostname: HOST, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resolve once a TCP connect to `port` succeeds; throw after `timeoutMs`. */
export async function waitForPort(
  port: number,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`Server for port ${port} exited before accepting connections`);
    try {
      const conn = await Deno.connect({ hostname: HOST, port });
      conn.close();
      return;
    } catch (err) {
      lastError = err;
      await delay(25);
    }
  }
  throw new Error(`Nothing accepted connections on ${HOST}:${port} within ${timeoutMs} ms`, {
    cause: lastError,
  });
}

/** Sleep `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Start /usr/sbin/gearmand on a free loopback port; dispose kills it. */
export async function startGearmand(): Promise<Target> {
  const s = await startFreshGearmand({ threads: 2, backlog: 256 }, GEARMAND);
  return {
    name: "gearmand",
    port: s.port,
    pid: s.pid,
    [Symbol.asyncDispose]: () => s[Symbol.asyncDispose](),
  };
}

/** Every server a scenario runs against: ours, then the reference. */
export const targets: ReadonlyArray<readonly [string, StartTarget]> = [
  ["ours", startOurServer],
  ["gearmand", startGearmand],
];

/**
 * Run `scenario` against each target in turn (each gets a fresh server) and
 * return the results keyed by target name.
 */
export async function onEachTarget<T>(
  scenario: (target: Target) => Promise<T>,
): Promise<Record<string, T>> {
  const results: Record<string, T> = {};
  for (const [name, start] of targets) {
    await using target = await start();
    results[name] = await scenario(target);
  }
  return results;
}

/** What a finished process printed and how it ended. */
export interface RunResult {
  /** Exit code (137 and `timedOut` when we killed it). */
  code: number;
  /** Its standard output, as UTF-8. */
  stdout: string;
  /** Its standard output, byte for byte. */
  stdoutBytes: Uint8Array;
  /** Its standard error, as UTF-8. */
  stderr: string;
  /** True when the timeout killed it. */
  timedOut: boolean;
}

/** Options for {@link run} and {@link spawn}. */
export interface RunOptions {
  /** Bytes or text written to its standard input, which is then closed. */
  stdin?: string | Uint8Array;
  /** Kill it (SIGKILL) after this many milliseconds. */
  timeoutMs: number;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
}

/** A process started by {@link spawn}. Disposing it kills it if still running. */
export interface Spawned extends AsyncDisposable {
  /** Resolves when it has exited and its output is read. */
  readonly result: Promise<RunResult>;
  /** Its process id. */
  readonly pid: number;
}

/** Start a program with piped output and a hard timeout. */
export function spawn(cmd: string, args: string[], options: RunOptions): Spawned {
  const child = new Deno.Command(cmd, {
    args,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  let timedOut = false;
  let exited = false;
  const kill = () => {
    if (exited) return;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs);
  const writeStdin = async () => {
    if (options.stdin === undefined) return;
    const bytes = typeof options.stdin === "string"
      ? new TextEncoder().encode(options.stdin)
      : options.stdin;
    const writer = child.stdin.getWriter();
    try {
      await writer.write(bytes);
      await writer.close();
    } catch { /* the process closed its stdin early: that is its business */ }
  };
  const result = (async (): Promise<RunResult> => {
    const [out, , status] = await Promise.all([
      child.output(),
      writeStdin(),
      child.status.then((s) => {
        exited = true;
        return s;
      }),
    ]);
    clearTimeout(timer);
    const dec = new TextDecoder();
    return {
      code: status.code,
      stdout: dec.decode(out.stdout),
      stdoutBytes: out.stdout,
      stderr: dec.decode(out.stderr),
      timedOut,
    };
  })();
  return {
    result,
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      kill();
      await result.catch(() => undefined);
    },
  };
}

/** Run a program to the end, killing it after `timeoutMs`. */
export async function run(cmd: string, args: string[], options: RunOptions): Promise<RunResult> {
  await using p = spawn(cmd, args, options);
  return await p.result;
}

/** Throw unless a run ended with exit code 0 (message carries its output). */
export function assertSucceeded(r: RunResult, what: string): void {
  if (r.code !== 0 || r.timedOut) {
    throw new Error(
      `${what} ${r.timedOut ? "timed out" : `exited with code ${r.code}`}\n` +
        `--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
    );
  }
}

function commandWorks(cmd: string, args: string[]): boolean {
  try {
    const out = new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "null" })
      .outputSync();
    return out.success;
  } catch {
    return false;
  }
}

/**
 * Is a peer installed? `probe` is a command that succeeds only when it is.
 * When it is missing: in CI (env CI set) throw, since CI installs the peers
 * and must not skip; otherwise print why and return false, so the test can
 * pass `ignore: !available`.
 */
export function requirePeer(name: string, probe: readonly [string, ...string[]]): boolean {
  const [cmd, ...args] = probe;
  const ok = commandWorks(cmd, args) && commandWorks(GEARMAND, ["--version"]);
  if (ok) return true;
  const reason = `interop: skipping ${name} tests: \`${probe.join(" ")}\` or \`${GEARMAND} ` +
    `--version\` failed. Install: apt-get install -y gearman-job-server gearman-tools ` +
    `libgearman-client-perl php-cli php-gearman`;
  if (Deno.env.get("CI")) throw new Error(`${reason} (CI is set: peers are required)`);
  console.warn(reason);
  return false;
}

/** Sorted copy of the lines of `text`, without empty ones. */
export function sortedLines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "").sort();
}

/** One admin text command on a fresh connection; the reply lines (without the "." line). */
export async function admin(port: number, command: string, timeoutMs = 5000): Promise<string[]> {
  const conn = await Deno.connect({ hostname: HOST, port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await conn.write(new TextEncoder().encode(command + "\n"));
    const dec = new TextDecoder();
    const buf = new Uint8Array(65536);
    let text = "";
    const listCommands = ["status", "workers", "prioritystatus", "show", "jobs", "clients"];
    const isList = listCommands.includes(command.split(" ")[0]!.toLowerCase());
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n), { stream: true });
      if (isList ? text === ".\n" || text.endsWith("\n.\n") : text.endsWith("\n")) break;
    }
    const lines = text.replaceAll("\r", "").split("\n").filter((l) => l !== "");
    if (isList && lines.at(-1) === ".") lines.pop();
    return lines;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/** Poll `check` every 25 ms until it returns true; throw after `timeoutMs`. */
export async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 10000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await delay(25);
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** The admin `status` line of `fn` as [total, running, workers], or undefined. */
export async function functionStatus(
  port: number,
  fn: string,
): Promise<[number, number, number] | undefined> {
  for (const line of await admin(port, "status")) {
    const [name, total, running, workers] = line.split("\t");
    if (name === fn) return [Number(total), Number(running), Number(workers)];
  }
  return undefined;
}

/** Wait until no job of `fn` is queued or running (admin `status` total 0 or unlisted). */
export function waitForDrained(port: number, fn: string): Promise<void> {
  return waitUntil(`the jobs of ${fn} to finish on port ${port}`, async () => {
    const st = await functionStatus(port, fn);
    return st === undefined || st[0] === 0;
  });
}

/** Wait until the server's `status` lists `fn` with at least `workers` workers. */
export function waitForWorkers(port: number, fn: string, workers = 1): Promise<void> {
  return waitUntil(`${workers} worker(s) for ${fn} on port ${port}`, async () => {
    const st = await functionStatus(port, fn);
    return st !== undefined && st[2] >= workers;
  });
}

/**
 * Assert that the reference gave `expected` (when given) and that our server
 * gave exactly what the reference gave.
 */
export function assertSameAsGearmand<T>(results: Record<string, T>, expected?: T): void {
  const show = (v: unknown) => JSON.stringify(v, null, 2);
  if (expected !== undefined) {
    assert.deepStrictEqual(
      results.gearmand,
      expected,
      `gearmand (the reference) did not give the expected result:\n${show(results.gearmand)}`,
    );
  }
  assert.deepStrictEqual(
    results.ours,
    results.gearmand,
    `our server differs from gearmand:\n--- ours\n${show(results.ours)}\n--- gearmand\n${
      show(results.gearmand)
    }`,
  );
}
