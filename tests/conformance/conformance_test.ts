// The conformance corpus as a test: it must be well-formed and cover every
// packet type and admin command, pass entirely on our server (in-process,
// on port 0), and — when /usr/sbin/gearmand is installed (required in CI) —
// differ from gearmand only where the corpus names a known difference.

import assert from "node:assert/strict";
import { DIFFERENCES, loadCorpus, runDiff, runSuite } from "../../conformance.ts";
import { parseStep, type Step } from "../../src/conformance/scenario.ts";
import { GEARMAND_PATH, gearmandTarget, ourTarget } from "../../src/conformance/targets.ts";
import { PacketType } from "../../src/protocol/packet_type.ts";

const corpus = loadCorpus();

function haveGearmand(): boolean {
  try {
    if (Deno.statSync(GEARMAND_PATH).isFile) return true;
  } catch { /* missing */ }
  const reason = `conformance: skipping the differential run: ${GEARMAND_PATH} is not installed ` +
    "(apt-get install gearman-job-server)";
  if (Deno.env.get("CI")) throw new Error(`${reason} (CI is set: gearmand is required)`);
  console.log(reason);
  return false;
}

const gearmandInstalled = haveGearmand();

/** Failing test points of a TAP report, with their YAML blocks. */
function failures(lines: string[]): string {
  const out: string[] = [];
  let inFailure = false;
  for (const l of lines) {
    if (/^(not )?ok \d+/.test(l)) inFailure = l.startsWith("not ok");
    if (inFailure) out.push(l);
  }
  return out.join("\n");
}

Deno.test("conformance: the corpus is well-formed and large enough", () => {
  assert.ok(corpus.length >= 150, `only ${corpus.length} scenarios`);
  for (const s of corpus) {
    assert.ok(s.checks.length > 10, `${s.name}: say what it checks`);
    assert.match(s.name, /^[a-z][a-z ]*: /, `${s.name}: name as "topic: what happens"`);
  }
  const used = new Set(corpus.map((s) => s.differs).filter((d) => d !== undefined));
  for (const d of DIFFERENCES) {
    assert.ok(used.has(d.id), `difference ${d.id} is shown by no scenario`);
  }
});

Deno.test("conformance: the corpus sends every packet type and admin command", () => {
  const steps: Step[] = corpus.flatMap((s) => s.steps.map((st, i) => parseStep(st, i)));
  const sent = new Set<number>();
  const admin: string[] = [];
  for (const st of steps) {
    if (st.op === "send") sent.add(st.type);
    if (st.op === "raw") admin.push(st.bytes.trim().toLowerCase());
  }
  for (const [name, type] of Object.entries(PacketType)) {
    assert.ok(sent.has(type), `no scenario sends ${name}`);
  }
  const commands = [
    "workers",
    "status",
    "prioritystatus",
    "show jobs",
    "show unique jobs",
    "cancel job",
    "create function",
    "drop function",
    "maxqueue",
    "getpid",
    "verbose",
    "version",
    "shutdown",
    "shutdown graceful",
    "jobs",
    "clients",
    "show scheduled",
    "show dead",
    "retry dead",
    "purge dead",
  ];
  for (const c of commands) {
    assert.ok(admin.some((a) => a === c || a.startsWith(c + " ")), `no scenario sends "${c}"`);
  }
});

Deno.test("conformance: every scenario passes on our server", async () => {
  await using ours = await ourTarget();
  const lines: string[] = [];
  const summary = await runSuite(corpus, ours.target, { write: (l) => lines.push(l) });
  assert.equal(summary.failed, 0, failures(lines));
  assert.equal(summary.skipped, 0, "in-process, every scenario can run");
  assert.equal(summary.passed, corpus.length);
});

Deno.test({
  name: "conformance: ours and gearmand differ only where the corpus says so",
  ignore: !gearmandInstalled,
  async fn() {
    await using ours = await ourTarget();
    await using ref = await gearmandTarget();
    const lines: string[] = [];
    const summary = await runDiff(corpus, ours.target, ref.target, { write: (l) => lines.push(l) });
    assert.equal(summary.failed, 0, failures(lines));
    console.log(`conformance: ${lines.find((l) => l.startsWith("# same")) ?? ""}`);
  },
});
