// The text admin protocol: the union of C++ gearmand's commands and the
// Perl Gearman::Server's. Each command's whole reply is returned as one
// string, so the caller can send it in one write (gearadmin stops reading
// 5 ms after the last byte it gets).

import { byteString } from "../protocol/_bytes.ts";
import type { Dispatcher } from "./dispatcher.ts";
import type { Peer } from "./peer.ts";
import { type ClusterJob, withCurrentFigures } from "./store/job_store.ts";

/**
 * Who may run read-only admin commands on the Gearman port (`--admin-read`,
 * `ServeOptions.adminRead`): any host, loopback only, or only
 * connections that sent the admin token.
 *
 * @example Restrict to loopback
 * ```ts
 * import type { AdminReadAccess } from "@x/gearman/server";
 * import assert from "node:assert/strict";
 *
 * const access: AdminReadAccess = "loopback";
 * assert.equal(access, "loopback");
 * ```
 */
export type AdminReadAccess = "any" | "loopback" | "token";

/** What admin commands need from the server around the dispatcher. */
export interface AdminHost {
  /** Server version string. */
  readonly version: string;
  /** Start a shutdown (graceful: stop accepting, let connections finish). */
  shutdown(graceful: boolean): void;
  /** Current log level name. */
  logLevel(): string;
  /**
   * The admin token (`--admin-token`), if any: a connection that sends it
   * (as its first line, or `auth TOKEN`) may run every command from anywhere.
   */
  readonly adminToken?: string | undefined;
  /**
   * Who may run read-only commands (status, workers, show ...): `any`
   * host; only `loopback` and token holders; or only token holders
   * (`token`: then state-changing commands need the token from loopback too).
   * @default "any"
   */
  readonly readAccess?: AdminReadAccess;
  /** Log a refused command. */
  refused?(peer: Peer, command: string, why: string): void;
}

/** Every command, to name a refused one in the log without echoing a mistyped token. */
const KNOWN = new Set([
  "workers",
  "status",
  "prioritystatus",
  "jobs",
  "clients",
  "show",
  "getpid",
  "verbose",
  "version",
]);

/** Commands that change the server's state: loopback or a token only. */
const STATE_CHANGING = new Set([
  "shutdown",
  "maxqueue",
  "cancel",
  "create",
  "drop",
  "retry",
  "purge",
]);

function isLoopback(host: string): boolean {
  return host === "::1" || host.startsWith("127.") || host === "localhost" ||
    host.startsWith("::ffff:127.");
}

/** Compare without leaking where the first difference is. */
function sameSecret(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  }
  return diff === 0;
}

// Reply texts as C++ gearmand 1.1 writes them, so tools that parse them work.
const OK = "OK\r\n";
const unknown = (cmd: string) => `ERR UNKNOWN_COMMAND Unknown+server+command${cmd}\r\n`;
const incomplete = (cmd: string) =>
  `ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+${cmd}\r\n`;

/** Spaces become "+", as gearmand's error texts do. */
function encodeReason(text: string): string {
  return text.replaceAll(" ", "+");
}

/** Runs admin text commands against a dispatcher. */
export class AdminCommands {
  readonly #d: Dispatcher;
  readonly #host: AdminHost;

  constructor(dispatcher: Dispatcher, host: AdminHost) {
    this.#d = dispatcher;
    this.#host = host;
  }

  /**
   * Run one admin line (a byte string, no newline) for `peer`; returns the
   * whole reply. Only a command the cluster's database must answer (`cancel
   * job` of a job in the shared queue) needs {@link reply}: this throws then.
   */
  run(peer: Peer, line: string): string {
    const r = this.reply(peer, line);
    if (typeof r !== "string") {
      throw new TypeError(`Cannot answer "${line}" at once: the cluster answers it; use reply()`);
    }
    return r;
  }

