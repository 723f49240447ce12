// The `server.ts` command line: parse flags, configure logging, serve,
// stop cleanly on SIGINT/SIGTERM.

import { parseArgs } from "node:util";
import { configure, getConsoleSink, type LogLevel } from "@logtape/logtape";
import { DEFAULT_PORT, serve } from "./gearman_server.ts";
import { VERSION } from "../version.ts";

const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** Usage text for `--help` and usage errors. */
export const USAGE: string = `Usage: deno run -N jsr:@x/gearman/server [options]

A Gearman job server. Speaks the Gearman binary protocol and the admin
text protocol on one port; every Gearman client and worker works with it.

Options:
  --host HOST          address to listen on (default 0.0.0.0)
  -p, --port PORT      port to listen on; 0 picks a free one (default ${DEFAULT_PORT})
  --log-level LEVEL    ${LOG_LEVELS.join(", ")} (default info)
  --job-retries N      fail a job after N workers died holding it; 0 = never (default 0)
  --max-queue N        most jobs queued per function and priority; 0 = unlimited (default 0)
  --max-packet-size N  largest packet body accepted, in bytes (default 67108864)
  --handle-host NAME   host part of job handles H:NAME:N (default: hostname, or "gearman")
  --store SPEC         where background jobs are kept: memory, or sqlite:PATH
                       (committed before JOB_CREATED, replayed on restart; needs
                       --allow-read and --allow-write for PATH's directory) (default memory)
  --store-sync MODE    normal (survives kill -9) or full (also power loss) (default normal)
  --max-memory-jobs N  with a store: queued jobs kept in memory; the rest wait on disk
                       and are paged in as workers drain (default 1000000)
  -h, --help           print this help and exit
  -V, --version        print the version and exit
`;

/** A bad command line: the message says what, and usage follows. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parsed server flags. */
export interface ServerFlags {
  help: boolean;
  version: boolean;
  hostname: string;
  port: number;
  logLevel: LogLevel;
  jobRetries: number;
  maxQueue: number;
  maxPacketSize: number;
  handleHost: string | undefined;
  store: string;
  storeSync: "normal" | "full";
  maxMemoryJobs: number;
}

function integerFlag(name: string, value: string | undefined, def: number, max: number): number {
  if (value === undefined) return def;
  if (!/^\d+$/.test(value) || Number(value) > max) {
    throw new UsageError(`--${name} must be an integer from 0 to ${max}, got "${value}"`);
  }
  return Number(value);
}

/** Parse the server's command line; throws UsageError when it is wrong. */
export function parseServerFlags(args: string[]): ServerFlags {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        host: { type: "string" },
        port: { type: "string", short: "p" },
        "log-level": { type: "string" },
        "job-retries": { type: "string" },
        "max-queue": { type: "string" },
        "max-packet-size": { type: "string" },
        "handle-host": { type: "string" },
        store: { type: "string" },
        "store-sync": { type: "string" },
        "max-memory-jobs": { type: "string" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const logLevel = (values["log-level"] ?? "info").toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(
      `--log-level must be one of ${LOG_LEVELS.join(", ")}, got "${values["log-level"]}"`,
    );
  }
  const maxPacketSize = integerFlag(
    "max-packet-size",
    values["max-packet-size"],
    64 << 20,
    0xffffffff,
  );
  if (maxPacketSize === 0) throw new UsageError("--max-packet-size must be at least 1");
  const store = values.store ?? "memory";
  if (store !== "memory" && !/^sqlite:.+/.test(store)) {
    throw new UsageError(`--store must be "memory" or "sqlite:PATH", got "${store}"`);
  }
  const storeSync = values["store-sync"] ?? "normal";
  if (storeSync !== "normal" && storeSync !== "full") {
    throw new UsageError(`--store-sync must be normal or full, got "${storeSync}"`);
  }
  const maxMemoryJobs = integerFlag(
    "max-memory-jobs",
    values["max-memory-jobs"],
    1_000_000,
    2 ** 31,
  );
  if (maxMemoryJobs === 0) throw new UsageError("--max-memory-jobs must be at least 1");
  return {
    maxMemoryJobs,
    store,
    storeSync,
    help: values.help ?? false,
    version: values.version ?? false,
    hostname: values.host ?? "0.0.0.0",
    port: integerFlag("port", values.port, DEFAULT_PORT, 65535),
    logLevel: logLevel as LogLevel,
    jobRetries: integerFlag("job-retries", values["job-retries"], 0, 65535),
    maxQueue: integerFlag("max-queue", values["max-queue"], 0, Number.MAX_SAFE_INTEGER),
    maxPacketSize,
    handleHost: values["handle-host"],
  };
}

/** Run the server command line; resolves with the process exit code. */
export async function runServerCli(args: string[]): Promise<number> {
  let flags: ServerFlags;
  try {
    flags = parseServerFlags(args);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`error: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (flags.help) {
    console.log(USAGE);
    return 0;
  }
  if (flags.version) {
    console.log(`gearman-deno ${VERSION}`);
    return 0;
  }
  await configure({
    sinks: { console: getConsoleSink() },
    loggers: [
      { category: ["gearman"], sinks: ["console"], lowestLevel: flags.logLevel },
      { category: ["logtape", "meta"], sinks: ["console"], lowestLevel: "warning" },
    ],
  });
  let server;
  try {
    server = serve({
      hostname: flags.hostname,
      port: flags.port,
      jobRetries: flags.jobRetries,
      maxQueue: flags.maxQueue,
      maxPacketSize: flags.maxPacketSize,
      ...(flags.handleHost !== undefined ? { handleHost: flags.handleHost } : {}),
      store: flags.store,
      storeSync: flags.storeSync,
      maxMemoryJobs: flags.maxMemoryJobs,
    });
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse) {
      console.error(
        `error: cannot listen on ${flags.hostname}:${flags.port}: the port is in use; stop the other server or pass --port`,
      );
    } else if (
      err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied
    ) {
      console.error(
        `error: cannot listen on ${flags.hostname}:${flags.port}: network permission denied; run with -N (--allow-net)`,
      );
    } else if ((err as Error).name === "StoreError") {
      console.error(`error: ${(err as Error).message}`);
    } else {
      console.error(`error: cannot start server: ${(err as Error).message}`);
    }
    return 1;
  }
  const { hostname, port } = server.addr;
  console.log(`listening on ${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`);
  const stop = () => void server.shutdown();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, stop);
  await server.finished;
  for (const s of signals) Deno.removeSignalListener(s, stop);
  return 0;
}
