// Behaviour of each binary packet, over real sockets.

import assert from "node:assert/strict";
import {
  admin,
  connect,
  expectPacket,
  grab,
  grabNothing,
  startServer,
  statusOf,
  submit,
  sync,
  waitFor,
  worker,
} from "./_helpers.ts";

Deno.test("server: CAN_DO worker grabs a job; JOB_ASSIGN carries handle, function and data", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "reverse");
  const handle = await submit(client, "SUBMIT_JOB", "reverse", "", "te\0st");
  const job = await grab(w);
  assert.deepEqual(job, { handle, fn: "reverse", data: "te\0st" });
  w.send("WORK_COMPLETE", handle, "ts\0et");
  assert.deepEqual(await expectPacket(client, "WORK_COMPLETE"), [handle, "ts\0et"]);
  await grabNothing(w);
});

Deno.test("server: GRAB_JOB gets NO_JOB without CAN_DO, for other functions, or with nothing queued", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await submit(client, "SUBMIT_JOB_BG", "other", "", "x");
  await using none = await connect(server);
  await grabNothing(none);
  await using w = await worker(server, "mine");
  await grabNothing(w);
  w.send("GRAB_JOB_UNIQ");
  await expectPacket(w, "NO_JOB");
  w.send("GRAB_JOB_ALL");
  await expectPacket(w, "NO_JOB");
});

Deno.test("server: CANT_DO stops a worker getting that function's jobs", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using a = await connect(server);
  await using w = await worker(server, "fa", "fb");
  assert.deepEqual(await statusOf(a, "fa"), [0, 0, 1]);
  w.send("CANT_DO", "fa");
  await sync(w);
  assert.deepEqual(await statusOf(a, "fa"), [0, 0, 0]);
  assert.deepEqual(await statusOf(a, "fb"), [0, 0, 1]);
  await submit(client, "SUBMIT_JOB_BG", "fa", "", "a-job");
  await grabNothing(w);
  const hb = await submit(client, "SUBMIT_JOB_BG", "fb", "", "b-job");
  assert.equal((await grab(w)).handle, hb);
});

Deno.test("server: RESET_ABILITIES forgets every function of the worker", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using a = await connect(server);
  await using w = await worker(server, "r1", "r2");
  w.send("RESET_ABILITIES");
  await sync(w);
  assert.deepEqual(await statusOf(a, "r1"), [0, 0, 0]);
  assert.deepEqual(await statusOf(a, "r2"), [0, 0, 0]);
  await submit(client, "SUBMIT_JOB_BG", "r1", "", "x");
  await submit(client, "SUBMIT_JOB_BG", "r2", "", "y");
  await grabNothing(w);
  // It can register again afterwards.
  w.send("CAN_DO", "r2");
  assert.equal((await grab(w)).data, "y");
});

Deno.test("server: PRE_SLEEP worker is woken with NOOP when a job arrives, not before", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "sleepy");
  w.send("PRE_SLEEP");
  await sync(w);
  assert.ok(await w.silentFor(100), "no NOOP while nothing is queued");
  await submit(client, "SUBMIT_JOB_BG", "unrelated", "", "x");
  assert.ok(await w.silentFor(100), "no NOOP for another function's job");
  const handle = await submit(client, "SUBMIT_JOB", "sleepy", "", "wake");
  await expectPacket(w, "NOOP");
  assert.deepEqual(await grab(w), { handle, fn: "sleepy", data: "wake" });
});

Deno.test("server: PRE_SLEEP with a job already queued gets NOOP at once", async () => {
  await using server = startServer();
  await using client = await connect(server);
  const handle = await submit(client, "SUBMIT_JOB_BG", "ready", "", "queued");
  await using w = await worker(server, "ready");
  w.send("PRE_SLEEP");
  await expectPacket(w, "NOOP", 1000);
  assert.equal((await grab(w)).handle, handle);
});

Deno.test("server: GRAB_JOB_UNIQ gets JOB_ASSIGN_UNIQ with the unique id", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "uq");
  const handle = await submit(client, "SUBMIT_JOB", "uq", "my-unique", "payload\0bin");
  assert.deepEqual(await grab(w, "GRAB_JOB_UNIQ"), {
    handle,
    fn: "uq",
    unique: "my-unique",
    data: "payload\0bin",
  });
  const h2 = await submit(client, "SUBMIT_JOB_BG", "uq", "", "no-unique");
  assert.deepEqual(await grab(w, "GRAB_JOB_UNIQ"), {
    handle: h2,
    fn: "uq",
    unique: "",
    data: "no-unique",
  });
});

