// The Gearman server: accepts connections, frames their bytes, and hands
// packets to the dispatcher and admin lines to the admin commands.

import { getLogger, type Logger } from "@logtape/logtape";
import { Magic } from "../protocol/packet.ts";
import { PacketType } from "../protocol/packet_type.ts";
import { DEFAULT_MAX_PACKET_SIZE, type FramerSink } from "../protocol/packet_framer.ts";
import { byteString } from "../protocol/_bytes.ts";
import {
  addrText,
  Connection,
  type ConnectionOptions,
  DEFAULT_MAX_OUTBOX_BYTES,
} from "../transport/connection.ts";
import { AdminCommands, type AdminReadAccess } from "./admin_commands.ts";
import { Dispatcher, type DispatcherLog } from "./dispatcher.ts";
import type { Peer } from "./peer.ts";
import type { JobStore } from "./store/job_store.ts";
import { MemoryJobStore } from "./store/memory_store.ts";
import { SqliteJobStore } from "./store/sqlite_store.ts";
import { VERSION } from "../version.ts";
import { GloomFrontEnd } from "../gloom/front_end.ts";
import {
  DEFAULT_GLOOM_MASTER_PORT,
  DEFAULT_GLOOM_WORKER_PORT,
  DEFAULT_MAX_FRAME_SIZE,
} from "../gloom/frame.ts";
import { checkAdminToken, DEFAULT_HTTP_PORT, HttpFrontEnd } from "../http/http_server.ts";
import { Traffic } from "./traffic.ts";
import { acceptConnections, logAcceptFailures } from "../transport/accept_loop.ts";
import { type MutualTlsConn, MutualTlsUpgrader } from "../transport/mutual_tls.ts";
import {
  type ClientCertificates,
  compileAccessRules,
  type CompiledAccess,
  type TlsAccessRules,
  warnRefusedClient,
} from "./tls_access.ts";

/** The port IANA assigned to Gearman. */
export const DEFAULT_PORT = 4730;

/**
 * Options for {@link serve}.
 *
 * @example Listen on a free loopback port
 * ```ts
 * import { serve, type ServeOptions } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const options: ServeOptions = { hostname: "127.0.0.1", port: 0 };
 * await using server = serve(options);
 * assert.ok(server.addr.port > 0);
 * ```
 */
