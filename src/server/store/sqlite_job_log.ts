// The append-only part of the SQLite store: plain background jobs (no
// run-at time, cron or reducer; nearly all of them) are written
// as one row per commit holding all of that commit's jobs in one blob,
// instead of a table row per job. An append of one row is about a third of
// the cost of inserting the same jobs as rows (no b-tree insert per job).
// Jobs that end are recorded in a bitmap per log row, rewritten when it
// changes; a row whose jobs have all ended is deleted.
//
// Only jobs the server holds in memory are in the log (a job kept only on
// disk, past the memory limit, goes to the jobs table, which has the
// indexes paging needs), so the log is read once, at start, in order, and
// needs no index: the server finds a logged job's unique id in its own
// memory (libgearman clients, PHP's among them, give every background job
// a unique id, so these must be as cheap as the others). The
// server finds a log job again by the reference add() returned: the log
// row and the job's place in it.

import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { StoredJob } from "./job_store.ts";
import { SPILL_BASE } from "../job_table.ts";

/** Tables of the log (created with the store's schema). */
export const JOB_LOG_SCHEMA = `
CREATE TABLE IF NOT EXISTS job_log (
  id        INTEGER PRIMARY KEY,
  count     INTEGER NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq  INTEGER NOT NULL,
  jobs      BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS job_log_done (id INTEGER PRIMARY KEY, bits BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS job_log_retries (handle INTEGER PRIMARY KEY, retries INTEGER NOT NULL);
`;

/** Job places per log row: a reference is `row id * ROW_SPAN + place`. */
const ROW_SPAN = 8192;
/** Most jobs in one log row (a commit with more writes several rows). */
const MAX_ROW_JOBS = 4096;
/** A row takes no more jobs once its payload reaches this many bytes. */
const MAX_ROW_BYTES = 16 * 1024 * 1024;
/** Largest encoding buffer kept between commits. */
const KEEP_BUFFER_BYTES = 4 * 1024 * 1024;
/**
 * Fixed bytes per job in a row: place u16, handle f64, seq f64, priority
 * u8, retries u16, then the lengths (u32) of the name, unique id and data,
 * each before its bytes.
 */
const JOB_HEADER = 2 + 8 + 8 + 1 + 2 + 4 + 4 + 4;

/** A committed log row, as the server tracks it. */
interface LogRow {
  id: number;
  count: number;
  lastSeq: number;
  /** Bit `i` set: the job at place `i` ended (or was never written). */
  bits: Uint8Array;
  live: number;
  dirty: boolean;
}

/** Jobs added this turn that will be one log row at the next commit. */
interface PendingRow {
  id: number;
  /** By place; undefined once removed before the commit (never written). */
  jobs: (StoredJob | undefined)[];
  bytes: number;
}

const latin1 = new TextDecoder("latin1");

/** The append-only job log of one SQLite store (see the file comment). */
export class SqliteJobLog {
  readonly #db: DatabaseSync;
  readonly #rows = new Map<number, LogRow>();
  /** Rows whose bitmap changed since the last commit. */
  #dirty: LogRow[] = [];
  #pending: PendingRow[] = [];
  #nextId: number;
  /** Retry counts of logged jobs (the blob is never rewritten). */
  readonly #retries = new Map<number, number>();
  #retryWrites = new Map<number, number>();
  #retryDeletes: number[] = [];
  #buffer = new Uint8Array(64 * 1024);
  #view = new DataView(this.#buffer.buffer);
  readonly #insert: StatementSync;
  readonly #setBits: StatementSync;
  readonly #deleteRow: StatementSync;
  readonly #deleteBits: StatementSync;
  readonly #setRetries: StatementSync;
  readonly #deleteRetries: StatementSync;

