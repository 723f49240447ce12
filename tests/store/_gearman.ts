// Raw-packet shortcuts for the durable store tests: connect to a server
// process, submit, grab, and assert what comes back.

import assert from "node:assert/strict";
import { AdminClient, ConnectionClosedError, PacketClient } from "../../client.ts";
import type { PacketTypeName } from "../../src/protocol/packet_type.ts";

export { AdminClient, ConnectionClosedError, PacketClient };

const decoder = new TextDecoder();

/** Bytes as text (UTF-8). */
export function text(bytes: Uint8Array | undefined): string {
  return bytes === undefined ? "" : decoder.decode(bytes);
}

/** A new connection to 127.0.0.1:port. */
export function connect(port: number): Promise<PacketClient> {
  return PacketClient.connect({ hostname: "127.0.0.1", port });
}

/** An admin client for 127.0.0.1:port. */
export function adminOf(port: number): Promise<AdminClient> {
  return AdminClient.connect(`127.0.0.1:${port}`, { timeoutMs: 5000 });
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

/** Submit a job (any SUBMIT_JOB* type with function, unique, data) and return its handle. */
export async function submit(
  conn: PacketClient,
  type: PacketTypeName,
  fn: string,
  unique: string,
  data: string,
): Promise<string> {
  conn.send(type, fn, unique, data);
  const [handle] = await expectPacket(conn, "JOB_CREATED");
  assert.match(handle!, /^H:test:\d+$/);
  return handle!;
}

/** SUBMIT_JOB_EPOCH: run at `epochSeconds`. */
export async function submitEpoch(
  conn: PacketClient,
  fn: string,
  unique: string,
  epochSeconds: number,
  data: string,
): Promise<string> {
  conn.send("SUBMIT_JOB_EPOCH", fn, unique, String(epochSeconds), data);
  const [handle] = await expectPacket(conn, "JOB_CREATED");
  assert.match(handle!, /^H:test:\d+$/);
  return handle!;
}

/** SUBMIT_JOB_SCHED with the five cron-like fields (minute hour mday month wday). */
export async function submitSched(
  conn: PacketClient,
  fn: string,
  unique: string,
  fields: [string, string, string, string, string],
  data: string,
): Promise<string> {
  conn.send("SUBMIT_JOB_SCHED", fn, unique, ...fields, data);
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

/** A worker connection registered for `fns`. */
export async function worker(port: number, ...fns: string[]): Promise<PacketClient> {
  const w = await connect(port);
  for (const f of fns) w.send("CAN_DO", f);
  await sync(w);
  return w;
}

/** A job as a worker got it (GRAB_JOB_UNIQ). */
export interface Assigned {
  handle: string;
  fn: string;
  unique: string;
  data: string;
}

/** GRAB_JOB_UNIQ; the job, or undefined on NO_JOB. */
export async function grab(w: PacketClient, timeoutMs = 5000): Promise<Assigned | undefined> {
  w.send("GRAB_JOB_UNIQ");
  const p = await w.receive(timeoutMs);
  if (p.name === "NO_JOB") return undefined;
  const args = p.args.map(text);
  assert.equal(p.name, "JOB_ASSIGN_UNIQ", `expected JOB_ASSIGN_UNIQ, got ${p.name} ${args}`);
  const [handle = "", fn = "", unique = "", data = ""] = args;
  return { handle, fn, unique, data };
}

/** GRAB_JOB_UNIQ; assert a job comes. */
export async function grabOne(w: PacketClient, timeoutMs = 5000): Promise<Assigned> {
  const job = await grab(w, timeoutMs);
  assert.ok(job !== undefined, "expected a job, got NO_JOB");
  return job;
}

/**
 * Wait (PRE_SLEEP, NOOP, grab) until a job comes, up to `timeoutMs`.
 * Returns the job and the time (ms since the epoch) it was assigned.
 */
export async function waitForJob(
  w: PacketClient,
  timeoutMs: number,
): Promise<{ job: Assigned; at: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await grab(w);
    if (job !== undefined) return { job, at: Date.now() };
    w.send("PRE_SLEEP");
    const left = deadline - Date.now();
    if (left <= 0) assert.fail(`no job came within ${timeoutMs} ms`);
    await expectPacket(w, "NOOP", left);
  }
}

/** Close connections, ignoring ones already gone. */
export async function closeAll(...conns: (PacketClient | AdminClient | undefined)[]) {
  for (const c of conns) {
    try {
      await c?.close();
    } catch { /* already closed */ }
  }
}

/** A fresh temporary directory; remove it with {@link removeDir}. */
export function tempDir(): Promise<string> {
  return Deno.makeTempDir({ prefix: "gearman-store-test-" });
}

/** Remove a directory tree (undoing `chattr +i` and read-only mounts is the caller's job). */
export async function removeDir(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
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
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The `status` row of one function, or undefined. */
export async function statusOf(
  admin: AdminClient,
  fn: string,
): Promise<{ function: string; total: number; running: number; workers: number } | undefined> {
  return (await admin.status()).find((r) => r.function === fn);
}
