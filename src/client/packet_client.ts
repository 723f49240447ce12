/**
 * A low-level Gearman connection for clients, workers and admin tools:
 * send request packets, await response packets and admin reply lines.
 *
 * @module
 */

import { withinLoopTime } from "./loop_timeout.ts";
import { type ClientTlsOptions, connectTlsOptions } from "./tls_options.ts";
import { Magic, type Packet, splitArgs } from "../protocol/packet.ts";
import { type PacketTypeName, packetTypeName } from "../protocol/packet_type.ts";
import { fromUtf8, toBytes } from "../protocol/_bytes.ts";
import { Connection } from "../transport/connection.ts";

/**
 * Options for {@link PacketClient.connect}.
 *
 * @example Connect options
 * ```ts
 * import type { PacketClientOptions } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const options: PacketClientOptions = { hostname: "127.0.0.1", port: 4730 };
 * assert.equal(options.port, 4730);
 * ```
 */
export interface PacketClientOptions {
  /**
   * Server host.
   * @default "127.0.0.1"
   */
  hostname?: string;
  /**
   * Server port.
   * @default 4730
   */
  port?: number;
  /** Connect with TLS: CAs to trust besides the system's, and an optional client certificate. */
  tls?: ClientTlsOptions;
  /**
   * Longest wait for the connection (and its TLS handshake), in ms of
   * event-loop time; none if unset.
   */
  timeoutMs?: number;
}

/**
 * The connection closed, or no packet came in time.
 *
 * @example Catch a timeout
 * ```ts
 * import { ConnectionClosedError } from "@x/gearman/client";
 * import assert from "node:assert/strict";
 *
 * const err = new ConnectionClosedError("Cannot receive packet: connection closed");
 * assert.equal(err.name, "ConnectionClosedError");
 * ```
 */
export class ConnectionClosedError extends Error {
  /**
   * Make the error.
   *
   * @param message What happened.
   * @param options Standard error options.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionClosedError";
  }
}

type Item = { packet: Packet } | { line: string };

/**
 * One connection to a Gearman server that speaks packets: the building
 * block of clients and workers, and a handy tool for tests. Response
 * packets and admin text lines are queued as they arrive; `receive()` and
 * `receiveLine()` take them in order.
 *
 * @example Echo through a server
 * ```ts
 * import { PacketClient } from "@x/gearman/client";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * await using conn = await PacketClient.connect({ port: server.addr.port });
 * conn.send("ECHO_REQ", "ping");
 * const reply = await conn.receive();
 * assert.equal(reply.name, "ECHO_RES");
 * assert.equal(new TextDecoder().decode(reply.args[0]), "ping");
 * ```
 */
export class PacketClient implements AsyncDisposable {
  readonly #connection: Connection;
  readonly #items: Item[] = [];
  #waiter: PromiseWithResolvers<void> | undefined;
  #ended = false;
  readonly #run: Promise<Error | undefined>;

