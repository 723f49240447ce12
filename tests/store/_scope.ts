// One test's resources: a temp dir with the store file, the server
// processes and connections it opened. Disposing kills every process,
// closes every connection and removes the dir, whatever happened.

import { join } from "node:path";
import { ServerProcess, type ServerProcessOptions } from "./_process.ts";
import {
  type AdminClient,
  adminOf,
  closeAll,
  connect,
  type PacketClient,
  worker,
} from "./_gearman.ts";

/** Resources of one test; use with `await using`. */
export class Scope implements AsyncDisposable {
  /** The temp dir. */
  readonly dir: string;
  /** The store file in it. */
  readonly db: string;
  readonly #servers: ServerProcess[] = [];
  readonly #conns: (PacketClient | AdminClient)[] = [];
  readonly #cleanups: (() => void | Promise<void>)[] = [];

  private constructor(dir: string) {
    this.dir = dir;
    this.db = join(dir, "jobs.db");
  }

  /** A scope with a fresh temp dir. */
  static async create(): Promise<Scope> {
    return new Scope(await Deno.makeTempDir({ prefix: "gearman-store-test-" }));
  }

  /** Start a server on this scope's store file (unless `storePath` says otherwise). */
  async start(options: ServerProcessOptions = {}): Promise<ServerProcess> {
    const s = await ServerProcess.start({ storePath: this.db, ...options });
    this.#servers.push(s);
    return s;
  }

  /** A connection to `server`, closed with the scope. */
  async connect(server: ServerProcess | number): Promise<PacketClient> {
    const c = await connect(typeof server === "number" ? server : server.port);
    this.#conns.push(c);
    return c;
  }

  /** A worker connection registered for `fns`, closed with the scope. */
  async worker(server: ServerProcess, ...fns: string[]): Promise<PacketClient> {
    const w = await worker(server.port, ...fns);
    this.#conns.push(w);
    return w;
  }

  /** An admin client, closed with the scope. */
  async admin(server: ServerProcess): Promise<AdminClient> {
    const a = await adminOf(server.port);
    this.#conns.push(a);
    return a;
  }

  /** Run `fn` at disposal, before the dir is removed (undo chattr, unmount). */
  defer(fn: () => void | Promise<void>): void {
    this.#cleanups.push(fn);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of this.#servers) await s.kill("SIGKILL");
    await closeAll(...this.#conns);
    for (const fn of this.#cleanups.reverse()) {
      try {
        await fn();
      } catch (err) {
        console.error(`cleanup failed: ${(err as Error).message}`);
      }
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
