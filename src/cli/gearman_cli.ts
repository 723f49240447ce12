// A command line that takes the flags of the `gearman` and `gearadmin`
// tools, so scripts written for them can switch: client mode, worker mode
// (running a command per job) and admin mode.

import { parseArgs } from "node:util";
import { AdminClient } from "../client/admin_client.ts";
import { Client } from "../client/gearman_client.ts";
import { Worker } from "../client/gearman_worker.ts";
import type { WorkerJob } from "../client/gearman_worker.ts";
import { VERSION } from "../version.ts";

/** Usage text of the CLI. */
export const CLI_USAGE: string = `Usage:
  Client mode: gearman [options] [<data> ...]
  Worker mode: gearman -w [options] [-- <command> [<args> ...]]
  Admin mode:  gearman [-h HOST] [-p PORT] --status | --workers | ...

Common options:
  -f <function>  function name to use for jobs (repeat for several)
  -h <host>      job server host (default 127.0.0.1)
  -p <port>      job server port (default 4730)
  -t <timeout>   timeout in milliseconds (connect, and each job)
  -i <pidfile>   write the process id to this file
  -v             print diagnostic information to stderr
  -H, --help     print this help and exit
  -V, --version  print the version and exit

Client options:
  -b             run jobs in the background
  -I             run jobs at high priority
  -L             run jobs at low priority
  -n             run one job per line of standard input
  -N             same as -n, but strip the newline
  -P             prefix every output line with the function name
  -s             send the job without reading standard input (empty data)
  -u <unique>    unique id for the job

Worker options:
  -w             run in worker mode
  -c <count>     number of jobs to run before exiting
  -n             send a WORK_DATA packet for each line the command prints
  -N             same as -n, but strip the newline
  A worker with a command runs it per job, data on its standard input,
  its standard output as the result (needs --allow-run). Without a
  command it prints each job's data and returns an empty result.

Admin options (as gearadmin):
  --status --workers --priority-status --server-version --getpid
  --show-jobs --show-unique-jobs --create-function F --drop-function F
  --cancel-job HANDLE --shutdown
`;

/**
 * Where the CLI reads and writes; tests pass their own.
 *
 * @example Capture the output
 * ```ts
 * import { type CliIo, runGearmanCli } from "@x/gearman/cli";
 * import assert from "node:assert/strict";
 *
 * let out = "";
 * const io: CliIo = {
 *   stdin: new Blob([]).stream(),
 *   stdout: async (b) => void (out += new TextDecoder().decode(b)),
 *   stderr: () => {},
 * };
 * assert.equal(await runGearmanCli(["--version"], io), 0);
 * assert.match(out, /^gearman-deno /);
 * ```
 */
export interface CliIo {
  /** Standard input (job data in client mode). */
  stdin: ReadableStream<Uint8Array>;
  /** Writes to standard output (results). */
  stdout: (bytes: Uint8Array) => Promise<void>;
  /** Writes a line to standard error (diagnostics). */
  stderr: (text: string) => void;
}

const defaultIo = (): CliIo => ({
  stdin: Deno.stdin.readable,
  stdout: async (bytes) => {
    let off = 0;
    while (off < bytes.length) off += await Deno.stdout.write(bytes.subarray(off));
  },
  stderr: (text) => console.error(text),
});

class UsageError extends Error {}

const ADMIN_FLAGS = [
  "status",
  "workers",
  "priority-status",
  "server-version",
  "getpid",
  "show-jobs",
  "show-unique-jobs",
  "shutdown",
] as const;

/**
 * Run the CLI; resolves with the exit code (0 ok, 1 failure, 2 usage).
 *
 * @param args The command line arguments.
 * @param io Standard streams.
 * @returns The exit code.
 *
 * @example Wrong usage exits with 2
 * ```ts
 * import { runGearmanCli } from "@x/gearman/cli";
 * import assert from "node:assert/strict";
 *
 * const io = { stdin: new Blob([]).stream(), stdout: async () => {}, stderr: () => {} };
 * assert.equal(await runGearmanCli(["--no-such-flag"], io), 2);
 * ```
 */
