// Shared helpers for the server behaviour tests (tests/server_*_test.ts):
// a server on a free loopback port and PacketClient shortcuts that assert
// what comes back.

import assert from "node:assert/strict";
import { ConnectionClosedError, PacketClient } from "../client.ts";
import { serve, type ServeOptions, type Server } from "../server.ts";
import type { PacketTypeName } from "../src/protocol/packet_type.ts";

export { PacketClient };

const decoder = new TextDecoder();

/** Bytes as text (UTF-8). */
export function text(bytes: Uint8Array | undefined): string {
  return bytes === undefined ? "" : decoder.decode(bytes);
}

/** A server on a free loopback port. */
export function startServer(options: ServeOptions = {}): Server {
  return serve({ hostname: "127.0.0.1", port: 0, handleHost: "test", ...options });
}

/** A new connection to `server` (in this process, or a server process's port). */
export function connect(server: Server | number): Promise<PacketClient> {
  const port = typeof server === "number" ? server : server.addr.port;
  return PacketClient.connect({ hostname: "127.0.0.1", port });
}

/** Receive the next packet, assert its type, and return its arguments as text. */
export async function expectPacket(
  conn: PacketClient,
  name: PacketTypeName,
  timeoutMs = 5000,
): Promise<string[]> {
  const p = await conn.receive(timeoutMs);
  const args = p.args.map(text);
  assert.equal(
    p.name ?? String(p.type),
    name,
    `expected ${name}, got ${p.name} ${JSON.stringify(args)}`,
  );
  return args;
}

/** Submit a job and return its handle (asserting JOB_CREATED). */
export async function submit(
  conn: PacketClient,
  type: PacketTypeName,
  fn: string,
  unique: string,
  data: string | Uint8Array,
): Promise<string> {
  conn.send(type, fn, unique, data);
  const [handle] = await expectPacket(conn, "JOB_CREATED");
  assert.match(handle!, /^H:test:\d+$/);
  return handle!;
}

/** Wait until the server has processed everything sent on `conn` so far. */
export async function sync(conn: PacketClient): Promise<void> {
  const token = `sync-${crypto.randomUUID()}`;
  conn.send("ECHO_REQ", token);
  assert.deepEqual(await expectPacket(conn, "ECHO_RES"), [token]);
}

/** A worker connection registered for `fns` (registration is processed when this resolves). */
export async function worker(server: Server | number, ...fns: string[]): Promise<PacketClient> {
  const w = await connect(server);
  for (const f of fns) w.send("CAN_DO", f);
  await sync(w);
  return w;
}

/** A job as a worker got it. */
export interface Assigned {
  handle: string;
  fn: string;
  unique?: string;
  data: string;
}

/** Send GRAB_JOB (or _UNIQ / _ALL) and assert a job comes back. */
export async function grab(
  w: PacketClient,
  type: "GRAB_JOB" | "GRAB_JOB_UNIQ" | "GRAB_JOB_ALL" = "GRAB_JOB",
): Promise<Assigned> {
  w.send(type);
  if (type === "GRAB_JOB") {
    const [handle, fn, data] = await expectPacket(w, "JOB_ASSIGN");
    return { handle: handle!, fn: fn!, data: data! };
  }
  const [handle, fn, unique, data] = await expectPacket(w, "JOB_ASSIGN_UNIQ");
  return { handle: handle!, fn: fn!, unique: unique!, data: data! };
}

/** Send GRAB_JOB and assert NO_JOB. */
export async function grabNothing(w: PacketClient): Promise<void> {
  w.send("GRAB_JOB");
  await expectPacket(w, "NO_JOB");
}

/** Run an admin command; reply lines without the final ".". */
export function admin(conn: PacketClient, command: string): Promise<string[]> {
  return conn.admin(command, 3000);
}

/** The `status` line of one function as [total, running, workers], or undefined. */
export async function statusOf(
  conn: PacketClient,
  fn: string,
): Promise<[number, number, number] | undefined> {
  for (const line of await admin(conn, "status")) {
    const cols = line.split("\t");
    if (cols[0] === fn) return [Number(cols[1]), Number(cols[2]), Number(cols[3])];
  }
  return undefined;
}

/** Assert the server closes `conn` (no more packets, then EOF) within `timeoutMs`. */
export async function expectClosed(conn: PacketClient, timeoutMs = 3000): Promise<void> {
  try {
    const p = await conn.receive(timeoutMs);
    assert.fail(`expected the server to close the connection, got ${p.name} instead`);
  } catch (err) {
    if (!(err instanceof ConnectionClosedError)) throw err;
    assert.ok(conn.ended, `expected the server to close the connection: ${err.message}`);
  }
}

/** Poll `check` until it returns true, or fail after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A 12-byte packet header. */
export function header(magic: string, type: number, size: number): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 4; i++) out[i] = magic.charCodeAt(i);
  view.setUint32(4, type);
  view.setUint32(8, size);
  return out;
}

/** Concatenate byte arrays and strings (UTF-8). */
export function concat(...parts: (Uint8Array | string)[]): Uint8Array {
  const bytes = parts.map((p) => (typeof p === "string" ? new TextEncoder().encode(p) : p));
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}
