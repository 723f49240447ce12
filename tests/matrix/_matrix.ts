// The interop matrix: each client library x each server (ours, C++ gearmand),
// six checks per cell. Only the client varies: the worker side is always our
// Worker, started by the test against the cell's server.
//
// A library is driven by a program of its own language (tests/matrix/node/
// for the npm packages, under Node and under Deno; peers/ for PHP and Perl;
// the gearman CLI and our Client from here). Drivers only report what they
// observed, one JSON line per check; `judge` decides pass or fail, and
// `LIMITS` lists the cells that cannot pass, with the upstream reason.

import { Client, JobExceptionError, JobFailedError } from "../../client.ts";
import { Worker } from "../../worker.ts";
import { GEARMAND, HOST, run, type Target, waitForWorkers } from "../interop/_harness.ts";

/** This directory. */
export const MATRIX_DIR: string = decodeURIComponent(new URL(".", import.meta.url).pathname);
/** The npm package directory (package.json, node_modules) of the Node drivers. */
export const NODE_DIR: string = decodeURIComponent(new URL("./node/", import.meta.url).pathname);
/** Is this CI (every cell must run, none may be skipped)? */
export const IN_CI: boolean = Boolean(Deno.env.get("CI"));

/** The six checks, in the order every driver runs them. */
export const CHECKS = ["submit", "background", "status", "fail", "exception", "large"] as const;
/** One of the six checks. */
export type Check = typeof CHECKS[number];

/** Size of the large payload (bytes; byte i is i % 251, NULs included). */
export const LARGE_SIZE = 1 << 20;
/** What the exception worker throws (sent as WORK_EXCEPTION). */
export const EXCEPTION_TEXT = "mx boom";
/** Longest wait of one check in a driver. */
export const CHECK_TIMEOUT_MS = 4000;
/** Hard limit for one driver process (all six checks). */
export const DRIVER_TIMEOUT_MS = 40_000;

/** Function names served by the matrix worker. */
export const FN = {
  /** Reverses its data (submit). */
  rev: "mx_rev",
  /** Records its data (background). */
  bg: "mx_bg",
  /** Served by nobody: its jobs stay queued (status). */
  idle: "mx_idle",
  /** Fails with WORK_FAIL (fail). */
  fail: "mx_fail",
  /** Throws: WORK_EXCEPTION (exception). */
  exc: "mx_exc",
  /** Echoes its data (large). */
  echo: "mx_echo",
} as const;

/** What every driver gets as its JSON argument. */
export interface Config {
  host: string;
  port: number;
  timeoutMs: number;
  fn: typeof FN;
  submitData: string;
  bgData: string;
  largeSize: number;
  unknownHandle: string;
}

/** The config of one cell (`tag` makes its background payload unique). */
export function makeConfig(port: number, tag: string): Config {
  return {
    host: HOST,
    port,
    timeoutMs: CHECK_TIMEOUT_MS,
    fn: FN,
    submitData: "matrix-submit",
    bgData: `bg-${tag}`,
    largeSize: LARGE_SIZE,
    unknownHandle: "H:matrix.invalid:1",
  };
}

/** The large payload. */
export function largePayload(size = LARGE_SIZE): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = i % 251;
  return out;
}