  /**
   * Run one admin line for `peer`: the whole reply, or a promise of it when
   * the cluster's database must answer (`cancel job` of a job of the shared
   * queue). The server writes it when it comes, before the next line's.
   */
  reply(peer: Peer, line: string): string | Promise<string> {
    const words = line.split(" ").filter((w) => w !== "");
    const cmd = words[0]?.toLowerCase() ?? "";
    const token = this.#host.adminToken;
    const first = peer.adminLines++ === 0;
    if (token !== undefined && token !== "") {
      if (cmd === "auth" || (first && words.length === 1 && sameSecret(line.trim(), token))) {
        const given = cmd === "auth" ? words[1] ?? "" : line.trim();
        if (sameSecret(given, token)) {
          peer.adminAuthorized = true;
          return OK;
        }
        this.#host.refused?.(peer, "auth", "wrong admin token");
        return "ERR PERMISSION_DENIED Wrong+admin+token\r\n";
      }
    }
    const certRule = peer.access;
    if (certRule !== undefined && !peer.adminAuthorized) {
      // Mutual TLS with access rules: the certificate decides (or the token).
      const allowed = certRule.admin === "all" ||
        (certRule.admin === "read" && !STATE_CHANGING.has(cmd));
      if (!allowed) {
        const why = `certificate "${certRule.name}" has admin "${certRule.admin}" in --tls-access${
          token ? "; or send the admin token first (auth TOKEN)" : ""
        }`;
        this.#host.refused?.(
          peer,
          KNOWN.has(cmd) || STATE_CHANGING.has(cmd) ? cmd : "(an unknown command)",
          why,
        );
        return `ERR PERMISSION_DENIED ${
          encodeReason(`${cmd || "this"} is not allowed: ${why}`)
        }\r\n`;
      }
    }
    const access = this.#host.readAccess ?? "any";
    const trusted = peer.adminAuthorized || certRule !== undefined ||
      (access !== "token" && isLoopback(peer.conn.remoteHost));
    if (!trusted) {
      if (STATE_CHANGING.has(cmd)) {
        const why = access === "token"
          ? "every admin command needs the admin token (--admin-read token); send auth TOKEN first"
          : token
          ? "send the admin token first (auth TOKEN)"
          : "state-changing commands are allowed from loopback only; start the server with --admin-token to allow them remotely";
        this.#host.refused?.(peer, line, why);
        return `ERR PERMISSION_DENIED ${
          encodeReason(`${cmd} is not allowed from this address: ${why}`)
        }\r\n`;
      }
      if (access !== "any") {
        const why = access === "token"
          ? "every admin command needs the admin token (--admin-read token); send auth TOKEN first"
          : token
          ? "read-only admin commands are allowed from loopback only (--admin-read loopback); send the admin token first (auth TOKEN)"
          : "read-only admin commands are allowed from loopback only (--admin-read loopback)";
        this.#host.refused?.(peer, KNOWN.has(cmd) ? cmd : "(an unknown command)", why);
        return `ERR PERMISSION_DENIED ${
          encodeReason(`${cmd || "this"} is not allowed: ${why}`)
        }\r\n`;
      }
    }
    switch (cmd) {
      case "workers":
        return this.#workers();
      case "status":
        return withCurrentFigures(this.#d.store.cluster, () => this.#status());
      case "cluster":
        return withCurrentFigures(this.#d.store.cluster, () => this.#cluster());
      case "prioritystatus":
        return withCurrentFigures(this.#d.store.cluster, () => this.#priorityStatus());
      case "jobs":
        return this.#jobs();
      case "clients":
        return this.#clients();
      case "show": {
        if (words.length === 1) return unknown("show");
        const what = words.slice(1).join(" ").toLowerCase();
        if (what === "jobs") return this.#showJobs();
        if (what === "unique jobs") return this.#showUniqueJobs();
        if (what === "scheduled") return this.#showScheduled();
        if (what === "dead") return this.#showDead();
        return "ERR UNKNOWN_SHOW_ARGUMENTS\r\n";
      }
      case "cancel":
        if (words.length < 3) return unknown("cancel");
        if (words.length > 3 || words[1]!.toLowerCase() !== "job") return "ERR UNKNOWN_ERROR\r\n";
        return this.#cancel(words[2]!);
      case "create":
        if (words.length !== 3 || words[1]!.toLowerCase() !== "function") {
          return incomplete("create");
        }
        this.#d.functionEntry(words[2]!);
        return OK;
      case "drop":
        if (words.length !== 3 || words[1]!.toLowerCase() !== "function") {
          return incomplete("drop");
        }
        return this.#drop(words[2]!);
      case "retry":
      case "purge":
        if (words.length !== 3 || words[1]!.toLowerCase() !== "dead") {
          return `ERR INVALID_ARGUMENTS Use+${cmd}+dead+ID+or+${cmd}+dead+all\r\n`;
        }
        return this.#dead(cmd, words[2]!);
      case "maxqueue":
        return this.#maxQueue(words);
      case "getpid":
        return `OK ${Deno.pid}\n`;
      case "verbose":
        return `OK ${this.#host.logLevel()}\n`;
      case "version":
        return `OK ${this.#host.version}\n`;
      case "shutdown": {
        const mode = words[1]?.toLowerCase();
        if (words.length > 2 || (mode !== undefined && mode !== "graceful")) {
          return "ERR INVALID_ARGUMENTS Use+shutdown+or+shutdown+graceful\r\n";
        }
        // After this turn, so the OK is written before connections close.
        queueMicrotask(() => this.#host.shutdown(mode === "graceful"));
        peer.conn.out();
        return OK;
      }
      default:
        return unknown(words[0] ?? "");
    }
  }

  #workers(): string {
    let out = "";
    for (const p of this.#d.peers.values()) {
      out += `${p.id} ${p.conn.remoteHost} ${p.clientId} :`;
      // Most recently registered first, as gearmand lists them.
      for (let i = p.functions.length - 1; i >= 0; i--) out += ` ${p.functions[i]!.name}`;
      out += "\n";
    }
    return out + ".\n";
  }

  #status(): string {
    let out = "";
    // In a cluster, TOTAL also counts the shared queue's jobs no server holds yet.
    const depth = this.#d.store.cluster?.depth();
    for (const f of this.#d.functions.values()) {
      const shared = depth?.get(f.name)?.queued ?? 0;
      out += `${f.name}\t${f.total + shared}\t${f.running}\t${f.workers.size}\n`;
    }
    if (depth !== undefined) {
      for (const [name, d] of depth) {
        if (!this.#d.functions.has(name) && d.queued > 0) out += `${name}\t${d.queued}\t0\t0\n`;
      }
    }
    return out + ".\n";
  }

  /**
   * `cluster`: the servers sharing this store (id, name, ms since their
   * heartbeat, jobs held) and the shared queue by function (queued, held).
   */
  #cluster(): string {
    const cluster = this.#d.store.cluster;
    if (cluster === undefined) {
      return `ERR NOT_A_CLUSTER ${
        encodeReason("this server's store is not shared; start servers with --store postgres://...")
      }\r\n`;
    }
    let out = "";
    for (const s of cluster.servers()) {
      out += `server\t${s.id}\t${s.name}\t${s.heartbeatAgeMs}\t${s.held}${
        s.id === cluster.serverId ? "\tself" : ""
      }\n`;
    }
    for (const [name, d] of cluster.depth()) out += `function\t${name}\t${d.queued}\t${d.held}\n`;
    return out + ".\n";
  }

  #priorityStatus(): string {
    let out = "";
    // In a cluster, the shared queue's jobs no server holds yet count too (as in `status`).
    const depth = this.#d.store.cluster?.depth();
    const none = [0, 0, 0] as const;
    for (const f of this.#d.functions.values()) {
      const shared = depth?.get(f.name)?.queuedByPriority ?? none;
      // Scheduled jobs are NORMAL priority (SUBMIT_JOB_EPOCH/_SCHED); gearmand counts them queued.
      // Jobs waiting in the store's overflow count too.
      out += `${f.name}\t${f.queues[0].length + f.spilled[0] + shared[0]}\t${
        f.queues[1].length + f.scheduled + f.spilled[1] + shared[1]
      }\t${f.queues[2].length + f.spilled[2] + shared[2]}\t${f.workers.size}\n`;
    }
    for (const [name, d] of depth ?? []) {
      const q = d.queuedByPriority;
      if (this.#d.functions.has(name) || d.queued === 0 || q === undefined) continue;
      out += `${name}\t${q[0]}\t${q[1]}\t${q[2]}\t0\n`;
    }
    return out + ".\n";
  }

  /**
   * In a cluster: `local` (this server's lines) and a line per job of the
   * shared queue that other servers hold or none holds yet, as `line` makes
   * it; without a cluster, `local` alone.
   */
  #withClusterJobs(
    local: string,
    scheduledOnly: boolean,
    line: (j: ClusterJob, handle: string) => string,
  ): string | Promise<string> {
    const cluster = this.#d.store.cluster;
    if (cluster === undefined) return local + ".\n";
    const prefix = byteString(this.#d.handlePrefix);
    return cluster.otherJobs(scheduledOnly).then(
      (jobs) => {
        let out = local;
        for (const j of jobs) out += line(j, `${prefix}${j.handle}`);
        return out + ".\n";
      },
      (err: Error) => `ERR CLUSTER_ERROR ${encodeURIComponent(err.message)}\r\n`,
    );
  }

  /** Columns as gearmand: handle, retries, ignored (no one waits), background; in a cluster, the shared queue's too. */
  #showJobs(): string | Promise<string> {
    const d = this.#d;
    const jobs = d.jobs;
    let out = "";
    for (const slot of jobs.slots()) {
      const ignored = jobs.background[slot] === 0 && d.clientsOf(slot).length === 0 ? 1 : 0;
      out += `${d.handleString(slot)}\t${jobs.retries[slot]}\t${ignored}\t${
        jobs.background[slot]
      }\n`;
    }
    // Jobs of the shared queue are background jobs.
    return this.#withClusterJobs(out, false, (j, h) => `${h}\t${j.retries}\t0\t1\n`);
  }

