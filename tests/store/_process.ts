// The real server as a child process (`deno run server.ts ...`), for the
// durable store tests and the kill -9 soak: start it, read its
// `listening on HOST:PORT` line, kill it with any signal, read its stderr.

const SERVER_PATH = new URL("../../server.ts", import.meta.url).pathname;
const REPO_DIR = new URL("../../", import.meta.url).pathname;

/** Options for {@link ServerProcess.start} and {@link runServer}. */
export interface ServerProcessOptions {
  /** SQLite file for `--store sqlite:PATH`; omit for the memory store. */
  storePath?: string;
  /** More server flags (`--job-retries 2`, `--store-sync full`, ...). */
  args?: string[];
  /**
   * Deno permission flags.
   * @default ["-A"]
   */
  permissions?: string[];
  /**
   * Handle host (`--handle-host`), so handles are predictable.
   * @default "test"
   */
  handleHost?: string;
  /**
   * Log level.
   * @default "warning"
   */
  logLevel?: string;
  /**
   * Longest wait for the `listening on` line.
   * @default 20000
   */
  startTimeoutMs?: number;
}

/** The server exited (or timed out) before it printed `listening on`. */
export class ServerStartError extends Error {
  /** Exit code, or undefined when it did not exit in time. */
  readonly code: number | undefined;
  /** What it wrote to stderr. */
  readonly stderr: string;
  /** What it wrote to stdout. */
  readonly stdout: string;

  constructor(message: string, code: number | undefined, stdout: string, stderr: string) {
    super(message);
    this.name = "ServerStartError";
    this.code = code;
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

function serverArgs(options: ServerProcessOptions): string[] {
  const {
    storePath,
    args = [],
    permissions = ["-A"],
    handleHost = "test",
    logLevel = "warning",
  } = options;
  return [
    "run",
    ...permissions,
    SERVER_PATH,
    "--host",
    "127.0.0.1",
    "--port",
    "0",
    "--handle-host",
    handleHost,
    "--log-level",
    logLevel,
    ...(storePath !== undefined ? ["--store", `sqlite:${storePath}`] : []),
    ...args,
  ];
}

/** Collect a child's output stream as text, chunk by chunk. */
class TextSink {
  text = "";
  readonly done: Promise<void>;
  #waiters: (() => void)[] = [];

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      try {
        for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
          this.text += chunk;
          this.#wake();
        }
      } catch { /* the stream broke with the process */ }
      this.#wake();
    })();
  }

  #wake(): void {
    const ws = this.#waiters;
    this.#waiters = [];
    for (const w of ws) w();
  }

  /** Resolves on the next chunk (or the end). */
  changed(): Promise<void> {
    return new Promise((r) => this.#waiters.push(r));
  }
}

/**
 * A server process. Always `kill()` it (in a `finally`), or use `await using`.
 *
 * @example
 * ```ts ignore
 * await using server = await ServerProcess.start({ storePath: "/tmp/x/jobs.db" });
 * console.log(server.port);
 * await server.kill("SIGKILL");
 * ```
 */
export class ServerProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #stdout: TextSink;
  readonly #stderr: TextSink;
  readonly #status: Promise<Deno.CommandStatus>;
  #exited: Deno.CommandStatus | undefined;
  /** The port it listens on. */
  readonly port: number;

  private constructor(
    child: Deno.ChildProcess,
    stdout: TextSink,
    stderr: TextSink,
    status: Promise<Deno.CommandStatus>,
    port: number,
  ) {
    this.#child = child;
    this.#stdout = stdout;
    this.#stderr = stderr;
    this.#status = status;
    this.port = port;
  }

  /**
   * Start a server and wait until it listens.
   *
   * @throws {ServerStartError} When it exits first or does not listen in time
   * (it is killed then).
   */
  static async start(options: ServerProcessOptions = {}): Promise<ServerProcess> {
    const { startTimeoutMs = 20_000 } = options;
    const child = new Deno.Command(Deno.execPath(), {
      args: serverArgs(options),
      cwd: REPO_DIR,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const stdout = new TextSink(child.stdout);
    const stderr = new TextSink(child.stderr);
    let exited: Deno.CommandStatus | undefined;
    const status = child.status.then((s) => (exited = s));
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      const m = stdout.text.match(/listening on (\S+):(\d+)\n/);
      if (m) return new ServerProcess(child, stdout, stderr, status, Number(m[2]));
      const left = deadline - Date.now();
      if (exited !== undefined || left <= 0) {
        if (exited === undefined) {
          try {
            child.kill("SIGKILL");
          } catch { /* already gone */ }
        }
        const s = await status;
        await Promise.all([stdout.done, stderr.done]);
        throw new ServerStartError(
          exited !== undefined && left > 0
            ? `server exited with code ${s.code} before listening: ${stderr.text.trim()}`
            : `server did not print "listening on" within ${startTimeoutMs} ms: ${stderr.text.trim()}`,
          left > 0 ? s.code : undefined,
          stdout.text,
          stderr.text,
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        stdout.changed(),
        status,
        new Promise<void>((r) => (timer = setTimeout(r, Math.min(left, 200)))),
      ]);
      clearTimeout(timer);
    }
  }

  /** Its process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** `127.0.0.1:PORT`. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Everything it wrote to stderr so far. */
  get stderr(): string {
    return this.#stderr.text;
  }

  /** Everything it wrote to stdout so far. */
  get stdout(): string {
    return this.#stdout.text;
  }

  /** Its exit status, once it has exited. */
  get exitStatus(): Deno.CommandStatus | undefined {
    return this.#exited;
  }

  /** Resolves when it exits (output fully read). */
  async exited(): Promise<Deno.CommandStatus> {
    const s = await this.#status;
    await Promise.all([this.#stdout.done, this.#stderr.done]);
    this.#exited = s;
    return s;
  }

  /**
   * Send a signal (if it still runs) and wait for it to exit. A process that
   * ignores a gentle signal for `timeoutMs` is killed with SIGKILL.
   *
   * @returns Its exit status.
   */
  async kill(signal: Deno.Signal = "SIGKILL", timeoutMs = 10_000): Promise<Deno.CommandStatus> {
    if (this.#exited === undefined) {
      try {
        this.#child.kill(signal);
      } catch { /* exited meanwhile */ }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = await Promise.race([
      this.#status.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (late) {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* exited meanwhile */ }
    }
    return await this.exited();
  }

  /** Kill with SIGKILL (if still running). */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.kill("SIGKILL");
  }
}

/** A finished server run. */
export interface ServerRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run a server that is expected to fail at start (a bad store). If it does
 * start, it is killed and reported as code -1 with a note in stderr.
 */
export async function runServer(options: ServerProcessOptions): Promise<ServerRun> {
  try {
    const server = await ServerProcess.start(options);
    const status = await server.kill("SIGKILL");
    return {
      code: -1,
      stdout: server.stdout,
      stderr:
        `${server.stderr}\n[test: the server started and listened on port ${server.port}; killed, signal ${status.signal}]`,
    };
  } catch (err) {
    if (!(err instanceof ServerStartError)) throw err;
    return { code: err.code ?? -1, stdout: err.stdout, stderr: err.stderr };
  }
}
