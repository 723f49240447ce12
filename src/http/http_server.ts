// The server's HTTP endpoint (`--http HOST:PORT`): Prometheus /metrics,
// /healthz and /readyz, a JSON API, and a dashboard page. It runs on its
// own port (Deno.serve), reads the dispatcher's state when asked, and
// never sits on the Gearman data path.

import type http from "node:http";
import type tls from "node:tls";
import { getLogger } from "@logtape/logtape";
import {
  type ClientCertificates,
  CompiledAccess,
  warnRefusedClient,
} from "../server/tls_access.ts";
import { byteStringBytes } from "../protocol/_bytes.ts";
import { acceptConnections, logAcceptFailures } from "../transport/accept_loop.ts";
import { addrText } from "../transport/connection.ts";
import { percentDecode, queryParam } from "./byte_text.ts";
import { withCurrentFigures } from "../server/store/job_store.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./exposition.ts";
import {
  apiJobs,
  apiStatus,
  apiWorkers,
  isReady,
  metricsText,
  type ObservedServer,
  sample,
} from "./observe.ts";
import type { ApiError, ApiHistory, ApiOk, ApiSample } from "./api_types.ts";
import DASHBOARD_HTML from "./dashboard/index.html" with { type: "text" };
import DASHBOARD_JS from "./dashboard/dashboard.js" with { type: "text" };
import DASHBOARD_CSS from "./dashboard/dashboard.css" with { type: "text" };
import FAVICON_SVG from "./dashboard/favicon.svg" with { type: "text" };

/** The rule of a request from a socket with no verified names (cannot happen): nothing allowed. */
const NOBODY: CompiledAccess = new CompiledAccess("(unverified)", {});

/** Port of the HTTP endpoint when none is given. */
export const DEFAULT_HTTP_PORT = 8080;
/** Samples kept for /api/history: ten minutes, one a second. */
const HISTORY_SAMPLES = 600;
const HISTORY_INTERVAL_MS = 1000;
/** Jobs listed by /api/jobs unless `limit` says otherwise; and the most it may say. */
const DEFAULT_JOBS_LIMIT = 1000;
const MAX_JOBS_LIMIT = 100_000;

/** Options for {@link HttpFrontEnd}. */
export interface HttpFrontEndOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** Serve HTTPS with this certificate and key (PEM); plain HTTP without. */
  tls?: { cert: string; key: string };
  /**
   * Serve HTTPS with client certificates instead (the server's mutual TLS:
   * its CA and CRL), with its access rules if any.
   */
  clientCerts?: ClientCertificates;
  /** Bearer token for the state-changing endpoints; without one they are off. */
  adminToken: string | undefined;
  /** The server to report on. */
  server: ObservedServer;
  /** Start a graceful shutdown (POST /api/drain). */
  drain(): void;
}

/** A listening HTTP server, whichever kind. */
interface Listening {
  readonly addr: Deno.NetAddr;
  /** Stop; resolves once in-flight requests are answered (or cut). */
  close(): Promise<void>;
}

/** First pause before Deno.serve is started again after it stopped on its own. */
const FIRST_RESTART_PAUSE_MS = 100;
/** Longest pause between restarts. */
const MAX_RESTART_PAUSE_MS = 5000;

/** Who sent a request over mutual TLS: its certificate's rule, if rules apply. */
interface Caller {
  access: CompiledAccess | undefined;
}

const securityHeaders = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const DASHBOARD_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; " +
  "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; " +
  "frame-ancestors 'none'";

const STATIC: Record<string, { body: string; type: string }> = {
  "/": { body: DASHBOARD_HTML, type: "text/html; charset=utf-8" },
  "/index.html": { body: DASHBOARD_HTML, type: "text/html; charset=utf-8" },
  "/dashboard.js": { body: DASHBOARD_JS, type: "text/javascript; charset=utf-8" },
  "/dashboard.css": { body: DASHBOARD_CSS, type: "text/css; charset=utf-8" },
  "/favicon.svg": { body: FAVICON_SVG, type: "image/svg+xml" },
  "/favicon.ico": { body: FAVICON_SVG, type: "image/svg+xml" },
};

