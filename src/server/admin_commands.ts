// The text admin protocol: the union of C++ gearmand's commands and the
// Perl Gearman::Server's. Each command's whole reply is returned as one
// string, so the caller can send it in one write (gearadmin stops reading
// 5 ms after the last byte it gets).

import { byteString } from "../protocol/_bytes.ts";
import type { Dispatcher } from "./dispatcher.ts";
import { JobState } from "./job_table.ts";
import type { Peer } from "./peer.ts";

/** What admin commands need from the server around the dispatcher. */
export interface AdminHost {
  /** Server version string. */
  readonly version: string;
  /** Start a shutdown (graceful: stop accepting, let connections finish). */
  shutdown(graceful: boolean): void;
  /** Current log level name. */
  logLevel(): string;
}

const OK = "OK\n";
const UNKNOWN = "ERR UNKNOWN_COMMAND Unknown+server+command\n";
const INCOMPLETE = "ERR INCOMPLETE_ARGS An+incomplete+set+of+arguments+was+sent+to+this+command\n";

/** Runs admin text commands against a dispatcher. */
export class AdminCommands {
  readonly #d: Dispatcher;
  readonly #host: AdminHost;

  constructor(dispatcher: Dispatcher, host: AdminHost) {
    this.#d = dispatcher;
    this.#host = host;
  }

  /**
   * Run one admin line (a byte string, no newline) for `peer`. Returns the
   * reply, or undefined for an empty line (no reply).
   */
  run(peer: Peer, line: string): string | undefined {
    const words = line.trim().split(/\s+/);
    const cmd = words[0]?.toLowerCase() ?? "";
    if (cmd === "") return undefined;
    switch (cmd) {
      case "workers":
        return this.#workers();
      case "status":
        return this.#status();
      case "prioritystatus":
        return this.#priorityStatus();
      case "jobs":
        return this.#jobs();
      case "clients":
        return this.#clients();
      case "show":
        if (words[1]?.toLowerCase() === "jobs" && words.length === 2) return this.#showJobs();
        if (words[1]?.toLowerCase() === "unique" && words[2]?.toLowerCase() === "jobs") {
          return this.#showUniqueJobs();
        }
        return UNKNOWN;
      case "cancel":
        if (words[1]?.toLowerCase() !== "job") return UNKNOWN;
        if (words.length !== 3) return INCOMPLETE;
        return this.#cancel(words[2]!);
      case "create":
        if (words[1]?.toLowerCase() !== "function") return UNKNOWN;
        if (words.length !== 3) return INCOMPLETE;
        this.#d.functionEntry(words[2]!);
        return OK;
      case "drop":
        if (words[1]?.toLowerCase() !== "function") return UNKNOWN;
        if (words.length !== 3) return INCOMPLETE;
        return this.#drop(words[2]!);
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
        if (mode !== undefined && mode !== "graceful") return UNKNOWN;
        peer.conn.out(); // keep the reply ahead of the close
        queueMicrotask(() => this.#host.shutdown(mode === "graceful"));
        return OK;
      }
      default:
        return UNKNOWN;
    }
  }

  #workers(): string {
    let out = "";
    for (const p of this.#d.peers.values()) {
      out += `${p.id} ${p.conn.remoteHost} ${p.clientId} :`;
      for (const f of p.functions) out += ` ${f.name}`;
      out += "\n";
    }
    return out + ".\n";
  }

  #status(): string {
    let out = "";
    for (const f of this.#d.functions.values()) {
      out += `${f.name}\t${f.total}\t${f.running}\t${f.workers.size}\n`;
    }
    return out + ".\n";
  }

  #priorityStatus(): string {
    let out = "";
    for (const f of this.#d.functions.values()) {
      out += `${f.name}\t${f.queues[0].length}\t${f.queues[1].length}\t${
        f.queues[2].length
      }\t${f.workers.size}\n`;
    }
    return out + ".\n";
  }

  #showJobs(): string {
    const d = this.#d;
    const jobs = d.jobs;
    let out = "";
    for (const slot of jobs.slots()) {
      const queued = jobs.state[slot] === JobState.RUNNING ? 0 : 1;
      const ignored = jobs.background[slot] === 0 && d.clientsOf(slot).length === 0 ? 1 : 0;
      out += `${d.handleString(slot)}\t${jobs.retries[slot]}\t${ignored}\t${queued}\n`;
    }
    return out + ".\n";
  }

  #showUniqueJobs(): string {
    const jobs = this.#d.jobs;
    let out = "";
    for (const slot of jobs.slots()) {
      if (jobs.uniqueLen[slot]! > 0) out += `${byteString(jobs.unique(slot))}\n`;
    }
    return out + ".\n";
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

  #cancel(handle: string): string {
    const d = this.#d;
    const bytes = new Uint8Array(handle.length);
    for (let i = 0; i < handle.length; i++) bytes[i] = handle.charCodeAt(i);
    const slot = d.slotOfHandle(bytes);
    if (slot === 0) return "ERR JOB_NOT_FOUND Job+handle+not+found\n";
    if (!d.cancel(slot)) return "ERR JOB_RUNNING Job+is+running+and+cannot+be+cancelled\n";
    return OK;
  }

  #drop(name: string): string {
    const d = this.#d;
    const f = d.functions.get(name);
    if (f === undefined) return "ERR UNKNOWN_FUNCTION Function+not+found\n";
    if (!d.dropFunction(name)) {
      return "ERR FUNCTION_BUSY There+are+still+connected+workers+or+queued+jobs\n";
    }
    return OK;
  }

  #maxQueue(words: string[]): string {
    if (words.length < 2 || words.length === 4 || words.length > 5) return INCOMPLETE;
    const values = words.slice(2).map(Number);
    if (values.some((v) => !Number.isInteger(v))) {
      return "ERR INVALID_ARGUMENTS Queue+sizes+must+be+integers\n";
    }
    const f = this.#d.functionEntry(words[1]!);
    // Negative means unlimited (0 internally); no size resets to the default.
    const clamp = (v: number) => (v < 0 ? 0 : v);
    if (values.length === 0) f.maxQueue = undefined;
    else if (values.length === 1) {
      const v = clamp(values[0]!);
      f.maxQueue = [v, v, v];
    } else f.maxQueue = [clamp(values[0]!), clamp(values[1]!), clamp(values[2]!)];
    return OK;
  }
}
