// Durable jobs (`--store sqlite:PATH`) with the real server process: what a
// kill -9 and a restart keep and what they drop, scheduled jobs, dead
// letters, and bad store files. Every server is killed and every temp dir
// removed by the test's Scope, whatever happens.

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { PacketTypeName } from "../../src/protocol/packet_type.ts";
import { serve } from "../../server.ts";
import { AdminError } from "../../client.ts";
import { runServer, ServerProcess } from "./_process.ts";
import { Scope } from "./_scope.ts";
import { assertSucceeded, requirePeer, run } from "../interop/_harness.ts";
import {
  type Assigned,
  closeAll,
  connect,
  expectPacket,
  grab,
  grabOne,
  type PacketClient,
  statusOf,
  submit,
  submitEpoch,
  submitSched,
  sync,
  waitFor,
  waitForJob,
} from "./_gearman.ts";

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Grab until NO_JOB. */
async function grabAll(w: PacketClient): Promise<Assigned[]> {
  const out: Assigned[] = [];
  for (let job = await grab(w); job !== undefined; job = await grab(w)) out.push(job);
  return out;
}

// --------------------------------------------------------------- replay

Deno.test("store: background jobs are replayed after kill -9 in priority-then-FIFO order with the same handles, uniques and data", async () => {
  await using s = await Scope.create();
  const s1 = await s.start();
  const c = await s.connect(s1);
  // A known order, sent in one burst (one group commit or a few), then waited for.
  const types: PacketTypeName[] = ["SUBMIT_JOB_LOW_BG", "SUBMIT_JOB_BG", "SUBMIT_JOB_HIGH_BG"];
  const plan = Array.from({ length: 120 }, (_, i) => ({
    type: types[(i * 7) % 3]!,
    priority: (i * 7) % 3, // 0 low, 1 normal, 2 high (index into types)
    unique: i % 2 === 0 ? `u-${i}` : "",
    data: `job-${i}`,
  }));
  for (const p of plan) c.send(p.type, "replay", p.unique, p.data);
  const handles: string[] = [];
  for (let i = 0; i < plan.length; i++) {
    const [h] = await expectPacket(c, "JOB_CREATED");
    handles.push(h!);
  }
  assert.equal(new Set(handles).size, plan.length, "handles are distinct");
  // JOB_CREATED promises the job is committed: kill at once.
  await s1.kill("SIGKILL");

  const s2 = await s.start();
  const c2 = await s.connect(s2);
  // A job submitted after the restart goes behind the replayed ones of its priority.
  const late = await submit(c2, "SUBMIT_JOB_BG", "replay", "", "late-normal");
  assert.ok(!handles.includes(late), `new handle ${late} reuses a replayed one`);
  const w = await s.worker(s2, "replay");
  const got = await grabAll(w);

  const expected: Assigned[] = [];
  for (const pr of [2, 1, 0]) {
    plan.forEach((p, i) => {
      if (p.priority === pr) {
        expected.push({ handle: handles[i]!, fn: "replay", unique: p.unique, data: p.data });
      }
    });
    if (pr === 1) expected.push({ handle: late, fn: "replay", unique: "", data: "late-normal" });
  }
  assert.deepEqual(got, expected);
});

Deno.test("store: job bytes survive a restart exactly (binary data with NULs, 1 MiB, non-UTF-8 function and unique)", async () => {
  await using s = await Scope.create();
  const s1 = await s.start();
  const c = await s.connect(s1);
  const fn = new Uint8Array([0x62, 0x69, 0x6e, 0xe9, 0xff]); // "bin" + bytes not valid UTF-8
  const unique = new Uint8Array([0x75, 0x00 + 0x80, 0xfe, 0x2d]);
  const small = new Uint8Array(256).map((_, i) => i); // every byte value, NULs included
  const big = new Uint8Array(1 << 20).map((_, i) => (i * 31 + 7) & 0xff);
  c.send("SUBMIT_JOB_BG", fn, unique, small);
  c.send("SUBMIT_JOB_LOW_BG", fn, new Uint8Array(0), big);
  const [h1] = await expectPacket(c, "JOB_CREATED");
  const [h2] = await expectPacket(c, "JOB_CREATED");
  await s1.kill("SIGKILL");

  const s2 = await s.start();
  const w = await s.connect(s2);
  w.send("CAN_DO", fn);
  for (const [handle, u, data] of [[h1, unique, small], [h2, new Uint8Array(0), big]] as const) {
    w.send("GRAB_JOB_UNIQ");
    const p = await w.receive(10_000);
    assert.equal(p.name, "JOB_ASSIGN_UNIQ");
    assert.equal(new TextDecoder().decode(p.args[0]), handle);
    assert.deepEqual(p.args[1], fn);
    assert.deepEqual(p.args[2], u);
    assert.equal(p.args[3]!.length, data.length);
    assert.deepEqual(p.args[3], data);
  }
});

