// A job store on PostgreSQL that several servers share: one durable queue
// for a cluster. See ClusterQueue in job_store.ts for the model.
//
// The client is `postgres` (porsager/postgres.js) from npm: pure
// JavaScript (no native build), pipelines queries on a connection, has
// LISTEN/NOTIFY with reconnects, and sends bytea parameters as one hex
// string each. Every batch of jobs therefore goes as ONE bytea blob plus
// integer/text arrays of offsets and fields, split back into rows by
// `unnest` and `substring` in the database: about 15x less client CPU than
// a multi-row VALUES insert with a parameter per field (measured here:
// 164k vs 57k rows/s for 64-byte jobs from one connection).

import postgres from "postgres";
import { createHash } from "node:crypto";
import { getLogger } from "@logtape/logtape";
import type {
  ClusterDepth,
  ClusterJob,
  ClusterQueue,
  ClusterServer,
  DeadLetter,
  JobStore,
  StoredJob,
} from "./job_store.ts";
import { StoreError } from "./sqlite_store.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "./postgres_schema.ts";
import { SPILL_BASE } from "../job_table.ts";

/**
 * Options for {@link PostgresJobStore.open}.
 *
 * @example Name the server and shorten the lease
 * ```ts
 * import type { PostgresStoreOptions } from "@x/gearman/postgres";
 * const options: PostgresStoreOptions = { name: "gm1:4730", leaseMs: 5000 };
 * console.assert(options.leaseMs === 5000);
 * ```
 */
export interface PostgresStoreOptions {
  /**
   * Name of this server in the cluster's server list (host:port).
   * @default "gearman"
   */
  name?: string;
  /**
   * How long a server may go without a heartbeat before the others take
   * the jobs it held, in milliseconds. Heartbeats go every quarter of it.
   * @default 10000
   */
  leaseMs?: number;
  /**
   * Seconds to wait for the database at start.
   * @default 10
   */
  connectTimeoutSeconds?: number;
}

/** The NOTIFY channel servers listen on: the payload is a function name. */
const CHANNEL = "gearman_jobs";
/** Handles a server takes from the sequence at once (its INCREMENT BY). */
const HANDLE_BLOCK = 65536;
/** Bytes of job data per INSERT statement (a commit may have several). */
const ROW_BATCH_BYTES = 32 * 1024 * 1024;
/** Connections for commits (each its own transaction; up to maxCommitsInFlight at once). */
const COMMIT_CONNECTIONS = 5;
/** Connections for claims, ends of jobs, heartbeats and reads. */
const FAST_CONNECTIONS = 4;
/** After a failed write, wait this long before the next try. */
const RETRY_PAUSE_MS = 500;
/** Ends of jobs, retry counts and releases are written at most this often (they need no ack). */
const LAZY_FLUSH_MS = 5;
/** How long depth()/servers() keep refreshing after the last call. */
const FIGURES_WANTED_MS = 10_000;
/** A count of the queue that took less is not spaced out (see FIGURES_DUTY_FACTOR). */
const CHEAP_COUNT_MS = 10;
/** After a refresh of the figures that took t ms, the next waits this many t. */
const FIGURES_DUTY_FACTOR = 9;

type Sql = postgres.Sql<Record<string, postgres.PostgresType>>;
type Tx = postgres.TransactionSql<Record<string, postgres.PostgresType>>;

/** int8 as a JS number (handles are below 2^53), not a string. */
const INT8_AS_NUMBER = {
  to: 20,
  from: [20],
  serialize: (x: number): string => String(x),
  parse: (x: string): number => Number(x),
};

/**
 * bytea with the native hex codecs: postgres.js's go through node:buffer,
 * 2x (decoding claimed jobs) to 7x (encoding a commit's blob) slower.
 */
const BYTEA = {
  to: 17,
  from: [17],
  serialize: (x: Uint8Array): string => "\\x" + x.toHex(),
  parse: (x: string): Uint8Array => Uint8Array.fromHex(x.slice(2)),
};

/**
 * The key under which a job coalesces with others: its unique id, or for
 * the unique id `-` a digest of its data (none when the data is empty),
 * as the dispatcher does in memory.
 */
function coalescingKey(unique: Uint8Array, data: Uint8Array): Uint8Array | undefined {
  if (unique.length === 0) return undefined;
  if (unique.length === 1 && unique[0] === 45 /* - */) {
    if (data.length === 0) return undefined;
    const digest = createHash("sha256").update(data).digest();
    const key = new Uint8Array(2 + digest.length);
    key[0] = 45;
    key.set(digest, 2);
    return key;
  }
  return unique;
}

/**
 * Integers as PostgreSQL's text form of an array (`{1,2,3}`), for a
 * parameter cast to an integer array: one join, where postgres.js would
 * quote and escape every element (5% of a server's time in unique submits).
 */
function intArray(xs: readonly number[]): string {
  return "{" + xs.join(",") + "}";
}

/** Strings as PostgreSQL's text form of an array, each distinct one quoted once. */
function textArray(xs: readonly string[]): string {
  const quoted = new Map<string, string>();
  let out = "{";
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i]!;
    let q = quoted.get(x);
    if (q === undefined) {
      q = '"' + x.replaceAll("\\", "\\\\").replaceAll('"', '\\"') + '"';
      quoted.set(x, q);
    }
    out += i === 0 ? q : "," + q;
  }
  return out + "}";
}

/** A job read back from the database. */
function rowToJob(r: Record<string, unknown>, fn: string): StoredJob {
  return {
    handle: r.id as number,
    seq: r.id as number,
    function: fn,
    unique: r.uniq as Uint8Array,
    data: r.data as Uint8Array,
    priority: Number(r.priority),
    runAt: r.run_at as number,
    cron: r.cron as string,
    retries: Number(r.retries),
    reducer: (r.reducer as Uint8Array | null) ?? new Uint8Array(0),
  };
}

/** Rows to insert, as arrays of fields plus one blob for all the bytes. */
class RowBatch {
  readonly ids: number[] = [];
  readonly fns: string[] = [];
  /** 1-based offsets and lengths in the blob; length -1 is NULL. */
  readonly uo: number[] = [];
  readonly ul: number[] = [];
  readonly ko: number[] = [];
  readonly kl: number[] = [];
  readonly dof: number[] = [];
  readonly dl: number[] = [];
  readonly ro: number[] = [];
  readonly rl: number[] = [];
  readonly pri: number[] = [];
  readonly runAt: number[] = [];
  readonly cron: string[] = [];
  readonly retries: number[] = [];
  /** Server holding it, 0 for none. */
  readonly owner: number[] = [];
  #parts: Uint8Array[] = [];
  #size = 0;
  /** Rows with a coalescing key. */
  #keyed = 0;

  get length(): number {
    return this.ids.length;
  }

  /** Bytes of unique ids, keys, data and reducers so far. */
  get bytes(): number {
    return this.#size;
  }

