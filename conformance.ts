/**
 * A Gearman conformance suite: scripted packet conversations (the corpus)
 * run against any Gearman server, with a TAP report, or against two
 * servers side by side to find every difference.
 *
 * ```sh
 * deno run -N jsr:@x/gearman/conformance 127.0.0.1:4730          # TAP report
 * deno run -N jsr:@x/gearman/conformance --list                  # the scenarios
 * deno run -A jsr:@x/gearman/conformance --diff-gearmand         # ours vs /usr/sbin/gearmand
 * deno run -N jsr:@x/gearman/conformance --diff HOST:PORT HOST2:PORT2
 * ```
 *
 * @example Run the echo scenarios against our server
 * ```ts
 * import { loadCorpus, runSuite } from "@x/gearman/conformance";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const summary = await runSuite(
 *   loadCorpus(),
 *   { hostname: "127.0.0.1", port: server.addr.port, kind: "ours" },
 *   { filter: "echo:", write: () => {} },
 * );
 * assert.equal(summary.failed, 0);
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { loadCorpus } from "./src/conformance/corpus.ts";
import { runDiff, runSuite, type SuiteOptions } from "./src/conformance/suite.ts";
import {
  addressTarget,
  GEARMAND_PATH,
  gearmandTarget,
  ourTarget,
} from "./src/conformance/targets.ts";

export { loadCorpus } from "./src/conformance/corpus.ts";
export { type Difference, DIFFERENCES } from "./src/conformance/differences.ts";
export type { FreshServerOptions, Scenario } from "./src/conformance/scenario.ts";
export {
  type FreshServer,
  type RunOptions,
  runScenario,
  type ScenarioResult,
  type StepRecord,
  type Target,
} from "./src/conformance/runner.ts";
export {
  runDiff,
  runSuite,
  type SuiteOptions,
  type SuiteSummary,
} from "./src/conformance/suite.ts";

const USAGE = `Usage:
  deno run -N conformance.ts HOST:PORT [options]       run the corpus, print TAP
  deno run -A conformance.ts --ours [options]          against our server, started in-process
  deno run -N conformance.ts --diff HOST:PORT HOST2:PORT2 [options]
  deno run -A conformance.ts --diff-gearmand [options] ours (in-process) vs ${GEARMAND_PATH}
  deno run conformance.ts --list [--filter TEXT]       list the scenarios

Options:
  --filter TEXT      only scenarios whose name (or file) contains TEXT
  --list             print the scenarios and exit
  --extensions       also run scenarios of extensions (SUBMIT_JOB_SCHED, shutdown...)
                     on servers not known to implement them
  --kind KIND        the server's kind (ours, gearmand, other); detected when omitted
  --gearmand PATH    gearmand binary for --diff-gearmand (default ${GEARMAND_PATH})
  --concurrency N    scenarios run at once (default 8)
  -h, --help         print this help

Exit code: 0 when every scenario passes, 1 when any fails, 2 on wrong usage.`;

/**
 * Run the conformance command line (what `deno run conformance.ts` does).
 *
 * @param args Command-line arguments.
 * @param write Where output lines go.
 * @returns The exit code: 0 all passed, 1 some failed, 2 wrong usage.
 *
 * @example List the scenarios
 * ```ts
 * import { main } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const lines: string[] = [];
 * assert.equal(await main(["--list", "--filter", "echo:"], (l) => lines.push(l)), 0);
 * assert.ok(lines.length > 0);
 * ```
 */
export async function main(
  args: string[],
  write: (line: string) => void = (l) => console.log(l),
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        filter: { type: "string" },
        list: { type: "boolean" },
        extensions: { type: "boolean" },
        kind: { type: "string" },
        diff: { type: "boolean" },
        "diff-gearmand": { type: "boolean" },
        ours: { type: "boolean" },
        gearmand: { type: "string" },
        concurrency: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values: v, positionals: pos } = parsed;
  if (v.help) {
    write(USAGE);
    return 0;
  }
  const corpus = loadCorpus();
  if (v.list) {
    const f = v.filter?.toLowerCase();
    for (const s of corpus) {
      if (f && !s.name.toLowerCase().includes(f) && !(s.file ?? "").includes(f)) continue;
      const tags = [
        s.file,
        s.server ? `server: ${s.server.join(",")}` : "",
        s.differs ? `differs: ${s.differs}` : "",
        s.fresh ? "own server" : "",
      ].filter(Boolean).join("; ");
      write(`${s.name}  [${tags}]\n    ${s.checks}`);
    }
    return 0;
  }
  const concurrency = v.concurrency === undefined ? 8 : Number(v.concurrency);
  if (!(Number.isInteger(concurrency) && concurrency > 0)) {
    console.error(`--concurrency must be a positive integer\n\n${USAGE}`);
    return 2;
  }
  const options: SuiteOptions = {
    ...(v.filter !== undefined ? { filter: v.filter } : {}),
    extensions: v.extensions ?? false,
    concurrency,
    write,
  };
  try {
    if (v["diff-gearmand"]) {
      if (pos.length > 0) throw new UsageError("--diff-gearmand takes no address");
      await using ours = await ourTarget();
      await using ref = await gearmandTarget(v.gearmand ?? GEARMAND_PATH);
      const s = await runDiff(corpus, ours.target, ref.target, options);
      return s.failed > 0 ? 1 : 0;
    }
    if (v.diff) {
      if (pos.length !== 2) throw new UsageError("--diff needs two addresses");
      const a = await addressTarget(pos[0]!);
      const b = await addressTarget(pos[1]!);
      const s = await runDiff(corpus, a, b, options);
      return s.failed > 0 ? 1 : 0;
    }
    if (v.ours) {
      if (pos.length > 0) throw new UsageError("--ours takes no address");
      await using ours = await ourTarget();
      const s = await runSuite(corpus, ours.target, options);
      return s.failed > 0 ? 1 : 0;
    }
    if (pos.length !== 1) throw new UsageError("give one server address, HOST:PORT");
    const target = await addressTarget(pos[0]!, v.kind);
    const s = await runSuite(corpus, target, options);
    return s.failed > 0 ? 1 : 0;
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n\n${USAGE}`);
      return 2;
    }
    console.error(`conformance: ${(err as Error).message}`);
    return 1;
  }
}

class UsageError extends Error {}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
