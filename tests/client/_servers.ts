// Helpers for the client/worker/admin/CLI tests: start the three kinds of
// Gearman server (ours in-process or as a subprocess, C++ gearmand, the Perl
// Gearman::Server) on free loopback ports, run processes with hard timeouts,
// and small polling utilities. The generic pieces come from the interop
// harness; the Perl server and our server as a subprocess are added here.

import {
  delay,
  freePort,
  HOST,
  requirePeer,
  startGearmand,
  startOurServer,
  type Target,
  waitForPort,
} from "../interop/_harness.ts";

export {
  assertSucceeded,
  delay,
  HOST,
  requirePeer,
  run,
  type RunResult,
  spawn,
  type Spawned,
  startGearmand,
  startOurServer,
  type Target,
  waitForPort,
} from "../interop/_harness.ts";

/** Path of the Perl Gearman::Server (Debian gearman-server). */
export const PERL_GEARMAND = "/usr/bin/gearmand";

/** Root of the repository (for `deno run ... cli.ts` / `server.ts`). */
export const ROOT: string = new URL("../../", import.meta.url).pathname;

/** Directory of this suite's peer scripts. */
export const PEERS: string = new URL("./peers/", import.meta.url).pathname;

/** The deno executable running these tests. */
export const DENO: string = Deno.execPath();

/** `host:port` of a target. */
export function addr(t: Target): string {
  return `${HOST}:${t.port}`;
}

/** Kill a child with `signal`, ignoring "already gone". */
function tryKill(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch { /* already exited */ }
}

/** A server running as a child process; `kill()` ends it at once (SIGKILL). */
export interface ProcessTarget extends Target {
  /** SIGKILL it now and wait for it to exit. */
  kill(): Promise<void>;
  /** Its stderr so far (read after it exits). */
  readonly output: Promise<string>;
}

function processTarget(
  name: string,
  child: Deno.ChildProcess,
  port: number,
  output: Promise<string>,
): ProcessTarget {
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async (signal: Deno.Signal) => {
    if (!exited) {
      tryKill(child, signal);
      const timer = setTimeout(() => tryKill(child, "SIGKILL"), 3000);
      await status;
      clearTimeout(timer);
    }
    await status;
    await output.catch(() => "");
  };
  return {
    name,
    port,
    pid: child.pid,
    output,
    kill: () => stop("SIGKILL"),
    [Symbol.asyncDispose]: () => stop("SIGTERM"),
  };
}

/**
 * Start our server as a subprocess (`deno run -A server.ts --host 127.0.0.1
 * --port 0`) and read its port from the "listening on" line.
 */
export async function startOurServerProcess(extra: string[] = []): Promise<ProcessTarget> {
  const child = new Deno.Command(DENO, {
    args: [
      "run",
      "-A",
      `${ROOT}server.ts`,
      "--host",
      HOST,
      "--port",
      "0",
      "--log-level",
      "error",
      ...extra,
    ],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let port = 0;
  const timer = setTimeout(() => tryKill(child, "SIGKILL"), 15000);
  try {
    while (port === 0) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
      const m = text.match(/listening on [^\s]+:(\d+)/);
      if (m) port = Number(m[1]);
    }
  } finally {
    clearTimeout(timer);
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  const rest = (async () => {
    try {
      for (;;) if ((await reader.read()).done) break;
    } catch { /* killed */ }
  })();
  const output = Promise.all([stderr, rest]).then(([e]) => e);
  const target = processTarget("ours-process", child, port, output);
  if (port === 0) {
    await target[Symbol.asyncDispose]();
    throw new Error(`our server did not print "listening on": ${text}\n${await output}`);
  }
  return target;
}

/** Start C++ gearmand as a killable process target. */
export async function startGearmandProcess(): Promise<ProcessTarget> {
  const t = await startGearmand();
  return {
    name: t.name,
    port: t.port,
    pid: t.pid,
    output: Promise.resolve(""),
    kill: async () => {
      try {
        Deno.kill(t.pid, "SIGKILL");
      } catch { /* gone */ }
      await t[Symbol.asyncDispose]();
    },
    [Symbol.asyncDispose]: () => t[Symbol.asyncDispose](),
  };
}

/** Start the Perl Gearman::Server on a free loopback port. */
export async function startPerlServer(): Promise<ProcessTarget> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = freePort();
    const child = new Deno.Command(PERL_GEARMAND, {
      args: [`--port=${port}`, `--listen=${HOST}`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const output = new Response(child.stderr).text();
    const t = processTarget("perl", child, port, output);
    let exited = false;
    child.status.then(() => (exited = true));
    try {
      await waitForPort(port, 8000, () => !exited);
      return t;
    } catch (err) {
      await t[Symbol.asyncDispose]();
      lastError = new Error(`Perl gearmand did not start: ${(await output).trim()}`, {
        cause: err,
      });
    }
  }
  throw lastError;
}

/** Start our server in-process (from serve()). */
export { startOurServer as startOurs };

/** Are the C++ gearmand, Perl server, tools and peers installed? */
export const HAVE_GEARMAND: boolean = requirePeer("gearman tools", ["gearman", "-H"]);
/** Is the Perl Gearman::Server installed? */
export const HAVE_PERL_SERVER: boolean = requirePeer("Perl Gearman::Server", [
  "perl",
  "-MGearman::Server",
  "-e",
  "1",
]);
/** Are the Perl client/worker modules installed? */
export const HAVE_PERL: boolean = requirePeer("Perl Gearman::Client", [
  "perl",
  "-MGearman::Client",
  "-MGearman::Worker",
  "-e",
  "1",
]);
/** Is PHP with the gearman extension installed? */
export const HAVE_PHP: boolean = requirePeer("php-gearman", [
  "php",
  "-r",
  "exit(class_exists('GearmanClient') ? 0 : 1);",
]);

/** Poll `check` every 20 ms until it returns true; throw after `timeoutMs`. */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await delay(20);
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * Race `p` against a timer: reject with a message naming `what` after
 * `ms`. The timer is always cleared.
 */
export async function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Settle a promise into an outcome record (never rejects). */
export async function settle<T>(
  p: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Deterministic pseudo-random bytes (all 256 values). */
export function pattern(size: number, seed = 1): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** SHA-256 of bytes as hex. */
export async function sha256(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
