// Which server a job with a unique id goes to: "perl" selection matches
// Perl's Gearman::Client (so both coalesce on the same server), and
// "consistent" selection keeps a unique on its server whatever the order of
// the list, moving only the uniques of a removed server.

import assert from "node:assert/strict";
import { AdminClient, Client } from "../../client.ts";
import {
  addr,
  assertSucceeded,
  HAVE_PERL,
  PEERS,
  run,
  startOurs,
  type Target,
} from "./_servers.ts";

const UNIQUES = Array.from({ length: 40 }, (_, i) => `order-${i * 7919}`);

/** Unique ids of the jobs each server holds. */
async function placements(targets: Target[]): Promise<string[][]> {
  return await Promise.all(targets.map(async (t) => {
    await using admin = await AdminClient.connect(addr(t), { timeoutMs: 3000 });
    return await admin.showUniqueJobs();
  }));
}

/** Submit a background job per unique; return, per unique, the index of its server. */
async function place(
  servers: Target[],
  order: Target[],
  selection: "perl" | "consistent",
  fn: string,
): Promise<Map<string, number>> {
  const before = await placements(servers);
  await using client = new Client({ servers: order.map(addr), selection });
  await Promise.all(
    UNIQUES.map((u) => client.submit(fn, "x", { background: true, unique: u }).handle),
  );
  const after = await placements(servers);
  // "show unique jobs" lists one line per job: a server whose count of a
  // unique grew got the new job.
  const count = (list: string[]) => {
    const m = new Map<string, number>();
    for (const u of list) m.set(u, (m.get(u) ?? 0) + 1);
    return m;
  };
  const where = new Map<string, number>();
  after.forEach((list, i) => {
    const was = count(before[i]!);
    for (const [u, n] of count(list)) {
      if (n > (was.get(u) ?? 0)) {
        assert.ok(!where.has(u), `${u} went to two servers`);
        where.set(u, i);
      }
    }
  });
  return where;
}

Deno.test({
  name: 'selection "perl": a unique goes to the same server as from Perl\'s Gearman::Client',
  ignore: !HAVE_PERL,
  async fn() {
    await using a = await startOurs();
    await using b = await startOurs();
    await using c = await startOurs();
    const servers = [a, b, c];
    const r = await run(
      "perl",
      [`${PEERS}perl_place.pl`, servers.map(addr).join(","), ...UNIQUES],
      {
        timeoutMs: 20000,
      },
    );
    assertSucceeded(r, "perl_place.pl");
    assert.equal(r.stdout, `dispatched ${UNIQUES.length}\n`);
    const perl = new Map<string, number>();
    (await placements(servers)).forEach((list, i) => list.forEach((u) => perl.set(u, i)));
    assert.equal(perl.size, UNIQUES.length);
    // Perl spreads them over all three servers.
    assert.equal(new Set(perl.values()).size, 3);

    const ours = await place(servers, servers, "perl", "denoplace");
    assert.equal(ours.size, UNIQUES.length);
    const differ = UNIQUES.filter((u) => ours.get(u) !== perl.get(u));
    assert.deepEqual(differ, [], "uniques our client placed differently from Perl's");
  },
});

Deno.test('selection "consistent": order-independent, and a removed server moves only its uniques', async () => {
  await using a = await startOurs();
  await using b = await startOurs();
  await using c = await startOurs();
  const all = [a, b, c];
  const first = await place(all, [a, b, c], "consistent", "f1");
  assert.equal(first.size, UNIQUES.length);
  assert.equal(new Set(first.values()).size, 3, "spread over every server");
  // The same list in another order: the same placement.
  const reordered = await place(all, [c, a, b], "consistent", "f2");
  assert.deepEqual([...reordered].sort(), [...first].sort());
  // Without c: uniques that were on a or b stay there.
  const two = await place(all, [a, b], "consistent", "f3");
  for (const u of UNIQUES) {
    const was = first.get(u)!;
    const now = two.get(u)!;
    assert.ok(now === 0 || now === 1);
    if (was !== 2) assert.equal(now, was, `${u} moved from server ${was} to ${now}`);
  }
  // Jobs without a unique go round robin: every server gets some.
  await using client = new Client({ servers: all.map(addr) });
  await Promise.all(
    Array.from({ length: 9 }, () => client.submit("rr", "x", { background: true }).handle),
  );
  for (const t of all) {
    await using admin = await AdminClient.connect(addr(t), { timeoutMs: 3000 });
    assert.equal((await admin.status()).find((s) => s.function === "rr")?.total, 3);
  }
});
