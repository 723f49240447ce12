// One load-generator process for bench/main.ts. Speaks the raw Gearman
// protocol (the project's own PacketFramer/PacketWriter, no client library)
// over many pipelined connections.
//
//   deno run -A bench/load_process.ts '<LoadConfig JSON>'
//
// stdout: `READY` once connected (workers: registered), then
// `RESULT <LoadResult JSON>` when done, or `ERROR <message>` on failure.
// stdin: `GO` starts the work, `STOP` ends serving workers, `EXIT` (or EOF)
// closes everything and exits.

import process from "node:process";
import { Magic, PacketFramer, PacketType, PacketWriter } from "../src/protocol/mod.ts";
import {
  type EchoConfig,
  Histogram,
  type LoadConfig,
  type LoadResult,
  nowMs,
  type SubmitConfig,
  type WorkerConfig,
} from "./_shared.ts";

const encoder = new TextEncoder();

function say(line: string): void {
  console.log(line);
}

function fail(message: string): never {
  say(`ERROR ${message.replaceAll("\n", " ")}`);
  Deno.exit(1);
}

/** Bytes as a byte string (handles are ASCII). */
function bstr(b: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/**
 * A connection: read loop into a PacketFramer (conn.read into the framer's
 * free space), and double-buffered writes with at most one in flight.
 */
class Link {
  readonly conn: Deno.Conn;
  readonly framer: PacketFramer;
  w: PacketWriter = new PacketWriter();
  #spare: PacketWriter = new PacketWriter();
  #writing = false;

  constructor(conn: Deno.Conn, onPacket: (type: number, body: Uint8Array) => void) {
    this.conn = conn;
    this.framer = new PacketFramer({ packet: onPacket }, { magic: Magic.RES });
  }

  /** Send what was written, unless a write is in flight (it sends the rest when done). */
  flush(): void {
    if (this.#writing || this.w.length === 0) return;
    this.#writing = true;
    const w = this.w;
    this.w = this.#spare;
    this.#spare = w;
    this.#writeAll(w.take()).then(() => {
      w.reset();
      this.#writing = false;
      this.flush();
    }, (err) => fail(`write failed: ${(err as Error).message}`));
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /**
   * Read and dispatch until EOF; `done()` tells whether EOF is expected now,
   * `describe()` what the connection was doing, for error messages.
   */
  async readLoop(done: () => boolean, describe: () => string): Promise<void> {
    try {
      while (true) {
        const region = this.framer.readRegion();
        const n = await this.conn.read(region);
        if (n === null) break;
        this.framer.commit(n);
        this.flush();
      }
    } catch (err) {
      if (done()) return;
      fail(`read failed on ${describe()}: ${(err as Error).message}`);
    }
    if (!done()) fail(`the server closed ${describe()}`);
  }
}

async function connect(cfg: LoadConfig): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: cfg.host, port: cfg.port });
  conn.setNoDelay(true);
  return conn;
}

function packetName(type: number): string {
  for (const [name, t] of Object.entries(PacketType)) if (t === type) return name;
  return String(type);
}

function unexpected(type: number, body: Uint8Array): never {
  const args = new TextDecoder().decode(body.subarray(0, 200)).replaceAll("\0", " | ");
  fail(`unexpected ${packetName(type)} from the server: ${args}`);
}

/** Controls from stdin. */
const control = {
  go: Promise.withResolvers<void>(),
  stop: Promise.withResolvers<void>(),
};

async function readControl(): Promise<void> {
  let buf = "";
  const decoder = new TextDecoder();
  for await (const chunk of Deno.stdin.readable) {
    buf += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === "GO") control.go.resolve();
      else if (line === "STOP") control.stop.resolve();
      else if (line === "EXIT") Deno.exit(0);
    }
  }
  // The driver went away: nothing more to do.
  Deno.exit(0);
}

interface Work {
  /** Called at GO; resolves when the work is done. */
  run(): Promise<void>;
  count(): number;
  lastAt(): number;
  hist: Histogram;
  /** NO_JOB answers so far (workers). */
  noJobs(): number;
}

// ---------------------------------------------------------------- clients

