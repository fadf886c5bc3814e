// One intercepted connection of the hostile signalling server (mitm-signal.ts): the attacker's two PeerJS
// DataConnections, `front` (answers the offerer while pretending to be the target) and `back` (dialled to the target
// while pretending to be the offerer), and the relay between them. Every message is passed on unchanged, in order,
// and recorded, so a test can show what the attacker read. Messages that arrive before the other end is open wait in
// a queue. Not a signalling server: mitm-signal.ts routes the signalling and creates these.

import type { DataConnection } from 'peerjs';

/** What crossed the attacker, in arrival order; binary messages are copied. */
export interface Relayed {
  dir: 'to-target' | 'to-offerer';
  data: Uint8Array | string;
}

/** The offer's data-connection options, copied onto the attacker's connection to the target. */
export interface OfferShape {
  connectionId: string;
  label: string;
  serialization: string;
  reliable: boolean;
  metadata: unknown;
}

export class MitmRelayError extends Error {
  override name = 'MitmRelayError';
}

export class MitmSession {
  /** Everything relayed, both directions, in arrival order. */
  readonly seen: Relayed[] = [];
  front: DataConnection | null = null;
  back: DataConnection | null = null;
  private readonly pending: { 'to-target': unknown[]; 'to-offerer': unknown[] } = { 'to-target': [], 'to-offerer': [] };
  private closedFlag = false;
  private readonly bothOpen: Promise<void>;
  private markOpen!: () => void;
  private markFailed!: (e: Error) => void;

  constructor(
    /** the peer whose offer was intercepted */
    readonly offerer: string,
    /** the peer it meant to reach */
    readonly target: string,
    readonly shape: OfferShape,
    openTimeoutMs: number,
  ) {
    this.bothOpen = new Promise<void>((resolve, reject) => {
      this.markOpen = resolve;
      this.markFailed = reject;
    });
    this.bothOpen.catch(() => {}); // a session nobody waits on may fail quietly
    const timer = setTimeout(() => this.close(`both ends not open within ${openTimeoutMs} ms`), openTimeoutMs);
    void this.bothOpen.then(() => clearTimeout(timer), () => clearTimeout(timer));
  }

  get connectionId(): string {
    return this.shape.connectionId;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Messages relayed in one direction, in order. */
  relayed(dir: Relayed['dir']): (Uint8Array | string)[] {
    return this.seen.filter((r) => r.dir === dir).map((r) => r.data);
  }

  /** Resolves once both of the attacker's connections are open; rejects if the session closes first. */
  open(): Promise<void> {
    return this.bothOpen;
  }

  /** The connection that answered the offerer (its peer is the offerer). */
  attachFront(conn: DataConnection): void {
    this.front = conn;
    this.wire(conn, 'to-target');
  }

  /** The connection dialled to the target (its peer is the target). */
  attachBack(conn: DataConnection): void {
    this.back = conn;
    this.wire(conn, 'to-offerer');
  }

  /** Close both connections (idempotent). */
  close(why = 'closed by the attacker'): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.markFailed(new MitmRelayError(`${this.offerer} -> ${this.target} (${this.connectionId}): ${why}`));
    for (const c of [this.front, this.back]) {
      if (c?.open) c.close();
      else c?.once('open', () => c.close()); // PeerJS throws from its candidate handler if closed mid-negotiation
    }
  }

  /** Messages read on `from` go in direction `dir`; the other connection sends them once it is open. */
  private wire(from: DataConnection, dir: Relayed['dir']): void {
    from.on('data', (data: unknown) => {
      if (this.closedFlag) return;
      const recorded = copy(data);
      if (recorded === null) return this.close(`${from.peer} sent a ${Object.prototype.toString.call(data)}, not raw bytes or text`);
      this.seen.push({ dir, data: recorded });
      const to = dir === 'to-target' ? this.back : this.front;
      if (to?.open) to.send(data);
      else this.pending[dir].push(data);
    });
    from.on('open', () => {
      if (this.closedFlag) return;
      // this end just opened: what the other end read meanwhile goes out now
      const queued = this.pending[dir === 'to-target' ? 'to-offerer' : 'to-target'];
      for (const d of queued.splice(0)) from.send(d);
      if (this.front?.open && this.back?.open) this.markOpen();
    });
    from.on('close', () => this.close(`${from.peer} closed`));
    from.on('error', (e: Error) => this.close(`${from.peer}: ${e.message}`));
  }
}

/** A copy of what PeerJS's raw serialization handed over (ArrayBuffer, a view of one, or a string); null otherwise. */
function copy(data: unknown): Uint8Array | string | null {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0));
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  return null;
}