  add(j: StoredJob, owner: number, key = coalescingKey(j.unique, j.data)): void {
    this.ids.push(j.handle);
    this.fns.push(j.function);
    this.#bytes(j.unique, this.uo, this.ul);
    if (key !== undefined) this.#keyed++;
    this.#bytes(key, this.ko, this.kl);
    this.#bytes(j.data, this.dof, this.dl);
    this.#bytes(
      j.reducer !== undefined && j.reducer.length > 0 ? j.reducer : undefined,
      this.ro,
      this.rl,
    );
    this.pri.push(j.priority);
    this.runAt.push(j.runAt);
    this.cron.push(j.cron);
    this.retries.push(j.retries);
    this.owner.push(owner);
  }

  #bytes(b: Uint8Array | undefined, offsets: number[], lengths: number[]): void {
    if (b === undefined) {
      offsets.push(1);
      lengths.push(-1);
      return;
    }
    offsets.push(this.#size + 1);
    lengths.push(b.length);
    if (b.length > 0) this.#parts.push(b);
    this.#size += b.length;
  }

  /** The columns as array literals, for parameters cast to arrays (see intArray). */
  #literals() {
    return {
      ids: intArray(this.ids),
      fns: textArray(this.fns),
      uo: intArray(this.uo),
      ul: intArray(this.ul),
      ko: intArray(this.ko),
      kl: intArray(this.kl),
      dof: intArray(this.dof),
      dl: intArray(this.dl),
      ro: intArray(this.ro),
      rl: intArray(this.rl),
      pri: intArray(this.pri),
      runAt: intArray(this.runAt),
      cron: textArray(this.cron),
      retries: intArray(this.retries),
      owner: intArray(this.owner),
    };
  }

  /** All the bytes, copied now (the views may be reused after the call). */
  blob(): Uint8Array {
    const out = new Uint8Array(this.#size);
    let at = 0;
    for (const p of this.#parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /**
   * Insert the rows, in one statement: outside a transaction it commits by
   * itself, in one round trip. A row whose coalescing key is taken in the
   * cluster is skipped (that job stands for it). Ids are never taken (each
   * server has its own blocks), so a taken id fails the statement, loudly:
   * `ON CONFLICT` on the ids would also cost each row a speculative insert
   * (14% of the rate of a batch of 64 jobs).
   */
  insert(sql: Tx | Sql): Promise<unknown> {
    const blob = this.blob();
    const a = this.#literals();
    const onConflict = this.#keyed === 0
      ? sql``
      : sql`ON CONFLICT (function, ukey) WHERE ukey IS NOT NULL DO NOTHING`;
    return sql`
      WITH b AS (SELECT ${blob}::bytea AS b)
      INSERT INTO gearman_jobs (id, function, uniq, ukey, data, priority, run_at, cron, retries, reducer, owner)
      SELECT i.id, i.fn, substring(b.b FROM i.uo FOR i.ul),
        CASE WHEN i.kl < 0 THEN NULL ELSE substring(b.b FROM i.ko FOR i.kl) END,
        substring(b.b FROM i.dof FOR i.dl), i.p, i.r, i.c, i.t,
        CASE WHEN i.rl < 0 THEN NULL ELSE substring(b.b FROM i.ro FOR i.rl) END,
        NULLIF(i.o, 0)
      FROM b, unnest(${a.ids}::int8[], ${a.fns}::text[], ${a.uo}::int4[], ${a.ul}::int4[],
        ${a.ko}::int4[], ${a.kl}::int4[], ${a.dof}::int4[], ${a.dl}::int4[],
        ${a.ro}::int4[], ${a.rl}::int4[], ${a.pri}::int2[], ${a.runAt}::int8[],
        ${a.cron}::text[], ${a.retries}::int4[], ${a.owner}::int8[])
        AS i(id, fn, uo, ul, ko, kl, dof, dl, ro, rl, p, r, c, t, o)
      ${onConflict}`.execute();
  }

  /**
   * Insert rows that all have a coalescing key, in one statement; a row
   * whose key is taken is skipped. Gives, for each row (by its 1-based
   * position `n`), the id of the job holding its key: its own, that of an
   * earlier row of the batch, or that of a job already queued; `null` when
   * that job was committed after this statement began (try again).
   */
  insertKeyed(tx: Tx): Promise<{ n: number; held: number | null }[]> {
    const blob = this.blob();
    const a = this.#literals();
    return tx<{ n: number; held: number | null }[]>`
      WITH b AS (SELECT ${blob}::bytea AS b),
      i AS (
        SELECT u.*, substring(b.b FROM u.ko FOR u.kl) AS k
        FROM b, unnest(${a.ids}::int8[], ${a.fns}::text[], ${a.uo}::int4[], ${a.ul}::int4[],
          ${a.ko}::int4[], ${a.kl}::int4[], ${a.dof}::int4[], ${a.dl}::int4[], ${a.ro}::int4[],
          ${a.rl}::int4[], ${a.pri}::int2[], ${a.runAt}::int8[], ${a.cron}::text[],
          ${a.retries}::int4[])
          WITH ORDINALITY AS u(id, fn, uo, ul, ko, kl, dof, dl, ro, rl, p, r, c, t, n)
      ),
      ins AS (
        INSERT INTO gearman_jobs (id, function, uniq, ukey, data, priority, run_at, cron, retries, reducer)
        SELECT i.id, i.fn, substring(b.b FROM i.uo FOR i.ul), i.k, substring(b.b FROM i.dof FOR i.dl),
          i.p, i.r, i.c, i.t, CASE WHEN i.rl < 0 THEN NULL ELSE substring(b.b FROM i.ro FOR i.rl) END
        FROM b, i ORDER BY i.n
        ON CONFLICT (function, ukey) WHERE ukey IS NOT NULL DO NOTHING
        RETURNING id, function, ukey
      )
      SELECT i.n::int4 AS n, COALESCE(ins.id, j.id) AS held
      FROM i
      LEFT JOIN ins ON ins.function = i.fn AND ins.ukey = i.k
      LEFT JOIN gearman_jobs j ON j.function = i.fn AND j.ukey = i.k`;
  }
}

/** A unique job waiting for the commit to learn which handle holds its key. */
interface UniqueSubmit {
  job: StoredJob;
  key: Uint8Array;
  resolve: (handle: number) => void;
  reject: (err: Error) => void;
}

/**
 * `p`, or a rejection once `ms` pass without it settling: a database that
 * stopped answering (stopped, or cut off with the connection half-open)
 * must not hold acknowledgements, claims or the heartbeat until TCP gives
 * up, which takes many minutes. `late` runs if `p` succeeds after that.
 */
function answerWithin<T>(
  p: Promise<T>,
  ms: number,
  what: string,
  late?: (value: T) => void,
): Promise<T> {
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(
        new Error(
          `PostgreSQL did not answer ${what} in ${ms} ms (the lease); is the database stopped or unreachable?`,
        ),
      );
    }, ms);
  });
  p.then((v) => {
    if (timedOut) late?.(v);
  }, () => {});
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Say what went wrong opening the database and what to do about it. */
function openError(description: string, err: unknown): StoreError {
  const e = err as { code?: string; message?: string };
  const code = e.code ?? "";
  const message = e.message ?? String(err);
  let hint = "";
  if (code === "ECONNREFUSED" || /ECONNREFUSED|refused/i.test(message)) {
    hint = "nothing accepts connections there; is PostgreSQL running on that host and port?";
  } else if (code === "28P01" || code === "28000") {
    hint = "check the user and password in the URL (or PGUSER/PGPASSWORD)";
  } else if (code === "3D000") {
    hint = "create the database first (createdb), or name one that exists";
  } else if (code === "42501") {
    hint = "the user may not create the server's tables: GRANT CREATE ON SCHEMA public to it, " +
      "or start the server once as a user who may";
  } else if (code === "53300") {
    hint =
      `it has no connection slot left for this server, which opens ${
        COMMIT_CONNECTIONS + FAST_CONNECTIONS + 1
      } (${COMMIT_CONNECTIONS} for commits, ${FAST_CONNECTIONS} for claims and the rest, 1 to LISTEN): ` +
      "raise max_connections (or the role's CONNECTION LIMIT), or run fewer servers on it";
  } else if (code === "CONNECT_TIMEOUT" || /timeout/i.test(message)) {
    hint = "the database did not answer in time; check the host, port and firewall";
  } else if (code === "ENOTFOUND" || /getaddrinfo|ENOTFOUND/.test(message)) {
    hint = "the host name does not resolve; check the URL";
  }
  return new StoreError(
    `Cannot open job store ${description}: ${message}${hint === "" ? "" : `; ${hint}`}`,
    { cause: err },
  );
}

