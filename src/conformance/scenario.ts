/**
 * The conformance scenario format: scenarios are data (JSON), each a list
 * of steps written in a small line language, parsed here into {@link Step}s.
 *
 * @module
 */

import { PacketType } from "../protocol/packet_type.ts";

/**
 * One conformance scenario: a scripted conversation over one or more
 * connections, with what the server must answer.
 *
 * Steps are strings (split on spaces) or arrays of tokens (when a token
 * needs spaces). See docs/CONFORMANCE.md for the whole language; in short:
 *
 * - `c1 > SUBMIT_JOB @f u1 data` sends a request packet on connection
 *   `c1` (opened on first use); arguments are joined with NUL bytes.
 * - `c1 < JOB_CREATED $h1` expects the next packet on `c1`; `$h1` captures
 *   the handle the first time and must match it afterwards.
 * - `a > admin status` sends an admin line (with `\r\n`); `a < list ...`
 *   expects a listing ending in `.`; `a < ok`, `a < err TEXT` and
 *   `a < line TEXT` expect one reply line.
 * - `c1 silent 200`, `c1 < closed`, `c1 < noreply 200` (silent or
 *   closed), `c1 close`, `sleep 1200`.
 * - `[ours] ...` / `[ref] ...` run a step only on our server / only on
 *   any other server (where we differ from gearmand on purpose).
 *
 * @example A scenario
 * ```ts
 * import type { Scenario } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const s: Scenario = {
 *   name: "echo: ECHO_REQ is answered with the same bytes",
 *   checks: "ECHO_RES carries the ECHO_REQ body unchanged",
 *   steps: ["c1 > ECHO_REQ hello", "c1 < ECHO_RES hello"],
 * };
 * assert.equal(s.steps.length, 2);
 * ```
 */
export interface Scenario {
  /** Unique name, `topic: what happens` (the TAP test name). */
  name: string;
  /** What the scenario checks, in a sentence. */
  checks: string;
  /** The steps, in order. */
  steps: (string | string[])[];
  /** Only for these server kinds (e.g. `["ours"]` for an extension). */
  server?: string[];
  /** The extension it exercises; `--extensions` runs it on any server. */
  extension?: string;
  /**
   * Needs a server of its own (it shuts the server down, or needs server
   * options): skipped unless the runner can start servers.
   */
  fresh?: boolean | FreshServerOptions;
  /**
   * The id of the known difference between servers this scenario shows
   * (its `[ours]`/`[ref]` steps); see {@link DIFFERENCES}.
   */
  differs?: string;
  /**
   * Send the implicit ECHO_REQ round trips that order steps across
   * connections (default true; turn off for byte-level framing tests).
   */
  sync?: boolean;
  /** The corpus file it came from (set by the loader). */
  file?: string;
}

/**
 * Options for a scenario's own server.
 *
 * @example Ask for --job-retries=2
 * ```ts
 * import type { FreshServerOptions } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const options: FreshServerOptions = { jobRetries: 2 };
 * assert.equal(options.jobRetries, 2);
 * ```
 */
export interface FreshServerOptions {
  /** Fail a job after this many workers died holding it (`--job-retries`). */
  jobRetries?: number;
}

/** Which server kinds a step runs on. */
export interface KindFilter {
  /** Run only on these kinds (undefined: all). */
  only?: string[];
  /** Run on every kind but these. */
  not?: string[];
}

/** A parsed step. */
export type Step =
  & { source: string; index: number; kinds: KindFilter | undefined; conn: string }
  & (
    | { op: "send"; magic: "REQ" | "RES"; type: number; args: string[] }
    | { op: "raw"; bytes: string }
    | { op: "expect-packet"; type: number; args: string[]; timeoutMs: number }
    | { op: "expect-line"; text: string; timeoutMs: number }
    | { op: "expect-list"; rows: string[]; timeoutMs: number; all: boolean }
    | { op: "expect-closed"; timeoutMs: number }
    | { op: "silent"; ms: number }
    | { op: "noreply"; ms: number }
    | { op: "close"; ms: number }
    | { op: "sleep"; ms: number }
    | { op: "sync" }
  );

