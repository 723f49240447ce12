// One Gearman function: its three priority queues, unique index, capable
// and sleeping workers, and counters.

import { JobQueue } from "./job_table.ts";
import type { Peer } from "./peer.ts";
import { byteStringBytes } from "../protocol/_bytes.ts";
import { FunctionMetrics } from "./job_metrics.ts";

/** A function the server knows, by CAN_DO, a submit or `create function`. */
export class FunctionEntry {
  readonly id: number;
  /** The name as a byte string. */
  readonly name: string;
  readonly nameBytes: Uint8Array;
  /** Queued jobs by priority (high, normal, low). */
  readonly queues: readonly [JobQueue, JobQueue, JobQueue] = [
    new JobQueue(),
    new JobQueue(),
    new JobQueue(),
  ];
  /** Jobs waiting for their run-at time. */
  scheduled = 0;
  /** Jobs handed to workers. */
  running = 0;
  /** Queued jobs kept only in the store (overflow), by priority. */
  readonly spilled: [number, number, number] = [0, 0, 0];
  /** Store sequence up to which each priority's jobs are in memory. */
  readonly pagedUpTo: [number, number, number] = [0, 0, 0];
  /** Workers that can do this function. */
  readonly workers: Set<Peer> = new Set();
  /** Capable workers asleep after PRE_SLEEP and not yet woken. */
  readonly sleepers: Set<Peer> = new Set();
  /** Set once `drop function` removed it; peers holding it look it up again. */
  dropped = false;
  /** Cluster: jobs of this function may wait in the shared queue. */
  remote = true;
  /** Cluster: claims from the shared queue in flight. */
  claims = 0;
  /** Cluster: more jobs were announced while claiming: claim again after. */
  claimAgain = false;
  /** Cluster: when the latest claim of its jobs began (coarse ms). */
  claimedAt = 0;
  /** Cluster: the latest claim came back full (the shared queue is deep). */
  claimedFull = false;
  /** Queue limits by priority; 0 = unlimited. Undefined: the server default. */
  maxQueue: [number, number, number] | undefined;

  /** Counters and histograms (shared with earlier entries of the same name). */
  readonly metrics: FunctionMetrics;

  constructor(id: number, name: string, metrics: FunctionMetrics = new FunctionMetrics()) {
    this.id = id;
    this.name = name;
    this.nameBytes = byteStringBytes(name);
    this.metrics = metrics;
  }

  /** Jobs in the queues, ready for a worker. */
  get ready(): number {
    return this.queues[0].length + this.queues[1].length + this.queues[2].length +
      this.spilled[0] + this.spilled[1] + this.spilled[2];
  }

  /** Queued, scheduled and running jobs: the `status` TOTAL column. */
  get total(): number {
    return this.ready + this.scheduled + this.running;
  }
}