/** A URL with its password masked, for logs. */
function describe(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== "") u.password = "***";
    return u.toString();
  } catch {
    return "postgres://(unparsable URL)";
  }
}

/**
 * A job store on PostgreSQL, shared by every server started with the same
 * database: background and scheduled jobs submitted to any of them can be
 * run by workers on any of them. Open it with {@link PostgresJobStore.open}.
 *
 * @example Start a server on a shared queue
 * ```ts ignore
 * import { PostgresJobStore } from "./postgres_store.ts";
 * const store = await PostgresJobStore.open("postgres://gearman@db/gearman", { name: "gm1:4730" });
 * // serve({ store }) hands it to a server, which closes it on shutdown.
 * ```
 */
export class PostgresJobStore implements JobStore, ClusterQueue {
  readonly description: string;
  readonly durable = true;
  readonly boot: number;
  readonly serverId: number;
  readonly cluster: ClusterQueue = this;
  /** Commits overlap (each is its own transaction on a pooled connection): see JobStore. */
  readonly maxCommitsInFlight = 4;
  onAvailable: ((fn: string) => void) | undefined;
  onLeaseLost: (() => void) | undefined;
  /** Commits that acknowledge jobs: each waits for the WAL flush. */
  readonly #sql: Sql;
  /**
   * Everything whose loss in a database crash only makes a job run again
   * (at-least-once): claims, deletes of finished jobs, heartbeats, reads.
   * `synchronous_commit = off`, so they do not wait for the WAL flush.
   */
  readonly #fast: Sql;
  #name: string;
  readonly #leaseMs: number;
  readonly #log = getLogger(["gearman", "store"]);
  #rows = new RowBatch();
  /** Batches that reached ROW_BATCH_BYTES, waiting for the commit with #rows. */
  #fullRows: RowBatch[] = [];
  #uniques: UniqueSubmit[] = [];
  #removes: number[] = [];
  /** Ends of jobs with a unique id: committed at once, not lazily. */
  #keyedRemoves: number[] = [];
  /** Handles of held jobs with a unique id. */
  readonly #keyed = new Set<number>();
  #retryIds: number[] = [];
  #retryValues: number[] = [];
  #releases: number[] = [];
  #dead: Omit<DeadLetter, "id">[] = [];
  #deadRemoves: number[] = [];
  /** Functions that got free jobs in the batch being built: NOTIFY after its commit. */
  #notify = new Set<string>();
  /** Functions to NOTIFY after commits (see #notifyAfterCommit). */
  readonly #toNotify = new Set<string>();
  #notifying = false;
  #deadCache: DeadLetter[] = [];
  #depth: ReadonlyMap<string, ClusterDepth> = new Map();
  #servers: readonly ClusterServer[] = [];
  #figuresWanted = 0;
  /** The refresh of the figures in flight, if any. */
  #figuresRefresh: Promise<void> | undefined;
  /** The refresh to run after the one in flight (see #refreshFiguresNow). */
  #figuresNext: Promise<void> | undefined;
  /** No refresh of the figures before this (see #refreshFiguresNow). */
  #nextFiguresAt = 0;

  #nextHandle = 0;
  #handleEnd = 0;
  #spareBlock: number | undefined;
  #fetchingBlock = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  #ticking = false;
  #closed: Promise<void> | undefined;
  #lazyTimer: ReturnType<typeof setTimeout> | undefined;
  #lazyFlushing = false;
  /** When a write last failed (0: never). */
  #failedAt = 0;
  /** When the last heartbeat that found this server's row was sent. */
  #lastBeat = Date.now();
  /** Claims in flight (settled promises). */
  readonly #claimsInFlight = new Set<Promise<void>>();
  /** Servers (ids) holding jobs without a row in gearman_servers at the last heartbeat. */
  #orphanOwners = new Set<number>();
  /** Durable commits in flight (settled promises). */
  readonly #durableInFlight = new Set<Promise<void>>();
  /** Those of {@link #durableInFlight} that end jobs with a unique id. */
  readonly #endingKeysInFlight = new Set<Promise<void>>();
  #unlisten: (() => Promise<void>) | undefined;

  private constructor(sql: Sql, fast: Sql, description: string, serverId: number, options: {
    name: string;
    leaseMs: number;
    firstBlock: number;
  }) {
    this.#sql = sql;
    this.#fast = fast;
    this.description = description;
    this.serverId = serverId;
    this.boot = serverId;
    this.#name = options.name;
    this.#leaseMs = options.leaseMs;
    this.#nextHandle = options.firstBlock;
    this.#handleEnd = options.firstBlock + HANDLE_BLOCK;
  }

