// Discovery on a stock PeerServer with peer listing off (as on the public PeerJS server): a swarm has a few
// well-known rendezvous ids derived from its name, `flock-<first 16 hex of sha256(name)>-rv-<i>`, i < RENDEZVOUS.
// Any participant (host or client) that finds one free claims it (a second PeerJS peer with that id; PeerJS answers
// 'unavailable-id' when it is taken) and serves the swarm's record table there. Everyone announces its own record to
// every rendezvous every announceMs and gets the rendezvous' table back (gossip: announcers also pass on what they
// know, so records reach rendezvous that an announcer alone could not). Records expire (records.ts); a rendezvous id
// whose owner left becomes free and the next participant to notice claims it.
// Discovery messages are small UTF-8 JSON in binary frames on their own channel (label 'flock-rv'), validated field by
// field; never on the hot path. Not here: the hidden-state protocol, routing, hosts.

import type { DataConnection, Peer } from 'peerjs';
import { SignalError } from './errors';
import type { Limits } from './protocol';
import { mergeRecords, parseRecord, RECORD_TTL_MS, usableRecords, type PeerRecord } from './records';
import { withoutUndefined } from '../model/options';
import { dial, openPeer, type PeerLink, type LinkOptions, type SignalConfig } from './transport';
import type { Directory } from './swarm-model';

/** Rendezvous ids per swarm. 3: one can leave and be replaced while two keep the table. */
export const RENDEZVOUS = 3;
/** Largest discovery message. 64 KiB holds ~300 records of ~200 bytes; a bigger one is dropped. */
const MAX_DISCOVERY_BYTES = 64 * 1024;
/** Most records taken from one message (bounds the table a hostile peer can fill per round). */
const MAX_RECORDS_PER_MESSAGE = 256;
/** Most records kept (the oldest expiring go first when full). */
const MAX_TABLE = 4096;
/** A rendezvous attempt that has not opened after this long is forgotten (PeerServer expires offers after 5 s). */
const ATTEMPT_MS = 8_000;

export interface DiscoveryOptions {
  signal: SignalConfig;
  swarm: string;
  /** how often to announce / refresh. 10 s (tests: 300 ms); records live RECORD_TTL_MS */
  announceMs: number;
  /** our own record, if we host (called at every announce so throughput and free KV stay current) */
  self?: () => Omit<PeerRecord, 'expiresAt'>;
  /** record lifetime. RECORD_TTL_MS */
  ttlMs: number;
  /** whether this participant may claim a rendezvous id */
  serveRendezvous: boolean;
  link: Partial<LinkOptions>;
}

/** First 16 hex digits of sha256(swarm name): ids stay short and reveal nothing but the swarm's hash. */
export async function swarmKey(swarm: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(swarm)));
  let hex = '';
  for (const b of d.subarray(0, 8)) hex += b.toString(16).padStart(2, '0');
  return hex;
}

export function rendezvousId(key: string, i: number): string {
  return `flock-${key}-rv-${i}`;
}

/** Discovery message: a table of records, as JSON bytes. */
function encodeTable(records: PeerRecord[]): ArrayBuffer {
  const bytes = new TextEncoder().encode(JSON.stringify({ v: 1, records: records.slice(0, MAX_RECORDS_PER_MESSAGE) }));
  const out = new ArrayBuffer(bytes.length);
  new Uint8Array(out).set(bytes);
  return out;
}

/** Records from a discovery message; anything malformed yields [] (never throws). */
export function decodeTable(data: unknown, now: number): PeerRecord[] {
  let bytes: Uint8Array;
  if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else return [];
  if (bytes.length > MAX_DISCOVERY_BYTES) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return [];
  }
  if (typeof parsed !== 'object' || parsed === null || !('records' in parsed)) return [];
  const list: unknown = parsed.records;
  if (!Array.isArray(list)) return [];
  const out: PeerRecord[] = [];
  for (const x of list.slice(0, MAX_RECORDS_PER_MESSAGE)) {
    const r = parseRecord(x, now);
    if (r) out.push(r);
  }
  return out;
}

