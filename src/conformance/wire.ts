// A raw, recording connection for the conformance runner: it sends bytes
// exactly as told and records exactly what the server sends back — binary
// packets (with their raw body), admin text lines (with their line ending)
// and the close — so scenarios can check every byte.

/** Something a server sent on one connection. */
export type WireEvent =
  | {
    /** A binary packet. */
    kind: "packet";
    /** Its magic as four bytes, usually `"\0RES"`. */
    magic: string;
    /** Its type number. */
    type: number;
    /** Its body as a byte string (one char per byte). */
    body: string;
  }
  | {
    /** An admin text line. */
    kind: "line";
    /** The line as a byte string, including its `\n` (and any `\r`). */
    text: string;
  }
  | {
    /** The server closed the connection (EOF or reset). */
    kind: "closed";
  };

const HEADER = 12;

/** Bytes as a byte string (one char per byte). */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode.apply(
      null,
      bytes.subarray(i, Math.min(bytes.length, i + 4096)) as unknown as number[],
    );
  }
  return s;
}

/** A byte string (char codes 0-255) as bytes. */
export function fromLatin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** One TCP connection to the server under test. */
export class WireConnection {
  readonly #conn: Deno.TcpConn;
  readonly #events: WireEvent[] = [];
  #buf = "";
  #closed = false;
  #userClosed = false;
  #waiter: (() => void) | undefined;
  readonly #reading: Promise<void>;
  #writing: Promise<void> = Promise.resolve();

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    this.#reading = this.#readLoop();
  }

  /** Connect to `hostname:port`. */
  static async open(hostname: string, port: number): Promise<WireConnection> {
    const conn = await Deno.connect({ hostname, port });
    conn.setNoDelay(true);
    return new WireConnection(conn);
  }

  /** Events received and not yet taken. */
  get events(): WireEvent[] {
    return this.#events;
  }

  /** Whether the server closed the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  async #readLoop(): Promise<void> {
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#buf += latin1(chunk.subarray(0, n));
        this.#frame();
      }
    } catch {
      // Reset or closed by us: either way the stream has ended.
    }
    if (this.#buf.length > 0 && !this.#userClosed) {
      // A partial packet or line: record it as it is, so it is seen.
      this.#push({ kind: "line", text: this.#buf });
      this.#buf = "";
    }
    this.#closed = true;
    if (!this.#userClosed) this.#push({ kind: "closed" });
    this.#wake();
  }

  #frame(): void {
    for (;;) {
      const b = this.#buf;
      if (b.length === 0) return;
      if (b.charCodeAt(0) === 0) {
        if (b.length < HEADER) return;
        const size = (b.charCodeAt(8) << 24 >>> 0) + (b.charCodeAt(9) << 16) +
          (b.charCodeAt(10) << 8) + b.charCodeAt(11);
        if (b.length < HEADER + size) return;
        const type = (b.charCodeAt(4) << 24 >>> 0) + (b.charCodeAt(5) << 16) +
          (b.charCodeAt(6) << 8) + b.charCodeAt(7);
        this.#push({
          kind: "packet",
          magic: b.slice(0, 4),
          type,
          body: b.slice(HEADER, HEADER + size),
        });
        this.#buf = b.slice(HEADER + size);
      } else {
        const nl = b.indexOf("\n");
        if (nl < 0) return;
        this.#push({ kind: "line", text: b.slice(0, nl + 1) });
        this.#buf = b.slice(nl + 1);
      }
    }
  }

  #push(e: WireEvent): void {
    this.#events.push(e);
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /**
   * Wait until `ready()` holds, at most `ms` milliseconds; checked on every
   * event and once the stream has ended. Resolves with its last value.
   */
  async waitUntil(ready: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      if (ready()) return true;
      const left = deadline - Date.now();
      if (left <= 0 || this.#closed) return ready();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiter = resolve;
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  /** Wait until an event is queued, at most `ms`; true when there is one. */
  waitEvent(ms: number): Promise<boolean> {
    return this.waitUntil(() => this.#events.length > 0, ms);
  }

  /** Take the first queued event. */
  take(): WireEvent | undefined {
    return this.#events.shift();
  }

  /** Send bytes (a byte string); errors (a closed peer) are ignored. */
  send(bytes: string): void {
    if (this.#userClosed) return;
    const data = fromLatin1(bytes);
    this.#writing = this.#writing.then(async () => {
      let off = 0;
      try {
        while (off < data.length) off += await this.#conn.write(data.subarray(off));
      } catch {
        // The server closed the connection: the read loop records it.
      }
    });
  }

  /** Wait until everything sent so far is written to the socket. */
  flushed(): Promise<void> {
    return this.#writing;
  }

  /** Close our side (after pending writes) and wait for the read loop to end. */
  async close(): Promise<void> {
    if (!this.#userClosed) {
      await this.#writing;
      this.#userClosed = true;
      try {
        this.#conn.close();
      } catch { /* already closed */ }
    }
    await this.#reading;
  }
}