  /**
   * Connect, create or migrate the tables, and join the cluster.
   *
   * @param url A `postgres://user:password@host:port/database` URL (PG*
   *   environment variables fill in what it leaves out, as for psql).
   * @param options Cluster options.
   * @returns The open store.
   * @throws {StoreError} When the database cannot be reached or used; the
   *   message says why and what to do.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresJobStore> {
    const { name = "gearman", leaseMs = 10_000, connectTimeoutSeconds = 10 } = options;
    const description = describe(url);
    if (Deno.permissions.querySync({ name: "env" }).state !== "granted") {
      throw new StoreError(
        `Cannot open job store ${description}: the Postgres client reads the PG* environment variables (as psql does); run with --allow-env (-E)`,
      );
    }
    let sql: Sql;
    let fast: Sql;
    const pool = (max: number, connection: Record<string, string>) =>
      postgres(url, {
        max,
        onnotice: () => {},
        connect_timeout: connectTimeoutSeconds,
        idle_timeout: 0,
        types: { int8: INT8_AS_NUMBER, bytea: BYTEA },
        // No JIT and no parallel workers: the planner's costs come from
        // statistics taken before the last burst of submits, and short
        // queries were JIT-compiled (120-200 ms each) or forked two workers
        // each to scan the whole table.
        connection: {
          application_name: `gearman ${name}`,
          jit: "off",
          max_parallel_workers_per_gather: "0",
          ...connection,
        },
      }) as unknown as Sql;
    try {
      sql = pool(COMMIT_CONNECTIONS, {});
      // No bitmap scans: with statistics from before a burst of submits
      // (a fresh table reads as nearly empty), the planner would claim by
      // bitmap-scanning and sorting every free job (~110 ms per claim at
      // 200k queued) instead of reading the queue index in order (~9 ms).
      fast = pool(FAST_CONNECTIONS, { synchronous_commit: "off", enable_bitmapscan: "off" });
    } catch (err) {
      throw openError(description, err);
    }
    try {
      await migrate(sql);
      // Every connection now, before joining: a database that allows fewer
      // (max_connections, or the role's CONNECTION LIMIT) is refused at
      // start, not in the middle of the traffic.
      await Promise.all([
        ...Array.from({ length: COMMIT_CONNECTIONS }, () => sql`SELECT 1`.execute()),
        ...Array.from({ length: FAST_CONNECTIONS }, () => fast`SELECT 1`.execute()),
      ]);
      const [server] = await sql`
        INSERT INTO gearman_servers (name) VALUES (${name}) RETURNING id`;
      const [block] = await sql`SELECT nextval('gearman_handles') AS v`;
      const store = new PostgresJobStore(sql, fast, description, server!.id as number, {
        name,
        leaseMs,
        firstBlock: SPILL_BASE + (block!.v as number),
      });
      await store.#start();
      return store;
    } catch (err) {
      await sql.end({ timeout: 1 }).catch(() => {});
      await fast.end({ timeout: 1 }).catch(() => {});
      throw err instanceof StoreError ? err : openError(description, err);
    }
  }

  async #start(): Promise<void> {
    const listener = await this.#sql.listen(CHANNEL, (fn) => this.onAvailable?.(fn));
    this.#unlisten = () => listener.unlisten();
    this.#deadCache = await this.#loadDead();
    await this.refreshFigures();
    const every = Math.max(100, Math.min(1000, Math.floor(this.#leaseMs / 4)));
    this.#timer = setInterval(() => void this.#tick(), every);
    Deno.unrefTimer(this.#timer);
  }

  // ------------------------------------------------------------ JobStore

  /** Nothing to replay: a server of a cluster claims what it runs. */
  load(): Iterable<StoredJob> {
    return [];
  }

  /** Nothing to replay (see {@link load}). */
  loadHead(_limit: number): Iterable<StoredJob> {
    return [];
  }

  /** Nothing to replay (see {@link load}). */
  loadTimed(_afterSeq: number): Iterable<StoredJob> {
    return [];
  }

  /** Nothing is paged: jobs are claimed (see {@link claim}). */
  backlog(_afterSeq: number): { function: string; priority: number; count: number }[] {
    return [];
  }

  /** Nothing is paged: jobs are claimed (see {@link claim}). */
  page(_fn: string, _priority: number, _afterSeq: number, _limit: number): StoredJob[] {
    return [];
  }

  /** Lookups go through {@link enqueueUnique} (asynchronous). */
  findByUnique(_fn: string, _unique: Uint8Array, _data: Uint8Array): StoredJob | undefined {
    return undefined;
  }

  /** Lookups go through {@link lookup} (asynchronous). */
  findByHandle(_handle: number): StoredJob | undefined {
    return undefined;
  }

  /** Not used by a cluster (handles come from {@link nextHandle}). */
  maxSeq(): number {
    return 0;
  }

  /**
   * A job this server holds (it keeps it in memory and runs it). A job
   * with a handle of this server alone (a foreground job a background
   * submit made durable) is stored under a cluster handle, since another
   * server may give the same slot handle: that row id is returned, for
   * {@link remove} and {@link setRetries}. Others are found by handle (0).
   */
  add(job: StoredJob): number {
    let ref = 0;
    if (job.handle < SPILL_BASE) {
      try {
        ref = this.nextHandle();
        job = { ...job, handle: ref };
      } catch {
        // No handle block yet (rare): under its own handle, as before.
      }
    }
    this.#addRow(job, this.serverId);
    if (coalescingKey(job.unique, job.data) !== undefined) this.#keyed.add(job.handle);
    return ref;
  }

