// Durable jobs in one SQLite file (node:sqlite, WAL). All writes of a turn
// of the event loop go in one transaction; the file is locked for this
// process alone, so two servers cannot replay and run the same jobs.

import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { DeadLetter, JobStore, StoredJob } from "./job_store.ts";

/**
 * The store could not be opened or written: the message says why and what to do.
 *
 * @example Tell a store problem from other errors
 * ```ts
 * import { StoreError } from "@x/gearman/server";
 * const err: Error = new StoreError("Cannot open job store sqlite:/x.db: permission denied");
 * console.assert(err.name === "StoreError");
 * ```
 */
export class StoreError extends Error {
  /**
   * Make the error.
   *
   * @param message What happened and what to do.
   * @param options Standard error options.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreError";
  }
}

/** Options for the SQLite store. */
export interface SqliteStoreOptions {
  /**
   * `"normal"`: a commit survives the server process being killed (kill -9)
   * but not a power cut or OS crash; `"full"`: fsync every commit, so it
   * survives those too, at a cost per commit.
   * @default "normal"
   */
  sync?: "normal" | "full";
}

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  handle   INTEGER PRIMARY KEY,
  seq      INTEGER NOT NULL,
  function BLOB    NOT NULL,
  uniq     BLOB    NOT NULL,
  data     BLOB    NOT NULL,
  priority INTEGER NOT NULL,
  run_at   INTEGER NOT NULL,
  cron     TEXT    NOT NULL,
  retries  INTEGER NOT NULL,
  reducer  BLOB    NOT NULL DEFAULT x''
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (function, priority, seq);
CREATE INDEX IF NOT EXISTS jobs_unique ON jobs (function, uniq) WHERE length(uniq) > 0;
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
CREATE TABLE IF NOT EXISTS dead_letters (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  handle    INTEGER NOT NULL,
  function  BLOB    NOT NULL,
  uniq      BLOB    NOT NULL,
  data      BLOB    NOT NULL,
  priority  INTEGER NOT NULL,
  retries   INTEGER NOT NULL,
  failed_at INTEGER NOT NULL,
  reason    TEXT    NOT NULL
);
`;

/** Function names and uniques are byte strings; stored as BLOBs, byte for byte. */
function toBlob(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

function fromBlob(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 4096) {
    s += String.fromCharCode.apply(null, b.subarray(i, i + 4096) as unknown as number[]);
  }
  return s;
}

const COLUMNS = "handle, seq, function, uniq, data, priority, run_at, cron, retries, reducer";
/** Rows per multi-row INSERT. */
const BATCH_ROWS = 32;

/** Put a job's ten column values into `params` at `at`. */
function fillRow(params: unknown[], at: number, j: StoredJob): void {
  params[at] = j.handle;
  params[at + 1] = j.seq;
  params[at + 2] = j.functionBytes ?? toBlob(j.function);
  params[at + 3] = j.unique;
  params[at + 4] = j.data;
  params[at + 5] = j.priority;
  params[at + 6] = j.runAt;
  params[at + 7] = j.cron;
  params[at + 8] = j.retries;
  params[at + 9] = j.reducer ?? EMPTY_BLOB;
}
const EMPTY_BLOB = new Uint8Array(0);

function toJob(r: Record<string, unknown>): StoredJob {
  return {
    handle: Number(r.handle),
    seq: Number(r.seq),
    function: fromBlob(r.function as Uint8Array),
    unique: r.uniq as Uint8Array,
    data: r.data as Uint8Array,
    priority: Number(r.priority),
    runAt: Number(r.run_at),
    cron: String(r.cron),
    retries: Number(r.retries),
    reducer: r.reducer as Uint8Array,
  };
}

/** A job store in one SQLite file. */
export class SqliteJobStore implements JobStore {
  readonly description: string;
  readonly durable = true;
  readonly boot: number;
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #insertBatch: StatementSync;
  readonly #delete: StatementSync;
  readonly #retries: StatementSync;
  readonly #insertDead: StatementSync;
  #adds = new Map<number, StoredJob>();
  #removes: number[] = [];
  #retryUpdates = new Map<number, number>();
  #dead: Omit<DeadLetter, "id">[] = [];
  #closed = false;
  #pageStatement: StatementSync | undefined;

  private constructor(path: string, db: DatabaseSync, boot: number) {
    this.description = `sqlite:${path}`;
    this.#db = db;
    this.boot = boot;
    this.#insert = db.prepare(
      "INSERT OR REPLACE INTO jobs (handle, seq, function, uniq, data, priority, run_at, cron, retries, reducer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    this.#insertBatch = db.prepare(
      `INSERT OR REPLACE INTO jobs (handle, seq, function, uniq, data, priority, run_at, cron, retries, reducer) VALUES ${
        Array.from({ length: BATCH_ROWS }, () => "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")
      }`,
    );
    this.#delete = db.prepare("DELETE FROM jobs WHERE handle = ?");
    this.#retries = db.prepare("UPDATE jobs SET retries = ? WHERE handle = ?");
    this.#insertDead = db.prepare(
      "INSERT INTO dead_letters (handle, function, uniq, data, priority, retries, failed_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    );
  }

  /**
   * Open (or create) the store at `path`, lock it for this process, and
   * count this start.
   *
   * @throws {StoreError} With a message that says what is wrong: no
   * permission, not a database, locked by another process, unwritable.
   */
  static open(path: string, options: SqliteStoreOptions = {}): SqliteJobStore {
    const { sync = "normal" } = options;
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(path);
      // Fail at once if another process has the file; then hold it alone.
      db.exec("PRAGMA busy_timeout = 0");
      db.exec("PRAGMA locking_mode = EXCLUSIVE");
      const version = (db.prepare("PRAGMA user_version").get() as { user_version: number })
        .user_version;
      if (version > SCHEMA_VERSION) {
        throw new StoreError(
          `Cannot open job store ${path}: it was written by a newer version (schema ${version}, this server knows ${SCHEMA_VERSION}); upgrade the server`,
        );
      }
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(`PRAGMA synchronous = ${sync === "full" ? "FULL" : "NORMAL"}`);
      db.exec("BEGIN IMMEDIATE");
      db.exec(SCHEMA);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      const row = db.prepare("SELECT value FROM meta WHERE key = 'boot'").get() as
        | { value: number }
        | undefined;
      const boot = (row?.value ?? 0) + 1;
      db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('boot', ?)").run(boot);
      db.exec("COMMIT");
      return new SqliteJobStore(path, db, boot);
    } catch (err) {
      try {
        db?.close();
      } catch { /* closing a half-open database */ }
      if (err instanceof StoreError) throw err;
      throw new StoreError(explain(path, err as Error), { cause: err });
    }
  }

  get pending(): boolean {
    return this.#adds.size > 0 || this.#removes.length > 0 || this.#retryUpdates.size > 0 ||
      this.#dead.length > 0;
  }

  load(): Iterable<StoredJob> {
    return this.loadHead(Number.MAX_SAFE_INTEGER);
  }

  *loadHead(limit: number): Iterable<StoredJob> {
    const rows = this.#db.prepare(`SELECT ${COLUMNS} FROM jobs ORDER BY seq LIMIT ?`).iterate(
      Math.min(limit, Number.MAX_SAFE_INTEGER),
    ) as Iterable<Record<string, unknown>>;
    for (const r of rows) yield toJob(r);
  }

  *loadTimed(afterSeq: number): Iterable<StoredJob> {
    const rows = this.#db.prepare(
      `SELECT ${COLUMNS} FROM jobs WHERE seq > ? AND run_at > 0 ORDER BY seq`,
    ).iterate(afterSeq) as Iterable<Record<string, unknown>>;
    for (const r of rows) yield toJob(r);
  }

  backlog(afterSeq: number): { function: string; priority: number; count: number }[] {
    const rows = this.#db.prepare(
      "SELECT function, priority, COUNT(*) AS n FROM jobs WHERE seq > ? AND run_at = 0 GROUP BY function, priority",
    ).all(afterSeq) as Record<string, unknown>[];
    return rows.map((r) => ({
      function: fromBlob(r.function as Uint8Array),
      priority: Number(r.priority),
      count: Number(r.n),
    }));
  }

  page(fn: string, priority: number, afterSeq: number, limit: number): StoredJob[] {
    this.#pageStatement ??= this.#db.prepare(
      `SELECT ${COLUMNS} FROM jobs WHERE function = ? AND priority = ? AND seq > ? ORDER BY seq LIMIT ?`,
    );
    const rows = this.#pageStatement.all(toBlob(fn), priority, afterSeq, limit) as Record<
      string,
      unknown
    >[];
    return rows.map(toJob);
  }

  findByUnique(fn: string, unique: Uint8Array, data: Uint8Array): StoredJob | undefined {
    const dash = unique.length === 1 && unique[0] === 45;
    // Not committed yet: look in what this turn buffered.
    for (const j of this.#adds.values()) {
      if (j.function === fn && sameBytes(j.unique, unique) && (!dash || sameBytes(j.data, data))) {
        return j;
      }
    }
    const row = (dash
      ? this.#db.prepare(
        `SELECT ${COLUMNS} FROM jobs WHERE function = ? AND uniq = ? AND data = ? LIMIT 1`,
      ).get(toBlob(fn), unique, data)
      : this.#db.prepare(`SELECT ${COLUMNS} FROM jobs WHERE function = ? AND uniq = ? LIMIT 1`)
        .get(toBlob(fn), unique)) as Record<string, unknown> | undefined;
    return row ? toJob(row) : undefined;
  }

  maxSeq(): number {
    const row = this.#db.prepare("SELECT MAX(seq) AS m FROM jobs").get() as { m: number | null };
    return Number(row.m ?? 0);
  }

  findByHandle(handle: number): StoredJob | undefined {
    const row = this.#db.prepare(`SELECT ${COLUMNS} FROM jobs WHERE handle = ?`).get(handle) as
      | Record<string, unknown>
      | undefined;
    return row ? toJob(row) : undefined;
  }

  add(job: StoredJob): void {
    this.#adds.set(job.handle, job);
  }

  remove(handle: number): void {
    // Added and removed in the same turn: never written at all.
    if (this.#adds.delete(handle)) {
      this.#retryUpdates.delete(handle);
      return;
    }
    this.#retryUpdates.delete(handle);
    this.#removes.push(handle);
  }

  setRetries(handle: number, retries: number): void {
    const added = this.#adds.get(handle);
    if (added) added.retries = retries;
    else this.#retryUpdates.set(handle, retries);
  }

  addDeadLetter(letter: Omit<DeadLetter, "id">): void {
    this.#dead.push(letter);
  }

  deadLetters(): DeadLetter[] {
    const rows = this.#db.prepare(
      "SELECT id, handle, function, uniq, data, priority, retries, failed_at, reason FROM dead_letters ORDER BY id",
    ).all() as Record<string, unknown>[];
    const out = rows.map((r) => ({
      id: Number(r.id),
      handle: Number(r.handle),
      function: fromBlob(r.function as Uint8Array),
      unique: r.uniq as Uint8Array,
      data: r.data as Uint8Array,
      priority: Number(r.priority),
      retries: Number(r.retries),
      failedAt: Number(r.failed_at),
      reason: String(r.reason),
    }));
    return out;
  }

  removeDeadLetter(id: number): boolean {
    const r = this.#db.prepare("DELETE FROM dead_letters WHERE id = ?").run(id);
    return Number(r.changes) > 0;
  }

  commit(): void {
    if (!this.pending || this.#closed) return;
    const adds = this.#adds;
    const removes = this.#removes;
    const retries = this.#retryUpdates;
    const dead = this.#dead;
    this.#adds = new Map();
    this.#removes = [];
    this.#retryUpdates = new Map();
    this.#dead = [];
    const db = this.#db;
    db.exec("BEGIN");
    try {
      // Many rows per INSERT: far fewer statement executions per commit.
      const rows = [...adds.values()];
      let i = 0;
      const batch = this.#insertBatch;
      const params: unknown[] = new Array(BATCH_ROWS * 10);
      for (; i + BATCH_ROWS <= rows.length; i += BATCH_ROWS) {
        for (let r = 0; r < BATCH_ROWS; r++) fillRow(params, r * 10, rows[i + r]!);
        batch.run(...(params as never[]));
      }
      for (; i < rows.length; i++) {
        fillRow(params, 0, rows[i]!);
        this.#insert.run(...(params.slice(0, 10) as never[]));
      }
      for (const [handle, n] of retries) this.#retries.run(n, handle);
      for (const d of dead) {
        this.#insertDead.run(
          d.handle,
          toBlob(d.function),
          d.unique,
          d.data,
          d.priority,
          d.retries,
          d.failedAt,
          d.reason,
        );
      }
      for (const handle of removes) this.#delete.run(handle);
      db.exec("COMMIT");
    } catch (err) {
      try {
        db.exec("ROLLBACK");
      } catch { /* the transaction is already gone */ }
      throw new StoreError(
        `Cannot write to job store ${this.description}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  close(): void {
    if (this.#closed) return;
    try {
      this.commit();
    } finally {
      this.#closed = true;
      this.#db.close();
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function explain(path: string, err: Error): string {
  const m = err.message;
  if (
    err.name === "NotCapable" || err.name === "PermissionDenied" ||
    /Requires (read|write) access/.test(m)
  ) {
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) || "/" : ".";
    return `Cannot open job store ${path}: Deno has no permission for it; run with --allow-read=${dir} --allow-write=${dir} (SQLite also writes ${path}-wal beside it)`;
  }
  if (/database is locked|SQLITE_BUSY/i.test(m)) {
    return `Cannot open job store ${path}: the file is locked by another process (is another server using it?); stop that server or use another file`;
  }
  if (/not a database|malformed|corrupt/i.test(m)) {
    return `Cannot open job store ${path}: the file is not a SQLite database or is damaged (${m}); it was left untouched: move it aside or point --store at another file`;
  }
  if (/readonly|read-only|unable to open|disk I\/O error/i.test(m)) {
    return `Cannot open job store ${path}: the file or its directory is not writable (${m}); fix its permissions or choose another path`;
  }
  return `Cannot open job store ${path}: ${m}`;
}
