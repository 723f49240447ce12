// `gearadmin` (gearman-tools) against our server and against C++ gearmand:
// with a worker registered and background jobs queued, every command's
// output must have the same structure (pids, fds, handles, uuids and
// versions normalised).

import assert from "node:assert/strict";
import { VERSION } from "../../src/version.ts";
import {
  assertSameAsGearmand,
  assertSucceeded,
  functionStatus,
  HOST,
  onEachTarget,
  requirePeer,
  run,
  sortedLines,
  spawn,
  type Target,
  waitForWorkers,
  waitUntil,
} from "./_harness.ts";

const haveTools = requirePeer("gearadmin and gearman CLI", [
  "sh",
  "-c",
  "command -v gearadmin && command -v gearman",
]);

/** What one gearadmin command printed. */
interface Output {
  stdout: string;
  stderr: string;
}

function server(target: Target): string[] {
  return ["-h", HOST, "-p", String(target.port)];
}

async function gearadmin(target: Target, option: string): Promise<Output> {
  const r = await run("gearadmin", [...server(target), option], {
    timeoutMs: 15_000,
  });
  assertSucceeded(r, `gearadmin ${option} against ${target.name}`);
  return { stdout: r.stdout, stderr: r.stderr.trim() };
}

async function submitBackground(target: Target, args: string[], data: string): Promise<void> {
  const r = await run("gearman", [...server(target), "-b", ...args], {
    timeoutMs: 15_000,
    stdin: data,
  });
  assertSucceeded(r, `gearman -b ${args.join(" ")} against ${target.name}`);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Lines of a list reply, without the closing "." (which must be there). */
function listLines(out: Output): string[] {
  const lines = out.stdout.split("\n");
  assert.equal(lines.pop(), "", `reply does not end with a newline: ${JSON.stringify(out)}`);
  assert.equal(lines.pop(), ".", `reply does not end with ".": ${JSON.stringify(out)}`);
  return lines;
}

/** `--workers`: fd/id replaced, functions sorted; connections with no function counted. */
function normaliseWorkers(out: Output) {
  const workers: string[] = [];
  let idle = 0;
  for (const line of listLines(out)) {
    const m = /^(\d+) (\S+) (\S+) :(.*)$/.exec(line);
    if (!m) {
      workers.push(`unparsed: ${line}`);
      continue;
    }
    const fns = m[4]!.split(" ").filter((f) => f !== "").sort();
    if (fns.length === 0) idle++;
    else workers.push(`<fd> ${m[2]} ${m[3]} : ${fns.join(" ")}`);
  }
  // gearadmin's own connection is one of the idle ones.
  return { workers: workers.sort(), gearadminListed: idle >= 1 };
}

/** `--show-jobs`: handles checked and replaced, lines sorted. */
function normaliseShowJobs(out: Output): string[] {
  return listLines(out).map((line) => {
    const [handle, ...rest] = line.split("\t");
    return [/^H:[^:\s]+:\d+$/.test(handle!) ? "<handle>" : `bad handle ${handle}`, ...rest]
      .join("\t");
  }).sort();
}

Deno.test({
  name:
    "interop: gearadmin --status, --workers, --priority-status, --show-jobs, --create/--drop-function, --getpid, --server-version against ours and gearmand",
  ignore: !haveTools,
  async fn(t) {
    const results = await onEachTarget(async (target) => {
      await using _worker = spawn(
        "gearman",
        [...server(target), "-w", "-f", "adm_rev", "-f", "adm_wc", "--", "rev"],
        { timeoutMs: 40_000 },
      );
      await waitForWorkers(target.port, "adm_rev");
      await waitForWorkers(target.port, "adm_wc");

      // A job that stays running until we create `release`: the worker's
      // command polls for the file (at most 20 s), then prints "released".
      const dir = await Deno.makeTempDir({ prefix: "gearadmin_interop_" });
      const release = `${dir}/release`;
      await using slowWorker = spawn("gearman", [
        ...server(target),
        "-w",
        "-c",
        "1",
        "-f",
        "adm_slow",
        "--",
        "sh",
        "-c",
        'i=0; while [ ! -e "$0" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo released',
        release,
      ], { timeoutMs: 40_000 });
      await waitForWorkers(target.port, "adm_slow");
      await using slowClient = spawn("gearman", [...server(target), "-f", "adm_slow"], {
        stdin: "s",
        timeoutMs: 40_000,
      });
      await waitUntil("the adm_slow job to run", async () => {
        return (await functionStatus(target.port, "adm_slow"))?.[1] === 1;
      });
      // A foreground job no worker can do, its client waiting.
      await using _waitingClient = spawn("gearman", [...server(target), "-f", "adm_fg"], {
        stdin: "f",
        timeoutMs: 40_000,
      });
      await waitUntil("the adm_fg job to be queued", async () => {
        return (await functionStatus(target.port, "adm_fg"))?.[0] === 1;
      });

      await submitBackground(target, ["-f", "adm_queued", "-u", "u-normal"], "a");
      await submitBackground(target, ["-I", "-f", "adm_queued", "-u", "u-high"], "b");
      await submitBackground(target, ["-L", "-f", "adm_queued"], "c"); // libgearman adds a UUID
      await submitBackground(target, ["-L", "-f", "adm_queued2", "-u", "u-low2"], "d");

      const status = await gearadmin(target, "--status");
      const workers = await gearadmin(target, "--workers");
      const priority = await gearadmin(target, "--priority-status");
      const showJobs = await gearadmin(target, "--show-jobs");
      const uniqueJobs = await gearadmin(target, "--show-unique-jobs");
      const create = await gearadmin(target, "--create-function=adm_new");
      const statusAfterCreate = await gearadmin(target, "--status");
      const drop = await gearadmin(target, "--drop-function=adm_new");
      const statusAfterDrop = await gearadmin(target, "--status");
      const dropWithWorker = await gearadmin(target, "--drop-function=adm_rev");
      const dropUnknown = await gearadmin(target, "--drop-function=adm_nosuch");
      const getpid = await gearadmin(target, "--getpid");
      const version = await gearadmin(target, "--server-version");
      // Last, as it changes the tables: a function with queued jobs and no worker.
      const dropQueued = await gearadmin(target, "--drop-function=adm_queued2");
      const statusAfterDropQueued = await gearadmin(target, "--status");

      // Let the running job finish: its client gets the worker's output.
      await Deno.writeTextFile(release, "");
      const slow = await slowClient.result;
      assertSucceeded(slow, `gearman -f adm_slow against ${target.name}`);
      assertSucceeded(await slowWorker.result, `gearman -w -f adm_slow against ${target.name}`);
      await Deno.remove(dir, { recursive: true });

      return {
        status: sortedLines(listLines(status).join("\n")),
        workers: normaliseWorkers(workers),
        priorityStatus: sortedLines(listLines(priority).join("\n")),
        showJobs: normaliseShowJobs(showJobs),
        showUniqueJobs: listLines(uniqueJobs).map((u) => (UUID.test(u) ? "<uuid>" : u)).sort(),
        createFunction: {
          reply: create,
          statusAfter: sortedLines(listLines(statusAfterCreate).join("\n")),
        },
        dropFunction: {
          reply: drop,
          statusAfter: sortedLines(listLines(statusAfterDrop).join("\n")),
        },
        dropWithWorker,
        dropUnknown,
        getpid: {
          isNumber: /^\d+\n$/.test(getpid.stdout),
          isServerPid: getpid.stdout === `${target.pid}\n`,
          stderr: getpid.stderr,
        },
        serverVersion: {
          nonEmpty: /^\S+\n$/.test(version.stdout),
          isOurs: version.stdout === `${VERSION}\n`,
          stderr: version.stderr,
        },
        dropQueued: {
          reply: dropQueued,
          statusAfter: sortedLines(listLines(statusAfterDropQueued).join("\n")),
        },
        runningJobResult: slow.stdout,
      };
    });
    // Our own version is ours, and only ours.
    assert.equal(results.ours!.serverVersion.isOurs, true);
    results.ours!.serverVersion.isOurs = false;

    const ours = results.ours!;
    const ref = results.gearmand!;
    const expected: typeof ref = {
      status: [
        "adm_fg\t1\t0\t0",
        "adm_queued\t3\t0\t0",
        "adm_queued2\t1\t0\t0",
        "adm_rev\t0\t0\t1",
        "adm_slow\t1\t1\t1",
        "adm_wc\t0\t0\t1",
      ],
      workers: {
        workers: ["<fd> 127.0.0.1 - : adm_rev adm_wc", "<fd> 127.0.0.1 - : adm_slow"],
        gearadminListed: true,
      },
      priorityStatus: [
        "adm_fg\t0\t1\t0\t0",
        "adm_queued\t1\t1\t1\t0",
        "adm_queued2\t0\t0\t1\t0",
        "adm_rev\t0\t0\t0\t1",
        "adm_slow\t0\t0\t0\t1",
        "adm_wc\t0\t0\t0\t1",
      ],
      // handle, retries, ignore_job, job_queued. gearmand's job_queued means
      // "in the (persistent) queue store", which only background jobs are.
      showJobs: [
        "<handle>\t0\t0\t0", // adm_slow, running, foreground
        "<handle>\t0\t0\t0", // adm_fg, queued, foreground
        "<handle>\t0\t0\t1",
        "<handle>\t0\t0\t1",
        "<handle>\t0\t0\t1",
        "<handle>\t0\t0\t1",
      ],
      // libgearman gives jobs submitted without -u a UUID.
      showUniqueJobs: ["<uuid>", "<uuid>", "<uuid>", "u-high", "u-low2", "u-normal"],
      createFunction: {
        reply: { stdout: "OK\n", stderr: "" },
        statusAfter: [
          "adm_fg\t1\t0\t0",
          "adm_new\t0\t0\t0",
          "adm_queued\t3\t0\t0",
          "adm_queued2\t1\t0\t0",
          "adm_rev\t0\t0\t1",
          "adm_slow\t1\t1\t1",
          "adm_wc\t0\t0\t1",
        ],
      },
      dropFunction: {
        reply: { stdout: "OK\n", stderr: "" },
        statusAfter: [
          "adm_fg\t1\t0\t0",
          "adm_queued\t3\t0\t0",
          "adm_queued2\t1\t0\t0",
          "adm_rev\t0\t0\t1",
          "adm_slow\t1\t1\t1",
          "adm_wc\t0\t0\t1",
        ],
      },
      dropWithWorker: {
        stdout: "",
        stderr: "Error: there are still connected workers or executing clients",
      },
      dropUnknown: { stdout: "", stderr: "Error: function not found" },
      getpid: { isNumber: true, isServerPid: true, stderr: "" },
      serverVersion: { nonEmpty: true, isOurs: false, stderr: "" },
      // gearmand drops a function that has queued jobs but no worker and no
      // running job (its check is worker_count == 0 && job_running == 0).
      dropQueued: {
        reply: { stdout: "OK\n", stderr: "" },
        statusAfter: [
          "adm_fg\t1\t0\t0",
          "adm_queued\t3\t0\t0",
          "adm_rev\t0\t0\t1",
          "adm_slow\t1\t1\t1",
          "adm_wc\t0\t0\t1",
        ],
      },
      runningJobResult: "released\n",
    };

    // A deliberate difference (README, "Where we differ"): we refuse to drop a
    // function whose jobs are still queued, where gearmand drops it and
    // orphans them.
    const oursDiffers: Partial<typeof ref> = {
      dropQueued: {
        reply: {
          stdout: "",
          stderr:
            "Error: there are still queued jobs; cancel them or let a worker drain them first",
        },
        statusAfter: [
          "adm_fg\t1\t0\t0",
          "adm_queued\t3\t0\t0",
          "adm_queued2\t1\t0\t0",
          "adm_rev\t0\t0\t1",
          "adm_slow\t1\t1\t1",
          "adm_wc\t0\t0\t1",
        ],
      },
    };
    for (const key of Object.keys(expected) as (keyof typeof expected)[]) {
      await t.step(key, () => {
        if (key in oursDiffers) {
          assert.deepStrictEqual(ref[key], expected[key], "gearmand (the reference) changed");
          assert.deepStrictEqual(ours[key], oursDiffers[key]);
          return;
        }
        assertSameAsGearmand({ ours: ours[key], gearmand: ref[key] }, expected[key]);
      });
    }
  },
});
