// Jobs by unique id, for coalescing: an open-addressing hash table of job
// slots. The key bytes are not copied: they are compared where the job's
// payload already keeps them, so an entry costs 8 bytes (slot and hash)
// instead of a Map entry and a string per job. libgearman clients (PHP's,
// the gearman CLI) give every background job a UUID unique id, so this is
// on the path of nearly every job they submit.
//
// A unique id is per function. The unique id `-` means "the data is the
// key": such jobs coalesce with jobs of the same function and the same
// data whose unique id is also `-`.

import type { JobTable } from "./job_table.ts";

const INITIAL_CAPACITY = 1024;
const DASH = 45; // "-"

/** Whether (unique, data) names a key: `-` needs data. */
export function hasUniqueKey(unique: Uint8Array, data: Uint8Array): boolean {
  return unique.length > 0 && !(isDash(unique) && data.length === 0);
}

function isDash(unique: Uint8Array): boolean {
  return unique.length === 1 && unique[0] === DASH;
}

/** FNV-1a over the key bytes, seeded with the function id. */
function hashKey(fn: number, key: Uint8Array, dash: boolean): number {
  let h = (0x811c9dc5 ^ Math.imul(fn + (dash ? 0x9e3779b9 : 0), 0x01000193)) | 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  // Never 0, so 0 can mean "no entry" in the hash array too.
  return (h | 1) >>> 0;
}

/** Live jobs by function and unique id; see the file comment. */
export class UniqueIndex {
  readonly #jobs: JobTable;
  #slots: Int32Array = new Int32Array(INITIAL_CAPACITY);
  #hashes: Uint32Array = new Uint32Array(INITIAL_CAPACITY);
  #size = 0;

  /** @param jobs The job table whose payloads hold the keys. */
  constructor(jobs: JobTable) {
    this.#jobs = jobs;
  }

  /** Entries. */
  get size(): number {
    return this.#size;
  }

  /** Whether the job at `slot` has the key (fn, unique, data). */
  #matches(slot: number, fn: number, unique: Uint8Array, data: Uint8Array, dash: boolean): boolean {
    const jobs = this.#jobs;
    if (jobs.fn[slot] !== fn) return false;
    if (dash) {
      return jobs.uniqueLen[slot] === 1 && jobs.dataLen[slot] === data.length &&
        jobs.payloads.equals(jobs.payload[slot]!, 0, unique) &&
        jobs.payloads.equals(jobs.payload[slot]!, 1, data);
    }
    return jobs.uniqueLen[slot] === unique.length &&
      jobs.payloads.equals(jobs.payload[slot]!, 0, unique);
  }

  /** The job with this key in function `fn`, or 0. */
  get(fn: number, unique: Uint8Array, data: Uint8Array): number {
    if (!hasUniqueKey(unique, data)) return 0;
    const dash = isDash(unique);
    const h = hashKey(fn, dash ? data : unique, dash);
    const mask = this.#slots.length - 1;
    for (let i = h & mask;; i = (i + 1) & mask) {
      const s = this.#slots[i]!;
      if (s === 0) return 0;
      if (this.#hashes[i] === h && this.#matches(s, fn, unique, data, dash)) return s;
    }
  }

  /**
   * Index the job at `slot` under its own key (fn, unique, data), unless
   * another job holds that key already. Returns the slot that holds it.
   */
  add(slot: number): number {
    const jobs = this.#jobs;
    const unique = jobs.unique(slot);
    const data = jobs.data(slot);
    if (!hasUniqueKey(unique, data)) return slot;
    const fn = jobs.fn[slot]!;
    const dash = isDash(unique);
    const h = hashKey(fn, dash ? data : unique, dash);
    if ((this.#size + 1) * 2 > this.#slots.length) this.#grow();
    const mask = this.#slots.length - 1;
    for (let i = h & mask;; i = (i + 1) & mask) {
      const s = this.#slots[i]!;
      if (s === 0) {
        this.#slots[i] = slot;
        this.#hashes[i] = h;
        this.#size++;
        return slot;
      }
      if (s === slot) return slot;
      if (this.#hashes[i] === h && this.#matches(s, fn, unique, data, dash)) return s;
    }
  }

  /** Take the job at `slot` out, if it is the one its key names. */
  delete(slot: number): void {
    const jobs = this.#jobs;
    const unique = jobs.unique(slot);
    const data = jobs.data(slot);
    if (!hasUniqueKey(unique, data)) return;
    const dash = isDash(unique);
    const h = hashKey(jobs.fn[slot]!, dash ? data : unique, dash);
    const slots = this.#slots;
    const hashes = this.#hashes;
    const mask = slots.length - 1;
    let i = h & mask;
    for (;; i = (i + 1) & mask) {
      const s = slots[i]!;
      if (s === 0) return;
      if (s === slot) break;
    }
    // Backward-shift deletion: later entries of the run move into the hole
    // when their home position is not between the hole and them.
    let hole = i;
    for (let j = (i + 1) & mask; slots[j] !== 0; j = (j + 1) & mask) {
      const home = hashes[j]! & mask;
      const fromHome = (j - home) & mask;
      const fromHole = (j - hole) & mask;
      if (fromHome >= fromHole) {
        slots[hole] = slots[j]!;
        hashes[hole] = hashes[j]!;
        hole = j;
      }
    }
    slots[hole] = 0;
    hashes[hole] = 0;
    this.#size--;
  }

  #grow(): void {
    const oldSlots = this.#slots;
    const oldHashes = this.#hashes;
    const capacity = oldSlots.length * 2;
    const slots = new Int32Array(capacity);
    const hashes = new Uint32Array(capacity);
    const mask = capacity - 1;
    for (let k = 0; k < oldSlots.length; k++) {
      const s = oldSlots[k]!;
      if (s === 0) continue;
      const h = oldHashes[k]!;
      let i = h & mask;
      while (slots[i] !== 0) i = (i + 1) & mask;
      slots[i] = s;
      hashes[i] = h;
    }
    this.#slots = slots;
    this.#hashes = hashes;
  }
}
