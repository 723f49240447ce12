// Job semantics across connections: unique coalescing, priorities,
// requeues, retries, relaying to several clients, the exceptions option.

import assert from "node:assert/strict";
import {
  admin,
  connect,
  expectPacket,
  grab,
  grabNothing,
  startServer,
  submit,
  sync,
  waitFor,
  worker,
} from "./_helpers.ts";

Deno.test("server: SUBMIT_JOB coalesces on unique across submit types and priorities", async () => {
  await using server = startServer();
  await using c1 = await connect(server);
  await using c2 = await connect(server);
  await using c3 = await connect(server);
  const h = await submit(c1, "SUBMIT_JOB", "co", "K", "first");
  assert.equal(await submit(c2, "SUBMIT_JOB_HIGH", "co", "K", "second"), h);
  assert.equal(await submit(c3, "SUBMIT_JOB_BG", "co", "K", "third"), h);
  assert.equal(await submit(c3, "SUBMIT_JOB_LOW_BG", "co", "K", "fourth"), h);
  assert.equal(await submit(c3, "SUBMIT_JOB_HIGH_BG", "co", "K", "fifth"), h);
  // The same unique under another function is another job.
  const other = await submit(c3, "SUBMIT_JOB_BG", "co2", "K", "other");
  assert.notEqual(other, h);
  await using w = await worker(server, "co");
  assert.deepEqual(await grab(w, "GRAB_JOB_UNIQ"), {
    handle: h,
    fn: "co",
    unique: "K",
    data: "first",
  });
  await grabNothing(w);
  w.send("WORK_COMPLETE", h, "done");
  assert.deepEqual(await expectPacket(c1, "WORK_COMPLETE"), [h, "done"]);
  assert.deepEqual(await expectPacket(c2, "WORK_COMPLETE"), [h, "done"]);
  assert.ok(await c3.silentFor(100), "the background submitter is told nothing");
});

Deno.test("server: a submit with the unique of a running job joins it and gets its result", async () => {
  await using server = startServer();
  await using c1 = await connect(server);
  await using c2 = await connect(server);
  await using w = await worker(server, "run");
  const h = await submit(c1, "SUBMIT_JOB", "run", "R", "x");
  await grab(w);
  assert.equal(await submit(c2, "SUBMIT_JOB", "run", "R", "x"), h);
  w.send("WORK_DATA", h, "part");
  w.send("WORK_COMPLETE", h, "all");
  for (const c of [c1, c2]) {
    assert.deepEqual(await expectPacket(c, "WORK_DATA"), [h, "part"]);
    assert.deepEqual(await expectPacket(c, "WORK_COMPLETE"), [h, "all"]);
  }
  await grabNothing(w);
});

Deno.test("server: unique '-' coalesces on equal data and not on different data", async () => {
  await using server = startServer();
  await using c = await connect(server);
  const a = await submit(c, "SUBMIT_JOB_BG", "dash", "-", "same");
  assert.equal(await submit(c, "SUBMIT_JOB_BG", "dash", "-", "same"), a);
  const b = await submit(c, "SUBMIT_JOB_BG", "dash", "-", "other");
  assert.notEqual(b, a);
  // A job whose unique is the data itself is not the '-' job.
  const d = await submit(c, "SUBMIT_JOB_BG", "dash", "same", "same");
  assert.notEqual(d, a);
  await using w = await worker(server, "dash");
  const got = new Set<string>();
  for (let i = 0; i < 3; i++) got.add((await grab(w)).handle);
  assert.deepEqual(got, new Set([a, b, d]));
  await grabNothing(w);
});

Deno.test("server: an empty unique never coalesces", async () => {
  await using server = startServer();
  await using c = await connect(server);
  const a = await submit(c, "SUBMIT_JOB_BG", "e", "", "same");
  const b = await submit(c, "SUBMIT_JOB_BG", "e", "", "same");
  const f = await submit(c, "SUBMIT_JOB", "e", "", "same");
  assert.equal(new Set([a, b, f]).size, 3);
  await using w = await worker(server, "e");
  for (let i = 0; i < 3; i++) await grab(w);
  await grabNothing(w);
});

