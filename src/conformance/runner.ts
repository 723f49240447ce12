/**
 * Runs one conformance scenario against one server and records, per step,
 * what was expected and what came back — normalised (handles, names,
 * pids...) so runs against different servers can be compared.
 *
 * @module
 */

import { packetTypeName } from "../protocol/packet_type.ts";
import {
  type Bindings,
  compileExpect,
  DEFAULT_EXPECT_MS,
  expandSend,
  parseStep,
  type Scenario,
  type Step,
} from "./scenario.ts";
import { WireConnection, type WireEvent } from "./wire.ts";

/**
 * A server to run scenarios against.
 *
 * @example A server on port 4730
 * ```ts
 * import type { Target } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const target: Target = { hostname: "127.0.0.1", port: 4730, kind: "gearmand" };
 * assert.equal(target.kind, "gearmand");
 * ```
 */
export interface Target {
  /** Host to connect to. */
  hostname: string;
  /** Port to connect to. */
  port: number;
  /**
   * What kind of server it is: `"ours"`, `"gearmand"` or anything else.
   * Steps marked `[ours]` run only on ours, `[ref]` on every other kind.
   */
  kind: string;
  /**
   * Starts a fresh server of the same kind for scenarios that need their
   * own (shutdown, server options); without it they are skipped.
   */
  fresh?: (options: { jobRetries?: number }) => Promise<FreshServer>;
}

/**
 * A server started for one scenario; disposing it stops it.
 *
 * @example Shape of a fresh server
 * ```ts
 * import type { FreshServer } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const s: FreshServer = {
 *   hostname: "127.0.0.1",
 *   port: 4731,
 *   [Symbol.asyncDispose]: () => Promise.resolve(),
 * };
 * assert.equal(s.port, 4731);
 * ```
 */
export interface FreshServer extends AsyncDisposable {
  /** Host it listens on. */
  hostname: string;
  /** Port it listens on. */
  port: number;
}

/**
 * What one checked step expected and got, normalised.
 *
 * @example A step that passed
 * ```ts
 * import type { StepRecord } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const r: StepRecord = {
 *   step: 2,
 *   source: "c1 < JOB_CREATED $h1",
 *   ok: true,
 *   expected: 'JOB_CREATED "$h1"',
 *   got: 'JOB_CREATED "$h1"',
 * };
 * assert.ok(r.ok);
 * ```
 */
export interface StepRecord {
  /** Step number (1-based) in the scenario. */
  step: number;
  /** The step as written. */
  source: string;
  /** Whether the server did what was expected. */
  ok: boolean;
  /** What was expected. */
  expected: string;
  /** What came (normalised; equal to `expected` when it matched). */
  got: string;
}

/**
 * The outcome of one scenario on one server.
 *
 * @example Read a result
 * ```ts
 * import type { ScenarioResult } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const r: ScenarioResult = { status: "skip", reason: "only for ours", records: [], ms: 0 };
 * assert.equal(r.status, "skip");
 * ```
 */
export interface ScenarioResult {
  /** Passed, failed, or not run. */
  status: "pass" | "fail" | "skip";
  /** Why it was skipped, or an error that stopped it. */
  reason?: string;
  /** Every checked step, in order (up to the first failure). */
  records: StepRecord[];
  /** How long it took, in milliseconds. */
  ms: number;
}

/**
 * Options for {@link runScenario}.
 *
 * @example Defaults spelled out
 * ```ts
 * import type { RunOptions } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const options: RunOptions = { extensions: false, graceMs: 100 };
 * assert.equal(options.graceMs, 100);
 * ```
 */
export interface RunOptions {
  /** Run scenarios of extensions (`extension`) on any kind of server. */
  extensions?: boolean;
  /**
   * How long to wait at the end for packets nobody expected.
   * @default 100
   */
  graceMs?: number;
  /** A prefix for namespaced names (`@f`), unique per run by default. */
  namespace?: string;
}

let runCounter = 0;

/** A short random run id, so names never collide with an earlier run's. */
function newNamespace(): string {
  const r = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36).slice(0, 4);
  return `t${r}${(runCounter++).toString(36)}_`;
}

