/**
 * Garbage soak: the server keeps every job while hostile connections hammer it.
 *
 * Starts our server as a child process on 127.0.0.1 (so its memory can be
 * read from /proc), takes its RSS baseline, then runs two things at once:
 *
 * - real traffic: `--clients` {@link Client}s submit `--jobs` jobs (half
 *   foreground, half background; high, normal and low priority; a quarter
 *   with a unique id; every job's data unique) to `--workers`
 *   {@link Worker}s, which record every job they run;
 * - `--garbage` hostile connections, in waves of `--wave`: random bytes,
 *   half headers, half packets, oversize headers, headers declaring the
 *   largest allowed body followed by a trickle, bad magic, unknown types,
 *   response magic, bad and over-long admin lines, byte-at-a-time
 *   (slowloris) packets, rogue workers that grab a job and vanish, rogue
 *   workers that sleep and never grab, foreground submits abandoned by an
 *   abrupt close, and idle connections, each closed abruptly or after
 *   reading what the server said.
 *
 * Then it checks:
 *
 * - lost: a job acknowledged (background: JOB_CREATED; foreground: submitted)
 *   that never ran, or a foreground job whose result never came (must be 0);
 * - duplicated: a job run more than once (must be 0);
 * - wrong result: a foreground result that is not its job's (must be 0);
 * - the server is still running, every hostile connection it should have
 *   refused got an ERROR, and afterwards no job and no hostile connection is
 *   left (admin `status` and `workers`);
 * - RSS: baseline, peak and after (everything closed and idle), and the
 *   slowest ECHO round trip seen while the soak ran. `after` must be within
 *   `--rss-slack` MiB of the baseline.
 *
 * ```sh
 * deno run -A scripts/soak_garbage.ts [--garbage 1000] [--jobs 100000] [--clients 4]
 *   [--workers 4] [--window 256] [--wave 100] [--seed 1] [--rss-slack 64] [--timeout 900]
 *   [--rounds 1] [--settle 60] [--in-process]
 * ```
 *
 * Exits 1 when a check fails.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ServerProcess } from "../tests/store/_process.ts";
import { AdminClient, Client, PacketClient } from "../client.ts";
import { Worker } from "../worker.ts";
import { serve } from "../server.ts";

/** The function real jobs run under. */
const FN = "soak";
/** A function no worker does: hostile foreground submits go there. */
const GARBAGE_FN = "soak-garbage";

/** Soak settings. */
export interface GarbageSoakOptions {
  /** Hostile connections per round. */
  garbage: number;
  /** Real jobs per round. */
  jobs: number;
  /** Rounds against the same server (more than one shows whether memory keeps growing). */
  rounds: number;
  /** Client objects submitting. */
  clients: number;
  /** Jobs each client keeps in flight. */
  window: number;
  /** Worker objects. */
  workers: number;
  /** Jobs each worker runs at once. */
  concurrency: number;
  /** Hostile connections open at once (one wave). */
  wave: number;
  /** Seed of the hostile behaviours. */
  seed: number;
  /** How far above the baseline RSS may end, in MiB. */
  rssSlackMiB: number;
  /** Longest whole soak, in ms. */
  timeoutMs: number;
  /**
   * How long the server is left idle after the last round before `after`
   * is read (the lowest RSS seen meanwhile), in ms. Other rounds get 5 s.
   */
  settleMs: number;
  /**
   * Run the server in this process (serve()) instead of a child: RSS then
   * counts the clients and workers too, but with `--v8-flags=--expose-gc`
   * the JS heap after a full GC is reported per round (a leak shows there).
   */
  inProcess: boolean;
  /** Where progress lines go. */
  log: (line: string) => void;
}

