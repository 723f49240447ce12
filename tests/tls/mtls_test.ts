// Mutual TLS on the Gearman port: certificates made here with openssl (a
// CA, a server certificate, client certificates it signed, and one from
// another CA), checked with `openssl s_client -cert -key` and with our
// Client, Worker and PacketClient; access rules by certificate name.

import assert from "node:assert/strict";
import { RevocationListError, serve, type TlsAccessRules } from "../../server.ts";
import { AdminClient, Client, ConnectionError, PacketClient, ServerError } from "../../client.ts";
import { Worker } from "../../worker.ts";
import { GloomError, GloomMaster, GloomWorker } from "../../gloom.ts";
import {
  makeCa,
  makeCert,
  makeCsr,
  opensslAvailable,
  type Pem,
  sClient as sClientAt,
  sh,
} from "./_openssl.ts";

const decoder = new TextDecoder();

const haveOpenssl = await opensslAvailable("mtls_test");

/** `openssl s_client` to 127.0.0.1:port with `client`'s certificate, if any. */
function sClient(
  port: number,
  ca: string,
  client: Pem | undefined,
  line: string,
  until: RegExp,
): Promise<string> {
  return sClientAt(`127.0.0.1:${port}`, ca, line, until, client);
}

interface Certs {
  dir: string;
  ca: Pem;
  server: Pem;
  clients: Record<string, Pem>;
  /** A client certificate from a CA the server does not trust. */
  rogue: Pem;
}

async function makeCertificates(names: string[]): Promise<Certs> {
  const dir = await Deno.makeTempDir({ prefix: "gearman-mtls-" });
  const ca = await makeCa(dir, "test-ca");
  const other = await makeCa(dir, "other-ca");
  const server = await makeCert(
    dir,
    ca,
    "127.0.0.1",
    "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
  );
  const clients: Record<string, Pem> = {};
  for (const name of names) {
    clients[name] = await makeCert(dir, ca, name, "extendedKeyUsage=clientAuth\n");
  }
  const rogue = await makeCert(dir, other, "mallory", "extendedKeyUsage=clientAuth\n");
  return { dir, ca, server, clients, rogue };
}