Deno.test("store: unique ids coalesce after a restart onto the replayed handle, which GET_STATUS knows", async () => {
  await using s = await Scope.create();
  const s1 = await s.start();
  const c = await s.connect(s1);
  const h = await submit(c, "SUBMIT_JOB_BG", "uniq", "order-17", "first");
  const hDone = await submit(c, "SUBMIT_JOB_BG", "uniq-done", "order-18", "done before");
  const w1 = await s.worker(s1, "uniq-done");
  assert.equal((await grabOne(w1)).handle, hDone);
  w1.send("WORK_COMPLETE", hDone, "ok");
  await sync(w1);
  await s1.kill("SIGKILL");

  const s2 = await s.start();
  const c2 = await s.connect(s2);
  c2.send("GET_STATUS", h);
  assert.deepEqual(await expectPacket(c2, "STATUS_RES"), [h, "1", "0", "0", "0"]);
  c2.send("GET_STATUS", hDone);
  assert.deepEqual(await expectPacket(c2, "STATUS_RES"), [hDone, "0", "0", "0", "0"]);
  c2.send("GET_STATUS_UNIQUE", "order-17");
  assert.deepEqual(await expectPacket(c2, "STATUS_RES_UNIQUE"), [
    "order-17",
    "1",
    "0",
    "0",
    "0",
    "0",
  ]);
  // Same unique, any submit type: the replayed job.
  assert.equal(await submit(c2, "SUBMIT_JOB_BG", "uniq", "order-17", "second"), h);
  assert.equal(await submit(c2, "SUBMIT_JOB_HIGH_BG", "uniq", "order-17", "third"), h);
  const fg = await s.connect(s2);
  assert.equal(await submit(fg, "SUBMIT_JOB", "uniq", "order-17", "fourth"), h);
  // The completed job's unique is free again: a new job.
  const hNew = await submit(c2, "SUBMIT_JOB_BG", "uniq-done", "order-18", "again");
  assert.notEqual(hNew, hDone);

  const w = await s.worker(s2, "uniq");
  assert.deepEqual(await grabOne(w), { handle: h, fn: "uniq", unique: "order-17", data: "first" });
  assert.equal(await grab(w), undefined, "coalesced submits made no second job");
  c2.send("GET_STATUS", h);
  assert.deepEqual(await expectPacket(c2, "STATUS_RES"), [h, "1", "1", "0", "0"]);
  w.send("WORK_STATUS", h, "1", "2");
  assert.deepEqual(await expectPacket(fg, "WORK_STATUS"), [h, "1", "2"]);
  c2.send("GET_STATUS", h);
  assert.deepEqual(await expectPacket(c2, "STATUS_RES"), [h, "1", "1", "1", "2"]);
  w.send("WORK_COMPLETE", h, "done");
  assert.deepEqual(await expectPacket(fg, "WORK_COMPLETE"), [h, "done"]);
  c2.send("GET_STATUS", h);
  assert.deepEqual(await expectPacket(c2, "STATUS_RES"), [h, "0", "0", "0", "0"]);
  await sync(w);
  await s2.kill("SIGKILL");

  // Completed after the restart: gone after the next one too.
  const s3 = await s.start();
  const c3 = await s.connect(s3);
  c3.send("GET_STATUS", h);
  assert.deepEqual(await expectPacket(c3, "STATUS_RES"), [h, "0", "0", "0", "0"]);
  const h2 = await submit(c3, "SUBMIT_JOB_BG", "uniq", "order-17", "fresh");
  assert.notEqual(h2, h, "a finished job's handle is not given to a new job");
  const w3 = await s.worker(s3, "uniq");
  assert.deepEqual(await grabOne(w3), {
    handle: h2,
    fn: "uniq",
    unique: "order-17",
    data: "fresh",
  });
});

Deno.test("store: completed, failed, excepted and cancelled jobs are not replayed; queued and running ones are", async () => {
  await using s = await Scope.create();
  const s1 = await s.start();
  const c = await s.connect(s1);
  const h: Record<string, string> = {};
  for (const name of ["complete", "fail", "exception", "running", "queued", "cancelled"]) {
    h[name] = await submit(c, "SUBMIT_JOB_BG", "fin", `u-${name}`, name);
  }
  const admin = await s.admin(s1);
  await admin.cancelJob(h.cancelled!);
  const w = await s.worker(s1, "fin");
  assert.equal((await grabOne(w)).handle, h.complete);
  w.send("WORK_COMPLETE", h.complete!, "result");
  assert.equal((await grabOne(w)).handle, h.fail);
  w.send("WORK_FAIL", h.fail!);
  assert.equal((await grabOne(w)).handle, h.exception);
  w.send("WORK_EXCEPTION", h.exception!, "boom");
  assert.equal((await grabOne(w)).handle, h.running); // held when the server dies
  await sync(w);
  assert.equal((await statusOf(admin, "fin"))?.total, 2);
  await s1.kill("SIGKILL");

  const s2 = await s.start();
  const admin2 = await s.admin(s2);
  assert.deepEqual(await statusOf(admin2, "fin"), {
    function: "fin",
    total: 2,
    running: 0,
    workers: 0,
  });
  const w2 = await s.worker(s2, "fin");
  assert.deepEqual(await grabAll(w2), [
    { handle: h.running!, fn: "fin", unique: "u-running", data: "running" },
    { handle: h.queued!, fn: "fin", unique: "u-queued", data: "queued" },
  ]);
  for (const name of ["complete", "fail", "exception", "cancelled"]) {
    w2.send("GET_STATUS", h[name]!);
    assert.deepEqual(await expectPacket(w2, "STATUS_RES"), [h[name], "0", "0", "0", "0"], name);
  }
});

Deno.test("store: foreground jobs are not replayed, unless a background submit coalesced onto them", async () => {
  await using s = await Scope.create();
  const s1 = await s.start();
  const c = await s.connect(s1);
  const queued = await submit(c, "SUBMIT_JOB", "fg", "", "fg-queued");
  const high = await submit(c, "SUBMIT_JOB_HIGH", "fg", "fg-u", "fg-running");
  const w = await s.worker(s1, "fg");
  assert.equal((await grabOne(w)).handle, high);
  // A foreground job a background submit joins becomes durable.
  const c2 = await s.connect(s1);
  const merged = await submit(c2, "SUBMIT_JOB_LOW", "fg", "merge-1", "fg-merged");
  const c3 = await s.connect(s1);
  assert.equal(await submit(c3, "SUBMIT_JOB_BG", "fg", "merge-1", "ignored"), merged);
  await s1.kill("SIGKILL");

  const s2 = await s.start();
  const w2 = await s.worker(s2, "fg");
  assert.deepEqual(await grabAll(w2), [
    { handle: merged, fn: "fg", unique: "merge-1", data: "fg-merged" },
  ]);
  for (const handle of [queued, high]) {
    w2.send("GET_STATUS", handle);
    assert.deepEqual(await expectPacket(w2, "STATUS_RES"), [handle, "0", "0", "0", "0"]);
  }
});

