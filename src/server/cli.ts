// The `server.ts` command line: parse flags, configure logging, serve,
// stop cleanly on SIGINT/SIGTERM.

import { parseArgs } from "node:util";
import { configure, getConsoleSink, type LogLevel } from "@logtape/logtape";
import { DEFAULT_PORT, serve } from "./gearman_server.ts";
import type { AdminReadAccess } from "./admin_commands.ts";
import type { JobStore } from "./store/job_store.ts";
import type { TlsAccessRules } from "./tls_access.ts";
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
  --store SPEC         where background jobs are kept: memory, sqlite:PATH, or
                       postgres://USER:PASSWORD@HOST:PORT/DATABASE (committed before
                       JOB_CREATED; sqlite: replayed on restart, needs --allow-read and
                       --allow-write for PATH's directory; postgres: one queue shared
                       by every server on that database, needs --allow-env) (default memory)
  --cluster-lease S    postgres: seconds without a heartbeat before other servers take
                       the jobs a server held (default 10)
  --store-sync MODE    normal (survives kill -9) or full (also power loss) (default normal)
  --max-memory-jobs N  with a store: queued jobs kept in memory; the rest wait on disk
                       and are paged in as workers drain (default 1000000)
  --gloom              also speak Gloom (length-prefixed JSON) to masters and workers
  --gloom-master-port PORT  port for Gloom masters; implies --gloom (default 9998)
  --gloom-worker-port PORT  port for Gloom workers; implies --gloom (default 9999)
  --gloom-max-frame-size N  largest Gloom frame accepted, in bytes (default 16777216)
  --gloom-tls          Gloom ports over TLS with the --tls-cert/--tls-key certificate;
                       implies --gloom
  --http [HOST:]PORT   serve /metrics, /healthz, /readyz, a JSON API and a dashboard over
                       HTTP on this address (HOST defaults to 127.0.0.1) (default off)
  --http-tls           serve --http over HTTPS with the --tls-cert/--tls-key certificate
  --admin-token TOKEN  token for state-changing admin commands from other hosts (send
                       'auth TOKEN') and the HTTP API's (header 'Authorization: Bearer
                       TOKEN'); use a long random one, e.g. openssl rand -hex 32 (default none)
  --admin-read WHO     who may run read-only admin commands (status, workers, show ...):
                       any, loopback (or token holders), or token (then every admin
                       command needs 'auth TOKEN', from loopback too) (default any)
  --drain-timeout S    on SIGTERM or "shutdown graceful": seconds running jobs may take
                       to finish before the server stops anyway (default 30)
  --max-client-jobs N  most foreground jobs one connection may wait on; 0 = unlimited (default 0)
  --max-connections N  most connections open at once; 0 = unlimited (default 0)
  --idle-timeout S     close connections silent for S seconds with no job pending; 0 = never
                       (default 0)
  --tls-cert FILE      serve the Gearman port over TLS with this PEM certificate chain
  --tls-key FILE       ... and this PEM private key (both needed; needs --allow-read)
  --tls-ca FILE        require client certificates signed by this PEM CA (mutual TLS)
  --tls-access FILE    JSON rules by client certificate name (CN, or a DNS, URI or
                       email subject alternative name): which functions each may
                       submit and work on, and admin access (needs --tls-ca);
                       SIGHUP reads it again
  --tls-crl FILE       refuse client certificates this PEM CRL of the --tls-ca CA
                       revokes (needs --tls-ca); SIGHUP reads it again
  -h, --help           print this help and exit
  -V, --version        print the version and exit
