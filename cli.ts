/**
 * A command line with the flags of the `gearman` and `gearadmin` tools, so
 * scripts written for them can switch:
 *
 * ```sh
 * # client: run a job (data from stdin when no argument is given)
 * echo hello | deno run -N jsr:@x/gearman/cli -h 127.0.0.1 -p 4730 -f reverse
 * # worker: run `rev` for each job of function "reverse"
 * deno run -N --allow-run jsr:@x/gearman/cli -w -f reverse -- rev
 * # admin, as gearadmin
 * deno run -N jsr:@x/gearman/cli --status
 * ```
 *
 * Wrong usage prints the help and exits with code 2; a job that fails or a
 * server that cannot be reached exits with code 1.
 *
 * @example Print the usage from code
 * ```ts
 * import { CLI_USAGE } from "@x/gearman/cli";
 * import assert from "node:assert/strict";
 *
 * assert.match(CLI_USAGE, /-w             run in worker mode/);
 * ```
 *
 * @module
 */

import { runGearmanCli } from "./src/cli/gearman_cli.ts";

export { CLI_USAGE, type CliIo, runGearmanCli } from "./src/cli/gearman_cli.ts";

if (import.meta.main) {
  Deno.exit(await runGearmanCli(Deno.args));
}