export interface ServeOptions {
  /**
   * Address to listen on.
   * @default "0.0.0.0"
   */
  hostname?: string;
  /**
   * Port to listen on; 0 picks a free one (read it back from `addr`).
   * @default 4730
   */
  port?: number;
  /**
   * Times a job is handed out to workers that die holding it before it is
   * failed (WORK_FAIL to its clients); 0 retries forever.
   * @default 0
   */
  jobRetries?: number;
  /**
   * Default most jobs queued per function and priority; 0 is unlimited.
   * The admin `maxqueue` command overrides it per function.
   * @default 0
   */
  maxQueue?: number;
  /**
   * Largest packet body accepted, in bytes; larger packets get an ERROR
   * and their connection is closed.
   * @default {64 MiB}
   */
  maxPacketSize?: number;
  /**
   * The host part of job handles (`H:<host>:<n>`).
   * @default the machine's hostname when readable, else "gearman"
   */
  handleHost?: string;
  /**
   * Where background and scheduled jobs are kept: `"memory"` (lost on
   * restart, like gearmand without a queue plugin) or `"sqlite:PATH"` (a
   * SQLite file: a job is committed before its JOB_CREATED is sent, and
   * replayed after a restart; needs --allow-read and --allow-write for
   * PATH's directory). Or a store already open, such as a
   * `PostgresJobStore` shared by a cluster of servers (open it with
   * `await PostgresJobStore.open(url)`, from `@x/gearman/postgres`); the
   * server closes it when it stops.
   * @default "memory"
   */
  store?: string | JobStore;
  /**
   * SQLite durability: `"normal"` survives the server being killed (kill
   * -9); `"full"` also survives a power cut, at a cost per commit.
   * @default "normal"
   */
  storeSync?: "normal" | "full";
  /**
   * With a durable store: queued jobs kept in memory. Past this, new
   * background jobs are kept only in the store and paged in as workers
   * drain, so a queue can grow far larger than memory.
   * @default 1000000
   */
  maxMemoryJobs?: number;
  /**
   * Also speak the Gloom protocol (length-prefixed JSON; see docs/GLOOM.md):
   * masters on `masterPort`, workers on `workerPort`, both on `hostname`
   * (0 picks a free port; read them back from {@link Server.gloomAddrs}).
   * Gloom job types are Gearman function names: both kinds of client and
   * worker share the queues. Frames over `maxFrameSize` bytes get an error
   * frame and their connection is closed. With `tls: true`, both ports
   * speak TLS with the server's `tls` certificate and key (clients pass
   * `tls: { caCerts }` to GloomMaster/GloomWorker.connect); with `tls.ca`
   * too, they ask for client certificates as the Gearman port does (same
   * CA and CRL), and `tls.access` rules apply: a master submits only job
   * types its certificate may submit and reads the status only with admin
   * "read"; a worker joins only job types it may work on.
   * @default undefined (no Gloom listeners); ports 9998 and 9999, maxFrameSize 16 MiB, tls false
   */
  gloom?: { masterPort?: number; workerPort?: number; maxFrameSize?: number; tls?: boolean };
  /**
   * Also serve HTTP on its own port (see docs/OBSERVABILITY.md): Prometheus
   * `/metrics`, `/healthz`, `/readyz`, a JSON API under `/api/` and a
   * dashboard at `/`. Read the bound address back from
   * {@link Server.httpAddr} (port 0 picks a free one).
   * With `tls: true`, HTTPS with the server's `tls` certificate and key
   * (so the admin token and the data are not sent in clear); with `tls.ca`
   * too, it asks for client certificates as the Gearman port does, and
   * `tls.access` rules decide: reading needs admin "read" or "all", the
   * state-changing endpoints admin "all" (or the admin token); /healthz and
   * /readyz are open to any verified client.
   * @default undefined (no HTTP); hostname "127.0.0.1", port 8080, tls false
   */
  http?: { hostname?: string; port?: number; tls?: boolean };
  /**
   * The admin token: visible ASCII, no spaces (use a long random one, e.g.
   * `openssl rand -hex 32`). With it, admin connections from other hosts
   * that send it (`auth TOKEN`) may run state-changing admin commands, and
   * the HTTP API's state-changing endpoints (cancel a job, drop a function,
   * set a queue limit, drain) accept `Authorization: Bearer TOKEN`; without
   * it those endpoints answer 403.
   * @default undefined (no token)
   */
  adminToken?: string;
  /**
   * Who may run the read-only admin commands (`status`, `workers`, `show
   * jobs`, ...) on the Gearman port: `"any"` host; `"loopback"` only (and
   * connections that sent the admin token); or `"token"`: only connections
   * that sent the admin token, from loopback too, and then every
   * state-changing command needs the token as well (needs `adminToken`).
   * Refusals are answered `ERR PERMISSION_DENIED ...` and logged. The HTTP
   * endpoint is not affected (it has its own address).
   * @default "any"
   */
  adminRead?: AdminReadAccess;
  /**
   * Serve the Gearman port over TLS with this certificate chain and key
   * (PEM text). Clients connect with TLS (`tls` option of Client, Worker,
   * AdminClient; `openssl s_client`).
   *
   * With `ca` (PEM), every client must present a certificate that chains
   * to it (mutual TLS): a client with none, or one the CA did not sign,
   * fails the handshake (logged). With `access` too (needs `ca`), what
   * each certificate name (its CN, or a DNS, URI or email subject
   * alternative name) may do is limited by those rules: submitting to functions, registering as a worker,
   * admin commands; refused requests get an ERROR packet
   * (`PERMISSION_DENIED`) or admin line and are logged. Loopback is not
   * trusted for admin commands then. With `crl` (PEM CRLs of those CAs, each
   * signed by the CA that issued it; needs `ca`), client certificates the CRL
   * of their issuer revokes are refused at the handshake.
   * @default undefined (plain TCP)
   */
  tls?: { cert: string; key: string; ca?: string; access?: TlsAccessRules; crl?: string };
  /**
   * Most connections open at once on the Gearman port; past it, new ones are
   * closed at once (and logged). 0 is unlimited.
   * @default 0
   */
  maxConnections?: number;
  /**
   * Replies waiting for a connection past which the server stops reading
   * it until the peer takes them (backpressure: a peer that sends and never
   * reads cannot grow the server's memory).
   * @default {8 MiB}
   */
  maxOutboxBytes?: number;
  /**
   * Close a connection that has sent nothing for this long and has no job
   * pending (none held as a worker, none waited on as a client), in
   * milliseconds; 0 never does.
   * @default 0
   */
  idleTimeoutMs?: number;
  /**
   * Most foreground jobs one connection may wait on at once (ERROR
   * TOO_MANY_JOBS past it); 0 is unlimited.
   * @default 0
   */
  maxClientJobs?: number;
  /**
   * How long a graceful shutdown (admin `shutdown graceful`, SIGTERM from
   * the CLI, `POST /api/drain`) waits for running jobs, in milliseconds.
   * @default 30000
   */
  drainTimeoutMs?: number;
  /** Aborting it shuts the server down (not gracefully). */
  signal?: AbortSignal;
}

