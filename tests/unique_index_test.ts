// The unique-id index on its own: lookups, coalescing, `-` keys, deletion
// (backward shift in an open-addressing table) and growth, checked against
// a Map after every step of a long random sequence.

import assert from "node:assert/strict";
import { JobTable } from "../src/server/job_table.ts";
import { hasUniqueKey, UniqueIndex } from "../src/server/unique_index.ts";

const enc = new TextEncoder();
const EMPTY = new Uint8Array(0);

Deno.test("unique index: finds jobs by function and unique id, `-` by data, never an empty key", () => {
  const jobs = new JobTable();
  const index = new UniqueIndex(jobs);
  const a = jobs.add(1, 1, true, enc.encode("u1"), enc.encode("x"));
  const b = jobs.add(2, 1, true, enc.encode("u1"), enc.encode("y")); // other function
  const c = jobs.add(1, 1, true, enc.encode("-"), enc.encode("payload"));
  const none = jobs.add(1, 1, true, enc.encode("-"), EMPTY);
  for (const s of [a, b, c, none]) assert.equal(index.add(s), s);
  assert.equal(index.size, 3, "a `-` job with no data has no key");
  assert.equal(index.get(1, enc.encode("u1"), EMPTY), a);
  assert.equal(index.get(2, enc.encode("u1"), EMPTY), b);
  assert.equal(index.get(3, enc.encode("u1"), EMPTY), 0);
  assert.equal(index.get(1, enc.encode("-"), enc.encode("payload")), c);
  assert.equal(index.get(1, enc.encode("-"), enc.encode("other")), 0);
  assert.equal(index.get(1, enc.encode("-"), EMPTY), 0);
  assert.equal(index.get(1, enc.encode("payload"), EMPTY), 0, "a unique id is not a `-` key");
  // A second job with a taken key: add reports the holder and indexes nothing.
  const dup = jobs.add(1, 1, true, enc.encode("u1"), enc.encode("z"));
  assert.equal(index.add(dup), a);
  assert.equal(index.size, 3);
  index.delete(dup); // not the one indexed: nothing happens
  assert.equal(index.get(1, enc.encode("u1"), EMPTY), a);
  index.delete(a);
  assert.equal(index.get(1, enc.encode("u1"), EMPTY), 0);
  assert.equal(hasUniqueKey(enc.encode("-"), EMPTY), false);
  assert.equal(hasUniqueKey(EMPTY, enc.encode("d")), false);
});

Deno.test("unique index: 20,000 random adds and deletes across growth agree with a Map", () => {
  const jobs = new JobTable();
  const index = new UniqueIndex(jobs);
  const model = new Map<string, number>();
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const live: number[] = [];
  for (let step = 0; step < 20_000; step++) {
    if (live.length > 0 && rand(3) === 0) {
      const i = rand(live.length);
      const slot = live[i]!;
      live[i] = live[live.length - 1]!;
      live.pop();
      const key = `${jobs.fn[slot]}/${new TextDecoder().decode(jobs.unique(slot))}`;
      index.delete(slot);
      if (model.get(key) === slot) model.delete(key);
      jobs.free(slot);
    } else {
      const fn = 1 + rand(3);
      const u = `k${rand(3000)}`;
      const slot = jobs.add(fn, 1, true, enc.encode(u), enc.encode("d"));
      live.push(slot);
      const holder = index.add(slot);
      const key = `${fn}/${u}`;
      const expected = model.get(key);
      if (expected === undefined) {
        model.set(key, slot);
        assert.equal(holder, slot);
      } else assert.equal(holder, expected, `step ${step}: ${key}`);
    }
    if (step % 997 === 0 || step === 19_999) {
      assert.equal(index.size, model.size, `size at step ${step}`);
      for (const [key, slot] of model) {
        const [fn, u] = key.split("/");
        assert.equal(index.get(Number(fn), enc.encode(u!), EMPTY), slot, `${key} at step ${step}`);
      }
    }
  }
});
