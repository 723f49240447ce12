// TLS options shared by Client, Worker, AdminClient and PacketClient.

/**
 * How to connect with TLS: which CAs to trust for the server's
 * certificate, and, for servers that require client certificates
 * (`--tls-ca`), this client's certificate chain and private key.
 *
 * @example Trust a private CA and present a client certificate
 * ```ts
 * import type { ClientTlsOptions } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const tls: ClientTlsOptions = { caCerts: ["-----BEGIN CERTIFICATE-----..."], cert: "...", key: "..." };
 * assert.equal(tls.caCerts?.length, 1);
 * ```
 */
export interface ClientTlsOptions {
  /**
   * PEM CA certificates to trust besides the system's (e.g. a private CA).
   * @default undefined (the system's only)
   */
  caCerts?: string[];
  /**
   * This client's certificate chain (PEM), for servers that require one
   * (mutual TLS). Needs `key`.
   * @default undefined (no client certificate)
   */
  cert?: string;
  /**
   * The private key (PEM) of `cert`.
   * @default undefined
   */
  key?: string;
}

/**
 * The `Deno.connectTls` options for `tls`.
 *
 * @throws {TypeError} When only one of `cert` and `key` is given.
 */
export function connectTlsOptions(
  tls: ClientTlsOptions,
): { caCerts?: string[]; cert?: string; key?: string } {
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new TypeError(
      "Cannot connect with TLS: tls.cert and tls.key go together; give both (a client certificate and its key) or neither",
    );
  }
  return {
    ...(tls.caCerts ? { caCerts: tls.caCerts } : {}),
    ...(tls.cert !== undefined && tls.key !== undefined ? { cert: tls.cert, key: tls.key } : {}),
  };
}