/** SHA-256 of `bytes` as lowercase hex. */
export async function sha256(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** What a driver reported for one check (free-form, judged by `judge`). */
export type Observation = Record<string, unknown> & { error?: string; unsupported?: string };
/** A driver's report: one observation per check. */
export type Observations = Record<Check, Observation>;

// ---------------------------------------------------------------------------
// The worker side

/** Our Worker serving the matrix functions on one server. */
export interface MatrixWorker extends AsyncDisposable {
  /** Data of every `mx_bg` job it ran, in order. */
  readonly backgroundSeen: string[];
}

/** Start the matrix workers against `port` and wait until the server lists them. */
export async function startMatrixWorker(port: number): Promise<MatrixWorker> {
  const servers = [`${HOST}:${port}`];
  const backgroundSeen: string[] = [];
  const main = new Worker({ servers, concurrency: 4, clientId: "matrix" });
  main.register(FN.rev, (job) => [...job.text()].reverse().join(""));
  main.register(FN.echo, (job) => job.data);
  main.register(FN.bg, (job) => {
    backgroundSeen.push(job.text());
    return "";
  });
  main.register(FN.exc, () => {
    throw new Error(EXCEPTION_TEXT);
  });
  // exceptions: false sends WORK_FAIL for a thrown error.
  const failer = new Worker({ servers, exceptions: false, clientId: "matrix-fail" });
  failer.register(FN.fail, () => {
    throw new Error("matrix fail");
  });
  const stop = async () => {
    await Promise.all([main.stop({ timeoutMs: 500 }), failer.stop({ timeoutMs: 500 })]);
  };
  try {
    main.start();
    failer.start();
    await waitForWorkers(port, FN.rev);
    await waitForWorkers(port, FN.fail);
  } catch (err) {
    await stop();
    throw err;
  }
  return { backgroundSeen, [Symbol.asyncDispose]: stop };
}

// ---------------------------------------------------------------------------
// Processes

/** What a finished process gave. */
export interface ProcessResult {
  code: number;
  stdout: Uint8Array;
  stderr: string;
  timedOut: boolean;
}

/** Run a program to the end (SIGKILL after `timeoutMs`), stdout kept as bytes. */
export async function runProcess(
  cmd: string,
  args: string[],
  options: { timeoutMs: number; stdin?: string | Uint8Array; cwd?: string },
): Promise<ProcessResult> {
  const r = await run(cmd, args, { ...options, cwd: options.cwd ?? MATRIX_DIR });
  return { code: r.code, stdout: r.stdoutBytes, stderr: r.stderr, timedOut: r.timedOut };
}

/** Does `cmd args` run and exit 0 (within 60 s)? Its stdout, or undefined. */
export async function probe(
  cmd: string,
  args: string[],
  cwd?: string,
): Promise<string | undefined> {
  try {
    const r = await runProcess(cmd, args, { timeoutMs: 60_000, ...(cwd ? { cwd } : {}) });
    return r.code === 0 && !r.timedOut ? new TextDecoder().decode(r.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Parse a driver's output (one JSON line per check) into observations; a
 * check it never reported (crash, hang) becomes an error saying so.
 */
export function parseDriverOutput(r: ProcessResult, what: string): Observations {
  const obs: Partial<Observations> = {};
  for (const line of new TextDecoder().decode(r.stdout).split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const { check, ...rest } = JSON.parse(line) as Observation & { check: Check };
      obs[check] = rest;
    } catch { /* not ours */ }
  }
  const ended = r.timedOut
    ? `${what} was killed after ${DRIVER_TIMEOUT_MS} ms`
    : `${what} exited with code ${r.code}`;
  for (const check of CHECKS) {
    obs[check] ??= {
      error: `no report: ${ended} before this check; stderr: ${r.stderr.trim().slice(-500)}`,
    };
  }
  return obs as Observations;
}

/** Run the driver command and parse its report. */
async function runDriver(cmd: string, args: string[], what: string): Promise<Observations> {
  const r = await runProcess(cmd, args, { timeoutMs: DRIVER_TIMEOUT_MS });
  return parseDriverOutput(r, what);
}

// ---------------------------------------------------------------------------
// Libraries

/** Is a library usable here: its version, or why not. */
export type Setup = { ok: true; version: string } | { ok: false; reason: string };

/** One client library (a row pair of the matrix). */
export interface Library {
  /** Short id, e.g. "php". */
  readonly id: string;
  /** What it is, for the table (the version is added from `setup`). */
  readonly name: string;
  /** Does the library hand the client WORK_EXCEPTION's text (else: failure)? */
  readonly exceptionText: boolean;
  /** Make it usable (install, probe) once; memoized. */
  setup(): Promise<Setup>;
  /** Run the six checks against `target`. */
  observe(target: Target, config: Config): Promise<Observations>;
}

function memo<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}

/** The exact versions pinned in node/package.json. */
export const NPM_VERSIONS: { gearman: string; "node-gearman": string } = JSON.parse(
  Deno.readTextFileSync(`${NODE_DIR}package.json`),
).dependencies;

async function installedVersion(pkg: string): Promise<string | undefined> {
  try {
    const text = await Deno.readTextFile(`${NODE_DIR}node_modules/${pkg}/package.json`);
    return (JSON.parse(text) as { version: string }).version;
  } catch {
    return undefined;
  }
}

/**
 * The absolute path of `cmd` on PATH. (Deno.Command("node") runs Deno's own
 * Node shim when there is no node on PATH: the Node rows must run real Node.)
 */
export function which(cmd: string): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir === "") continue;
    const path = `${dir}/${cmd}`;
    try {
      const st = Deno.statSync(path);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return path;
    } catch { /* not there */ }
  }
  return undefined;
}

