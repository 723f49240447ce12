// All jobs the server knows, as a struct of typed arrays indexed by slot:
// no object and no ArrayBuffer per job. Slot 0 is never used, so 0 means
// "none" in every link field. Handles carry the slot and its generation
// (`n = gen * 2^32 + slot`), so finding a job by handle needs no Map.

import { PayloadStore } from "./payload_store.ts";

/** Job states. */
export const JobState = {
  FREE: 0,
  /** Waiting in its function's queue. */
  QUEUED: 1,
  /** Handed to a worker. */
  RUNNING: 2,
  /** Waiting for its run-at time (SUBMIT_JOB_EPOCH / _SCHED). */
  SCHEDULED: 3,
  /** Accepted, waiting for the store to commit it before it can run. */
  PENDING: 4,
} as const;

/** Job priorities, in the order workers are served. */
export const Priority = { HIGH: 0, NORMAL: 1, LOW: 2 } as const;
/** A job priority. */
export type Priority = typeof Priority[keyof typeof Priority];

const SLOT_SPACE = 2 ** 32;
/**
 * Handles at or above this were given to jobs that were kept on disk only
 * when submitted (a store's overflow): `SPILL_BASE + seq`. Slot handles stay
 * below it (generation < 2^20).
 */
export const SPILL_BASE = 2 ** 52;
/** Generations wrap here so `gen * 2^32 + slot` stays a safe integer. */
const GEN_LIMIT = 2 ** 20;
const INITIAL_CAPACITY = 1024;

/** Struct-of-arrays job storage with a free list. */
export class JobTable {
  readonly payloads: PayloadStore = new PayloadStore();
  capacity = 0;
  /** Generation of each slot: bumped when the slot is freed. */
  gen: Uint32Array = new Uint32Array(0);
  state: Uint8Array = new Uint8Array(0);
  priority: Uint8Array = new Uint8Array(0);
  background: Uint8Array = new Uint8Array(0);
  /** Function id. */
  fn: Uint32Array = new Uint32Array(0);
  /** Queue links (and the free list, through `next`). */
  next: Uint32Array = new Uint32Array(0);
  prev: Uint32Array = new Uint32Array(0);
  payload: Float64Array = new Float64Array(0);
  uniqueLen: Uint8Array = new Uint8Array(0);
  dataLen: Uint32Array = new Uint32Array(0);
  /** First client waiting on the job (peer id), 0 for none. */
  client: Uint32Array = new Uint32Array(0);
  /** Worker holding the job (peer id), 0 for none. */
  worker: Uint32Array = new Uint32Array(0);
  /** Times a worker died or gave up holding this job. */
  retries: Uint16Array = new Uint16Array(0);
  /** When the job was queued, then when it was assigned (performance.now() ms). */
  stamp: Float64Array = new Float64Array(0);
  /** Where a durable store keeps the job (what its `add` returned; 0: found by handle). */
  storeRef: Float64Array = new Float64Array(0);
  #freeHead = 0;
  #unused = 1;
  /** Generation new slots start at: differs per boot, so old handles do not match new jobs. */
  #genBase = 0;
  /** Handles of jobs paged in from a store's overflow, by slot. */
  #override = new Map<number, number>();
  #count = 0;

  constructor() {
    this.#grow(INITIAL_CAPACITY);
  }

  /** Live jobs. */
  get count(): number {
    return this.#count;
  }

