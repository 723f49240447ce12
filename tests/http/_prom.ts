// A strict parser for the Prometheus text exposition format (0.0.4), used
// to check that /metrics is valid, not just that it looks right. The npm
// parsers we tried (parse-prometheus-text-format 1.1.1) accept malformed
// input (unterminated quotes, bad escapes, duplicate labels, garbage
// lines), so they cannot tell valid from invalid; this one follows the
// format's grammar and Prometheus' own text parser, and throws on:
//
// - bytes that are not UTF-8, a missing final newline, carriage returns;
// - bad metric or label names, `__` label names, duplicate label names;
// - escapes other than \\ \" \n in label values (\\ \n in HELP);
// - values that are not Go floats (NaN, +Inf, -Inf allowed), bad timestamps;
// - a second HELP or TYPE for a family, a TYPE after the family's samples,
//   unknown types, a family whose samples are not contiguous;
// - samples whose names do not fit their family's type (e.g. `x_bucket` of
//   a gauge), the same series twice;
// - histograms without +Inf, with buckets not ascending or not cumulative,
//   without `_sum` or `_count`, or with `_count` not equal to the +Inf
//   bucket; negative counters.

/** One sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  timestamp?: number;
}

/** A metric family: its TYPE, HELP and samples. */
export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help: string | undefined;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** Thrown for invalid exposition text. */
export class ExpositionError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "ExpositionError";
  }
}

function parseFloatStrict(s: string, line: number): number {
  if (!FLOAT.test(s)) throw new ExpositionError(line, `invalid value ${JSON.stringify(s)}`);
  if (s.endsWith("Inf")) return s.startsWith("-") ? -Infinity : Infinity;
  if (s === "NaN") return NaN;
  return Number(s);
}

/** The family a sample name belongs to, given the families typed so far. */
function familyOf(name: string, typed: Map<string, Family>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const t = typed.get(base)?.type;
    if (t === "histogram" || (t === "summary" && suffix !== "_bucket")) return base;
  }
  return name;
}

