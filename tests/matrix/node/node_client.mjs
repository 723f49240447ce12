// Runs the matrix checks of one npm Gearman library under Node.
//
// usage: node node_client.mjs gearman|node-gearman CONFIG_JSON
//
// The library comes from this directory's node_modules (package.json pins
// the exact versions; tests/matrix/matrix_test.ts runs `npm install`).

import { createRequire } from "node:module";
import process from "node:process";
import { drive } from "./drive.mjs";
import gearmanDriver from "./gearman_checks.mjs";
import nodeGearmanDriver from "./node_gearman_checks.mjs";

const drivers = { "gearman": gearmanDriver, "node-gearman": nodeGearmanDriver };
const [name, configJson] = process.argv.slice(2);
const driver = drivers[name];
if (!driver || !configJson) {
  process.stderr.write("usage: node node_client.mjs gearman|node-gearman CONFIG_JSON\n");
  process.exit(2);
}
const require = createRequire(import.meta.url);
await drive(driver, require(name), JSON.parse(configJson));
