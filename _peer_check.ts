import { startPostgres } from "./tests/_postgres.ts";
import { ServerProcess } from "./tests/store/_process.ts";

const pg = await startPostgres();
const url = await pg.createDatabase("peers");
const servers = await Promise.all(
  [0, 1, 2].map(() => ServerProcess.start({ args: ["--store", url] })),
);
const ports = servers.map((s) => s.port);
const php = `
$c = new GearmanClient();
foreach ([${ports.join(",")}] as $p) $c->addServer("127.0.0.1", $p);
for ($i = 0; $i < 300; $i++) {
  $h = $c->doBackground("peerfn", "job-$i", "uniq-" . ($i % 200));
  if ($c->returnCode() != GEARMAN_SUCCESS) { echo "ERR ", $c->error(), "\\n"; exit(1); }
}
`;
await new Deno.Command("php", { args: ["-r", php] }).output();
const status = async (i: number) =>
  new TextDecoder().decode(
    (await new Deno.Command("gearadmin", {
      args: ["-h", "127.0.0.1", "-p", String(ports[i]), "--status"],
      stdout: "piped",
    }).output()).stdout,
  ).trim();
const rows = async () => (await pg.psql("SELECT count(*) FROM gearman_jobs", "peers")).trim();
console.log("rows", await rows());
for (const ms of [0, 50, 300, 1200]) {
  await new Promise((r) => setTimeout(r, ms));
  console.log(`status on server 2 after ${ms} ms more:`, JSON.stringify(await status(1)));
}
for (const s of servers) await s[Symbol.asyncDispose]();
await pg.stop();