Deno.test("server: GRAB_JOB_ALL gets JOB_ASSIGN_UNIQ for a plain job (as gearmand)", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "all");
  const handle = await submit(client, "SUBMIT_JOB", "all", "u-all", "data");
  assert.deepEqual(await grab(w, "GRAB_JOB_ALL"), {
    handle,
    fn: "all",
    unique: "u-all",
    data: "data",
  });
});

Deno.test("server: GRAB_JOB_ALL gets JOB_ASSIGN_ALL with the reducer of a reduce job (as gearmand)", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "fred");
  client.send("SUBMIT_REDUCE_JOB_BACKGROUND", "fred", "RU", "reducer", "unused", "rdata");
  const [handle] = await expectPacket(client, "JOB_CREATED");
  w.send("GRAB_JOB_ALL");
  assert.deepEqual(await expectPacket(w, "JOB_ASSIGN_ALL"), [
    handle,
    "fred",
    "RU",
    "reducer",
    "rdata",
  ]);
});

Deno.test("server: all six SUBMIT_JOB variants create jobs; only foreground ones report back", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using a = await connect(server);
  const types = [
    "SUBMIT_JOB",
    "SUBMIT_JOB_BG",
    "SUBMIT_JOB_HIGH",
    "SUBMIT_JOB_HIGH_BG",
    "SUBMIT_JOB_LOW",
    "SUBMIT_JOB_LOW_BG",
  ] as const;
  const handles = new Map<string, string>();
  for (const t of types) handles.set(t, await submit(client, t, "six", "", t));
  assert.equal(new Set(handles.values()).size, 6, "every submit gets its own handle");
  assert.deepEqual(await admin(a, "prioritystatus"), ["six\t2\t2\t2\t0"]);
  await using w = await worker(server, "six");
  const order: string[] = [];
  for (let i = 0; i < 6; i++) {
    const job = await grab(w);
    assert.equal(job.handle, handles.get(job.data));
    order.push(job.data);
    w.send("WORK_COMPLETE", job.handle, `done ${job.data}`);
  }
  assert.deepEqual(order, [
    "SUBMIT_JOB_HIGH",
    "SUBMIT_JOB_HIGH_BG",
    "SUBMIT_JOB",
    "SUBMIT_JOB_BG",
    "SUBMIT_JOB_LOW",
    "SUBMIT_JOB_LOW_BG",
  ]);
  for (const t of ["SUBMIT_JOB_HIGH", "SUBMIT_JOB", "SUBMIT_JOB_LOW"]) {
    assert.deepEqual(await expectPacket(client, "WORK_COMPLETE"), [handles.get(t), `done ${t}`]);
  }
  assert.ok(await client.silentFor(100), "background jobs send nothing to the submitter");
});

Deno.test("server: SUBMIT_JOB_EPOCH in the future is held until its time; one in the past runs now", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "ep");
  const epoch = Math.floor(Date.now() / 1000) + 2;
  client.send("SUBMIT_JOB_EPOCH", "ep", "", String(epoch), "future");
  const [future] = await expectPacket(client, "JOB_CREATED");
  client.send("SUBMIT_JOB_EPOCH", "ep", "", String(epoch - 3600), "past");
  const [past] = await expectPacket(client, "JOB_CREATED");
  assert.notEqual(future, past);
  assert.deepEqual(await grab(w), { handle: past, fn: "ep", data: "past" });
  await grabNothing(w);
  client.send("GET_STATUS", future!);
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), [future, "1", "0", "0", "0"]);
  w.send("PRE_SLEEP");
  await sync(w);
  assert.ok(await w.silentFor(Math.max(0, epoch * 1000 - Date.now() - 200)), "not woken early");
  await expectPacket(w, "NOOP", 2000);
  const job = await grab(w);
  assert.ok(Date.now() >= epoch * 1000, "handed out at or after its epoch");
  assert.deepEqual(job, { handle: future, fn: "ep", data: "future" });
});

