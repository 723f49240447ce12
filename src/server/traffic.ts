// Connection and byte counters of the Gearman port, for /metrics and the
// HTTP API. One addition per accepted and per closed connection; the bytes
// themselves are counted by each Connection (bytesIn, bytesOut).

/** What a connection tells of its bytes. */
export interface ByteCounts {
  /** Bytes read from the peer so far. */
  readonly bytesIn: number;
  /** Bytes written to the peer so far. */
  readonly bytesOut: number;
}

/** Counters of the Gearman port since the server started. */
export class Traffic {
  /** Connections accepted. */
  accepted = 0;
  /** Connections closed at once, unserved (they arrived while the server was stopping). */
  refused = 0;
  /** Bytes read from connections that have closed. */
  #closedIn = 0;
  /** Bytes written to connections that have closed. */
  #closedOut = 0;

  /** A connection closed: keep its byte counts. */
  closed(conn: ByteCounts): void {
    this.#closedIn += conn.bytesIn;
    this.#closedOut += conn.bytesOut;
  }

  /** Bytes read and written since start: closed connections plus the `open` ones. */
  bytes(open: Iterable<ByteCounts>): { received: number; sent: number } {
    let received = this.#closedIn;
    let sent = this.#closedOut;
    for (const c of open) {
      received += c.bytesIn;
      sent += c.bytesOut;
    }
    return { received, sent };
  }
}