/** What a soak saw. */
export interface GarbageSoakResult {
  jobs: number;
  foreground: number;
  background: number;
  /** Background jobs that got JOB_CREATED. */
  acknowledged: number;
  /** Distinct jobs the workers ran. */
  ran: number;
  /** Acknowledged or submitted jobs never run, or whose result never came. */
  lost: number;
  /** Jobs run more than once. */
  duplicated: number;
  /** Foreground results that were not their job's. */
  wrongResult: number;
  /** Submits that failed (rejected by the client or the server). */
  failedSubmits: number;
  /** Hostile connections made, by kind. */
  garbageByKind: Record<string, number>;
  /** Hostile connections the server should have answered with ERROR and did not. */
  missingErrors: number;
  /** Hostile connections that could not even connect. */
  connectFailures: number;
  /** Jobs left on the server afterwards (admin `status` totals). */
  leftoverJobs: number;
  /** Connections left on the server afterwards beyond ours (admin `workers`). */
  leftoverConnections: number;
  /** The server was still running at the end. */
  serverAlive: boolean;
  /** Slowest ECHO round trip during the soak, in ms. */
  maxProbeMs: number;
  /**
   * Server RSS in MiB: at start, highest seen, and after the last round
   * (idle, everything closed); after each round; and the highest virtual
   * size seen.
   */
  rss: {
    baselineMiB: number;
    peakMiB: number;
    afterMiB: number;
    afterByRound: number[];
    vmPeakMiB: number;
    /** In-process runs with --expose-gc: JS heap after a full GC, after each round. */
    heapAfterGcByRound: number[];
  };
  durationMs: number;
  /** Every check held. */
  ok: boolean;
  /** Why not. */
  failures: string[];
}

/** A small seeded PRNG (mulberry32). */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const encoder = new TextEncoder();
const REQ = 0x00524551;
const RES = 0x00524553;
const MAX_PACKET = 64 * 1024 * 1024; // the server's default --max-packet-size

function packet(magic: number, type: number, body: string | Uint8Array): Uint8Array {
  const b = typeof body === "string" ? encoder.encode(body) : body;
  const out = new Uint8Array(12 + b.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, magic);
  v.setUint32(4, type);
  v.setUint32(8, b.length);
  out.set(b, 12);
  return out;
}

function header(magic: number, type: number, size: number): Uint8Array {
  const out = new Uint8Array(12);
  const v = new DataView(out.buffer);
  v.setUint32(0, magic);
  v.setUint32(4, type);
  v.setUint32(8, size);
  return out;
}

