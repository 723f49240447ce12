// The interop matrix: every client library x {our server, C++ gearmand}, six
// checks per cell (submit, background, status, fail, exception, large
// payload). A cell passes, or is one of the cells `LIMITS` documents with
// the upstream reason it cannot pass; anything else fails the test.
//
//   deno test -A --trace-leaks tests/matrix/
//
// A library that is not installed (or cannot be installed: the npm packages
// need the npm registry) is skipped with a printed reason, except when CI is
// set: then every cell must run. The last test prints the matrix; with
// MATRIX_MARKDOWN=FILE it also writes it there as Markdown.

import assert from "node:assert/strict";
import { GEARMAND, startGearmand, startOurServer, type Target } from "../interop/_harness.ts";
import {
  type Cell,
  type Check,
  CHECKS,
  IN_CI,
  judge,
  LARGE_SIZE,
  LIBRARIES,
  type Library,
  type Limit,
  limitFor,
  makeConfig,
  type Setup,
  setupGearmand,
  startMatrixWorker,
} from "./_matrix.ts";

/** The servers, in column order. */
const SERVERS: ReadonlyArray<readonly ["ours" | "gearmand", () => Promise<Target>]> = [
  ["ours", startOurServer],
  ["gearmand", startGearmand],
];

/** One judged row: a library against a server. */
interface Row {
  lib: Library;
  version: string;
  server: string;
  cells: Record<Check, Cell & { limit?: Limit }>;
}

const rows: Row[] = [];
const skipped: string[] = [];

// Install and probe every library once, before the tests are registered.
const setups = new Map<string, Setup>(
  await Promise.all(LIBRARIES.map(async (lib) => [lib.id, await lib.setup()] as const)),
);
const gearmand = await setupGearmand();

for (const lib of LIBRARIES) {
  const setup = setups.get(lib.id)!;
  for (const [server, start] of SERVERS) {
    const missing = !setup.ok
      ? setup.reason
      : server === "gearmand" && !gearmand.ok
      ? gearmand.reason
      : undefined;
    if (missing !== undefined && !IN_CI) {
      const why = `interop matrix: skipping ${lib.name} x ${server}: ${missing}`;
      console.warn(why);
      skipped.push(why);
    }
    Deno.test({
      name: `interop matrix: ${lib.name} x ${server}`,
      ignore: missing !== undefined && !IN_CI,
      async fn(t) {
        if (missing !== undefined) {
          throw new Error(`${missing} (CI is set: every matrix cell must run)`);
        }
        await using target = await start();
        await using worker = await startMatrixWorker(target.port);
        const config = makeConfig(target.port, `${lib.id}-${server}`);
        const observations = await lib.observe(target, config);
        const row: Row = {
          lib,
          version: (setup as { version: string }).version,
          server,
          cells: {} as Row["cells"],
        };
        for (const check of CHECKS) {
          const cell = await judge(lib, check, observations[check], worker, config);
          const limit = limitFor(lib.id, check, server);
          row.cells[check] = limit ? { ...cell, limit } : cell;
        }
        rows.push(row);
        for (const check of CHECKS) {
          const cell = row.cells[check];
          await t.step(check, () => {
            const limit = cell.limit;
            if (!limit) {
              assert.equal(
                cell.outcome,
                "pass",
                `${lib.name} x ${server}: ${check}: ${cell.detail}`,
              );
              return;
            }
            assert.equal(
              cell.outcome,
              limit.outcome,
              `${lib.name} x ${server}: ${check} is documented as "${limit.outcome}" ` +
                `(${limit.reason}) but was "${cell.outcome}": ${cell.detail}` +
                (cell.outcome === "pass" ? " (fixed upstream? update LIMITS)" : ""),
            );
            if (limit.match) {
              assert.match(
                cell.detail,
                limit.match,
                `${lib.name} x ${server}: ${check} failed otherwise than documented`,
              );
            }
          });
        }
      },
    });
  }
}

/** The matrix as Markdown: a row per library x server, notes for the limited cells. */
function markdown(): string {
  const notes: string[] = [];
  const note = (reason: string) => {
    let i = notes.indexOf(reason);
    if (i < 0) i = notes.push(reason) - 1;
    return `[${i + 1}]`;
  };
  const header = [
    "client library",
    "server",
    ...CHECKS.map((c) => c === "large" ? `large (${LARGE_SIZE >> 20} MiB)` : c),
  ];
  const lines = [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
  ];
  for (const row of rows) {
    const cells = CHECKS.map((check) => {
      const cell = row.cells[check];
      if (cell.limit && cell.outcome === cell.limit.outcome) {
        return `${cell.outcome === "n/a" ? "n/a" : "upstream"} ${note(cell.limit.reason)}`;
      }
      if (cell.outcome === "pass") return cell.detail;
      return `**FAIL**: ${cell.detail.replaceAll("|", "\\|").slice(0, 200)}`;
    });
    const server = row.server === "gearmand" && gearmand.ok ? gearmand.version : row.server;
    lines.push(`| ${row.lib.name} (${row.version}) | ${server} | ${cells.join(" | ")} |`);
  }
  lines.push("");
  notes.forEach((reason, i) => lines.push(`[${i + 1}] ${reason}`));
  return lines.join("\n") + "\n";
}

Deno.test({
  name: "interop matrix: print the table",
  async fn() {
    if (rows.length === 0) {
      console.log("interop matrix: no cell ran");
      return;
    }
    const table = markdown();
    console.log(`\nInterop matrix (${new Date().toISOString()}, ${GEARMAND}):\n\n${table}`);
    for (const why of skipped) console.log(why);
    const out = Deno.env.get("MATRIX_MARKDOWN");
    if (out) await Deno.writeTextFile(out, table);
  },
});
