// The Gloom front end of the server: two listeners (masters, workers) whose
// connections become virtual peers of the Gearman dispatcher.

import { getLogger, type Logger } from "@logtape/logtape";
import type { Dispatcher, DispatcherLog } from "../server/dispatcher.ts";
import { errorFrame } from "./messages.ts";
import { type GloomContext, MasterSession, WorkerSession } from "./sessions.ts";
import { GloomSocket } from "./socket.ts";
import { type ClientCertificates, warnRefusedClient } from "../server/tls_access.ts";
import { acceptConnections, logAcceptFailures } from "../transport/accept_loop.ts";
import type { MutualTlsConn } from "../transport/mutual_tls.ts";
import { addrText, type ByteConn } from "../transport/connection.ts";

/** Options for {@link GloomFrontEnd}. */
export interface GloomFrontEndOptions {
  /** Address to listen on (the server's). */
  hostname: string;
  /** Port for masters; 0 picks a free one. */
  masterPort: number;
  /** Port for workers; 0 picks a free one. */
  workerPort: number;
  /** Largest frame accepted, in bytes. */
  maxFrameSize: number;
  /** Serve both ports over TLS with this certificate chain and key (PEM). */
  tls?: { cert: string; key: string };
  /**
   * Serve both ports over mutual TLS instead (the server's: client
   * certificates its CA signed, its CRL), with its access rules if any.
   */
  clientCerts?: ClientCertificates;
  /** Called after each Gloom connection has closed and left the dispatcher. */
  onConnectionClosed?: () => void;
}

/** The bound addresses of the Gloom listeners. */
export interface GloomAddrs {
  /** Where Gloom masters connect. */
  master: Deno.NetAddr;
  /** Where Gloom workers connect. */
  worker: Deno.NetAddr;
}

function logAdapter(logger: Logger): DispatcherLog {
  return {
    debug: (m, p) => logger.debug(m, p),
    info: (m, p) => logger.info(m, p),
    warn: (m, p) => logger.warn(m, p),
    error: (m, p) => logger.error(m, p),
  };
}

/** Listens for Gloom masters and workers and serves them from a dispatcher. */
export class GloomFrontEnd {
  readonly #master: Deno.Listener;
  readonly #worker: Deno.Listener;
  readonly #sockets = new Set<GloomSocket>();
  readonly #sessions = new Set<MasterSession | WorkerSession>();
  readonly #clientCerts: ClientCertificates | undefined;
  readonly #ctx: GloomContext;
  readonly #logger: Logger = getLogger(["gearman", "gloom"]);
  readonly #maxFrameSize: number;
  readonly #onConnectionClosed: (() => void) | undefined;
  #accepting = true;

  /**
   * Open both listeners (the first is closed again if the second fails).
   *
   * @throws {Deno.errors.AddrInUse} When a port is taken (the message names it).
   */
  constructor(dispatcher: Dispatcher, options: GloomFrontEndOptions) {
    this.#maxFrameSize = options.maxFrameSize;
    this.#clientCerts = options.clientCerts;
    // With mutual TLS the listeners take TCP and the upgrader does the TLS.
    const tls = options.clientCerts === undefined ? options.tls : undefined;
    this.#onConnectionClosed = options.onConnectionClosed;
    this.#ctx = {
      dispatcher,
      log: logAdapter(this.#logger),
      outstanding: new Map(),
      idsByHandle: new Map(),
    };
    this.#master = listen(options.hostname, options.masterPort, "masters", tls);
    try {
      this.#worker = listen(options.hostname, options.workerPort, "workers", tls);
    } catch (err) {
      this.#master.close();
      throw err;
    }
    void this.#acceptLoop(this.#master, "master");
    void this.#acceptLoop(this.#worker, "worker");
  }

  /** The bound addresses. */
  get addrs(): GloomAddrs {
    return {
      master: this.#master.addr as Deno.NetAddr,
      worker: this.#worker.addr as Deno.NetAddr,
    };
  }

