// Checks for the npm `node-gearman` package (0.2.2, github.com/andris9/node-gearman):
// `new Gearman(host, port)`, `submitJob(name, payload, uniq, options)`
// returning a Job stream ("data", "end", "error" events). It has no job
// status API, returns no handle for background jobs and does not know
// WORK_EXCEPTION (nor OPTION_REQ).

/**
 * Run one foreground job on a fresh connection: its data chunks joined,
 * or the error the Job emitted.
 */
async function job(ctx, fn, data) {
  const g = new ctx.lib(ctx.host, ctx.port);
  try {
    return await ctx.within(ctx.timeoutMs, `job ${fn}`, (resolve) => {
      const chunks = [];
      g.on("error", (err) => resolve({ connectionError: String(err.message) }));
      const j = g.submitJob(fn, data);
      j.on("data", (chunk) => chunks.push(chunk));
      j.on("end", () => resolve({ data: ctx.Buffer.concat(chunks) }));
      j.on("error", (err) => resolve({ jobError: String(err.message) }));
    });
  } finally {
    g.close();
  }
}

/** The six checks. */
export const checks = {
  async submit(ctx) {
    const r = await job(ctx, ctx.fn.rev, ctx.submitData);
    if (!r.data) return { error: JSON.stringify(r) };
    return { result: r.data.toString("utf8") };
  },

  async background(ctx) {
    // No JOB_CREATED callback for background jobs: wait until the packet is
    // written and give the server a moment to read it before closing.
    const g = new ctx.lib(ctx.host, ctx.port);
    try {
      g.submitJob(ctx.fn.bg, ctx.bgData, false, { background: true });
      await ctx.within(ctx.timeoutMs, "connect", (resolve, reject) => {
        g.on("connect", resolve);
        g.on("error", reject);
      });
      await ctx.sleep(300);
      return { handle: undefined };
    } finally {
      g.close();
    }
  },

  status() {
    return {
      unsupported: "node-gearman 0.2.2 has no job status API (never sends GET_STATUS, " +
        "ignores STATUS_RES) and gives no handle for background jobs",
    };
  },

  async fail(ctx) {
    const r = await job(ctx, ctx.fn.fail, "x");
    return { failed: r.jobError !== undefined, detail: JSON.stringify(r) };
  },

  async exception(ctx) {
    // No WORK_EXCEPTION support: the server turns the exception into WORK_FAIL,
    // which the library reports as the job's "error" event.
    const r = await job(ctx, ctx.fn.exc, "x");
    return { failed: r.jobError !== undefined, detail: JSON.stringify(r) };
  },

  async large(ctx) {
    const r = await job(ctx, ctx.fn.echo, ctx.largePayload(ctx.largeSize));
    if (!r.data) return { error: JSON.stringify(r) };
    return ctx.digest(r.data);
  },
};

/** The driver. */
export default { library: "node-gearman", checks };