/** Default longest wait for an expected reply, in milliseconds. */
export const DEFAULT_EXPECT_MS = 2000;
/** Default silence window, in milliseconds. */
export const DEFAULT_SILENT_MS = 200;
/** Default pause after closing a connection, for the server to notice. */
export const DEFAULT_CLOSE_MS = 60;

/** Wildcards allowed in expectations, with the text they match. */
export const WILDCARDS: Readonly<Record<string, string>> = {
  any: "[\\s\\S]*?",
  num: "-?\\d+",
  pid: "\\d+",
  fd: "\\d+",
  ip: "[0-9A-Fa-f.:]+",
  version: "[^\\r\\n\\0]+",
  verbose: "[A-Z]+",
  text: "[^\\r\\n\\0]*",
  time: "[0-9TZ:.\\-]+",
};

const NAMED_BYTES: Readonly<Record<string, string>> = {
  nul: "\0",
  tab: "\t",
  cr: "\r",
  lf: "\n",
  sp: " ",
};

/** A scenario step that cannot be parsed. */
export class ScenarioSyntaxError extends Error {
  /** Make the error. */
  constructor(message: string) {
    super(message);
    this.name = "ScenarioSyntaxError";
  }
}

function typeNumber(token: string, where: string): number {
  if (/^\d+$/.test(token)) return Number(token);
  const t = (PacketType as Record<string, number>)[token];
  if (t === undefined) throw new ScenarioSyntaxError(`${where}: unknown packet type "${token}"`);
  return t;
}

/** Split a step into tokens: arrays as they are, strings on whitespace (`""` is empty). */
function tokens(step: string | string[]): string[] {
  if (Array.isArray(step)) return [...step];
  return step.trim().split(/\s+/).map((t) => (t === '""' ? "" : t));
}

function intArg(token: string | undefined, fallback: number, where: string): number {
  if (token === undefined) return fallback;
  if (!/^\d+$/.test(token)) {
    throw new ScenarioSyntaxError(`${where}: expected milliseconds, got "${token}"`);
  }
  return Number(token);
}

/**
 * Parse one step of a scenario.
 *
 * @param step The step as written.
 * @param index Its position in the scenario.
 * @returns The parsed step.
 * @throws {ScenarioSyntaxError} When it is not valid.
 */