  /** Open Gloom connections. */
  get connectionCount(): number {
    return this.#sockets.size;
  }

  #acceptLoop(listener: Deno.Listener, role: "master" | "worker"): Promise<void> {
    return acceptConnections(listener, {
      connection: (conn) => this.#accept(conn, role),
      failed: logAcceptFailures(this.#logger, `a Gloom ${role}`),
      closing: () => !this.#accepting,
    });
  }

  /** The rules in `clientCerts` changed: open connections follow them from their next request. */
  refreshAccess(): void {
    const access = this.#clientCerts?.access;
    for (const s of this.#sessions) {
      if (s.certNames !== undefined) s.access = access?.(s.certNames);
    }
  }

  #accept(conn: Deno.Conn, role: "master" | "worker"): void {
    try {
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    } catch { /* not TCP */ }
    const mutual = this.#clientCerts;
    if (mutual === undefined) {
      this.#open(conn, role, undefined);
      return;
    }
    const remote = addrText(conn.remoteAddr);
    mutual.upgrader.upgrade(conn as Deno.TcpConn).then(
      (tlsConn: MutualTlsConn) => {
        if (!this.#accepting) {
          tlsConn.close();
          return;
        }
        this.#open(tlsConn, role, tlsConn.peerNames);
      },
      (err: Error) =>
        warnRefusedClient(
          this.#logger,
          `a Gloom ${role} TLS connection`,
          remote,
          err,
          !this.#accepting,
        ),
    );
  }

  #open(conn: ByteConn, role: "master" | "worker", certNames: readonly string[] | undefined): void {
    // Assigned right after the socket is made; frames arrive later.
    // deno-lint-ignore prefer-const
    let session!: MasterSession | WorkerSession;
    const socket: GloomSocket = new GloomSocket(conn, (payload) => session.payload(payload), {
      maxFrameSize: this.#maxFrameSize,
      onFrameError: (err) => {
        this.#logger.warn("Closing Gloom {role} connection from {remote}: {error}", {
          role,
          remote: socket.remote,
          error: err.message,
        });
        socket.send(errorFrame("frame_too_large", err.message));
      },
    });
    session = role === "master"
      ? new MasterSession(this.#ctx, socket)
      : new WorkerSession(this.#ctx, socket);
    if (certNames !== undefined) {
      session.certNames = certNames;
      session.access = this.#clientCerts?.access?.(certNames);
    }
    this.#sockets.add(socket);
    this.#sessions.add(session);
    this.#logger.debug("Accepted Gloom {role} {id} from {remote}", {
      role,
      id: session.peer.id,
      remote: socket.remote,
    });
    void socket.run().then((err) => {
      if (err && err.name !== "GloomFrameError") {
        this.#logger.debug("Gloom connection {id} ended: {error}", {
          id: session.peer.id,
          error: err.message,
        });
      }
      session.closed();
      this.#sockets.delete(socket);
      this.#sessions.delete(session);
      this.#onConnectionClosed?.();
    });
  }

  /**
   * Stop accepting; unless graceful, close every Gloom connection too
   * (flushing what each has queued for up to 200 ms).
   */
  close(graceful: boolean): void {
    if (this.#accepting) {
      this.#accepting = false;
      for (const l of [this.#master, this.#worker]) {
        try {
          l.close();
        } catch { /* already closed */ }
      }
    }
    if (!graceful) { for (const s of this.#sockets) s.close(200); }
  }
}

function listen(
  hostname: string,
  port: number,
  who: string,
  tls: { cert: string; key: string } | undefined,
): Deno.Listener {
  try {
    return tls === undefined
      ? Deno.listen({ hostname, port, transport: "tcp" })
      : Deno.listenTls({ hostname, port, transport: "tcp", cert: tls.cert, key: tls.key });
  } catch (err) {
    if (err instanceof Error) {
      err.message = `Cannot listen for Gloom ${who} on ${hostname}:${port}: ${err.message}`;
    }
    throw err;
  }
}
