// "host:port" parsing for server lists.

/** A server to connect to. */
export interface ServerAddress {
  hostname: string;
  port: number;
  /** `host:port` as given back in errors and logs. */
  label: string;
}

/** The port IANA assigned to Gearman. */
export const GEARMAN_PORT = 4730;

/**
 * Parse `"host"`, `"host:port"`, `"[v6]:port"` or `"v6"`; the port
 * defaults to 4730.
 *
 * @throws {TypeError} When the text is not a server address.
 */
export function parseServerAddress(text: string): ServerAddress {
  const t = text.trim();
  let hostname = t;
  let port = GEARMAN_PORT;
  const v6 = t.match(/^\[([^\]]+)\](?::(\d+))?$/);
  if (v6) {
    hostname = v6[1]!;
    if (v6[2] !== undefined) port = Number(v6[2]);
  } else if ((t.match(/:/g) ?? []).length === 1) {
    const [h, p] = t.split(":");
    hostname = h!;
    if (!/^\d+$/.test(p!)) {
      throw new TypeError(`Cannot use server "${text}": the port must be a number`);
    }
    port = Number(p);
  }
  if (hostname === "" || port < 1 || port > 65535) {
    throw new TypeError(
      `Cannot use server "${text}": expected "host", "host:port" or "[ipv6]:port"`,
    );
  }
  const label = hostname.includes(":") ? `[${hostname}]:${port}` : `${hostname}:${port}`;
  return { hostname, port, label };
}