function text(body: string, status = 200, type = "text/plain; charset=utf-8"): Response {
  return new Response(body, { status, headers: { ...securityHeaders, "content-type": type } });
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...securityHeaders, "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function error(status: number, message: string, headers: Record<string, string> = {}): Response {
  return json({ error: message } satisfies ApiError, status, headers);
}

function ok(message: string, status = 200): Response {
  return json({ ok: true, message } satisfies ApiOk, status);
}

/** Compare without an early exit, so the time taken tells nothing about the token. */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/**
 * Check an admin token: visible ASCII with no spaces, so it fits in an
 * HTTP header and an admin text line (`auth TOKEN`).
 *
 * @throws {TypeError} When it is unusable.
 */
export function checkAdminToken(token: string): void {
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new TypeError(
      "Cannot start server: adminToken must be visible ASCII characters with no spaces " +
        "(for example the output of `openssl rand -hex 32`)",
    );
  }
}

/** The HTTP endpoint of a Gearman server: metrics, health, JSON API, dashboard. */
export class HttpFrontEnd {
  readonly #http: Listening;
  readonly #server: ObservedServer;
  readonly #token: string | undefined;
  readonly #drain: () => void;
  readonly #history: ApiSample[] = [];
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #logger = getLogger(["gearman", "http"]);
  #closing: Promise<void> | undefined;

