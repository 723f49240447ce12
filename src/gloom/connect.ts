// Opening a Gloom connection from a master or worker: plain TCP, or TLS
// (the server started with --gloom-tls) with the handshake done and bounded.

import { type ClientTlsOptions, connectTlsOptions } from "../client/tls_options.ts";
import { withinLoopTime } from "../client/loop_timeout.ts";

/** Longest wait for a TLS handshake with a Gloom port. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * Connect to a Gloom port; with `tls`, over TLS, the handshake done (it
 * fails within 10 s on a server that does not answer it).
 *
 * @param hostname Server host.
 * @param port Server port.
 * @param tls CAs to trust and an optional client certificate, for TLS.
 * @returns The connection.
 * @throws {Error} When the server cannot be reached or the handshake fails.
 */
export async function connectGloom(
  hostname: string,
  port: number,
  tls: ClientTlsOptions | undefined,
): Promise<Deno.Conn> {
  if (tls === undefined) {
    const conn = await Deno.connect({ hostname, port, transport: "tcp" });
    try {
      conn.setNoDelay(true);
    } catch { /* not TCP */ }
    return conn;
  }
  const conn = await Deno.connectTls({ hostname, port, ...connectTlsOptions(tls) });
  try {
    await withinLoopTime(
      conn.handshake(),
      HANDSHAKE_TIMEOUT_MS,
      `no TLS handshake in ${HANDSHAKE_TIMEOUT_MS} ms`,
    );
  } catch (err) {
    try {
      conn.close();
    } catch { /* closed already */ }
    throw new Error(
      `Cannot connect to Gloom ${hostname}:${port} with TLS: ${
        (err as Error).message
      }; check that the server runs with --gloom-tls and that tls.caCerts trusts its certificate`,
      { cause: err },
    );
  }
  return conn;
}
