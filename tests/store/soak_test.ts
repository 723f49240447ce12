// A quick kill -9 soak (scripts/soak_kill9.ts with small numbers): no
// acknowledged background job may be lost across kills and restarts, on
// SQLite and on PostgreSQL.

import assert from "node:assert/strict";
import { runSoak } from "../../scripts/soak_kill9.ts";
import { postgresBin } from "../_postgres.ts";

async function quickSoak(postgres: boolean): Promise<void> {
  const seed = Math.floor(Math.random() * 2 ** 31);
  const lines: string[] = [`seed ${seed}`];
  const summary = await runSoak({
    postgres,
    rounds: 3,
    clients: 2,
    window: 16,
    workers: 2,
    killMinMs: 100,
    killMaxMs: 400,
    seed,
    fresh: false,
    drainKill: true,
    drainTimeoutMs: 30_000,
    log: (line) => lines.push(line),
  });
  const report = lines.join("\n");
  assert.ok(summary.acknowledged > 0, `no job was acknowledged:\n${report}`);
  assert.equal(summary.lost, 0, `acknowledged jobs lost:\n${report}`);
  assert.equal(summary.duplicates, 0, `jobs run twice by one server:\n${report}`);
  assert.equal(summary.wrongHandle, 0, `replayed jobs with another handle:\n${report}`);
  assert.equal(summary.wrongData, 0, `replayed jobs with other data:\n${report}`);
  assert.equal(summary.phantom, 0, `jobs nobody submitted were run:\n${report}`);
  assert.equal(summary.leftover, 0, `jobs left in the store after a full drain:\n${report}`);
  assert.equal(summary.finalStoreJobs, 0, `jobs rows in the file at the end:\n${report}`);
  assert.ok(summary.ok, report);
}

Deno.test("store: kill -9 soak, 3 rounds: no acknowledged job lost, none run twice by one server, store empty after the drains", () =>
  quickSoak(false));

Deno.test({
  name:
    "postgres: kill -9 soak, 3 rounds: no acknowledged job lost, none run twice by one server, the jobs table empty after the drains",
  // .ci/run installs PostgreSQL; elsewhere: apt-get install -y postgresql.
  ignore: postgresBin() === undefined,
  fn: () => quickSoak(true),
});
