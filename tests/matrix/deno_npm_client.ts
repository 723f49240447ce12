// Runs the matrix checks of one npm Gearman library under Deno, loaded
// through an `npm:` specifier (the same check code as under Node).
//
// usage: deno run -A --no-lock deno_npm_client.ts npm:gearman@2.1.0 CONFIG_JSON
//
// The specifier is a command-line argument, imported dynamically, so
// `deno check` and `deno test` never resolve it (and never touch deno.lock).

import { drive } from "./node/drive.mjs";
import gearmanDriver from "./node/gearman_checks.mjs";
import nodeGearmanDriver from "./node/node_gearman_checks.mjs";

const drivers: Record<string, unknown> = {
  "gearman": gearmanDriver,
  "node-gearman": nodeGearmanDriver,
};

const [specifier, configJson] = Deno.args;
const name = specifier?.match(/^npm:(.+)@[^@]+$/)?.[1];
if (specifier === undefined || configJson === undefined || name === undefined || !drivers[name]) {
  console.error("usage: deno_npm_client.ts npm:gearman@X|npm:node-gearman@X CONFIG_JSON");
  Deno.exit(2);
}
const mod = await import(specifier);
await drive(drivers[name], mod.default ?? mod, JSON.parse(configJson));
