/**
 * A small writer for the Prometheus text exposition format (version 0.0.4,
 * the format every Prometheus-compatible scraper reads).
 *
 * Why our own and no client library: the text format is a few lines of
 * grammar (HELP and TYPE comments, then `name{label="value"} number`
 * lines), our metrics are computed at scrape time from the dispatcher's own
 * counters (no registry of metric objects to keep in sync), and a
 * dependency would have to be fetched by every user of this package for
 * what amounts to string escaping.
 *
 * @module
 */

/** The Content-Type of the text format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Metric types of the text format. */
export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

/** Label names and values of one sample. */
export type Labels = Readonly<Record<string, string>>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Escape a label value: backslash, double quote and line feed, as the
 * format requires. Any other character is written as it is (the text is
 * UTF-8; strings with unpaired surrogates come out as U+FFFD when encoded).
 */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\\" ? "\\\\" : c === '"' ? '\\"' : "\\n"));
}

/** Escape HELP text: backslash and line feed (quotes stay as they are). */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === "\\" ? "\\\\" : "\\n"));
}

/** A sample value as the format spells it (`+Inf`, `-Inf`, `NaN`, or a Go-parsable float). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/**
 * Builds one exposition: metric families, each with its HELP and TYPE
 * lines followed by its samples. Families must be written whole, one
 * after another; names and label names are checked as they are written.
 *
 * @example
 * ```ts
 * import { ExpositionWriter } from "./exposition.ts";
 * const w = new ExpositionWriter();
 * w.family("gearman_jobs_completed_total", "counter", "Jobs completed.");
 * w.sample("gearman_jobs_completed_total", { function: 'say "hi"' }, 3);
 * console.assert(w.text().endsWith('gearman_jobs_completed_total{function="say \\"hi\\""} 3\n'));
 * ```
 */
export class ExpositionWriter {
  #out = "";
  readonly #families = new Set<string>();
  #current: { name: string; type: MetricType } | undefined;

  /**
   * Start a metric family: writes its HELP and TYPE lines.
   *
   * @throws {TypeError} For an invalid name or a family written twice.
   */
  family(name: string, type: MetricType, help: string): this {
    if (!METRIC_NAME.test(name)) throw new TypeError(`Invalid metric name ${JSON.stringify(name)}`);
    if (this.#families.has(name)) throw new TypeError(`Metric family ${name} written twice`);
    this.#families.add(name);
    this.#current = { name, type };
    this.#out += `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
    return this;
  }

  /**
   * One sample of the current family (for histograms use {@link histogram}).
   *
   * @throws {TypeError} For a sample outside its family or a bad label name.
   */
  sample(name: string, labels: Labels | undefined, value: number): this {
    const family = this.#current;
    if (family === undefined || !belongs(family, name)) {
      throw new TypeError(`Sample ${name} written outside its metric family`);
    }
    this.#out += name + labelText(labels) + " " + formatValue(value) + "\n";
    return this;
  }

  /**
   * The samples of one histogram of the current (histogram) family:
   * cumulative `_bucket` lines with `le`, then `_sum` and `_count`.
   *
   * @param labels Labels of this histogram (without `le`).
   * @param bounds Upper bounds of the buckets, ascending (+Inf is added).
   * @param counts Observations per bucket, not cumulative; one more than `bounds` (the +Inf bucket).
   * @param sum Sum of all observations.
   */
  histogram(
    labels: Labels | undefined,
    bounds: readonly number[],
    counts: ArrayLike<number>,
    sum: number,
  ): this {
    const family = this.#current;
    if (family === undefined || family.type !== "histogram") {
      throw new TypeError("histogram() outside a histogram family");
    }
    if (counts.length !== bounds.length + 1) {
      throw new TypeError(`Expected ${bounds.length + 1} bucket counts, got ${counts.length}`);
    }
    const name = family.name;
    let cumulative = 0;
    for (let i = 0; i <= bounds.length; i++) {
      cumulative += counts[i]!;
      const le = i < bounds.length ? formatValue(bounds[i]!) : "+Inf";
      this.#out += `${name}_bucket${labelText({ ...labels, le })} ${formatValue(cumulative)}\n`;
    }
    const rest = labelText(labels);
    this.#out += `${name}_sum${rest} ${formatValue(sum)}\n${name}_count${rest} ${
      formatValue(cumulative)
    }\n`;
    return this;
  }

  /** The exposition so far. */
  text(): string {
    return this.#out;
  }
}

function belongs(family: { name: string; type: MetricType }, sample: string): boolean {
  if (family.type === "histogram" || family.type === "summary") return false;
  return sample === family.name;
}

function labelText(labels: Labels | undefined): string {
  if (labels === undefined) return "";
  let out = "";
  for (const key in labels) {
    if (!LABEL_NAME.test(key) || key.startsWith("__")) {
      throw new TypeError(`Invalid label name ${JSON.stringify(key)}`);
    }
    out += `${out === "" ? "" : ","}${key}="${escapeLabelValue(labels[key]!)}"`;
  }
  return out === "" ? "" : `{${out}}`;
}
