/**
 * Servers to run the conformance corpus against: any server at
 * `HOST:PORT` (its kind detected), our server in this process, or C++
 * gearmand started on a free port.
 *
 * @module
 */

import { serve } from "../../server.ts";
import type { FreshServer, Target } from "./runner.ts";
import { WireConnection } from "./wire.ts";

/** Where Debian installs C++ gearmand. */
export const GEARMAND_PATH = "/usr/sbin/gearmand";

/**
 * Parse `HOST:PORT` (or `[v6]:PORT`, or `PORT` alone for 127.0.0.1).
 *
 * @param spec The address.
 * @returns Host and port.
 * @throws {TypeError} When it is not an address.
 */
export function parseAddress(spec: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(spec) ?? /^()()(\d+)$/.exec(spec);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port > 0 && port < 65536)) {
    throw new TypeError(`Cannot use server address ${JSON.stringify(spec)}: expected HOST:PORT`);
  }
  return { hostname: m[1] || m[2] || "127.0.0.1", port };
}

async function ask(c: WireConnection, line: string): Promise<string[]> {
  c.send(line + "\r\n");
  const lines: string[] = [];
  for (;;) {
    if (!(await c.waitEvent(2000))) return lines;
    const e = c.take()!;
    if (e.kind !== "line") return lines;
    lines.push(e.text);
    if (lines.length === 1 && /^(OK|ERR)/.test(e.text)) return lines;
    if (e.text === ".\n") return lines;
  }
}

/**
 * Tell which kind of server listens at an address: `"gearmand"` (C++
 * gearmand answers `version` with 1.x), `"ours"` (it answers our
 * `show scheduled` extension with a listing) or `"other"`.
 *
 * @param hostname Server host.
 * @param port Server port.
 * @returns The kind.
 */
export async function detectKind(hostname: string, port: number): Promise<string> {
  const c = await WireConnection.open(hostname, port);
  try {
    const version = (await ask(c, "version"))[0] ?? "";
    const scheduled = (await ask(c, "show scheduled"))[0] ?? "ERR";
    if (!scheduled.startsWith("ERR")) return "ours";
    if (/^OK 1\.\d+\.\d+/.test(version)) return "gearmand";
    return "other";
  } finally {
    await c.close();
  }
}

/** A port that was free a moment ago. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * Start our server in this process on a free loopback port.
 *
 * @param options Server options (`jobRetries`).
 * @returns The running server; dispose it to stop it.
 */
export function startOurs(options: { jobRetries?: number } = {}): Promise<FreshServer> {
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    handleHost: "conformance",
    ...(options.jobRetries ? { jobRetries: options.jobRetries } : {}),
  });
  return Promise.resolve({
    hostname: "127.0.0.1",
    port: server.addr.port,
    [Symbol.asyncDispose]: () => server.shutdown(),
  });
}

/**
 * Start C++ gearmand on a free loopback port (needs --allow-run).
 *
 * @param options Server options: `jobRetries`; `threads` (default 1) and
 * `backlog` (its listen backlog; gearmand's own default is 32).
 * @param path The gearmand binary.
 * @returns The running server and its process id; dispose it to stop it.
 * @throws {Error} When it does not start within 5 s.
 */
export async function startGearmand(
  options: { jobRetries?: number; threads?: number; backlog?: number } = {},
  path: string = GEARMAND_PATH,
): Promise<FreshServer & { pid: number }> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = freePort();
    const child = new Deno.Command(path, {
      args: [
        "--listen=127.0.0.1",
        `--port=${port}`,
        "--log-file=none",
        `--threads=${options.threads ?? 1}`,
        ...(options.backlog ? [`--backlog=${options.backlog}`] : []),
        ...(options.jobRetries ? [`--job-retries=${options.jobRetries}`] : []),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    const stop = async () => {
      if (!exited) {
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        const timer = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch { /* gone */ }
        }, 3000);
        await status;
        clearTimeout(timer);
      }
      await status;
      await stderr;
    };
    const deadline = Date.now() + 5000;
    let up = false;
    while (!up && !exited && Date.now() < deadline) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        conn.close();
        up = true;
      } catch (err) {
        lastError = err;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    if (up) return { hostname: "127.0.0.1", port, pid: child.pid, [Symbol.asyncDispose]: stop };
    await stop();
    lastError = new Error(`gearmand did not start on port ${port}: ${(await stderr).trim()}`, {
      cause: lastError,
    });
  }
  throw lastError;
}

/**
 * A target for a server at an address; its kind detected unless given.
 *
 * @param spec `HOST:PORT`.
 * @param kind The kind, if known.
 * @returns The target (it cannot start fresh servers).
 */
export async function addressTarget(spec: string, kind?: string): Promise<Target> {
  const { hostname, port } = parseAddress(spec);
  return { hostname, port, kind: kind ?? await detectKind(hostname, port) };
}

/**
 * A running server plus the target for it; disposing stops the server.
 */
export interface StartedTarget extends AsyncDisposable {
  /** The target to run scenarios against. */
  target: Target;
}

/**
 * Start our server in-process and make a target of it (fresh servers too).
 *
 * @returns The target; dispose it to stop the server.
 */
export async function ourTarget(): Promise<StartedTarget> {
  const s = await startOurs();
  return {
    target: { hostname: s.hostname, port: s.port, kind: "ours", fresh: startOurs },
    [Symbol.asyncDispose]: () => s[Symbol.asyncDispose](),
  };
}

/**
 * Start C++ gearmand and make a target of it (fresh servers too).
 *
 * @param path The gearmand binary.
 * @returns The target; dispose it to stop gearmand.
 */
export async function gearmandTarget(path: string = GEARMAND_PATH): Promise<StartedTarget> {
  const s = await startGearmand({}, path);
  return {
    target: {
      hostname: s.hostname,
      port: s.port,
      kind: "gearmand",
      fresh: (o) => startGearmand(o, path),
    },
    [Symbol.asyncDispose]: () => s[Symbol.asyncDispose](),
  };
}
