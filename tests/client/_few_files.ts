// Run by file_limit_test.ts under `prlimit --nofile=N`, with a server
// address as its argument: a Client and a Worker in a process whose file
// descriptors are all taken, then freed. Prints one JSON line: the error
// the first run gave, and how the runs after freeing went.

import { Client } from "../../client.ts";
import { Worker } from "../../worker.ts";

const servers = [Deno.args[0]!];
const files: Deno.FsFile[] = [];
try {
  for (;;) files.push(Deno.openSync("/dev/null"));
} catch {
  // EMFILE: every descriptor is taken now.
}
const worker = new Worker({ servers });
worker.register("reverse", (job) => [...job.text()].reverse().join(""));
worker.start();
const client = new Client({ servers });
let refused = "";
try {
  await client.run("reverse", "abc", { signal: AbortSignal.timeout(5000) });
} catch (err) {
  refused = (err as Error).message;
}
for (const f of files.splice(0, 8)) f.close();
// Once descriptors are free, the client and the worker connect again (each
// after its backoff): a run succeeds within seconds.
let result = "";
let attempts = 0;
const deadline = Date.now() + 15_000;
while (result === "" && Date.now() < deadline) {
  attempts++;
  try {
    result = (await client.run("reverse", "abc", { signal: AbortSignal.timeout(5000) })).text();
  } catch {
    await new Promise((r) => setTimeout(r, 200));
  }
}
console.log(JSON.stringify({ refused, result, attempts }));
await client.close();
await worker.stop();
for (const f of files) f.close();
