// Job payloads (unique id + data) packed into 1 MiB slabs: one copy per
// job, no ArrayBuffer per job. A slab is reset once every payload in it is
// freed, so a queue that drains gives its memory back for reuse.

const SLAB_SIZE = 1 << 20;
/** Payloads larger than this get an array of their own. */
const LARGE_PAYLOAD = 64 * 1024;
/** Empty slabs kept for reuse; more are released to the garbage collector. */
const SPARE_SLABS = 4;

/**
 * Where a payload lives: `slab * SLAB_SIZE + offset` for slab payloads,
 * `-id` for large ones.
 */
export type PayloadRef = number;

/** Slab allocator for job payloads. */
export class PayloadStore {
  #slabs: (Uint8Array | undefined)[] = [];
  #used: number[] = [];
  #live: number[] = [];
  #current = -1;
  #spare: number[] = [];
  #freeIndexes: number[] = [];
  #large = new Map<number, Uint8Array>();
  #nextLarge = 1;
  #bytes = 0;

  /** Bytes held by slabs and large payloads. */
  get allocatedBytes(): number {
    let n = 0;
    for (const s of this.#slabs) if (s) n += s.length;
    for (const b of this.#large.values()) n += b.length;
    return n;
  }

  /** Bytes of live payloads. */
  get liveBytes(): number {
    return this.#bytes;
  }

  /** Store `a` followed by `b` as one payload; returns where. */
  store(a: Uint8Array, b: Uint8Array): PayloadRef {
    const len = a.length + b.length;
    this.#bytes += len;
    if (len > LARGE_PAYLOAD) {
      const buf = new Uint8Array(len);
      buf.set(a, 0);
      buf.set(b, a.length);
      const id = this.#nextLarge++;
      this.#large.set(id, buf);
      return -id;
    }
    let slab = this.#current;
    if (slab < 0 || this.#used[slab]! + len > SLAB_SIZE) slab = this.#newSlab();
    const at = this.#used[slab]!;
    const buf = this.#slabs[slab]!;
    buf.set(a, at);
    buf.set(b, at + a.length);
    this.#used[slab] = at + len;
    this.#live[slab]!++;
    return slab * SLAB_SIZE + at;
  }

  #newSlab(): number {
    let slab = this.#spare.pop();
    if (slab === undefined) {
      slab = this.#freeIndexes.pop() ?? this.#slabs.length;
      this.#slabs[slab] = new Uint8Array(SLAB_SIZE);
    }
    this.#used[slab] = 0;
    this.#live[slab] = 0;
    this.#current = slab;
    return slab;
  }

  /** A view of `len` bytes of the payload at `ref`, from `offset`. */
  view(ref: PayloadRef, offset: number, len: number): Uint8Array {
    if (ref < 0) return this.#large.get(-ref)!.subarray(offset, offset + len);
    const slab = Math.floor(ref / SLAB_SIZE);
    const at = ref - slab * SLAB_SIZE + offset;
    return this.#slabs[slab]!.subarray(at, at + len);
  }

  /** Free the payload at `ref` of `len` bytes. */
  /** Whether the stored bytes at `offset` of a payload are `bytes` (compared in place). */
  equals(ref: PayloadRef, offset: number, bytes: Uint8Array): boolean {
    let buf: Uint8Array;
    let at: number;
    if (ref < 0) {
      buf = this.#large.get(-ref)!;
      at = offset;
    } else {
      const slab = Math.floor(ref / SLAB_SIZE);
      buf = this.#slabs[slab]!;
      at = ref - slab * SLAB_SIZE + offset;
    }
    if (at + bytes.length > buf.length) return false;
    for (let i = 0; i < bytes.length; i++) if (buf[at + i] !== bytes[i]) return false;
    return true;
  }

  free(ref: PayloadRef, len: number): void {
    this.#bytes -= len;
    if (ref < 0) {
      this.#large.delete(-ref);
      return;
    }
    const slab = Math.floor(ref / SLAB_SIZE);
    if (--this.#live[slab]! > 0) return;
    if (slab === this.#current) {
      this.#used[slab] = 0;
    } else if (this.#spare.length < SPARE_SLABS) {
      this.#spare.push(slab);
    } else {
      this.#slabs[slab] = undefined;
      this.#freeIndexes.push(slab);
    }
  }
}