Deno.test({
  name:
    "mtls: only clients with a certificate the --tls-ca CA signed get in (openssl s_client, Client, Worker)",
  ignore: !haveOpenssl,
  async fn() {
    const certs = await makeCertificates(["alice"]);
    try {
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca.cert },
      });
      const port = server.addr.port;
      const alice = certs.clients.alice!;

      // openssl s_client with the certificate is served; without one, or
      // with one from another CA, the handshake fails and nothing is answered.
      const ok = await sClient(port, certs.ca.certFile, alice, "version\n", /OK .*\n/);
      assert.match(ok, /^OK \d+\.\d+\.\d+/);
      const none = await sClient(port, certs.ca.certFile, undefined, "version\n", /OK/);
      assert.doesNotMatch(none, /OK/);
      const rogue = await sClient(port, certs.ca.certFile, certs.rogue, "version\n", /OK/);
      assert.doesNotMatch(rogue, /OK/);

      // Our Client and Worker with the certificate run a job.
      const tls = { caCerts: [certs.ca.cert], cert: alice.cert, key: alice.key };
      const servers = [`127.0.0.1:${port}`];
      await using worker = new Worker({ servers, tls });
      worker.register("reverse", (job) => [...job.text()].reverse().join(""));
      worker.start();
      await using client = new Client({ servers, tls });
      assert.equal((await client.run("reverse", "mutual")).text(), "lautum");

      // Without a client certificate, or with an untrusted one, ours fail
      // with a message that says what to give.
      for (
        const t of [
          { caCerts: [certs.ca.cert] },
          { caCerts: [certs.ca.cert], cert: certs.rogue.cert, key: certs.rogue.key },
        ]
      ) {
        const refused = new Client({ servers, tls: t, connectTimeoutMs: 3000 });
        try {
          await assert.rejects(
            async () => {
              // TLS 1.3: the server checks the client's certificate after the
              // client's side of the handshake, so the refusal may come at the
              // first read.
              await refused.echo("x");
            },
            (err: Error) => {
              assert.ok(
                err instanceof ConnectionError || err.name === "ConnectionClosedError",
                `${err.name}: ${err.message}`,
              );
              return true;
            },
          );
        } finally {
          await refused.close();
        }
      }
      await assert.rejects(
        () => PacketClient.connect({ port, tls: { cert: alice.cert } }),
        /tls\.cert and tls\.key go together/,
      );
    } finally {
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "mtls: --tls-access limits what each certificate name may submit, work on and administer",
  ignore: !haveOpenssl,
  async fn() {
    const certs = await makeCertificates(["frontend", "resizer", "ops", "viewer", "stranger"]);
    const access: TlsAccessRules = {
      frontend: { submit: ["resize", "thumb.*"] },
      resizer: { work: ["resize", "thumb.*"] },
      ops: { admin: "all" },
      viewer: { admin: "read" },
    };
    try {
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        handleHost: "test",
        tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca.cert, access },
      });
      const port = server.addr.port;
      const as = (name: string) => {
        const c = certs.clients[name]!;
        return { caCerts: [certs.ca.cert], cert: c.cert, key: c.key };
      };
      const connect = (name: string) => PacketClient.connect({ port, tls: as(name) });
      const text = (b: Uint8Array | undefined) => decoder.decode(b);
      const expectDenied = async (c: PacketClient, pattern: RegExp) => {
        const p = await c.receive(3000);
        assert.equal(p.name, "ERROR");
        assert.equal(text(p.args[0]), "PERMISSION_DENIED");
        assert.match(text(p.args[1]), pattern);
      };

      await using frontend = await connect("frontend");
      frontend.send("SUBMIT_JOB_BG", "resize", "", "a.png");
      assert.equal((await frontend.receive()).name, "JOB_CREATED");
      frontend.send("SUBMIT_JOB_BG", "thumb.small", "", "b.png");
      assert.equal((await frontend.receive()).name, "JOB_CREATED");
      frontend.send("SUBMIT_JOB", "delete-everything", "", "x");
      await expectDenied(
        frontend,
        /"frontend" may not submit jobs to function "delete-everything"/,
      );
      frontend.send("CAN_DO", "resize");
      await expectDenied(frontend, /may not register as a worker for function "resize"/);
      // Loopback does not make admin commands open when rules apply.
      const [adminReply] = await frontend.admin("status");
      assert.match(adminReply!, /^ERR PERMISSION_DENIED .*frontend.*admin\+"none"/);
      // The connection goes on after refusals.
      frontend.send("ECHO_REQ", "still here");
      assert.equal((await frontend.receive()).name, "ECHO_RES");

      await using resizer = await connect("resizer");
      resizer.send("CAN_DO", "resize");
      resizer.send("CAN_DO", "billing");
      await expectDenied(resizer, /"resizer" may not register as a worker for function "billing"/);
      resizer.send("SUBMIT_JOB_BG", "resize", "", "c.png");
      await expectDenied(resizer, /may not submit jobs to function "resize"/);
      resizer.send("GRAB_JOB");
      const assigned = await resizer.receive();
      assert.equal(assigned.name, "JOB_ASSIGN");
      assert.equal(text(assigned.args[1]), "resize");

      await using viewer = await connect("viewer");
      const rows = await viewer.admin("status");
      assert.ok(rows.some((r) => r.startsWith("resize\t")), rows.join("|"));
      assert.ok(
        !rows.some((r) => r.startsWith("billing\t")),
        "the refused CAN_DO registered nothing",
      );
      const [shutdown] = await viewer.admin("shutdown");
      assert.match(shutdown!, /^ERR PERMISSION_DENIED .*viewer.*admin\+"read"/);

      await using ops = await AdminClient.connect(`127.0.0.1:${port}`, { tls: as("ops") });
      await ops.command("maxqueue resize 5");
      assert.ok((await ops.status()).some((s) => s.function === "resize"));

      // A certificate with no entry (and no "*" entry) may do nothing.
      await using stranger = await connect("stranger");
      stranger.send("SUBMIT_JOB", "resize", "", "x");
      await expectDenied(stranger, /"stranger" may not submit/);

      // Our Client sees a refused submit as a ServerError.
      const servers = [`127.0.0.1:${port}`];
      await using client = new Client({ servers, tls: as("frontend") });
      await assert.rejects(
        () => client.run("billing", "x"),
        (err: Error) => err instanceof ServerError && /PERMISSION_DENIED/.test(err.message),
      );
      await using worker = new Worker({ servers, tls: as("resizer") });
      worker.register("thumb.large", (job) => `thumb of ${job.text()}`);
      worker.start();
      assert.equal((await client.run("thumb.large", "d.png")).text(), "thumb of d.png");
    } finally {
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "mtls: serve() checks tls.access and the CLI flags go together",
  ignore: !haveOpenssl,
  fn() {
    assert.throws(
      () =>
        serve({
          hostname: "127.0.0.1",
          port: 0,
          tls: { cert: "x", key: "y", access: {} },
        }),
      /tls\.access \(--tls-access\) needs tls\.ca/,
    );
    assert.throws(
      () =>
        serve({
          hostname: "127.0.0.1",
          port: 0,
          tls: {
            cert: "x",
            key: "y",
            ca: "z",
            access: { a: { submit: "resize" as unknown as string[] } },
          },
        }),
      /entry "a": "submit" must be a list/,
    );
  },
});

