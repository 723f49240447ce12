// PHP GearmanClient and GearmanWorker (php-gearman, over C libgearman)
// against our server and against C++ gearmand: each scenario must print the
// same.

import assert from "node:assert/strict";
import {
  assertSameAsGearmand,
  assertSucceeded,
  HOST,
  onEachTarget,
  PEERS_DIR,
  requirePeer,
  run,
  spawn,
  type Target,
} from "./_harness.ts";

const havePhp = requirePeer("PHP GearmanClient/GearmanWorker", [
  "php",
  "-r",
  'exit(class_exists("GearmanClient") && class_exists("GearmanWorker") ? 0 : 1);',
]);

const CLIENT = PEERS_DIR + "php_client.php";
const WORKER = PEERS_DIR + "php_worker.php";

/** What one scenario printed: the client's JSON and the worker's lines. */
interface PhpResult {
  client: unknown;
  worker: string[];
}

async function phpClient(target: Target, scenario: string): Promise<unknown> {
  const r = await run("php", [CLIENT, HOST, String(target.port), scenario], {
    timeoutMs: 30_000,
  });
  assertSucceeded(r, `php_client.php ${scenario} against ${target.name}`);
  return JSON.parse(r.stdout);
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

/** Start a PHP worker, run the client scenario, then stop the worker with a quit job. */
function phpScenario(scenario: string): Promise<Record<string, PhpResult>> {
  return onEachTarget(async (target) => {
    await using worker = spawn("php", [WORKER, HOST, String(target.port), "0", "50"], {
      timeoutMs: 55_000,
    });
    const client = await phpClient(target, scenario);
    const quit = await phpClient(target, "quit");
    const w = await worker.result;
    assertSucceeded(w, `php_worker.php (${scenario}) against ${target.name}`);
    if (JSON.stringify(quit) !== '{"result":"bye","rc":"GEARMAN_SUCCESS"}') {
      throw new Error(`quit job against ${target.name} returned ${JSON.stringify(quit)}`);
    }
    return { client, worker: lines(w.stdout) };
  });
}

/**
 * Run the client scenario with no worker connected (so its background jobs
 * queue up), then start a worker that takes `jobs` jobs and prints the order.
 */
function phpQueuedScenario(scenario: string, jobs: number): Promise<Record<string, PhpResult>> {
  return onEachTarget(async (target) => {
    const client = await phpClient(target, scenario);
    const w = await run("php", [WORKER, HOST, String(target.port), String(jobs), "30"], {
      timeoutMs: 35_000,
    });
    assertSucceeded(w, `php_worker.php (${scenario}) against ${target.name}`);
    return { client, worker: lines(w.stdout) };
  });
}

Deno.test({
  name: "interop: PHP GearmanClient doNormal/doHigh/doLow against ours and gearmand",
  ignore: !havePhp,
  async fn() {
    assertSameAsGearmand(await phpScenario("do"), {
      client: {
        normal: { result: "lamron-php", rc: "GEARMAN_SUCCESS" },
        high: { result: "hgih-php", rc: "GEARMAN_SUCCESS" },
        low: { result: "wol-php", rc: "GEARMAN_SUCCESS" },
      },
      worker: [
        "ran rev php-normal",
        "ran rev php-high",
        "ran rev php-low",
        "ran quit now",
        "jobs 4",
      ],
    });
  },
});

Deno.test({
  name: "interop: PHP GearmanClient unique id reaches GearmanWorker against ours and gearmand",
  ignore: !havePhp,
  async fn() {
    assertSameAsGearmand(await phpScenario("unique"), {
      client: { result: "my-unique-1|payload", rc: "GEARMAN_SUCCESS" },
      worker: ["ran uniq payload", "ran quit now", "jobs 2"],
    });
  },
});

Deno.test({
  name:
    "interop: PHP doBackground/doHighBackground/doLowBackground run in priority order against ours and gearmand",
  ignore: !havePhp,
  async fn() {
    assertSameAsGearmand(await phpQueuedScenario("background", 4), {
      client: {
        handles: 4,
        rcs: ["GEARMAN_SUCCESS", "GEARMAN_SUCCESS", "GEARMAN_SUCCESS", "GEARMAN_SUCCESS"],
      },
      worker: ["ran bg high-1", "ran bg normal-1", "ran bg normal-2", "ran bg low-1", "jobs 4"],
    });
  },
});

Deno.test({
  name:
    "interop: PHP GearmanWorker WORK_FAIL (sendFail, setReturn) gives GEARMAN_WORK_FAIL against ours and gearmand",
  ignore: !havePhp,
  async fn() {
    assertSameAsGearmand(await phpScenario("fail"), {
      client: {
        fail: { result: "", rc: "GEARMAN_WORK_FAIL" },
        fail_ret: { result: "", rc: "GEARMAN_WORK_FAIL" },
      },
      worker: ["ran fail x", "ran fail_ret x", "ran quit now", "jobs 3"],
    });
  },
});

Deno.test({
  name: "interop: PHP jobStatus of an unknown handle and of a queued job against ours and gearmand",
  ignore: !havePhp,
  async fn() {
    const results = await onEachTarget(async (target) => ({
      unknown: await phpClient(target, "unknown_status"),
      queued: await phpClient(target, "queued_status"),
    }));
    assertSameAsGearmand(results, {
      unknown: { status: [false, false, 0, 0], rc: "GEARMAN_SUCCESS" },
      queued: { status: [true, false, 0, 0], rc: "GEARMAN_SUCCESS" },
    });
  },
});

Deno.test({
  name:
    "interop: PHP WORK_STATUS and WORK_DATA reach doNormal and runTasks callbacks against ours and gearmand",
  ignore: !havePhp,
  async fn() {
    const results = await phpScenario("status");
    // The two tasks of runTasks may be taken in either order.
    for (const r of Object.values(results)) r.worker.sort();
    assertSameAsGearmand(results, {
      client: {
        do_normal: { result: "abdone", rc: "GEARMAN_SUCCESS" },
        events: {
          fail: ["fail"],
          status: [
            "status 1/4",
            "status 2/4",
            "status 3/4",
            "status 4/4",
            "data a",
            "data b",
            "complete done",
          ],
        },
        run_tasks: true,
      },
      worker: ["jobs 4", "ran fail x", "ran quit now", "ran status 3", "ran status 4"],
    });
  },
});

Deno.test({
  name:
    "interop: PHP WORK_EXCEPTION and WORK_WARNING reach GearmanClient against ours and gearmand",
  ignore: !havePhp,
  async fn() {
    const results = await phpScenario("exception");
    // The two tasks of runTasks may be taken in either order.
    for (const r of Object.values(results)) r.worker.sort();
    assertSameAsGearmand(results, {
      client: {
        do_exception: { result: "", rc: "GEARMAN_WORK_EXCEPTION" },
        do_warn: { result: "fine", rc: "GEARMAN_SUCCESS" },
        run_tasks: true,
        events: {
          exception: ["exception boom"],
          warn: ["warning careful", "complete fine"],
        },
      },
      worker: [
        "jobs 5",
        "ran exception x",
        "ran exception y",
        "ran quit now",
        "ran warn x",
        "ran warn y",
      ],
    });
  },
});

Deno.test({
  name:
    "interop: PHP GearmanWorker with several functions takes queued jobs by priority (ours) and by function (gearmand)",
  ignore: !havePhp,
  async fn() {
    // A deliberate difference (README, "Where we differ"). gearmand hands a
    // worker the jobs of one function at a time, in its own order of the
    // worker's functions (the last CAN_DO first; libgearman sends them so that
    // this is the order addFunction was called in), and by priority only
    // within a function. We apply priority across all of the worker's
    // functions first, then the same function order.
    const results = await phpQueuedScenario("mixed", 6);
    assert.deepStrictEqual(results.gearmand, {
      client: { submitted: 6 },
      worker: [
        "ran rev rev-normal",
        "ran rev rev-low",
        "ran uniq uniq-high",
        "ran bg bg-high",
        "ran bg bg-normal",
        "ran bg bg-low",
        "jobs 6",
      ],
    });
    assert.deepStrictEqual(results.ours, {
      client: { submitted: 6 },
      worker: [
        "ran uniq uniq-high",
        "ran bg bg-high",
        "ran rev rev-normal",
        "ran bg bg-normal",
        "ran rev rev-low",
        "ran bg bg-low",
        "jobs 6",
      ],
    });
  },
});
