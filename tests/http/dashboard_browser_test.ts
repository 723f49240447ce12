// The dashboard in a real browser: headless Chromium (Debian's package,
// driven by npm:playwright-core) opens the page of a server with jobs
// flowing, checks that it shows the functions, numbers and workers the
// API reports, and takes a screenshot for the docs.
//
// Needs /usr/bin/chromium (`apt-get install -y chromium`). Without it the
// test is skipped with a notice, except in CI (env CI set), where it fails.
// The screenshot is written to docs/dashboard.png when that file is
// missing or UPDATE_SCREENSHOT=1 is set (so a test run does not dirty the
// tree); otherwise it is checked and thrown away.

import assert from "node:assert/strict";
import { Client } from "../../client.ts";
import { Worker } from "../../worker.ts";
import type { ApiStatus, ApiWorkers } from "../../server.ts";
import { PostgresJobStore } from "../../postgres.ts";
import { postgresBin, startPostgres } from "../_postgres.ts";
import { baseUrl, gearmanAddress, getJson, startHttpServer } from "./_http.ts";

const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = new URL("../../docs/dashboard.png", import.meta.url);
/** Seconds of varying load before the screenshot. */
const LOAD_SECONDS = Number(Deno.env.get("DASHBOARD_LOAD_SECONDS") ?? "20");

function exists(path: string | URL): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

const haveChromium = exists(CHROMIUM);
const inCi = (Deno.env.get("CI") ?? "") !== "";
if (!haveChromium && !inCi) {
  console.warn(
    `dashboard_browser_test: skipped: ${CHROMIUM} not found (apt-get install -y chromium); ` +
      "in CI (env CI set) this test is required",
  );
}

