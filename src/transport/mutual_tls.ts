/**
 * Server-side TLS that asks for and verifies client certificates (mutual
 * TLS). `Deno.listenTls` cannot request client certificates, so accepted
 * TCP connections (from `Deno.listen`) are handed to a `node:tls` server,
 * which verifies the client's chain against the given CA; the decrypted
 * stream is then offered to {@link Connection} through the small
 * read/write/close interface it uses.
 *
 * Measured with Deno 2.9.6: `tls.createServer({ requestCert: true,
 * rejectUnauthorized: true, ca })` fed with `server.emit("connection",
 * duplex)` verifies the chain (an untrusted or missing client certificate
 * fails the handshake); a `new tls.TLSSocket(duplex, { isServer: true })`
 * made by hand does not (it accepts an untrusted certificate with
 * `authorized === false`), and the `secureContext` option of
 * `tls.createServer` is not honoured. So one small `tls.Server` is made per
 * connection, and `authorized` is checked again after the handshake.
 *
 * @module
 */

import tls from "node:tls";
import { Duplex } from "node:stream";
import type { ByteConn } from "./connection.ts";
import { normalSerial, RevocationList } from "./revocation_list.ts";

/** Longest wait for a client to finish its TLS handshake. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS: number = 10_000;

/** Decrypted bytes queued past this stop reading the socket until taken. */
const MAX_QUEUED = 1 << 20;

/**
 * PEM texts for a server that requires client certificates.
 *
 * @example
 * ```ts ignore
 * const options: MutualTlsOptions = { cert, key, ca };
 * ```
 */
export interface MutualTlsOptions {
  /** Server certificate chain (PEM). */
  cert: string;
  /** Server private key (PEM). */
  key: string;
  /** CA certificate(s) (PEM) that client certificates must chain to. */
  ca: string;
  /**
   * Certificate revocation list(s) of that CA (PEM): client certificates
   * whose serial number they list are refused.
   */
  crl?: string;
  /**
   * Longest wait for the handshake, in milliseconds.
   * @default 10000
   */
  handshakeTimeoutMs?: number;
}

/** Why a client's TLS handshake failed, for the log. */
export class TlsHandshakeError extends Error {
  /**
   * @param message What failed.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TlsHandshakeError";
  }
}

/** A Duplex over a Deno TCP connection: what the node:tls server reads and writes. */
function duplexOf(conn: Deno.Conn): Duplex {
  const buf = new Uint8Array(64 * 1024);
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  return new Duplex({
    read() {
      conn.read(buf).then(
        (n) => this.push(n === null ? null : buf.slice(0, n)),
        (err) => this.destroy(err),
      );
    },
    write(chunk: Uint8Array, _encoding, callback) {
      (async () => {
        let off = 0;
        while (off < chunk.length) off += await conn.write(chunk.subarray(off));
      })().then(() => callback(), callback);
    },
    final(callback) {
      callback();
    },
    destroy(err, callback) {
      close();
      callback(err);
    },
  });
}

/**
 * One verified mutual-TLS connection, with the interface
 * {@link Connection} reads, writes and closes through.
 */
export class MutualTlsConn implements ByteConn {
  readonly #socket: tls.TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #queued = 0;
  #paused = false;
  #ended = false;
  #error: Error | undefined;
  #waiter: PromiseWithResolvers<void> | undefined;
  #writes = 0;
  readonly #closed: PromiseWithResolvers<void> = Promise.withResolvers();
  /** The peer's address (of the TCP connection). */
  readonly remoteAddr: Deno.NetAddr;
  /**
   * The client certificate's name: its subject common name (CN), or when
   * it has none its first subject alternative name (see {@link peerNames}).
   */
  readonly peerName: string;
  /**
   * Every name the client certificate carries: the CN first (if any), then
   * its subject alternative names of type DNS, URI and email, in order.
   */
  readonly peerNames: readonly string[];