  private constructor(conn: Deno.Conn) {
    this.#connection = new Connection(conn, {
      packet: (type, body, magic) => {
        const copy = body.slice();
        this.#push({
          packet: {
            magic,
            type,
            name: packetTypeName(type),
            args: splitArgs(type, copy),
            size: copy.length + 12,
          },
        });
      },
      line: (line) => this.#push({ line: fromUtf8(line) }),
    }, { magic: Magic.RES, text: true, maxPacketSize: 0xffffffff });
    this.#run = this.#connection.run().finally(() => {
      this.#ended = true;
      this.#wake();
    });
  }

  /**
   * Connect to a server.
   *
   * @param options Where to connect.
   * @returns The connection.
   * @throws {Deno.errors.ConnectionRefused} When nothing listens there.
   */
  static async connect(options: PacketClientOptions = {}): Promise<PacketClient> {
    const { hostname = "127.0.0.1", port = 4730, tls, timeoutMs } = options;
    let socket: Deno.Conn | undefined;
    let timedOut = false;
    const attempt = (async (): Promise<PacketClient> => {
      if (tls) {
        const conn = await Deno.connectTls({ hostname, port, ...connectTlsOptions(tls) });
        socket = conn;
        try {
          if (timedOut) throw new Error("timed out");
          await conn.handshake();
        } catch (err) {
          try {
            conn.close();
          } catch { /* closed by the timeout */ }
          throw err;
        }
        return new PacketClient(conn);
      }
      const conn = await Deno.connect({ hostname, port });
      if (timedOut) {
        conn.close();
        throw new Error("timed out");
      }
      conn.setNoDelay(true);
      return new PacketClient(conn);
    })();
    if (timeoutMs === undefined) return await attempt;
    return await withinLoopTime(
      attempt,
      timeoutMs,
      `no answer in ${timeoutMs} ms${tls ? " (TLS handshake)" : ""}`,
      () => {
        timedOut = true;
        try {
          socket?.close(); // ends a handshake in progress
        } catch { /* closed already */ }
      },
    );
  }

  #push(item: Item): void {
    this.#items.push(item);
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.resolve();
  }

  /** Whether the server has closed the connection (or it was closed). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Send a request packet.
   *
   * @param type Packet type name or number.
   * @param args Arguments (strings are UTF-8); joined with NUL bytes.
   */
  send(type: PacketTypeName | number, ...args: (string | Uint8Array)[]): void {
    const t = typeof type === "number" ? type : typeNumberOf(type);
    const w = this.#connection.out().begin(Magic.REQ, t);
    for (let i = 0; i < args.length; i++) {
      if (i > 0) w.nul();
      w.bytes(toBytes(args[i]!));
    }
    w.end();
  }

  /**
   * Send raw bytes, as they are (admin lines, or deliberately bad input).
   *
   * @param bytes Bytes or text to send.
   */
  sendRaw(bytes: Uint8Array | string): void {
    this.#connection.out().bytes(toBytes(bytes));
  }

  async #next(timeoutMs: number, what: string): Promise<Item> {
    const deadline = Date.now() + timeoutMs;
    while (this.#items.length === 0) {
      if (this.#ended) {
        throw new ConnectionClosedError(`Cannot receive ${what}: the connection is closed`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ConnectionClosedError(`Cannot receive ${what}: nothing came in ${timeoutMs} ms`);
      }
      this.#waiter ??= Promise.withResolvers();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#waiter.promise,
        new Promise<void>((r) => (timer = setTimeout(r, left))),
      ]);
      clearTimeout(timer);
    }
    return this.#items.shift()!;
  }

  /**
   * The next response packet.
   *
   * @param timeoutMs Longest wait.
   * @returns The packet (arguments are copies; keep them).
   * @throws {ConnectionClosedError} On close or timeout, or when an admin line comes instead.
   */
  async receive(timeoutMs = 5000): Promise<Packet> {
    const item = await this.#next(timeoutMs, "packet");
    if ("packet" in item) return item.packet;
    throw new ConnectionClosedError(
      `Cannot receive packet: got admin text ${JSON.stringify(item.line)}`,
    );
  }

  /**
   * The next admin text line (without its newline).
   *
   * @param timeoutMs Longest wait.
   * @returns The line.
   * @throws {ConnectionClosedError} On close or timeout, or when a packet comes instead.
   */
  async receiveLine(timeoutMs = 5000): Promise<string> {
    const item = await this.#next(timeoutMs, "admin line");
    if ("line" in item) return item.line;
    throw new ConnectionClosedError(`Cannot receive admin line: got packet ${item.packet.name}`);
  }

  /**
   * Whether nothing arrives within `ms` milliseconds (for tests of silence).
   *
   * @param ms How long to wait.
   * @returns True when nothing arrived.
   */
  async silentFor(ms: number): Promise<boolean> {
    if (this.#items.length > 0) return false;
    await new Promise((r) => setTimeout(r, ms));
    return this.#items.length === 0;
  }

  /**
   * Run an admin command and collect its reply: lines up to a lone "."
   * for listing commands, else the single line.
   *
   * @param command The command line, e.g. `"status"`.
   * @param timeoutMs Longest wait per line.
   * @returns The reply lines (without the final ".").
   */
  async admin(command: string, timeoutMs = 5000): Promise<string[]> {
    this.sendRaw(command + "\n");
    const first = await this.receiveLine(timeoutMs);
    if (first.startsWith("OK") || first.startsWith("ERR")) return [first];
    const lines: string[] = [];
    for (let line = first; line !== "."; line = await this.receiveLine(timeoutMs)) {
      lines.push(line);
    }
    return lines;
  }

  /**
   * Close the connection and wait until it is closed.
   *
   * @returns Resolves once closed.
   */
  async close(): Promise<void> {
    this.#connection.close();
    await this.#run;
  }

  /** Close the connection. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function typeNumberOf(name: PacketTypeName): number {
  for (let t = 1; t <= 42; t++) if (packetTypeName(t) === name) return t;
  throw new RangeError(`Cannot send packet: unknown packet type "${name}"`);
}