/**
 * Open the store a `store` option names.
 *
 * @throws {TypeError} When the option is not `memory` or `sqlite:PATH`.
 * @throws {StoreError} When the SQLite file cannot be used.
 */
function openStore(spec: string | JobStore, sync: "normal" | "full"): JobStore {
  if (typeof spec !== "string") return spec;
  if (spec === "memory") return new MemoryJobStore();
  if (spec.startsWith("sqlite:") && spec.length > "sqlite:".length) {
    return SqliteJobStore.open(spec.slice("sqlite:".length), { sync });
  }
  if (/^postgres(ql)?:\/\//.test(spec)) {
    throw new TypeError(
      "Cannot start server: a Postgres store is opened asynchronously: pass `store: await PostgresJobStore.open(url)`",
    );
  }
  throw new TypeError(
    `Cannot start server: store must be "memory" or "sqlite:PATH", received ${
      JSON.stringify(spec)
    }`,
  );
}

/**
 * Options for {@link Server.shutdown}.
 *
 * @example Drain before stopping
 * ```ts
 * import { serve, type ShutdownOptions } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const server = serve({ hostname: "127.0.0.1", port: 0 });
 * const options: ShutdownOptions = { graceful: true };
 * await server.shutdown(options);
 * assert.equal(await server.finished, undefined);
 * ```
 */
export interface ShutdownOptions {
  /**
   * Drain: stop accepting connections and handing out jobs, fail queued
   * foreground jobs (their clients get WORK_FAIL and can submit
   * elsewhere), keep background jobs queued (in the store, when durable),
   * let running jobs finish for up to `timeoutMs`, then close every
   * connection. Otherwise close everything now.
   * @default false
   */
  graceful?: boolean;
  /**
   * With `graceful`: longest wait for running jobs, in milliseconds; after
   * it, the clients of jobs still running get WORK_FAIL and the server
   * stops (durable background jobs run again after a restart).
   * @default the server's drainTimeoutMs (30000)
   */
  timeoutMs?: number;
}

/** How long a graceful shutdown waits for running jobs by default. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

function defaultHandleHost(): string {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted") {
      return Deno.hostname();
    }
  } catch { /* no permission API: fall through */ }
  return "gearman";
}

function logAdapter(logger: Logger): DispatcherLog {
  return {
    debug: (m, p) => logger.debug(m, p),
    info: (m, p) => logger.info(m, p),
    warn: (m, p) => logger.warn(m, p),
    error: (m, p) => logger.error(m, p),
  };
}

/**
 * A running Gearman job server. Made by {@link serve}.
 *
 * @example Start, check the port, stop
 * ```ts
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const server = serve({ hostname: "127.0.0.1", port: 0 });
 * assert.equal(server.addr.hostname, "127.0.0.1");
 * await server.shutdown();
 * ```
 */
export class Server implements AsyncDisposable {
  readonly #listener: Deno.Listener<Deno.TcpConn> | Deno.TlsListener;
  /** Client certificates (mutual TLS: tls.ca) and their access rules. */
  readonly #clientCerts: ClientCertificates | undefined;
  /** Mutual-TLS handshakes under way (closed on shutdown). */
  readonly #handshaking = new Set<Deno.TcpConn>();
  readonly #gloom: GloomFrontEnd | undefined;
  readonly #dispatcher: Dispatcher;
  readonly #store: JobStore;
  readonly #admin: AdminCommands;
  readonly #logger: Logger = getLogger(["gearman", "server"]);
  /** Open Gearman connections and their peers. */
  readonly #peers = new Map<Connection, Peer>();
  readonly #handlers: PeerHandlers;
  readonly #connectionOptions: ConnectionOptions;
  readonly #maxConnections: number;
  readonly #maxOutboxBytes: number;
  readonly #idleTimeoutMs: number;
  #idleSweep: ReturnType<typeof setInterval> | undefined;
  readonly #maxPacketSize: number;
  readonly #finished: PromiseWithResolvers<void> = Promise.withResolvers();
  readonly #http: HttpFrontEnd | undefined;
  readonly #traffic: Traffic = new Traffic();
  #accepting = true;
  #stopping = false;
  #done = false;