/** The little of the DOM the page callbacks use (they run in the browser; no DOM lib here). */
interface El {
  readonly dataset: Record<string, string | undefined>;
  readonly textContent: string | null;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): Iterable<El>;
}
declare const document: { body: El };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "dashboard: headless Chromium shows the functions, numbers and workers the API reports",
  ignore: !haveChromium && !inCi,
  async fn() {
    assert.ok(haveChromium, `${CHROMIUM} is required in CI: apt-get install -y chromium`);
    const { chromium } = await import("npm:playwright-core@1.65.1");

    await using server = startHttpServer({ handleHost: "demo" });
    const servers = [gearmanAddress(server)];
    const pause = (min: number, max: number) => sleep(min + Math.random() * (max - min));
    await using resize = new Worker({ servers, concurrency: 3, clientId: "resizer-1" });
    resize.register("resize", async (job) => {
      await pause(5, 30);
      return job.data;
    });
    resize.register("thumbnail", async (job) => {
      await pause(2, 10);
      return job.data;
    });
    resize.start();
    await using thumbs = new Worker({ servers, concurrency: 2, clientId: "thumbnailer-1" });
    thumbs.register("thumbnail", async (job) => {
      await pause(2, 12);
      return job.data;
    });
    thumbs.start();
    let reports = 0;
    await using reporter = new Worker({ servers, clientId: "reports" });
    reporter.register("report", async () => {
      await pause(10, 40);
      if (++reports % 7 === 0) throw new Error("report failed");
      return "ok";
    });
    reporter.start();
    await using client = new Client({ servers });
    await using bulk = new Client({ servers });

    const userDataDir = await Deno.makeTempDir({ prefix: "gearman-chromium-" });
    const context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    try {
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (err: Error) => errors.push(err.message));
      page.on("console", (msg: { type(): string; text(): string }) => {
        if (msg.type() === "error") errors.push(msg.text());
      });
      await page.goto(baseUrl(server) + "/");

      // Jobs flowing at a rate that rises and falls, past what the workers
      // can take at the peak, so queues and waits grow and drain.
      const pending: Promise<unknown>[] = [];
      const start = Date.now();
      let tick = 0;
      while (Date.now() - start < LOAD_SECONDS * 1000) {
        const phase = (Date.now() - start) / 1000;
        const perTick = Math.round(6 + 7 * Math.sin(phase / 2));
        for (let i = 0; i < perTick; i++) {
          pending.push(client.run("resize", `img-${tick}-${i}`).catch(() => {}));
          if (i % 2 === 0) pending.push(client.run("thumbnail", `t-${tick}-${i}`).catch(() => {}));
        }
        if (tick % 4 === 0) pending.push(client.run("report", `r-${tick}`).catch(() => {}));
        if (tick % 10 === 0) {
          await bulk.submit("email", `mail-${tick}`, { background: true }).handle;
        }
        tick++;
        await sleep(50);
      }
      // Some queued work in a function nobody serves, by priority.
      await bulk.submit("email", "urgent", { background: true, priority: "high" }).handle;
      await bulk.submit("email", "later", { background: true, priority: "low" }).handle;

      const shot = await page.screenshot({ fullPage: true });
      assert.ok(shot.length > 10_000, "a real screenshot");
      assert.deepEqual([...shot.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      if (!exists(SCREENSHOT) || Deno.env.get("UPDATE_SCREENSHOT") === "1") {
        await Deno.writeFile(SCREENSHOT, shot);
        console.log(`dashboard_browser_test: wrote ${SCREENSHOT.pathname}`);
      }

      // Let the load finish: now the numbers hold still.
      await Promise.all(pending);
      const status = await getJson<ApiStatus>(server, "/api/status");
      const workers = await getJson<ApiWorkers>(server, "/api/workers");
      await page.waitForFunction(
        (t: number) => Number(document.body.dataset.updated ?? 0) > t,
        status.server.time,
        { timeout: 5000 },
      );

      // The functions table: one row per function, with the API's numbers.
      const rows = await page.$$eval("#functions tbody tr", (trs: El[]) =>
        trs.map((tr) => {
          const cell = (col: string) => tr.querySelector(`[data-col="${col}"]`)?.dataset.value;
          return {
            name: tr.dataset.function,
            shownName: tr.querySelector('[data-col="name"]')?.textContent,
            queued: Number(cell("queued")),
            running: Number(cell("running")),
            workers: Number(cell("workers")),
            completed: Number(cell("completed")),
            failed: Number(cell("failed")),
          };
        }));
      assert.deepEqual(
        rows,
        status.functions.map((f) => ({
          name: f.name,
          shownName: f.name,
          queued: f.queued.high + f.queued.normal + f.queued.low,
          running: f.running,
          workers: f.workers,
          completed: f.completed,
          failed: f.failed + f.exceptions,
        })),
      );
      assert.deepEqual(rows.map((r: { name: string }) => r.name), [
        "email",
        "report",
        "resize",
        "thumbnail",
      ]);
      const email = status.functions.find((f) => f.name === "email")!;
      assert.ok(email.queued.normal > 0 && email.queued.high === 1 && email.queued.low === 1);
      assert.ok(status.functions.find((f) => f.name === "resize")!.completed > 50);
      assert.ok(status.functions.find((f) => f.name === "report")!.exceptions > 0);

      // The headline numbers.
      const kpi = async (id: string) => Number(await page.getAttribute(`#${id}`, "data-value"));
      assert.equal(await kpi("kpi-queued"), status.totals.queued);
      assert.equal(await kpi("kpi-running"), status.totals.running);
      assert.equal(await kpi("kpi-workers"), status.connections.workers);
      assert.equal(await kpi("kpi-clients"), status.connections.clients);
      assert.equal(await kpi("kpi-completed"), status.totals.completed);
      assert.equal(await kpi("kpi-failed"), status.totals.failed + status.totals.exceptions);
      assert.equal(await page.textContent("#state"), "ready");
      assert.equal(await page.textContent("#address"), status.server.address);

      // The workers table.
      const shownWorkers = await page.$$eval(
        "#workers tbody tr",
        (trs: El[]) =>
          trs.map((tr) => ({
            clientId: tr.querySelector('[data-col="client-id"]')?.textContent,
            functions: [...tr.querySelectorAll('[data-col="functions"] .tag')].map((t) =>
              t.textContent
            ),
          })),
      );
      assert.deepEqual(
        shownWorkers,
        workers.connections.filter((c) => c.kind === "worker").map((c) => ({
          clientId: c.clientId,
          functions: c.functions,
        })),
      );
      assert.equal(shownWorkers.length, 3);

      // The charts have lines.
      const throughput = await page.getAttribute(
        '#chart-throughput path[data-series="completed"]',
        "d",
      );
      assert.match(throughput ?? "", /^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+/);
      const wait = await page.getAttribute('#chart-wait path[data-series="wait"]', "d");
      assert.match(wait ?? "", /^M/);
      // Not a cluster: no cluster section.
      assert.equal(status.cluster, null);
      assert.equal(await page.isHidden("#cluster"), true);
      assert.deepEqual(errors, [], "no errors in the page");
    } finally {
      await context.close();
      await Deno.remove(userDataDir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "dashboard: on a Postgres store it shows the cluster's servers and shared queue as /api/status reports them",
  ignore: (!haveChromium && !inCi) || postgresBin() === undefined,
  async fn() {
    assert.ok(haveChromium, `${CHROMIUM} is required in CI: apt-get install -y chromium`);
    const { chromium } = await import("npm:playwright-core@1.65.1");
    const pg = await startPostgres();
    try {
      const url = await pg.createDatabase("gearman_dashboard");
      const store = await PostgresJobStore.open(url, { name: "dashboard-test" });
      await using server = startHttpServer({ handleHost: "demo", store });
      await using client = new Client({ servers: [gearmanAddress(server)] });
      // Background jobs nobody serves wait in the shared queue, by priority.
      for (const priority of ["high", "normal", "normal", "low"] as const) {
        await client.submit("shared", `s-${priority}`, { background: true, priority }).handle;
      }
      const userDataDir = await Deno.makeTempDir({ prefix: "gearman-chromium-" });
      const context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
      });
      try {
        const page = await context.newPage();
        const errors: string[] = [];
        page.on("pageerror", (err: Error) => errors.push(err.message));
        await page.goto(baseUrl(server) + "/");
        // The shared queue's figures refresh every heartbeat: wait until the API has them.
        let status: ApiStatus;
        for (;;) {
          status = await getJson<ApiStatus>(server, "/api/status");
          if (status.cluster?.functions.some((f) => f.name === "shared")) break;
          await sleep(100);
        }
        await page.waitForFunction(
          (t: number) => Number(document.body.dataset.updated ?? 0) > t,
          status.server.time,
          { timeout: 5000 },
        );
        assert.equal(await page.isHidden("#cluster"), false);
        const servers = await page.$$eval(
          "#cluster-servers tbody tr",
          (trs: El[]) =>
            trs.map((tr) => ({
              id: Number(tr.dataset.server),
              name: tr.querySelector('[data-col="name"]')?.textContent,
            })),
        );
        assert.deepEqual(servers, [{
          id: store.serverId,
          name: `${status.cluster!.servers[0]!.name} (this server)`,
        }]);
        const shared = await page.$$eval(
          "#cluster-functions tbody tr",
          (trs: El[]) =>
            trs.map((tr) => ({
              name: tr.dataset.function,
              queued: Number(tr.querySelector('[data-col="queued"]')?.dataset.value),
              priorities: tr.querySelector('[data-col="priorities"]')?.textContent,
              held: Number(tr.querySelector('[data-col="held"]')?.dataset.value),
            })),
        );
        assert.deepEqual(shared, [{ name: "shared", queued: 4, priorities: "1 · 2 · 1", held: 0 }]);
        assert.deepEqual(errors, [], "no errors in the page");
      } finally {
        await context.close();
        await Deno.remove(userDataDir, { recursive: true });
      }
    } finally {
      await pg.stop();
    }
  },
});
