// Counters and latency histograms per function, kept by the dispatcher for
// the metrics endpoint and the admin API. Cheap: a few additions per job.

/** Upper bounds (seconds) of the wait and run time histogram buckets. */
export const HISTOGRAM_BUCKETS: readonly number[] = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
];

/** A cumulative histogram with fixed buckets, as Prometheus exposes them. */
export class Histogram {
  /** Observations per bucket (not cumulative); the last is +Inf. */
  readonly counts: Float64Array = new Float64Array(HISTOGRAM_BUCKETS.length + 1);
  sum = 0;
  count = 0;

  /** Record one value, in seconds. */
  observe(seconds: number): void {
    const b = HISTOGRAM_BUCKETS;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** What happened to one function's jobs since the server started. */
export class FunctionMetrics {
  /** Jobs submitted, by priority (high, normal, low). */
  readonly submitted: [number, number, number] = [0, 0, 0];
  completed = 0;
  failed = 0;
  exceptions = 0;
  /** Times a job was requeued because its worker died, gave up or timed out. */
  retried = 0;
  /** Seconds from submit (or requeue) to a worker taking the job. */
  readonly wait: Histogram = new Histogram();
  /** Seconds from a worker taking the job to its end. */
  readonly run: Histogram = new Histogram();
}