Deno.test("store: --store-sync full keeps and replays jobs too", async () => {
  await using s = await Scope.create();
  const s1 = await s.start({ args: ["--store-sync", "full"] });
  const c = await s.connect(s1);
  const h = await submit(c, "SUBMIT_JOB_BG", "full", "", "synced");
  await s1.kill("SIGKILL");
  const s2 = await s.start({ args: ["--store-sync", "full"] });
  const w = await s.worker(s2, "full");
  assert.deepEqual(await grabAll(w), [{ handle: h, fn: "full", unique: "", data: "synced" }]);
});

Deno.test("store: a clean stop (SIGTERM) exits 0 and keeps queued and scheduled jobs", async () => {
  await using s = await Scope.create();
  const s1 = await s.start();
  const c = await s.connect(s1);
  const h1 = await submit(c, "SUBMIT_JOB_LOW_BG", "clean", "", "one");
  const h2 = await submit(c, "SUBMIT_JOB_HIGH_BG", "clean", "c-2", "two");
  const at = Math.ceil(Date.now() / 1000) + 3600;
  const h3 = await submitEpoch(c, "clean", "c-3", at, "three");
  const status = await s1.kill("SIGTERM");
  assert.equal(status.code, 0, s1.stderr);
  const s2 = await s.start();
  const admin = await s.admin(s2);
  assert.deepEqual((await admin.showScheduled()).map((r) => r.handle), [h3]);
  const w = await s.worker(s2, "clean");
  assert.deepEqual((await grabAll(w)).map((j) => j.handle), [h2, h1]);
});

Deno.test("store: a cancelled running background job is not replayed after kill -9", async () => {
  await using s = await Scope.create();
  const s1 = await s.start();
  const c = await s.connect(s1);
  const h = await submit(c, "SUBMIT_JOB_BG", "cancel-run", "cr-1", "running when cancelled");
  const w = await s.worker(s1, "cancel-run");
  assert.equal((await grabOne(w)).handle, h);
  const admin = await s.admin(s1);
  await admin.cancelJob(h);
  await s1.kill("SIGKILL");
  const s2 = await s.start();
  const w2 = await s.worker(s2, "cancel-run");
  assert.deepEqual(await grabAll(w2), [], "the cancelled job came back after the restart");
});

/** Bg jobs of mixed priorities (every third with a unique) for the --max-memory-jobs tests. */
function memoryPlan(n: number) {
  const types: PacketTypeName[] = ["SUBMIT_JOB_LOW_BG", "SUBMIT_JOB_BG", "SUBMIT_JOB_HIGH_BG"];
  return Array.from({ length: n }, (_, i) => ({
    type: types[(i * 5 + (i >> 2)) % 3]!,
    priority: (i * 5 + (i >> 2)) % 3, // 0 low, 1 normal, 2 high
    unique: i % 3 === 0 ? `m-${i}` : "",
    data: `mem-${i}`,
  }));
}

/** What a worker should grab: priority first, then submit order. */
function grabOrder(
  plan: ReturnType<typeof memoryPlan>,
  handles: string[],
  fn: string,
): Assigned[] {
  const expected: Assigned[] = [];
  for (const pr of [2, 1, 0]) {
    plan.forEach((p, i) => {
      if (p.priority === pr) {
        expected.push({ handle: handles[i]!, fn, unique: p.unique, data: p.data });
      }
    });
  }
  return expected;
}

Deno.test("store: --max-memory-jobs: jobs past the limit are kept on disk, replayed in priority-then-FIFO order with their handles", async () => {
  await using s = await Scope.create();
  const args = ["--max-memory-jobs", "5"];
  const s1 = await s.start({ args });
  const c = await s.connect(s1);
  const plan = memoryPlan(40);
  const handles: string[] = [];
  for (const p of plan) handles.push(await submit(c, p.type, "mem", p.unique, p.data));
  assert.equal(new Set(handles).size, plan.length);
  c.send("GET_STATUS", handles.at(-1)!);
  assert.deepEqual(await expectPacket(c, "STATUS_RES"), [handles.at(-1), "1", "0", "0", "0"]);
  await s1.kill("SIGKILL");

  const s2 = await s.start({ args });
  const c2 = await s.connect(s2);
  for (const i of [0, 20, plan.length - 1]) {
    c2.send("GET_STATUS", handles[i]!);
    assert.deepEqual(await expectPacket(c2, "STATUS_RES"), [handles[i], "1", "0", "0", "0"]);
  }
  const admin = await s.admin(s2);
  assert.equal((await statusOf(admin, "mem"))?.total, plan.length);
  const w = await s.worker(s2, "mem");
  assert.deepEqual(await grabAll(w), grabOrder(plan, handles, "mem"));
  assert.equal((await statusOf(admin, "mem"))?.total, plan.length, "all running");
});

Deno.test("store: --max-memory-jobs: a submit coalescing onto a job kept on disk gets its handle and does not move it ahead of older jobs", async () => {
  await using s = await Scope.create();
  const args = ["--max-memory-jobs", "5"];
  const s1 = await s.start({ args });
  const c = await s.connect(s1);
  const plan = memoryPlan(40);
  const handles: string[] = [];
  for (const p of plan) handles.push(await submit(c, p.type, "memu", p.unique, p.data));
  const last = plan.findLastIndex((p) => p.unique !== "");
  assert.equal(await submit(c, "SUBMIT_JOB_BG", "memu", plan[last]!.unique, "x"), handles[last]);
  await s1.kill("SIGKILL");

  const s2 = await s.start({ args });
  const c2 = await s.connect(s2);
  assert.equal(await submit(c2, "SUBMIT_JOB_BG", "memu", plan[last]!.unique, "y"), handles[last]);
  const w = await s.worker(s2, "memu");
  assert.deepEqual(await grabAll(w), grabOrder(plan, handles, "memu"));
});