`;

/** A `--store` naming a Postgres database. */
const POSTGRES_URL = /^postgres(ql)?:\/\/.+/;

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
  /** Postgres: lease of a server's held jobs, in ms. */
  clusterLeaseMs: number;
  storeSync: "normal" | "full";
  maxMemoryJobs: number;
  drainTimeoutMs: number;
  maxClientJobs: number;
  tlsCert: string | undefined;
  maxConnections: number;
  idleTimeoutMs: number;
  tlsKey: string | undefined;
  /** CA file for client certificates (mutual TLS). */
  tlsCa: string | undefined;
  /** Access rules file (JSON) by client certificate name. */
  tlsAccess: string | undefined;
  /** Certificate revocation list file (PEM) for client certificates. */
  tlsCrl: string | undefined;
  /** Gloom listeners, when --gloom or a --gloom-* flag was given. */
  gloom: { masterPort: number; workerPort: number; maxFrameSize: number; tls: boolean } | undefined;
  /** HTTP endpoint, when --http was given (`tls`: HTTPS, --http-tls). */
  http: { hostname: string; port: number; tls: boolean } | undefined;
  /** Admin token: remote state-changing admin commands and the HTTP API's. */
  adminToken: string | undefined;
  /** Who may run read-only admin commands. */
  adminRead: AdminReadAccess;
}

/**
 * Re-read `file` (given with `flag`) and `apply` it (SIGHUP); say on
 * stderr what happened: `apply`'s description of what is now in force, or
 * why the old state (`kept`) stays.
 */
async function reload(
  flag: string,
  file: string,
  kept: string,
  apply: (text: string) => string,
): Promise<void> {
  try {
    console.error(`reloaded ${flag} ${file}: ${apply(await Deno.readTextFile(file))}`);
  } catch (err) {
    console.error(
      `error: cannot reload ${flag} ${file}: ${
        (err as Error).message
      }; ${kept} (fix the file and send SIGHUP again)`,
    );
  }
}

/** Parse `--http [HOST:]PORT` (an IPv6 HOST in brackets). */
function httpFlag(value: string | undefined): ServerFlags["http"] {
  if (value === undefined) return undefined;
  const m = /^(?:(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):)?(\d+)$/.exec(value);
  if (m === null || Number(m[2]) > 65535) {
    throw new UsageError(
      `--http must be [HOST:]PORT (e.g. 127.0.0.1:8080, [::1]:8080 or 8080), got "${value}"`,
    );
  }
  const host = m[1] ?? "127.0.0.1";
  return { hostname: host.replace(/^\[(.*)\]$/, "$1"), port: Number(m[2]), tls: false };
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
        "cluster-lease": { type: "string" },
        "store-sync": { type: "string" },
        "max-memory-jobs": { type: "string" },
        "drain-timeout": { type: "string" },
        "max-client-jobs": { type: "string" },
        "tls-cert": { type: "string" },
        "max-connections": { type: "string" },
        "idle-timeout": { type: "string" },
        "tls-key": { type: "string" },
        "tls-ca": { type: "string" },
        "tls-crl": { type: "string" },
        "tls-access": { type: "string" },
        gloom: { type: "boolean" },
        "http-tls": { type: "boolean" },
        "gloom-master-port": { type: "string" },
        "gloom-worker-port": { type: "string" },
        "gloom-max-frame-size": { type: "string" },
        "gloom-tls": { type: "boolean" },
        http: { type: "string" },
        "admin-token": { type: "string" },
        "admin-read": { type: "string" },
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
  if (store !== "memory" && !/^sqlite:.+/.test(store) && !POSTGRES_URL.test(store)) {
    throw new UsageError(
      `--store must be "memory", "sqlite:PATH" or "postgres://USER@HOST:PORT/DATABASE", got "${store}"`,
    );
  }
  const clusterLease = values["cluster-lease"] ?? "10";
  const clusterLeaseMs = Math.round(Number(clusterLease) * 1000);
  if (!/^\d+(\.\d+)?$/.test(clusterLease) || clusterLeaseMs < 500 || clusterLeaseMs > 3_600_000) {
    throw new UsageError(
      `--cluster-lease must be a number of seconds from 0.5 to 3600, got "${clusterLease}"`,
    );
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
  const gloomFlags = ["gloom-master-port", "gloom-worker-port", "gloom-max-frame-size"] as const;
  let gloom: ServerFlags["gloom"];
  if (values.gloom || values["gloom-tls"] || gloomFlags.some((f) => values[f] !== undefined)) {
    gloom = {
      masterPort: integerFlag("gloom-master-port", values["gloom-master-port"], 9998, 65535),
      workerPort: integerFlag("gloom-worker-port", values["gloom-worker-port"], 9999, 65535),
      maxFrameSize: integerFlag(
        "gloom-max-frame-size",
        values["gloom-max-frame-size"],
        16 << 20,
        0xffffffff,
      ),
      tls: values["gloom-tls"] ?? false,
    };
    if (gloom.maxFrameSize === 0) throw new UsageError("--gloom-max-frame-size must be at least 1");
    if (gloom.tls && values["tls-cert"] === undefined) {
      throw new UsageError(
        "--gloom-tls needs --tls-cert and --tls-key (the certificate it serves)",
      );
    }
  }
  const http = httpFlag(values.http);
  if (values["http-tls"]) {
    if (http === undefined) throw new UsageError("--http-tls needs --http [HOST:]PORT");
    if (values["tls-cert"] === undefined) {
      throw new UsageError("--http-tls needs --tls-cert and --tls-key (the certificate it serves)");
    }
    http.tls = true;
  }
  const adminToken = values["admin-token"];
  if (adminToken !== undefined && !/^[\x21-\x7e]+$/.test(adminToken)) {
    throw new UsageError(
      "--admin-token must be visible ASCII characters with no spaces (try: openssl rand -hex 32)",
    );
  }
  const adminRead = values["admin-read"] ?? "any";
  if (adminRead !== "any" && adminRead !== "loopback" && adminRead !== "token") {
    throw new UsageError(`--admin-read must be any, loopback or token, got "${adminRead}"`);
  }
  if (adminRead === "token" && adminToken === undefined) {
    throw new UsageError(
      "--admin-read token needs --admin-token TOKEN (or use --admin-read loopback)",
    );
  }
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined)) {
    throw new UsageError("--tls-cert and --tls-key go together: give both");
  }
  if (values["tls-ca"] !== undefined && values["tls-cert"] === undefined) {
    throw new UsageError("--tls-ca needs --tls-cert and --tls-key (the server's own certificate)");
  }
  if (values["tls-crl"] !== undefined && values["tls-ca"] === undefined) {
    throw new UsageError("--tls-crl needs --tls-ca: it revokes client certificates that CA signed");
  }
  if (values["tls-access"] !== undefined && values["tls-ca"] === undefined) {
    throw new UsageError(
      "--tls-access needs --tls-ca: the names it lists come from client certificates the CA signed",
    );
  }
  return {
    tlsCert: values["tls-cert"],
    maxConnections: integerFlag("max-connections", values["max-connections"], 0, 2 ** 31),
    idleTimeoutMs: integerFlag("idle-timeout", values["idle-timeout"], 0, 86400 * 365) * 1000,
    tlsKey: values["tls-key"],
    tlsCa: values["tls-ca"],
    tlsCrl: values["tls-crl"],
    tlsAccess: values["tls-access"],
    drainTimeoutMs: integerFlag("drain-timeout", values["drain-timeout"], 30, 86400) * 1000,
    maxClientJobs: integerFlag("max-client-jobs", values["max-client-jobs"], 0, 2 ** 31),
    http,
    adminToken,
    adminRead,
    gloom,
    maxMemoryJobs,
    store,
    clusterLeaseMs,
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
  let tls:
    | { cert: string; key: string; ca?: string; access?: TlsAccessRules; crl?: string }
    | undefined;
  if (flags.tlsCert !== undefined && flags.tlsKey !== undefined) {
    const files = [flags.tlsCert, flags.tlsKey, flags.tlsCa, flags.tlsCrl, flags.tlsAccess].filter((
      f,
    ) => f !== undefined);
    try {
      tls = {
        cert: await Deno.readTextFile(flags.tlsCert),
        key: await Deno.readTextFile(flags.tlsKey),
        ...(flags.tlsCa !== undefined ? { ca: await Deno.readTextFile(flags.tlsCa) } : {}),
        ...(flags.tlsCrl !== undefined ? { crl: await Deno.readTextFile(flags.tlsCrl) } : {}),
      };
    } catch (err) {
      console.error(
        `error: cannot read the TLS files (${files.join(", ")}): ${
          (err as Error).message
        }; check the paths and run with --allow-read for them`,
      );
      return 1;
    }
    if (flags.tlsAccess !== undefined) {
      try {
        tls.access = JSON.parse(await Deno.readTextFile(flags.tlsAccess));
      } catch (err) {
        console.error(
          `error: cannot use --tls-access ${flags.tlsAccess}: ${
            (err as Error).message
          }; it must be readable (--allow-read) JSON like {"alice": {"submit": ["reverse"], "work": [], "admin": "read"}}`,
        );
        return 1;
      }
    }
  }
  let store: string | JobStore = flags.store;
  /** The Postgres store, to rename once the port is known. */
  let cluster: { rename(name: string): Promise<void> } | undefined;
  if (POSTGRES_URL.test(flags.store)) {
    try {
      // Loaded only for a cluster: the client costs memory a server without it does not need.
      const { PostgresJobStore } = await import("./store/postgres_store.ts");
      const opened = await PostgresJobStore.open(flags.store, {
        name: `${flags.handleHost ?? flags.hostname}:${flags.port}`,
        leaseMs: flags.clusterLeaseMs,
      });
      store = cluster = opened;
    } catch (err) {
      console.error(`error: ${(err as Error).message}`);
      return 1;
    }
  }
  let server;
  try {
    server = serve({
      ...(tls ? { tls } : {}),
      maxConnections: flags.maxConnections,
      idleTimeoutMs: flags.idleTimeoutMs,
      hostname: flags.hostname,
      port: flags.port,
      jobRetries: flags.jobRetries,
      maxQueue: flags.maxQueue,
      maxPacketSize: flags.maxPacketSize,
      ...(flags.handleHost !== undefined ? { handleHost: flags.handleHost } : {}),
      store,
      storeSync: flags.storeSync,
      maxMemoryJobs: flags.maxMemoryJobs,
      drainTimeoutMs: flags.drainTimeoutMs,
      maxClientJobs: flags.maxClientJobs,
      ...(flags.gloom !== undefined ? { gloom: flags.gloom } : {}),
      ...(flags.http !== undefined ? { http: flags.http } : {}),
      ...(flags.adminToken !== undefined ? { adminToken: flags.adminToken } : {}),
      adminRead: flags.adminRead,
    });
  } catch (err) {
    if (err instanceof Deno.errors.AddrInUse && err.message.includes("HTTP")) {
      console.error(`error: ${err.message}; stop the other server or pass another --http port`);
    } else if (err instanceof Deno.errors.AddrInUse && err.message.includes("Gloom")) {
      // The message names the Gloom port taken.
      const hint = "stop the other server or pass --gloom-master-port/--gloom-worker-port";
      console.error(`error: ${err.message}; ${hint}`);
    } else if (err instanceof Deno.errors.AddrInUse) {
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
    if (typeof store !== "string") await store.close();
    return 1;
  }
  const { hostname, port } = server.addr;
  if (cluster !== undefined && flags.port === 0) {
    // Named before the port was known: name it by the port it got.
    await cluster.rename(`${flags.handleHost ?? hostname}:${port}`).catch(() => {});
  }
  const show = (h: string, p: number) => `${h.includes(":") ? `[${h}]` : h}:${p}`;
  console.log(`listening on ${show(hostname, port)}`);
  const gloom = server.gloomAddrs;
  if (gloom) {
    console.log(
      `gloom masters on ${show(gloom.master.hostname, gloom.master.port)}, workers on ${
        show(gloom.worker.hostname, gloom.worker.port)
      }`,
    );
  }
  const http = server.httpAddr;
  if (http) console.log(`http on ${show(http.hostname, http.port)}`);
  // SIGTERM drains (running jobs finish, up to --drain-timeout); SIGINT, or a
  // second signal, stops at once.
  let signalled = false;
  const stopNow = () => void server.shutdown();
  const drain = () => {
    if (signalled) return stopNow();
    signalled = true;
    void server.shutdown({ graceful: true });
  };
  const onInt = () => stopNow();
  const handlers: [Deno.Signal, () => void][] = Deno.build.os === "windows"
    ? [["SIGINT", onInt]]
    : [["SIGINT", onInt], ["SIGTERM", drain]];
  const accessFile = flags.tlsAccess;
  const crlFile = flags.tlsCrl;
  if ((accessFile !== undefined || crlFile !== undefined) && Deno.build.os !== "windows") {
    // SIGHUP: read the --tls-access and --tls-crl files again; a bad one
    // leaves what was in force.
    handlers.push(["SIGHUP", () => {
      if (accessFile !== undefined) {
        void reload("--tls-access", accessFile, "the rules in force stay", (text) => {
          const rules = JSON.parse(text);
          server.setAccessRules(rules);
          return `${Object.keys(rules).length} name(s); open connections follow the new rules`;
        });
      }
      if (crlFile !== undefined) {
        void reload("--tls-crl", crlFile, "the list in force stays", (text) => {
          server.setRevocationList(text);
          return "new handshakes check it";
        });
      }
    }]);
  }
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);
  await server.finished;
  for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  return 0;
}