async function submitters(cfg: SubmitConfig): Promise<Work> {
  const fn = encoder.encode(cfg.fn);
  const payload = new Uint8Array(cfg.payload).fill(120); // "x"
  const type = cfg.background ? PacketType.SUBMIT_JOB_BG : PacketType.SUBMIT_JOB;
  const hist = new Histogram();
  let completed = 0;
  let finishedConns = 0;
  let allDone = false;
  const finished = Promise.withResolvers<void>();
  const links: Link[] = [];
  const starters: (() => void)[] = [];
  const describers: (() => string)[] = [];

  for (let c = 0; c < cfg.connections; c++) {
    const quota = Math.floor(cfg.jobs / cfg.connections) + (c < cfg.jobs % cfg.connections ? 1 : 0);
    const inflight = Math.max(1, cfg.inflight);
    // Send times of jobs waiting for JOB_CREATED, in order (a ring).
    const ring = new Float64Array(inflight);
    let head = 0;
    let tail = 0;
    // Foreground: send time by handle, from JOB_CREATED to WORK_COMPLETE.
    const pending = new Map<string, number>();
    let sent = 0;
    let done = 0;
    const uniq = cfg.uniquePrefix === undefined ? undefined : `${cfg.uniquePrefix}${c}-`;
    const submitOne = () => {
      const w = link.w.begin(Magic.REQ, type).bytes(fn).nul();
      if (uniq !== undefined) w.byteString(uniq + sent);
      link.w.end(w.nul().bytes(payload));
      ring[tail] = nowMs();
      tail = (tail + 1) % inflight;
      sent++;
    };
    const completeOne = (t0: number) => {
      hist.record(nowMs() - t0);
      done++;
      completed++;
      if (sent < quota) submitOne();
      if (done === quota) {
        finishedConns++;
        if (finishedConns === cfg.connections) {
          allDone = true;
          finished.resolve();
        }
      }
    };
    const link: Link = new Link(await connect(cfg), (t, body) => {
      if (t === PacketType.JOB_CREATED) {
        const t0 = ring[head]!;
        head = (head + 1) % inflight;
        if (cfg.background) completeOne(t0);
        else pending.set(bstr(body, 0, body.length), t0);
      } else if (t === PacketType.WORK_COMPLETE && !cfg.background) {
        let nul = body.indexOf(0);
        if (nul < 0) nul = body.length;
        const h = bstr(body, 0, nul);
        const t0 = pending.get(h);
        if (t0 === undefined) fail(`WORK_COMPLETE for unknown handle ${h}`);
        pending.delete(h);
        completeOne(t0);
      } else {
        unexpected(t, body);
      }
    });
    links.push(link);
    describers.push(() =>
      `client connection ${c} after ${done} of ${quota} jobs (${sent - done} in flight, ` +
      `${pending.size} created), ${link.framer.pending} bytes of a packet pending`
    );
    if (quota === 0) finishedConns++;
    starters.push(() => {
      while (sent < Math.min(quota, inflight)) submitOne();
      link.flush();
    });
  }
  if (finishedConns === cfg.connections) allDone = true;
  links.forEach((l, i) => l.readLoop(() => allDone, describers[i]!));
  return {
    run() {
      if (allDone) return Promise.resolve();
      for (const s of starters) s();
      return finished.promise;
    },
    count: () => completed,
    lastAt: () => 0,
    hist,
    noJobs: () => 0,
  };
}

// ---------------------------------------------------------------- workers

async function workers(cfg: WorkerConfig): Promise<Work> {
  const fn = encoder.encode(cfg.fn);
  let completed = 0;
  let last = 0;
  let stoppedConns = 0;
  let allStopped = false;
  const drained = Promise.withResolvers<void>();
  const registered: Promise<void>[] = [];
  const links: Link[] = [];
  const drain = cfg.mode === "drain";
  // A limited drain: GRAB_JOBs sent (at most one per connection in flight)
  // plus jobs completed never pass `limit`.
  const limited = drain && cfg.limit !== undefined;
  const limit = cfg.limit ?? Infinity;
  let claimed = 0;
  let noJobs = 0;
  let started = false;

  for (let c = 0; c < cfg.connections; c++) {
    const reg = Promise.withResolvers<void>();
    registered.push(reg.promise);
    let sleeping = false;
    let stopped = false;
    /** Limited drain: grab if the limit allows (else this connection is done). */
    const grab = () => {
      if (claimed >= limit) return;
      claimed++;
      link.w.end(link.w.begin(Magic.REQ, PacketType.GRAB_JOB));
    };
    const link: Link = new Link(await connect(cfg), (t, body) => {
      const w = link.w;
      if (t === PacketType.JOB_ASSIGN) {
        const a = body.indexOf(0);
        const b = a < 0 ? -1 : body.indexOf(0, a + 1);
        if (b < 0) fail("malformed JOB_ASSIGN");
        w.end(
          w.begin(Magic.REQ, PacketType.WORK_COMPLETE).bytes(body.subarray(0, a)).nul().bytes(
            body.subarray(b + 1),
          ),
        );
        completed++;
        if (drain) last = nowMs();
        if (!limited) w.end(w.begin(Magic.REQ, PacketType.GRAB_JOB));
        else if (completed >= limit) {
          allStopped = true;
          drained.resolve();
        } else grab();
      } else if (t === PacketType.NO_JOB && limited) {
        // The queue looked empty to the server: sleep until it says otherwise.
        if (started) noJobs++;
        claimed--;
        w.end(w.begin(Magic.REQ, PacketType.PRE_SLEEP));
        sleeping = true;
      } else if (t === PacketType.NOOP && limited) {
        if (sleeping) {
          sleeping = false;
          grab();
        }
      } else if (t === PacketType.NO_JOB) {
        if (started) noJobs++;
        if (drain) {
          if (!stopped) {
            stopped = true;
            if (++stoppedConns === cfg.connections) {
              allStopped = true;
              drained.resolve();
            }
          }
        } else {
          w.end(w.begin(Magic.REQ, PacketType.PRE_SLEEP));
          sleeping = true;
          reg.resolve();
        }
      } else if (t === PacketType.NOOP) {
        if (!drain && sleeping) {
          sleeping = false;
          w.end(w.begin(Magic.REQ, PacketType.GRAB_JOB));
        }
      } else {
        unexpected(t, body);
      }
    });
    links.push(link);
    link.w.end(link.w.begin(Magic.REQ, PacketType.CAN_DO).bytes(fn));
    // Serving workers register and go to sleep now; draining ones grab at GO.
    if (!drain) link.w.end(link.w.begin(Magic.REQ, PacketType.GRAB_JOB));
    else reg.resolve();
    link.flush();
  }
  links.forEach((l, i) =>
    l.readLoop(
      () => allStopped,
      () => `worker connection ${i} (${completed} jobs completed by this process)`,
    )
  );
  await Promise.all(registered);
  return {
    run() {
      started = true;
      if (!drain) return control.stop.promise;
      if (limit <= 0) return Promise.resolve();
      for (const l of links) {
        if (limited) {
          if (claimed >= limit) break;
          claimed++;
        }
        l.w.end(l.w.begin(Magic.REQ, PacketType.GRAB_JOB));
        l.flush();
      }
      // STOP ends a drain early: several processes share one total (a cluster).
      return Promise.race([drained.promise, control.stop.promise]);
    },
    count: () => completed,
    lastAt: () => last,
    hist: new Histogram(),
    noJobs: () => noJobs,
  };
}