Deno.test("server: a 65-byte unique is rejected with ERROR; 64 bytes is accepted whole", async () => {
  await using server = startServer();
  await using c = await connect(server);
  c.send("SUBMIT_JOB_BG", "ul", "x".repeat(65), "d");
  assert.deepEqual(await expectPacket(c, "ERROR"), [
    "ARGUMENT_TOO_LARGE",
    "Unique value too large",
  ]);
  c.send("SUBMIT_JOB", "ul", "y".repeat(65), "d");
  assert.equal((await expectPacket(c, "ERROR"))[0], "ARGUMENT_TOO_LARGE");
  const u64 = "u".repeat(64);
  const h = await submit(c, "SUBMIT_JOB_BG", "ul", u64, "d");
  assert.equal(await submit(c, "SUBMIT_JOB_BG", "ul", u64, "d"), h, "and it coalesces");
  await using w = await worker(server, "ul");
  assert.deepEqual(await grab(w, "GRAB_JOB_UNIQ"), { handle: h, fn: "ul", unique: u64, data: "d" });
  await grabNothing(w);
});

Deno.test("server: after a job completes (or fails) its unique is free again", async () => {
  await using server = startServer();
  await using c = await connect(server);
  await using w = await worker(server, "again");
  const h1 = await submit(c, "SUBMIT_JOB", "again", "U", "1");
  await grab(w);
  w.send("WORK_COMPLETE", h1, "r1");
  await expectPacket(c, "WORK_COMPLETE");
  const h2 = await submit(c, "SUBMIT_JOB", "again", "U", "2");
  assert.notEqual(h2, h1);
  assert.deepEqual(await grab(w), { handle: h2, fn: "again", data: "2" });
  w.send("WORK_FAIL", h2);
  await expectPacket(c, "WORK_FAIL");
  const h3 = await submit(c, "SUBMIT_JOB_BG", "again", "U", "3");
  assert.notEqual(h3, h2);
  assert.deepEqual(await grab(w), { handle: h3, fn: "again", data: "3" });
});

Deno.test("server: workers get high, then normal, then low jobs; FIFO within a priority", async () => {
  await using server = startServer();
  await using c = await connect(server);
  const submits = [
    ["SUBMIT_JOB_LOW_BG", "L1"],
    ["SUBMIT_JOB_BG", "N1"],
    ["SUBMIT_JOB_HIGH_BG", "H1"],
    ["SUBMIT_JOB_LOW", "L2"],
    ["SUBMIT_JOB", "N2"],
    ["SUBMIT_JOB_HIGH", "H2"],
    ["SUBMIT_JOB_BG", "N3"],
  ] as const;
  for (const [type, data] of submits) await submit(c, type, "prio", "", data);
  await using w = await worker(server, "prio");
  const order: string[] = [];
  for (let i = 0; i < submits.length; i++) order.push((await grab(w)).data);
  assert.deepEqual(order, ["H1", "H2", "N1", "N2", "N3", "L1", "L2"]);
  await grabNothing(w);
});

Deno.test("server: a job held by a worker that disconnects goes to another worker, same handle", async () => {
  await using server = startServer();
  await using c = await connect(server);
  await using a = await connect(server);
  const h = await submit(c, "SUBMIT_JOB", "rq", "", "payload");
  const w1 = await worker(server, "rq");
  assert.equal((await grab(w1)).handle, h);
  await using w2 = await worker(server, "rq");
  w2.send("PRE_SLEEP");
  await sync(w2);
  assert.ok(await w2.silentFor(50));
  await w1.close();
  await expectPacket(w2, "NOOP");
  const lines = await admin(a, "show jobs");
  assert.deepEqual(lines, [`${h}\t1\t0\t0`], "show jobs counts the retry");
  assert.deepEqual(await grab(w2), { handle: h, fn: "rq", data: "payload" });
  assert.ok(await c.silentFor(50), "the client is not told about the requeue");
  w2.send("WORK_COMPLETE", h, "ok");
  assert.deepEqual(await expectPacket(c, "WORK_COMPLETE"), [h, "ok"]);
  await grabNothing(w2);
  assert.ok(await c.silentFor(50));
});

