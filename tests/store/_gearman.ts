// Raw-packet shortcuts for the durable store tests: connect to a server
// process, submit, grab, and assert what comes back (the ones shared with
// the in-process server tests come from tests/_helpers.ts).

import assert from "node:assert/strict";
import { AdminClient, ConnectionClosedError, PacketClient } from "../../client.ts";
import { expectPacket, text } from "../_helpers.ts";

export { AdminClient, ConnectionClosedError, PacketClient };

export { connect, expectPacket, submit, sync, text, waitFor, worker } from "../_helpers.ts";

/** An admin client for 127.0.0.1:port. */
export function adminOf(port: number): Promise<AdminClient> {
  return AdminClient.connect(`127.0.0.1:${port}`, { timeoutMs: 5000 });
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

/** The `status` row of one function, or undefined. */
export async function statusOf(
  admin: AdminClient,
  fn: string,
): Promise<{ function: string; total: number; running: number; workers: number } | undefined> {
  return (await admin.status()).find((r) => r.function === fn);
}