function randomBytes(rand: () => number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = rand() < 0.1 ? 0 : Math.floor(rand() * 256);
  return out;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A field of /proc/PID/status, in MiB. */
function procMiB(pid: number, field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+)\\s+kB`).exec(
    Deno.readTextFileSync(`/proc/${pid}/status`),
  );
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Resident memory of a process, in MiB. */
function rssMiB(pid: number): number {
  return procMiB(pid, "VmRSS");
}

/** Virtual size of a process, in MiB. */
function vmMiB(pid: number): number {
  return procMiB(pid, "VmSize");
}

// ---------------------------------------------------------------------------
// Hostile connections

/** What one hostile connection saw. */
interface GarbageOutcome {
  /** Bytes the server sent. */
  received: Uint8Array;
  /** The server closed the connection (EOF) before we did. */
  serverClosed: boolean;
}

/**
 * Read what the server sends until it closes or `ms` pass; then close.
 * Never throws.
 */
async function readUntilClosed(
  conn: Deno.Conn,
  ms: number,
  enough: (received: Uint8Array) => boolean = () => false,
): Promise<GarbageOutcome> {
  const parts: Uint8Array[] = [];
  let serverClosed = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms)));
  try {
    for (;;) {
      const buf = new Uint8Array(16 * 1024);
      const n = await Promise.race([conn.read(buf), timeout]);
      if (n === "timeout") break;
      if (n === null) {
        serverClosed = true;
        break;
      }
      parts.push(buf.slice(0, n));
      if (enough(concat(parts))) break;
    }
  } catch {
    serverClosed = true; // reset by the server
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* already closed */ }
  }
  return { received: concat(parts), serverClosed };
}

function concat(parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function write(conn: Deno.Conn, bytes: Uint8Array): Promise<boolean> {
  try {
    let off = 0;
    while (off < bytes.length) off += await conn.write(bytes.subarray(off));
    return true;
  } catch {
    return false; // the server closed first: fine
  }
}

function abort(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Close abruptly, without reading what the server said. */
function dropped(conn: Deno.Conn): GarbageOutcome {
  abort(conn);
  return { received: new Uint8Array(0), serverClosed: false };
}

/** Whether `bytes` holds an ERROR packet (type 19, RES magic) anywhere on a packet boundary. */
function hasErrorPacket(bytes: Uint8Array): boolean {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos + 12 <= bytes.length) {
    if (v.getUint32(pos) !== RES) return false;
    if (v.getUint32(pos + 4) === 19) return true;
    pos += 12 + v.getUint32(pos + 8);
  }
  return false;
}

const ADMIN_LINES = [
  "status\n",
  "workers\r\n",
  "show jobs\n",
  "show unique jobs\n",
  "prioritystatus\n",
  "version\n",
  "getpid\n",
  "cancel job H:nohost:1\n",
  "cancel job\n",
  "cancel\n",
  "maxqueue\n",
  "maxqueue soak-garbage 1 2 3 4 5 6\n",
  "create function\n",
  "drop function\n",
  "drop function soak-nonexistent\n",
  "show\n",
  "show nothing\n",
  "retry dead\n",
  "purge dead\n",
  "\r\n\r\n\n",
  "\t \t\n",
  "bogus command with words\n",
  "STATUS\r\n",
  "jobs\n",
  "clients\n",
  "verbose\n",
  "\xff\xfe\xfd\n",
];

/** The kinds of hostile connection, with their weights. */
const KINDS: [string, number][] = [
  ["random-bytes", 10],
  ["half-header", 6],
  ["half-packet", 8],
  ["oversize-header", 6],
  ["big-declared-body", 1],
  ["bad-magic", 6],
  ["unknown-type", 6],
  ["res-magic", 4],
  ["admin-garbage", 8],
  ["long-line", 3],
  ["slowloris", 3],
  ["thief", 8],
  ["sleepy-worker", 3],
  ["abandoned-submit", 6],
  ["idle", 3],
  ["valid-then-garbage", 6],
];
const KIND_WEIGHT = KINDS.reduce((s, [, w]) => s + w, 0);

function pickKind(rand: () => number): string {
  let r = rand() * KIND_WEIGHT;
  for (const [k, w] of KINDS) {
    if ((r -= w) < 0) return k;
  }
  return KINDS[0]![0];
}

/** Kinds the server must answer with an ERROR packet. */
const MUST_ERROR = new Set([
  "oversize-header",
  "bad-magic",
  "unknown-type",
  "res-magic",
  "long-line",
]);

/** One hostile connection of `kind`. Resolves once it is closed. Never throws. */
async function hostile(
  port: number,
  kind: string,
  rand: () => number,
): Promise<GarbageOutcome | undefined> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return undefined;
  }
  const abrupt = rand() < 0.5;
  const hold = 50 + Math.floor(rand() * 400);
  switch (kind) {
    case "random-bytes":
      await write(conn, randomBytes(rand, 1 + Math.floor(rand() * 3000)));
      break;
    case "half-header":
      await write(conn, header(REQ, 7, 100).subarray(0, 1 + Math.floor(rand() * 11)));
      if (abrupt) return dropped(conn);
      break;
    case "half-packet": {
      const p = packet(REQ, 7, `${GARBAGE_FN}\0\0${"x".repeat(Math.floor(rand() * 5000))}`);
      await write(conn, p.subarray(0, 12 + Math.floor(rand() * (p.length - 12))));
      if (abrupt) return dropped(conn);
      break;
    }
    case "oversize-header":
      await write(conn, header(REQ, 7, MAX_PACKET + 1 + Math.floor(rand() * 2 ** 31)));
      break;
    case "big-declared-body":
      // Allowed size, then a trickle: the server must not hold much for it.
      await write(conn, header(REQ, 7, MAX_PACKET));
      await write(conn, randomBytes(rand, 1000));
      await sleep(hold);
      return dropped(conn);
    case "bad-magic":
      await write(conn, packet(rand() < 0.5 ? 0x00524558 : 0x00000000, 7, "soak\0\0x"));
      break;
    case "unknown-type":
      await write(conn, packet(REQ, 43 + Math.floor(rand() * 1000), "junk"));
      break;
    case "res-magic":
      // Known types with response magic: an ERROR each, the connection stays.
      await write(conn, packet(RES, 1 + Math.floor(rand() * 42), "junk"));
      await write(conn, packet(REQ, 16, "still-here"));
      break;
    case "admin-garbage": {
      let lines = "";
      for (let i = 1 + Math.floor(rand() * 5); i > 0; i--) {
        lines += ADMIN_LINES[Math.floor(rand() * ADMIN_LINES.length)];
      }
      await write(conn, Uint8Array.from(lines, (c) => c.charCodeAt(0) & 0xff));
      break;
    }
    case "long-line":
      // Past the 64 KiB admin line limit, no newline.
      await write(conn, encoder.encode("status " + "z".repeat(70 * 1024)));
      break;
    case "slowloris": {
      const p = packet(REQ, 16, "slow");
      for (const b of p) {
        if (!(await write(conn, new Uint8Array([b])))) break;
        await sleep(5);
      }
      break;
    }
    case "thief":
      // A worker that grabs a job and vanishes: the job must be requeued.
      await write(conn, new Uint8Array([...packet(REQ, 1, FN), ...packet(REQ, 9, "")]));
      await sleep(hold);
      return dropped(conn);
    case "sleepy-worker":
      // Registers, sleeps, and never grabs even when woken.
      await write(conn, new Uint8Array([...packet(REQ, 1, FN), ...packet(REQ, 4, "")]));
      await sleep(hold);
      return dropped(conn);
    case "abandoned-submit":
      await write(conn, packet(REQ, 7, `${GARBAGE_FN}\0\0abandoned`));
      await sleep(Math.floor(hold / 4));
      return dropped(conn);
    case "idle":
      await sleep(hold);
      return dropped(conn);
    case "valid-then-garbage":
      await write(conn, packet(REQ, 16, "hello"));
      await write(conn, randomBytes(rand, 1 + Math.floor(rand() * 200)));
      break;
  }
  if (abrupt && !MUST_ERROR.has(kind)) return dropped(conn);
  // Connections the server must refuse: wait for its ERROR and close, even
  // while it is busy (a big allocation can stall it for a second).
  if (MUST_ERROR.has(kind)) return await readUntilClosed(conn, 10_000, hasErrorPacket);
  return await readUntilClosed(conn, 300 + hold);
}

// ---------------------------------------------------------------------------
// The server under test

/** The server: a child process (its own RSS), or serve() in this process. */
interface SoakServer extends AsyncDisposable {
  readonly address: string;
  readonly port: number;
  /** The process whose memory is measured. */
  readonly pid: number;
  readonly alive: boolean;
  stderr(): string;
}

async function startServer(inProcess: boolean): Promise<SoakServer> {
  if (inProcess) {
    const server = serve({ hostname: "127.0.0.1", port: 0, handleHost: "soak" });
    let alive = true;
    void server.finished.then(() => (alive = false));
    return {
      address: `127.0.0.1:${server.addr.port}`,
      port: server.addr.port,
      pid: Deno.pid,
      get alive() {
        return alive;
      },
      stderr: () => "",
      [Symbol.asyncDispose]: () => server.shutdown(),
    };
  }
  const child = await ServerProcess.start({ logLevel: "error", handleHost: "soak" });
  return {
    address: child.address,
    port: child.port,
    pid: child.pid,
    get alive() {
      return child.exitStatus === undefined;
    },
    stderr: () => child.stderr,
    [Symbol.asyncDispose]: () => child[Symbol.asyncDispose](),
  };
}

/** JS heap in use after a full GC, in MiB (needs --v8-flags=--expose-gc; NaN without). */
function heapAfterGcMiB(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return NaN;
  gc();
  return Deno.memoryUsage().heapUsed / (1024 * 1024);
}

// ---------------------------------------------------------------------------
// The soak

/** Run the soak. */
export async function runGarbageSoak(options: GarbageSoakOptions): Promise<GarbageSoakResult> {
  const o = options;
  const started = performance.now();
  const deadline = Date.now() + o.timeoutMs;
  const failures: string[] = [];
  await using server = await startServer(o.inProcess);
  const address = server.address;
  const pid = server.pid;
  await sleep(1000);
  const baseline = rssMiB(pid);
  let peak = baseline;
  o.log(`server pid ${pid} on ${address}: RSS baseline ${baseline.toFixed(1)} MiB`);

  // RSS sampler and ECHO probe, for the whole soak.
  let sampling = true;
  let maxProbeMs = 0;
  let vmPeak = 0;
  const probe = await PacketClient.connect({ hostname: "127.0.0.1", port: server.port });
  const sampler = (async () => {
    while (sampling) {
      try {
        peak = Math.max(peak, rssMiB(pid));
        vmPeak = Math.max(vmPeak, vmMiB(pid));
      } catch { /* exited */ }
      const t = performance.now();
      try {
        probe.send("ECHO_REQ", "probe");
        await probe.receive(30_000);
      } catch { /* counted as slow */ }
      maxProbeMs = Math.max(maxProbeMs, performance.now() - t);
      await sleep(200);
    }
  })();

  // Aborted at the deadline: every job still in flight then fails, so no wait
  // below can hang the soak. (Not a Promise.race against one long-lived
  // promise: each race would leave a reaction on it until the deadline.)
  const deadlineAbort = new AbortController();
  const deadlineTimer = setTimeout(
    () => deadlineAbort.abort(new Error("the soak ran out of time")),
    Math.max(0, deadline - Date.now()),
  );

  // Per round (so a long soak's own bookkeeping does not grow), then totals.
  let runs = new Map<string, number>();
  let background = new Set<string>();
  let acknowledged = new Set<string>();
  let totalRan = 0;
  let totalBackground = 0;
  let totalAcknowledged = 0;
  let lost = 0;
  let duplicated = 0;
  const servers = [address];
  const priorities = ["high", "normal", "low"] as const;
  let foreground = 0;
  let wrongResult = 0;
  let failedSubmits = 0;
  let fgOk = 0;
  const rand = random(o.seed);
  const garbageByKind: Record<string, number> = {};
  let missingErrors = 0;
  let connectFailures = 0;
  let leftoverJobs = -1;
  let leftoverConnections = -1;
  const afterByRound: number[] = [];
  const heapByRound: number[] = [];
  const seedTag = (o.seed >>> 0).toString(36);

  for (let round = 1; round <= o.rounds; round++) {
    runs = new Map();
    background = new Set();
    acknowledged = new Set();
    const fgBefore = foreground - fgOk - wrongResult - failedSubmits;
    const ranHere = runs;
    // Real workers: record every run.
    const workers: Worker[] = [];
    for (let i = 0; i < o.workers; i++) {
      const w = new Worker({ servers, concurrency: o.concurrency, clientId: `soak-worker-${i}` });
      w.register(FN, (job) => {
        const data = job.text();
        ranHere.set(data, (ranHere.get(data) ?? 0) + 1);
        return `done:${data}`;
      });
      w.start();
      workers.push(w);
    }
    // Real clients.
    const clients: Client[] = [];
    for (let i = 0; i < o.clients; i++) clients.push(new Client({ servers }));
    let next = 0;
    const submitLoop = async (client: Client) => {
      const inFlight = new Set<Promise<void>>();
      while (next < o.jobs && Date.now() < deadline) {
        const i = next++;
        const data = `job-${seedTag}-${round}-${i}-${(i * 2654435761 >>> 0).toString(16)}`;
        const priority = priorities[Math.floor(i / 2) % 3]!;
        const unique = i % 4 === 1 ? `u-${seedTag}-${round}-${i}` : undefined;
        const signal = deadlineAbort.signal;
        const opts = unique === undefined ? { priority, signal } : { priority, unique, signal };
        let p: Promise<void>;
        if (i % 2 === 0) {
          foreground++;
          p = client.run(FN, data, opts).then(
            (r) => {
              if (r.text() === `done:${data}`) fgOk++;
              else wrongResult++;
            },
            (err) => {
              failedSubmits++;
              if (failedSubmits <= 5) o.log(`foreground job ${i} failed: ${err}`);
            },
          );
        } else {
          background.add(data);
          p = client.submit(FN, data, { ...opts, background: true }).handle.then(
            () => void acknowledged.add(data),
            (err) => {
              failedSubmits++;
              if (failedSubmits <= 5) o.log(`background submit ${i} failed: ${err}`);
            },
          );
        }
        const tracked: Promise<void> = p.finally(() => inFlight.delete(tracked));
        inFlight.add(tracked);
        if (inFlight.size >= o.window) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    };
    const progress = setInterval(() => {
      o.log(
        `  round ${round}: submitted ${
          Math.min(next, o.jobs)
        }/${o.jobs}, ran ${runs.size}, RSS peak ${peak.toFixed(1)} MiB, slowest echo ${
          maxProbeMs.toFixed(0)
        } ms`,
      );
    }, 5000);
    const jobsDone = Promise.all(clients.map(submitLoop));

    // Hostile waves, at the same time.
    const garbageDone = (async () => {
      for (let made = 0; made < o.garbage && Date.now() < deadline;) {
        const n = Math.min(o.wave, o.garbage - made);
        const wave: Promise<void>[] = [];
        for (let k = 0; k < n; k++) {
          const kind = pickKind(rand);
          const r = random(Math.floor(rand() * 2 ** 32));
          garbageByKind[kind] = (garbageByKind[kind] ?? 0) + 1;
          wave.push(
            hostile(server.port, kind, r).then((out) => {
              if (out === undefined) connectFailures++;
              else if (MUST_ERROR.has(kind) && !hasErrorPacket(out.received)) {
                missingErrors++;
                if (missingErrors <= 5) {
                  o.log(
                    `  ${kind}: no ERROR from the server (got ${out.received.length} bytes, ${
                      out.serverClosed ? "then the server closed" : "and it did not close"
                    })`,
                  );
                }
              }
            }),
          );
        }
        made += n;
        await Promise.all(wave);
        await sleep(20);
      }
    })();

    await Promise.all([jobsDone, garbageDone]);
    // Background jobs run after their JOB_CREATED: wait for them all.
    while (Date.now() < deadline) {
      let missing = 0;
      for (const d of acknowledged) if (!runs.has(d)) missing++;
      if (missing === 0) break;
      await sleep(100);
    }
    clearInterval(progress);

    // Stop everything of ours, then look at what the server has left.
    await Promise.all(workers.map((w) => w.stop({ timeoutMs: 5000 })));
    await Promise.all(clients.map((c) => c.close()));
    for (const d of acknowledged) if (!runs.has(d)) lost++;
    // Foreground jobs whose result never came (neither a result nor an error).
    lost += foreground - fgOk - wrongResult - failedSubmits - fgBefore;
    for (const n of runs.values()) if (n > 1) duplicated++;
    totalRan += runs.size;
    totalBackground += background.size;
    totalAcknowledged += acknowledged.size;
    if (!server.alive) break;
    {
      await using admin = await AdminClient.connect(address);
      // Connections close asynchronously: give the server a moment.
      for (let tries = 0; tries < 50; tries++) {
        const status = await admin.status();
        leftoverJobs = status.reduce((s, f) => s + f.total, 0);
        // Less the admin connection and the probe.
        leftoverConnections = (await admin.workers()).length - 2;
        if (leftoverJobs === 0 && leftoverConnections === 0) break;
        await sleep(100);
      }
    }
    // Idle: let the server's GC and allocator settle, and take the lowest reading.
    let after = Infinity;
    const settleMs = round === o.rounds ? o.settleMs : 5000;
    for (let waited = 250; waited <= settleMs; waited += 250) {
      await sleep(250);
      try {
        const now = rssMiB(pid);
        after = Math.min(after, now);
        if (waited % 10_000 === 0) o.log(`  idle ${waited / 1000} s: RSS ${now.toFixed(1)} MiB`);
      } catch { /* exited */ }
    }
    afterByRound.push(after);
    const heap = heapAfterGcMiB();
    heapByRound.push(heap);
    o.log(
      `round ${round}: ${totalRan} jobs run so far; RSS after ${after.toFixed(1)} MiB (peak ${
        peak.toFixed(1)
      })${Number.isNaN(heap) ? "" : `; JS heap after GC ${heap.toFixed(1)} MiB`}`,
    );
  }
  clearTimeout(deadlineTimer);
  sampling = false;
  await sampler;
  await probe.close();
  const serverAlive = server.alive;
  const after = afterByRound.at(-1) ?? NaN;
  const jobs = o.jobs * o.rounds;

  const result: GarbageSoakResult = {
    jobs,
    foreground,
    background: totalBackground,
    acknowledged: totalAcknowledged,
    ran: totalRan,
    lost,
    duplicated,
    wrongResult,
    failedSubmits,
    garbageByKind,
    missingErrors,
    connectFailures,
    leftoverJobs,
    leftoverConnections,
    serverAlive,
    maxProbeMs,
    rss: {
      baselineMiB: baseline,
      peakMiB: peak,
      afterMiB: after,
      afterByRound,
      vmPeakMiB: vmPeak,
      heapAfterGcByRound: heapByRound,
    },
    durationMs: performance.now() - started,
    ok: false,
    failures,
  };
  if (foreground + totalBackground !== jobs) {
    failures.push(`only ${foreground + totalBackground} of ${jobs} jobs submitted in time`);
  }
  if (lost !== 0) failures.push(`${lost} jobs lost`);
  if (duplicated !== 0) failures.push(`${duplicated} jobs ran more than once`);
  if (wrongResult !== 0) failures.push(`${wrongResult} wrong foreground results`);
  if (failedSubmits !== 0) failures.push(`${failedSubmits} submits failed`);
  if (totalAcknowledged !== totalBackground) {
    failures.push(`${totalBackground - totalAcknowledged} background submits not acknowledged`);
  }
  if (missingErrors !== 0) failures.push(`${missingErrors} hostile connections got no ERROR`);
  if (!serverAlive) failures.push(`the server exited: ${server.stderr().slice(-2000)}`);
  if (leftoverJobs !== 0) failures.push(`${leftoverJobs} jobs left on the server`);
  if (leftoverConnections !== 0) failures.push(`${leftoverConnections} connections left open`);
  if (!(after <= baseline + o.rssSlackMiB)) {
    failures.push(
      `RSS after ${after.toFixed(1)} MiB is over the baseline ${
        baseline.toFixed(1)
      } MiB + ${o.rssSlackMiB} MiB`,
    );
  }
  result.ok = failures.length === 0;
  return result;
}

/** Print a result as the lines docs/ROBUSTNESS.md quotes. */
export function formatResult(r: GarbageSoakResult): string {
  const kinds = Object.entries(r.garbageByKind).sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k} ${n}`).join(", ");
  const garbage = Object.values(r.garbageByKind).reduce((s, n) => s + n, 0);
  return [
    `jobs            ${r.jobs} (${r.foreground} foreground, ${r.background} background; ${r.acknowledged} acknowledged)`,
    `ran             ${r.ran}`,
    `lost            ${r.lost}`,
    `duplicated      ${r.duplicated}`,
    `wrong results   ${r.wrongResult}`,
    `failed submits  ${r.failedSubmits}`,
    `hostile conns   ${garbage} (${kinds})`,
    `missing ERRORs  ${r.missingErrors}; connect failures ${r.connectFailures}`,
    `left on server  ${r.leftoverJobs} jobs, ${r.leftoverConnections} connections`,
    `server alive    ${r.serverAlive}`,
    `slowest echo    ${r.maxProbeMs.toFixed(0)} ms`,
    `RSS MiB         before ${r.rss.baselineMiB.toFixed(1)}, peak ${
      r.rss.peakMiB.toFixed(1)
    }, after ${r.rss.afterMiB.toFixed(1)}`,
    ...(r.rss.afterByRound.length > 1
      ? [`RSS after each  ${r.rss.afterByRound.map((n) => n.toFixed(1)).join(", ")} MiB`]
      : []),
    ...(r.rss.heapAfterGcByRound.some((n) => !Number.isNaN(n))
      ? [`JS heap after GC ${r.rss.heapAfterGcByRound.map((n) => n.toFixed(1)).join(", ")} MiB`]
      : []),
    `virtual peak    ${(r.rss.vmPeakMiB / 1024).toFixed(1)} GiB`,
    `duration        ${(r.durationMs / 1000).toFixed(1)} s`,
    r.ok ? "OK" : `FAILED: ${r.failures.join("; ")}`,
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      garbage: { type: "string", default: "1000" },
      jobs: { type: "string", default: "100000" },
      rounds: { type: "string", default: "1" },
      clients: { type: "string", default: "4" },
      window: { type: "string", default: "256" },
      workers: { type: "string", default: "4" },
      concurrency: { type: "string", default: "16" },
      wave: { type: "string", default: "100" },
      seed: { type: "string", default: "1" },
      "rss-slack": { type: "string", default: "64" },
      timeout: { type: "string", default: "900" },
      settle: { type: "string", default: "60" },
      "in-process": { type: "boolean", default: false },
    },
  });
  const int = (name: string, v: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      console.error(`--${name} must be an integer from ${min} to ${max}, got ${v}`);
      Deno.exit(2);
    }
    return n;
  };
  const result = await runGarbageSoak({
    garbage: int("garbage", values.garbage, 0, 100_000),
    jobs: int("jobs", values.jobs, 0, 10_000_000),
    rounds: int("rounds", values.rounds, 1, 1000),
    clients: int("clients", values.clients, 1, 64),
    window: int("window", values.window, 1, 100_000),
    workers: int("workers", values.workers, 1, 64),
    concurrency: int("concurrency", values.concurrency, 1, 1000),
    wave: int("wave", values.wave, 1, 1000),
    seed: int("seed", values.seed, 0, 2 ** 32 - 1),
    rssSlackMiB: int("rss-slack", values["rss-slack"], 0, 100_000),
    timeoutMs: int("timeout", values.timeout, 1, 86_400) * 1000,
    settleMs: int("settle", values.settle, 0, 3600) * 1000,
    inProcess: values["in-process"],
    log: (line) => console.log(line),
  });
  console.log(formatResult(result));
  Deno.exit(result.ok ? 0 : 1);
}