  /**
   * Listen.
   *
   * @throws {Deno.errors.AddrInUse} When the port is taken.
   */
  constructor(options: HttpFrontEndOptions) {
    if (options.adminToken !== undefined) checkAdminToken(options.adminToken);
    this.#server = options.server;
    this.#token = options.adminToken;
    this.#drain = options.drain;
    try {
      this.#http = options.tls === undefined || options.clientCerts === undefined
        ? this.#listen(options.hostname, options.port, options.tls)
        : this.#listenMutual(options.hostname, options.port, options.clientCerts);
    } catch (err) {
      if (err instanceof Deno.errors.AddrInUse) {
        throw new Deno.errors.AddrInUse(
          `Cannot serve HTTP on ${options.hostname}:${options.port}: the port is in use`,
        );
      }
      throw err;
    }
    this.#history.push(sample(this.#server));
    this.#timer = setInterval(() => {
      if (this.#history.length >= HISTORY_SAMPLES) this.#history.shift();
      this.#history.push(sample(this.#server));
    }, HISTORY_INTERVAL_MS);
  }

  /**
   * Deno.serve, started again when it stops on its own: its accept loop
   * ends on a failed accept (too many open files), and the rejection it
   * ends with would otherwise end the whole process.
   */
  #listen(
    hostname: string,
    port: number,
    tls: { cert: string; key: string } | undefined,
  ): Listening {
    let closing = false;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let pauseMs = FIRST_RESTART_PAUSE_MS;
    const start = (onPort: number): Deno.HttpServer<Deno.NetAddr> => {
      const startedAt = Date.now();
      const server = Deno.serve({
        hostname,
        port: onPort,
        ...(tls ?? {}),
        onListen: () => {},
        onError: (err) => {
          this.#logger.error("HTTP request failed: {error}", { error: String(err) });
          return error(500, "Internal error; see the server log");
        },
      }, (req) => this.#handle(req, undefined));
      server.finished.catch((err) => {
        if (closing) return;
        // Stopping again soon after a restart: wait longer each time.
        if (Date.now() - startedAt > 10_000) pauseMs = FIRST_RESTART_PAUSE_MS;
        this.#logger.error(
          "The HTTP endpoint stopped: {error}; listening again in {retryMs} ms (the Gearman port is not affected). With too many open files, raise the limit (ulimit -n)",
          { error: String(err), retryMs: pauseMs },
        );
        retry = setTimeout(restart, pauseMs);
        pauseMs = Math.min(pauseMs * 2, MAX_RESTART_PAUSE_MS);
      });
      return server;
    };
    let current = start(port);
    const addr = current.addr;
    const restart = () => {
      retry = undefined;
      if (closing) return;
      try {
        current = start(addr.port);
        this.#logger.info("The HTTP endpoint listens again on {port}", { port: addr.port });
      } catch (err) {
        this.#logger.error(
          "Listening again for HTTP on port {port} failed: {error}; trying again in {retryMs} ms",
          { port: addr.port, error: String(err), retryMs: pauseMs },
        );
        retry = setTimeout(restart, pauseMs);
        pauseMs = Math.min(pauseMs * 2, MAX_RESTART_PAUSE_MS);
      }
    };
    return {
      addr,
      close: () => {
        closing = true;
        clearTimeout(retry);
        return current.shutdown().catch(() => {});
      },
    };
  }

  /**
   * HTTPS with client certificates. Deno.serve cannot ask for them, so each
   * TCP connection goes through the server's mutual-TLS handshake (as on
   * the Gearman port) and the verified socket to a node:http server.
   */
  #listenMutual(hostname: string, port: number, mutual: ClientCertificates): Listening {
    const listener = Deno.listen({ hostname, port, transport: "tcp" });
    const names = new WeakMap<object, readonly string[]>();
    const sockets = new Set<tls.TLSSocket>();
    let open = true;
    let server: http.Server | undefined;
    const accept = async () => {
      try {
        // Loaded here, not at startup: only this mode needs node:http (about 1 MB).
        const { createServer } = await import("node:http");
        server = createServer((req, res) => {
          const certNames = names.get(req.socket);
          // Rules looked up per request: setAccessRules replaces them in `mutual`.
          // A request on a socket we did not verify cannot happen; refuse it all the same.
          const caller: Caller = {
            access: certNames === undefined ? NOBODY : mutual.access?.(certNames),
          };
          void this.#serveNode(req, res, caller);
        });
        await acceptConnections(listener, {
          connection: (conn) => {
            const remote = addrText(conn.remoteAddr);
            mutual.upgrader.verifiedSocket(conn).then(({ socket, names: certNames }) => {
              if (!open) {
                socket.destroy();
                return;
              }
              names.set(socket, certNames);
              sockets.add(socket);
              socket.on("close", () => sockets.delete(socket));
              server?.emit("connection", socket);
            }, (err: Error) => {
              warnRefusedClient(this.#logger, "an HTTPS connection", remote, err, !open);
            });
          },
          failed: logAcceptFailures(this.#logger, "an HTTPS connection"),
          closing: () => !open,
        });
      } catch (err) {
        this.#logger.error("HTTPS with client certificates could not start: {error}", {
          error: String(err),
        });
      }
    };
    void accept();
    return {
      addr: listener.addr as Deno.NetAddr,
      close: () => {
        open = false;
        listener.close();
        const closed = new Promise<void>((resolve) =>
          server === undefined ? resolve() : server.close(() => resolve())
        );
        for (const socket of sockets) socket.end();
        setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, 1000).unref?.();
        return closed;
      },
    };
  }

  /** Answer a node:http request (mutual TLS) through the same handler as Deno.serve's. */
  async #serveNode(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    caller: Caller,
  ): Promise<void> {
    try {
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) {
        if (v === undefined) continue;
        for (const value of Array.isArray(v) ? v : [v]) headers.append(k, value);
      }
      let body: Blob | undefined;
      if (req.method !== "GET" && req.method !== "HEAD") {
        const chunks: Uint8Array<ArrayBuffer>[] = [];
        for await (const chunk of req) chunks.push(chunk as Uint8Array<ArrayBuffer>);
        body = new Blob(chunks);
      }
      const request = new Request(`https://${req.headers.host ?? "localhost"}${req.url ?? "/"}`, {
        method: req.method ?? "GET",
        headers,
        ...(body === undefined ? {} : { body }),
      });
      const response = await this.#handle(request, caller);
      const out: string[] = [];
      response.headers.forEach((value, key) => out.push(key, value));
      res.writeHead(response.status, out);
      res.end(req.method === "HEAD" ? undefined : new Uint8Array(await response.arrayBuffer()));
    } catch (err) {
      this.#logger.error("HTTP request failed: {error}", { error: String(err) });
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
      res.end("Internal error; see the server log\n");
    }
  }

  /** The address the HTTP endpoint listens on. */
  get addr(): Deno.NetAddr {
    return this.#http.addr;
  }

  /** Stop listening; resolves once in-flight requests are answered. */
  close(): Promise<void> {
    clearInterval(this.#timer);
    return this.#closing ??= this.#http.close();
  }

  /**
   * `caller`: who sent it over mutual TLS (undefined without). With access
   * rules, reading needs admin "read" or "all", and admin "all" may use the
   * state-changing endpoints without the token; /healthz and /readyz stay
   * open to any verified client (probes).
   */
  #handle(req: Request, caller: Caller | undefined): Response | Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    const read = req.method === "GET" || req.method === "HEAD";
    const s = this.#server;
    const access = caller?.access;
    if (access !== undefined && path !== "/healthz" && path !== "/readyz") {
      if (access.admin === "none") {
        this.#logger.warn("Refused HTTP {method} {path}: {message}", {
          method: req.method,
          path,
          message: `certificate "${access.name}" has no admin access`,
        });
        return error(
          403,
          `Certificate "${access.name}" may not use the HTTP endpoint (--tls-access: it needs "admin": "read", or "all" for the state-changing endpoints); ask the server's operator to add it`,
        );
      }
    }
    if (path.startsWith("/api/")) return this.#api(req, url, read, access?.admin === "all");
    if (!read) return text("Method not allowed\n", 405);
    switch (path) {
      case "/healthz":
        return text("ok\n");
      case "/readyz": {
        if (isReady(s)) return text("ready\n");
        const why = [
          s.accepting() ? "" : "not accepting connections",
          s.storeOpen() ? "" : "job store closed",
          s.draining() ? "draining" : "",
        ].filter((w) => w !== "");
        return text(`not ready: ${why.join(", ")}\n`, 503);
      }
      case "/metrics":
        return withCurrentFigures(
          s.dispatcher.store.cluster,
          () => text(metricsText(s), 200, PROMETHEUS_CONTENT_TYPE),
        );
    }
    const file = STATIC[path];
    if (file === undefined) return text("Not found\n", 404);
    return new Response(file.body, {
      headers: {
        ...securityHeaders,
        "content-type": file.type,
        "content-security-policy": DASHBOARD_CSP,
      },
    });
  }

  #api(req: Request, url: URL, read: boolean, trusted: boolean): Response | Promise<Response> {
    const s = this.#server;
    const parts = url.pathname.slice("/api/".length).split("/");
    const route = parts.length === 1 ? parts[0] : undefined;
    if (read) {
      switch (route) {
        case "status":
          return withCurrentFigures(
            s.dispatcher.store.cluster,
            () => json(apiStatus(s, this.#token !== undefined)),
          );
        case "workers":
          return json(apiWorkers(s));
        case "history":
          return json(
            { intervalMs: HISTORY_INTERVAL_MS, samples: this.#history } satisfies ApiHistory,
          );
        case "jobs": {
          const fn = queryParam(url.search, "function");
          const limitText = queryParam(url.search, "limit");
          const limit = limitText === undefined ? DEFAULT_JOBS_LIMIT : Number(limitText);
          if (!Number.isInteger(limit) || limit < 0 || limit > MAX_JOBS_LIMIT) {
            return error(400, `limit must be an integer from 0 to ${MAX_JOBS_LIMIT}`);
          }
          if (/(^\?|&)function=/.test(url.search) && fn === undefined) {
            return error(400, "function is not a valid percent-encoded name");
          }
          const jobs = apiJobs(s, fn, limit);
          if (jobs === undefined) {
            return error(404, "No function has that name; see /api/status for the functions");
          }
          return json(jobs);
        }
      }
      if (this.#isAction(parts)) {
        return error(405, "Use POST for this endpoint", { allow: "POST" });
      }
      return error(404, "No such endpoint; see docs/OBSERVABILITY.md for the API");
    }
    if (req.method !== "POST") {
      return error(405, "Use GET for reads and POST for actions", { allow: "GET, HEAD, POST" });
    }
    if (!this.#isAction(parts)) {
      return error(404, "No such endpoint; see docs/OBSERVABILITY.md for the API");
    }
    // A client certificate with admin "all" (--tls-access) needs no token.
    if (trusted) return this.#action(req, parts);
    if (this.#token === undefined) {
      return error(
        403,
        "State-changing endpoints are off. Start the server with --admin-token TOKEN " +
          "(ServeOptions adminToken) and send the header 'Authorization: Bearer TOKEN'",
      );
    }
    const auth = req.headers.get("authorization") ?? "";
    const given = /^Bearer\s+(\S+)\s*$/i.exec(auth)?.[1];
    if (given === undefined || !sameSecret(given, this.#token)) {
      return error(
        401,
        "Missing or wrong admin token: send the header 'Authorization: Bearer TOKEN' with the " +
          "server's --admin-token",
        { "www-authenticate": 'Bearer realm="gearman"' },
      );
    }
    return this.#action(req, parts);
  }

  #isAction(parts: string[]): boolean {
    return (parts.length === 1 && parts[0] === "drain") ||
      (parts.length === 3 && parts[0] === "jobs" && parts[2] === "cancel") ||
      (parts.length === 3 && parts[0] === "functions" &&
        (parts[2] === "drop" || parts[2] === "maxqueue"));
  }

  async #action(req: Request, parts: string[]): Promise<Response> {
    const d = this.#server.dispatcher;
    if (parts[0] === "drain") {
      if (this.#server.draining()) return ok("The server is already draining");
      this.#logger.info("Drain requested over HTTP");
      // After this reply is on its way.
      setTimeout(this.#drain, 0);
      return ok(
        "Draining: no new connections or jobs; running jobs finish, then the server stops",
        202,
      );
    }
    const name = percentDecode(parts[1]!);
    if (name === undefined || name === "") {
      return error(400, "The name in the path is not valid percent-encoding");
    }
    if (parts[0] === "jobs") {
      const handle = byteStringBytes(name);
      const slot = d.slotOfHandle(handle);
      if (slot === 0) {
        if (d.cancelStored(handle)) return ok(`Cancelled job ${parts[1]}`);
        return error(404, "No job has that handle; see /api/jobs");
      }
      d.cancel(slot);
      return ok(`Cancelled job ${parts[1]}`);
    }
    const f = d.functions.get(name);
    if (parts[2] === "drop") {
      // As admin `drop function`.
      if (f === undefined) return error(404, "No function has that name; see /api/status");
      if (f.workers.size > 0 || f.running > 0) {
        return error(409, "The function still has connected workers or running jobs");
      }
      if (!d.dropFunction(name)) {
        return error(
          409,
          "The function still has queued jobs; cancel them or let a worker drain them",
        );
      }
      return ok(`Dropped function ${parts[1]}`);
    }
    // maxqueue: as admin `maxqueue`; a function not seen yet is created.
    let body: unknown;
    try {
      body = await req.json();
    } catch {
      return error(
        400,
        'Send a JSON body: {"max": N} for every priority, {"high": N, "normal": N, "low": N}, ' +
          'or {"max": null} for the server default (0 = unlimited)',
      );
    }
    const limits = parseLimits(body);
    if (typeof limits === "string") return error(400, limits);
    const entry = f ?? d.functionEntry(name);
    entry.maxQueue = limits ?? undefined;
    return ok(
      limits === null
        ? `Queue limit of ${parts[1]} reset to the server default`
        : `Queue limit of ${parts[1]} set to high ${limits[0]}, normal ${limits[1]}, low ${
          limits[2]
        }`,
    );
  }
}

/** The maxqueue body as limits by priority, `null` for the default, or what is wrong. */
function parseLimits(body: unknown): [number, number, number] | null | string {
  const bad = 'Queue limits must be integers from 0 (unlimited) up: {"max": N} or ' +
    '{"high": N, "normal": N, "low": N}; {"max": null} restores the server default';
  if (typeof body !== "object" || body === null || Array.isArray(body)) return bad;
  const b = body as Record<string, unknown>;
  const valid = (v: unknown): v is number =>
    typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
  const keys = Object.keys(b).sort().join(",");
  if (keys === "max") {
    if (b.max === null) return null;
    return valid(b.max) ? [b.max, b.max, b.max] : bad;
  }
  if (keys === "high,low,normal" && valid(b.high) && valid(b.normal) && valid(b.low)) {
    return [b.high, b.normal, b.low];
  }
  return bad;
}