// ---------------------------------------------------------------- idle connections

function echoes(cfg: EchoConfig): Promise<Work> {
  const hist = new Histogram();
  const conns: Deno.Conn[] = [];
  const ping = new PacketWriter(64);
  ping.end(ping.begin(Magic.REQ, PacketType.ECHO_REQ).byteString("ping"));
  const req = ping.take().slice();
  const expect = req.length; // ECHO_RES is as long as ECHO_REQ
  let answered = 0;

  async function one(): Promise<void> {
    const t0 = nowMs();
    const conn = await connect(cfg);
    conns.push(conn);
    let off = 0;
    while (off < req.length) off += await conn.write(req.subarray(off));
    const buf = new Uint8Array(expect);
    let got = 0;
    while (got < expect) {
      const n = await conn.read(buf.subarray(got));
      if (n === null) fail("the server closed an idle connection before ECHO_RES");
      got += n;
    }
    const view = new DataView(buf.buffer);
    if (view.getUint32(0) !== Magic.RES || view.getUint32(4) !== PacketType.ECHO_RES) {
      fail(`expected ECHO_RES, got type ${view.getUint32(4)}`);
    }
    hist.record(nowMs() - t0);
    answered++;
  }

  return Promise.resolve({
    async run() {
      let next = 0;
      const lane = async () => {
        while (next < cfg.connections) {
          next++;
          await one();
        }
      };
      const lanes = [];
      for (let i = 0; i < Math.min(cfg.concurrency, cfg.connections); i++) lanes.push(lane());
      await Promise.all(lanes);
    },
    count: () => answered,
    lastAt: () => 0,
    hist,
    noJobs: () => 0,
  });
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const arg = Deno.args[0];
  if (arg === undefined) fail("usage: load_process.ts '<LoadConfig JSON>'");
  const cfg = JSON.parse(arg) as LoadConfig;
  if (cfg.host !== "127.0.0.1") fail("load only ever targets 127.0.0.1");
  setTimeout(() => fail(`gave up after ${cfg.maxMs} ms`), cfg.maxMs);
  readControl();
  let work: Work;
  try {
    work = cfg.role === "submit"
      ? await submitters(cfg)
      : cfg.role === "worker"
      ? await workers(cfg)
      : await echoes(cfg);
  } catch (err) {
    fail(`setup failed: ${(err as Error).message}`);
  }
  say("READY");
  await control.go.promise;
  const goAt = nowMs();
  const cpu0 = process.cpuUsage();
  const progress = cfg.progressMs
    ? setInterval(
      () => say(`PROGRESS ${JSON.stringify({ t: nowMs(), count: work.count() })}`),
      cfg.progressMs,
    )
    : undefined;
  await work.run();
  const doneAt = nowMs();
  clearInterval(progress);
  const cpu = process.cpuUsage(cpu0);
  const result: LoadResult = {
    role: cfg.role,
    connections: cfg.connections,
    count: work.count(),
    goAt,
    doneAt,
    lastAt: work.lastAt(),
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    hist: work.hist.toPairs(),
    noJobs: work.noJobs(),
  };
  say(`RESULT ${JSON.stringify(result)}`);
  // Stay connected until EXIT: the driver may read the server's RSS now.
}

if (import.meta.main) {
  main().catch((err) => fail(`crashed: ${(err as Error)?.stack ?? err}`));
}
