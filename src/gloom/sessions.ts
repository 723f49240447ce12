// The two kinds of Gloom connection, each a virtual Gearman peer of the
// dispatcher: a master submits SUBMIT_JOB and is told the results; a worker
// sends CAN_DO / GRAB_JOB_UNIQ / PRE_SLEEP / WORK_COMPLETE and holds one job
// at a time. The dispatcher is not changed: Gloom jobs share its queues,
// show in admin status, and are requeued when a worker leaves, as
// Gearman jobs are.

import { PacketType as T } from "../protocol/packet_type.ts";
import { splitArgs } from "../protocol/packet.ts";
import { byteString, byteStringBytes, EMPTY } from "../protocol/_bytes.ts";
import type { Dispatcher, DispatcherLog } from "../server/dispatcher.ts";
import { MAX_FUNCTION_NAME_SIZE } from "../server/dispatcher.ts";
import type { Peer } from "../server/peer.ts";
import type { CompiledAccess } from "../server/tls_access.ts";
import {
  bodyToData,
  dataToBody,
  decodeFrame,
  errorFrame,
  type GloomErrorCode,
  type GloomId,
  isGloomId,
  utf8,
} from "./messages.ts";
import type { GloomSocket } from "./socket.ts";
import { VirtualPeerConnection } from "./virtual_peer.ts";

/** What the sessions of one server share. */
export interface GloomContext {
  readonly dispatcher: Dispatcher;
  readonly log: DispatcherLog;
  /** Outstanding master job ids (JSON text of the id) and who submitted them. */
  readonly outstanding: Map<string, MasterSession>;
  /** Gloom ids of jobs that masters submitted, by handle (what a Gloom worker is told). */
  readonly idsByHandle: Map<string, GloomId>;
}

const textDecoder = new TextDecoder();

/** Gearman byte string (function name, handle) as text. */
function byteText(s: string): string {
  return textDecoder.decode(byteStringBytes(s));
}

function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const NUL = new Uint8Array(1);

/** A problem with one message: answered with an error frame, the connection goes on. */
class BadMessage extends Error {
  readonly code: GloomErrorCode;
  readonly id: GloomId | undefined;

  constructor(code: GloomErrorCode, message: string, id?: GloomId) {
    super(message);
    this.code = code;
    this.id = id;
  }
}

/** Check a `job_type` field; returns it as a Gearman function name (byte string). */
function jobTypeOf(msg: Record<string, unknown>, id?: GloomId): string {
  const t = msg.job_type;
  if (t === undefined) {
    throw new BadMessage("missing_field", 'Missing field "job_type" (the job type, a string)', id);
  }
  if (typeof t !== "string") {
    throw new BadMessage("invalid_field", `Field "job_type" must be a string, got ${typeof t}`, id);
  }
  const bytes = utf8(t);
  if (bytes.length === 0 || bytes.length > MAX_FUNCTION_NAME_SIZE || bytes.includes(0)) {
    throw new BadMessage(
      "invalid_field",
      `Field "job_type" must be 1 to ${MAX_FUNCTION_NAME_SIZE} bytes of UTF-8 with no NUL, got ${bytes.length} bytes`,
      id,
    );
  }
  return byteString(bytes);
}

/** What both kinds of session do: decode frames, answer bad ones, register with the dispatcher. */
abstract class Session {
  readonly ctx: GloomContext;
  readonly socket: GloomSocket;
  readonly conn: VirtualPeerConnection;
  readonly peer: Peer;
  /** The client certificate's names (mutual TLS), if any. */
  certNames: readonly string[] | undefined;
  /** What the client certificate may do (--tls-access), if rules apply. */
  access: CompiledAccess | undefined;

  constructor(ctx: GloomContext, socket: GloomSocket, clientId: string) {
    this.ctx = ctx;
    this.socket = socket;
    this.conn = new VirtualPeerConnection(socket, (type, body) => {
      try {
        this.packet(type, body);
      } catch (err) {
        this.#internalError(err);
      }
    });
    this.peer = ctx.dispatcher.addPeer(this.conn);
    this.send(T.SET_CLIENT_ID, utf8(clientId));
  }

  /** Pass a packet to the dispatcher as this peer, and take its answers now. */
  send(type: number, body: Uint8Array): void {
    this.ctx.dispatcher.packet(this.peer, type, body);
    this.conn.drain();
  }

  /** One frame's payload from the socket. */
  payload(payload: Uint8Array): void {
    const decoded = decodeFrame(payload);
    if (!decoded.ok) {
      this.socket.send(decoded.error);
      return;
    }
    const msg = decoded.message;
    try {
      const type = msg.type;
      if (type === undefined) {
        throw new BadMessage("missing_field", `Missing field "type"; ${this.expected()}`);
      }
      this.message(type, msg);
    } catch (err) {
      if (err instanceof BadMessage) this.socket.send(errorFrame(err.code, err.message, err.id));
      else this.#internalError(err);
    }
  }