Deno.test({
  name:
    "mtls: the server CLI with --tls-ca and --tls-access, checked with openssl s_client; SIGHUP reloads the rules, a bad file is refused",
  ignore: !haveOpenssl,
  async fn() {
    const certs = await makeCertificates(["ops", "frontend"]);
    const accessFile = `${certs.dir}/access.json`;
    await Deno.writeTextFile(
      accessFile,
      JSON.stringify({ ops: { admin: "read" }, frontend: { submit: ["resize"] } }),
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-N",
        `--allow-read=${certs.dir}`,
        new URL("../../server.ts", import.meta.url).pathname,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--tls-cert",
        certs.server.certFile,
        "--tls-key",
        certs.server.keyFile,
        "--tls-ca",
        certs.ca.certFile,
        "--tls-access",
        accessFile,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    // stderr, read as it comes (the reload lines are checked while it runs).
    let errText = "";
    const errDone = (async () => {
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) errText += chunk;
    })();
    const until = async (what: string, check: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!check()) {
        if (Date.now() > end) throw new Error(`no ${what} in 10 s; stderr: ${errText}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      while (!out.includes("\n")) {
        const { value, done } = await stdout.read();
        if (done) break;
        out += value;
      }
      const m = out.match(/^listening on 127\.0\.0\.1:(\d+)\n/);
      assert.ok(m, `unexpected first line: ${JSON.stringify(out)}`);
      const port = Number(m[1]);
      const ops = await sClient(port, certs.ca.certFile, certs.clients.ops, "status\n", /^\.\r?$/m);
      assert.match(ops, /^\.$/m);
      const denied = await sClient(
        port,
        certs.ca.certFile,
        certs.clients.frontend,
        "status\n",
        /\n/,
      );
      assert.match(denied, /^ERR PERMISSION_DENIED .*frontend/);
      const none = await sClient(port, certs.ca.certFile, undefined, "status\n", /\n/);
      assert.equal(none, "");

      // SIGHUP reads the file again: frontend may now read admin status.
      await Deno.writeTextFile(
        accessFile,
        JSON.stringify({ ops: { admin: "read" }, frontend: { admin: "read" } }),
      );
      child.kill("SIGHUP");
      await until("the reload", () => errText.includes("reloaded --tls-access"));
      assert.match(errText, /reloaded --tls-access .*access\.json: 2 name\(s\)/);
      const allowed = await sClient(
        port,
        certs.ca.certFile,
        certs.clients.frontend,
        "status\n",
        /^\.\r?$/m,
      );
      assert.match(allowed, /^\.$/m);
      // A file that does not parse leaves the rules in force.
      await Deno.writeTextFile(accessFile, "{ not json");
      child.kill("SIGHUP");
      await until("the refused reload", () => errText.includes("cannot reload --tls-access"));
      assert.match(errText, /the rules in force stay/);
      const still = await sClient(
        port,
        certs.ca.certFile,
        certs.clients.frontend,
        "status\n",
        /^\.\r?$/m,
      );
      assert.match(still, /^\.$/m);
    } finally {
      child.kill("SIGINT");
      await child.status;
    }
    const rest = async (r: ReadableStreamDefaultReader<string>) => {
      let text = "";
      for (let x = await r.read(); !x.done; x = await r.read()) text += x.value;
      return text;
    };
    await errDone;
    const logs = out + await rest(stdout) + errText;
    assert.match(
      logs,
      /Refused admin command "status" from "127\.0\.0\.1:\d+": 'certificate "frontend" has admin "none" in --tls-access'/,
    );
    assert.match(
      logs,
      /Refused a TLS connection from "127\.0\.0\.1:\d+": "TLS handshake failed: the client sent no certificate"/,
    );
    await Deno.remove(certs.dir, { recursive: true });
  },
});

Deno.test({
  name:
    "mtls: certificates without a CN are named by their subject alternative names (DNS, URI), which --tls-access rules match; a certificate with no name is refused",
  ignore: !haveOpenssl,
  async fn() {
    const certs = await makeCertificates([]);
    const dir = certs.dir;
    const worker = await makeCert(
      dir,
      certs.ca,
      "",
      "subjectAltName=URI:spiffe://example.org/resizer\nextendedKeyUsage=clientAuth\n",
      "san-worker",
    );
    const frontend = await makeCert(
      dir,
      certs.ca,
      "",
      "subjectAltName=DNS:frontend.example.org,DNS:www.example.org\nextendedKeyUsage=clientAuth\n",
      "san-frontend",
    );
    // A CN with no rule and a SAN with one: the SAN's rule applies.
    const both = await makeCert(
      dir,
      certs.ca,
      "some-host",
      "subjectAltName=DNS:www.example.org\nextendedKeyUsage=clientAuth\n",
      "cn-and-san",
    );
    const nameless = await makeCert(
      dir,
      certs.ca,
      "",
      "extendedKeyUsage=clientAuth\n",
      "nameless",
    );
    const access: TlsAccessRules = {
      "spiffe://example.org/resizer": { work: ["resize"] },
      "www.example.org": { submit: ["resize"] },
    };
    try {
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        handleHost: "test",
        tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca.cert, access },
      });
      const port = server.addr.port;
      const tlsOf = (c: Pem) => ({ caCerts: [certs.ca.cert], cert: c.cert, key: c.key });
      const text = (b: Uint8Array | undefined) => decoder.decode(b);

      // Named by its second DNS name (the first has no rule).
      await using f = await PacketClient.connect({ port, tls: tlsOf(frontend) });
      f.send("SUBMIT_JOB_BG", "resize", "", "a.png");
      assert.equal((await f.receive()).name, "JOB_CREATED");
      f.send("CAN_DO", "resize");
      const refused = await f.receive(3000);
      assert.equal(refused.name, "ERROR");
      assert.match(text(refused.args[1]), /"www\.example\.org" may not register as a worker/);

      await using b = await PacketClient.connect({ port, tls: tlsOf(both) });
      b.send("SUBMIT_JOB_BG", "resize", "", "b.png");
      assert.equal((await b.receive()).name, "JOB_CREATED");

      // Named by its URI (SPIFFE id).
      await using w = await PacketClient.connect({ port, tls: tlsOf(worker) });
      w.send("CAN_DO", "resize");
      w.send("GRAB_JOB");
      const assigned = await w.receive(3000);
      assert.equal(assigned.name, "JOB_ASSIGN");
      assert.equal(text(assigned.args[2]), "a.png");
      w.send("SUBMIT_JOB_BG", "resize", "", "c.png");
      const denied = await w.receive(3000);
      assert.equal(denied.name, "ERROR");
      assert.match(text(denied.args[1]), /"spiffe:\/\/example\.org\/resizer" may not submit/);

      // No CN and no SAN: the handshake is refused.
      await assert.rejects(async () => {
        await using n = await PacketClient.connect({ port, tls: tlsOf(nameless), timeoutMs: 5000 });
        n.send("ECHO_REQ", "x");
        await n.receive(3000);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mtls: access rules change without a restart: setAccessRules applies to open connections and new ones; bad rules are refused and the old ones stay",
  ignore: !haveOpenssl,
  async fn() {
    const certs = await makeCertificates(["frontend"]);
    try {
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        handleHost: "test",
        tls: {
          cert: certs.server.cert,
          key: certs.server.key,
          ca: certs.ca.cert,
          access: { frontend: { submit: ["resize"] } },
        },
      });
      const port = server.addr.port;
      const c = certs.clients.frontend!;
      const tls = { caCerts: [certs.ca.cert], cert: c.cert, key: c.key };
      await using open = await PacketClient.connect({ port, tls });
      open.send("SUBMIT_JOB_BG", "resize", "", "a");
      assert.equal((await open.receive()).name, "JOB_CREATED");

      assert.throws(
        () =>
          server.setAccessRules({ frontend: { submit: "resize" } } as unknown as TlsAccessRules),
        /"submit" must be a list/,
      );
      open.send("SUBMIT_JOB_BG", "resize", "", "b");
      assert.equal((await open.receive()).name, "JOB_CREATED", "bad rules changed nothing");

      server.setAccessRules({ frontend: { submit: ["thumb"] } });
      open.send("SUBMIT_JOB_BG", "resize", "", "c");
      const denied = await open.receive(3000);
      assert.equal(denied.name, "ERROR");
      assert.match(
        decoder.decode(denied.args[1]),
        /"frontend" may not submit jobs to function "resize"/,
      );
      open.send("SUBMIT_JOB_BG", "thumb", "", "d");
      assert.equal((await open.receive()).name, "JOB_CREATED");
      await using fresh = await PacketClient.connect({ port, tls });
      fresh.send("SUBMIT_JOB_BG", "resize", "", "e");
      assert.equal((await fresh.receive(3000)).name, "ERROR");

      await using plain = serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca.cert },
      });
      assert.throws(() => plain.setAccessRules({}), /started without tls\.access/);
    } finally {
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});

/**
 * A CA made with `openssl ca` (so it can revoke), a server certificate, and
 * client certificates (serials from 1000 up, so two such CAs give the same
 * serials).
 */
async function makeRevokingCa(names: string[], caName = "ca"): Promise<{
  dir: string;
  ca: string;
  server: { cert: string; key: string };
  clients: Record<string, { cert: string; key: string; certFile: string }>;
  /** Revoke a client's certificate and return the CA's CRL (PEM) after it. */
  revoke(name: string): Promise<string>;
  /** The CRL as it is now. */
  crl(): Promise<string>;
}> {
  const dir = await Deno.makeTempDir({ prefix: "gearman-crl-" });
  await Deno.writeTextFile(
    `${dir}/ca.cnf`,
    `[ ca ]
default_ca = CA_default
[ CA_default ]
dir = ${dir}
database = $dir/index.txt
new_certs_dir = $dir
certificate = $dir/${caName}.pem
private_key = $dir/${caName}.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_crl_days = 2
default_days = 2
policy = policy_any
[ policy_any ]
commonName = supplied
`,
  );
  await Deno.writeTextFile(`${dir}/index.txt`, "");
  await Deno.writeTextFile(`${dir}/serial`, "1000\n");
  await Deno.writeTextFile(`${dir}/crlnumber`, "1000\n");
  const ca = await makeCa(dir, caName);
  const server = await makeCert(
    dir,
    ca,
    "127.0.0.1",
    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  const clients: Record<string, { cert: string; key: string; certFile: string }> = {};
  await Deno.writeTextFile(`${dir}/client.ext`, "extendedKeyUsage=clientAuth\n");
  for (const name of names) {
    await makeCsr(`${dir}/${name}`, `/CN=${name}`);
    await sh("openssl", [
      "ca",
      "-batch",
      "-config",
      `${dir}/ca.cnf`,
      "-in",
      `${dir}/${name}.csr`,
      "-out",
      `${dir}/${name}.pem`,
      "-extfile",
      `${dir}/client.ext`,
    ]);
    clients[name] = {
      cert: await Deno.readTextFile(`${dir}/${name}.pem`),
      key: await Deno.readTextFile(`${dir}/${name}.key`),
      certFile: `${dir}/${name}.pem`,
    };
  }
  const crl = async () => {
    await sh("openssl", ["ca", "-config", `${dir}/ca.cnf`, "-gencrl", "-out", `${dir}/crl.pem`]);
    return await Deno.readTextFile(`${dir}/crl.pem`);
  };
  const revoke = async (name: string) => {
    await sh("openssl", ["ca", "-config", `${dir}/ca.cnf`, "-revoke", clients[name]!.certFile]);
    return await crl();
  };
  return { dir, ca: ca.cert, server, clients, revoke, crl };
}

Deno.test({
  name:
    "mtls: with gloom.tls the Gloom ports ask for client certificates too; --tls-access rules apply to masters (submit, status) and workers (join), and setAccessRules to open ones",
  ignore: !haveOpenssl,
  async fn() {
    const certs = await makeCertificates(["frontend", "resizer", "ops"]);
    try {
      const rules: TlsAccessRules = {
        frontend: { submit: ["resize"] },
        resizer: { work: ["resize"] },
        ops: { admin: "read" },
      };
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca.cert, access: rules },
        gloom: { masterPort: 0, workerPort: 0, tls: true },
      });
      const { master: m, worker: w } = server.gloomAddrs!;
      const as = (p: Pem) => ({ caCerts: [certs.ca.cert], cert: p.cert, key: p.key });
      const denied = (err: unknown) =>
        err instanceof GloomError && err.code === "permission_denied";

      // A worker whose certificate may not work on "resize" is given none of its jobs: the
      // job submitted while it alone has joined is run by the one that may.
      const refusals: GloomError[] = [];
      await using wrong = await GloomWorker.connect({
        port: w.port,
        tls: as(certs.clients.frontend!),
        onServerError: (err) => refusals.push(err),
      });
      wrong.join("resize", () => "run by the wrong worker");
      await using master = await GloomMaster.connect({
        port: m.port,
        tls: as(certs.clients.frontend!),
      });
      const result = master.submit("resize", "r-1", "img");
      await new Promise((r) => setTimeout(r, 300));
      await using right = await GloomWorker.connect({
        port: w.port,
        tls: as(certs.clients.resizer!),
      });
      right.join("resize", (body) => `resized ${body}`);
      assert.equal(await result, "resized img");
      // The refused worker was told why.
      assert.equal(refusals.length, 1);
      assert.ok(denied(refusals[0]), refusals[0]?.message);
      assert.equal(wrong.lastServerError, refusals[0]);

      // A master submits only its job types, and reads the status only with admin "read".
      await assert.rejects(master.submit("wipe", "r-2", null), denied);
      await assert.rejects(master.status(), denied);
      await using ops = await GloomMaster.connect({ port: m.port, tls: as(certs.clients.ops!) });
      assert.equal((await ops.status()).jobTypes.resize?.workers, 1);
      await assert.rejects(ops.submit("resize", "r-3", null), denied);

      // New rules reach open Gloom connections.
      server.setAccessRules({ ...rules, frontend: { submit: ["resize"], admin: "read" } });
      assert.equal((await master.status()).jobTypes.resize?.workers, 1);

      // No certificate, or one another CA signed: no way in.
      for (const tls of [{ caCerts: [certs.ca.cert] }, as(certs.rogue)]) {
        await assert.rejects((async () => {
          await using x = await GloomMaster.connect({ port: m.port, tls });
          await x.submit("resize", "r-4", null, { signal: AbortSignal.timeout(3000) });
        })());
      }
    } finally {
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mtls: with http.tls the HTTPS endpoint asks for client certificates too; --tls-access admin rules decide who reads it and who uses its actions (admin all needs no token)",
  ignore: !haveOpenssl,
  async fn() {
    const certs = await makeCertificates(["dashboard", "ops", "frontend"]);
    const clients: Deno.HttpClient[] = [];
    try {
      const rules: TlsAccessRules = {
        dashboard: { admin: "read" },
        ops: { admin: "all" },
        frontend: { submit: ["resize"] },
      };
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert: certs.server.cert, key: certs.server.key, ca: certs.ca.cert, access: rules },
        http: { hostname: "127.0.0.1", port: 0, tls: true },
      });
      const base = `https://127.0.0.1:${server.httpAddr!.port}`;
      const as = (p?: Pem): Deno.HttpClient => {
        const c = Deno.createHttpClient({
          caCerts: [certs.ca.cert],
          ...(p === undefined ? {} : { cert: p.cert, key: p.key }),
        });
        clients.push(c);
        return c;
      };
      const call = async (client: Deno.HttpClient, path: string, method = "GET") => {
        const r = await fetch(base + path, { client, method });
        return { status: r.status, body: await r.text() };
      };
      const dashboard = as(certs.clients.dashboard!);
      const ops = as(certs.clients.ops!);
      const frontend = as(certs.clients.frontend!);
      const cancel = "/api/jobs/H%3Anowhere%3A1/cancel";

      assert.equal((await call(dashboard, "/api/status")).status, 200);
      assert.match((await call(dashboard, "/metrics")).body, /gearman_/);
      // Reading is not acting: no token is set, so the actions are off for it.
      assert.equal((await call(dashboard, cancel, "POST")).status, 403);
      // admin "all": the action runs (the job is unknown: 404), no token needed.
      assert.equal((await call(ops, cancel, "POST")).status, 404);
      // A certificate with no admin rule reads nothing but the health probes.
      const refused = await call(frontend, "/api/status");
      assert.equal(refused.status, 403);
      assert.match(refused.body, /Certificate \\?"frontend\\?" may not use the HTTP endpoint/);
      assert.equal((await call(frontend, "/healthz")).status, 200);

      // New rules reach open connections.
      server.setAccessRules({ ...rules, dashboard: {} });
      assert.equal((await call(dashboard, "/api/status")).status, 403);

      // No certificate, or one another CA signed: no way in.
      for (const client of [as(), as(certs.rogue)]) {
        await assert.rejects(call(client, "/healthz"));
      }
    } finally {
      for (const c of clients) c.close();
      await Deno.remove(certs.dir, { recursive: true });
    }
  },
});

/** A PEM CRL with the revoked serial 0x1000 changed to 0x1001 (its signature no longer matches). */
function tamperedCrl(pem: string): string {
  const body = pem.replace(/-----(BEGIN|END) X509 CRL-----/g, "").replace(/\s+/g, "");
  const der = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
  // The first INTEGER 0x1000 is the revoked entry's serial (the CRL number, also 1000, comes after).
  let i = 0;
  while (
    i + 3 < der.length &&
    !(der[i] === 0x02 && der[i + 1] === 0x02 && der[i + 2] === 0x10 && der[i + 3] === 0x00)
  ) i++;
  assert.ok(i + 3 < der.length, "the CRL lists serial 1000");
  der[i + 3] = 0x01;
  const b64 = btoa(String.fromCharCode(...der)).replace(/(.{64})/g, "$1\n");
  return `-----BEGIN X509 CRL-----\n${b64}\n-----END X509 CRL-----\n`;
}

Deno.test({
  name:
    "mtls: a CRL revokes only its own CA's certificates (two CAs with the same serials), and must be signed by one of the --tls-ca CAs",
  ignore: !haveOpenssl,
  async fn() {
    const a = await makeRevokingCa(["alice"], "ca-a");
    const b = await makeRevokingCa(["bob"], "ca-b");
    const stranger = await makeRevokingCa(["eve"], "ca-stranger");
    try {
      const serialOf = async (file: string) =>
        (await sh("openssl", ["x509", "-in", file, "-noout", "-serial"])).trim();
      assert.equal(
        await serialOf(a.clients.alice!.certFile),
        await serialOf(b.clients.bob!.certFile),
        "both CAs gave their first client the same serial",
      );
      const crlA = await a.revoke("alice");
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert: a.server.cert, key: a.server.key, ca: a.ca + b.ca, crl: crlA },
      });
      const port = server.addr.port;
      const echo = async (pki: typeof a, name: string): Promise<string> => {
        await using c = await PacketClient.connect({
          port,
          tls: { caCerts: [a.ca], cert: pki.clients[name]!.cert, key: pki.clients[name]!.key },
          timeoutMs: 5000,
        });
        c.send("ECHO_REQ", "hi");
        return (await c.receive(3000)).name ?? "";
      };
      await assert.rejects(echo(a, "alice"), "revoked by its CA's CRL");
      assert.equal(
        await echo(b, "bob"),
        "ECHO_RES",
        "the same serial from the other CA is not revoked",
      );

      // B's CRL too: bob is refused, alice still.
      server.setRevocationList(crlA + (await b.revoke("bob")));
      await assert.rejects(echo(b, "bob"));
      await assert.rejects(echo(a, "alice"));

      // A CRL from a CA the server does not trust, or an altered one: refused, nothing changes.
      const strangerCrl = await stranger.revoke("eve");
      assert.throws(
        () => server.setRevocationList(crlA + strangerCrl),
        (err: Error) =>
          err instanceof RevocationListError &&
          /issued by "ca-stranger", which is not one of the CAs/.test(err.message),
      );
      assert.throws(
        () => server.setRevocationList(tamperedCrl(crlA)),
        (err: Error) =>
          err instanceof RevocationListError &&
          /does not verify with that CA's key/.test(err.message),
      );
      await assert.rejects(echo(b, "bob"), "the list before stays in force");
      assert.throws(
        () =>
          serve({
            hostname: "127.0.0.1",
            port: 0,
            tls: { cert: a.server.cert, key: a.server.key, ca: a.ca, crl: tamperedCrl(crlA) },
          }),
        RevocationListError,
      );
    } finally {
      for (const pki of [a, b, stranger]) await Deno.remove(pki.dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "mtls: tls.crl (--tls-crl) refuses client certificates the CA revoked; setRevocationList swaps the list, a damaged one changes nothing",
  ignore: !haveOpenssl,
  async fn() {
    const pki = await makeRevokingCa(["alice", "mallory"]);
    try {
      const crl = await pki.revoke("mallory");
      await using server = serve({
        hostname: "127.0.0.1",
        port: 0,
        tls: { cert: pki.server.cert, key: pki.server.key, ca: pki.ca, crl },
      });
      const port = server.addr.port;
      const as = (name: string) => ({
        caCerts: [pki.ca],
        cert: pki.clients[name]!.cert,
        key: pki.clients[name]!.key,
      });
      const echo = async (name: string): Promise<string> => {
        await using c = await PacketClient.connect({ port, tls: as(name), timeoutMs: 5000 });
        c.send("ECHO_REQ", "hi");
        return (await c.receive(3000)).name ?? "";
      };
      assert.equal(await echo("alice"), "ECHO_RES");
      await assert.rejects(echo("mallory"), "a revoked certificate gets nothing");

      assert.throws(() => server.setRevocationList("garbage"), RevocationListError);
      assert.equal(await echo("alice"), "ECHO_RES", "a damaged list changed nothing");
      await assert.rejects(echo("mallory"));

      server.setRevocationList(await pki.revoke("alice"));
      await assert.rejects(echo("alice"), "revoked by the new list");

      assert.throws(
        () =>
          serve({
            hostname: "127.0.0.1",
            port: 0,
            tls: { cert: pki.server.cert, key: pki.server.key, crl },
          }),
        /tls\.crl \(--tls-crl\) needs tls\.ca/,
      );
    } finally {
      await Deno.remove(pki.dir, { recursive: true });
    }
  },
});
