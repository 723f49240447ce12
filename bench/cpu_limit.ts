// A CPU budget for benchmark processes: a Linux cgroup with a CPU quota,
// so a server can be measured as if it ran on a small machine of its own
// (the cluster scenario's capped rows). Needs root and a cgroup cpu
// controller: v2 (cpu.max) or v1 (cpu.cfs_quota_us).

const V2_ROOT = "/sys/fs/cgroup";
const V1_ROOT = "/sys/fs/cgroup/cpu";
/** The quota's period, in microseconds. */
const PERIOD_US = 100_000;

function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** One cgroup holding processes to at most `cpus` CPUs between them. */
export class CpuLimit {
  readonly #dir: string;
  readonly cpus: number;

  private constructor(dir: string, cpus: number) {
    this.#dir = dir;
    this.cpus = cpus;
  }

  /**
   * Make the cgroup, or say why it cannot be made (not Linux, not root, no
   * cpu controller).
   */
  static create(name: string, cpus: number): CpuLimit | string {
    const quota = Math.max(1000, Math.round(cpus * PERIOD_US));
    const v2 = readText(`${V2_ROOT}/cgroup.controllers`)?.split(/\s+/).includes("cpu");
    try {
      if (v2) {
        const subtree = readText(`${V2_ROOT}/cgroup.subtree_control`) ?? "";
        if (!subtree.split(/\s+/).includes("cpu")) {
          Deno.writeTextFileSync(`${V2_ROOT}/cgroup.subtree_control`, "+cpu");
        }
        const dir = `${V2_ROOT}/${name}`;
        Deno.mkdirSync(dir, { recursive: true });
        Deno.writeTextFileSync(`${dir}/cpu.max`, `${quota} ${PERIOD_US}`);
        return new CpuLimit(dir, cpus);
      }
      if (readText(`${V1_ROOT}/cpu.cfs_period_us`) !== undefined) {
        const dir = `${V1_ROOT}/${name}`;
        Deno.mkdirSync(dir, { recursive: true });
        Deno.writeTextFileSync(`${dir}/cpu.cfs_period_us`, String(PERIOD_US));
        Deno.writeTextFileSync(`${dir}/cpu.cfs_quota_us`, String(quota));
        return new CpuLimit(dir, cpus);
      }
      return "no cgroup cpu controller (cgroup v2 cpu.max or v1 cpu.cfs_quota_us) on this machine";
    } catch (err) {
      return `cannot make a cgroup with a CPU quota (${
        (err as Error).message
      }): run as root on Linux`;
    }
  }

  /** Move a running process (all its threads) into the cgroup. */
  add(pid: number): void {
    Deno.writeTextFileSync(`${this.#dir}/cgroup.procs`, String(pid));
  }

  /** Remove the cgroup (its processes must have ended). */
  remove(): void {
    try {
      Deno.removeSync(this.#dir);
    } catch { /* a process is still in it, or it is gone: left for the system */ }
  }
}