export async function runGearmanCli(args: string[], io: CliIo = defaultIo()): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: {
        f: { type: "string", multiple: true },
        h: { type: "string" },
        p: { type: "string" },
        t: { type: "string" },
        i: { type: "string" },
        v: { type: "boolean" },
        H: { type: "boolean" },
        help: { type: "boolean" },
        V: { type: "boolean" },
        version: { type: "boolean" },
        b: { type: "boolean" },
        I: { type: "boolean" },
        L: { type: "boolean" },
        n: { type: "boolean" },
        N: { type: "boolean" },
        P: { type: "boolean" },
        s: { type: "boolean" },
        u: { type: "string" },
        w: { type: "boolean" },
        c: { type: "string" },
        status: { type: "boolean" },
        workers: { type: "boolean" },
        "priority-status": { type: "boolean" },
        "server-version": { type: "boolean" },
        getpid: { type: "boolean" },
        "show-jobs": { type: "boolean" },
        "show-unique-jobs": { type: "boolean" },
        shutdown: { type: "boolean" },
        "create-function": { type: "string", multiple: true },
        "drop-function": { type: "string", multiple: true },
        "cancel-job": { type: "string", multiple: true },
      },
    });
  } catch (err) {
    io.stderr(`gearman: ${(err as Error).message}\n\n${CLI_USAGE}`);
    return 2;
  }
  const { values: o, positionals } = parsed;
  if (o.H || o.help) {
    await io.stdout(new TextEncoder().encode(CLI_USAGE));
    return 0;
  }
  if (o.V || o.version) {
    await io.stdout(new TextEncoder().encode(`gearman-deno ${VERSION}\n`));
    return 0;
  }
  try {
    const host = o.h ?? "127.0.0.1";
    const port = intFlag("-p", o.p, 4730, 1, 65535);
    const timeoutMs = intFlag("-t", o.t, 0, 0, 2 ** 31 - 1);
    const server = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    if (o.i !== undefined) await Deno.writeTextFile(o.i, `${Deno.pid}\n`);
    const adminWanted = ADMIN_FLAGS.some((f) => o[f]) || o["create-function"] ||
      o["drop-function"] || o["cancel-job"];
    if (adminWanted) {
      if (o.w || o.f) throw new UsageError("admin options cannot be mixed with -w or -f");
      return await runAdmin(server, o, io, timeoutMs);
    }
    const functions = o.f ?? [];
    if (functions.length === 0) throw new UsageError("no function given: use -f <function>");
    if (o.I && o.L) {
      throw new UsageError("-I and -L cannot be used together");
    }
    if (o.w) {
      const count = intFlag("-c", o.c, 0, 0, Number.MAX_SAFE_INTEGER);
      return await runWorker(server, functions, positionals, {
        count,
        perLine: o.n || o.N ? (o.N ? "strip" : "keep") : undefined,
        verbose: o.v ?? false,
        io,
      });
    }
    if (o.c !== undefined) throw new UsageError("-c is a worker option: use it with -w");
    return await runClient(server, functions, positionals, {
      background: o.b ?? false,
      priority: o.I ? "high" : o.L ? "low" : "normal",
      perLine: o.n || o.N ? (o.N ? "strip" : "keep") : undefined,
      prefix: o.P ?? false,
      noInput: o.s ?? false,
      unique: o.u,
      timeoutMs,
      io,
    });
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`gearman: ${err.message}\n\n${CLI_USAGE}`);
      return 2;
    }
    io.stderr(`gearman: ${(err as Error).message}`);
    return 1;
  }
}

function intFlag(name: string, v: string | undefined, def: number, min: number, max: number) {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`${name} must be an integer from ${min} to ${max}, got "${v}"`);
  }
  return Number(v);
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function splitLines(data: Uint8Array, strip: boolean): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  while (start < data.length) {
    const nl = data.indexOf(10, start);
    const end = nl < 0 ? data.length : nl + 1;
    out.push(data.subarray(start, strip && nl >= 0 ? nl : end));
    start = end;
  }
  return out;
}

interface ClientRun {
  background: boolean;
  priority: "high" | "normal" | "low";
  perLine: "keep" | "strip" | undefined;
  prefix: boolean;
  noInput: boolean;
  unique: string | undefined;
  timeoutMs: number;
  io: CliIo;
}

