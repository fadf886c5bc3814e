// Discovery on a stock PeerServer with peer listing off (as on the public PeerJS server): a swarm has a few
// well-known rendezvous ids derived from its name, `flock-<first 16 hex of sha256(name)>-rv-<i>`, i < RENDEZVOUS.
// Any participant (host or client) that finds one free claims it (a second PeerJS peer with that id; PeerJS answers
// 'unavailable-id' when it is taken) and serves the swarm's record table there. Everyone announces its own record to
// every rendezvous every announceMs and gets the rendezvous' table back (gossip: announcers also pass on what they
// know, so records reach rendezvous that an announcer alone could not); a rendezvous that learns something new pushes
// its table to everyone connected to it at once, so a new host is routable within a round trip, not a round.
// Records expire (RECORD_TTL_MS: a host that died drops out within seconds); a host leaving on purpose says so
// (leave()), and its departure travels with the tables (record-table.ts). A rendezvous id whose owner left becomes
// free and the next participant to notice claims it.
// Discovery messages are small UTF-8 JSON in binary frames on their own channel (label 'flock-rv'), validated field by
// field; never on the hot path. Not here: the hidden-state protocol, routing, hosts.

import type { DataConnection, Peer } from 'peerjs';
import { withoutUndefined } from '../model/options';
import { SignalError } from './errors';
import type { Limits } from './protocol';
import { parseRecord, RECORD_TTL_MS, usableRecords, type PeerRecord } from './records';
import { RecordTable, type Departure } from './record-table';
import type { Directory } from './swarm-model';
import { dial, openPeer, probe, type LinkOptions, type PeerLink, type ProbeResult, type SignalConfig } from './transport';

/** Rendezvous ids per swarm. 3: one can leave and be replaced while two keep the table. */
export const RENDEZVOUS = 3;
/** Largest discovery message. 64 KiB holds ~300 records of ~200 bytes; a bigger one is dropped. */
const MAX_DISCOVERY_BYTES = 64 * 1024;
/** Most records taken from one message (bounds the table a hostile peer can fill per round). */
const MAX_RECORDS_PER_MESSAGE = 256;
/** Most records kept (when full, the soonest to expire makes room: record-table.ts). */
const MAX_TABLE = 4096;
/** A rendezvous attempt that has not opened after this long is forgotten (PeerServer expires offers after 5 s). */
const ATTEMPT_MS = 8_000;
/** A rendezvous pushes its table at most this often. 200 ms: a burst of announcements becomes one push. */
const PUSH_MS = 200;
/** A rendezvous link silent for this many rounds is dead (both ends talk every round). */
const SILENT_ROUNDS = 3;
/** Skip a push to a connection whose send buffer holds more than this (a slow or stuck reader). 256 KiB. */
const PUSH_BUFFER_BYTES = 256 * 1024;

export interface DiscoveryOptions {
  signal: SignalConfig;
  swarm: string;
  /** how often to announce / refresh. 3 s (tests: 300 ms); records live ttlMs */
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

/** A discovery message: records, and departures (announcers send only their own; rendezvous pass theirs on). */
export interface Table {
  records: PeerRecord[];
  gone: Departure[];
}

function encodeTable(t: Table): ArrayBuffer {
  const bytes = new TextEncoder().encode(JSON.stringify({ v: 1, records: t.records.slice(0, MAX_RECORDS_PER_MESSAGE), gone: t.gone.slice(0, MAX_RECORDS_PER_MESSAGE) }));
  const out = new ArrayBuffer(bytes.length);
  new Uint8Array(out).set(bytes);
  return out;
}

/** A discovery message's records and departures; anything malformed is left out (never throws). */
export function decodeTable(data: unknown, now: number): Table {
  const none: Table = { records: [], gone: [] };
  let bytes: Uint8Array;
  if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else return none;
  if (bytes.length > MAX_DISCOVERY_BYTES) return none;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return none;
  }
  if (typeof parsed !== 'object' || parsed === null) return none;
  const records: PeerRecord[] = [];
  const list = 'records' in parsed ? parsed.records : undefined;
  if (Array.isArray(list)) {
    for (const x of list.slice(0, MAX_RECORDS_PER_MESSAGE)) {
      const r = parseRecord(x, now);
      if (r) records.push(r);
    }
  }
  const gone: Departure[] = [];
  const left = 'gone' in parsed ? parsed.gone : undefined;
  if (Array.isArray(left)) {
    for (const x of left.slice(0, MAX_RECORDS_PER_MESSAGE)) {
      if (typeof x !== 'object' || x === null || !('id' in x) || !('until' in x)) continue;
      const { id, until } = x;
      if (typeof id === 'string' && /^[A-Za-z0-9_-]{1,128}$/.test(id) && typeof until === 'number' && Number.isFinite(until) && until > now) {
        gone.push({ id, until: Math.min(until, now + RECORD_TTL_MS * 10) });
      }
    }
  }
  return { records, gone };
}