Deno.test("server: SUBMIT_JOB_SCHED is accepted, not run now, and known to GET_STATUS", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "sched");
  const minute = (new Date().getMinutes() + 30) % 60;
  client.send("SUBMIT_JOB_SCHED", "sched", "", String(minute), "", "", "", "", "later");
  const [handle] = await expectPacket(client, "JOB_CREATED");
  await grabNothing(w);
  w.send("PRE_SLEEP");
  assert.ok(await w.silentFor(150), "a scheduled job does not wake workers");
  client.send("GET_STATUS", handle!);
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), [handle, "1", "0", "0", "0"]);
});

Deno.test("server: WORK_STATUS, WORK_DATA, WORK_WARNING and WORK_COMPLETE are relayed verbatim in order", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "relay");
  const handle = await submit(client, "SUBMIT_JOB", "relay", "", "in");
  await grab(w);
  w.send("WORK_STATUS", handle, "3", "10");
  w.send("WORK_DATA", handle, "chunk\x001");
  w.send("WORK_WARNING", handle, "careful");
  w.send("WORK_DATA", handle, "");
  w.send("WORK_COMPLETE", handle, "result");
  assert.deepEqual(await expectPacket(client, "WORK_STATUS"), [handle, "3", "10"]);
  assert.deepEqual(await expectPacket(client, "WORK_DATA"), [handle, "chunk\x001"]);
  assert.deepEqual(await expectPacket(client, "WORK_WARNING"), [handle, "careful"]);
  assert.deepEqual(await expectPacket(client, "WORK_DATA"), [handle, ""]);
  assert.deepEqual(await expectPacket(client, "WORK_COMPLETE"), [handle, "result"]);
  // The job is gone: a second WORK_COMPLETE is an error for the worker only.
  w.send("WORK_COMPLETE", handle, "again");
  assert.equal((await expectPacket(w, "ERROR"))[0], "JOB_NOT_FOUND");
  assert.ok(await client.silentFor(100));
});

Deno.test("server: WORK_FAIL is relayed and ends the job", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "failing");
  const handle = await submit(client, "SUBMIT_JOB", "failing", "", "in");
  await grab(w);
  w.send("WORK_FAIL", handle);
  assert.deepEqual(await expectPacket(client, "WORK_FAIL"), [handle]);
  client.send("GET_STATUS", handle);
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), [handle, "0", "0", "0", "0"]);
  await grabNothing(w);
});

Deno.test("server: GET_STATUS of unknown, queued, running (with WORK_STATUS) and finished jobs", async () => {
  await using server = startServer();
  await using client = await connect(server);
  client.send("GET_STATUS", "H:test:999999");
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), ["H:test:999999", "0", "0", "0", "0"]);
  client.send("GET_STATUS", "garbage");
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), ["garbage", "0", "0", "0", "0"]);
  const handle = await submit(client, "SUBMIT_JOB_BG", "gs", "", "x");
  client.send("GET_STATUS", handle);
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), [handle, "1", "0", "0", "0"]);
  await using w = await worker(server, "gs");
  await grab(w);
  client.send("GET_STATUS", handle);
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), [handle, "1", "1", "0", "0"]);
  w.send("WORK_STATUS", handle, "3", "10");
  await sync(w);
  client.send("GET_STATUS", handle);
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), [handle, "1", "1", "3", "10"]);
  w.send("WORK_COMPLETE", handle, "");
  await sync(w);
  client.send("GET_STATUS", handle);
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), [handle, "0", "0", "0", "0"]);
  // A new job does not make the old handle known again.
  const next = await submit(client, "SUBMIT_JOB_BG", "gs", "", "y");
  assert.notEqual(next, handle);
  client.send("GET_STATUS", handle);
  assert.deepEqual(await expectPacket(client, "STATUS_RES"), [handle, "0", "0", "0", "0"]);
  w.send("WORK_COMPLETE", handle, "stale");
  assert.equal((await expectPacket(w, "ERROR"))[0], "JOB_NOT_FOUND");
});