Deno.test("store: --max-memory-jobs: `cancel job` on a job kept on disk removes it for good", async () => {
  await using s = await Scope.create();
  const args = ["--max-memory-jobs", "2"];
  const s1 = await s.start({ args });
  const c = await s.connect(s1);
  const handles: string[] = [];
  for (const d of ["a", "b", "c", "d"]) {
    handles.push(await submit(c, "SUBMIT_JOB_BG", "memcancel", "", d));
  }
  const admin = await s.admin(s1);
  await admin.cancelJob(handles[3]!);
  await assert.rejects(admin.cancelJob(handles[3]!), AdminError, "cancelled twice");
  await s1.kill("SIGKILL");
  const s2 = await s.start({ args });
  const w = await s.worker(s2, "memcancel");
  assert.deepEqual((await grabAll(w)).map((j) => j.data), ["a", "b", "c"]);
  w.send("GET_STATUS", handles[3]!);
  assert.deepEqual(await expectPacket(w, "STATUS_RES"), [handles[3], "0", "0", "0", "0"]);
});

Deno.test("store: --max-memory-jobs: an epoch job replayed past the limit is listed by `show scheduled` and runs on time", async () => {
  await using s = await Scope.create();
  const args = ["--max-memory-jobs", "2"];
  const s1 = await s.start({ args });
  const c = await s.connect(s1);
  for (const d of ["a", "b", "c"]) await submit(c, "SUBMIT_JOB_BG", "memsched", "", d);
  const epoch = Math.ceil(Date.now() / 1000) + 4;
  const h = await submitEpoch(c, "memsched", "late-1", epoch, "epoch past the limit");
  await s1.kill("SIGKILL");

  const s2 = await s.start({ args });
  const admin = await s.admin(s2);
  const listedAfterRestart = (await admin.showScheduled()).map((r) => r.handle);
  const w = await s.worker(s2, "memsched");
  const ran: string[] = [];
  for (;;) {
    const { job, at } = await waitForJob(w, 10_000);
    w.send("WORK_COMPLETE", job.handle, "");
    ran.push(job.data);
    if (job.handle !== h) continue;
    const lateBy = at - epoch * 1000;
    assert.ok(lateBy >= -50 && lateBy <= 1000, `epoch job ran ${lateBy} ms after its time`);
    break;
  }
  assert.deepEqual(ran, ["a", "b", "c", "epoch past the limit"]);
  assert.deepEqual(
    listedAfterRestart,
    [h],
    "`show scheduled` right after the restart lists the epoch job",
  );
});

