// The dashboard: polls /api/status and /api/workers every second, keeps
// the last ten minutes of samples (seeded from /api/history), and draws
// the charts as SVG. No framework, no build step, nothing from a CDN.
// Every name from the server is written with textContent, never as HTML.

const POLL_MS = 1000;
const WINDOW_MS = 10 * 60 * 1000;
const MIN_WINDOW_MS = 30 * 1000;
const SVG = "http://www.w3.org/2000/svg";

/** Cumulative samples, oldest first: {t, submitted, completed, failed, queued, running, workers, waitCount, waitSumSeconds}. */
let samples = [];

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat("en-US");
const fmt1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

function count(n) {
  return fmt.format(n);
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 0.001) return `${fmt1.format(s * 1e6)} µs`;
  if (s < 1) return `${fmt1.format(s * 1000)} ms`;
  if (s < 120) return `${fmt1.format(s)} s`;
  return `${fmt1.format(s / 60)} min`;
}

function duration(s) {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  return `${m}m ${Math.floor(s % 60)}s`;
}

function setValue(id, value, text) {
  const el = $(id);
  el.dataset.value = String(value);
  el.textContent = text ?? count(value);
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function numCell(value, col, text) {
  const td = el(
    "td",
    { class: value === 0 ? "num zero" : "num", "data-col": col },
    text ?? count(value),
  );
  td.dataset.value = String(value);
  return td;
}

function sampleOf(status) {
  const t = status.totals;
  return {
    t: status.server.time,
    submitted: t.submitted,
    completed: t.completed,
    failed: t.failed + t.exceptions,
    queued: t.queued,
    running: t.running,
    workers: status.connections.workers,
    waitCount: t.wait.count,
    waitSumSeconds: t.wait.sumSeconds,
  };
}

function addSample(s) {
  const last = samples[samples.length - 1];
  if (last !== undefined) {
    if (s.t <= last.t) return;
    // The server restarted under us: counters went back.
    if (s.submitted < last.submitted || s.completed < last.completed) samples = [];
  }
  samples.push(s);
  const cutoff = s.t - WINDOW_MS;
  while (samples.length > 2 && samples[0].t < cutoff) samples.shift();
}

/** Per-interval rates and means between consecutive samples. */
function derived() {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0) continue;
    const taken = b.waitCount - a.waitCount;
    out.push({
      t: b.t,
      submitted: (b.submitted - a.submitted) / dt,
      completed: (b.completed - a.completed) / dt,
      failed: (b.failed - a.failed) / dt,
      wait: taken > 0 ? ((b.waitSumSeconds - a.waitSumSeconds) / taken) * 1000 : null,
      queued: b.queued,
      running: b.running,
    });
  }
  return out;
}