  /**
   * @param socket The TLS socket after a verified handshake.
   * @param remoteAddr The TCP peer address.
   * @param peerNames The client certificate's names (CN first, then SANs); not empty.
   */
  constructor(socket: tls.TLSSocket, remoteAddr: Deno.NetAddr, peerNames: readonly string[]) {
    this.#socket = socket;
    this.remoteAddr = remoteAddr;
    this.peerName = peerNames[0]!;
    this.peerNames = peerNames;
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#queued += chunk.length;
      if (this.#queued > MAX_QUEUED && !this.#paused) {
        this.#paused = true;
        socket.pause();
      }
      this.#wake();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on("error", (err: Error) => {
      this.#error ??= err;
      this.#wake();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake();
      this.#closed.resolve();
    });
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve();
  }

  /**
   * Read decrypted bytes into `p`.
   *
   * @param p Where to put them.
   * @returns How many were read, or `null` at the end of the stream.
   */
  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error !== undefined) throw this.#error;
      if (this.#ended) return null;
      this.#waiter = Promise.withResolvers();
      await this.#waiter.promise;
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const c = this.#chunks[0]!;
      const take = Math.min(c.length, p.length - n);
      p.set(c.subarray(0, take), n);
      n += take;
      if (take === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
    }
    this.#queued -= n;
    if (this.#paused && this.#queued < MAX_QUEUED / 2) {
      this.#paused = false;
      this.#socket.resume();
    }
    return n;
  }

  /**
   * Encrypt and send all of `p`; resolves once the TLS layer has taken it
   * (`p` may be reused after).
   *
   * @param p The bytes.
   * @returns `p.length`.
   */
  write(p: Uint8Array): Promise<number> {
    if (this.#error !== undefined) return Promise.reject(this.#error);
    this.#writes++;
    return new Promise((resolve, reject) => {
      this.#socket.write(p, (err) => {
        this.#writes--;
        if (err) reject(err);
        else resolve(p.length);
      });
    });
  }

  /**
   * Close: send TLS close_notify when nothing is pending, then close the
   * socket. Resolves once the TCP connection is closed.
   *
   * @returns Resolves when closed.
   */
  close(): Promise<void> {
    const socket = this.#socket;
    if (socket.destroyed) return this.#closed.promise;
    if (this.#writes > 0 || this.#error !== undefined) {
      socket.destroy();
    } else {
      // close_notify, then close; a peer that takes nothing more gets 1 s.
      const timer = setTimeout(() => socket.destroy(), 1000);
      socket.once("close", () => clearTimeout(timer));
      socket.end(() => socket.destroy());
    }
    return this.#closed.promise;
  }
}

/**
 * Runs the TLS handshake on accepted TCP connections, requiring a client
 * certificate that chains to the CA.
 *
 * @example
 * ```ts ignore
 * const upgrader = new MutualTlsUpgrader({ cert, key, ca });
 * const conn = await upgrader.upgrade(await listener.accept());
 * console.log(conn.peerName);
 * ```
 */
export class MutualTlsUpgrader {
  readonly #options: tls.TlsOptions;
  readonly #timeoutMs: number;
  readonly #ca: string;
  #revoked: RevocationList = RevocationList.EMPTY;

  /**
   * @param options Server certificate, key and the CA for client certificates.
   * @throws {Error} When the certificate, key or CA cannot be used.
   */
  constructor(options: MutualTlsOptions) {
    this.#options = {
      cert: options.cert,
      key: options.key,
      ca: [options.ca],
      requestCert: true,
      rejectUnauthorized: true,
    };
    this.#ca = options.ca;
    this.#timeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    // Fail now, not at the first connection, when the PEM texts are bad.
    tls.createSecureContext(this.#options);
    if (options.crl !== undefined) this.setRevocationList(options.crl);
  }

  /**
   * Refuse from now on the client certificates these CRLs (PEM) revoke,
   * instead of those of the list before. Each CRL must be issued and
   * signed by one of the CAs client certificates are verified with, and
   * revokes only that CA's certificates.
   *
   * @param crl One or more PEM CRL blocks.
   * @throws {RevocationListError} When the text holds no CRL, a damaged one,
   * or one none of the CAs signed (nothing changes).
   */
  setRevocationList(crl: string): void {
    this.#revoked = RevocationList.parse(crl, this.#ca);
  }