/** Printable form of a byte string: `\0`, `\t`, `\r`, `\n`, `\xHH` escaped. */
export function printable(s: string, max = 400): string {
  let out = "";
  const cut = s.length > max ? s.length - max : 0;
  if (cut > 0) s = s.slice(0, max);
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    const c = ch.charCodeAt(0);
    if (ch === "\0") out += /[0-9]/.test(s[i + 1] ?? "") ? "\\x00" : "\\0";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\\") out += "\\\\";
    else if (ch === '"') out += '\\"';
    else if (c < 0x20 || c >= 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`;
    else out += ch;
  }
  return cut > 0 ? `"${out}"...(${cut} more bytes)` : `"${out}"`;
}

const HANDLE_RE = /H:[^\s\0:]+:\d+/g;

/** The state of one scenario run. */
class Run {
  readonly b: Bindings;
  readonly conns = new Map<string, WireConnection>();
  readonly records: StepRecord[] = [];
  /** Names given to handles that no `$hN` captured, for display. */
  readonly other = new Map<string, string>();
  /** Connections with packets sent and not yet known to be processed. */
  readonly dirty = new Set<string>();
  /** Connections the server may close at any time (after a `noreply` step). */
  readonly mayClose = new Set<string>();
  #syncs = 0;

  constructor(readonly target: { hostname: string; port: number }, ns: string) {
    this.b = { ns, handles: new Map() };
  }

  async conn(name: string): Promise<WireConnection> {
    let c = this.conns.get(name);
    if (c === undefined) {
      c = await WireConnection.open(this.target.hostname, this.target.port);
      this.conns.set(name, c);
    }
    return c;
  }

  /** Replace this run's names and handles by their symbols. */
  normalise(s: string): string {
    let out = s.split(this.b.ns).join("@");
    out = out.replace(HANDLE_RE, (h) => {
      for (const [k, v] of this.b.handles) if (v === h) return `$${k}`;
      let n = this.other.get(h);
      if (n === undefined) this.other.set(h, n = `$unbound${this.other.size + 1}`);
      return n;
    });
    return out;
  }

  render(e: WireEvent | undefined): string {
    if (e === undefined) return "nothing";
    if (e.kind === "closed") return "closed";
    if (e.kind === "line") return `line ${printable(this.normalise(e.text))}`;
    const name = packetTypeName(e.type) ?? String(e.type);
    const magic = e.magic === "\0RES" ? "" : `magic ${printable(e.magic)} `;
    return `${magic}${name} ${printable(this.normalise(e.body))}`;
  }

  /** Round-trip an ECHO_REQ on `name` so everything sent before is processed. */
  async sync(name: string): Promise<void> {
    this.dirty.delete(name);
    const c = this.conns.get(name);
    if (c === undefined || c.closed) return;
    const token = `conformance-sync-${++this.#syncs}`;
    const header = new Uint8Array(12);
    const v = new DataView(header.buffer);
    v.setUint32(0, 0x00524551);
    v.setUint32(4, 16);
    v.setUint32(8, token.length);
    c.send(String.fromCharCode(...header) + token);
    const isEcho = (e: WireEvent) => e.kind === "packet" && e.type === 17 && e.body === token;
    await c.waitUntil(() => c.events.some(isEcho), DEFAULT_EXPECT_MS);
    const i = c.events.findIndex(isEcho);
    if (i >= 0) c.events.splice(i, 1);
  }

  async syncAllBut(name: string | undefined): Promise<void> {
    for (const d of [...this.dirty]) if (d !== name) await this.sync(d);
  }

  async close(): Promise<void> {
    await Promise.all([...this.conns.values()].map((c) => c.close()));
  }
}

function shows(step: Step, kind: string): boolean {
  const k = step.kinds;
  if (k === undefined) return true;
  if (k.only && !k.only.includes(kind)) return false;
  if (k.not && k.not.includes(kind)) return false;
  return true;
}

function packetBytes(magic: "REQ" | "RES", type: number, body: string): string {
  const header = new Uint8Array(12);
  const v = new DataView(header.buffer);
  v.setUint32(0, magic === "REQ" ? 0x00524551 : 0x00524553);
  v.setUint32(4, type);
  v.setUint32(8, body.length);
  return String.fromCharCode(...header) + body;
}

/** Whether a listing row belongs to this run: it names our namespace or one of our handles. */
function ours(row: string, b: Bindings): boolean {
  if (row.includes(b.ns)) return true;
  const words = row.split(/[\t ]/);
  for (const h of b.handles.values()) if (words.includes(h)) return true;
  return false;
}

/**
 * Why a scenario would not run on `target`, or undefined when it runs.
 *
 * @param s The scenario.
 * @param target The server.
 * @param options Run options.
 * @returns The reason to skip, if any.
 */
export function skipReason(
  s: Scenario,
  target: Pick<Target, "kind" | "fresh">,
  options: RunOptions = {},
): string | undefined {
  if (s.server && !s.server.includes(target.kind)) {
    if (!(options.extensions && s.extension)) {
      return `only for ${s.server.join(", ")} servers${
        s.extension ? ` (extension "${s.extension}"; --extensions runs it anyway)` : ""
      }`;
    }
  }
  if (s.fresh && target.fresh === undefined) {
    return "needs a server of its own (shutdown or server options): run in-process or with --diff-gearmand";
  }
  return undefined;
}

/**
 * Run one scenario against one server.
 *
 * @param scenario The scenario.
 * @param target The server (a fresh one is started when the scenario needs it).
 * @param options Run options.
 * @returns What happened at each step.
 *
 * @example Run a scenario against our server
 * ```ts
 * import { runScenario } from "@x/gearman/conformance";
 * import { serve } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * await using server = serve({ hostname: "127.0.0.1", port: 0 });
 * const result = await runScenario({
 *   name: "echo",
 *   checks: "ECHO_REQ is answered",
 *   steps: ["c1 > ECHO_REQ hi", "c1 < ECHO_RES hi"],
 * }, { hostname: "127.0.0.1", port: server.addr.port, kind: "ours" });
 * assert.equal(result.status, "pass");
 * ```
 */
export async function runScenario(
  scenario: Scenario,
  target: Target,
  options: RunOptions = {},
): Promise<ScenarioResult> {
  const started = Date.now();
  const skip = skipReason(scenario, target, options);
  if (skip !== undefined) return { status: "skip", reason: skip, records: [], ms: 0 };
  let fresh: FreshServer | undefined;
  try {
    if (scenario.fresh) {
      fresh = await target.fresh!(typeof scenario.fresh === "object" ? scenario.fresh : {});
    }
    const where = fresh ?? target;
    const run = new Run(where, options.namespace ?? newNamespace());
    try {
      const failed = await runSteps(run, scenario, target.kind, options);
      return { status: failed ? "fail" : "pass", records: run.records, ms: Date.now() - started };
    } finally {
      await run.close();
    }
  } catch (err) {
    return {
      status: "fail",
      reason: `${(err as Error).name}: ${(err as Error).message}`,
      records: [],
      ms: Date.now() - started,
    };
  } finally {
    if (fresh) await fresh[Symbol.asyncDispose]();
  }
}

async function runSteps(
  run: Run,
  scenario: Scenario,
  kind: string,
  options: RunOptions,
): Promise<boolean> {
  const useSync = scenario.sync !== false;
  const steps = scenario.steps.map(parseStep);
  for (const step of steps) {
    if (!shows(step, kind)) continue;
    if (useSync) await run.syncAllBut(step.op === "sleep" ? undefined : step.conn);
    const record = await doStep(run, step);
    if (record !== undefined) {
      run.records.push(record);
      if (!record.ok) return true;
    }
  }
  if (useSync) await run.syncAllBut(undefined);
  // Anything nobody expected is a failure too.
  await new Promise((r) => setTimeout(r, options.graceMs ?? 100));
  for (const [name, c] of run.conns) {
    if (run.mayClose.has(name)) {
      c.events.splice(
        0,
        c.events.length,
        ...c.events.filter((e) => e.kind !== "closed"),
      );
    }
    if (c.events.length > 0) {
      run.records.push({
        step: steps.length + 1,
        source: `(end: nothing more on ${name})`,
        ok: false,
        expected: "nothing",
        got: c.events.map((e) => run.render(e)).join(", "),
      });
      return true;
    }
  }
  return false;
}

const NAMED: Record<string, string> = { nul: "\0", tab: "\t", cr: "\r", lf: "\n", sp: " " };

/** An expectation as shown in reports: named bytes like `{tab}` shown as the byte. */
function shown(pattern: string): string {
  return printable(pattern.replace(/\{(nul|tab|cr|lf|sp)\}/g, (_, n: string) => NAMED[n]!));
}

function expectedPacket(step: Step & { op: "expect-packet" }): string {
  return `${packetTypeName(step.type) ?? step.type} ${shown(step.args.join("\0"))}`;
}

async function doStep(run: Run, step: Step): Promise<StepRecord | undefined> {
  const where = `step ${step.index + 1} (${step.source})`;
  const rec = (ok: boolean, expected: string, got: string): StepRecord => ({
    step: step.index + 1,
    source: step.source,
    ok,
    expected,
    got: ok ? expected : got,
  });
  switch (step.op) {
    case "sleep":
      await new Promise((r) => setTimeout(r, step.ms));
      return undefined;
    case "send": {
      const c = await run.conn(step.conn);
      const body = step.args.map((a) => expandSend(a, run.b, where)).join("\0");
      c.send(packetBytes(step.magic, step.type, body));
      if (step.magic === "REQ") run.dirty.add(step.conn);
      return undefined;
    }
    case "raw": {
      const c = await run.conn(step.conn);
      c.send(expandSend(step.bytes, run.b, where));
      return undefined;
    }
    case "sync":
      await run.sync(step.conn);
      return undefined;
    case "close": {
      const c = await run.conn(step.conn);
      run.dirty.delete(step.conn);
      await c.close();
      run.conns.delete(step.conn);
      await new Promise((r) => setTimeout(r, step.ms));
      return undefined;
    }
    case "silent": {
      const c = await run.conn(step.conn);
      const expected = `nothing for ${step.ms} ms`;
      await new Promise((r) => setTimeout(r, step.ms));
      if (c.events.length === 0) return rec(true, expected, expected);
      return rec(false, expected, c.events.map((e) => run.render(e)).join(", "));
    }
    case "noreply": {
      // No packet or line within the window; the server may close or not.
      const c = await run.conn(step.conn);
      const expected = `no reply for ${step.ms} ms (open or closed)`;
      await new Promise((r) => setTimeout(r, step.ms));
      const replies = c.events.filter((e) => e.kind !== "closed");
      c.events.length = 0;
      run.mayClose.add(step.conn);
      if (replies.length === 0) return rec(true, expected, expected);
      return rec(false, expected, replies.map((e) => run.render(e)).join(", "));
    }
    case "expect-closed": {
      const c = await run.conn(step.conn);
      await c.waitEvent(step.timeoutMs);
      const e = c.take();
      return rec(e?.kind === "closed", "closed", run.render(e));
    }
    case "expect-packet": {
      const c = await run.conn(step.conn);
      const expected = expectedPacket(step);
      await c.waitEvent(step.timeoutMs);
      const e = c.take();
      if (e?.kind !== "packet" || e.type !== step.type || e.magic !== "\0RES") {
        return rec(false, expected, run.render(e));
      }
      const bound = compileExpect(step.args.join("\0"), run.b, where).match(e.body);
      if (bound === undefined) return rec(false, expected, run.render(e));
      for (const [k, v] of bound) run.b.handles.set(k, v);
      return rec(true, expected, "");
    }
    case "expect-line": {
      const c = await run.conn(step.conn);
      const expected = `line ${shown(step.text)}`;
      await c.waitEvent(step.timeoutMs);
      const e = c.take();
      if (e?.kind !== "line") return rec(false, expected, run.render(e));
      const bound = compileExpect(step.text, run.b, where).match(e.text);
      if (bound === undefined) return rec(false, expected, run.render(e));
      for (const [k, v] of bound) run.b.handles.set(k, v);
      return rec(true, expected, "");
    }
    case "expect-list": {
      const c = await run.conn(step.conn);
      const rows: string[] = [];
      const expected = `list [${step.rows.map((r) => shown(r)).join(", ")}]`;
      for (;;) {
        await c.waitEvent(step.timeoutMs);
        const e = c.take();
        if (e?.kind !== "line") {
          const sofar = rows.map((r) => printable(run.normalise(r))).join(", ");
          return rec(false, expected, `list [${sofar}] then ${run.render(e)}`);
        }
        if (e.text === ".\n") break;
        rows.push(e.text.replace(/\n$/, ""));
      }
      const mine = step.all ? rows : rows.filter((r) => ours(r, run.b));
      // Rows may come in any order (gearmand lists in hash order).
      const left = [...mine];
      const bound = new Map<string, string>();
      let ok = left.length === step.rows.length;
      for (const pattern of step.rows) {
        if (!ok) break;
        const b = { ns: run.b.ns, handles: new Map([...run.b.handles, ...bound]) };
        const m = compileExpect(pattern, b, where);
        const i = left.findIndex((r) => m.match(r) !== undefined);
        if (i < 0) {
          ok = false;
          break;
        }
        for (const [k, v] of m.match(left[i]!)!) bound.set(k, v);
        left.splice(i, 1);
      }
      if (ok) {
        for (const [k, v] of bound) run.b.handles.set(k, v);
        return rec(true, expected, "");
      }
      const got = mine.map((r) => run.normalise(r)).sort().map((r) => printable(r));
      return rec(false, expected, `list [${got.join(", ")}]`);
    }
  }
}