export function parseStep(step: string | string[], index: number): Step {
  const source = Array.isArray(step) ? JSON.stringify(step) : step;
  const where = `step ${index + 1} (${source})`;
  const t = tokens(step);
  let kinds: KindFilter | undefined;
  if (t[0]?.startsWith("[") && t[0].endsWith("]")) {
    kinds = {};
    for (const k of t.shift()!.slice(1, -1).split(",")) {
      if (k === "ref") (kinds.not ??= []).push("ours");
      else if (k.startsWith("!")) (kinds.not ??= []).push(k.slice(1));
      else (kinds.only ??= []).push(k);
    }
  }
  const base = { source, index, kinds };
  if (t[0] === "sleep") return { ...base, conn: "", op: "sleep", ms: intArg(t[1], 0, where) };
  const conn = t[0];
  const verb = t[1];
  if (conn === undefined || verb === undefined || !/^[A-Za-z][A-Za-z0-9_]*$/.test(conn)) {
    throw new ScenarioSyntaxError(`${where}: expected "CONN > ...", "CONN < ...", or "sleep MS"`);
  }
  const rest = t.slice(2);
  const b = { ...base, conn };
  if (verb === "silent") {
    return { ...b, op: "silent", ms: intArg(rest[0], DEFAULT_SILENT_MS, where) };
  }
  if (verb === "close") return { ...b, op: "close", ms: intArg(rest[0], DEFAULT_CLOSE_MS, where) };
  if (verb === "sync") return { ...b, op: "sync" };
  if (verb === ">") {
    const what = rest[0];
    if (what === undefined) throw new ScenarioSyntaxError(`${where}: nothing to send`);
    if (what === "raw") return { ...b, op: "raw", bytes: rest.slice(1).join(" ") };
    if (what === "admin") return { ...b, op: "raw", bytes: rest.slice(1).join(" ") + "\r\n" };
    if (what === "line") return { ...b, op: "raw", bytes: rest.slice(1).join(" ") + "\n" };
    if (what === "res") {
      const type = rest[1];
      if (type === undefined) throw new ScenarioSyntaxError(`${where}: res needs a packet type`);
      return { ...b, op: "send", magic: "RES", type: typeNumber(type, where), args: rest.slice(2) };
    }
    return { ...b, op: "send", magic: "REQ", type: typeNumber(what, where), args: rest.slice(1) };
  }
  const m = /^<(\d*)$/.exec(verb);
  if (m) {
    const timeoutMs = m[1] ? Number(m[1]) : DEFAULT_EXPECT_MS;
    const what = rest[0];
    if (what === undefined) throw new ScenarioSyntaxError(`${where}: nothing to expect`);
    const text = rest.slice(1).join(" ");
    switch (what) {
      case "closed":
        return { ...b, op: "expect-closed", timeoutMs };
      case "nothing":
        return { ...b, op: "silent", ms: intArg(rest[1], DEFAULT_SILENT_MS, where) };
      case "noreply":
        return { ...b, op: "noreply", ms: intArg(rest[1], DEFAULT_SILENT_MS, where) };
      case "line":
        return { ...b, op: "expect-line", text: text + "\n", timeoutMs };
      case "crlf":
        return { ...b, op: "expect-line", text: text + "\r\n", timeoutMs };
      case "ok":
        if (rest.length > 1) {
          throw new ScenarioSyntaxError(`${where}: "ok" takes no text; use line`);
        }
        return { ...b, op: "expect-line", text: "OK\r\n", timeoutMs };
      case "err":
        return { ...b, op: "expect-line", text: `ERR ${text}\r\n`, timeoutMs };
      case "list":
      case "list-all":
        return {
          ...b,
          op: "expect-list",
          rows: rest.slice(1),
          timeoutMs,
          all: what === "list-all",
        };
      default:
        return {
          ...b,
          op: "expect-packet",
          type: typeNumber(what, where),
          args: rest.slice(1),
          timeoutMs,
        };
    }
  }
  throw new ScenarioSyntaxError(
    `${where}: expected ">", "<", "silent", "close" or "sync" after "${conn}"`,
  );
}

/** Per-run values substituted into step text. */
export interface Bindings {
  /** The scenario's namespace: `@name` becomes `ns + name`. */
  ns: string;
  /** Handles captured so far, by variable (`$h1`). */
  handles: Map<string, string>;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\0/g, "\\x00");
}

interface Piece {
  /** Literal text, or a regex fragment. */
  literal?: string;
  regex?: string;
  /** Handle variable name when this piece is an unbound capture. */
  capture?: string;
}

/**
 * Expand a step token: `@name` (namespaced name), `$hN` (bound handle),
 * `{nul}`/`{tab}`/`{cr}`/`{lf}`/`{sp}`, `{x:HEX}`, `{TEXT*N}`, and — when
 * `wild` — wildcards like `{num}` and unbound handle captures.
 */