async function runClient(
  server: string,
  functions: string[],
  positionals: string[],
  r: ClientRun,
): Promise<number> {
  const enc = new TextEncoder();
  let inputs: Uint8Array[];
  if (positionals.length > 0) inputs = positionals.map((p) => enc.encode(p));
  else if (r.noInput) inputs = [new Uint8Array(0)];
  else {
    const all = await readAll(r.io.stdin);
    inputs = r.perLine ? splitLines(all, r.perLine === "strip") : [all];
  }
  await using client = new Client({
    servers: [server],
    ...(r.timeoutMs > 0 ? { connectTimeoutMs: r.timeoutMs } : {}),
  });
  let failed = 0;
  for (const fn of functions) {
    for (const data of inputs) {
      const job = client.submit(fn, data, {
        priority: r.priority,
        background: r.background,
        ...(r.unique !== undefined ? { unique: r.unique } : {}),
        ...(r.timeoutMs > 0 ? { signal: AbortSignal.timeout(r.timeoutMs) } : {}),
      });
      const print = async (bytes: Uint8Array) => {
        if (!r.prefix) return await r.io.stdout(bytes);
        const prefix = enc.encode(`${fn}: `);
        const out = new Uint8Array(prefix.length + bytes.length);
        out.set(prefix);
        out.set(bytes, prefix.length);
        await r.io.stdout(out);
      };
      try {
        // As the gearman tool does: WORK_DATA as it comes, then the result.
        if (!r.background) {
          for await (const u of job) if (u.type === "data") await print(u.data.bytes);
        }
        const result = await job.result;
        if (r.background) continue;
        await print(result.bytes);
      } catch (err) {
        failed++;
        r.io.stderr(`gearman: ${(err as Error).message}`);
      }
    }
  }
  return failed > 0 ? 1 : 0;
}

interface WorkerRun {
  count: number;
  perLine: "keep" | "strip" | undefined;
  verbose: boolean;
  io: CliIo;
}

async function runWorker(
  server: string,
  functions: string[],
  command: string[],
  r: WorkerRun,
): Promise<number> {
  if (command.length > 0) {
    const status = await Deno.permissions.query({ name: "run", command: command[0]! });
    if (status.state !== "granted") {
      throw new Error(
        `worker mode runs "${command[0]}" for each job: grant it with --allow-run (or -A)`,
      );
    }
  }
  const worker = new Worker({ servers: [server] });
  let done = 0;
  const finished = Promise.withResolvers<void>();
  const handler = async (job: WorkerJob): Promise<Uint8Array | undefined> => {
    try {
      if (r.verbose) r.io.stderr(`gearman: job ${job.handle} of ${job.function}`);
      if (command.length === 0) {
        await r.io.stdout(job.data);
        return undefined;
      }
      const child = new Deno.Command(command[0]!, {
        args: command.slice(1),
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
        signal: job.signal,
      }).spawn();
      const writer = child.stdin.getWriter();
      await writer.write(job.data).catch(() => {});
      await writer.close().catch(() => {});
      const output = await readAll(child.stdout);
      const status = await child.status;
      if (!status.success) {
        throw new Error(`command "${command.join(" ")}" exited with code ${status.code}`);
      }
      if (r.perLine) {
        for (const line of splitLines(output, r.perLine === "strip")) job.sendData(line);
        return undefined;
      }
      return output;
    } finally {
      done++;
      if (r.count > 0 && done >= r.count) finished.resolve();
    }
  };
  for (const fn of functions) worker.register(fn, handler);
  const stop = () => finished.resolve();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, stop);
  try {
    worker.start();
    await finished.promise;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, stop);
    await worker.stop();
  }
  return 0;
}

async function runAdmin(
  server: string,
  o: Record<string, unknown>,
  io: CliIo,
  timeoutMs: number,
): Promise<number> {
  await using admin = await AdminClient.connect(server, timeoutMs > 0 ? { timeoutMs } : {});
  const enc = new TextEncoder();
  const print = (text: string) => io.stdout(enc.encode(text));
  const listing = async (cmd: string) => {
    const lines = await admin.command(cmd);
    await print(lines.map((l) => l + "\n").join("") + ".\n");
  };
  if (o.status) await listing("status");
  if (o["priority-status"]) await listing("prioritystatus");
  if (o.workers) await listing("workers");
  if (o["show-jobs"]) await listing("show jobs");
  if (o["show-unique-jobs"]) await listing("show unique jobs");
  if (o["server-version"]) await print(`${await admin.version()}\n`);
  if (o.getpid) await print(`${await admin.getpid()}\n`);
  for (const f of (o["create-function"] as string[] | undefined) ?? []) {
    await admin.createFunction(f);
    await print("OK\n");
  }
  for (const f of (o["drop-function"] as string[] | undefined) ?? []) {
    await admin.dropFunction(f);
    await print("OK\n");
  }
  for (const h of (o["cancel-job"] as string[] | undefined) ?? []) {
    await admin.cancelJob(h);
    await print("OK\n");
  }
  if (o.shutdown) {
    await admin.shutdown();
    await print("OK\n");
  }
  return 0;
}