/** Parse and check an exposition; throws {@link ExpositionError} when invalid. */
export function parseExposition(input: Uint8Array | string): Map<string, Family> {
  let text: string;
  if (typeof input === "string") text = input;
  else {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(input);
    } catch {
      throw new ExpositionError(0, "not valid UTF-8");
    }
  }
  if (text.length > 0 && !text.endsWith("\n")) {
    throw new ExpositionError(0, "does not end with a newline");
  }
  if (text.includes("\r")) throw new ExpositionError(0, "contains a carriage return");
  const families = new Map<string, Family>();
  const done = new Set<string>(); // families whose samples are over
  const seen = new Set<string>();
  let current: string | undefined;
  const lines = text.split("\n");
  lines.pop();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (f === undefined) {
      families.set(name, f = { name, type: "untyped", help: undefined, samples: [] });
    }
    return f;
  };
  const typeSeen = new Set<string>();
  const enter = (name: string, n: number) => {
    if (current === name) return;
    if (done.has(name)) throw new ExpositionError(n, `family ${name} is not contiguous`);
    if (current !== undefined) done.add(current);
    current = name;
  };
  lines.forEach((line, i) => {
    const n = i + 1;
    if (/^[ \t]*$/.test(line)) return;
    if (line.startsWith("#")) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (m === null) return; // an ordinary comment
      const [, kind, name, rest = ""] = m;
      if (!METRIC_NAME.test(name!)) throw new ExpositionError(n, `invalid metric name ${name}`);
      enter(name!, n);
      const f = family(name!);
      if (kind === "HELP") {
        if (f.help !== undefined) throw new ExpositionError(n, `second HELP for ${name}`);
        f.help = unescape(rest, false, n);
      } else {
        if (typeSeen.has(name!)) throw new ExpositionError(n, `second TYPE for ${name}`);
        if (f.samples.length > 0) throw new ExpositionError(n, `TYPE after samples of ${name}`);
        if (!TYPES.has(rest.trim())) throw new ExpositionError(n, `unknown type ${rest}`);
        typeSeen.add(name!);
        f.type = rest.trim() as Family["type"];
      }
      return;
    }
    const sample = parseSample(line, n);
    const base = familyOf(sample.name, families);
    enter(base, n);
    const f = family(base);
    if (f.type !== "histogram" && f.type !== "summary" && sample.name !== base) {
      throw new ExpositionError(n, `${sample.name} does not belong to ${f.type} ${base}`);
    }
    if (f.type === "histogram" && sample.name === base) {
      throw new ExpositionError(n, `histogram ${base} has a bare sample`);
    }
    if (sample.name.endsWith("_bucket") !== ("le" in sample.labels) && f.type === "histogram") {
      throw new ExpositionError(n, "le goes on _bucket samples only, and every _bucket has one");
    }
    if (f.type === "counter" && !(sample.value >= 0)) {
      throw new ExpositionError(n, `counter ${base} is negative or NaN`);
    }
    const key = sample.name + JSON.stringify(Object.entries(sample.labels).sort());
    if (seen.has(key)) throw new ExpositionError(n, `duplicate series ${key}`);
    seen.add(key);
    f.samples.push(sample);
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

function parseSample(line: string, n: number): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
  if (m === null) throw new ExpositionError(n, `no metric name in ${JSON.stringify(line)}`);
  const name = m[1]!;
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === "{") {
    i++;
    for (;;) {
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] === "}") {
        i++;
        break;
      }
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"/.exec(line.slice(i));
      if (lm === null) {
        throw new ExpositionError(n, `bad label at ${JSON.stringify(line.slice(i))}`);
      }
      const label = lm[1]!;
      if (!LABEL_NAME.test(label) || label.startsWith("__")) {
        throw new ExpositionError(n, `invalid label name ${label}`);
      }
      if (label in labels) throw new ExpositionError(n, `duplicate label ${label}`);
      i += lm[0].length;
      let raw = "";
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new ExpositionError(n, "unterminated label value");
        if (c === '"') break;
        if (c === "\\") {
          raw += c + (line[i + 1] ?? "");
          i += 2;
          continue;
        }
        raw += c;
        i++;
      }
      i++;
      labels[label] = unescape(raw, true, n);
      while (line[i] === " " || line[i] === "\t") i++;
      if (line[i] === ",") i++;
      else if (line[i] !== "}") throw new ExpositionError(n, "expected , or } after a label");
    }
  }
  const rest = line.slice(i);
  const parts = /^[ \t]+(\S+)(?:[ \t]+(\S+))?[ \t]*$/.exec(rest);
  if (parts === null) throw new ExpositionError(n, `bad value part ${JSON.stringify(rest)}`);
  const value = parseFloatStrict(parts[1]!, n);
  const sample: Sample = { name, labels, value };
  if (parts[2] !== undefined) {
    if (!/^-?\d+$/.test(parts[2])) throw new ExpositionError(n, `bad timestamp ${parts[2]}`);
    sample.timestamp = Number(parts[2]);
  }
  return sample;
}

function unescape(raw: string, quoted: boolean, n: number): string {
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = raw[++i];
    if (e === "\\") out += "\\";
    else if (e === "n") out += "\n";
    else if (e === '"' && quoted) out += '"';
    else throw new ExpositionError(n, `invalid escape \\${e ?? ""}`);
  }
  return out;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let g = groups.get(key);
    if (g === undefined) groups.set(key, g = { buckets: [] });
    if (s.name.endsWith("_bucket")) g.buckets.push([parseFloatStrict(le!, 0), s.value]);
    else if (s.name.endsWith("_sum")) g.sum = s.value;
    else g.count = s.value;
  }
  for (const [key, g] of groups) {
    const where = `histogram ${f.name}${key}`;
    if (g.sum === undefined || g.count === undefined) {
      throw new ExpositionError(0, `${where} lacks _sum or _count`);
    }
    const last = g.buckets[g.buckets.length - 1];
    if (last === undefined || last[0] !== Infinity) {
      throw new ExpositionError(0, `${where} lacks +Inf`);
    }
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i]![0] > g.buckets[i - 1]![0])) {
        throw new ExpositionError(0, `${where}: buckets not in ascending le order`);
      }
      if (g.buckets[i]![1] < g.buckets[i - 1]![1]) {
        throw new ExpositionError(0, `${where}: buckets not cumulative`);
      }
    }
    if (last[1] !== g.count) throw new ExpositionError(0, `${where}: _count differs from +Inf`);
  }
}

/** The value of one series, or undefined. */
export function valueOf(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const base = familyOf(name, families);
  const want = JSON.stringify(Object.entries(labels).sort());
  return families.get(base)?.samples.find((s) =>
    s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want
  )?.value;
}