  #internalError(err: unknown): void {
    this.ctx.log.error("Gloom connection from {remote}: {error}", {
      remote: this.socket.remote,
      error: (err as Error)?.stack ?? String(err),
    });
    this.socket.send(errorFrame("server_error", `Internal error: ${(err as Error)?.message}`));
  }

  /**
   * With access rules: throw `permission_denied` (and log it) unless the
   * certificate may `what` the job type `fn`.
   */
  checkAccess(what: "submit" | "work", fn: string, id?: GloomId): void {
    const access = this.access;
    if (access === undefined || (what === "submit" ? access.maySubmit(fn) : access.mayWork(fn))) {
      return;
    }
    this.refuse(
      `Certificate "${access.name}" may not ${
        what === "submit" ? "submit jobs of" : "work on"
      } job type "${byteText(fn)}" (--tls-access); ask the server's operator to add it`,
      id,
    );
  }

  /** Log a refused request and throw its `permission_denied` error. */
  refuse(message: string, id?: GloomId): never {
    this.ctx.log.warn("Refused Gloom {remote}: {message}", {
      remote: this.socket.remote,
      message,
    });
    throw new BadMessage("permission_denied", message, id);
  }

  unknownType(type: unknown): never {
    throw new BadMessage(
      "unknown_type",
      `Unknown message type ${JSON.stringify(type)}; ${this.expected()}`,
    );
  }

  /** The socket closed: leave the dispatcher (a held job goes back to its queue). */
  closed(): void {
    this.conn.drain();
    this.ctx.dispatcher.removePeer(this.peer);
  }

  abstract expected(): string;
  abstract message(type: unknown, msg: Record<string, unknown>): void;
  abstract packet(type: number, body: Uint8Array): void;
}

interface MasterJob {
  id: GloomId;
  /** The id as JSON text: the key in `outstanding`. */
  key: string;
  handle: string;
}

/** A connection on the master port. */
export class MasterSession extends Session {
  /** Submitted jobs waiting for JOB_CREATED or ERROR, in order. */
  readonly #submitted: MasterJob[] = [];
  /** Created jobs by handle. */
  readonly #jobs = new Map<string, MasterJob>();

  constructor(ctx: GloomContext, socket: GloomSocket) {
    super(ctx, socket, "gloom-master");
    // WORK_EXCEPTION text comes to us rather than a bare WORK_FAIL.
    this.send(T.OPTION_REQ, utf8("exceptions"));
  }

  expected(): string {
    return 'a master sends {"type":"job","job_type":T,"id":ID,"body":...} or {"type":"status"}';
  }

  message(type: unknown, msg: Record<string, unknown>): void {
    if (type === "job") this.#job(msg);
    else if (type === "status") this.#status(msg);
    else this.unknownType(type);
  }

