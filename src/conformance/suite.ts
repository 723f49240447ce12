/**
 * Runs the whole corpus against one server (TAP report), or against two
 * servers side by side (differential report).
 *
 * @module
 */

import { DIFFERENCES } from "./differences.ts";
import {
  type RunOptions,
  runScenario,
  type ScenarioResult,
  type StepRecord,
  type Target,
} from "./runner.ts";
import type { Scenario } from "./scenario.ts";

/**
 * Options for {@link runSuite} and {@link runDiff}.
 *
 * @example Run only the coalescing scenarios, 4 at a time
 * ```ts
 * import type { SuiteOptions } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const options: SuiteOptions = { filter: "coalesce", concurrency: 4 };
 * assert.equal(options.concurrency, 4);
 * ```
 */
export interface SuiteOptions extends RunOptions {
  /** Run only scenarios whose name (or file) contains this text. */
  filter?: string;
  /**
   * Scenarios run at once (each on its own connections and names).
   * @default 8
   */
  concurrency?: number;
  /** Where report lines go. @default console.log */
  write?: (line: string) => void;
}

/**
 * Totals of a run.
 *
 * @example Read a summary
 * ```ts
 * import type { SuiteSummary } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const s: SuiteSummary = { total: 2, passed: 1, failed: 0, skipped: 1, differences: {} };
 * assert.equal(s.failed, 0);
 * ```
 */
export interface SuiteSummary {
  /** Scenarios reported. */
  total: number;
  /** Reported `ok` (and not skipped). */
  passed: number;
  /** Reported `not ok`. */
  failed: number;
  /** Skipped (`# SKIP`). */
  skipped: number;
  /** Differential runs: scenarios that differ on purpose, by difference id. */
  differences: Record<string, number>;
}

function selected(corpus: Scenario[], filter: string | undefined): Scenario[] {
  if (!filter) return corpus;
  const f = filter.toLowerCase();
  return corpus.filter((s) =>
    s.name.toLowerCase().includes(f) || (s.file ?? "").toLowerCase().includes(f)
  );
}

/** Run `work` over `items`, `limit` at a time, reporting results in order. */
async function pool<T, R>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<R>,
  report: (item: T, result: R, i: number) => void,
): Promise<void> {
  const results: (R | undefined)[] = new Array(items.length);
  const done: boolean[] = new Array(items.length).fill(false);
  let next = 0;
  let reported = 0;
  const flush = () => {
    while (reported < items.length && done[reported]) {
      report(items[reported]!, results[reported]!, reported);
      results[reported] = undefined;
      reported++;
    }
  };
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
      done[i] = true;
      flush();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  flush();
}

/** A YAML value: JSON strings are valid YAML scalars. */
function y(v: string | number): string {
  return typeof v === "number" ? String(v) : JSON.stringify(v);
}

type Diffs = { step: string; a: string; b: string }[];

function yamlBlock(
  write: (l: string) => void,
  fields: [string, string | number][],
  diffs?: { a: string; b: string; list: Diffs },
): void {
  write("  ---");
  for (const [k, v] of fields) write(`  ${k}: ${y(v)}`);
  if (diffs) {
    write("  differences:");
    for (const d of diffs.list) {
      write(`    - step: ${y(d.step)}`);
      write(`      ${diffs.a}: ${y(d.a)}`);
      write(`      ${diffs.b}: ${y(d.b)}`);
    }
  }
  write("  ...");
}

function failureFields(
  r: ScenarioResult,
  label = "",
): [string, string | number][] {
  const out: [string, string | number][] = [];
  if (r.reason) out.push([`${label}error`, r.reason]);
  const bad = r.records.find((x) => !x.ok);
  if (bad) {
    out.push([`${label}step`, bad.step]);
    out.push([`${label}source`, bad.source]);
    out.push([`${label}expected`, bad.expected]);
    out.push([`${label}got`, bad.got]);
  }
  return out;
}