  /** Each job's unique id; in a cluster, the shared queue's jobs' too (as in `show jobs`). */
  #showUniqueJobs(): string | Promise<string> {
    const jobs = this.#d.jobs;
    let out = "";
    for (const slot of jobs.slots()) out += `${byteString(jobs.unique(slot))}\n`;
    return this.#withClusterJobs(out, false, (j) => `${byteString(j.unique)}\n`);
  }

  /** Scheduled jobs: handle, function, run-at time (ISO 8601, UTC), unique; in a cluster, the shared queue's too. */
  #showScheduled(): string | Promise<string> {
    const d = this.#d;
    let out = "";
    for (const { slot, runAt } of d.scheduledJobs()) {
      out += `${d.handleString(slot)}\t${d.functionById(d.jobs.fn[slot]!).name}\t${
        new Date(runAt).toISOString()
      }\t${byteString(d.jobs.unique(slot))}\n`;
    }
    return this.#withClusterJobs(
      out,
      true,
      (j, h) =>
        `${h}\t${j.function}\t${new Date(j.runAt).toISOString()}\t${byteString(j.unique)}\n`,
    );
  }

  /** Dead letters: id, old handle, function, unique, retries, failed at, reason. */
  #showDead(): string {
    const d = this.#d;
    let out = "";
    for (const l of d.store.deadLetters()) {
      out += `${l.id}\t${byteString(d.handlePrefix)}${l.handle}\t${l.function}\t${
        byteString(l.unique)
      }\t${l.retries}\t${new Date(l.failedAt).toISOString()}\t${l.reason}\n`;
    }
    return out + ".\n";
  }

  /** `retry dead ID|all` queues dead letters again; `purge dead ID|all` forgets them. */
  #dead(cmd: string, which: string): string {
    const d = this.#d;
    const letters = d.store.deadLetters();
    const chosen = which.toLowerCase() === "all"
      ? letters
      : letters.filter((l) => String(l.id) === which);
    if (chosen.length === 0 && which.toLowerCase() !== "all") {
      return "ERR UNKNOWN_DEAD_LETTER No+dead+letter+has+that+id;+see+show+dead\r\n";
    }
    for (const l of chosen) {
      if (cmd === "retry") d.resubmit(l.function, l.unique, l.data, l.priority);
      d.store.removeDeadLetter(l.id);
    }
    d.storeChanged();
    return `OK ${chosen.length}\r\n`;
  }

  /** Perl Gearman::Server `jobs`: function, unique, worker address, listeners. */
  #jobs(): string {
    const d = this.#d;
    const jobs = d.jobs;
    let out = "";
    for (const slot of jobs.slots()) {
      const worker = d.peers.get(jobs.worker[slot]!);
      out += `${d.functionById(jobs.fn[slot]!).name}\t${byteString(jobs.unique(slot))}\t${
        worker?.conn.remote ?? ""
      }\t${d.clientsOf(slot).length}\n`;
    }
    return out + ".\n";
  }

  /** Perl Gearman::Server `clients`: each client and the jobs it waits on. */
  #clients(): string {
    const d = this.#d;
    const jobs = d.jobs;
    let out = "";
    for (const p of d.peers.values()) {
      if (p.isWorker) continue;
      out += `${p.conn.remote}\n`;
      for (const slot of p.waiting) {
        const worker = d.peers.get(jobs.worker[slot]!);
        out += `\t${d.functionById(jobs.fn[slot]!).name}\t${byteString(jobs.unique(slot))}\t${
          worker?.conn.remote ?? ""
        }\n`;
      }
    }
    return out + ".\n";
  }

  #cancel(handle: string): string | Promise<string> {
    const d = this.#d;
    const bytes = new Uint8Array(handle.length);
    for (let i = 0; i < handle.length; i++) bytes[i] = handle.charCodeAt(i);
    const slot = d.slotOfHandle(bytes);
    if (slot === 0) {
      if (d.cancelStored(bytes)) return OK;
      // In a cluster: a job of the shared queue no server holds.
      const inCluster = d.cancelInCluster(bytes);
      if (inCluster === undefined) return "ERR UNKNOWN_JOB\r\n";
      return inCluster.then(
        (r) =>
          r.state === "cancelled"
            ? OK
            : r.state === "unknown"
            ? "ERR UNKNOWN_JOB\r\n"
            : `ERR JOB_HELD_ELSEWHERE held+by+${
              encodeURIComponent(r.heldBy ?? "another server")
            };+cancel+it+there\r\n`,
        (err: Error) => `ERR CLUSTER_ERROR ${encodeURIComponent(err.message)}\r\n`,
      );
    }
    d.cancel(slot);
    return OK;
  }

  #drop(name: string): string {
    const d = this.#d;
    const f = d.functions.get(name);
    if (f === undefined) return "ERR function not found\r\n";
    if (f.workers.size > 0 || f.running > 0) {
      return "ERR there are still connected workers or executing clients\r\n";
    }
    // gearmand drops a function with queued jobs and orphans them; we refuse.
    if (!d.dropFunction(name)) {
      return "ERR there are still queued jobs; cancel them or let a worker drain them first\r\n";
    }
    return OK;
  }

  #maxQueue(words: string[]): string {
    if (words.length < 2) return incomplete("maxqueue");
    if (words.length === 4 || words.length > 5) {
      return "ERR INVALID_ARGUMENTS Use+maxqueue+FUNCTION+[MAX]+or+maxqueue+FUNCTION+HIGH+NORMAL+LOW\r\n";
    }
    const values = words.slice(2).map(Number);
    if (values.some((v) => !Number.isInteger(v))) {
      return "ERR INVALID_ARGUMENTS Queue+sizes+must+be+integers\r\n";
    }
    // Unlike gearmand, a function not seen yet is created, so the limit holds
    // when its jobs arrive. Negative means unlimited (0 here); no size resets.
    const f = this.#d.functionEntry(words[1]!);
    const clamp = (v: number) => (v < 0 ? 0 : v);
    if (values.length === 0) f.maxQueue = undefined;
    else if (values.length === 1) {
      const v = clamp(values[0]!);
      f.maxQueue = [v, v, v];
    } else f.maxQueue = [clamp(values[0]!), clamp(values[1]!), clamp(values[2]!)];
    return OK;
  }
}