Deno.test("store: a failed commit (disk full) sends no JOB_CREATED; acknowledged jobs survive", async () => {
  await using s = await Scope.create();
  const mnt = join(s.dir, "small");
  await Deno.mkdir(mnt);
  const mounted = await sh("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt);
  if (!mounted.ok) {
    console.log(`  skipped: cannot mount a small tmpfs here (${mounted.err || "failed"})`);
    return;
  }
  s.defer(async () => void await sh("umount", "-l", mnt));
  const path = join(mnt, "jobs.db");
  const s1 = await s.start({ storePath: path });
  const c = await s.connect(s1);
  const data = "x".repeat(200_000);
  const acked: string[] = [];
  let refused = false;
  for (let i = 0; i < 100 && !refused; i++) {
    c.send("SUBMIT_JOB_BG", "big", `big-${i}`, data);
    try {
      const [h] = await expectPacket(c, "JOB_CREATED");
      acked.push(h!);
    } catch (err) {
      assert.ok(c.ended, `expected the connection to close, got ${(err as Error).message}`);
      refused = true;
    }
  }
  assert.ok(refused, "the disk never filled up");
  assert.ok(acked.length > 0);
  assert.match(s1.stderr, /database or disk is full/);
  // The server still serves the others.
  const admin = await s.admin(s1);
  assert.equal((await statusOf(admin, "big"))?.total, acked.length);
  await s1.kill("SIGKILL");
  await sh("mount", "-o", "remount,size=32m", mnt);
  const s2 = await s.start({ storePath: path });
  const w = await s.worker(s2, "big");
  const got = await grabAll(w);
  assert.deepEqual(got.map((j) => j.handle), acked);
  assert.ok(got.every((j) => j.data === data));
});

// ------------------------------------------------------------ scheduled

Deno.test("store: epoch and SCHED jobs are listed by `show scheduled`, cancellable, survive kill -9 and run on time", async () => {
  await using s = await Scope.create();
  // The SCHED job runs at the start of the next minute: leave room for a restart first.
  const sec = new Date().getSeconds();
  if (sec >= 50) await delay((61 - sec) * 1000);
  const s1 = await s.start();
  const c = await s.connect(s1);
  const epoch = Math.ceil(Date.now() / 1000) + 3;
  const hEpoch = await submitEpoch(c, "timed", "ep-1", epoch, "epoch job");
  const hFar = await submitEpoch(c, "timed", "ep-far", epoch + 3600, "far job");
  const next = new Date();
  next.setSeconds(0, 0);
  next.setMinutes(next.getMinutes() + 1);
  const fields: [string, string, string, string, string] = [
    String(next.getMinutes()),
    String(next.getHours()),
    "*",
    "*",
    "*",
  ];
  const hSched = await submitSched(c, "timed", "sched-1", fields, "sched job");
  const hCancelSched = await submitSched(c, "timed", "sched-x", fields, "cancelled sched");
  const admin = await s.admin(s1);
  const row = (handle: string, at: number, unique: string) => ({
    handle,
    function: "timed",
    runAt: new Date(at),
    unique,
  });
  const listed = await admin.showScheduled();
  assert.deepEqual(
    listed.filter((r) => r.handle !== hCancelSched && r.handle !== hSched),
    [row(hEpoch, epoch * 1000, "ep-1"), row(hFar, (epoch + 3600) * 1000, "ep-far")],
  );
  assert.deepEqual(
    listed.filter((r) => r.handle === hCancelSched || r.handle === hSched)
      .sort((a, b) => a.unique.localeCompare(b.unique)),
    [row(hSched, next.getTime(), "sched-1"), row(hCancelSched, next.getTime(), "sched-x")],
  );
  await admin.cancelJob(hFar);
  await admin.cancelJob(hCancelSched);
  const kept = [row(hEpoch, epoch * 1000, "ep-1"), row(hSched, next.getTime(), "sched-1")];
  assert.deepEqual(await admin.showScheduled(), kept);
  await s1.kill("SIGKILL");

  const s2 = await s.start();
  const admin2 = await s.admin(s2);
  assert.deepEqual(await admin2.showScheduled(), kept, "replayed with their run-at times");
  const w = await s.worker(s2, "timed");
  for (const handle of [hFar, hCancelSched]) {
    w.send("GET_STATUS", handle);
    assert.deepEqual(await expectPacket(w, "STATUS_RES"), [handle, "0", "0", "0", "0"]);
  }
  w.send("GET_STATUS", hEpoch);
  assert.deepEqual(await expectPacket(w, "STATUS_RES"), [hEpoch, "1", "0", "0", "0"]);

  const first = await waitForJob(w, 10_000);
  assert.deepEqual(first.job, { handle: hEpoch, fn: "timed", unique: "ep-1", data: "epoch job" });
  const lateBy = first.at - epoch * 1000;
  assert.ok(lateBy >= -50 && lateBy <= 1000, `epoch job ran ${lateBy} ms after its time`);
  w.send("WORK_COMPLETE", hEpoch, "");
  assert.deepEqual(await admin2.showScheduled(), [kept[1]]);

  const second = await waitForJob(w, next.getTime() - Date.now() + 5000);
  assert.deepEqual(second.job, {
    handle: hSched,
    fn: "timed",
    unique: "sched-1",
    data: "sched job",
  });
  const schedLate = second.at - next.getTime();
  assert.ok(schedLate >= -50 && schedLate <= 1000, `SCHED job ran ${schedLate} ms after its time`);
  w.send("WORK_COMPLETE", hSched, "");
  await sync(w);
  assert.deepEqual(await admin2.showScheduled(), []);
  assert.equal((await statusOf(admin2, "timed"))?.total, 0);
  await s2.kill("SIGKILL");

  // Ran and completed: not replayed again.
  const s3 = await s.start();
  const admin3 = await s.admin(s3);
  assert.deepEqual(await admin3.showScheduled(), []);
  assert.equal((await statusOf(admin3, "timed"))?.total ?? 0, 0);
});

// --------------------------------------------------------- dead letters

/** A worker that grabs `handle` and disconnects holding it. */
async function dieHolding(port: number, fn: string, handle: string): Promise<void> {
  const w = await connect(port);
  try {
    w.send("CAN_DO", fn);
    const job = await grabOne(w);
    assert.equal(job.handle, handle);
  } finally {
    await w.close();
  }
}

Deno.test("store: a foreground job whose worker died --job-retries times fails (WORK_FAIL) and is a dead letter at once, kept across kill -9", async () => {
  await using s = await Scope.create();
  const args = ["--job-retries", "2"];
  const s1 = await s.start({ args });
  const c = await s.connect(s1);
  const h = await submit(c, "SUBMIT_JOB", "poison-fg", "dl-fg", "bad input");
  await dieHolding(s1.port, "poison-fg", h);
  await dieHolding(s1.port, "poison-fg", h);
  assert.deepEqual(await expectPacket(c, "WORK_FAIL"), [h]);
  const admin = await s.admin(s1);
  const letters = await admin.deadLetters();
  assert.equal(letters.length, 1, `show dead right after WORK_FAIL: ${JSON.stringify(letters)}`);
  assert.deepEqual(
    { ...letters[0]!, id: 0, failedAt: 0 },
    {
      id: 0,
      handle: h,
      function: "poison-fg",
      unique: "dl-fg",
      retries: 2,
      failedAt: 0,
      reason: "worker disconnected it",
    },
  );
  await s1.kill("SIGKILL");
  const s2 = await s.start({ args });
  const admin2 = await s.admin(s2);
  assert.deepEqual(await admin2.deadLetters(), letters, "dead letter kept across kill -9");
});

Deno.test("store: background dead letters are listed, survive kill -9, `retry dead ID` requeues durably, `purge dead` forgets", async () => {
  await using s = await Scope.create();
  const args = ["--job-retries", "2"];
  const s1 = await s.start({ args });
  const c = await s.connect(s1);
  const h = await submit(c, "SUBMIT_JOB_BG", "poison", "dl-bg-1", "bad data");
  await dieHolding(s1.port, "poison", h);
  await dieHolding(s1.port, "poison", h);
  const admin = await s.admin(s1);
  await waitFor("show dead to list the job", async () => (await admin.deadLetters()).length > 0);
  const letters = await admin.deadLetters();
  assert.equal(letters.length, 1);
  const letter = letters[0]!;
  assert.equal(letter.handle, h);
  assert.equal(letter.function, "poison");
  assert.equal(letter.unique, "dl-bg-1");
  assert.equal(letter.retries, 2);
  assert.equal(letter.reason, "worker disconnected it");
  assert.ok(Math.abs(letter.failedAt.getTime() - Date.now()) < 10_000, "failedAt is now");
  assert.equal((await statusOf(admin, "poison"))?.total, 0, "the failed job is gone");
  await s1.kill("SIGKILL");

  const s2 = await s.start({ args });
  const admin2 = await s.admin(s2);
  assert.deepEqual(await admin2.deadLetters(), letters, "dead letters survive kill -9");
  assert.equal((await statusOf(admin2, "poison"))?.total ?? 0, 0, "the dead job is not replayed");
  await assert.rejects(admin2.retryDeadLetters(987654), AdminError);
  assert.equal(await admin2.retryDeadLetters(letter.id), 1);
  assert.deepEqual(await admin2.deadLetters(), []);
  // Retried means queued durably: a kill -9 right after the OK keeps it.
  await s2.kill("SIGKILL");

  const s3 = await s.start({ args });
  const admin3 = await s.admin(s3);
  assert.deepEqual(await admin3.deadLetters(), [], "a retried letter stays retried");
  const w = await s.worker(s3, "poison");
  const job = await grabOne(w);
  assert.deepEqual({ ...job, handle: "" }, {
    handle: "",
    fn: "poison",
    unique: "dl-bg-1",
    data: "bad data",
  });
  w.send("WORK_COMPLETE", job.handle, "fixed");
  await sync(w);
  assert.equal(await grab(w), undefined);
  await w.close();

  // Two more dead letters: purge one by id, then all.
  const c3 = await s.connect(s3);
  const h2 = await submit(c3, "SUBMIT_JOB_BG", "poison", "dl-bg-2", "two");
  await dieHolding(s3.port, "poison", h2);
  await dieHolding(s3.port, "poison", h2);
  const h3 = await submit(c3, "SUBMIT_JOB_HIGH_BG", "poison", "dl-bg-3", "three");
  await dieHolding(s3.port, "poison", h3);
  await dieHolding(s3.port, "poison", h3);
  await waitFor("two dead letters", async () => (await admin3.deadLetters()).length === 2);
  const [d2, d3] = await admin3.deadLetters();
  assert.deepEqual([d2!.handle, d3!.handle], [h2, h3]);
  assert.ok(d2!.id !== letter.id && d3!.id !== letter.id, "dead letter ids are not reused");
  assert.equal(await admin3.purgeDeadLetters(d2!.id), 1);
  assert.deepEqual((await admin3.deadLetters()).map((d) => d.handle), [h3]);
  assert.equal(await admin3.purgeDeadLetters("all"), 1);
  assert.deepEqual(await admin3.deadLetters(), []);
  assert.equal(await admin3.purgeDeadLetters("all"), 0);
  await s3.kill("SIGKILL");

  const s4 = await s.start({ args });
  const admin4 = await s.admin(s4);
  assert.deepEqual(await admin4.deadLetters(), [], "purged letters stay purged");
  assert.equal((await statusOf(admin4, "poison"))?.total ?? 0, 0);
});

Deno.test("store: retry counts survive kill -9, so --job-retries counts deaths across restarts", async () => {
  await using s = await Scope.create();
  const args = ["--job-retries", "2"];
  const s1 = await s.start({ args });
  const c = await s.connect(s1);
  const h = await submit(c, "SUBMIT_JOB_BG", "flaky", "fl-1", "data");
  await dieHolding(s1.port, "flaky", h);
  const admin = await s.admin(s1);
  await waitFor(
    "the job to be requeued with 1 retry",
    async () => (await admin.showJobs()).some((j) => j.handle === h && j.retries === 1),
  );
  await s1.kill("SIGKILL");

  const s2 = await s.start({ args });
  const admin2 = await s.admin(s2);
  assert.deepEqual(
    (await admin2.showJobs()).filter((j) => j.handle === h),
    [{ handle: h, retries: 1, ignored: false, background: true }],
  );
  await dieHolding(s2.port, "flaky", h);
  await waitFor("the job to be a dead letter", async () => (await admin2.deadLetters()).length > 0);
  const [letter] = await admin2.deadLetters();
  assert.equal(letter!.handle, h);
  assert.equal(letter!.retries, 2);
});

// ------------------------------------------------------------ bad stores

/** Names, sizes and bytes of every file in `dir`. */
async function snapshot(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) out.set(e.name, await Deno.readFile(join(dir, e.name)));
  }
  return out;
}