function skipText(r: ScenarioResult): string {
  return (r.reason ?? "skipped").replace(/#/g, "");
}

/**
 * Run the corpus against one server and write a TAP version 14 report:
 * `ok N - name`, or `not ok N - name` with a YAML block of the step that
 * failed (expected and got), or `# SKIP reason`.
 *
 * @param corpus The scenarios.
 * @param target The server.
 * @param options What to run and where to write.
 * @returns The totals (failed > 0 means not conformant).
 *
 * @example Run two scenarios against our server
 * ```ts
 * import { loadCorpus, runSuite } from "@x/gearman/conformance";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const target = { hostname: "127.0.0.1", port: server.addr.port, kind: "ours" };
 * const lines: string[] = [];
 * const summary = await runSuite(loadCorpus(), target, {
 *   filter: "echo:",
 *   write: (l) => lines.push(l),
 * });
 * assert.equal(summary.failed, 0);
 * assert.equal(lines[0], "TAP version 14");
 * ```
 */
export async function runSuite(
  corpus: Scenario[],
  target: Target,
  options: SuiteOptions = {},
): Promise<SuiteSummary> {
  const write = options.write ?? ((l: string) => console.log(l));
  const list = selected(corpus, options.filter);
  const summary: SuiteSummary = {
    total: list.length,
    passed: 0,
    failed: 0,
    skipped: 0,
    differences: {},
  };
  write("TAP version 14");
  write(`# server ${target.hostname}:${target.port} (kind: ${target.kind})`);
  write(`1..${list.length}`);
  await pool(list, options.concurrency ?? 8, (s) => runScenario(s, target, options), (s, r, i) => {
    const n = i + 1;
    if (r.status === "skip") {
      summary.skipped++;
      write(`ok ${n} - ${s.name} # SKIP ${skipText(r)}`);
    } else if (r.status === "pass") {
      summary.passed++;
      write(`ok ${n} - ${s.name}`);
    } else {
      summary.failed++;
      write(`not ok ${n} - ${s.name}`);
      yamlBlock(write, [["checks", s.checks], ...failureFields(r), ["server", target.kind]]);
    }
  });
  write(`# pass ${summary.passed}, fail ${summary.failed}, skip ${summary.skipped}`);
  return summary;
}

/**
 * Run the corpus against two servers and report every difference, in TAP:
 * `ok` when both agree (or differ only in a way the scenario marks as a
 * known difference, named in a comment and a YAML block), `not ok` when
 * either does not do what the scenario expects.
 *
 * @param corpus The scenarios.
 * @param a The first server (usually ours).
 * @param b The second server (usually gearmand).
 * @param options What to run and where to write.
 * @returns The totals; `differences` counts scenarios per difference id.
 *
 * @example Compare our server with itself
 * ```ts
 * import { loadCorpus, runDiff } from "@x/gearman/conformance";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using one = serve({ hostname: "127.0.0.1", port: 0 });
 * await using two = serve({ hostname: "127.0.0.1", port: 0 });
 * const summary = await runDiff(
 *   loadCorpus(),
 *   { hostname: "127.0.0.1", port: one.addr.port, kind: "ours" },
 *   { hostname: "127.0.0.1", port: two.addr.port, kind: "ours" },
 *   { filter: "echo:", write: () => {} },
 * );
 * assert.equal(summary.failed, 0);
 * ```
 */
export async function runDiff(
  corpus: Scenario[],
  a: Target,
  b: Target,
  options: SuiteOptions = {},
): Promise<SuiteSummary> {
  const write = options.write ?? ((l: string) => console.log(l));
  const list = selected(corpus, options.filter);
  const summary: SuiteSummary = {
    total: list.length,
    passed: 0,
    failed: 0,
    skipped: 0,
    differences: {},
  };
  const an = a.kind === b.kind ? `${a.kind}(a)` : a.kind;
  const bn = a.kind === b.kind ? `${b.kind}(b)` : b.kind;
  write("TAP version 14");
  write(`# differential: ${an} at ${a.hostname}:${a.port} vs ${bn} at ${b.hostname}:${b.port}`);
  write(`1..${list.length}`);
  const limit = Math.max(1, Math.floor((options.concurrency ?? 8) / 2));
  let oneSided = 0;
  await pool(
    list,
    limit,
    (s) => Promise.all([runScenario(s, a, options), runScenario(s, b, options)]),
    (s, [ra, rb], i) => {
      const n = i + 1;
      if (ra.status === "skip" && rb.status === "skip") {
        summary.skipped++;
        write(`ok ${n} - ${s.name} # SKIP ${skipText(ra)}`);
        return;
      }
      if (ra.status === "fail" || rb.status === "fail") {
        summary.failed++;
        write(`not ok ${n} - ${s.name}`);
        const fields: [string, string | number][] = [["checks", s.checks]];
        for (const [name, r, other] of [[an, ra, rb], [bn, rb, ra]] as const) {
          if (r.status !== "fail") {
            fields.push([`${name}`, r.status === "skip" ? `skipped: ${r.reason}` : "passed"]);
            continue;
          }
          fields.push(...failureFields(r, `${name}_`));
          const bad = r.records.find((x) => !x.ok);
          const same = bad && other.records.find((x) => x.step === bad.step);
          if (same) fields.push([`${name === an ? bn : an}_got_there`, same.got]);
        }
        yamlBlock(write, fields);
        return;
      }
      if (ra.status === "skip" || rb.status === "skip") {
        summary.passed++;
        oneSided++;
        const ran = ra.status === "skip" ? bn : an;
        write(`ok ${n} - ${s.name} # ran on ${ran} only`);
        return;
      }
      const diffs = transcriptDiff(ra, rb);
      if (diffs.length === 0) {
        summary.passed++;
        write(`ok ${n} - ${s.name}`);
        return;
      }
      const known = s.differs !== undefined
        ? DIFFERENCES.find((d) => d.id === s.differs)
        : undefined;
      if (known) {
        summary.passed++;
        summary.differences[known.id] = (summary.differences[known.id] ?? 0) + 1;
        write(`ok ${n} - ${s.name} # difference: ${known.id} (${known.status})`);
        yamlBlock(write, [["difference", known.id], ["title", known.title]], {
          a: an,
          b: bn,
          list: diffs,
        });
        return;
      }
      summary.failed++;
      write(`not ok ${n} - ${s.name}`);
      yamlBlock(write, [
        ["checks", s.checks],
        [
          "note",
          "both servers pass but answer differently, and the scenario names no known difference",
        ],
      ], { a: an, b: bn, list: diffs });
    },
  );
  const byStatus: Record<string, number> = { deliberate: 0, reported: 0, "gearmand-bug": 0 };
  let known = 0;
  for (const [id, count] of Object.entries(summary.differences)) {
    const d = DIFFERENCES.find((x) => x.id === id)!;
    byStatus[d.status] = (byStatus[d.status] ?? 0) + count;
    known += count;
  }
  write(
    `# same ${summary.passed - known - oneSided}, ran on one server only ${oneSided}, ` +
      `known differences ${known} (deliberate ${byStatus.deliberate}, reported ${byStatus.reported}, ` +
      `gearmand-bug ${byStatus["gearmand-bug"]}), fail ${summary.failed}, skip ${summary.skipped}`,
  );
  for (const [id, count] of Object.entries(summary.differences)) {
    const d = DIFFERENCES.find((x) => x.id === id)!;
    write(`# difference ${id} (${d.status}): ${count}`);
  }
  return summary;
}

/**
 * Steps whose normalised answers differ between two passing runs. Steps
 * that ran on both are compared one to one; steps that ran on only one
 * side (`[ours]`/`[ref]`) are paired in order between common steps.
 */
function transcriptDiff(a: ScenarioResult, b: ScenarioResult): Diffs {
  const out: Diffs = [];
  const mb = new Map(b.records.map((x) => [x.step, x]));
  const ma = new Map(a.records.map((x) => [x.step, x]));
  let onlyA: StepRecord[] = [];
  let onlyB: StepRecord[] = [];
  const pair = () => {
    for (let i = 0; i < Math.max(onlyA.length, onlyB.length); i++) {
      const ra = onlyA[i];
      const rb = onlyB[i];
      if (ra?.got === rb?.got) continue;
      const src = ra && rb ? `${ra.source} | ${rb.source}` : (ra ?? rb)!.source;
      out.push({ step: src, a: ra ? ra.got : "(nothing)", b: rb ? rb.got : "(nothing)" });
    }
    onlyA = [];
    onlyB = [];
  };
  const steps = [...new Set([...ma.keys(), ...mb.keys()])].sort((x, y) => x - y);
  for (const s of steps) {
    const ra = ma.get(s);
    const rb = mb.get(s);
    if (ra && rb) {
      pair();
      if (ra.got !== rb.got) out.push({ step: ra.source, a: ra.got, b: rb.got });
    } else if (ra) onlyA.push(ra);
    else onlyB.push(rb!);
  }
  pair();
  return out;
}