Deno.test("server: GET_STATUS_UNIQUE answers STATUS_RES_UNIQUE with the client count", async () => {
  await using server = startServer();
  await using c1 = await connect(server);
  await using c2 = await connect(server);
  await using q = await connect(server);
  const h = await submit(c1, "SUBMIT_JOB", "gsu", "myu", "d");
  assert.equal(await submit(c2, "SUBMIT_JOB", "gsu", "myu", "d"), h);
  q.send("GET_STATUS_UNIQUE", "myu");
  assert.deepEqual(await expectPacket(q, "STATUS_RES_UNIQUE"), ["myu", "1", "0", "0", "0", "2"]);
  await using w = await worker(server, "gsu");
  await grab(w);
  w.send("WORK_STATUS", h, "3", "10");
  await expectPacket(c1, "WORK_STATUS");
  await expectPacket(c2, "WORK_STATUS");
  q.send("GET_STATUS_UNIQUE", "myu");
  assert.deepEqual(await expectPacket(q, "STATUS_RES_UNIQUE"), ["myu", "1", "1", "3", "10", "2"]);
  // A waiting client that goes away no longer counts.
  await c2.close();
  let last: string[] = [];
  await waitFor("the client count to drop", async () => {
    q.send("GET_STATUS_UNIQUE", "myu");
    last = await expectPacket(q, "STATUS_RES_UNIQUE");
    return last[5] !== "2";
  });
  assert.deepEqual(last, ["myu", "1", "1", "3", "10", "1"]);
  q.send("GET_STATUS_UNIQUE", "nope");
  assert.deepEqual(await expectPacket(q, "STATUS_RES_UNIQUE"), ["nope", "0", "0", "0", "0", "0"]);
  const bg = await submit(q, "SUBMIT_JOB_BG", "gsu", "bgu", "d");
  assert.notEqual(bg, h);
  q.send("GET_STATUS_UNIQUE", "bgu");
  assert.deepEqual(await expectPacket(q, "STATUS_RES_UNIQUE"), ["bgu", "1", "0", "0", "0", "0"]);
});

Deno.test("server: ECHO_REQ is answered with ECHO_RES carrying the same bytes (empty, small, 1 MiB)", async () => {
  await using server = startServer();
  await using conn = await connect(server);
  conn.send("ECHO_REQ");
  assert.deepEqual(await expectPacket(conn, "ECHO_RES"), [""]);
  conn.send("ECHO_REQ", "hello\0world");
  assert.deepEqual(await expectPacket(conn, "ECHO_RES"), ["hello\0world"]);
  const big = new Uint8Array(1 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 8)) & 0xff;
  conn.send("ECHO_REQ", big);
  const reply = await conn.receive(5000);
  assert.equal(reply.name, "ECHO_RES");
  assert.equal(reply.args[0]!.length, big.length);
  assert.ok(reply.args[0]!.every((b, i) => b === big[i]), "1 MiB echoed byte for byte");
});

Deno.test("server: OPTION_REQ exceptions gets OPTION_RES; an unknown option gets ERROR and the connection stays", async () => {
  await using server = startServer();
  await using conn = await connect(server);
  conn.send("OPTION_REQ", "exceptions");
  assert.deepEqual(await expectPacket(conn, "OPTION_RES"), ["exceptions"]);
  conn.send("OPTION_REQ", "bogus");
  const [code] = await expectPacket(conn, "ERROR");
  assert.equal(code, "UNKNOWN_OPTION");
  await sync(conn);
});

Deno.test("server: SET_CLIENT_ID is shown in the workers listing", async () => {
  await using server = startServer();
  await using w = await connect(server);
  w.send("SET_CLIENT_ID", "my-worker-1");
  w.send("CAN_DO", "fa");
  w.send("CAN_DO", "fb");
  await sync(w);
  await using a = await connect(server);
  const lines = await admin(a, "workers");
  const mine = lines.filter((l) => / my-worker-1 :/.test(l));
  assert.equal(mine.length, 1, `one line for the worker in ${JSON.stringify(lines)}`);
  const m = /^(\d+) 127\.0\.0\.1 my-worker-1 :(.*)$/.exec(mine[0]!);
  assert.ok(m, `workers line format: ${mine[0]}`);
  assert.deepEqual(m[2]!.trim().split(" ").sort(), ["fa", "fb"]);
  // SET_CLIENT_ID sends no reply.
  assert.ok(await w.silentFor(50));
});