  /**
   * Start listening. Use {@link serve} to make one.
   *
   * @param options Listen and queue options.
   */
  constructor(options: ServeOptions = {}) {
    const {
      hostname = "0.0.0.0",
      port = DEFAULT_PORT,
      jobRetries = 0,
      maxQueue = 0,
      maxPacketSize = DEFAULT_MAX_PACKET_SIZE,
      handleHost = defaultHandleHost(),
      store = "memory",
      storeSync = "normal",
      maxMemoryJobs = 1_000_000,
      gloom,
      http,
      adminToken,
      adminRead = "any",
      signal,
      drainTimeoutMs = DEFAULT_DRAIN_TIMEOUT_MS,
      maxClientJobs = 0,
      tls,
      maxConnections = 0,
      idleTimeoutMs = 0,
      maxOutboxBytes = DEFAULT_MAX_OUTBOX_BYTES,
    } = options;
    checkInteger("maxOutboxBytes", maxOutboxBytes, 1024, 2 ** 31);
    this.#maxOutboxBytes = maxOutboxBytes;
    checkInteger("maxConnections", maxConnections, 0, 2 ** 31);
    checkInteger("idleTimeoutMs", idleTimeoutMs, 0, 2 ** 31 - 1);
    this.#maxConnections = maxConnections;
    this.#idleTimeoutMs = idleTimeoutMs;
    checkInteger("maxClientJobs", maxClientJobs, 0, 2 ** 31);
    checkInteger("drainTimeoutMs", drainTimeoutMs, 0, 2 ** 31 - 1);
    this.#drainTimeoutMs = drainTimeoutMs;
    checkInteger("port", port, 0, 65535);
    checkInteger("jobRetries", jobRetries, 0, 65535);
    checkInteger("maxQueue", maxQueue, 0, Number.MAX_SAFE_INTEGER);
    checkInteger("maxPacketSize", maxPacketSize, 1, 0xffffffff);
    checkInteger("maxMemoryJobs", maxMemoryJobs, 1, 2 ** 31);
    const {
      masterPort = DEFAULT_GLOOM_MASTER_PORT,
      workerPort = DEFAULT_GLOOM_WORKER_PORT,
      maxFrameSize = DEFAULT_MAX_FRAME_SIZE,
      tls: gloomTls = false,
    } = gloom ?? {};
    if (gloomTls && tls === undefined) {
      throw new TypeError(
        "Cannot start server: gloom.tls (--gloom-tls) needs tls.cert and tls.key (--tls-cert, --tls-key): the certificate the Gloom ports serve",
      );
    }
    checkInteger("gloom.masterPort", masterPort, 0, 65535);
    checkInteger("gloom.workerPort", workerPort, 0, 65535);
    checkInteger("gloom.maxFrameSize", maxFrameSize, 1, 0xffffffff);
    const {
      hostname: httpHostname = "127.0.0.1",
      port: httpPort = DEFAULT_HTTP_PORT,
      tls: httpTls = false,
    } = http ?? {};
    if (httpTls && tls === undefined) {
      throw new TypeError(
        "Cannot start server: http.tls (--http-tls) needs tls.cert and tls.key (--tls-cert, --tls-key): the certificate HTTPS serves",
      );
    }
    checkInteger("http.port", httpPort, 0, 65535);
    if (adminToken !== undefined) checkAdminToken(adminToken);
    if (tls?.crl !== undefined && tls.ca === undefined) {
      throw new TypeError(
        "Cannot start server: tls.crl (--tls-crl) needs tls.ca (--tls-ca): it revokes client certificates",
      );
    }
    if (tls?.access !== undefined && tls.ca === undefined) {
      throw new TypeError(
        "Cannot start server: tls.access (--tls-access) needs tls.ca (--tls-ca): names come from verified client certificates",
      );
    }
    const access = tls?.access === undefined
      ? undefined
      : compileAccessRules(tls.access, "tls.access (--tls-access)");
    if (adminRead !== "any" && adminRead !== "loopback" && adminRead !== "token") {
      throw new TypeError(
        `Cannot start server: adminRead must be "any", "loopback" or "token", received ${
          JSON.stringify(adminRead)
        }`,
      );
    }
    if (adminRead === "token" && adminToken === undefined) {
      throw new TypeError(
        'Cannot start server: adminRead "token" needs an adminToken; pass one (--admin-token) or use adminRead "loopback"',
      );
    }
    if (/[\s\0]/.test(handleHost) || handleHost === "") {
      throw new TypeError(
        `Cannot start server: handleHost must be non-empty with no spaces or NUL, received ${
          JSON.stringify(handleHost)
        }`,
      );
    }
    this.#maxPacketSize = maxPacketSize;
    this.#store = openStore(store, storeSync);
    this.#dispatcher = new Dispatcher({
      handleHost,
      jobRetries,
      maxQueue,
      log: logAdapter(this.#logger),
      store: this.#store,
      maxMemoryJobs,
      maxClientJobs,
    });
    const cluster = this.#store.cluster;
    if (cluster !== undefined) {
      // Lazily: asking for the servers keeps the cluster's figures refreshing.
      this.#logger.info(
        "Job store {store}: joined the cluster as server {id} ({servers} server(s) share this queue)",
        () => ({
          store: this.#store.description,
          id: cluster.serverId,
          servers: cluster.servers().length,
        }),
      );
    } else if (this.#store.durable) {
      const restored = this.#dispatcher.restoreFrom(this.#store);
      this.#logger.info("Job store {store}: restored {count} job(s)", {
        store: this.#store.description,
        count: restored,
      });
    }
    this.#connectionOptions = this.#makeConnectionOptions();
    this.#admin = new AdminCommands(this.#dispatcher, {
      version: VERSION,
      shutdown: (graceful) => void this.shutdown({ graceful }),
      logLevel: () => "INFO",
      adminToken,
      readAccess: adminRead,
      refused: (peer, command, why) =>
        this.#logger.warn("Refused admin command {command} from {remote}: {why}", {
          command,
          remote: peer.conn.remote,
          why,
        }),
    });
    this.#handlers = this.#makeHandlers();
    try {
      this.#clientCerts = tls?.ca === undefined ? undefined : {
        upgrader: new MutualTlsUpgrader({
          cert: tls.cert,
          key: tls.key,
          ca: tls.ca,
          ...(tls.crl !== undefined ? { crl: tls.crl } : {}),
        }),
        access,
      };
      this.#listener = tls && this.#clientCerts === undefined
        ? Deno.listenTls({ hostname, port, transport: "tcp", cert: tls.cert, key: tls.key })
        : Deno.listen({ hostname, port, transport: "tcp" });
    } catch (err) {
      this.#dispatcher.stop();
      this.#store.close();
      throw err;
    }
    try {
      this.#gloom = gloom === undefined ? undefined : new GloomFrontEnd(this.#dispatcher, {
        hostname,
        masterPort,
        workerPort,
        maxFrameSize,
        ...(gloomTls && tls !== undefined ? { tls: { cert: tls.cert, key: tls.key } } : {}),
        // With client certificates on the Gearman port, the Gloom ports ask for them too.
        ...(gloomTls && this.#clientCerts !== undefined ? { clientCerts: this.#clientCerts } : {}),
        onConnectionClosed: () => {
          if (this.#stopping) this.#maybeFinish();
        },
      });
    } catch (err) {
      this.#listener.close();
      this.#dispatcher.stop();
      this.#store.close();
      throw err;
    }
    try {
      this.#http = http === undefined ? undefined : new HttpFrontEnd({
        hostname: httpHostname,
        port: httpPort,
        ...(httpTls && tls !== undefined ? { tls: { cert: tls.cert, key: tls.key } } : {}),
        // With client certificates on the Gearman port, HTTPS asks for them too.
        ...(httpTls && this.#clientCerts !== undefined ? { clientCerts: this.#clientCerts } : {}),
        adminToken,
        server: {
          dispatcher: this.#dispatcher,
          version: VERSION,
          traffic: this.#traffic,
          address: () => this.addr,
          gloomAddrs: () => this.gloomAddrs,
          openConnections: () => this.#peers.size,
          bytes: () => this.#traffic.bytes(this.#peers.keys()),
          accepting: () => this.#accepting,
          draining: () => this.#stopping || this.#dispatcher.draining,
          storeOpen: () => !this.#done,
        },
        drain: () => void this.shutdown({ graceful: true }),
      });
    } catch (err) {
      this.#listener.close();
      this.#gloom?.close(false);
      this.#dispatcher.stop();
      this.#store.close();
      throw err;
    }
    if (signal) {
      if (signal.aborted) queueMicrotask(() => void this.shutdown());
      else signal.addEventListener("abort", () => void this.shutdown(), { once: true });
    }
    if (this.#idleTimeoutMs > 0) {
      this.#idleSweep = setInterval(
        () => this.#sweepIdle(),
        Math.max(50, Math.min(1000, this.#idleTimeoutMs / 4)),
      );
    }
    void this.#acceptLoop();
  }

  /** The address the server listens on. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr as Deno.NetAddr;
  }

  /**
   * Where the Gloom listeners are bound (masters, workers), or `undefined`
   * when the server was started without the `gloom` option.
   */
  get gloomAddrs(): { master: Deno.NetAddr; worker: Deno.NetAddr } | undefined {
    return this.#gloom?.addrs;
  }

  /**
   * Replace the certificate revocation list (`tls.crl`, `--tls-crl`):
   * handshakes from now on refuse the client certificates it revokes
   * (connections open now stay). A text with no CRL, a damaged one, or
   * one not signed by one of the `tls.ca` CAs throws and changes nothing.
   * The CLI calls this on SIGHUP.
   *
   * @param crl One or more PEM CRL blocks (`openssl ca -gencrl`).
   * @throws {TypeError} When the server does not use mutual TLS (`tls.ca`).
   * @throws {RevocationListError} When the text holds no usable CRL.
   *
   * @example
   * ```ts ignore
   * server.setRevocationList(await Deno.readTextFile("/etc/gearman/crl.pem"));
   * ```
   */
  setRevocationList(crl: string): void {
    if (this.#clientCerts === undefined) {
      throw new TypeError(
        "Cannot use a revocation list: the server does not require client certificates (tls.ca, --tls-ca)",
      );
    }
    this.#clientCerts.upgrader.setRevocationList(crl);
  }

  /**
   * Replace the mutual-TLS access rules (`tls.access`, `--tls-access`):
   * connections open now and those to come follow the new rules at their
   * next request. Bad rules throw and leave the rules in force unchanged.
   * The CLI calls this on SIGHUP with the re-read `--tls-access` file.
   *
   * @param rules The new rules, as for `tls.access`.
   * @throws {TypeError} When the rules are malformed, or the server was not
   *   started with `tls.access`.
   *
   * @example Let a frontend submit one more function
   * ```ts ignore
   * server.setAccessRules({ frontend: { submit: ["resize", "thumb.*"] }, ops: { admin: "all" } });
   * ```
   */
  setAccessRules(rules: TlsAccessRules): void {
    const certs = this.#clientCerts;
    if (certs?.access === undefined) {
      throw new TypeError(
        "Cannot change access rules: the server was started without tls.access (--tls-access); restart it with rules",
      );
    }
    // The HTTPS endpoint looks the rules up per request; connections keep theirs.
    const lookup = compileAccessRules(rules, "tls.access (--tls-access)");
    certs.access = lookup;
    for (const peer of this.#peers.values()) {
      if (peer.certNames !== undefined) peer.access = lookup(peer.certNames);
    }
    this.#gloom?.refreshAccess();
  }

  /**
   * Where the HTTP endpoint listens, or `undefined` when the server was
   * started without the `http` option.
   */
  get httpAddr(): Deno.NetAddr | undefined {
    return this.#http?.addr;
  }

  /** Resolves once the server has stopped and every connection is closed. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** Open connections. */
  get connectionCount(): number {
    return this.#peers.size;
  }

  #acceptLoop(): Promise<void> {
    return acceptConnections<Deno.TcpConn | Deno.TlsConn>(this.#listener, {
      connection: (conn) => {
        if (this.#clientCerts === undefined) this.#accept(conn);
        else this.#handshake(this.#clientCerts.upgrader, conn as Deno.TcpConn);
      },
      failed: logAcceptFailures(this.#logger, "a Gearman connection"),
      closing: () => !this.#accepting,
    });
  }

  /** Mutual TLS: verify the client's certificate, then accept. */
  #handshake(upgrader: MutualTlsUpgrader, conn: Deno.TcpConn): void {
    if (this.#stopping || this.#overLimit(conn)) {
      try {
        conn.close();
      } catch { /* already gone */ }
      return;
    }
    try {
      conn.setNoDelay(true);
    } catch { /* not TCP */ }
    this.#handshaking.add(conn);
    const remote = addrText(conn.remoteAddr);
    upgrader.upgrade(conn).then(
      (tlsConn) => {
        this.#handshaking.delete(conn);
        this.#accept(tlsConn);
        if (this.#stopping) this.#maybeFinish();
      },
      (err: Error) => {
        this.#handshaking.delete(conn);
        this.#traffic.refused++;
        warnRefusedClient(this.#logger, "a TLS connection", remote, err, this.#stopping);
        if (this.#stopping) this.#maybeFinish();
      },
    );
  }

  /** Past --max-connections (handshakes under way count): refuse and log. */
  #overLimit(conn: Deno.Conn | MutualTlsConn): boolean {
    const open = this.#peers.size + this.#handshaking.size;
    if (this.#maxConnections === 0 || open < this.#maxConnections) return false;
    this.#traffic.refused++;
    this.#logger.warn(
      "Refused a connection from {remote}: {open} connections are open, the most allowed (--max-connections)",
      { remote: addrText(conn.remoteAddr), open },
    );
    return true;
  }

  #accept(conn: Deno.TcpConn | Deno.TlsConn | MutualTlsConn): void {
    if (this.#stopping) {
      this.#traffic.refused++;
      conn.close();
      return;
    }
    if (!("peerName" in conn) && this.#overLimit(conn)) {
      try {
        conn.close();
      } catch { /* already gone */ }
      return;
    }
    this.#traffic.accepted++;
    try {
      if ("setNoDelay" in conn) conn.setNoDelay(true);
    } catch { /* not TCP */ }
    const sink = new PeerSink(this.#handlers);
    const connection = new Connection(conn, sink, this.#connectionOptions);
    const peer = this.#dispatcher.addPeer(connection);
    sink.peer = peer;
    if ("peerName" in conn) {
      peer.certName = conn.peerName;
      peer.certNames = conn.peerNames;
      peer.access = this.#clientCerts?.access?.(conn.peerNames);
    }
    this.#peers.set(connection, peer);
    this.#logger.debug("Accepted connection {id} from {remote}", () => ({
      id: peer.id,
      remote: connection.remote,
    }));
    void connection.run();
  }

  /** A connection ended (its options' onEnd): forget it. */
  #ended(connection: Connection, err: Error | undefined): void {
    const peer = this.#peers.get(connection);
    if (peer === undefined) return;
    if (err && !(err.name === "ProtocolError")) {
      this.#logger.debug("Connection {id} ended: {error}", { id: peer.id, error: err.message });
    }
    this.#dispatcher.removePeer(peer);
    this.#peers.delete(connection);
    this.#traffic.closed(connection);
    if (this.#stopping) this.#maybeFinish();
  }

  /**
   * What every Gearman connection's packets and admin lines go to (one
   * object for all, so a connection costs no closures of its own).
   */
  #makeHandlers(): PeerHandlers {
    const d = this.#dispatcher;
    const admin = this.#admin;
    return {
      packet: (peer, type, body, magic) => {
        // With --tls-access rules (peer.access), check the packet first.
        if (peer.access === undefined || this.#permitted(peer, peer.access, type, body)) {
          d.packet(peer, type, body, magic);
        }
      },
      line: (peer, line) => {
        const connection = peer.conn;
        const reply = admin.reply(peer, byteString(line));
        if (typeof reply === "string") {
          connection.out().byteString(reply);
          return;
        }
        // Answered by the cluster's database: the answer keeps its place, so replies stay in order.
        const held = connection.holdReply();
        void reply.then(
          (r) => held.out.byteString(r),
          (err: Error) =>
            held.out.byteString(`ERR CLUSTER_ERROR ${encodeURIComponent(err.message)}\r\n`),
        ).finally(() => connection.releaseReply(held));
      },
    };
  }

  /** The options of every Gearman connection (one object for all). */
  #makeConnectionOptions(): ConnectionOptions {
    // Unread output allowed: the usual backpressure slack, and one largest packet.
    const maxBacklog = this.#maxOutboxBytes * 4 + this.#maxPacketSize;
    return {
      text: true,
      maxPacketSize: this.#maxPacketSize,
      maxOutboxBytes: this.#maxOutboxBytes,
      maxBacklogBytes: maxBacklog,
      onOverflow: (backlog, connection) =>
        this.#logger.warn(
          "Closing connection from {remote}: {backlog} bytes of replies wait for it to read (limit {limit}); a client that never reads cannot hold server memory",
          { remote: connection.remote, backlog, limit: maxBacklog },
        ),
      onEnd: (connection, err) => this.#ended(connection, err),
      onProtocolError: (err, connection) => {
        this.#logger.warn("Closing connection from {remote}: {error}", {
          remote: connection.remote,
          error: err.message,
        });
        connection.out().begin(Magic.RES, PacketType.ERROR).byteString(err.code).nul()
          .text(err.message).end();
      },
    };
  }

  /** With --tls-access: whether `peer` may send this packet; if not, say so and log it. */
  #permitted(peer: Peer, access: CompiledAccess, type: number, body: Uint8Array): boolean {
    const T = PacketType;
    let what: "submit jobs to" | "register as a worker for";
    switch (type) {
      case T.SUBMIT_JOB:
      case T.SUBMIT_JOB_BG:
      case T.SUBMIT_JOB_HIGH:
      case T.SUBMIT_JOB_HIGH_BG:
      case T.SUBMIT_JOB_LOW:
      case T.SUBMIT_JOB_LOW_BG:
      case T.SUBMIT_JOB_SCHED:
      case T.SUBMIT_JOB_EPOCH:
      case T.SUBMIT_REDUCE_JOB:
      case T.SUBMIT_REDUCE_JOB_BACKGROUND:
        what = "submit jobs to";
        break;
      case T.CAN_DO:
      case T.CAN_DO_TIMEOUT:
        what = "register as a worker for";
        break;
      default:
        return true;
    }
    const nul = body.indexOf(0);
    const fn = byteString(nul < 0 ? body : body.subarray(0, nul));
    if (what === "submit jobs to" ? access.maySubmit(fn) : access.mayWork(fn)) return true;
    const message =
      `Certificate "${access.name}" may not ${what} function "${fn}" (--tls-access); ask the server's operator to add it`;
    this.#logger.warn("Refused {remote}: {message}", { remote: peer.conn.remote, message });
    peer.conn.out().begin(Magic.RES, PacketType.ERROR).byteString("PERMISSION_DENIED").nul()
      .text(message).end();
    return false;
  }

  #maybeFinish(): void {
    if (this.#handshaking.size > 0) return;
    if (this.#peers.size === 0 && (this.#gloom?.connectionCount ?? 0) === 0) this.#finish();
  }

  /** Close connections that sent nothing for the idle timeout and have no job pending. */
  #sweepIdle(): void {
    const limit = performance.now() - this.#idleTimeoutMs;
    for (const [c, peer] of this.#peers) {
      if (c.lastRead > limit || c.closed || peer.busy) continue;
      this.#logger.info("Closing connection from {remote}: idle for {seconds} s (--idle-timeout)", {
        remote: c.remote,
        seconds: this.#idleTimeoutMs / 1000,
      });
      c.close(200);
    }
  }

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    clearInterval(this.#idleSweep);
    this.#dispatcher.stop();
    let closed: Promise<void> | void = undefined;
    try {
      closed = this.#store.close();
    } catch (err) {
      this.#logger.error("Closing job store {store} failed: {error}", {
        store: this.#store.description,
        error: (err as Error).message,
      });
    }
    const resolve = () => this.#finished.resolve();
    void Promise.all([closed, this.#http?.close()]).then(resolve, resolve);
  }

  /**
   * Stop the server. Graceful: stop accepting, let open connections
   * finish, resolve when the last closes. Otherwise close everything now.
   * Safe to call more than once.
   *
   * @param options Shutdown mode.
   * @returns Resolves when the server has finished.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    const { graceful = false, timeoutMs = this.#drainTimeoutMs } = options;
    if (this.#accepting) {
      this.#accepting = false;
      try {
        this.#listener.close();
      } catch { /* already closed */ }
    }
    this.#stopping = true;
    if (graceful && !this.#closingAll) {
      this.#drain(timeoutMs);
    } else {
      if (!this.#closingAll) this.#logger.info("Shutting down");
      this.#closeAll();
    }
    this.#maybeFinish();
    return this.#finished.promise;
  }

  #closingAll = false;
  readonly #drainTimeoutMs: number;
  #drainTimer: ReturnType<typeof setTimeout> | undefined;

  #closeAll(): void {
    this.#closingAll = true;
    clearTimeout(this.#drainTimer);
    this.#drainTimer = undefined;
    this.#gloom?.close(false);
    for (const c of this.#peers.keys()) c.close(200);
    for (const c of this.#handshaking) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  }

  /** Stop handing out jobs; close everything once running jobs are done (or after the timeout). */
  #drain(timeoutMs: number): void {
    const d = this.#dispatcher;
    if (d.draining) return;
    const queued = d.drain();
    const figures = {
      running: d.runningCount,
      seconds: timeoutMs / 1000,
      queued,
      store: this.#store.description,
    };
    this.#logger.info(
      this.#store.durable
        ? "Draining: {running} running job(s) may finish (waiting up to {seconds} s); {queued} background job(s) stay queued in {store}"
        : "Draining: {running} running job(s) may finish (waiting up to {seconds} s); {queued} background job(s) are lost when it stops: no durable store (--store)",
      figures,
    );
    this.#gloom?.close(true);
    const deadline = performance.now() + timeoutMs;
    const check = () => {
      this.#drainTimer = undefined;
      if (this.#closingAll) return;
      if (d.runningCount > 0 && performance.now() < deadline) {
        this.#drainTimer = setTimeout(check, 25);
        return;
      }
      if (d.runningCount > 0) {
        this.#logger.warn(
          "Drain timeout: {running} job(s) still running; their clients get WORK_FAIL",
          { running: d.runningCount },
        );
        d.failRunning();
      }
      this.#logger.info("Drained; closing connections");
      this.#closeAll();
      this.#maybeFinish();
    };
    check();
  }

  /** Shut down (not gracefully) and wait until finished. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }
}

function checkInteger(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(
      `Cannot start server: ${name} must be an integer from ${min} to ${max}, received ${v}`,
    );
  }
}

/**
 * Start a Gearman job server.
 *
 * @param options Listen and queue options.
 * @returns The running server.
 * @throws {RangeError} When an option is out of range.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 *
 * @example Serve on a free port and stop
 * ```ts
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * assert.ok(server.addr.port > 0);
 * ```
 */
export function serve(options: ServeOptions = {}): Server {
  return new Server(options);
}

/** What a {@link PeerSink} hands its connection's packets and lines to. */
interface PeerHandlers {
  packet(peer: Peer, type: number, body: Uint8Array, magic: Magic): void;
  line(peer: Peer, line: Uint8Array): void;
}

/** One connection's framer sink: its peer and the server's shared handlers. */
class PeerSink implements FramerSink {
  /** Set right after the connection is made, before anything is read. */
  peer!: Peer;
  readonly #handlers: PeerHandlers;

  constructor(handlers: PeerHandlers) {
    this.#handlers = handlers;
  }

  packet(type: number, body: Uint8Array, magic: Magic): void {
    this.#handlers.packet(this.peer, type, body, magic);
  }

  line(line: Uint8Array): void {
    this.#handlers.line(this.peer, line);
  }
}