/** An announcer's connection to one rendezvous. */
interface RvAttempt {
  conn: DataConnection;
  since: number;
  opened: boolean;
  /** the last time the rendezvous answered */
  heard: number;
}

export class Discovery implements Directory {
  readonly opts: DiscoveryOptions;
  private readonly table = new RecordTable(MAX_TABLE);
  /** rendezvous peers we hold (at most one) */
  private rv: { peer: Peer; index: number } | null = null;
  /** as a rendezvous: the announcers connected to us, and when each last spoke */
  private readonly announcers = new Map<DataConnection, number>();
  private pushTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly rvConns = new Map<number, RvAttempt>();
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
    const d = new Discovery(peer, { announceMs: 3_000, ttlMs: RECORD_TTL_MS, serveRendezvous: true, link: {}, ...withoutUndefined(opts), signal: opts.signal, swarm: opts.swarm });
    d.key = await swarmKey(d.opts.swarm);
    // an offer to a rendezvous id nobody holds expires: try again at the next round, not after ATTEMPT_MS
    peer.on('error', (e: { type: string; message: string }) => {
      if (e.type !== 'peer-unavailable') return;
      for (const [i, a] of d.rvConns) if (!a.opened && e.message.endsWith(` ${rendezvousId(d.key, i)}`)) d.rvConns.delete(i);
    });
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
    return this.table.list(Date.now());
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

  /** Whether `id` is still on the signalling server (transport.ts probe): a quick answer for a host gone quiet. */
  probe(id: string, timeoutMs = 5_000): Promise<ProbeResult> {
    return probe(this.peer, id, timeoutMs);
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

  /**
   * Leaving on purpose: tell every rendezvous we are connected to that our record is gone (they pass it on), and
   * stop announcing. Best effort: what does not arrive expires within the record's TTL.
   */
  async leave(): Promise<void> {
    const now = Date.now();
    const gone = this.table.depart(this.peer.id, now);
    this.opts.self = undefined;
    const msg = encodeTable({ records: [], gone: [gone] });
    for (const a of this.rvConns.values()) if (a.conn.open) a.conn.send(msg);
    this.push();
    // give the messages (and a push, if we are a rendezvous) a moment to leave before the caller closes everything
    await new Promise((r) => setTimeout(r, PUSH_MS + 50));
  }

  private async roundInner(): Promise<void> {
    const now = Date.now();
    const self = this.opts.self?.();
    if (self && this.table.merge([{ ...self, expiresAt: now + this.opts.ttlMs }], now)) this.push();
    if (this.opts.serveRendezvous && !this.rv) await this.claim();
    const mine = this.rv?.index;
    for (let i = 0; i < RENDEZVOUS; i++) if (i !== mine) this.announceTo(i);
    // as a rendezvous: forget announcers that went silent (a crashed peer's channel may never close)
    const silentMs = SILENT_ROUNDS * this.opts.announceMs;
    for (const [conn, heard] of this.announcers) {
      if (performance.now() - heard > silentMs) {
        this.announcers.delete(conn);
        conn.close();
      }
    }
  }

  private snapshot(): Table {
    const now = Date.now();
    return { records: this.table.list(now), gone: this.table.departures(now) };
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

  /**
   * As a rendezvous: merge whatever an announcer sends and answer with our table. An announcer may say that it
   * leaves, for itself only (its departure names the id of the peer the message came from).
   */
  private serveRendezvous(conn: DataConnection): void {
    conn.on('open', () => this.announcers.set(conn, performance.now()));
    conn.on('data', (data) => {
      const now = Date.now();
      this.announcers.set(conn, performance.now());
      const t = decodeTable(data, now);
      let changed = this.table.merge(t.records, now);
      for (const d of t.gone) {
        if (d.id !== conn.peer) continue;
        this.table.depart(d.id, now);
        changed = true;
      }
      if (conn.open) conn.send(encodeTable(this.snapshot()));
      if (changed) this.push();
    });
    conn.on('close', () => this.announcers.delete(conn));
    conn.on('error', () => conn.close());
  }

  /** As a rendezvous: send the table to every announcer connected to us, soon (one push per PUSH_MS at most). */
  private push(): void {
    if (!this.rv || this.pushTimer || this.stopped) return;
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined;
      const msg = encodeTable(this.snapshot());
      for (const conn of this.announcers.keys()) {
        if (!conn.open) continue;
        const buffered = conn.dataChannel?.bufferedAmount ?? 0;
        if (buffered <= PUSH_BUFFER_BYTES) conn.send(msg); // a reader that is behind gets the next one
      }
    }, PUSH_MS);
  }

