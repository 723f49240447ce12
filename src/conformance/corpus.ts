/**
 * The conformance corpus: every scenario, loaded from the JSON files in
 * `scenarios/` (imported as modules, so no read permission is needed).
 *
 * @module
 */

import { DIFFERENCES } from "./differences.ts";
import { parseStep, type Scenario, ScenarioSyntaxError } from "./scenario.ts";
import admin from "./scenarios/admin.json" with { type: "json" };
import coalesce from "./scenarios/coalesce.json" with { type: "json" };
import epoch from "./scenarios/epoch.json" with { type: "json" };
import errors from "./scenarios/errors.json" with { type: "json" };
import extensions from "./scenarios/extensions.json" with { type: "json" };
import maxqueue from "./scenarios/maxqueue.json" with { type: "json" };
import packets from "./scenarios/packets.json" with { type: "json" };
import priority from "./scenarios/priority.json" with { type: "json" };
import relay from "./scenarios/relay.json" with { type: "json" };
import status from "./scenarios/status.json" with { type: "json" };
import workers from "./scenarios/workers.json" with { type: "json" };

const FILES: Record<string, unknown[]> = {
  packets,
  coalesce,
  priority,
  workers,
  relay,
  status,
  epoch,
  maxqueue,
  admin,
  errors,
  extensions,
};

/**
 * Every scenario of the corpus, checked: names are unique, steps parse,
 * and `differs` names a known difference.
 *
 * @returns The scenarios, in file order.
 * @throws {ScenarioSyntaxError} When a scenario is malformed.
 *
 * @example Count and filter the corpus
 * ```ts
 * import { loadCorpus } from "@x/gearman/conformance";
 * import assert from "node:assert/strict";
 *
 * const corpus = loadCorpus();
 * assert.ok(corpus.length >= 150);
 * assert.ok(corpus.some((s) => s.name.startsWith("coalesce:")));
 * ```
 */
export function loadCorpus(): Scenario[] {
  const out: Scenario[] = [];
  const names = new Set<string>();
  for (const [file, list] of Object.entries(FILES)) {
    for (const raw of list) {
      const s = { ...(raw as Scenario), file };
      const where = `scenarios/${file}.json "${s.name}"`;
      if (typeof s.name !== "string" || typeof s.checks !== "string" || !Array.isArray(s.steps)) {
        throw new ScenarioSyntaxError(`${where}: needs "name", "checks" and "steps"`);
      }
      if (names.has(s.name)) throw new ScenarioSyntaxError(`${where}: duplicate name`);
      names.add(s.name);
      if (s.differs !== undefined && !DIFFERENCES.some((d) => d.id === s.differs)) {
        throw new ScenarioSyntaxError(`${where}: unknown difference "${s.differs}"`);
      }
      const steps = s.steps.map((st, i) => {
        try {
          return parseStep(st, i);
        } catch (err) {
          throw new ScenarioSyntaxError(`${where}: ${(err as Error).message}`);
        }
      });
      if (steps.some((st) => st.kinds !== undefined) && s.differs === undefined) {
        throw new ScenarioSyntaxError(`${where}: has per-server steps but no "differs"`);
      }
      out.push(s);
    }
  }
  return out;
}