function assertSameFiles(
  before: Map<string, Uint8Array>,
  after: Map<string, Uint8Array>,
  what: string,
): void {
  assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort(), `${what}: files in dir`);
  for (const [name, bytes] of before) {
    const now = after.get(name)!;
    assert.ok(
      now.length === bytes.length && now.every((b, i) => b === bytes[i]),
      `${what}: ${name} changed (${bytes.length} -> ${now.length} bytes)`,
    );
  }
}

/** Exactly one non-empty stderr line, starting "error: " and naming `path`. */
function assertOneErrorLine(stderr: string, path: string, advice: RegExp): string {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  assert.equal(lines.length, 1, `expected one line on stderr, got ${lines.length}:\n${stderr}`);
  const line = lines[0]!;
  assert.match(line, /^error: /);
  assert.ok(line.includes(path), `the error names ${path}: ${line}`);
  assert.match(line, advice);
  return line;
}

/** A store file with one job in it, made by a server that stopped cleanly. */
async function makeStore(s: Scope, path = s.db): Promise<string> {
  const server = await s.start({ storePath: path });
  const c = await connect(server.port);
  try {
    await submit(c, "SUBMIT_JOB_BG", "kept", "k-1", "a job");
  } finally {
    await c.close();
  }
  const status = await server.kill("SIGTERM");
  assert.equal(status.code, 0, `clean stop: ${server.stderr}`);
  return path;
}

Deno.test("store: a file that is not a database: exit 1, one clear line, file untouched", async () => {
  await using s = await Scope.create();
  const text = "this is not a SQLite database, it is a shopping list\n".repeat(200);
  await Deno.writeTextFile(s.db, text);
  const before = await snapshot(s.dir);
  const r = await runServer({ storePath: s.db });
  assert.equal(r.code, 1, r.stderr);
  assertSameFiles(before, await snapshot(s.dir), "after a start on a non-database");
  assert.equal(r.stdout, "");
  assertOneErrorLine(r.stderr, s.db, /not a SQLite database|damaged/);
});

Deno.test("store: a damaged store (valid header, garbage pages): exit 1, one clear line, file untouched", async () => {
  await using s = await Scope.create();
  await makeStore(s);
  const bytes = await Deno.readFile(s.db);
  assert.ok(bytes.length >= 4096 * 2, `store has ${bytes.length} bytes`);
  // Keep the 100-byte header; garbage over the schema and every table page.
  for (let i = 100; i < bytes.length; i++) bytes[i] = (i * 131 + 17) & 0xff;
  await Deno.writeFile(s.db, bytes);
  const before = await snapshot(s.dir);
  const r = await runServer({ storePath: s.db });
  assert.equal(r.code, 1, r.stderr);
  assertSameFiles(before, await snapshot(s.dir), "after a start on a damaged store");
  assertOneErrorLine(r.stderr, s.db, /damaged|not a SQLite database|malformed|corrupt/);
});

