// Checks for the npm `gearman` package (2.1.0, github.com/mreinstein/node-gearman):
// a factory `gearman(host, port)` returning an event emitter over one
// connection; the caller correlates packets (JOB_CREATED, WORK_COMPLETE, ...)
// with jobs itself, by handle.

/** Connect a fresh client; resolves once the TCP connection is up. */
function open(ctx) {
  const c = ctx.lib(ctx.host, ctx.port);
  return ctx.within(ctx.timeoutMs, "connect", (resolve, reject) => {
    c.on("error", reject);
    c.connect(() => resolve(c));
  });
}

/**
 * Submit one job on a fresh connection and collect what comes back for it
 * until a terminal packet (or `until` says so). `before` runs first (e.g.
 * OPTION_REQ).
 */
async function job(ctx, fn, data, options = {}) {
  const c = await open(ctx);
  try {
    if (options.exceptions) {
      await ctx.within(ctx.timeoutMs, "OPTION_RES", (resolve) => {
        c.on("OPTION_RES", resolve);
        c.setOption("exceptions");
      });
    }
    return await ctx.within(ctx.timeoutMs, `job ${fn}`, (resolve) => {
      const seen = { handle: undefined, events: [] };
      c.on("JOB_CREATED", (handle) => {
        seen.handle = handle;
        if (options.background) resolve(seen);
      });
      c.on("WORK_COMPLETE", (p) => {
        seen.events.push({ type: "complete", handle: p.handle, payload: p.payload });
        resolve(seen);
      });
      c.on("WORK_FAIL", (p) => {
        seen.events.push({ type: "fail", handle: p.handle });
        resolve(seen);
      });
      c.on("WORK_EXCEPTION", (p) => {
        seen.events.push({ type: "exception", handle: p.handle, text: p.exception });
        resolve(seen);
      });
      c.submitJob(fn, data, options.background ? { background: true } : {});
    });
  } finally {
    c.close();
  }
}

/** Is `event` about the job `seen.handle` (the library matches by handle string)? */
function mine(seen, event) {
  return event.handle === seen.handle;
}

/** The six checks. */
export const checks = {
  async submit(ctx) {
    const seen = await job(ctx, ctx.fn.rev, ctx.submitData);
    const done = seen.events.find((e) => e.type === "complete" && mine(seen, e));
    if (!done) return { error: `no WORK_COMPLETE for ${seen.handle}: ${JSON.stringify(seen)}` };
    return { result: done.payload.toString("utf8") };
  },

  async background(ctx) {
    const seen = await job(ctx, ctx.fn.bg, ctx.bgData, { background: true });
    return { handle: seen.handle };
  },

  async status(ctx) {
    const seen = await job(ctx, ctx.fn.idle, "queued", { background: true });
    const c = await open(ctx);
    try {
      const ask = (handle) =>
        ctx.within(ctx.timeoutMs, `STATUS_RES ${handle}`, (resolve) => {
          const on = (res) => {
            if (res.handle !== handle) return;
            c.removeEventListener("STATUS_RES", on);
            resolve({ known: res.known === "1", running: res.running === "1" });
          };
          c.on("STATUS_RES", on);
          c.getJobStatus(handle);
        });
      return { queued: await ask(seen.handle), unknown: await ask(ctx.unknownHandle) };
    } finally {
      c.close();
    }
  },

  async fail(ctx) {
    const seen = await job(ctx, ctx.fn.fail, "x");
    const e = seen.events.at(-1);
    return { failed: e.type === "fail" && mine(seen, e), events: describe(seen) };
  },

  async exception(ctx) {
    // The library forwards OPTION_REQ exceptions and emits WORK_EXCEPTION.
    const seen = await job(ctx, ctx.fn.exc, "x", { exceptions: true });
    const e = seen.events.at(-1);
    if (e.type === "exception" && mine(seen, e)) return { exception: e.text };
    return { failed: e.type === "fail" && mine(seen, e), events: describe(seen) };
  },

  async large(ctx) {
    const seen = await job(ctx, ctx.fn.echo, ctx.largePayload(ctx.largeSize));
    const done = seen.events.find((e) => e.type === "complete" && mine(seen, e));
    if (!done) return { error: `no WORK_COMPLETE for ${seen.handle}: ${describe(seen)}` };
    return ctx.digest(done.payload);
  },
};

/** The events seen, for a failure message (handles JSON-quoted to show stray bytes). */
function describe(seen) {
  return `created ${JSON.stringify(seen.handle)}; ` +
    seen.events.map((e) => `${e.type} ${JSON.stringify(e.handle)}`).join(", ");
}

/** The driver. */
export default { library: "gearman", checks };