export class Discovery implements Directory {
  readonly opts: DiscoveryOptions;
  readonly table = new Map<string, PeerRecord>();
  /** rendezvous peers we hold (at most one) */
  private rv: { peer: Peer; index: number } | null = null;
  private readonly rvConns = new Map<number, { conn: DataConnection; since: number; opened: boolean }>();
  private readonly links = new Map<string, Promise<PeerLink>>();
  private readonly resolved = new Map<string, PeerLink>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;
  private rounding = false;
  private key = '';

  private constructor(
    /** our main peer (hosts accept hidden-state links on it; clients connect from it) */
    readonly peer: Peer,
    opts: DiscoveryOptions,
  ) {
    this.opts = opts;
  }

  static async start(peer: Peer, opts: Partial<DiscoveryOptions> & Pick<DiscoveryOptions, 'signal' | 'swarm'>): Promise<Discovery> {
    const d = new Discovery(peer, { announceMs: 10_000, ttlMs: RECORD_TTL_MS, serveRendezvous: true, link: {}, ...withoutUndefined(opts), signal: opts.signal, swarm: opts.swarm });
    d.key = await swarmKey(d.opts.swarm);
    await d.round();
    d.timer = setInterval(() => void d.round(), d.opts.announceMs);
    await d.settle();
    return d;
  }

  /** The rendezvous index we serve, or null. */
  get rendezvousIndex(): number | null {
    return this.rv?.index ?? null;
  }

  records(): PeerRecord[] {
    const now = Date.now();
    mergeRecords(this.table, [], now);
    return [...this.table.values()];
  }

  /** Live records of hosts serving `modelHash` with our protocol version. */
  recordsFor(modelHash: string): PeerRecord[] {
    return usableRecords(this.records(), modelHash, Date.now());
  }