  /** Read the log's bookkeeping (one row per commit, not the jobs). */
  constructor(db: DatabaseSync) {
    this.#db = db;
    this.#insert = db.prepare(
      "INSERT INTO job_log (id, count, first_seq, last_seq, jobs) VALUES (?, ?, ?, ?, ?)",
    );
    this.#setBits = db.prepare("INSERT OR REPLACE INTO job_log_done (id, bits) VALUES (?, ?)");
    this.#deleteRow = db.prepare("DELETE FROM job_log WHERE id = ?");
    this.#deleteBits = db.prepare("DELETE FROM job_log_done WHERE id = ?");
    this.#setRetries = db.prepare(
      "INSERT OR REPLACE INTO job_log_retries (handle, retries) VALUES (?, ?)",
    );
    this.#deleteRetries = db.prepare("DELETE FROM job_log_retries WHERE handle = ?");
    const bits = new Map<number, Uint8Array>();
    for (const r of db.prepare("SELECT id, bits FROM job_log_done").iterate()) {
      const row = r as { id: number; bits: Uint8Array };
      bits.set(Number(row.id), row.bits);
    }
    let last = 0;
    for (const r of db.prepare("SELECT id, count, last_seq FROM job_log ORDER BY id").iterate()) {
      const row = r as { id: number; count: number; last_seq: number };
      const id = Number(row.id);
      const count = Number(row.count);
      const b = new Uint8Array((count + 7) >> 3);
      const stored = bits.get(id);
      if (stored !== undefined) b.set(stored.subarray(0, b.length));
      let done = 0;
      for (let i = 0; i < count; i++) if (b[i >> 3]! & (1 << (i & 7))) done++;
      this.#rows.set(id, {
        id,
        count,
        lastSeq: Number(row.last_seq),
        bits: b,
        live: count - done,
        dirty: false,
      });
      last = id;
    }
    this.#nextId = last + 1;
    for (const r of db.prepare("SELECT handle, retries FROM job_log_retries").iterate()) {
      const row = r as { handle: number; retries: number };
      this.#retries.set(Number(row.handle), Number(row.retries));
    }
  }

  /** Whether a job goes in the log (else the store's jobs table). */
  static takes(j: StoredJob): boolean {
    return j.handle < SPILL_BASE && j.runAt === 0 && j.cron === "" &&
      (j.reducer === undefined || j.reducer.length === 0);
  }

  /** Whether writes wait for the next commit. */
  get pending(): boolean {
    return this.#pending.length > 0 || this.#dirty.length > 0 || this.#retryWrites.size > 0 ||
      this.#retryDeletes.length > 0;
  }

  /** Buffer a job ({@link takes} must hold); returns its reference. */
  add(job: StoredJob): number {
    let row = this.#pending[this.#pending.length - 1];
    const bytes = JOB_HEADER + job.function.length + job.unique.length + job.data.length;
    if (row === undefined || row.jobs.length >= MAX_ROW_JOBS || row.bytes >= MAX_ROW_BYTES) {
      row = { id: this.#nextId++, jobs: [], bytes: 0 };
      this.#pending.push(row);
    }
    row.bytes += bytes;
    return row.id * ROW_SPAN + row.jobs.push(job) - 1;
  }

  /** The row and place a reference names, or undefined if it is not one of the log's. */
  #place(ref: number): { id: number; place: number } | undefined {
    if (!(ref >= ROW_SPAN)) return undefined;
    const place = ref % ROW_SPAN;
    return { id: (ref - place) / ROW_SPAN, place };
  }

  /** A buffered (uncommitted) row by id. */
  #pendingRow(id: number): PendingRow | undefined {
    const p = this.#pending;
    // Pending rows have consecutive ids.
    if (p.length === 0 || id < p[0]!.id) return undefined;
    return p[id - p[0]!.id];
  }

  /** Buffer: the job with this reference ended. False if the reference is not the log's. */
  remove(handle: number, ref: number): boolean {
    const at = this.#place(ref);
    if (at === undefined) return false;
    const pending = this.#pendingRow(at.id);
    if (pending !== undefined) {
      pending.jobs[at.place] = undefined; // never written
      return true;
    }
    const row = this.#rows.get(at.id);
    if (row === undefined) return true; // its row is gone already (e.g. a failed commit)
    const mask = 1 << (at.place & 7);
    if (row.bits[at.place >> 3]! & mask) return true;
    row.bits[at.place >> 3]! |= mask;
    row.live--;
    if (!row.dirty) {
      row.dirty = true;
      this.#dirty.push(row);
    }
    if (this.#retries.delete(handle)) {
      this.#retryWrites.delete(handle);
      this.#retryDeletes.push(handle);
    }
    return true;
  }

  /** Buffer a logged job's retry count. False if the reference is not the log's. */
  setRetries(handle: number, retries: number, ref: number): boolean {
    const at = this.#place(ref);
    if (at === undefined) return false;
    const pending = this.#pendingRow(at.id);
    const job = pending?.jobs[at.place];
    if (job !== undefined) job.retries = retries;
    else if (pending === undefined && this.#rows.has(at.id)) {
      this.#retries.set(handle, retries);
      this.#retryWrites.set(handle, retries);
    }
    return true;
  }

  /**
   * Write what is buffered; call inside the store's transaction, then
   * {@link committed} or {@link failed} after it ends.
   */
  write(): void {
    for (const row of this.#pending) this.#writeRow(row);
    for (const row of this.#dirty) {
      if (row.live === 0) {
        this.#deleteRow.run(row.id);
        this.#deleteBits.run(row.id);
      } else this.#setBits.run(row.id, row.bits);
    }
    for (const [handle, n] of this.#retryWrites) this.#setRetries.run(handle, n);
    for (const handle of this.#retryDeletes) this.#deleteRetries.run(handle);
  }

  /** Encode a buffered row's jobs into one blob and insert it (nothing if all ended already). */
  #writeRow(row: PendingRow): void {
    const jobs = row.jobs;
    let size = 0;
    let firstSeq = 0;
    let lastSeq = 0;
    for (const j of jobs) {
      if (j === undefined) continue;
      size += JOB_HEADER + j.function.length + j.unique.length + j.data.length;
      if (firstSeq === 0) firstSeq = j.seq;
      lastSeq = j.seq;
    }
    if (size === 0) return;
    if (this.#buffer.length < size) {
      this.#buffer = new Uint8Array(Math.max(size, this.#buffer.length * 2));
      this.#view = new DataView(this.#buffer.buffer);
    }
    const buf = this.#buffer;
    const view = this.#view;
    let at = 0;
    const done = new Uint8Array((jobs.length + 7) >> 3);
    let skipped = false;
    for (let i = 0; i < jobs.length; i++) {
      const j = jobs[i];
      if (j === undefined) {
        done[i >> 3]! |= 1 << (i & 7);
        skipped = true;
        continue;
      }
      view.setUint16(at, i, true);
      view.setFloat64(at + 2, j.handle, true);
      view.setFloat64(at + 10, j.seq, true);
      buf[at + 18] = j.priority;
      view.setUint16(at + 19, Math.min(j.retries, 0xffff), true);
      const name = j.function;
      view.setUint32(at + 21, name.length, true);
      at += 25;
      if (j.functionBytes !== undefined) buf.set(j.functionBytes, at);
      else for (let k = 0; k < name.length; k++) buf[at + k] = name.charCodeAt(k);
      at += name.length;
      view.setUint32(at, j.unique.length, true);
      buf.set(j.unique, at + 4);
      at += 4 + j.unique.length;
      view.setUint32(at, j.data.length, true);
      at += 4;
      buf.set(j.data, at);
      at += j.data.length;
    }
    this.#insert.run(row.id, jobs.length, firstSeq, lastSeq, buf.subarray(0, at));
    if (buf.length > KEEP_BUFFER_BYTES) {
      // A commit of big jobs: do not keep its buffer for good.
      this.#buffer = new Uint8Array(64 * 1024);
      this.#view = new DataView(this.#buffer.buffer);
    }
    if (skipped) this.#setBits.run(row.id, done);
  }

  /** The transaction of {@link write} committed. */
  committed(): void {
    for (const p of this.#pending) {
      let live = 0;
      let lastSeq = 0;
      const bits = new Uint8Array((p.jobs.length + 7) >> 3);
      for (let i = 0; i < p.jobs.length; i++) {
        const j = p.jobs[i];
        if (j === undefined) bits[i >> 3]! |= 1 << (i & 7);
        else {
          live++;
          lastSeq = j.seq;
          if (j.retries > 0) this.#retries.set(j.handle, j.retries);
        }
      }
      if (live > 0) {
        this.#rows.set(p.id, { id: p.id, count: p.jobs.length, lastSeq, bits, live, dirty: false });
      }
    }
    this.#pending = [];
    for (const row of this.#dirty) {
      row.dirty = false;
      if (row.live === 0) this.#rows.delete(row.id);
    }
    this.#dirty = [];
    this.#retryWrites = new Map();
    this.#retryDeletes = [];
  }

  /**
   * The transaction of {@link write} failed: the buffered jobs are dropped
   * (the server closes their clients' connections, so none was acknowledged);
   * ends and retry counts stay buffered for the next commit.
   */
  failed(): void {
    this.#pending = [];
  }

  /** The highest sequence number in the log (0 when empty). */
  maxSeq(): number {
    let max = 0;
    for (const r of this.#rows.values()) if (r.lastSeq > max) max = r.lastSeq;
    return max;
  }

  /**
   * Live logged jobs in submit order, each with its reference. Reads one
   * row at a time.
   */
  *jobs(afterSeq = 0): Generator<StoredJob> {
    const read = this.#db.prepare(
      "SELECT id, jobs FROM job_log WHERE last_seq > ? ORDER BY id",
    );
    for (const r of read.iterate(afterSeq)) {
      const { id, jobs } = r as { id: number; jobs: Uint8Array };
      const row = this.#rows.get(Number(id));
      if (row === undefined || row.live === 0) continue;
      for (const j of this.#decode(row, jobs)) if (j.seq > afterSeq) yield j;
    }
  }

  /** The live jobs of one row's blob. */
  *#decode(row: LogRow, blob: Uint8Array): Generator<StoredJob> {
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    let at = 0;
    while (at < blob.length) {
      const place = view.getUint16(at, true);
      const handle = view.getFloat64(at + 2, true);
      const seq = view.getFloat64(at + 10, true);
      const priority = blob[at + 18]!;
      const retries = view.getUint16(at + 19, true);
      const nameLength = view.getUint32(at + 21, true);
      at += 25;
      const name = latin1.decode(blob.subarray(at, at + nameLength));
      at += nameLength;
      const uniqueLength = view.getUint32(at, true);
      const unique = blob.subarray(at + 4, at + 4 + uniqueLength);
      at += 4 + uniqueLength;
      const dataLength = view.getUint32(at, true);
      at += 4;
      const data = blob.subarray(at, at + dataLength);
      at += dataLength;
      if (row.bits[place >> 3]! & (1 << (place & 7))) continue;
      yield {
        handle,
        seq,
        function: name,
        unique,
        data,
        priority,
        runAt: 0,
        cron: "",
        retries: this.#retries.get(handle) ?? retries,
        ref: row.id * ROW_SPAN + place,
      };
    }
  }

  /** A live logged job by handle: a scan of the log (the server never needs it). */
  find(handle: number): StoredJob | undefined {
    for (const p of this.#pending) {
      for (const j of p.jobs) if (j !== undefined && j.handle === handle) return j;
    }
    for (const j of this.jobs()) if (j.handle === handle) return j;
    return undefined;
  }

  /** The reference of a live logged job by handle, found by a scan; 0 if none. */
  refOf(handle: number): number {
    for (const p of this.#pending) {
      const place = p.jobs.findIndex((j) => j !== undefined && j.handle === handle);
      if (place >= 0) return p.id * ROW_SPAN + place;
    }
    return this.find(handle)?.ref ?? 0;
  }

  /**
   * Take the live jobs after `afterSeq` out of the log (marked ended, in
   * the caller's transaction) and give them to `keep`, which writes them
   * elsewhere: a start leaves them on disk, to be paged in.
   */
  moveAfter(afterSeq: number, keep: (j: StoredJob) => void): void {
    for (const j of this.jobs(afterSeq)) {
      keep(j);
      this.remove(j.handle, j.ref!);
    }
    this.write();
    this.committed();
  }
}