/** The real Node.js the Node rows run (resolved by `setupNode`). */
let nodePath = "node";

/** npm install into node/node_modules unless the pinned versions are there already. */
const setupNode = memo(async (): Promise<Setup> => {
  const node = which("node");
  const npm = which("npm");
  const version = node && await probe(node, ["-p", 'typeof Deno + " " + process.version']);
  if (!node || !npm || !version?.startsWith("undefined ")) {
    return { ok: false, reason: "no Node.js and npm on PATH (install Node.js)" };
  }
  nodePath = node;
  const have = async () =>
    await installedVersion("gearman") === NPM_VERSIONS.gearman &&
    await installedVersion("node-gearman") === NPM_VERSIONS["node-gearman"];
  if (!await have()) {
    const r = await runProcess(
      npm,
      ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save"],
      { cwd: NODE_DIR, timeoutMs: 120_000 },
    ).catch((err) => ({ code: -1, stderr: String(err), timedOut: false }));
    if (r.code !== 0 || r.timedOut || !await have()) {
      return {
        ok: false,
        reason: `npm install in ${NODE_DIR} failed (needs the npm registry): ${
          r.stderr.trim().slice(-300)
        }`,
      };
    }
  }
  return { ok: true, version: `Node ${version.slice("undefined ".length)}` };
});

/** The npm: specifiers Deno imports. */
export function npmSpecifier(pkg: "gearman" | "node-gearman"): string {
  return `npm:${pkg}@${NPM_VERSIONS[pkg]}`;
}

/** Fetch both npm packages into Deno's cache (no lock file, nothing in the repo). */
const setupDenoNpm = memo(async (): Promise<Setup> => {
  const code = `await import(${JSON.stringify(npmSpecifier("gearman"))}); ` +
    `await import(${JSON.stringify(npmSpecifier("node-gearman"))});`;
  const ok = await probe(Deno.execPath(), ["eval", "--no-lock", code]);
  if (ok === undefined) {
    return {
      ok: false,
      reason: `Deno could not load ${npmSpecifier("gearman")} / ${
        npmSpecifier("node-gearman")
      } (needs the npm registry)`,
    };
  }
  return { ok: true, version: `Deno ${Deno.version.deno}` };
});

function npmUnderNode(pkg: "gearman" | "node-gearman", exceptionText: boolean): Library {
  return {
    id: `${pkg}-node`,
    name: `npm ${pkg} ${NPM_VERSIONS[pkg]}`,
    exceptionText,
    setup: setupNode,
    observe: (_target, config) =>
      runDriver(
        nodePath,
        [`${NODE_DIR}node_client.mjs`, pkg, JSON.stringify(config)],
        `node node_client.mjs ${pkg}`,
      ),
  };
}

function npmUnderDeno(pkg: "gearman" | "node-gearman", exceptionText: boolean): Library {
  return {
    id: `${pkg}-deno`,
    name: `${npmSpecifier(pkg)}`,
    exceptionText,
    setup: setupDenoNpm,
    observe: (_target, config) =>
      runDriver(
        Deno.execPath(),
        [
          "run",
          "-A",
          "--no-lock",
          `${MATRIX_DIR}deno_npm_client.ts`,
          npmSpecifier(pkg),
          JSON.stringify(config),
        ],
        `deno_npm_client.ts ${npmSpecifier(pkg)}`,
      ),
  };
}

