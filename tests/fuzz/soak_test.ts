// The garbage soak (scripts/soak_garbage.ts), small: 100 hostile connections
// next to 5,000 real jobs on a server child process. Every job must run
// exactly once, every refused connection must get its ERROR, and nothing
// may be left on the server afterwards.

import assert from "node:assert/strict";
import { formatResult, runGarbageSoak } from "../../scripts/soak_garbage.ts";

Deno.test("garbage soak: 100 hostile connections next to 5,000 jobs lose and duplicate none", async () => {
  const r = await runGarbageSoak({
    garbage: 100,
    jobs: 5000,
    rounds: 1,
    clients: 2,
    window: 128,
    workers: 2,
    concurrency: 8,
    wave: 50,
    seed: 7,
    // Memory is the full soak's business: this only guards against a blow-up.
    rssSlackMiB: 512,
    timeoutMs: 120_000,
    settleMs: 1000,
    inProcess: false,
    log: () => {},
  });
  const report = formatResult(r);
  assert.ok(r.serverAlive, report);
  assert.equal(r.foreground + r.background, 5000, report);
  assert.equal(r.acknowledged, r.background, report);
  assert.equal(r.ran, 5000, report);
  assert.equal(r.lost, 0, report);
  assert.equal(r.duplicated, 0, report);
  assert.equal(r.wrongResult, 0, report);
  assert.equal(r.failedSubmits, 0, report);
  assert.equal(r.missingErrors, 0, report);
  assert.equal(r.connectFailures, 0, report);
  assert.equal(r.leftoverJobs, 0, report);
  assert.equal(r.leftoverConnections, 0, report);
  assert.equal(Object.values(r.garbageByKind).reduce((s, n) => s + n, 0), 100, report);
  assert.ok(r.ok, report);
});