Deno.test("server: CAN_DO_TIMEOUT (ms) takes the job back from a worker that runs past it", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await connect(server);
  w.send("CAN_DO_TIMEOUT", "slow", "300");
  const handle = await submit(client, "SUBMIT_JOB", "slow", "", "x");
  const started = Date.now();
  assert.equal((await grab(w)).handle, handle);
  await using other = await worker(server, "slow");
  other.send("PRE_SLEEP");
  await sync(other);
  assert.ok(await other.silentFor(150), "not taken back before the timeout");
  // As gearmand: the job is requeued (same handle), the client is told nothing.
  await expectPacket(other, "NOOP", 2000);
  assert.ok(Date.now() - started >= 290, "taken back no earlier than the timeout");
  assert.deepEqual(await grab(other), { handle, fn: "slow", data: "x" });
  // The first worker's late result goes nowhere.
  w.send("WORK_COMPLETE", handle, "late");
  assert.equal((await expectPacket(w, "ERROR"))[0], "JOB_NOT_FOUND");
  other.send("WORK_COMPLETE", handle, "on time");
  assert.deepEqual(await expectPacket(client, "WORK_COMPLETE"), [handle, "on time"]);
  assert.ok(await client.silentFor(50));
  // A job finished in time is left alone.
  const h2 = await submit(client, "SUBMIT_JOB", "slow", "", "y");
  other.send("CANT_DO", "slow");
  assert.equal((await grab(w)).handle, h2);
  w.send("WORK_COMPLETE", h2, "quick");
  assert.deepEqual(await expectPacket(client, "WORK_COMPLETE"), [h2, "quick"]);
  assert.ok(await client.silentFor(400), "nothing after a completed job's timeout");
  await grabNothing(w);
});

Deno.test("server: CAN_DO_TIMEOUT with jobRetries 1 fails the job with WORK_FAIL to the client", async () => {
  await using server = startServer({ jobRetries: 1 });
  await using client = await connect(server);
  await using w = await connect(server);
  w.send("CAN_DO_TIMEOUT", "slow", "200");
  const handle = await submit(client, "SUBMIT_JOB", "slow", "", "x");
  const started = Date.now();
  assert.equal((await grab(w)).handle, handle);
  assert.ok(await client.silentFor(100), "not failed before the timeout");
  assert.deepEqual(await expectPacket(client, "WORK_FAIL", 2000), [handle]);
  assert.ok(Date.now() - started >= 190, "failed no earlier than the timeout");
  w.send("WORK_COMPLETE", handle, "late");
  assert.equal((await expectPacket(w, "ERROR"))[0], "JOB_NOT_FOUND");
  assert.ok(await client.silentFor(50));
  await grabNothing(w);
});

Deno.test("server: job payloads of every size come back byte for byte while jobs come and go", async () => {
  await using server = startServer();
  await using client = await connect(server);
  await using w = await worker(server, "bytes");
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const sizes = [0, 1, 100, 4000, 60_000, 65_536, 65_537, 70_000, 300_000, 1_048_577];
  const payload = (i: number, size: number) => {
    const b = new Uint8Array(size);
    for (let k = 0; k < size; k++) b[k] = (i * 31 + k * 7 + (k >> 9)) & 0xff;
    return b;
  };
  const expected = new Map<string, { unique: string; data: Uint8Array }>();
  const check = async () => {
    w.send("GRAB_JOB_UNIQ");
    const p = await w.receive();
    assert.equal(p.name, "JOB_ASSIGN_UNIQ");
    const handle = new TextDecoder().decode(p.args[0]);
    const want = expected.get(handle);
    assert.ok(want, `unknown handle ${handle}`);
    assert.equal(new TextDecoder().decode(p.args[2]), want.unique);
    const data = p.args[3]!;
    assert.equal(data.length, want.data.length, `size of ${want.unique}`);
    assert.ok(data.every((b, k) => b === want.data[k]), `bytes of ${want.unique}`);
    expected.delete(handle);
    w.send("WORK_COMPLETE", handle, "");
    await expectPacket(client, "WORK_COMPLETE");
  };
  for (let i = 0; i < 80; i++) {
    const size = i < sizes.length ? sizes[i]! : sizes[rand(sizes.length - 1)]!;
    const data = payload(i, size);
    const unique = rand(2) === 0 ? "" : `u${i}-${"x".repeat(rand(60))}`;
    const handle = await submit(client, "SUBMIT_JOB", "bytes", unique, data);
    expected.set(handle, { unique, data });
    if (rand(3) === 0) await check();
  }
  while (expected.size > 0) await check();
  await grabNothing(w);
});