Deno.test("store: a store locked by a running server: the second exits 1 with one clear line; files and first server untouched", async () => {
  await using s = await Scope.create();
  const s1 = await s.start();
  const c = await s.connect(s1);
  const h = await submit(c, "SUBMIT_JOB_BG", "lock", "", "before");
  const before = await snapshot(s.dir);
  const r = await runServer({ storePath: s.db });
  assert.equal(r.code, 1, r.stderr);
  assertSameFiles(before, await snapshot(s.dir), "after a second server tried the file");
  assertOneErrorLine(r.stderr, s.db, /locked|another process|another server/);
  // The first server still works and still owns its jobs.
  const h2 = await submit(c, "SUBMIT_JOB_BG", "lock", "", "after");
  await s1.kill("SIGKILL");
  const s2 = await s.start();
  const w = await s.worker(s2, "lock");
  assert.deepEqual((await grabAll(w)).map((j) => j.handle), [h, h2]);
});

Deno.test("store: no write permission from Deno (--allow-read only): exit 1, one clear line, file untouched", async (t) => {
  await using s = await Scope.create();
  await makeStore(s);
  await t.step("existing store", async () => {
    const before = await snapshot(s.dir);
    const r = await runServer({
      storePath: s.db,
      permissions: ["--allow-net", `--allow-read=${s.dir}`, "--allow-env", "--allow-sys"],
    });
    assert.equal(r.code, 1, r.stderr);
    assertSameFiles(before, await snapshot(s.dir), "after a start without write permission");
    assertOneErrorLine(r.stderr, s.db, /--allow-write/);
  });
  await t.step("new store file", async () => {
    const fresh = join(s.dir, "new.db");
    const r = await runServer({
      storePath: fresh,
      permissions: ["--allow-net", `--allow-read=${s.dir}`, "--allow-env", "--allow-sys"],
    });
    assert.equal(r.code, 1, r.stderr);
    assertOneErrorLine(r.stderr, fresh, /--allow-write/);
    await assert.rejects(Deno.stat(fresh), Deno.errors.NotFound);
  });
  await t.step("no read permission either", async () => {
    const r = await runServer({ storePath: s.db, permissions: ["--allow-net"] });
    assert.equal(r.code, 1, r.stderr);
    assertOneErrorLine(r.stderr, s.db, /--allow-read/);
  });
});

async function sh(cmd: string, ...args: string[]): Promise<{ ok: boolean; err: string }> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
    return { ok: out.success, err: new TextDecoder().decode(out.stderr).trim() };
  } catch (err) {
    return { ok: false, err: (err as Error).message };
  }
}

Deno.test("store: a really read-only file or directory (chattr +i, read-only mount): exit 1, one clear line, file untouched", async (t) => {
  await using s = await Scope.create();
  await t.step("immutable file (chattr +i)", async () => {
    const path = await makeStore(s, join(s.dir, "immutable.db"));
    const set = await sh("chattr", "+i", path);
    if (!set.ok) {
      console.log(`  skipped: cannot chattr +i here (${set.err || "failed"})`);
      return;
    }
    s.defer(async () => void await sh("chattr", "-i", path));
    try {
      const before = await snapshot(s.dir);
      const r = await runServer({ storePath: path });
      assert.equal(r.code, 1, r.stderr);
      assertSameFiles(before, await snapshot(s.dir), "after a start on an immutable file");
      assertOneErrorLine(r.stderr, path, /not writable|read-only|readonly|permission/i);
    } finally {
      await sh("chattr", "-i", path);
    }
  });
  await t.step("read-only mount", async () => {
    const mnt = join(s.dir, "ro");
    await Deno.mkdir(mnt);
    const mounted = await sh("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt);
    if (!mounted.ok) {
      console.log(`  skipped: cannot mount a tmpfs here (${mounted.err || "failed"})`);
      return;
    }
    s.defer(async () => void await sh("umount", "-l", mnt));
    try {
      const path = await makeStore(s, join(mnt, "jobs.db"));
      const ro = await sh("mount", "-o", "remount,ro", mnt);
      if (!ro.ok) {
        console.log(`  skipped: cannot remount read-only (${ro.err || "failed"})`);
        return;
      }
      const before = await snapshot(mnt);
      const r = await runServer({ storePath: path });
      assert.equal(r.code, 1, r.stderr);
      assertSameFiles(before, await snapshot(mnt), "after a start on a read-only mount");
      const fresh = join(mnt, "new.db");
      const r2 = await runServer({ storePath: fresh });
      assert.equal(r2.code, 1, r2.stderr);
      assertOneErrorLine(r2.stderr, fresh, /not writable|read-only|readonly|permission/i);
      assertOneErrorLine(r.stderr, path, /not writable|read-only|readonly|permission/i);
    } finally {
      await sh("umount", "-l", mnt);
    }
  });
});

Deno.test("store: a store path in a missing directory, or a directory: exit 1, one clear line", async () => {
  await using s = await Scope.create();
  const missing = join(s.dir, "no-such-dir", "jobs.db");
  const r = await runServer({ storePath: missing });
  assert.equal(r.code, 1, r.stderr);
  assertOneErrorLine(r.stderr, missing, /director|exist/);
  await assert.rejects(Deno.stat(join(s.dir, "no-such-dir")), Deno.errors.NotFound);
  const r2 = await runServer({ storePath: s.dir });
  assert.equal(r2.code, 1, r2.stderr);
  assertOneErrorLine(r2.stderr, s.dir, /director|not a (SQLite )?database|file/);
});

Deno.test("store: a store written by a newer version (schema): exit 1, one clear line, file untouched", async () => {
  await using s = await Scope.create();
  await makeStore(s);
  const db = new DatabaseSync(s.db);
  db.exec("PRAGMA user_version = 99");
  db.close();
  const before = await snapshot(s.dir);
  const r = await runServer({ storePath: s.db });
  assert.equal(r.code, 1, r.stderr);
  assertSameFiles(before, await snapshot(s.dir), "after a start on a newer store");
  assertOneErrorLine(r.stderr, s.db, /newer version/);
});

Deno.test("store: an empty (0-byte) file is a new store", async () => {
  await using s = await Scope.create();
  await Deno.writeFile(s.db, new Uint8Array(0));
  const s1 = await s.start();
  const c = await s.connect(s1);
  const h = await submit(c, "SUBMIT_JOB_BG", "empty", "", "first");
  await s1.kill("SIGKILL");
  const s2 = await s.start();
  const w = await s.worker(s2, "empty");
  assert.deepEqual((await grabAll(w)).map((j) => j.handle), [h]);
});

Deno.test("store: bad --store and --store-sync values are usage errors (exit 2)", async () => {
  for (const args of [["--store", "sqlite:"], ["--store", "mysql://x"], ["--store-sync", "x"]]) {
    const r = await runServer({ args });
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /--store/);
  }
});