  #grow(capacity: number): void {
    const grow = <T extends Uint8Array | Uint16Array | Uint32Array | Float64Array>(
      old: T,
      make: new (n: number) => T,
    ): T => {
      const next = new make(capacity);
      next.set(old as never);
      return next;
    };
    this.gen = grow(this.gen, Uint32Array);
    this.state = grow(this.state, Uint8Array);
    this.priority = grow(this.priority, Uint8Array);
    this.background = grow(this.background, Uint8Array);
    this.fn = grow(this.fn, Uint32Array);
    this.next = grow(this.next, Uint32Array);
    this.prev = grow(this.prev, Uint32Array);
    this.payload = grow(this.payload, Float64Array);
    this.uniqueLen = grow(this.uniqueLen, Uint8Array);
    this.dataLen = grow(this.dataLen, Uint32Array);
    this.client = grow(this.client, Uint32Array);
    this.worker = grow(this.worker, Uint32Array);
    this.retries = grow(this.retries, Uint16Array);
    this.stamp = grow(this.stamp, Float64Array);
    this.storeRef = grow(this.storeRef, Float64Array);
    this.capacity = capacity;
  }

  /** Allocate a slot and store the job's fields and payload. */
  add(
    fn: number,
    priority: number,
    background: boolean,
    unique: Uint8Array,
    data: Uint8Array,
  ): number {
    let slot = this.#freeHead;
    if (slot !== 0) {
      this.#freeHead = this.next[slot]!;
    } else {
      if (this.#unused >= this.capacity) {
        if (this.capacity * 2 > SLOT_SPACE) {
          throw new RangeError("Cannot add job: job table is full");
        }
        this.#grow(this.capacity * 2);
      }
      slot = this.#unused++;
      this.gen[slot] = this.#genBase;
    }
    this.#count++;
    this.state[slot] = JobState.QUEUED;
    this.priority[slot] = priority;
    this.background[slot] = background ? 1 : 0;
    this.fn[slot] = fn;
    this.next[slot] = 0;
    this.prev[slot] = 0;
    this.payload[slot] = this.payloads.store(unique, data);
    this.uniqueLen[slot] = unique.length;
    this.dataLen[slot] = data.length;
    this.client[slot] = 0;
    this.worker[slot] = 0;
    this.retries[slot] = 0;
    this.storeRef[slot] = 0;
    return slot;
  }

  /**
   * Start generations at a value derived from the store's boot counter, so
   * handles from before a restart do not name new jobs.
   */
  setBoot(boot: number): void {
    this.#genBase = (boot * 7919) % GEN_LIMIT;
    for (let s = 1; s < this.#unused; s++) {
      if (this.state[s] === JobState.FREE) this.gen[s] = this.#genBase;
    }
  }

  /**
   * Put a job back at the slot and generation its handle names (replay from
   * a store). Call {@link endRestore} after the last one.
   */
  restore(
    handleNumber: number,
    fn: number,
    priority: number,
    unique: Uint8Array,
    data: Uint8Array,
  ): number {
    const slot = handleNumber % SLOT_SPACE;
    const gen = (handleNumber - slot) / SLOT_SPACE;
    if (slot === 0 || gen >= GEN_LIMIT) {
      throw new RangeError(`Cannot restore job: ${handleNumber} is not a handle number`);
    }
    while (slot >= this.capacity) this.#grow(this.capacity * 2);
    if (this.state[slot] !== JobState.FREE && slot < this.#unused) {
      throw new RangeError(`Cannot restore job: handle ${handleNumber} is restored twice`);
    }
    if (slot >= this.#unused) {
      for (let s = this.#unused; s < slot; s++) this.state[s] = JobState.FREE;
      this.#unused = slot + 1;
    }
    this.#count++;
    this.gen[slot] = gen;
    this.state[slot] = JobState.QUEUED;
    this.priority[slot] = priority;
    this.background[slot] = 1;
    this.fn[slot] = fn;
    this.next[slot] = 0;
    this.prev[slot] = 0;
    this.payload[slot] = this.payloads.store(unique, data);
    this.uniqueLen[slot] = unique.length;
    this.dataLen[slot] = data.length;
    this.client[slot] = 0;
    this.worker[slot] = 0;
    this.retries[slot] = 0;
    this.storeRef[slot] = 0;
    return slot;
  }

  /** After {@link restore}: every slot not restored becomes free. */
  endRestore(): void {
    this.#freeHead = 0;
    for (let s = this.#unused - 1; s >= 1; s--) {
      if (this.state[s] !== JobState.FREE) continue;
      this.gen[s] = this.#genBase;
      this.next[s] = this.#freeHead;
      this.#freeHead = s;
    }
  }

  /** Free a slot; its handle stops resolving. */
  free(slot: number): void {
    if (this.#override.size > 0) this.#override.delete(slot);
    this.payloads.free(this.payload[slot]!, this.uniqueLen[slot]! + this.dataLen[slot]!);
    this.state[slot] = JobState.FREE;
    this.gen[slot] = (this.gen[slot]! + 1) % GEN_LIMIT;
    this.client[slot] = 0;
    this.worker[slot] = 0;
    this.next[slot] = this.#freeHead;
    this.#freeHead = slot;
    this.#count--;
  }

  /** The job's handle number. */
  handleNumber(slot: number): number {
    if (this.#override.size > 0) {
      const h = this.#override.get(slot);
      if (h !== undefined) return h;
    }
    return this.gen[slot]! * SLOT_SPACE + slot;
  }

  /** Give a slot the handle it was created with while on disk. */
  setHandle(slot: number, handleNumber: number): void {
    this.#override.set(slot, handleNumber);
  }

  /** The live slot a handle number names, or 0. */
  slotOf(handleNumber: number): number {
    if (handleNumber < 0) return 0;
    const slot = handleNumber % SLOT_SPACE;
    if (slot === 0 || slot >= this.#unused) return 0;
    if (this.state[slot] === JobState.FREE) return 0;
    return (handleNumber - slot) / SLOT_SPACE === this.gen[slot] ? slot : 0;
  }

  /** The job's unique id bytes (a view: copy to keep). */
  unique(slot: number): Uint8Array {
    return this.payloads.view(this.payload[slot]!, 0, this.uniqueLen[slot]!);
  }

  /** The job's data bytes (a view: copy to keep). */
  data(slot: number): Uint8Array {
    return this.payloads.view(this.payload[slot]!, this.uniqueLen[slot]!, this.dataLen[slot]!);
  }

  /** Every live slot, in slot order. */
  *slots(): IterableIterator<number> {
    for (let s = 1; s < this.#unused; s++) if (this.state[s] !== JobState.FREE) yield s;
  }
}

/** A FIFO of job slots, linked through the table's next/prev arrays. */
export class JobQueue {
  head = 0;
  tail = 0;
  length = 0;

  /** Append a slot at the tail. */
  push(t: JobTable, slot: number): void {
    t.next[slot] = 0;
    t.prev[slot] = this.tail;
    if (this.tail !== 0) t.next[this.tail] = slot;
    else this.head = slot;
    this.tail = slot;
    this.length++;
  }

  /** Put a slot at the head. */
  unshift(t: JobTable, slot: number): void {
    t.prev[slot] = 0;
    t.next[slot] = this.head;
    if (this.head !== 0) t.prev[this.head] = slot;
    else this.tail = slot;
    this.head = slot;
    this.length++;
  }

  /** Take the head slot, or 0. */
  shift(t: JobTable): number {
    const slot = this.head;
    if (slot === 0) return 0;
    this.head = t.next[slot]!;
    if (this.head !== 0) t.prev[this.head] = 0;
    else this.tail = 0;
    t.next[slot] = 0;
    this.length--;
    return slot;
  }

  /** Unlink a slot from anywhere in the queue. */
  remove(t: JobTable, slot: number): void {
    const p = t.prev[slot]!;
    const n = t.next[slot]!;
    if (p !== 0) t.next[p] = n;
    else this.head = n;
    if (n !== 0) t.prev[n] = p;
    else this.tail = p;
    t.next[slot] = 0;
    t.prev[slot] = 0;
    this.length--;
  }
}
