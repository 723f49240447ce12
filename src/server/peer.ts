// Per-connection Gearman state, shared by the dispatcher and admin commands.

import type { PacketWriter } from "../protocol/packet_writer.ts";
import type { HeldReply } from "../transport/held_replies.ts";
import type { FunctionEntry } from "./function_entry.ts";
import type { CompiledAccess } from "./tls_access.ts";

/** What the dispatcher needs of a connection: it never sees a socket. */
export interface PeerConnection {
  /** The writer to append packets to (flushed at the end of the turn). */
  out(): PacketWriter;
  /** Flush, then close. */
  close(): void;
  /** `host:port` of the peer. */
  readonly remote: string;
  /** The peer's IP address. */
  readonly remoteHost: string;
  /** Whether the connection is closing or closed. */
  readonly closed: boolean;
  /** Hold output back until `uncork` (replies waiting for a store commit). */
  cork(): void;
  /** Release one `cork`. */
  uncork(): void;
  /** Close at once, dropping unsent output (a commit failed: its acks must not go out). */
  abort(): void;
  /**
   * Keep the place of a reply known later (a store's answer): what is
   * written after it waits behind it, so replies stay in request order.
   */
  holdReply(): HeldReply;
  /** Send a held reply (written to its `out`) once those before it are sent. */
  releaseReply(held: HeldReply): void;
}

/** What an absent set reads as. */
const NONE: ReadonlySet<number> = new Set();

/** One connected client, worker or admin tool. */
export class Peer {
  readonly id: number;
  readonly conn: PeerConnection;
  /** SET_CLIENT_ID value (byte string); "-" until set. */
  clientId = "-";
  /** Functions this worker can do, in the order registered. */
  functions: FunctionEntry[] = [];
  /** CAN_DO_TIMEOUT values by function id, in milliseconds. */
  timeouts: Map<number, number> | undefined;
  /** Sent PRE_SLEEP and not woken since. */
  sleeping = false;
  /** A NOOP was sent and no GRAB has come since. */
  noopSent = false;
  // The three sets below are made on first use: most connections are
  // clients that never hold a job, or workers that never wait on one, and
  // an empty Set costs ~100 bytes per connection (10,000 idle connections).
  #jobs: Set<number> | undefined = undefined;
  #waiting: Set<number> | undefined = undefined;
  #diskWaits: Set<number> | undefined = undefined;
  /** Admin lines received (the first may be the admin token). */
  adminLines = 0;
  /** Sent the admin token: every admin command is allowed. */
  adminAuthorized = false;
  /** The client certificate's common name (mutual TLS), if any. */
  certName: string | undefined = undefined;
  /** Every name of the client certificate (CN first, then subject alternative names). */
  certNames: readonly string[] | undefined = undefined;
  /** What the client certificate may do (--tls-access), if rules apply. */
  access: CompiledAccess | undefined = undefined;
  /** OPTION_REQ "exceptions" was set. */
  exceptions = false;
  /** Last function submitted, to skip decoding its name again. */
  lastFn: FunctionEntry | undefined;

  constructor(id: number, conn: PeerConnection) {
    this.id = id;
    this.conn = conn;
  }

  /** Slots of the jobs this worker holds. */
  get jobs(): ReadonlySet<number> {
    return this.#jobs ?? NONE;
  }

  /** This worker was given the job in `slot`. */
  holdJob(slot: number): void {
    (this.#jobs ??= new Set()).add(slot);
  }

  /** This worker no longer holds the job in `slot`. */
  dropJob(slot: number): void {
    this.#jobs?.delete(slot);
  }

  /** Foreground jobs this client waits on. */
  get waiting(): ReadonlySet<number> {
    return this.#waiting ?? NONE;
  }

  /** This client waits on the job in `slot`. */
  waitOn(slot: number): void {
    (this.#waiting ??= new Set()).add(slot);
  }

  /** This client no longer waits on the job in `slot`. */
  stopWaiting(slot: number): void {
    this.#waiting?.delete(slot);
  }

  /** Handles of jobs still only in the store that this client waits on. */
  get diskWaits(): ReadonlySet<number> {
    return this.#diskWaits ?? NONE;
  }

  /** This client waits on a job only in the store, by handle. */
  waitOnStored(handle: number): void {
    (this.#diskWaits ??= new Set()).add(handle);
  }

  /** This client no longer waits on the stored job `handle`. */
  stopWaitingOnStored(handle: number): void {
    this.#diskWaits?.delete(handle);
  }

  /** Whether this connection holds jobs (a worker) or waits on any (a client). */
  get busy(): boolean {
    return (this.#jobs !== undefined && this.#jobs.size > 0) ||
      (this.#waiting !== undefined && this.#waiting.size > 0);
  }

  /** Whether this connection has registered as a worker. */
  get isWorker(): boolean {
    return this.functions.length > 0;
  }
}