  /**
   * Buffer a row; a batch is closed at ROW_BATCH_BYTES, since each goes to
   * the database as one hex string (V8 strings stop at ~512M characters).
   */
  #addRow(job: StoredJob, owner: number): void {
    this.#rows.add(job, owner);
    if (this.#rows.bytes >= ROW_BATCH_BYTES) {
      this.#fullRows.push(this.#rows);
      this.#rows = new RowBatch();
    }
  }

  remove(handle: number, ref?: number): void {
    if (ref !== undefined && ref > 0) handle = ref;
    if (this.#keyed.delete(handle)) {
      // Its unique id must be free for the next submit at once: with the next commit.
      this.#keyedRemoves.push(handle);
      return;
    }
    this.#removes.push(handle);
    this.#scheduleLazy();
  }

  setRetries(handle: number, retries: number, ref?: number): void {
    if (ref !== undefined && ref > 0) handle = ref;
    this.#retryIds.push(handle);
    this.#retryValues.push(retries);
    this.#scheduleLazy();
  }

  addDeadLetter(letter: Omit<DeadLetter, "id">): void {
    this.#dead.push({
      ...letter,
      unique: letter.unique.slice(),
      data: letter.data.slice(),
    });
    // Removed in the same transaction as the dead letter is added.
    this.#keyed.delete(letter.handle);
    this.#keyedRemoves.push(letter.handle);
  }

  deadLetters(): DeadLetter[] {
    this.#figuresWanted = Date.now();
    return this.#deadCache.slice();
  }

  removeDeadLetter(id: number): boolean {
    const i = this.#deadCache.findIndex((d) => d.id === id);
    if (i < 0) return false;
    this.#deadCache.splice(i, 1);
    this.#deadRemoves.push(id);
    return true;
  }

  /**
   * Writes that acknowledge something wait for a commit. Ends of jobs,
   * retry counts and releases do not: nobody waits for them, and losing
   * them only runs a job again, so they are flushed in the background
   * every LAZY_FLUSH_MS (or with the next commit), in bigger batches.
   */
  get pending(): boolean {
    return this.#rows.length > 0 || this.#fullRows.length > 0 || this.#uniques.length > 0 ||
      this.#dead.length > 0 ||
      this.#deadRemoves.length > 0 || this.#keyedRemoves.length > 0;
  }

  #scheduleLazy(): void {
    if (this.#lazyTimer !== undefined || this.#lazyFlushing || this.#closed !== undefined) return;
    const pause = Math.max(LAZY_FLUSH_MS, this.#failedAt + RETRY_PAUSE_MS - Date.now());
    this.#lazyTimer = setTimeout(() => {
      this.#lazyTimer = undefined;
      void this.#flushLazy();
    }, pause);
  }

  /** Write the buffered ends, retry counts and releases (one transaction, no WAL flush wait). */
  async #flushLazy(): Promise<void> {
    if (this.#lazyFlushing) return;
    const removes = this.#removes;
    const retryIds = this.#retryIds;
    const retryValues = this.#retryValues;
    const releases = this.#releases;
    if (removes.length + retryIds.length + releases.length === 0) return;
    this.#removes = [];
    this.#retryIds = [];
    this.#retryValues = [];
    this.#releases = [];
    this.#lazyFlushing = true;
    try {
      // A job cancelled while its add commits: the add must land first.
      if (this.#durableInFlight.size > 0) await Promise.all([...this.#durableInFlight]);
      const notify = new Set<string>();
      // Everything in it is safe to write twice (after a timeout, it is).
      // Only ends of jobs (a drain): one statement, committed by itself.
      const write: Promise<unknown> = retryIds.length + releases.length === 0
        ? this.#fast`DELETE FROM gearman_jobs WHERE id = ANY(${intArray(removes)}::int8[])`
          .execute()
        : this.#fast.begin((tx) => {
          const q = this.#lazyWrites(tx, removes, retryIds, retryValues, releases, notify);
          return Promise.all(q);
        });
      await answerWithin(
        write,
        this.#leaseMs,
        "the ends of finished jobs",
      );
      this.#notifyAfterCommit(notify);
    } catch (err) {
      // Nothing was written: keep it all for the next try.
      this.#removes.unshift(...removes);
      this.#retryIds.unshift(...retryIds);
      this.#retryValues.unshift(...retryValues);
      this.#releases.unshift(...releases);
      this.#failedAt = Date.now();
      this.#log.warn(
        "Recording {count} finished or released job(s) in {store} failed: {error}; retrying",
        {
          count: removes.length + releases.length,
          store: this.description,
          error: (err as Error).message,
        },
      );
    } finally {
      this.#lazyFlushing = false;
      if (this.#removes.length + this.#retryIds.length + this.#releases.length > 0) {
        this.#scheduleLazy();
      }
    }
  }

  #lazyWrites(
    tx: Tx,
    removes: number[],
    retryIds: number[],
    retryValues: number[],
    releases: number[],
    notify: Set<string>,
  ): Promise<unknown>[] {
    const q: Promise<unknown>[] = [];
    if (removes.length > 0) {
      q.push(tx`DELETE FROM gearman_jobs WHERE id = ANY(${intArray(removes)}::int8[])`.execute());
    }
    if (retryIds.length > 0) {
      q.push(
        tx`
        UPDATE gearman_jobs j SET retries = v.r
        FROM unnest(${retryIds}::int8[], ${retryValues}::int4[]) AS v(id, r) WHERE j.id = v.id`
          .execute(),
      );
    }
    if (releases.length > 0) {
      q.push(
        tx`UPDATE gearman_jobs SET owner = NULL WHERE id = ANY(${intArray(releases)}::int8[])
           AND owner = ${this.serverId} RETURNING function`.then((r) => {
          for (const row of r) notify.add(row.function as string);
        }),
      );
    }
    return q;
  }

  /** NOTIFY the servers that jobs of these functions wait (without waiting for the disk). */
  async #notifyFunctions(functions: Iterable<string>): Promise<void> {
    const names = [...new Set(functions)];
    if (names.length > 0) {
      await this.#fast`SELECT pg_notify(${CHANNEL}, f) FROM unnest(${names}::text[]) AS f`;
    }
  }

  /**
   * NOTIFY once the jobs are committed, not in their transaction: PostgreSQL
   * holds one lock per database from a notifying transaction's commit until
   * it is on disk, so notifying commits would be written one at a time.
   * Coalesced: one NOTIFY in flight per server, the functions that come
   * meanwhile go in the next. A NOTIFY lost in a crash costs a wait for the
   * servers' poll (CLUSTER_POLL_MS), never a job.
   */
  #notifyAfterCommit(functions: Iterable<string>): void {
    for (const f of functions) this.#toNotify.add(f);
    if (this.#notifying || this.#toNotify.size === 0) return;
    const names = [...this.#toNotify];
    this.#toNotify.clear();
    this.#notifying = true;
    answerWithin(this.#notifyFunctions(names), this.#leaseMs, "a NOTIFY").catch((err) =>
      this.#log.debug("NOTIFY of {functions} failed: {error}; the servers' poll finds the jobs", {
        functions: names.join(", "),
        error: (err as Error).message,
      })
    ).finally(() => {
      this.#notifying = false;
      this.#notifyAfterCommit([]);
    });
  }

  commit(): Promise<void> | void {
    if (!this.pending) return;
    const batches = [...this.#fullRows, this.#rows].filter((b) => b.length > 0);
    const uniques = this.#uniques;
    const keyedRemoves = this.#keyedRemoves;
    const dead = this.#dead;
    const deadRemoves = this.#deadRemoves;
    const notify = this.#notify;
    this.#rows = new RowBatch();
    this.#fullRows = [];
    this.#uniques = [];
    this.#keyedRemoves = [];
    this.#dead = [];
    this.#deadRemoves = [];
    this.#notify = new Set();
    let handles: number[] = [];
    // Commits run on several connections at once, so they are not ordered.
    // Ends of unique jobs wait for the commits before them (one may add the
    // job); unique submits for those that end unique jobs (else a submit
    // could coalesce with a job about to be deleted). Unique submits of
    // concurrent commits need no order: one inserts, the other waits for it
    // in ON CONFLICT and reads it again. Anything after a failure waits a
    // short pause (not a busy retry loop).
    const waits: Promise<unknown>[] = [];
    if (keyedRemoves.length > 0) waits.push(...this.#durableInFlight);
    else if (uniques.length > 0) waits.push(...this.#endingKeysInFlight);
    const pause = this.#failedAt + RETRY_PAUSE_MS - Date.now();
    if (pause > 0) waits.push(new Promise((r) => setTimeout(r, pause)));
    const held: number[] = [];
    for (const b of batches) {
      for (let i = 0; i < b.length; i++) if (b.owner[i] === this.serverId) held.push(b.ids[i]!);
    }
    // Only new jobs: one statement, committed by itself (one round trip).
    const simple = batches.length === 1 && uniques.length === 0 && keyedRemoves.length === 0 &&
      dead.length === 0 && deadRemoves.length === 0;
    const write = (): Promise<unknown> =>
      simple ? batches[0]!.insert(this.#sql) : this.#sql.begin(async (tx) => {
        // postgres.js runs a query when it is awaited (or executed): start
        // each now, so they run in this order. Ends of unique jobs first, so
        // a new submit with that id in this batch makes a new job.
        const q: Promise<unknown>[] = [];
        if (keyedRemoves.length > 0) {
          q.push(
            tx`DELETE FROM gearman_jobs WHERE id = ANY(${intArray(keyedRemoves)}::int8[])`
              .execute(),
          );
        }
        for (const b of batches) q.push(b.insert(tx));
        if (uniques.length > 0) {
          q.push(insertUniques(tx, uniques).then((h) => handles = h));
          for (const u of uniques) notify.add(u.job.function);
        }
        // Once per failure (job handle, time, retries): a commit that timed
        // out gives its dead letters back to the next commit, and may still
        // land itself.
        for (const d of dead) {
          q.push(
            tx`
            INSERT INTO gearman_dead (handle, function, uniq, data, priority, retries, failed_at, reason)
            VALUES (${d.handle}, ${d.function}, ${d.unique}, ${d.data}, ${d.priority}, ${d.retries},
              ${d.failedAt}, ${d.reason})
            ON CONFLICT (handle, failed_at, retries) DO NOTHING`.execute(),
          );
        }
        if (deadRemoves.length > 0) {
          q.push(tx`DELETE FROM gearman_dead WHERE id = ANY(${deadRemoves}::int8[])`.execute());
        }
        await Promise.all(q);
      });
    const done = Promise.all(waits).then(() =>
      answerWithin(
        write(),
        this.#leaseMs,
        "a commit",
        // It landed after all, after its clients were told it failed: the
        // jobs this server was to hold are not in its memory, so they go
        // back to the cluster's queue (they run: at-least-once).
        () => {
          if (held.length > 0) this.release(held);
        },
      )
    );
    // Lazy flushes wait for it: a job must be added before it is removed.
    const settled = done.then(() => {}, () => {});
    this.#durableInFlight.add(settled);
    if (keyedRemoves.length > 0) this.#endingKeysInFlight.add(settled);
    void settled.then(() => {
      this.#durableInFlight.delete(settled);
      this.#endingKeysInFlight.delete(settled);
    });
    return done.then(
      () => {
        this.#notifyAfterCommit(notify);
        for (let i = 0; i < uniques.length; i++) uniques[i]!.resolve(handles[i]!);
        if (dead.length > 0) void this.#loadDead().then((d) => this.#deadCache = d, () => {});
      },
      (err) => {
        this.#failedAt = Date.now();
        // Nothing was written. The adds' clients are told (no JOB_CREATED);
        // ends and dead letters are kept for the next commit.
        this.#keyedRemoves.unshift(...keyedRemoves);
        this.#dead.unshift(...dead);
        this.#deadRemoves.unshift(...deadRemoves);
        const e = new StoreError(
          `Cannot commit to job store ${this.description}: ${(err as Error).message}`,
          { cause: err },
        );
        for (const u of uniques) u.reject(e);
        throw e;
      },
    );
  }

  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    clearInterval(this.#timer);
    clearTimeout(this.#lazyTimer);
    try {
      if (this.pending) await this.commit();
      // Commits and claims in flight land first, so the release below covers them.
      await Promise.all([...this.#durableInFlight, ...this.#claimsInFlight]);
      while (this.#lazyFlushing) await new Promise((r) => setTimeout(r, 5));
      this.#lazyFlushing = false;
      await this.#flushLazy();
      await this.#unlisten?.();
      // Whatever is still held goes back to the cluster, now rather than
      // at the end of the lease.
      const freed = await this.#sql`
        UPDATE gearman_jobs SET owner = NULL WHERE owner = ${this.serverId} RETURNING function`;
      await this.#sql`DELETE FROM gearman_servers WHERE id = ${this.serverId}`;
      await this.#notifyFunctions(freed.map((r) => r.function as string));
    } catch (err) {
      this.#log.error(
        "Closing job store {store} failed: {error}; jobs this server held go back to the cluster when its lease ends",
        { store: this.description, error: (err as Error).message },
      );
    } finally {
      await this.#sql.end({ timeout: 2 }).catch(() => {});
      await this.#fast.end({ timeout: 2 }).catch(() => {});
    }
  }

  // -------------------------------------------------------- ClusterQueue

  /**
   * Change the name this server has in the cluster's server list (e.g. to
   * the address it listens on, once known).
   *
   * @param name The new name.
   */
  async rename(name: string): Promise<void> {
    this.#name = name;
    await this.#fast`UPDATE gearman_servers SET name = ${name} WHERE id = ${this.serverId}`;
  }

  /**
   * Whether this server surely still holds its lease: its last good
   * heartbeat went out less than three quarters of the lease ago (a margin
   * for clock rates and the database's own delay).
   */
  get leaseHeld(): boolean {
    return Date.now() - this.#lastBeat < this.#leaseMs * 0.75;
  }

  nextHandle(): number {
    if (this.#nextHandle >= this.#handleEnd) {
      if (this.#spareBlock === undefined) {
        throw new StoreError(
          "Cannot give a job handle: the next block of handles has not come from the database yet; retry the submit",
        );
      }
      this.#nextHandle = this.#spareBlock;
      this.#handleEnd = this.#spareBlock + HANDLE_BLOCK;
      this.#spareBlock = undefined;
    }
    if (
      this.#spareBlock === undefined && !this.#fetchingBlock &&
      this.#handleEnd - this.#nextHandle < HANDLE_BLOCK / 2
    ) {
      this.#fetchingBlock = true;
      this.#sql`SELECT nextval('gearman_handles') AS v`.then(
        ([r]) => this.#spareBlock = SPILL_BASE + (r!.v as number),
        (err) =>
          this.#log.error("Taking a block of job handles failed: {error}", { error: err.message }),
      ).finally(() => this.#fetchingBlock = false);
    }
    return this.#nextHandle++;
  }

  enqueue(job: StoredJob): void {
    this.#addRow(job, 0);
    this.#notify.add(job.function);
  }

  enqueueUnique(job: StoredJob): Promise<number> {
    const key = coalescingKey(job.unique, job.data);
    if (key === undefined) {
      this.enqueue(job);
      return Promise.resolve(job.handle);
    }
    return new Promise((resolve, reject) => {
      this.#uniques.push({ job, key, resolve, reject });
    });
  }

  claim(fn: string, limit: number): Promise<StoredJob[]> {
    // A claim that lands after its timeout gives its jobs back.
    const claimed = answerWithin(
      this.#claim(fn, limit),
      this.#leaseMs,
      "a claim",
      (jobs) => this.release(jobs.map((j) => j.handle)),
    );
    // close() waits for claims in flight, then gives back all this server holds.
    const settled = claimed.then(() => {}, () => {});
    this.#claimsInFlight.add(settled);
    void settled.then(() => this.#claimsInFlight.delete(settled));
    return claimed;
  }

  async #claim(fn: string, limit: number): Promise<StoredJob[]> {
    const me = this.serverId;
    const rows = await this.#fast`
      UPDATE gearman_jobs j SET owner = ${me}
      FROM (
        SELECT id FROM gearman_jobs
        WHERE owner IS NULL AND function = ${fn} AND run_at <= ${Date.now()}
        ORDER BY priority, id LIMIT ${limit}
        FOR UPDATE SKIP LOCKED
      ) c
      WHERE j.id = c.id AND EXISTS (SELECT 1 FROM gearman_servers WHERE id = ${me})
      RETURNING j.id, j.uniq, j.data, j.priority, j.run_at, j.cron, j.retries, j.reducer`;
    const jobs = rows.map((r) => rowToJob(r, fn));
    jobs.sort((a, b) => a.priority - b.priority || a.handle - b.handle);
    for (const j of jobs) {
      if (coalescingKey(j.unique, j.data) !== undefined) this.#keyed.add(j.handle);
    }
    return jobs;
  }

  release(handles: number[]): void {
    for (const h of handles) {
      this.#releases.push(h);
      this.#keyed.delete(h);
    }
    this.#scheduleLazy();
  }

  async lookup(handle: number): Promise<"unknown" | "queued" | "held"> {
    const [row] = await answerWithin(
      this.#fast`SELECT owner FROM gearman_jobs WHERE id = ${handle}`.execute(),
      this.#leaseMs,
      "a status lookup",
    );
    if (row === undefined) return "unknown";
    return row.owner === null ? "queued" : "held";
  }

  async cancel(
    handle: number,
  ): Promise<{ state: "cancelled" | "unknown" | "held"; heldBy?: string }> {
    // The SELECTs see the rows as they were before the DELETE.
    const [row] = await answerWithin(
      this.#sql`
        WITH gone AS (DELETE FROM gearman_jobs WHERE id = ${handle} AND owner IS NULL RETURNING function)
        SELECT (SELECT function FROM gone) AS gone,
          (SELECT owner FROM gearman_jobs WHERE id = ${handle}) AS owner,
          (SELECT s.name FROM gearman_jobs j JOIN gearman_servers s ON s.id = j.owner
            WHERE j.id = ${handle}) AS holder`.execute(),
      this.#leaseMs,
      "a cancel",
    );
    if (row?.gone != null) return { state: "cancelled" };
    if (row?.owner == null) return { state: "unknown" };
    return { state: "held", heldBy: (row.holder as string | null) ?? `server ${row.owner}` };
  }

  async lookupUnique(
    unique: Uint8Array,
  ): Promise<{ handle: number; held: boolean } | undefined> {
    if (unique.length === 0) return undefined;
    const [row] = await answerWithin(
      this.#fast`SELECT id, owner FROM gearman_jobs WHERE ukey = ${unique} LIMIT 1`.execute(),
      this.#leaseMs,
      "a status lookup",
    );
    return row === undefined ? undefined : { handle: row.id as number, held: row.owner !== null };
  }

  depth(): ReadonlyMap<string, ClusterDepth> {
    this.#figuresWanted = Date.now();
    return this.#depth;
  }

  async otherJobs(scheduledOnly: boolean): Promise<ClusterJob[]> {
    const rows = await answerWithin(
      this.#fast`
        SELECT j.id, j.function, j.uniq, j.priority, j.run_at, j.retries, s.name AS holder, j.owner
        FROM gearman_jobs j LEFT JOIN gearman_servers s ON s.id = j.owner
        WHERE j.owner IS DISTINCT FROM ${this.serverId}
          AND (${!scheduledOnly} OR j.run_at > 0)
        ORDER BY j.id`.execute(),
      this.#leaseMs,
      "a job list",
    );
    return rows.map((r) => ({
      handle: Number(r.id),
      function: r.function as string,
      unique: r.uniq as Uint8Array,
      priority: Number(r.priority),
      runAt: Number(r.run_at),
      retries: Number(r.retries),
      heldBy: r.owner === null ? undefined : (r.holder as string | null) ?? `server ${r.owner}`,
    }));
  }

  servers(): readonly ClusterServer[] {
    this.#figuresWanted = Date.now();
    return this.#servers;
  }

  currentFigures(): Promise<void> | undefined {
    this.#figuresWanted = Date.now();
    // A deep queue takes long to count: counted at most a tenth of the
    // time, and answered meanwhile with the latest count.
    if (this.#figuresWanted < this.#nextFiguresAt) return undefined;
    return this.#refreshFiguresNow().catch((err) =>
      this.#log.warn("Cannot count the cluster's queue: {error}; answering with the last count", {
        error: (err as Error).message,
      })
    );
  }

  /**
   * Count now. With a count in flight (it may have begun before what the
   * caller wants counted), one more after it, shared by all who ask
   * meanwhile.
   */
  #refreshFiguresNow(): Promise<void> {
    const inFlight = this.#figuresRefresh;
    if (inFlight !== undefined) {
      return this.#figuresNext ??= inFlight.catch(() => {}).then(() => {
        this.#figuresNext = undefined;
        return this.#refreshFiguresNow();
      });
    }
    const count = (async () => {
      const t0 = performance.now();
      await answerWithin(this.refreshFigures(), this.#leaseMs, "a count of the queue");
      this.#deadCache = await this.#loadDead();
      // Counting reads the whole queue: on a deep one (10M jobs take
      // seconds, on every server), at most a tenth of the time.
      const took = performance.now() - t0;
      this.#nextFiguresAt = took < CHEAP_COUNT_MS ? 0 : Date.now() + FIGURES_DUTY_FACTOR * took;
    })();
    this.#figuresRefresh = count.finally(() => this.#figuresRefresh = undefined);
    return this.#figuresRefresh;
  }

  /** Refresh {@link depth} and {@link servers} now (they refresh every heartbeat while asked for). */
  async refreshFigures(): Promise<void> {
    const [depth, servers] = await Promise.all([
      this.#fast`
        SELECT function, count(*) FILTER (WHERE owner IS NULL)::int AS queued,
          count(*) FILTER (WHERE owner IS NOT NULL)::int AS held,
          count(*) FILTER (WHERE owner IS NULL AND priority = 0)::int AS q0,
          count(*) FILTER (WHERE owner IS NULL AND priority = 1)::int AS q1,
          count(*) FILTER (WHERE owner IS NULL AND priority = 2)::int AS q2
        FROM gearman_jobs GROUP BY function`,
      this.#fast`
        SELECT s.id, s.name,
          (extract(epoch FROM clock_timestamp() - s.heartbeat) * 1000)::int AS age,
          (SELECT count(*) FROM gearman_jobs j WHERE j.owner = s.id)::int AS held
        FROM gearman_servers s ORDER BY s.id`,
    ]);
    const map = new Map<string, ClusterDepth>();
    for (const r of depth) {
      map.set(r.function as string, {
        queued: r.queued as number,
        held: r.held as number,
        queuedByPriority: [r.q0 as number, r.q1 as number, r.q2 as number],
      });
    }
    this.#depth = map;
    this.#servers = servers.map((r) => ({
      id: r.id as number,
      name: r.name as string,
      heartbeatAgeMs: Math.max(0, r.age as number),
      held: r.held as number,
    }));
  }

  // ------------------------------------------------------------ upkeep

  /** Heartbeat, take over the jobs of servers whose lease ended, refresh figures. */
  async #tick(): Promise<void> {
    if (this.#ticking || this.#closed !== undefined) return;
    this.#ticking = true;
    try {
      await answerWithin(this.#beat(), this.#leaseMs, "the heartbeat");
    } catch (err) {
      if (this.#closed === undefined) {
        this.#log.warn("Cluster heartbeat failed: {error}; retrying", {
          error: (err as Error).message,
        });
      }
    } finally {
      this.#ticking = false;
    }
  }

  async #beat(): Promise<void> {
    const me = this.serverId;
    const sentAt = Date.now();
    const beat = await this.#fast`
      UPDATE gearman_servers SET heartbeat = now() WHERE id = ${me} RETURNING id`;
    if (beat.length === 0) {
      this.#log.error(
        "This server's lease in the cluster ended (no heartbeat for {lease} ms: paused, overloaded, or cut off from the database): other servers took the jobs it held; joining again",
        { lease: this.#leaseMs },
      );
      // Forget what it held before claiming again under a new heartbeat.
      this.onLeaseLost?.();
      await this.#fast`INSERT INTO gearman_servers (id, name) VALUES (${me}, ${this.#name})`;
    }
    this.#lastBeat = sentAt;
    const freed = await this.#fast`
      WITH dead AS (
        DELETE FROM gearman_servers
        WHERE heartbeat < now() - ${this.#leaseMs} * interval '1 millisecond' RETURNING id, name
      )
      UPDATE gearman_jobs SET owner = NULL
      WHERE owner IN (SELECT id FROM dead)
      RETURNING function, owner`;
    if (freed.length > 0) {
      this.#log.warn(
        "Took back {count} job(s) held by cluster server(s) whose lease ended (no heartbeat for {lease} ms); they run again",
        { count: freed.length, lease: this.#leaseMs },
      );
      await this.#notifyFunctions(freed.map((r) => r.function as string));
    }
    await this.#freeOrphans();
    const now = Date.now();
    if (now - this.#figuresWanted < FIGURES_WANTED_MS && now >= this.#nextFiguresAt) {
      await this.#refreshFiguresNow();
    }
  }

  /**
   * Jobs held by a server id with no row (its claim or commit landed after
   * it left): freed when seen at two heartbeats in a row, so a server that
   * has just joined (its row not yet visible) is never taken for one.
   */
  async #freeOrphans(): Promise<void> {
    // The owners, one index probe each (a DISTINCT read the whole table:
    // 65-120 ms per heartbeat per server at 200k queued).
    const rows = await this.#fast`
      WITH RECURSIVE o(owner) AS (
        SELECT min(owner) FROM gearman_jobs WHERE owner IS NOT NULL
        UNION ALL
        SELECT (SELECT min(j.owner) FROM gearman_jobs j WHERE j.owner > o.owner)
        FROM o WHERE o.owner IS NOT NULL
      )
      SELECT owner FROM o
      WHERE owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM gearman_servers s WHERE s.id = o.owner)`;
    const seen = new Set(rows.map((r) => r.owner as number));
    const confirmed = [...seen].filter((o) => this.#orphanOwners.has(o));
    this.#orphanOwners = seen;
    if (confirmed.length === 0) return;
    const freed = await this.#fast`
      UPDATE gearman_jobs SET owner = NULL WHERE owner = ANY(${confirmed}::int8[]) RETURNING function`;
    if (freed.length === 0) return;
    this.#log.warn(
      "Took back {count} job(s) held by server(s) {servers}, which left the cluster; they run again",
      { count: freed.length, servers: confirmed.join(", ") },
    );
    await this.#notifyFunctions(freed.map((r) => r.function as string));
  }

  async #loadDead(): Promise<DeadLetter[]> {
    const rows = await this.#fast`
      SELECT id, handle, function, uniq, data, priority, retries, failed_at, reason
      FROM gearman_dead ORDER BY id`;
    return rows.map((r) => ({
      id: r.id as number,
      handle: r.handle as number,
      function: r.function as string,
      unique: r.uniq as Uint8Array,
      data: r.data as Uint8Array,
      priority: Number(r.priority),
      retries: Number(r.retries),
      failedAt: r.failed_at as number,
      reason: r.reason as string,
    }));
  }
}

/** Order of two unique submits by function, then coalescing key (bytes). */
function compareKeys(a: UniqueSubmit, b: UniqueSubmit): number {
  const fa = a.job.function;
  const fb = b.job.function;
  if (fa !== fb) return fa < fb ? -1 : 1;
  const ka = a.key;
  const kb = b.key;
  const n = Math.min(ka.length, kb.length);
  for (let i = 0; i < n; i++) if (ka[i] !== kb[i]) return ka[i]! - kb[i]!;
  return ka.length - kb.length;
}

/**
 * Queue jobs with unique ids, in one statement: for each, the handle of
 * the job that holds its key in the cluster (itself, or the job it
 * coalesced with). A key whose job was committed by another server after
 * the statement began is tried again (a new statement sees it).
 */
async function insertUniques(tx: Tx, uniques: UniqueSubmit[]): Promise<number[]> {
  const held: number[] = new Array(uniques.length);
  // In one order for every transaction (function, key, then submit order):
  // commits run concurrently, and two inserting the same two keys in
  // opposite orders would each wait for the other (a deadlock).
  let todo = uniques.map((_, i) => i).sort((a, b) =>
    compareKeys(uniques[a]!, uniques[b]!) || a - b
  );
  for (let attempt = 0; attempt < 5 && todo.length > 0; attempt++) {
    const again: number[] = [];
    // Statements of at most ROW_BATCH_BYTES of data (one job may be more);
    // a later one sees the rows of those before it (same transaction).
    for (let from = 0; from < todo.length;) {
      const batch = new RowBatch();
      const rows: number[] = [];
      while (from < todo.length && (rows.length === 0 || batch.bytes < ROW_BATCH_BYTES)) {
        const i = todo[from++]!;
        batch.add(uniques[i]!.job, 0, uniques[i]!.key);
        rows.push(i);
      }
      for (const row of await batch.insertKeyed(tx)) {
        const i = rows[row.n - 1]!;
        if (row.held === null) again.push(i);
        else held[i] = row.held;
      }
    }
    todo = again;
  }
  if (todo.length > 0) {
    const fn = uniques[todo[0]!]!.job.function;
    throw new StoreError(
      `Cannot queue job with unique id for ${fn}: the key kept changing hands; retry the submit`,
    );
  }
  return held;
}

/** Create or migrate the tables, one server at a time. */
async function migrate(sql: Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(4730)`;
    await tx`CREATE TABLE IF NOT EXISTS gearman_schema (version integer NOT NULL)`;
    const [row] = await tx`SELECT version FROM gearman_schema`;
    let version = row === undefined ? 0 : row.version as number;
    if (row === undefined) await tx`INSERT INTO gearman_schema (version) VALUES (0)`;
    if (version > SCHEMA_VERSION) {
      throw new StoreError(
        `Cannot use job store: its schema is version ${version}, newer than this server's ${SCHEMA_VERSION}; upgrade the server`,
      );
    }
    for (; version < SCHEMA_VERSION; version++) await tx.unsafe(MIGRATIONS[version]!);
    await tx`UPDATE gearman_schema SET version = ${version}`;
  });
}