  /** What a rendezvous told us (its answer or its push): its records and the departures it heard. */
  private heard(data: unknown): void {
    const now = Date.now();
    const t = decodeTable(data, now);
    this.table.applyDepartures(t.gone, now);
    if (this.table.merge(t.records, now)) this.push();
  }

  /**
   * Send our table to rendezvous i (its answer is merged when it comes). Never blocks a round: while the channel is not
   * open yet there is one pending attempt per index, left to PeerJS until it opens or PeerServer expires it. We never
   * close a pending attempt ourselves: PeerServer queues an offer to a free id and delivers it to whoever claims that
   * id next, and closing a connection in the middle of that negotiation crashes PeerJS (an unhandled rejection in its
   * candidate handler). An open channel that has not answered for SILENT_ROUNDS rounds is dead: closed and redialled.
   */
  private announceTo(i: number): void {
    const cur = this.rvConns.get(i);
    if (cur?.conn.open && performance.now() - cur.heard < SILENT_ROUNDS * this.opts.announceMs) {
      cur.conn.send(encodeTable(this.ownTable()));
      return;
    }
    if (cur && !cur.opened && performance.now() - cur.since < ATTEMPT_MS) return; // still negotiating
    if (cur?.opened) cur.conn.close(); // an open channel that went down or silent
    this.rvConns.delete(i);
    if (this.peer.destroyed || this.peer.disconnected) return;
    // PeerJS returns undefined (and logs) instead of throwing when it cannot connect
    const c: DataConnection | undefined = this.peer.connect(rendezvousId(this.key, i), { serialization: 'raw', reliable: true, label: 'flock-rv' });
    if (!c) return;
    const entry: RvAttempt = { conn: c, since: performance.now(), opened: false, heard: performance.now() };
    this.rvConns.set(i, entry);
    c.on('data', (data) => {
      entry.heard = performance.now();
      this.heard(data);
    });
    c.on('open', () => {
      entry.opened = true;
      entry.heard = performance.now();
      c.send(encodeTable(this.ownTable()));
    });
    c.on('close', () => {
      if (this.rvConns.get(i) === entry) this.rvConns.delete(i);
    });
  }

  /** What an announcer sends a rendezvous: what it knows; of departures, only its own (others' are not its word). */
  private ownTable(): Table {
    const s = this.snapshot();
    return { records: s.records, gone: s.gone.filter((d) => d.id === this.peer.id) };
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
    clearTimeout(this.pushTimer);
    for (const e of this.rvConns.values()) if (e.conn.open) e.conn.close();
    this.rvConns.clear();
    this.rv?.peer.destroy();
    this.rv = null;
    this.announcers.clear();
    for (const p of this.links.values()) p.then((l) => l.close(), () => {});
    this.links.clear();
  }
}