  /** Wait until the records cover what `ok` wants (tests, CLI start-up), or throw SignalError after timeoutMs. */
  async waitFor(ok: (records: PeerRecord[]) => boolean, timeoutMs = 15_000): Promise<void> {
    const t0 = performance.now();
    while (!ok(this.records())) {
      if (performance.now() - t0 > timeoutMs) throw new SignalError('timeout', `Discovery found no suitable peers within ${timeoutMs} ms.`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Heartbeat round trips of the links we hold, by peer id. */
  rttMs(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [id, l] of this.resolved) if (!l.isDown && Number.isFinite(l.rttMs)) out.set(id, l.rttMs);
    return out;
  }

  /**
   * A hidden-state link to `id` from our main peer, shared while it is up; with `limits`, a new link accepts and
   * encodes frames under them (a client passes its model's, SwarmModel.limits).
   */
  connect(id: string, limits?: Limits): Promise<PeerLink> {
    let p = this.links.get(id);
    if (!p) {
      p = dial(this.peer, id, limits ? { ...this.opts.link, limits } : this.opts.link);
      this.links.set(id, p);
      p.then(
        (l) => {
          this.resolved.set(id, l);
          void l.closed.then(() => {
            if (this.links.get(id) === p) this.links.delete(id);
            if (this.resolved.get(id) === l) this.resolved.delete(id);
          });
        },
        () => this.links.get(id) === p && this.links.delete(id),
      );
    }
    return p;
  }

  /** Re-announce now (hosts call this after their free KV changes a lot; tests to speed things up). */
  async round(): Promise<void> {
    if (this.stopped || this.rounding) return;
    this.rounding = true;
    try {
      await this.roundInner();
    } finally {
      this.rounding = false;
    }
  }

  private async roundInner(): Promise<void> {
    const now = Date.now();
    const self = this.opts.self?.();
    if (self) mergeRecords(this.table, [{ ...self, expiresAt: now + this.opts.ttlMs }], now);
    else mergeRecords(this.table, [], now);
    if (this.opts.serveRendezvous && !this.rv) await this.claim();
    const mine = this.rv?.index;
    for (let i = 0; i < RENDEZVOUS; i++) if (i !== mine) this.announceTo(i);
  }

  /** Try to take a free rendezvous id (lowest index first). */
  private async claim(): Promise<void> {
    for (let i = 0; i < RENDEZVOUS && !this.stopped; i++) {
      let res;
      try {
        res = await openPeer(this.opts.signal, rendezvousId(this.key, i));
      } catch {
        return; // signalling trouble: try again next round
      }
      if (res.kind === 'taken') continue;
      if (this.stopped) {
        res.peer.destroy();
        return;
      }
      const rvPeer = res.peer;
      this.rv = { peer: rvPeer, index: i };
      rvPeer.on('connection', (conn) => this.serveRendezvous(conn));
      rvPeer.on('disconnected', () => {
        // lost the signalling server: give the id up so another participant can claim it
        if (this.rv?.peer === rvPeer) this.rv = null;
        rvPeer.destroy();
      });
      return;
    }
  }

  /** As a rendezvous: merge whatever an announcer sends and answer with our table. */
  private serveRendezvous(conn: DataConnection): void {
    conn.on('data', (data) => {
      const now = Date.now();
      const incoming = decodeTable(data, now);
      if (this.table.size + incoming.length <= MAX_TABLE) mergeRecords(this.table, incoming, now);
      if (conn.open) conn.send(encodeTable(this.records()));
    });
    conn.on('error', () => conn.close());
  }

  /**
   * Send our table to rendezvous i (its answer is merged when it comes). Never blocks a round: while the channel is not
   * open yet there is one pending attempt per index, left to PeerJS until it opens or PeerServer expires it (5 s
   * expire_timeout). We never close a pending attempt ourselves: PeerServer queues an offer to a free id and delivers
   * it to whoever claims that id next, and closing a connection in the middle of that negotiation crashes PeerJS
   * (an unhandled rejection in its candidate handler).
   */
  private announceTo(i: number): void {
    const cur = this.rvConns.get(i);
    if (cur?.conn.open) {
      cur.conn.send(encodeTable(this.records()));
      return;
    }
    if (cur && performance.now() - cur.since < ATTEMPT_MS) return; // still negotiating
    if (cur?.opened) cur.conn.close(); // an open channel that went down
    this.rvConns.delete(i);
    if (this.peer.destroyed || this.peer.disconnected) return;
    // PeerJS returns undefined (and logs) instead of throwing when it cannot connect
    const c: DataConnection | undefined = this.peer.connect(rendezvousId(this.key, i), { serialization: 'raw', reliable: true, label: 'flock-rv' });
    if (!c) return;
    const entry = { conn: c, since: performance.now(), opened: false };
    this.rvConns.set(i, entry);
    c.on('data', (data) => mergeRecords(this.table, decodeTable(data, Date.now()), Date.now()));
    c.on('open', () => {
      entry.opened = true;
      c.send(encodeTable(this.records()));
    });
    c.on('close', () => {
      if (this.rvConns.get(i) === entry) this.rvConns.delete(i);
    });
  }

  /** Wait until every pending rendezvous attempt has opened or timeoutMs passed (start-up). */
  async settle(timeoutMs = 2_000): Promise<void> {
    const t0 = performance.now();
    while (performance.now() - t0 < timeoutMs && [...this.rvConns.values()].some((e) => !e.conn.open)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (this.rvConns.size > 0) await new Promise((r) => setTimeout(r, 100)); // the answers to our first announce
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    for (const e of this.rvConns.values()) if (e.conn.open) e.conn.close();
    this.rvConns.clear();
    this.rv?.peer.destroy();
    this.rv = null;
    for (const p of this.links.values()) p.then((l) => l.close(), () => {});
    this.links.clear();
  }
}
