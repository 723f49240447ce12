// Admin access: state-changing admin commands need loopback or the admin
// token. Driven through AdminCommands with a peer that reports a remote
// address, so no traffic leaves loopback.

import assert from "node:assert/strict";
import { AdminCommands, type AdminHost } from "../src/server/admin_commands.ts";
import { Dispatcher } from "../src/server/dispatcher.ts";
import { PacketWriter } from "../src/protocol/packet_writer.ts";
import type { Peer, PeerConnection } from "../src/server/peer.ts";

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

Deno.test("admin: restricted read access needs the token for read-only commands too", () => {
  const { admin, peer } = setup({ adminToken: "s3cret", readAccess: "restricted" }, "198.51.100.7");
  assert.match(admin.run(peer, "status"), /^ERR PERMISSION_DENIED/);
  assert.equal(admin.run(peer, "auth s3cret"), "OK\r\n");
  assert.equal(admin.run(peer, "status"), ".\n");
});