function pieces(text: string, b: Bindings, wild: boolean, where: string): Piece[] {
  const out: Piece[] = [];
  let lit = "";
  const flush = () => {
    if (lit !== "") out.push({ literal: lit });
    lit = "";
  };
  for (let i = 0; i < text.length;) {
    const c = text[i]!;
    if ((c === "@" || c === "$") && text[i + 1] === c) {
      lit += c;
      i += 2;
      continue;
    }
    if (c === "@") {
      const m = /^@([A-Za-z0-9_]+)/.exec(text.slice(i));
      if (m) {
        lit += b.ns + m[1];
        i += m[0].length;
        continue;
      }
    }
    if (c === "$") {
      const m = /^\$(h\d+)/.exec(text.slice(i));
      if (m) {
        const bound = b.handles.get(m[1]!);
        if (bound !== undefined) lit += bound;
        else if (!wild) {
          throw new ScenarioSyntaxError(`${where}: handle $${m[1]} used before it was captured`);
        } else {
          flush();
          out.push({ capture: m[1]! });
        }
        i += m[0].length;
        continue;
      }
    }
    if (c === "{") {
      const end = text.indexOf("}", i);
      if (end > i) {
        const inner = text.slice(i + 1, end);
        const rep = /^([\s\S]+)\*(\d+)$/.exec(inner);
        const hex = /^x:((?:[0-9A-Fa-f]{2})+)$/.exec(inner);
        const now = /^now([+-]\d+)?$/.exec(inner);
        if (NAMED_BYTES[inner] !== undefined) lit += NAMED_BYTES[inner];
        else if (now) lit += String(Math.floor(Date.now() / 1000) + Number(now[1] ?? 0));
        else if (hex) {
          for (let j = 0; j < hex[1]!.length; j += 2) {
            lit += String.fromCharCode(parseInt(hex[1]!.slice(j, j + 2), 16));
          }
        } else if (rep) {
          const unit = pieces(rep[1]!, b, false, where).map((p) => p.literal ?? "").join("");
          lit += unit.repeat(Number(rep[2]));
        } else if (WILDCARDS[inner] !== undefined) {
          if (!wild) {
            throw new ScenarioSyntaxError(`${where}: wildcard {${inner}} in something sent`);
          }
          flush();
          out.push({ regex: WILDCARDS[inner] });
        } else throw new ScenarioSyntaxError(`${where}: unknown {${inner}}`);
        i = end + 1;
        continue;
      }
    }
    lit += c;
    i++;
  }
  flush();
  return out;
}

/**
 * Expand text to send (a byte string): names, handles, byte escapes.
 *
 * @param text The step text.
 * @param b Current bindings.
 * @param where For error messages.
 * @returns The byte string.
 */
export function expandSend(text: string, b: Bindings, where: string): string {
  return pieces(text, b, false, where).map((p) => p.literal ?? "").join("");
}

/** A compiled expectation: matches a byte string, binding handles. */
export interface Matcher {
  /** Try to match; on success returns the new handle bindings. */
  match(actual: string): Map<string, string> | undefined;
}

/**
 * Compile an expected text into a matcher.
 *
 * @param text The expected text, as written (may hold wildcards and `$hN`).
 * @param b Current bindings (bound handles are literal).
 * @param where For error messages.
 * @returns The matcher.
 */
export function compileExpect(text: string, b: Bindings, where: string): Matcher {
  const ps = pieces(text, b, true, where);
  if (ps.every((p) => p.literal !== undefined)) {
    const literal = ps.map((p) => p.literal).join("");
    return { match: (actual) => (actual === literal ? new Map() : undefined) };
  }
  const seen = new Set<string>();
  let src = "^";
  for (const p of ps) {
    if (p.literal !== undefined) src += escapeRegExp(p.literal);
    else if (p.regex !== undefined) src += `(?:${p.regex})`;
    else if (p.capture !== undefined) {
      if (seen.has(p.capture)) src += `\\k<${p.capture}>`;
      else {
        seen.add(p.capture);
        src += `(?<${p.capture}>[^\\0\\t\\n\\r ]+)`;
      }
    }
  }
  src += "$";
  const re = new RegExp(src);
  return {
    match(actual: string) {
      const m = re.exec(actual);
      if (!m) return undefined;
      const bound = new Map<string, string>();
      for (const name of seen) {
        const value = m.groups![name]!;
        // A new handle variable names a new job: it must not be one already bound.
        for (const [k, v] of b.handles) if (k !== name && v === value) return undefined;
        bound.set(name, value);
      }
      return bound;
    },
  };
}
