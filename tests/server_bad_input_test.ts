// Bad input on one connection must not disturb anyone else: each attack
// runs while another client and worker push jobs through the server, and a
// job queued before it must still be there afterwards and run exactly once.

import assert from "node:assert/strict";
import { VERSION } from "../src/version.ts";
import {
  admin,
  concat,
  connect,
  expectClosed,
  expectPacket,
  grab,
  grabNothing,
  header,
  type PacketClient,
  startServer,
  statusOf,
  submit,
  sync,
  waitFor,
  worker,
} from "./_helpers.ts";

/** Connections the harness keeps open besides the attacker's. */
const BYSTANDERS = 4;

async function survives(
  attack: (bad: PacketClient) => Promise<void>,
): Promise<void> {
  await using server = startServer();
  await using a = await connect(server);
  await using waiting = await connect(server);
  const queued = await submit(waiting, "SUBMIT_JOB", "queued", "", "before");
  await using client = await connect(server);
  await using w = await worker(server, "live");
  await using bad = await connect(server);

  let stop = false;
  let rounds = 0;
  const traffic = async () => {
    while (!stop || rounds < 3) {
      const h = await submit(client, "SUBMIT_JOB", "live", "", `job ${rounds}`);
      assert.deepEqual(await grab(w), { handle: h, fn: "live", data: `job ${rounds}` });
      w.send("WORK_STATUS", h, "1", "2");
      w.send("WORK_DATA", h, "part");
      w.send("WORK_COMPLETE", h, `done ${rounds}`);
      assert.deepEqual(await expectPacket(client, "WORK_STATUS"), [h, "1", "2"]);
      assert.deepEqual(await expectPacket(client, "WORK_DATA"), [h, "part"]);
      assert.deepEqual(await expectPacket(client, "WORK_COMPLETE"), [h, `done ${rounds}`]);
      rounds++;
    }
  };
  await Promise.all([
    traffic(),
    attack(bad).finally(() => (stop = true)),
  ]);
  assert.ok(rounds >= 3);

  // Closed attackers are forgotten; open ones are still there.
  const expected = BYSTANDERS + (bad.ended ? 0 : 1);
  await waitFor(
    `${expected} open connections`,
    () => server.connectionCount === expected,
  );
  assert.ok(await waiting.silentFor(20));

  // The job queued before the attack is still there and runs exactly once.
  assert.deepEqual(await statusOf(a, "queued"), [1, 0, 0]);
  await using w2 = await worker(server, "queued");
  assert.deepEqual(await grab(w2), { handle: queued, fn: "queued", data: "before" });
  w2.send("WORK_COMPLETE", queued, "after");
  assert.deepEqual(await expectPacket(waiting, "WORK_COMPLETE"), [queued, "after"]);
  await grabNothing(w2);
  assert.ok(await waiting.silentFor(50), "the job ran once");
  assert.deepEqual(await statusOf(a, "queued"), [0, 0, 1]);
}

Deno.test("server: bad magic gets ERROR and a close; others are unaffected", async () => {
  await survives(async (bad) => {
    bad.sendRaw(concat(header("\0XYZ", 18, 12), "queued\0\0evil"));
    await expectPacket(bad, "ERROR");
    await expectClosed(bad);
  });
});

Deno.test("server: a truncated packet then close is dropped; others are unaffected", async () => {
  await survives(async (bad) => {
    // A SUBMIT_JOB_BG for "queued" announcing 100 bytes, of which 12 come.
    bad.sendRaw(concat(header("\0REQ", 18, 100), "queued\0\0evil"));
    assert.ok(await bad.silentFor(100), "nothing comes back for an unfinished packet");
    await bad.close();
  });
});

Deno.test("server: unknown packet type 99 gets ERROR and a close; others are unaffected", async () => {
  await survives(async (bad) => {
    bad.send(99, "whatever");
    await expectPacket(bad, "ERROR");
    await expectClosed(bad);
  });
});

Deno.test("server: a size field of 0xFFFFFFFF gets ERROR and a close at once; others are unaffected", async () => {
  await survives(async (bad) => {
    const started = Date.now();
    bad.sendRaw(concat(header("\0REQ", 18, 0xffffffff), "queued\0\0evil"));
    await expectPacket(bad, "ERROR", 2000);
    await expectClosed(bad, 2000);
    assert.ok(Date.now() - started < 2000, "without waiting for the body");
  });
});

Deno.test("server: admin garbage gets an ERR line and the connection stays; others are unaffected", async () => {
  await survives(async (bad) => {
    bad.sendRaw("garbage \x01\x02 in a line\n");
    assert.match(await bad.receiveLine(), /^ERR /);
    // Bad magic not starting with NUL is a text line too (as gearmand).
    bad.sendRaw(concat("XREQ", header("\0\0\0\0", 18, 3).subarray(4), "abc\n"));
    assert.match(await bad.receiveLine(), /^ERR /);
    assert.deepEqual(await admin(bad, "version"), [`OK ${VERSION}`]);
  });
});

Deno.test("server: a response packet sent as a request gets ERROR and the connection stays; others are unaffected", async () => {
  await survives(async (bad) => {
    for (
      const type of [
        "JOB_CREATED",
        "NOOP",
        "NO_JOB",
        "JOB_ASSIGN",
        "ECHO_RES",
        "STATUS_RES",
      ] as const
    ) {
      bad.send(type, "H:test:1", "x");
      assert.deepEqual(await expectPacket(bad, "ERROR"), [
        "INVALID_COMMAND",
        "Command not expected",
      ]);
    }
    await sync(bad);
  });
});

Deno.test("server: a request with \\0RES magic gets ERROR INVALID_MAGIC and the connection stays (as gearmand); others are unaffected", async () => {
  await survives(async (bad) => {
    bad.sendRaw(concat(header("\0RES", 18, 12), "queued\0\0evil"));
    assert.deepEqual(await expectPacket(bad, "ERROR"), ["INVALID_MAGIC", "Request magic expected"]);
    bad.sendRaw(concat(header("\0RES", 16, 2), "hi"));
    assert.equal((await expectPacket(bad, "ERROR"))[0], "INVALID_MAGIC");
    await sync(bad);
  });
});
