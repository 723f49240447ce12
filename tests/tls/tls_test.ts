// TLS on the Gearman port: certificates made here with openssl (a private
// CA and a server certificate for 127.0.0.1/localhost), our Client, Worker
// and AdminClient over TLS, and `openssl s_client` speaking the admin
// protocol through it.

import assert from "node:assert/strict";
import { serve } from "../../server.ts";
import { AdminClient, Client, ConnectionError } from "../../client.ts";
import { Worker } from "../../worker.ts";
import { GloomMaster, GloomWorker } from "../../gloom.ts";
import { makeCa, makeCert, opensslAvailable, sClient } from "./_openssl.ts";

const haveOpenssl = await opensslAvailable("tls_test");

/** A CA, and a server certificate it signed for 127.0.0.1 and localhost. */
async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const ca = await makeCa(dir, "ca");
  const server = await makeCert(
    dir,
    ca,
    "127.0.0.1",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
  );
  return { ca: ca.cert, cert: server.cert, key: server.key };
}

Deno.test({
  name: "tls: Client, Worker and AdminClient run jobs over TLS; a client without the CA is refused",
  ignore: !haveOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gearman-tls-" });
    try {
      const { ca, cert, key } = await makeCertificates(dir);
      await using server = serve({ hostname: "127.0.0.1", port: 0, tls: { cert, key } });
      const servers = [`127.0.0.1:${server.addr.port}`];
      const tls = { caCerts: [ca] };
      await using worker = new Worker({ servers, tls, clientId: "tls-worker" });
      worker.register("reverse", (job) => [...job.text()].reverse().join(""));
      worker.start();
      await using client = new Client({ servers, tls });
      assert.equal((await client.run("reverse", "secure")).text(), "eruces");

      await using admin = await AdminClient.connect(servers[0]!, { tls });
      const workers = await admin.workers();
      assert.ok(
        workers.some((w) => w.clientId === "tls-worker" && w.functions.includes("reverse")),
      );

      // Without the private CA the certificate is not trusted: a clear ConnectionError.
      await using untrusting = new Client({ servers, tls: {}, connectTimeoutMs: 3000 });
      await assert.rejects(untrusting.echo("x"), (err: unknown) => {
        assert.ok(err instanceof ConnectionError);
        assert.match(err.message, /TLS|certificate/i);
        return true;
      });

      // openssl s_client speaks the admin protocol through the TLS port.
      const out = await sClient(servers[0]!, `${dir}/ca.pem`, "status\r\n", /^\.$/m);
      assert.match(out, /^reverse\t0\t0\t1$/m);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("tls: a server that takes the TCP connection and never answers the handshake fails the Client's and AdminClient's connect in bounded time", async () => {
  // A plain TCP listener that accepts and then says nothing.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of listener) held.push(c);
  })();
  try {
    const client = new Client({
      servers: [`127.0.0.1:${listener.addr.port}`],
      tls: {},
      connectTimeoutMs: 300,
    });
    try {
      const started = Date.now();
      await assert.rejects(client.echo("x"), (err: unknown) => {
        assert.ok(err instanceof ConnectionError, String(err));
        assert.match(err.message, /no TLS handshake in 300 ms/);
        return true;
      });
      // Generous: the point is that it ends at all (it used to wait forever).
      assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
      await assert.rejects(
        AdminClient.connect(`127.0.0.1:${listener.addr.port}`, { tls: {}, timeoutMs: 300 }),
        (err: unknown) => {
          assert.ok(err instanceof ConnectionError, String(err));
          assert.match(err.message, /no answer in 300 ms \(TLS handshake\)/);
          return true;
        },
      );
    } finally {
      await client.close();
    }
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const c of held) c.close();
  }
});

Deno.test({
  name:
    "tls: http.tls (--http-tls) serves the HTTP endpoint over HTTPS with the server's certificate; plain HTTP and an untrusting client get nothing",
  ignore: !haveOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gearman-https-" });
    try {
      const { ca, cert, key } = await makeCertificates(dir);
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert, key },
        http: { hostname: "127.0.0.1", port: 0, tls: true },
        adminToken: "s3cret-token",
      });
      const port = server.httpAddr!.port;
      const client = Deno.createHttpClient({ caCerts: [ca] });
      try {
        const health = await fetch(`https://127.0.0.1:${port}/healthz`, { client });
        assert.equal(health.status, 200);
        await health.body?.cancel();
        const drain = await fetch(`https://127.0.0.1:${port}/api/drain`, {
          client,
          method: "POST",
          headers: { authorization: "Bearer wrong" },
        });
        assert.equal(drain.status, 401, "the token check still applies over HTTPS");
        await drain.body?.cancel();
      } finally {
        client.close();
      }
      // Plain HTTP to the HTTPS port, and HTTPS without trusting the CA, fail.
      await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
      await assert.rejects(fetch(`https://127.0.0.1:${port}/healthz`));
      // Without a certificate there is nothing to serve HTTPS with.
      assert.throws(
        () => serve({ hostname: "127.0.0.1", port: 0, http: { port: 0, tls: true } }),
        /http\.tls \(--http-tls\) needs tls\.cert and tls\.key/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "tls: gloom.tls (--gloom-tls) serves the Gloom ports over TLS; GloomMaster and GloomWorker with tls run a job, a plain or untrusting one does not get in",
  ignore: !haveOpenssl,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gearman-gloom-tls-" });
    try {
      const { ca, cert, key } = await makeCertificates(dir);
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert, key },
        gloom: { masterPort: 0, workerPort: 0, tls: true },
      });
      const { master: m, worker: w } = server.gloomAddrs!;
      const tls = { caCerts: [ca] };
      await using worker = await GloomWorker.connect({ port: w.port, tls });
      worker.join("upper", (body) => String(body).toUpperCase());
      await using master = await GloomMaster.connect({ port: m.port, tls });
      assert.equal(await master.submit("upper", "id-1", "secret"), "SECRET");

      // Without TLS, the port says nothing a Gloom client understands.
      const plain = await GloomMaster.connect({ port: m.port });
      await assert.rejects(
        plain.submit("upper", "id-2", "x", { signal: AbortSignal.timeout(3000) }),
      );
      await plain.close();
      // Without the CA, the handshake fails with a clear error.
      await assert.rejects(
        GloomMaster.connect({ port: m.port, tls: {} }),
        /Cannot connect to Gloom 127\.0\.0\.1:\d+ with TLS/,
      );
      assert.throws(
        () => serve({ hostname: "127.0.0.1", port: 0, gloom: { masterPort: 0, tls: true } }),
        /gloom\.tls \(--gloom-tls\) needs tls\.cert and tls\.key/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