  #job(msg: Record<string, unknown>): void {
    const id = msg.id;
    if (id === undefined) {
      throw new BadMessage("missing_field", 'Missing field "id" (the job id, a string or number)');
    }
    if (!isGloomId(id)) {
      throw new BadMessage(
        "invalid_field",
        `Field "id" must be a string or a number, got ${id === null ? "null" : typeof id}`,
      );
    }
    const fn = jobTypeOf(msg, id);
    this.checkAccess("submit", fn, id);
    if (!("body" in msg)) {
      throw new BadMessage("missing_field", 'Missing field "body" (any JSON value)', id);
    }
    const key = JSON.stringify(id);
    if (this.ctx.outstanding.has(key)) {
      throw new BadMessage(
        "duplicate_id",
        `Job id ${key} is already outstanding; ids must be unique until their response comes back`,
        id,
      );
    }
    const job: MasterJob = { id, key, handle: "" };
    this.ctx.outstanding.set(key, this);
    this.#submitted.push(job);
    this.send(
      T.SUBMIT_JOB,
      concatBytes(byteStringBytes(fn), NUL, NUL, bodyToData(msg.body)),
    );
  }

  #status(msg: Record<string, unknown>): void {
    if (this.access !== undefined && this.access.admin === "none") {
      this.refuse(
        `Certificate "${this.access.name}" may not read the queue status (--tls-access: it needs "admin": "read")`,
        isGloomId(msg.id) ? msg.id : undefined,
      );
    }
    const entries: [string, { queued: number; running: number; workers: number }][] = [];
    for (const f of this.ctx.dispatcher.functions.values()) {
      entries.push([byteText(f.name), {
        queued: f.total - f.running,
        running: f.running,
        workers: f.workers.size,
      }]);
    }
    const reply: Record<string, unknown> = {
      type: "status",
      job_types: Object.fromEntries(entries),
    };
    if (isGloomId(msg.id)) reply.id = msg.id;
    this.socket.send(reply);
  }

  #forget(job: MasterJob): void {
    if (this.ctx.outstanding.get(job.key) === this) this.ctx.outstanding.delete(job.key);
    if (job.handle !== "") {
      this.#jobs.delete(job.handle);
      this.ctx.idsByHandle.delete(job.handle);
    }
  }

  packet(type: number, body: Uint8Array): void {
    switch (type) {
      case T.JOB_CREATED: {
        const job = this.#submitted.shift();
        if (job === undefined) return;
        job.handle = byteString(body);
        this.#jobs.set(job.handle, job);
        this.ctx.idsByHandle.set(job.handle, job.id);
        return;
      }
      case T.ERROR: {
        const [code, text] = splitArgs(T.ERROR, body).map((b) => textDecoder.decode(b));
        const job = this.#submitted.shift();
        if (job === undefined) {
          this.socket.send(errorFrame("server_error", `${text} (${code})`));
          return;
        }
        this.#forget(job);
        this.socket.send(
          errorFrame(
            code === "QUEUE_ERROR" ? "queue_full" : "rejected",
            `Job ${job.key} not accepted: ${text} (${code})`,
            job.id,
          ),
        );
        return;
      }
      case T.WORK_COMPLETE:
      case T.WORK_FAIL:
      case T.WORK_EXCEPTION: {
        const [handle, data] = splitArgs(type, body);
        const job = this.#jobs.get(byteString(handle!));
        if (job === undefined) return;
        this.#forget(job);
        if (type === T.WORK_COMPLETE) {
          this.socket.send({ id: job.id, body: dataToBody(data!) });
        } else if (type === T.WORK_FAIL) {
          this.socket.send(errorFrame("job_failed", `Job ${job.key} failed`, job.id));
        } else {
          this.socket.send(
            errorFrame(
              "job_exception",
              textDecoder.decode(data!),
              job.id,
            ),
          );
        }
        return;
      }
      default:
        // OPTION_RES, WORK_DATA/WARNING/STATUS: Gloom has nothing to say them with.
        return;
    }
  }

  override closed(): void {
    super.closed();
    for (const job of this.#submitted) this.#forget(job);
    for (const job of [...this.#jobs.values()]) this.#forget(job);
    this.#submitted.length = 0;
  }
}

/** A connection on the worker port: one job type, one job at a time. */
export class WorkerSession extends Session {
  #state: "new" | "grabbing" | "sleeping" | "busy" = "new";
  /** The job type joined (a byte string). */
  #fn: string | undefined;
  /** A join that came while a job was held: applied after its response. */
  #nextFn: string | undefined;
  /** Handle of the job held. */
  #handle = "";

  constructor(ctx: GloomContext, socket: GloomSocket) {
    super(ctx, socket, "gloom-worker");
  }

  expected(): string {
    return 'a worker sends {"type":"join","job_type":T} or {"type":"response","body":...}';
  }

  message(type: unknown, msg: Record<string, unknown>): void {
    if (type === "join") this.#join(msg);
    else if (type === "response") this.#response(msg);
    else this.unknownType(type);
  }

  #join(msg: Record<string, unknown>): void {
    const fn = jobTypeOf(msg);
    this.checkAccess("work", fn);
    if (this.#state === "busy") {
      this.#nextFn = fn;
      return;
    }
    this.#recast(fn);
  }

  #recast(fn: string): void {
    if (fn !== this.#fn) {
      if (this.#fn !== undefined) this.send(T.RESET_ABILITIES, EMPTY);
      this.send(T.CAN_DO, byteStringBytes(fn));
      this.#fn = fn;
    }
    this.#grab();
  }

  #grab(): void {
    this.#state = "grabbing";
    this.send(T.GRAB_JOB_UNIQ, EMPTY);
  }

  #response(msg: Record<string, unknown>): void {
    if (this.#state !== "busy") {
      throw new BadMessage("no_job", "Got a response but no job is held; wait for a job first");
    }
    if (!("body" in msg)) {
      throw new BadMessage("missing_field", 'Missing field "body" (the job\'s result, any JSON)');
    }
    const handle = this.#handle;
    this.#handle = "";
    this.#state = "grabbing";
    this.send(
      T.WORK_COMPLETE,
      concatBytes(byteStringBytes(handle), NUL, bodyToData(msg.body)),
    );
    const next = this.#nextFn;
    this.#nextFn = undefined;
    if (next !== undefined) this.#recast(next);
    else this.#grab();
  }

  packet(type: number, body: Uint8Array): void {
    switch (type) {
      case T.JOB_ASSIGN_UNIQ: {
        const [handle, fn, unique, data] = splitArgs(type, body);
        this.#state = "busy";
        this.#handle = byteString(handle!);
        const id = this.ctx.idsByHandle.get(this.#handle) ??
          (unique!.length > 0 ? textDecoder.decode(unique) : byteText(this.#handle));
        this.socket.send({
          type: "job",
          id,
          job_type: textDecoder.decode(fn),
          body: dataToBody(data!),
        });
        return;
      }
      case T.NO_JOB:
        this.#state = "sleeping";
        this.send(T.PRE_SLEEP, EMPTY);
        return;
      case T.NOOP:
        if (this.#state === "sleeping") this.#grab();
        return;
      case T.ERROR: {
        const [code, text] = splitArgs(T.ERROR, body).map((b) => textDecoder.decode(b));
        this.socket.send(errorFrame("server_error", `${text} (${code})`));
        return;
      }
      default:
        return;
    }
  }
}
