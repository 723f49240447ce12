// openssl from the TLS tests: run a command, and talk through `s_client`.

const decoder = new TextDecoder();

/** Run a command; its stdout, or an error with its stderr. */
export async function sh(cmd: string, args: string[], stdin?: string): Promise<string> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${decoder.decode(out.stderr)}`);
  }
  return decoder.decode(out.stdout);
}

/** Whether openssl can run here (CI must have it: then a missing one throws). */
export async function opensslAvailable(testName: string): Promise<boolean> {
  const have = await sh("openssl", ["version"]).then(() => true, () => false);
  if (!have) {
    if (Deno.env.get("CI")) throw new Error("openssl is needed for the TLS tests");
    console.warn(`${testName}: skipped: openssl is not installed`);
  }
  return have;
}

/**
 * Run `openssl s_client` against `server` (HOST:PORT) trusting `caFile`,
 * with a client certificate when given; send `line` and return what came
 * back before the server closed or `until` matched.
 */
export async function sClient(
  server: string,
  caFile: string,
  line: string,
  until: RegExp,
  client?: { certFile: string; keyFile: string },
): Promise<string> {
  const child = new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      server,
      "-CAfile",
      caFile,
      ...(client ? ["-cert", client.certFile, "-key", client.keyFile] : []),
      "-quiet",
      "-verify_return_error",
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(line));
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = setTimeout(() => child.kill("SIGKILL"), 10_000);
  try {
    while (!until.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  } finally {
    clearTimeout(deadline);
    try {
      child.kill("SIGTERM");
    } catch { /* already exited */ }
    await reader.cancel().catch(() => {});
    await writer.close().catch(() => {});
    await child.status;
  }
  return text;
}

/** A certificate and its key, as PEM text and files. */
export interface Pem {
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
}

/** A self-signed CA named `name`, its files in `dir`. */
export async function makeCa(dir: string, name: string): Promise<Pem> {
  const certFile = `${dir}/${name}.pem`;
  const keyFile = `${dir}/${name}.key`;
  await sh("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-keyout",
    keyFile,
    "-out",
    certFile,
  ]);
  return {
    cert: await Deno.readTextFile(certFile),
    key: await Deno.readTextFile(keyFile),
    certFile,
    keyFile,
  };
}

/** A new key (`base`.key) and a signing request (`base`.csr) for `subject`. */
export async function makeCsr(base: string, subject: string): Promise<void> {
  await sh("openssl", [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    subject,
    "-keyout",
    `${base}.key`,
    "-out",
    `${base}.csr`,
  ]);
}

/**
 * A certificate for `cn` signed by `ca`, with the extensions in `ext`
 * (`cn` empty: a subject with no CN, named `file` on disk).
 */
export async function makeCert(
  dir: string,
  ca: Pem,
  cn: string,
  ext: string,
  file = cn,
): Promise<Pem> {
  const base = `${dir}/${file.replaceAll(/[^a-z0-9]/gi, "_")}`;
  await makeCsr(base, cn === "" ? "/O=gearman tests" : `/CN=${cn}/O=gearman tests`);
  await Deno.writeTextFile(`${base}.ext`, ext);
  await sh("openssl", [
    "x509",
    "-req",
    "-in",
    `${base}.csr`,
    "-CA",
    ca.certFile,
    "-CAkey",
    ca.keyFile,
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    `${base}.ext`,
    "-out",
    `${base}.pem`,
  ]);
  return {
    cert: await Deno.readTextFile(`${base}.pem`),
    key: await Deno.readTextFile(`${base}.key`),
    certFile: `${base}.pem`,
    keyFile: `${base}.key`,
  };
}
