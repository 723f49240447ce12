// Perl Gearman::Client and Gearman::Worker (libgearman-client-perl) against
// our server and against C++ gearmand: each scenario must print the same.

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
  waitForDrained,
} from "./_harness.ts";

const havePerl = requirePeer("Perl Gearman::Client/Gearman::Worker", [
  "perl",
  "-MGearman::Client",
  "-MGearman::Worker",
  "-MJSON::PP",
  "-e1",
]);

const CLIENT = PEERS_DIR + "perl_client.pl";
const WORKER = PEERS_DIR + "perl_worker.pl";

/** What one scenario printed: the client's JSON and the worker's lines. */
interface PerlResult {
  client: unknown;
  worker: string[];
}

async function perlClient(target: Target, scenario: string): Promise<unknown> {
  const r = await run("perl", [CLIENT, HOST, String(target.port), scenario], {
    timeoutMs: 30_000,
  });
  assertSucceeded(r, `perl_client.pl ${scenario} against ${target.name}`);
  return JSON.parse(r.stdout);
}

/**
 * Start a Perl worker, run the client scenario, wait for `drain` functions'
 * jobs to finish, then stop the worker with a quit job.
 */
function perlScenario(scenario: string, drain: string[] = []): Promise<Record<string, PerlResult>> {
  return onEachTarget(async (target) => {
    await using worker = spawn("perl", [WORKER, HOST, String(target.port), "50"], {
      timeoutMs: 55_000,
    });
    const client = await perlClient(target, scenario);
    for (const fn of drain) await waitForDrained(target.port, fn);
    const quit = await perlClient(target, "quit");
    const w = await worker.result;
    assertSucceeded(w, `perl_worker.pl (${scenario}) against ${target.name}`);
    if (JSON.stringify(quit) !== '{"result":"bye"}') {
      throw new Error(`quit job against ${target.name} returned ${JSON.stringify(quit)}`);
    }
    return { client, worker: w.stdout.split("\n").filter((l) => l !== "") };
  });
}

Deno.test({
  name: "interop: Perl Gearman::Client do_task against ours and gearmand",
  ignore: !havePerl,
  async fn() {
    assertSameAsGearmand(await perlScenario("do_task"), {
      client: { normal: "olleh", high: "hgih", low: "wol", uniq: "qinu" },
      worker: ["jobs 5"],
    });
  },
});

Deno.test({
  name:
    "interop: Perl Gearman::Worker failing a job (do_task undef, on_fail) against ours and gearmand",
  ignore: !havePerl,
  async fn() {
    assertSameAsGearmand(await perlScenario("fail"), {
      client: { result_defined: false, on_fail_calls: 1, on_complete_calls: 0 },
      worker: ["jobs 2"],
    });
  },
});

Deno.test({
  name: "interop: Perl 4 MiB payload echoed intact against ours and gearmand",
  ignore: !havePerl,
  async fn() {
    assertSameAsGearmand(await perlScenario("big"), {
      client: { sent_length: 4194304, length: 4194304, intact: true },
      worker: ["jobs 2"],
    });
  },
});

Deno.test({
  name:
    "interop: Perl status, data and warning updates (set_status, on_status) against ours and gearmand",
  ignore: !havePerl,
  async fn() {
    assertSameAsGearmand(await perlScenario("status"), {
      client: {
        status: ["1/4", "2/4", "3/4", "4/4"],
        result: "done",
        data: ["a", "b"],
        warnings: ["careful"],
        data_result: "end",
      },
      worker: ["jobs 3"],
    });
  },
});

Deno.test({
  name: "interop: Perl taskset of 200 tasks against ours and gearmand",
  ignore: !havePerl,
  async fn() {
    assertSameAsGearmand(await perlScenario("taskset"), {
      client: { completed: 200, correct: 200, failed: 0 },
      worker: ["jobs 201"],
    });
  },
});

Deno.test({
  name: "interop: Perl dispatch_background jobs run by the worker against ours and gearmand",
  ignore: !havePerl,
  async fn() {
    assertSameAsGearmand(await perlScenario("background", ["bg"]), {
      client: { handles: 5 },
      worker: ["bg job-1", "bg job-2", "bg job-3", "bg job-4", "bg job-5", "jobs 6"],
    });
  },
});

Deno.test({
  name:
    "interop: Perl get_status of a queued job and of an unknown handle against ours and gearmand",
  ignore: !havePerl,
  async fn() {
    assertSameAsGearmand(await perlScenario("get_status"), {
      client: {
        queued: { known: true, running: false, percent: null },
        unknown: { known: false, running: false },
      },
      worker: ["jobs 1"],
    });
  },
});
