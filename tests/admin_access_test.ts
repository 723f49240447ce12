// Admin access: state-changing admin commands need loopback or the admin
// token; read-only ones what --admin-read says. Other hosts are played by
// driving AdminCommands with a peer that reports a remote address, so no
// traffic leaves loopback; loopback rules are also checked over real sockets.

import assert from "node:assert/strict";
import { AdminCommands, type AdminHost } from "../src/server/admin_commands.ts";
import { Dispatcher } from "../src/server/dispatcher.ts";
import { PacketWriter } from "../src/protocol/packet_writer.ts";
import type { Peer, PeerConnection } from "../src/server/peer.ts";
import { type AdminReadAccess, serve } from "../server.ts";
import { AdminClient, AdminError, PacketClient } from "../client.ts";

function setup(host: Partial<AdminHost>, remoteHost: string) {
  const d = new Dispatcher({ handleHost: "test" });
  const refusals: string[] = [];
  const admin = new AdminCommands(d, {
    version: "0.0.0",
    shutdown() {},
    logLevel: () => "INFO",
    refused: (_p, command, why) => refusals.push(`${command}: ${why}`),
    ...host,
  });
  const w = new PacketWriter();
  const conn: PeerConnection = {
    out: () => w,
    close() {},
    cork() {},
    uncork() {},
    abort() {},
    holdReply() {
      throw new Error("only a cluster holds replies; this dispatcher has none");
    },
    releaseReply() {},
    remote: `${remoteHost}:5555`,
    remoteHost,
    closed: false,
  };
  const peer: Peer = d.addPeer(conn);
  return { d, admin, peer, refusals };
}

Deno.test("admin: from another host, state-changing commands need the token; read-only ones are open", () => {
  const { d, admin, peer, refusals } = setup({ adminToken: "s3cret" }, "203.0.113.5");
  assert.equal(admin.run(peer, "status"), ".\n");
  assert.match(admin.run(peer, "create function f"), /^ERR PERMISSION_DENIED .*auth\+TOKEN/);
  assert.equal(d.functions.has("f"), false, "the refused command did nothing");
  assert.match(admin.run(peer, "auth nope"), /^ERR PERMISSION_DENIED Wrong\+admin\+token/);
  assert.equal(admin.run(peer, "auth s3cret"), "OK\r\n");
  assert.equal(admin.run(peer, "create function f"), "OK\r\n");
  assert.equal(d.functions.has("f"), true);
  assert.equal(refusals.length, 2);
});

Deno.test("admin: the token may be sent as the first line", () => {
  const { admin, peer } = setup({ adminToken: "s3cret" }, "203.0.113.5");
  assert.equal(admin.run(peer, "s3cret"), "OK\r\n");
  assert.equal(admin.run(peer, "maxqueue f 3"), "OK\r\n");
});

Deno.test("admin: without a token, other hosts may not change state; loopback may", () => {
  const remote = setup({}, "203.0.113.5");
  assert.match(remote.admin.run(remote.peer, "shutdown"), /^ERR PERMISSION_DENIED .*loopback/);
  for (const host of ["127.0.0.1", "::1", "::ffff:127.0.0.1"]) {
    const local = setup({}, host);
    assert.equal(local.admin.run(local.peer, "create function g"), "OK\r\n", host);
  }
});

Deno.test("admin: read access loopback refuses read-only commands from other hosts until the token is sent", () => {
  const { admin, peer, refusals } = setup(
    { adminToken: "s3cret", readAccess: "loopback" },
    "198.51.100.7",
  );
  for (const cmd of ["status", "workers", "show jobs", "version"]) {
    assert.match(
      admin.run(peer, cmd),
      /^ERR PERMISSION_DENIED .*loopback\+only.*auth\+TOKEN/,
      cmd,
    );
  }
  assert.deepEqual(refusals.map((r) => r.split(":")[0]), ["status", "workers", "show", "version"]);
  assert.equal(admin.run(peer, "auth s3cret"), "OK\r\n");
  assert.equal(admin.run(peer, "status"), ".\n");
  for (const host of ["127.0.0.1", "::1"]) {
    const local = setup({ readAccess: "loopback" }, host);
    assert.equal(local.admin.run(local.peer, "status"), ".\n", host);
    assert.equal(local.admin.run(local.peer, "create function g"), "OK\r\n", host);
  }
});

Deno.test("admin: read access token needs the token for every command, from loopback too", () => {
  const { d, admin, peer, refusals } = setup(
    { adminToken: "s3cret", readAccess: "token" },
    "127.0.0.1",
  );
  assert.match(admin.run(peer, "status"), /^ERR PERMISSION_DENIED .*--admin-read\+token/);
  assert.match(admin.run(peer, "create function f"), /^ERR PERMISSION_DENIED .*auth\+TOKEN/);
  assert.equal(d.functions.has("f"), false, "the refused command did nothing");
  assert.equal(refusals.length, 2);
  assert.equal(admin.run(peer, "auth s3cret"), "OK\r\n");
  assert.equal(admin.run(peer, "status"), ".\n");
  assert.equal(admin.run(peer, "create function f"), "OK\r\n");
  assert.equal(d.functions.has("f"), true);
});

Deno.test("admin: a refused line that is no command is not written to the log as sent", () => {
  const { admin, peer, refusals } = setup(
    { adminToken: "s3cret", readAccess: "token" },
    "127.0.0.1",
  );
  // A mistyped token sent as the first line.
  assert.match(admin.run(peer, "s3cre7"), /^ERR PERMISSION_DENIED/);
  assert.equal(refusals.length, 1);
  assert.doesNotMatch(refusals[0]!, /s3cre7/);
});

Deno.test("server: adminRead token refuses admin commands from loopback until auth TOKEN", async () => {
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    adminToken: "s3cret",
    adminRead: "token",
  });
  const port = server.addr.port;
  await using conn = await PacketClient.connect({ port });
  const [refused] = await conn.admin("status");
  assert.match(refused!, /^ERR PERMISSION_DENIED /);
  assert.deepEqual(await conn.admin("auth s3cret"), ["OK"]);
  conn.send("CAN_DO", "f");
  assert.deepEqual(await conn.admin("status"), ["f\t0\t0\t1"]);
  // AdminClient sends its token first.
  await assert.rejects(
    async () => {
      await using admin = await AdminClient.connect(`127.0.0.1:${port}`);
      await admin.status();
    },
    AdminError,
  );
  await using admin = await AdminClient.connect(`127.0.0.1:${port}`, { token: "s3cret" });
  assert.deepEqual((await admin.status()).map((s) => s.function), ["f"]);
  // Gearman packets are not affected.
  conn.send("ECHO_REQ", "x");
  assert.equal((await conn.receive()).name, "ECHO_RES");
});

Deno.test("server: adminRead loopback serves loopback connections", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0, adminRead: "loopback" });
  await using admin = await AdminClient.connect(`127.0.0.1:${server.addr.port}`);
  assert.deepEqual(await admin.status(), []);
  await admin.command("create function g");
  assert.deepEqual((await admin.status()).map((s) => s.function), ["g"]);
});

Deno.test("serve() refuses adminRead token without an adminToken, and unknown adminRead values", () => {
  assert.throws(
    () => serve({ hostname: "127.0.0.1", port: 0, adminRead: "token" }),
    /adminRead "token" needs an adminToken/,
  );
  assert.throws(
    () =>
      serve({
        hostname: "127.0.0.1",
        port: 0,
        adminRead: "nobody" as unknown as AdminReadAccess,
      }),
    /adminRead must be "any", "loopback" or "token"/,
  );
});
