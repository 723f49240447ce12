// Helpers for the Gloom tests: a server with Gloom listeners on free ports,
// and a raw socket speaking the protocol exactly as the Gloom README puts
// it (a 32-bit big-endian length, then that many bytes of JSON), written
// here from scratch rather than with the package's own framer.

import assert from "node:assert/strict";
import { serve, type ServeOptions, type Server } from "../../server.ts";

// deno-lint-ignore no-explicit-any
export type Json = any;

/** A server on free loopback ports with Gloom enabled. */
export function startGloomServer(
  options: ServeOptions = {},
  gloom: NonNullable<ServeOptions["gloom"]> = {},
): Server {
  return serve({
    hostname: "127.0.0.1",
    port: 0,
    handleHost: "test",
    ...options,
    gloom: { masterPort: 0, workerPort: 0, ...gloom },
  });
}

/** Gearman `host:port` of a server, for Client/Worker. */
export function gearmanAddr(server: Server): string {
  return `127.0.0.1:${server.addr.port}`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One frame: 4-byte big-endian length, then the bytes. */
export function frame(payload: string | Uint8Array): Uint8Array {
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** A raw Gloom connection. */
export class RawGloom implements AsyncDisposable {
  readonly conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #eof = false;
  #wake: (() => void) | undefined;
  readonly #reading: Promise<void>;

  private constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.#reading = this.#readLoop();
  }

  static async connect(port: number): Promise<RawGloom> {
    return new RawGloom(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Connect to the master port of `server`. */
  static master(server: Server): Promise<RawGloom> {
    return RawGloom.connect(server.gloomAddrs!.master.port);
  }

  /** Connect to the worker port of `server`. */
  static worker(server: Server): Promise<RawGloom> {
    return RawGloom.connect(server.gloomAddrs!.worker.port);
  }

  async #readLoop(): Promise<void> {
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await this.conn.read(chunk);
        if (n === null) break;
        const next = new Uint8Array(this.#buf.length + n);
        next.set(this.#buf);
        next.set(chunk.subarray(0, n), this.#buf.length);
        this.#buf = next;
        this.#wake?.();
      }
    } catch { /* closed by us */ }
    this.#eof = true;
    this.#wake?.();
  }

  /** Send one message as JSON. */
  async send(message: Json): Promise<void> {
    await this.sendBytes(frame(JSON.stringify(message)));
  }

  /** Send raw bytes. */
  async sendBytes(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** A whole frame from the buffer, if one is there. */
  #take(): Uint8Array | undefined {
    if (this.#buf.length < 4) return undefined;
    const len = new DataView(this.#buf.buffer, this.#buf.byteOffset).getUint32(0);
    if (this.#buf.length < 4 + len) return undefined;
    const payload = this.#buf.slice(4, 4 + len);
    this.#buf = this.#buf.slice(4 + len);
    return payload;
  }

  /** Wait for bytes or EOF, at most `ms`; false on timeout. */
  async #wait(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const woke = await new Promise<boolean>((resolve) => {
      this.#wake = () => resolve(true);
      timer = setTimeout(() => resolve(false), ms);
    });
    clearTimeout(timer);
    this.#wake = undefined;
    return woke;
  }

  /** The next message (parsed JSON); fails on timeout or EOF. */
  async recv(timeoutMs = 3000): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const payload = this.#take();
      if (payload !== undefined) return JSON.parse(decoder.decode(payload));
      if (this.#eof) assert.fail("connection closed while waiting for a message");
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.#wait(left))) {
        assert.fail(`no message within ${timeoutMs} ms`);
      }
    }
  }

  /** Assert no message arrives within `ms`. */
  async expectNothing(ms = 100): Promise<void> {
    if (this.#take() === undefined && !this.#eof) await this.#wait(ms);
    const payload = this.#take();
    assert.equal(
      payload === undefined ? undefined : decoder.decode(payload),
      undefined,
      "expected no message",
    );
  }

  /** Assert the server closes the connection (after any messages, which are returned). */
  async expectClosed(timeoutMs = 3000): Promise<Json[]> {
    const deadline = Date.now() + timeoutMs;
    const got: Json[] = [];
    for (;;) {
      let payload;
      while ((payload = this.#take()) !== undefined) got.push(JSON.parse(decoder.decode(payload)));
      if (this.#eof) return got;
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.#wait(left))) {
        assert.fail(`connection still open after ${timeoutMs} ms`);
      }
    }
  }

  /** Close our side and wait for the read loop to end. */
  async close(): Promise<void> {
    try {
      this.conn.close();
    } catch { /* already closed */ }
    await this.#reading;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** An error frame's fields, checked: returns the frame. */
export function assertError(msg: Json, code: string, id?: unknown): Json {
  assert.equal(msg.type, "error", `expected an error frame, got ${JSON.stringify(msg)}`);
  assert.equal(msg.error, code, `expected error ${code}, got ${JSON.stringify(msg)}`);
  assert.equal(typeof msg.message, "string");
  assert.ok(msg.message.length > 0);
  if (id !== undefined) assert.deepEqual(msg.id, id);
  else assert.ok(!("id" in msg), `expected no id in ${JSON.stringify(msg)}`);
  return msg;
}

/** A raw worker joined to `jobType` (the join is processed when the server answers a status). */
export async function rawWorker(server: Server, jobType: string): Promise<RawGloom> {
  const w = await RawGloom.worker(server);
  await w.send({ type: "join", job_type: jobType });
  await waitForWorkers(server, jobType, 1);
  return w;
}

/** Ask for status over a fresh master connection. */
export async function status(server: Server): Promise<Json> {
  await using m = await RawGloom.master(server);
  await m.send({ type: "status" });
  const reply = await m.recv();
  assert.equal(reply.type, "status");
  return reply.job_types;
}

/** Wait until `jobType` has at least `n` workers. */
export async function waitForWorkers(server: Server, jobType: string, n: number): Promise<void> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const s = (await status(server))[jobType];
    if (s !== undefined && s.workers >= n) return;
    if (Date.now() > deadline) assert.fail(`${jobType} never had ${n} worker(s)`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Poll status until `check` holds for it (fails after 3 s); returns that status. */
export async function untilStatus(server: Server, check: (s: Json) => boolean): Promise<Json> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const s = await status(server);
    if (check(s)) return s;
    if (Date.now() > deadline) assert.fail(`status never matched: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