// ------------------------------------------------------------ in-process

Deno.test("store: serve({ store: 'sqlite:...' }) in-process keeps jobs across a shutdown, refuses a locked or damaged file", async () => {
  await using s = await Scope.create();
  const options = {
    hostname: "127.0.0.1",
    port: 0,
    handleHost: "test",
    store: `sqlite:${s.db}`,
  };
  const a = serve(options);
  let h: string;
  try {
    const c = await connect(a.addr.port);
    try {
      h = await submit(c, "SUBMIT_JOB_BG", "inproc", "ip-1", "in process");
    } finally {
      await c.close();
    }
  } finally {
    await a.shutdown();
  }

  const b = serve(options);
  try {
    // A second server on the same file, in the same process: refused.
    assert.throws(
      () => serve({ ...options }),
      (err: Error) => {
        assert.equal(err.name, "StoreError");
        assert.ok(err.message.includes(s.db), err.message);
        assert.match(err.message, /locked|another/);
        return true;
      },
    );
    const w = await connect(b.addr.port);
    try {
      w.send("CAN_DO", "inproc");
      assert.deepEqual(await grabOne(w), {
        handle: h,
        fn: "inproc",
        unique: "ip-1",
        data: "in process",
      });
      w.send("WORK_COMPLETE", h, "");
      await sync(w);
    } finally {
      await closeAll(w);
    }
  } finally {
    await b.shutdown();
  }

  const junk = join(s.dir, "junk.db");
  await Deno.writeTextFile(junk, "junk ".repeat(1000));
  const before = await snapshot(s.dir);
  assert.throws(
    () => serve({ ...options, store: `sqlite:${junk}` }),
    (err: Error) => {
      assert.equal(err.name, "StoreError");
      assert.ok(err.message.includes(junk), err.message);
      return true;
    },
  );
  assert.throws(() => serve({ ...options, store: "sqlite:" }), TypeError);
  assertSameFiles(before, await snapshot(s.dir), "after serve() on a junk file");

  // The completed job is gone, the file reopens.
  const d = serve(options);
  try {
    const admin = await connect(d.addr.port);
    try {
      const status = await admin.admin("status");
      assert.ok(!status.some((l) => l.startsWith("inproc\t") && !l.startsWith("inproc\t0")));
    } finally {
      await admin.close();
    }
  } finally {
    await d.shutdown();
  }
});

Deno.test("store: ServerProcess helper reports a server that fails to start", async () => {
  await assert.rejects(
    ServerProcess.start({ args: ["--port", "bogus"] }),
    (err: Error) => err.name === "ServerStartError" && /exited with code 2/.test(err.message),
  );
});

// ------------------------------------------------------- real clients

const HAVE_PHP = requirePeer("php-gearman", [
  "php",
  "-r",
  "exit(class_exists('GearmanClient') ? 0 : 1);",
]);
const HAVE_GEARMAN_CLI = requirePeer("gearman tools", ["gearman", "-H"]);

Deno.test({
  name:
    "store: background jobs from PHP's GearmanClient and the gearman CLI (libgearman gives each a UUID unique id) survive kill -9 and run once each",
  ignore: !HAVE_PHP || !HAVE_GEARMAN_CLI,
  async fn() {
    await using s = await Scope.create();
    const s1 = await s.start();
    const php = await run("php", [
      "-r",
      `$c = new GearmanClient(); $c->addServer("127.0.0.1", ${s1.port});
       for ($i = 0; $i < 300; $i++) {
         $c->doBackground("from_peers", "php-$i");
         if ($c->returnCode() != GEARMAN_SUCCESS) { fwrite(STDERR, "failed at $i\\n"); exit(1); }
       }`,
    ], { timeoutMs: 60_000 });
    assertSucceeded(php, "php doBackground loop");
    for (let i = 0; i < 5; i++) {
      const cli = await run(
        "gearman",
        ["-h", "127.0.0.1", "-p", String(s1.port), "-b", "-f", "from_peers", `cli-${i}`],
        { timeoutMs: 30_000 },
      );
      assertSucceeded(cli, "gearman -b");
    }
    // Every submit was acknowledged, hence committed: kill at once.
    await s1.kill("SIGKILL");

    const s2 = await s.start();
    const w = await s.worker(s2, "from_peers");
    const got: Assigned[] = [];
    for (let job = await grab(w); job !== undefined; job = await grab(w)) {
      got.push(job);
      w.send("WORK_COMPLETE", job.handle, "");
    }
    const want = [
      ...Array.from({ length: 300 }, (_, i) => `php-${i}`),
      ...Array.from({ length: 5 }, (_, i) => `cli-${i}`),
    ];
    assert.deepEqual(got.map((j) => j.data), want, "each job once, in submit order");
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    assert.ok(
      got.every((j) => uuid.test(j.unique)),
      "replayed with the unique ids they were given",
    );
    assert.equal(new Set(got.map((j) => j.unique)).size, got.length);
    await sync(w);
    // All done: nothing comes back after another restart.
    await s2.kill("SIGKILL");
    const s3 = await s.start();
    const w3 = await s.worker(s3, "from_peers");
    assert.equal(await grab(w3), undefined);
  },
});
