// The default store: nothing is written anywhere; dead letters are kept in
// memory (the most recent 10,000).

import type { DeadLetter, JobStore, StoredJob } from "./job_store.ts";

const MAX_DEAD_LETTERS = 10_000;

/** A store that keeps nothing across restarts. */
export class MemoryJobStore implements JobStore {
  readonly description = "memory";
  readonly durable = false;
  readonly boot = 0;
  readonly pending = false;
  #dead: DeadLetter[] = [];
  #nextDead = 1;

  load(): Iterable<StoredJob> {
    return [];
  }
  loadHead(_limit: number): Iterable<StoredJob> {
    return [];
  }
  loadTimed(_afterSeq: number): Iterable<StoredJob> {
    return [];
  }
  backlog(_afterSeq: number): { function: string; priority: number; count: number }[] {
    return [];
  }
  page(_fn: string, _priority: number, _afterSeq: number, _limit: number): StoredJob[] {
    return [];
  }
  findByUnique(_fn: string, _unique: Uint8Array, _data: Uint8Array): StoredJob | undefined {
    return undefined;
  }
  maxSeq(): number {
    return 0;
  }
  findByHandle(_handle: number): StoredJob | undefined {
    return undefined;
  }
  add(_job: StoredJob): number {
    return 0;
  }
  remove(_handle: number, _ref?: number): void {}
  setRetries(_handle: number, _retries: number, _ref?: number): void {}

  addDeadLetter(letter: Omit<DeadLetter, "id">): void {
    this.#dead.push({ ...letter, id: this.#nextDead++ });
    if (this.#dead.length > MAX_DEAD_LETTERS) this.#dead.shift();
  }

  deadLetters(): DeadLetter[] {
    return [...this.#dead];
  }

  removeDeadLetter(id: number): boolean {
    const i = this.#dead.findIndex((d) => d.id === id);
    if (i < 0) return false;
    this.#dead.splice(i, 1);
    return true;
  }

  commit(): void {}
  close(): void {}
}