/** The gearman CLI (gearman-tools, C libgearman). */
const gearmanCli: Library = {
  id: "gearman-cli",
  name: "libgearman via `gearman` CLI",
  exceptionText: false,
  setup: memo(async () => {
    const v = await probe("sh", ["-c", "command -v gearman >/dev/null && gearman -H"]);
    if (v === undefined) {
      return { ok: false, reason: "`gearman` not found (apt-get install gearman-tools)" };
    }
    const pkg = await probe("sh", ["-c", "dpkg-query -W -f '${Version}' gearman-tools"]);
    return { ok: true, version: pkg ? `gearman-tools ${pkg}` : "gearman-tools" };
  }),
  async observe(target, config) {
    const base = ["-h", HOST, "-p", String(target.port)];
    const gearman = (args: string[], stdin: string | Uint8Array) =>
      runProcess("gearman", [...base, ...args], { timeoutMs: config.timeoutMs, stdin });
    const ended = (r: ProcessResult) =>
      r.timedOut
        ? `timed out after ${config.timeoutMs} ms (killed)`
        : `exit ${r.code}, stderr ${JSON.stringify(r.stderr.trim())}`;
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    const failure = async (fn: string): Promise<Observation> => {
      const r = await gearman(["-f", fn], "x");
      return {
        failed: !r.timedOut && r.code !== 0 && r.stderr.includes("Job failed"),
        detail: ended(r),
      };
    };
    const obs: Partial<Observations> = {};
    {
      const r = await gearman(["-f", config.fn.rev], config.submitData);
      obs.submit = r.code === 0 && !r.timedOut ? { result: text(r.stdout) } : { error: ended(r) };
    }
    {
      const r = await gearman(["-b", "-f", config.fn.bg], config.bgData);
      obs.background = r.code === 0 && !r.timedOut ? {} : { error: ended(r) };
    }
    obs.status = {
      unsupported: "the gearman CLI has no job-status option (nor prints the handle of a " +
        "background job unless -v); libgearman's gearman_client_job_status is the PHP row",
    };
    obs.fail = await failure(config.fn.fail);
    obs.exception = await failure(config.fn.exc);
    {
      const r = await gearman(["-f", config.fn.echo], largePayload(config.largeSize));
      obs.large = r.code === 0 && !r.timedOut
        ? { length: r.stdout.length, sha256: await sha256(r.stdout) }
        : { error: ended(r) };
    }
    return obs as Observations;
  },
};

/** PHP's GearmanClient (pecl gearman over libgearman). */
const php: Library = {
  id: "php",
  name: "libgearman via PHP GearmanClient",
  exceptionText: true,
  setup: memo(async () => {
    const v = await probe("php", [
      "-r",
      'if (!class_exists("GearmanClient")) exit(1); ' +
      'echo "php-gearman ", phpversion("gearman"), ", libgearman ", gearman_version();',
    ]);
    return v === undefined
      ? { ok: false, reason: "PHP's GearmanClient missing (apt-get install php-cli php-gearman)" }
      : { ok: true, version: v };
  }),
  observe: (_target, config) =>
    runDriver(
      "php",
      [`${MATRIX_DIR}peers/php_client.php`, JSON.stringify(config)],
      "php_client.php",
    ),
};

/** Perl's Gearman::Client. */
const perl: Library = {
  id: "perl",
  name: "Perl Gearman::Client",
  exceptionText: true,
  setup: memo(async () => {
    const v = await probe("perl", ["-MGearman::Client", "-e", "print $Gearman::Client::VERSION"]);
    return v === undefined
      ? {
        ok: false,
        reason: "Perl's Gearman::Client missing (apt-get install libgearman-client-perl)",
      }
      : { ok: true, version: v };
  }),
  observe: (_target, config) =>
    runDriver(
      "perl",
      [`${MATRIX_DIR}peers/perl_client.pl`, JSON.stringify(config)],
      "perl_client.pl",
    ),
};