Deno.test("server: a worker that sends CANT_DO holding a job gives it back", async () => {
  await using server = startServer();
  await using c = await connect(server);
  const h = await submit(c, "SUBMIT_JOB", "cd", "", "x");
  await using w1 = await worker(server, "cd", "keep");
  assert.equal((await grab(w1)).handle, h);
  w1.send("CANT_DO", "cd");
  await sync(w1);
  // Its late result is refused.
  w1.send("WORK_COMPLETE", h, "late");
  assert.equal((await expectPacket(w1, "ERROR"))[0], "JOB_NOT_FOUND");
  await using w2 = await worker(server, "cd");
  assert.deepEqual(await grab(w2), { handle: h, fn: "cd", data: "x" });
  w2.send("WORK_COMPLETE", h, "ok");
  assert.deepEqual(await expectPacket(c, "WORK_COMPLETE"), [h, "ok"]);
  assert.ok(await c.silentFor(50));
});

Deno.test("server: a worker that sends RESET_ABILITIES holding a job gives it back", async () => {
  await using server = startServer();
  await using c = await connect(server);
  const h = await submit(c, "SUBMIT_JOB", "ra", "", "x");
  await using w1 = await worker(server, "ra");
  assert.equal((await grab(w1)).handle, h);
  w1.send("RESET_ABILITIES");
  await sync(w1);
  await using w2 = await worker(server, "ra");
  assert.equal((await grab(w2)).handle, h);
});

Deno.test("server: with jobRetries 2 the client gets WORK_FAIL after two worker deaths", async () => {
  await using server = startServer({ jobRetries: 2 });
  await using c = await connect(server);
  await using a = await connect(server);
  const h = await submit(c, "SUBMIT_JOB", "jr", "", "poison");
  const w1 = await worker(server, "jr");
  assert.equal((await grab(w1)).handle, h);
  await w1.close();
  await waitFor("the first requeue", async () => {
    const lines = await admin(a, "show jobs");
    return lines.length === 1 && lines[0] === `${h}\t1\t0\t0`;
  });
  assert.ok(await c.silentFor(50), "no WORK_FAIL after one death");
  const w2 = await worker(server, "jr");
  assert.equal((await grab(w2)).handle, h);
  await w2.close();
  assert.deepEqual(await expectPacket(c, "WORK_FAIL"), [h]);
  assert.deepEqual(await admin(a, "show jobs"), []);
  await using w3 = await worker(server, "jr");
  await grabNothing(w3);
});

Deno.test("server: two clients waiting on one unique both get WORK_STATUS, WORK_DATA, WORK_WARNING, WORK_COMPLETE", async () => {
  await using server = startServer();
  await using c1 = await connect(server);
  await using c2 = await connect(server);
  await using w = await worker(server, "two");
  const h = await submit(c1, "SUBMIT_JOB", "two", "U", "d");
  assert.equal(await submit(c2, "SUBMIT_JOB", "two", "U", "d"), h);
  await grab(w);
  w.send("WORK_STATUS", h, "1", "2");
  w.send("WORK_DATA", h, "data1");
  w.send("WORK_WARNING", h, "warn1");
  w.send("WORK_COMPLETE", h, "result");
  for (const c of [c1, c2]) {
    assert.deepEqual(await expectPacket(c, "WORK_STATUS"), [h, "1", "2"]);
    assert.deepEqual(await expectPacket(c, "WORK_DATA"), [h, "data1"]);
    assert.deepEqual(await expectPacket(c, "WORK_WARNING"), [h, "warn1"]);
    assert.deepEqual(await expectPacket(c, "WORK_COMPLETE"), [h, "result"]);
  }
  assert.ok(await c1.silentFor(50));
  assert.ok(await c2.silentFor(1));
});

