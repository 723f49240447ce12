// The SQLite store on its own (no server): submit order across queues, the
// backlog counts, paging and the schema upgrade. There is no index on seq
// alone, and jobs_queue indexes only the jobs kept on disk (handles from
// SPILL_BASE up) or left there by a start, so these read several sources.

import assert from "node:assert/strict";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import type { StoredJob } from "../../src/server/store/job_store.ts";
import { SqliteJobStore } from "../../src/server/store/sqlite_store.ts";
import { SPILL_BASE } from "../../src/server/job_table.ts";

const enc = new TextEncoder();

function job(
  handle: number,
  seq: number,
  fn: string,
  priority: number,
  extra: Partial<StoredJob> = {},
): StoredJob {
  return {
    handle,
    seq,
    function: fn,
    unique: new Uint8Array(0),
    data: enc.encode(`d${seq}`),
    priority,
    runAt: 0,
    cron: "",
    retries: 0,
    ...extra,
  };
}

/**
 * Jobs in memory have slot handles; those kept only on disk, SPILL_BASE +
 * seq (never jobs with a run-at time, as in the server).
 */
function handleOf(seq: number): number {
  return seq % 3 === 0 && seq % 97 !== 0 ? SPILL_BASE + seq : 10_000 + seq;
}

async function withStore(f: (path: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(join(dir, "jobs.db"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("sqlite store: loadHead merges the queues in submit order (read in chunks), however the jobs are spread over them", async () => {
  await withStore((path) => {
    const store = SqliteJobStore.open(path);
    const fns = ["a", "\u00ff"];
    const expected: number[] = [];
    // 9,000 jobs over 2 functions x 3 priorities, in runs, so each queue is
    // read in several chunks; some with a run-at time, cron, retries, a reducer.
    for (let seq = 1; seq <= 9000; seq++) {
      const fn = fns[Math.floor(seq / 7) % fns.length]!;
      const p = Math.floor(seq / 3) % 3;
      const extra: Partial<StoredJob> = seq % 97 === 0
        ? { runAt: 1e12 + seq, retries: 2, reducer: enc.encode("r") }
        : seq % 101 === 0
        ? { cron: "* * * * *" }
        : {};
      // Every third job as if kept only on disk (a spill handle).
      store.add(job(handleOf(seq), seq, fn, p, extra));
      expected.push(seq);
      if (seq % 333 === 0) store.commit();
    }
    store.commit();
    // A few removed.
    for (const seq of [1, 2, 500, 8999]) {
      store.remove(handleOf(seq));
      expected.splice(expected.indexOf(seq), 1);
    }
    store.commit();
    store.close();

    const again = SqliteJobStore.open(path);
    const all = [...again.loadHead(Number.MAX_SAFE_INTEGER)];
    assert.deepEqual(all.map((j) => j.seq), expected);
    const j97 = all.find((j) => j.seq === 97)!;
    assert.equal(j97.runAt, 1e12 + 97);
    assert.equal(j97.retries, 2);
    assert.deepEqual(j97.reducer, enc.encode("r"));
    assert.equal(all.find((j) => j.seq === 101)!.cron, "* * * * *");
    assert.equal(all.find((j) => j.seq === 3)!.cron, "");
    assert.deepEqual(all.find((j) => j.seq === 3)!.data, enc.encode("d3"));
    assert.equal(all.find((j) => j.seq === 3)!.function, fns[0]);

    const head = [...again.loadHead(1000)];
    assert.deepEqual(head.map((j) => j.seq), expected.slice(0, 1000));
    const last = head.at(-1)!.seq;
    assert.deepEqual(
      [...again.loadTimed(last)].map((j) => j.seq),
      expected.filter((s) => s > last && s % 97 === 0),
    );
    // backlog: jobs after `last` without a run-at time, by queue.
    const want = new Map<string, number>();
    for (const s of expected) {
      if (s <= last || s % 97 === 0) continue;
      const key = `${fns[Math.floor(s / 7) % fns.length]}/${Math.floor(s / 3) % 3}`;
      want.set(key, (want.get(key) ?? 0) + 1);
    }
    const got = new Map(again.backlog(last).map((b) => [`${b.function}/${b.priority}`, b.count]));
    assert.deepEqual(got, want);
    assert.equal(again.maxSeq(), 9000);
    // page() finds every job after `last` of a queue, of both kinds, in order.
    for (const [key, n] of want) {
      const [fn, p] = key.split("/");
      const paged: number[] = [];
      for (let after = last;;) {
        const rows = again.page(fn!, Number(p), after, 100);
        if (rows.length === 0) break;
        paged.push(...rows.map((j) => j.seq));
        after = rows.at(-1)!.seq;
      }
      assert.equal(paged.length, n, key);
      assert.deepEqual(paged, [...paged].sort((a, b) => a - b));
      for (const seq of paged) assert.equal(again.findByHandle(handleOf(seq))?.seq, seq);
    }
    // What the start left on disk stays pageable after another start.
    again.close();
    const third = SqliteJobStore.open(path);
    assert.deepEqual([...third.loadHead(Number.MAX_SAFE_INTEGER)].map((j) => j.seq), expected);
    assert.equal(
      third.page(fns[0]!, 1, last, 1)[0]?.seq,
      expected.find((s) =>
        s > last && s % 97 !== 0 && Math.floor(s / 7) % fns.length === 0 &&
        Math.floor(s / 3) % 3 === 1
      ),
    );
    assert.equal(third.maxSeq(), 9000);
    third.close();
    const again2 = SqliteJobStore.open(path);
    assert.deepEqual([...again2.loadHead(0)], []);
    again2.close();
  });
});

Deno.test("sqlite store: an empty store has no head, backlog or sequence", async () => {
  await withStore((path) => {
    const store = SqliteJobStore.open(path);
    assert.deepEqual([...store.loadHead(10)], []);
    assert.deepEqual(store.backlog(0), []);
    assert.equal(store.maxSeq(), 0);
    store.close();
  });
});

Deno.test("sqlite store: a version-1 file (index on seq) is upgraded on open and keeps its jobs", async () => {
  await withStore((path) => {
    const db = new DatabaseSync(path);
    db.exec(`
      CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      CREATE TABLE jobs (
        handle INTEGER PRIMARY KEY, seq INTEGER NOT NULL, function BLOB NOT NULL,
        uniq BLOB NOT NULL, data BLOB NOT NULL, priority INTEGER NOT NULL,
        run_at INTEGER NOT NULL, cron TEXT NOT NULL, retries INTEGER NOT NULL,
        reducer BLOB NOT NULL DEFAULT x'');
      CREATE INDEX jobs_queue ON jobs (function, priority, seq);
      CREATE INDEX jobs_unique ON jobs (function, uniq) WHERE length(uniq) > 0;
      CREATE INDEX jobs_seq ON jobs (seq);
      INSERT INTO meta VALUES ('boot', 4);
      INSERT INTO jobs VALUES (7, 2, x'66', x'', x'6f6e65', 1, 0, '', 0, x'');
      INSERT INTO jobs VALUES (9, 1, x'67', x'', x'74776f', 1, 5, '', 1, x'');
      PRAGMA user_version = 1;
    `);
    db.close();
    const store = SqliteJobStore.open(path);
    assert.equal(store.boot, 5);
    assert.deepEqual([...store.loadHead(10)].map((j) => [j.handle, j.function]), [[9, "g"], [
      7,
      "f",
    ]]);
    assert.deepEqual([...store.loadTimed(0)].map((j) => j.handle), [9]);
    store.close();
    const check = new DatabaseSync(path);
    const indexes =
      (check.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'")
        .all() as { name: string }[]).map((r) => r.name).sort();
    assert.deepEqual(indexes, ["jobs_queue", "jobs_timed", "jobs_unique"]);
    const columns = (check.prepare("PRAGMA table_info(jobs)").all() as { name: string }[])
      .map((c) => c.name);
    assert.ok(columns.includes("paged"), columns.join());
    assert.equal(
      (check.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
      3,
    );
    check.close();
  });
});

Deno.test("sqlite store: many removals in one commit (DELETE many rows at a time) and a few", async () => {
  await withStore((path) => {
    const store = SqliteJobStore.open(path);
    for (let seq = 1; seq <= 100; seq++) store.add(job(handleOf(seq), seq, "f", 1));
    store.commit();
    // 70 in one commit: two statements of 32 and six alone.
    for (let seq = 11; seq <= 80; seq++) store.remove(handleOf(seq));
    store.commit();
    store.remove(handleOf(1));
    store.commit();
    assert.equal(store.findByHandle(handleOf(11)), undefined);
    assert.equal(store.findByHandle(handleOf(81))?.seq, 81);
    store.close();
    const again = SqliteJobStore.open(path);
    const left = [...again.loadHead(1000)].map((j) => j.seq);
    const want = Array.from({ length: 100 }, (_, i) => i + 1).filter((s) =>
      s !== 1 && (s < 11 || s > 80)
    );
    assert.deepEqual(left, want);
    again.close();
  });
});

/** Rows of a table, read with a separate connection after the store is closed. */
function countRows(path: string, table: string): number {
  const db = new DatabaseSync(path);
  try {
    return Number((db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n);
  } finally {
    db.close();
  }
}

Deno.test("sqlite store: plain jobs go to the job log, one row per commit; ends, retries and refs survive a reopen", async () => {
  await withStore((path) => {
    const store = SqliteJobStore.open(path);
    const refs = new Map<number, number>();
    // Three commits of plain jobs, with a unique job and a spilled one among them.
    for (let seq = 1; seq <= 300; seq++) {
      const extra = seq % 50 === 0 ? { unique: enc.encode(`u${seq}`) } : {};
      const handle = seq === 60 ? SPILL_BASE + seq : 1000 + seq;
      refs.set(seq, store.add(job(handle, seq, seq % 2 ? "odd" : "even", seq % 3, extra)));
      if (seq % 100 === 0) store.commit();
    }
    assert.ok(refs.get(50)! > 0, "a job with a unique id goes to the log too");
    assert.equal(refs.get(60), 0, "a job kept on disk goes to the jobs table");
    assert.ok(refs.get(1)! > 0 && refs.get(1) !== refs.get(2));
    // Added and ended in the same commit: never written.
    const gone = store.add(job(5000, 301, "odd", 1));
    store.remove(5000, gone);
    // Ends by reference, and one without (found by a scan of the log).
    for (let seq = 1; seq <= 100; seq++) {
      store.remove(seq === 60 ? SPILL_BASE + seq : 1000 + seq, refs.get(seq)!);
    }
    store.remove(1000 + 150, undefined);
    store.setRetries(1000 + 151, 2, refs.get(151)!);
    store.setRetries(1000 + 152, 1); // no reference: a scan
    store.commit();
    assert.equal(store.findByHandle(1000 + 200)?.seq, 200, "a logged job is found by a scan");
    assert.equal(store.findByHandle(1000 + 150), undefined);
    store.close();
    // The first commit's row had all its jobs end: deleted. Two rows remain.
    assert.equal(countRows(path, "job_log"), 2);

    const again = SqliteJobStore.open(path);
    const loaded = [...again.loadHead(Number.MAX_SAFE_INTEGER)];
    const want = Array.from({ length: 200 }, (_, i) => i + 101).filter((s) => s !== 150);
    assert.deepEqual(loaded.map((j) => j.seq), want);
    const bySeq = new Map(loaded.map((j) => [j.seq, j]));
    assert.equal(bySeq.get(151)?.retries, 2);
    assert.equal(bySeq.get(152)?.retries, 1);
    assert.equal(bySeq.get(153)?.retries, 0);
    assert.equal(new TextDecoder().decode(bySeq.get(222)!.data), "d222");
    assert.equal(new TextDecoder().decode(bySeq.get(250)?.unique), "u250");
    assert.equal(bySeq.get(222)!.function, "even");
    assert.equal(bySeq.get(222)!.priority, 222 % 3);
    // The references the load gives end jobs across a second reopen.
    for (const j of loaded) if (j.seq > 150 && j.seq <= 250) again.remove(j.handle, j.ref);
    again.commit();
    again.close();
    assert.equal(countRows(path, "job_log_retries"), 0, "ended jobs' retry counts are deleted");
    const third = SqliteJobStore.open(path);
    assert.deepEqual(
      [...third.loadHead(Number.MAX_SAFE_INTEGER)].map((j) => j.seq),
      want.filter((s) => s < 150 || s > 250),
    );
    third.close();
  });
});

Deno.test("sqlite store: logged jobs past a start's memory limit move to the jobs table and are paged in", async () => {
  await withStore((path) => {
    const store = SqliteJobStore.open(path);
    for (let seq = 1; seq <= 500; seq++) {
      store.add(job(1000 + seq, seq, "f", 1));
      if (seq % 64 === 0) store.commit();
    }
    store.commit();
    store.close();
    const again = SqliteJobStore.open(path);
    const head = [...again.loadHead(120)];
    assert.deepEqual(head.map((j) => j.seq), Array.from({ length: 120 }, (_, i) => i + 1));
    assert.deepEqual(again.backlog(120), [{ function: "f", priority: 1, count: 380 }]);
    assert.deepEqual(again.page("f", 1, 120, 5).map((j) => j.seq), [121, 122, 123, 124, 125]);
    assert.equal(again.maxSeq(), 500);
    // The head stays in the log: end it by reference.
    for (const j of head) again.remove(j.handle, j.ref);
    again.commit();
    again.close();
    assert.equal(countRows(path, "job_log"), 0);
    const third = SqliteJobStore.open(path);
    assert.deepEqual(
      [...third.loadHead(Number.MAX_SAFE_INTEGER)].map((j) => j.seq),
      Array.from({ length: 380 }, (_, i) => i + 121),
    );
    third.close();
  });
});

Deno.test("sqlite store: one commit of many jobs or big jobs is split over several log rows, read back byte for byte", async () => {
  await withStore((path) => {
    const store = SqliteJobStore.open(path);
    const big = (seq: number): Uint8Array => {
      const b = new Uint8Array(10 * 1024 * 1024);
      for (let i = 0; i < b.length; i += 4099) b[i] = (seq * 31 + i) & 0xff;
      return b;
    };
    // 5,000 small jobs (more than one row takes) and three 10 MiB ones (more bytes than one row takes).
    for (let seq = 1; seq <= 5000; seq++) store.add(job(1000 + seq, seq, "small", 1));
    for (let seq = 5001; seq <= 5003; seq++) {
      store.add(job(1000 + seq, seq, "big", 1, { data: big(seq) }));
    }
    store.commit();
    store.close();
    assert.ok(countRows(path, "job_log") >= 3, "split over several rows");
    const again = SqliteJobStore.open(path);
    const loaded = [...again.loadHead(Number.MAX_SAFE_INTEGER)];
    assert.deepEqual(loaded.map((j) => j.seq), Array.from({ length: 5003 }, (_, i) => i + 1));
    for (const j of loaded.slice(5000)) assert.deepEqual(j.data, big(j.seq));
    assert.equal(new TextDecoder().decode(loaded[4999]!.data), "d5000");
    again.close();
  });
});