  /**
   * Handshake on `conn`; resolves with the verified connection, or rejects
   * (and closes `conn`) when the client sent no certificate, one the CA
   * did not sign, or did not finish in time.
   *
   * @param conn An accepted TCP connection.
   * @returns The verified connection.
   * @throws {TlsHandshakeError} When the handshake fails.
   */
  async upgrade(conn: Deno.TcpConn): Promise<MutualTlsConn> {
    const { socket, names } = await this.verifiedSocket(conn);
    return new MutualTlsConn(socket, conn.remoteAddr, names);
  }

  /**
   * Handshake on `conn` as {@link upgrade} does, and give the verified
   * `node:tls` socket itself (for a `node:http` server) with the client
   * certificate's names (CN first, then subject alternative names).
   *
   * @param conn An accepted TCP connection.
   * @returns The socket and the names.
   * @throws {TlsHandshakeError} When the handshake fails.
   */
  verifiedSocket(conn: Deno.TcpConn): Promise<{ socket: tls.TLSSocket; names: string[] }> {
    const { promise, resolve, reject } = Promise.withResolvers<
      { socket: tls.TLSSocket; names: string[] }
    >();
    const duplex = duplexOf(conn);
    // One tls.Server per connection: its events then belong to this one.
    const server = tls.createServer(this.#options);
    let settled = false;
    const fail = (why: string, cause?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      duplex.destroy();
      reject(new TlsHandshakeError(why, cause === undefined ? undefined : { cause }));
    };
    const timer = setTimeout(
      () => fail(`no TLS handshake within ${this.#timeoutMs} ms`),
      this.#timeoutMs,
    );
    server.on("tlsClientError", (err: Error & { code?: string }) => {
      const hint = err.code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE"
        ? "the client sent no certificate"
        : `${err.message} (a client certificate the CA did not sign is refused this way)`;
      fail(`TLS handshake failed: ${hint}`, err);
    });
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      if (settled) {
        socket.destroy();
        return;
      }
      const cert = socket.getPeerCertificate();
      const serial = normalSerial(cert?.serialNumber ?? "");
      const der = cert?.raw === undefined ? undefined : new Uint8Array(cert.raw);
      if (socket.authorized && this.#revoked.isRevoked(der, serial)) {
        socket.destroy();
        fail(
          `the client certificate was revoked (serial ${serial} is in the CRL given with --tls-crl)`,
        );
        return;
      }
      const names = certificateNames(cert);
      if (!socket.authorized || names.length === 0) {
        socket.destroy();
        fail(
          socket.authorized
            ? "the client certificate has no name: no subject common name (CN) and no subject alternative name of type DNS, URI or email"
            : `the client certificate was not verified: ${String(socket.authorizationError)}`,
        );
        return;
      }
      settled = true;
      clearTimeout(timer);
      resolve({ socket, names });
    });
    duplex.on(
      "error",
      (err) => fail(`connection failed during the TLS handshake: ${err.message}`, err),
    );
    duplex.on("close", () => fail("the client closed the connection during the TLS handshake"));
    server.emit("connection", duplex);
    return promise;
  }
}

/**
 * A verified certificate's names: the subject CN (if any), then the
 * subject alternative names of type DNS, URI and email (node:tls gives them
 * as `"DNS:a.example, URI:spiffe://x/y"`).
 */
function certificateNames(
  cert: { subject?: { CN?: string | string[] }; subjectaltname?: string } | undefined,
): string[] {
  const names: string[] = [];
  const cn = cert?.subject?.CN;
  for (const n of Array.isArray(cn) ? cn : [cn]) {
    if (typeof n === "string" && n !== "") names.push(n);
  }
  for (const entry of (cert?.subjectaltname ?? "").split(/,\s*/)) {
    const colon = entry.indexOf(":");
    if (colon <= 0) continue;
    const type = entry.slice(0, colon);
    const value = entry.slice(colon + 1);
    if ((type === "DNS" || type === "URI" || type === "email") && value !== "") {
      if (!names.includes(value)) names.push(value);
    }
  }
  return names;
}