Deno.test("server: WORK_EXCEPTION goes to clients with OPTION_REQ exceptions; the others get WORK_FAIL (as gearmand)", async () => {
  await using server = startServer();
  await using exc = await connect(server);
  await using plain = await connect(server);
  await using late = await connect(server);
  await using w = await worker(server, "ex");
  exc.send("OPTION_REQ", "exceptions");
  assert.deepEqual(await expectPacket(exc, "OPTION_RES"), ["exceptions"]);
  const h = await submit(exc, "SUBMIT_JOB", "ex", "U", "d");
  assert.equal(await submit(plain, "SUBMIT_JOB", "ex", "U", "d"), h);
  assert.equal(await submit(late, "SUBMIT_JOB", "ex", "U", "d"), h);
  // The option is per connection and counts when the exception is relayed.
  late.send("OPTION_REQ", "exceptions");
  await expectPacket(late, "OPTION_RES");
  await grab(w);
  w.send("WORK_EXCEPTION", h, "boom");
  assert.deepEqual(await expectPacket(exc, "WORK_EXCEPTION"), [h, "boom"]);
  assert.deepEqual(await expectPacket(late, "WORK_EXCEPTION"), [h, "boom"]);
  const [failed] = await expectPacket(plain, "WORK_FAIL");
  assert.equal(failed!.replace(/\0$/, ""), h);
  // gearmand 1.1.20 sends nothing after WORK_EXCEPTION: the job is over.
  assert.ok(await exc.silentFor(100), "no WORK_FAIL after WORK_EXCEPTION");
  assert.ok(await late.silentFor(1));
  assert.ok(await plain.silentFor(1));
  w.send("WORK_FAIL", h);
  assert.equal((await expectPacket(w, "ERROR"))[0], "JOB_NOT_FOUND");
  await grabNothing(w);
});

Deno.test("server: a foreground job whose client left before it ran is not handed out", async () => {
  await using server = startServer();
  const c = await connect(server);
  await using keep = await connect(server);
  await submit(c, "SUBMIT_JOB", "gone", "", "nobody waits");
  const kept = await submit(keep, "SUBMIT_JOB_BG", "gone", "", "background");
  await c.close();
  await using w = await worker(server, "gone");
  // Give the server a moment to see the close.
  await waitFor("the client to be gone", async () => {
    const lines = await admin(keep, "workers");
    return lines.length === 2;
  });
  assert.deepEqual(await grab(w), { handle: kept, fn: "gone", data: "background" });
  await grabNothing(w);
});

Deno.test("server: WORK_* for a job held by another worker is refused and does not disturb it", async () => {
  await using server = startServer();
  await using c = await connect(server);
  await using owner = await worker(server, "own");
  await using thief = await worker(server, "own");
  const h = await submit(c, "SUBMIT_JOB", "own", "", "x");
  const queued = await submit(c, "SUBMIT_JOB", "own", "", "y");
  assert.equal((await grab(owner)).handle, h);
  for (const type of ["WORK_COMPLETE", "WORK_DATA", "WORK_STATUS"] as const) {
    if (type === "WORK_STATUS") thief.send(type, h, "1", "2");
    else thief.send(type, h, "stolen");
    assert.equal((await expectPacket(thief, "ERROR"))[0], "JOB_NOT_FOUND");
  }
  thief.send("WORK_COMPLETE", queued, "not yours");
  assert.equal((await expectPacket(thief, "ERROR"))[0], "JOB_NOT_FOUND");
  assert.ok(await c.silentFor(50));
  owner.send("WORK_COMPLETE", h, "mine");
  assert.deepEqual(await expectPacket(c, "WORK_COMPLETE"), [h, "mine"]);
  assert.deepEqual(await grab(thief), { handle: queued, fn: "own", data: "y" });
});

