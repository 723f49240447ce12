// Per-connection Gearman state, shared by the dispatcher and admin commands.

import type { PacketWriter } from "../protocol/packet_writer.ts";
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
  /** Handle no more packets until `resume` (a reply waits for the store); optional. */
  pause?(): void;
  /** Handle the packets held back by `pause`. */
  resume?(): void;
}

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
  /** Slots of the jobs this worker holds. */
  readonly jobs: Set<number> = new Set();
  /** Foreground jobs this client waits on. */
  readonly waiting: Set<number> = new Set();
  /** Handles of jobs still only in the store that this client waits on. */
  readonly diskWaits: Set<number> = new Set();
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

  /** Whether this connection has registered as a worker. */
  get isWorker(): boolean {
    return this.functions.length > 0;
  }
}