/** Run `f` with an abort signal that fires after `ms`; reject then. */
async function withTimeout<T>(ms: number, f: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`timed out after ${ms} ms`);
      controller.abort(err);
      reject(err);
    }, ms);
  });
  try {
    return await Promise.race([f(controller.signal), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Our own Client, in this process. */
const ours: Library = {
  id: "ours",
  name: "@x/gearman Client",
  exceptionText: true,
  setup: () => Promise.resolve({ ok: true, version: `Deno ${Deno.version.deno}` }),
  async observe(target, config) {
    await using client = new Client({
      servers: [`${HOST}:${target.port}`],
      connectTimeoutMs: config.timeoutMs,
    });
    const checks: Record<Check, (signal: AbortSignal) => Promise<Observation>> = {
      submit: async (signal) => ({
        result: (await client.run(config.fn.rev, config.submitData, { signal })).text(),
      }),
      background: async () => ({
        handle: await client.submit(config.fn.bg, config.bgData, { background: true }).handle,
      }),
      status: async () => {
        const handle = await client.submit(config.fn.idle, "queued", { background: true }).handle;
        const q = await client.status(handle);
        const u = await client.status(config.unknownHandle);
        return {
          queued: { known: q.known, running: q.running },
          unknown: { known: u.known, running: u.running },
        };
      },
      fail: async (signal) => {
        try {
          await client.run(config.fn.fail, "x", { signal });
          return { failed: false, detail: "completed" };
        } catch (err) {
          return { failed: err instanceof JobFailedError, detail: String(err) };
        }
      },
      exception: async (signal) => {
        try {
          await client.run(config.fn.exc, "x", { signal });
          return { failed: false, detail: "completed" };
        } catch (err) {
          if (err instanceof JobExceptionError) return { exception: err.text };
          return { failed: err instanceof JobFailedError, detail: String(err) };
        }
      },
      large: async (signal) => {
        const r = await client.run(config.fn.echo, largePayload(config.largeSize), { signal });
        return { length: r.bytes.length, sha256: await sha256(r.bytes) };
      },
    };
    const obs: Partial<Observations> = {};
    for (const check of CHECKS) {
      try {
        obs[check] = await withTimeout(config.timeoutMs, checks[check]);
      } catch (err) {
        obs[check] = { error: String(err) };
      }
    }
    return obs as Observations;
  },
};

/** Every library, in table order. */
export const LIBRARIES: readonly Library[] = [
  ours,
  npmUnderNode("gearman", true),
  npmUnderDeno("gearman", true),
  npmUnderNode("node-gearman", false),
  npmUnderDeno("node-gearman", false),
  gearmanCli,
  php,
  perl,
];

/** Is /usr/sbin/gearmand usable: its version, or why not. */
export const setupGearmand: () => Promise<Setup> = memo(async () => {
  const v = await probe(GEARMAND, ["--version"]);
  return v === undefined
    ? { ok: false, reason: `${GEARMAND} missing (apt-get install gearman-job-server)` }
    : { ok: true, version: v.split("\n")[0]!.replace(/ - .*/, "") };
});

// ---------------------------------------------------------------------------
// Expectations

/** A cell that cannot pass, and why (upstream). */
export interface Limit {
  /** The servers it applies to. */
  servers: readonly ("ours" | "gearmand")[];
  /** "n/a": the library has no API for it; "fail": it tries and fails. */
  outcome: "n/a" | "fail";
  /** The upstream reason, shown in the table's notes. */
  reason: string;
  /** The failure must look like this (so a different failure is not excused). */
  match?: RegExp;
}

const BOTH = ["ours", "gearmand"] as const;

const NODE_GEARMAN_LIMITS: Partial<Record<Check, Limit>> = {
  background: {
    servers: BOTH,
    outcome: "fail",
    reason: "node-gearman 0.2.2 appends a NUL byte to a background job's data: " +
      "`Job` passes `false` as the JOB_CREATED callback, which is encoded as one more " +
      "(empty) argument, so the worker gets `data\\0`",
    match: /\\u0000/,
  },
  status: {
    servers: BOTH,
    outcome: "n/a",
    reason: "node-gearman 0.2.2 has no job-status API (never sends GET_STATUS, ignores " +
      "STATUS_RES) and gives no handle for background jobs",
  },
  exception: {
    servers: ["gearmand"],
    outcome: "fail",
    reason: "node-gearman 0.2.2 does not know WORK_EXCEPTION (no OPTION_REQ); gearmand " +
      "1.1.20 then sends WORK_FAIL with the handle plus a NUL byte, which the library takes " +
      "as part of the handle, finds no such job, and waits forever",
    match: /timed out/,
  },
};

/** Cells that cannot pass, by library id and check. */
export const LIMITS: Record<string, Partial<Record<Check, Limit>>> = {
  "node-gearman-node": NODE_GEARMAN_LIMITS,
  "node-gearman-deno": NODE_GEARMAN_LIMITS,
  "gearman-cli": {
    status: {
      servers: BOTH,
      outcome: "n/a",
      reason: "the gearman CLI (gearman-tools 1.1.20) has no job-status option",
    },
    exception: {
      servers: ["gearmand"],
      outcome: "fail",
      reason: "the gearman CLI 1.1.20 does not ask for exceptions (no OPTION_REQ); gearmand " +
        "1.1.20 then sends WORK_FAIL with the handle plus a NUL byte, which libgearman " +
        "matches to no task, so the CLI waits forever",
      match: /timed out/,
    },
  },
};

/** The limit of a cell, if it has one. */
export function limitFor(libId: string, check: Check, server: string): Limit | undefined {
  const limit = LIMITS[libId]?.[check];
  return limit && (limit.servers as readonly string[]).includes(server) ? limit : undefined;
}

// ---------------------------------------------------------------------------
// Judging

/** The verdict on one cell. */
export interface Cell {
  outcome: "pass" | "fail" | "n/a";
  /** How it passed ("pass" or e.g. "pass (as failure)"), or why it did not. */
  detail: string;
}

/** Sleep `ms` milliseconds. */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const expectedLarge = memo(() => sha256(largePayload()));

/** Judge one check's observation. */
export async function judge(
  lib: Library,
  check: Check,
  obs: Observation,
  worker: MatrixWorker,
  config: Config,
): Promise<Cell> {
  const fail = (detail: string): Cell => ({ outcome: "fail", detail });
  if (typeof obs.unsupported === "string") return { outcome: "n/a", detail: obs.unsupported };
  if (typeof obs.error === "string") return fail(obs.error);
  const show = JSON.stringify(obs);
  switch (check) {
    case "submit": {
      const want = [...config.submitData].reverse().join("");
      return obs.result === want
        ? { outcome: "pass", detail: "pass" }
        : fail(`result ${JSON.stringify(obs.result)}, want ${JSON.stringify(want)}`);
    }
    case "background": {
      // The worker runs it soon after the submit: wait up to 3 s for it (or for
      // a job whose data only starts like it: a library that mangled the data).
      const ran = () => worker.backgroundSeen.some((d) => d.startsWith(config.bgData));
      for (let i = 0; i < 120 && !ran(); i++) await delay(25);
      if (worker.backgroundSeen.includes(config.bgData)) return { outcome: "pass", detail: "pass" };
      return fail(
        `the worker never ran ${JSON.stringify(config.bgData)}; it ran ${
          JSON.stringify(worker.backgroundSeen)
        }`,
      );
    }
    case "status": {
      const q = obs.queued as { known?: unknown; running?: unknown } | undefined;
      const u = obs.unknown as { known?: unknown } | undefined;
      return q?.known === true && q.running === false && u?.known === false
        ? { outcome: "pass", detail: "pass" }
        : fail(`want queued job known and not running, unknown handle not known: ${show}`);
    }
    case "fail":
      return obs.failed === true
        ? { outcome: "pass", detail: "pass" }
        : fail(`the client did not see the failure: ${show}`);
    case "exception":
      if (obs.exception === EXCEPTION_TEXT) return { outcome: "pass", detail: "pass" };
      if (!lib.exceptionText && obs.failed === true) {
        return { outcome: "pass", detail: "pass (as failure)" };
      }
      return fail(
        lib.exceptionText
          ? `want the exception text ${JSON.stringify(EXCEPTION_TEXT)}: ${show}`
          : `want a failure: ${show}`,
      );
    case "large":
      return obs.length === LARGE_SIZE && obs.sha256 === await expectedLarge()
        ? { outcome: "pass", detail: "pass" }
        : fail(`want ${LARGE_SIZE} bytes echoed intact: ${show}`);
  }
}