Deno.test("server: a queued job is not stranded when the woken worker leaves without grabbing", async () => {
  await using server = startServer();
  await using c = await connect(server);
  const a = await worker(server, "wake");
  const b = await worker(server, "wake");
  for (const w of [a, b]) {
    w.send("PRE_SLEEP");
    await sync(w);
  }
  const h = await submit(c, "SUBMIT_JOB", "wake", "", "x");
  // gearmand wakes every sleeping worker; at least one must be woken.
  await waitFor("a NOOP", async () => !(await a.silentFor(0)) || !(await b.silentFor(0)));
  const woken = (await a.silentFor(0)) ? b : a;
  const other = woken === a ? b : a;
  await expectPacket(woken, "NOOP");
  await woken.close();
  try {
    await expectPacket(other, "NOOP", 1000);
    assert.deepEqual(await grab(other), { handle: h, fn: "wake", data: "x" });
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("server: a sleeping worker gets one NOOP for several jobs until it grabs", async () => {
  await using server = startServer();
  await using c = await connect(server);
  await using w = await worker(server, "once");
  w.send("PRE_SLEEP");
  await sync(w);
  await submit(c, "SUBMIT_JOB_BG", "once", "", "1");
  await submit(c, "SUBMIT_JOB_BG", "once", "", "2");
  await expectPacket(w, "NOOP");
  assert.ok(await w.silentFor(100), "no second NOOP before a GRAB");
  await grab(w);
  await grab(w);
  await grabNothing(w);
});

Deno.test("server: a sleeping worker that registers a new function is woken for its jobs", async () => {
  await using server = startServer();
  await using c = await connect(server);
  await using w = await worker(server, "first");
  w.send("PRE_SLEEP");
  w.send("CAN_DO", "second");
  await sync(w);
  const h = await submit(c, "SUBMIT_JOB_BG", "second", "", "x");
  await expectPacket(w, "NOOP");
  assert.equal((await grab(w)).handle, h);
});

Deno.test("server: every job a dead worker held is requeued, and its WORK_STATUS is forgotten", async () => {
  await using server = startServer();
  await using c = await connect(server);
  const h1 = await submit(c, "SUBMIT_JOB", "many", "", "1");
  const h2 = await submit(c, "SUBMIT_JOB", "many", "", "2");
  const w1 = await worker(server, "many");
  await grab(w1);
  await grab(w1);
  w1.send("WORK_STATUS", h1, "5", "10");
  await expectPacket(c, "WORK_STATUS");
  await w1.close();
  await using w2 = await worker(server, "many");
  await waitFor("the requeue", async () => {
    c.send("GET_STATUS", h1);
    return (await expectPacket(c, "STATUS_RES"))[2] === "0";
  });
  c.send("GET_STATUS", h1);
  assert.deepEqual(await expectPacket(c, "STATUS_RES"), [h1, "1", "0", "0", "0"]);
  const got = new Set([(await grab(w2)).handle, (await grab(w2)).handle]);
  assert.deepEqual(got, new Set([h1, h2]));
});

Deno.test("server: a client that leaves while its job runs does not disturb the worker", async () => {
  await using server = startServer();
  const c = await connect(server);
  await using w = await worker(server, "left");
  const h = await submit(c, "SUBMIT_JOB", "left", "", "x");
  await grab(w);
  await c.close();
  await using a = await connect(server);
  await waitFor("the client to go", async () => (await admin(a, "workers")).length === 2);
  w.send("WORK_DATA", h, "d");
  w.send("WORK_COMPLETE", h, "r");
  assert.ok(await w.silentFor(100), "no ERROR for the worker");
  assert.deepEqual(await admin(a, "show jobs"), []);
});