/** A round grid step so that four steps cover `v`. */
function niceStep(v) {
  const raw = v / 4;
  if (!(raw > 0)) return 0.25;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

/** Time axis ticks (ms before now) and their labels for a window of `span` ms. */
function timeTicks(span) {
  const steps = [10e3, 15e3, 30e3, 60e3, 120e3, 300e3];
  const step = steps.find((s) => span / s <= 6) ?? 300e3;
  const ticks = [];
  for (let ago = 0; ago <= span + 1; ago += step) {
    const label = ago === 0 ? "now" : ago < 60e3 ? `−${ago / 1000}s` : `−${ago / 60e3}m`;
    ticks.push([ago, label]);
  }
  return ticks;
}

function axisLabel(v) {
  if (v >= 1e6) return `${fmt1.format(v / 1e6)}M`;
  if (v >= 1e3) return `${fmt1.format(v / 1e3)}k`;
  return fmt1.format(v);
}

/** Draw line series [{key, label, color}] of `points` into an SVG. */
function drawChart(svg, legend, points, series, now) {
  const width = svg.clientWidth || 400;
  const height = svg.clientHeight || 180;
  const left = 44;
  const right = 8;
  const top = 8;
  const bottom = 20;
  const w = width - left - right;
  const h = height - top - bottom;
  const first = samples.length > 0 ? samples[0].t : now;
  const span = Math.min(WINDOW_MS, Math.max(MIN_WINDOW_MS, now - first));
  const t0 = now - span;
  let max = 0;
  for (const p of points) {
    for (const s of series) if (p[s.key] !== null && p[s.key] > max) max = p[s.key];
  }
  const step = niceStep(max);
  max = step * 4;
  const x = (t) => left + ((t - t0) / span) * w;
  const y = (v) => top + h - (v / max) * h;

  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  for (let i = 0; i <= 4; i++) {
    const v = step * i;
    const gy = y(v);
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("class", "grid");
    line.setAttribute("x1", String(left));
    line.setAttribute("x2", String(left + w));
    line.setAttribute("y1", String(gy));
    line.setAttribute("y2", String(gy));
    svg.append(line);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", String(left - 6));
    label.setAttribute("y", String(gy + 4));
    label.setAttribute("text-anchor", "end");
    label.textContent = axisLabel(v);
    svg.append(label);
  }
  for (const [ago, text] of timeTicks(span)) {
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", String(x(now - ago)));
    label.setAttribute("y", String(height - 4));
    label.setAttribute("text-anchor", ago === 0 ? "end" : ago >= span - 1 ? "start" : "middle");
    label.textContent = text;
    svg.append(label);
  }
  for (const s of series) {
    let d = "";
    let area = "";
    let run = [];
    const flush = () => {
      if (run.length === 0) return;
      d += run.map(([px, py], i) => `${i === 0 ? "M" : "L"}${px.toFixed(1)},${py.toFixed(1)}`).join(
        "",
      );
      if (s.fill) {
        area += `M${run[0][0].toFixed(1)},${y(0)}` +
          run.map(([px, py]) => `L${px.toFixed(1)},${py.toFixed(1)}`).join("") +
          `L${run[run.length - 1][0].toFixed(1)},${y(0)}Z`;
      }
      run = [];
    };
    for (const p of points) {
      if (p.t < t0) continue;
      const v = p[s.key];
      if (v === null) flush();
      else run.push([x(p.t), y(v)]);
    }
    flush();
    if (area !== "") {
      const a = document.createElementNS(SVG, "path");
      a.setAttribute("class", "area");
      a.setAttribute("d", area);
      a.setAttribute("fill", s.color);
      svg.append(a);
    }
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("class", "series");
    path.setAttribute("d", d);
    path.setAttribute("stroke", s.color);
    path.dataset.series = s.key;
    svg.append(path);
  }
  legend.replaceChildren(
    ...series.map((s) => {
      const item = el("span");
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = s.color;
      item.append(swatch, s.label);
      return item;
    }),
  );
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawCharts(now) {
  const points = derived();
  drawChart($("chart-throughput"), $("legend-throughput"), points, [
    { key: "submitted", label: "submitted", color: cssVar("--series-1") },
    { key: "completed", label: "completed", color: cssVar("--series-2"), fill: true },
    { key: "failed", label: "failed", color: cssVar("--series-3") },
  ], now);
  drawChart($("chart-wait"), $("legend-wait"), points, [
    { key: "wait", label: "mean wait (ms)", color: cssVar("--series-4"), fill: true },
  ], now);
  drawChart($("chart-depth"), $("legend-depth"), points, [
    { key: "queued", label: "queued", color: cssVar("--series-1"), fill: true },
    { key: "running", label: "running", color: cssVar("--series-2") },
  ], now);
}

function renderStatus(status) {
  const s = status.server;
  $("address").textContent = s.address;
  $("version").textContent = `v${s.version}`;
  $("uptime").textContent = `up ${duration(s.uptimeSeconds)}`;
  $("store").textContent = `store: ${s.store.description}${s.store.durable ? " (durable)" : ""}`;
  const state = $("state");
  state.textContent = s.ready ? "ready" : s.draining ? "draining" : "not ready";
  state.className = `pill ${s.ready ? "ready" : s.draining ? "draining" : "down"}`;

  const t = status.totals;
  setValue("kpi-queued", t.queued);
  setValue("kpi-running", t.running);
  setValue("kpi-workers", status.connections.workers);
  setValue("kpi-clients", status.connections.clients);
  setValue("kpi-completed", t.completed);
  setValue("kpi-failed", t.failed + t.exceptions);
  // Over the last 10 s, so the numbers do not flicker.
  const recent = samples.filter((x) => x.t >= s.time - 10_000);
  const a = recent[0];
  const b = recent[recent.length - 1];
  if (a !== undefined && b !== undefined && b.t > a.t) {
    const rate = (b.completed - a.completed) / ((b.t - a.t) / 1000);
    setValue("kpi-rate", rate, fmt1.format(rate));
    const taken = b.waitCount - a.waitCount;
    const wait = taken > 0 ? (b.waitSumSeconds - a.waitSumSeconds) / taken : null;
    setValue("kpi-wait", wait ?? "", seconds(wait));
  }

  const tbody = $("functions").tBodies[0];
  const rows = status.functions.map((f) => {
    const tr = el("tr", { "data-function": f.name });
    const queued = f.queued.high + f.queued.normal + f.queued.low;
    tr.append(
      el("td", { class: "name", "data-col": "name" }, f.name),
      numCell(queued, "queued"),
      el(
        "td",
        { class: "num muted", "data-col": "priorities" },
        `${count(f.queued.high)} · ${count(f.queued.normal)} · ${count(f.queued.low)}`,
      ),
      numCell(f.scheduled, "scheduled"),
      numCell(f.running, "running"),
      numCell(
        f.workers,
        "workers",
        f.idleWorkers > 0 ? `${count(f.workers)} (${count(f.idleWorkers)} idle)` : count(f.workers),
      ),
      numCell(f.completed, "completed"),
      numCell(f.failed + f.exceptions, "failed"),
      el(
        "td",
        { class: "num", "data-col": "wait" },
        `${seconds(f.wait.p50)} · ${seconds(f.wait.p95)}`,
      ),
      el(
        "td",
        { class: "num", "data-col": "run" },
        `${seconds(f.run.p50)} · ${seconds(f.run.p95)}`,
      ),
    );
    return tr;
  });
  tbody.replaceChildren(...rows);
  $("no-functions").hidden = rows.length > 0;
  renderCluster(status.cluster ?? null);
}

/** Servers sharing the store, and the shared queue (a cluster only). */
function renderCluster(cluster) {
  $("cluster").hidden = cluster === null;
  if (cluster === null) return;
  $("cluster-servers").tBodies[0].replaceChildren(...cluster.servers.map((s) => {
    const tr = el("tr", { "data-server": String(s.id) });
    tr.append(
      el("td", { class: "num", "data-col": "id" }, String(s.id)),
      el("td", { "data-col": "name" }, s.self ? `${s.name} (this server)` : s.name),
      el("td", { class: "num muted", "data-col": "heartbeat" }, `${count(s.heartbeatAgeMs)} ms`),
      numCell(s.held, "held"),
    );
    return tr;
  }));
  $("cluster-functions").tBodies[0].replaceChildren(...cluster.functions.map((f) => {
    const tr = el("tr", { "data-function": f.name });
    tr.append(
      el("td", { class: "name", "data-col": "name" }, f.name),
      numCell(f.queued.high + f.queued.normal + f.queued.low, "queued"),
      el(
        "td",
        { class: "num muted", "data-col": "priorities" },
        `${count(f.queued.high)} · ${count(f.queued.normal)} · ${count(f.queued.low)}`,
      ),
      numCell(f.held, "held"),
    );
    return tr;
  }));
}

function renderWorkers(data) {
  const tbody = $("workers").tBodies[0];
  const rows = data.connections.filter((c) => c.kind === "worker").map((c) => {
    const tr = el("tr", { "data-worker": String(c.id) });
    const fns = el("td", { class: "fns", "data-col": "functions" });
    for (const f of c.functions) fns.append(el("span", { class: "tag" }, f));
    const busy = c.jobs.length > 0;
    tr.append(
      el("td", { class: "num", "data-col": "id" }, String(c.id)),
      el("td", { "data-col": "address" }, c.address),
      el("td", { "data-col": "client-id" }, c.clientId),
      fns,
      numCell(c.jobs.length, "running"),
      el(
        "td",
        { class: busy ? "state-busy" : "muted", "data-col": "state" },
        busy ? "busy" : c.sleeping ? "sleeping" : "idle",
      ),
    );
    return tr;
  });
  tbody.replaceChildren(...rows);
  $("no-workers").hidden = rows.length > 0;
}

async function getJson(path) {
  const res = await fetch(path, { cache: "no-store" });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return await res.json();
}

async function poll() {
  try {
    const [status, workers] = await Promise.all([getJson("api/status"), getJson("api/workers")]);
    addSample(sampleOf(status));
    renderStatus(status);
    renderWorkers(workers);
    drawCharts(status.server.time);
    $("offline").hidden = true;
    document.body.dataset.updated = String(status.server.time);
  } catch {
    $("offline").hidden = false;
    const state = $("state");
    state.textContent = "unreachable";
    state.className = "pill down";
  }
  setTimeout(poll, POLL_MS);
}

async function start() {
  try {
    const history = await getJson("api/history");
    for (const s of history.samples) addSample(s);
  } catch {
    // No history: the charts start empty and fill as we poll.
  }
  await poll();
}

addEventListener("resize", () => {
  const last = samples[samples.length - 1];
  if (last !== undefined) drawCharts(last.t);
});

start();
