import assert from "node:assert/strict";
import { acceptConnections, logAcceptFailures } from "./accept_loop.ts";

/** A listener whose accepts give what `script` says, in order, then end as a closed one does. */
function scripted(script: (Error | string)[]): Deno.Listener {
  return {
    accept(): Promise<Deno.Conn> {
      const next = script.shift();
      if (next === undefined) return Promise.reject(new Deno.errors.BadResource("closed"));
      if (next instanceof Error) return Promise.reject(next);
      return Promise.resolve({ remoteAddr: { hostname: next } } as unknown as Deno.Conn);
    },
  } as unknown as Deno.Listener;
}

Deno.test("acceptConnections: a failed accept is reported and tried again, with a growing pause", async () => {
  const emfile = new Error("Too many open files (os error 24)");
  const accepted: string[] = [];
  const pauses: number[] = [];
  await acceptConnections(scripted(["a", emfile, emfile, emfile, "b", emfile, "c"]), {
    connection: (conn) => accepted.push((conn.remoteAddr as Deno.NetAddr).hostname),
    failed: (err, retryMs) => {
      assert.equal(err, emfile);
      pauses.push(retryMs);
    },
    closing: () => false,
  });
  assert.deepEqual(accepted, ["a", "b", "c"]);
  // 10, 20, 40 ms while failures go on; back to 10 after a success.
  assert.deepEqual(pauses, [10, 20, 40, 10]);
});

Deno.test("acceptConnections: a listener closed on purpose ends the loop without a report", async () => {
  const failures: Error[] = [];
  await acceptConnections(scripted(["a", new Error("interrupted by close")]), {
    connection: () => {},
    failed: (err) => failures.push(err),
    closing: () => true,
  });
  assert.deepEqual(failures, []);
});

Deno.test("acceptConnections: a connection whose setup throws is closed and reported; the next is accepted", async () => {
  const closed: string[] = [];
  const listener = scripted(["bad", "good"]);
  const accept = listener.accept.bind(listener);
  listener.accept = async () => {
    const conn = await accept();
    const name = (conn.remoteAddr as Deno.NetAddr).hostname;
    return { ...conn, remoteAddr: conn.remoteAddr, close: () => closed.push(name) } as Deno.Conn;
  };
  const accepted: string[] = [];
  const failures: [string, number][] = [];
  await acceptConnections(listener, {
    connection: (conn) => {
      const name = (conn.remoteAddr as Deno.NetAddr).hostname;
      if (name === "bad") throw new Error("Socket is not connected (os error 107)");
      accepted.push(name);
    },
    failed: (err, retryMs) => failures.push([err.message, retryMs]),
    closing: () => false,
  });
  assert.deepEqual(accepted, ["good"]);
  assert.deepEqual(closed, ["bad"]);
  assert.deepEqual(failures, [["Socket is not connected (os error 107)", 0]]);
});

Deno.test("logAcceptFailures: at most a line a second, each saying how many failures it stands for", () => {
  const lines: [string, Record<string, unknown>][] = [];
  let now = 0;
  const failed = logAcceptFailures(
    { error: (message, properties) => lines.push([message, properties]) },
    "a Gearman connection",
    () => now,
  );
  const emfile = new Error("Too many open files (os error 24)");
  for (const [at, retryMs] of [[0, 10], [10, 20], [30, 40], [999, 10], [1000, 20], [2500, 10]]) {
    now = at!;
    failed(emfile, retryMs!);
  }
  assert.deepEqual(lines.map(([, p]) => [p.failures, p.retryMs]), [[1, 10], [4, 20], [1, 10]]);
  assert.equal(
    lines[0]![0],
    "Accepting a Gearman connection failed: {error}; trying again in {retryMs} ms " +
      "({failures} failure(s) since the last such line). " +
      "With too many open files, raise the limit (ulimit -n) or set --max-connections below it",
  );
  assert.equal(lines[0]![1].error, "Too many open files (os error 24)");
});
