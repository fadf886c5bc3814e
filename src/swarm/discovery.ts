// Discovery on a stock PeerServer with peer listing off (as on the public PeerJS server). A swarm has a few
// rendezvous ids per epoch, `flock-<key>-<epoch>-rv-<i>` (key: swarm-config.ts rendezvousKey, from the name or, in a
// private swarm, the secret; epoch: Date.now() / epochMs), so a squatter that claims them holds them for one epoch at
// most. Any participant that finds one free claims it (a second PeerJS peer with that id) and serves the swarm's
// record table there; everyone announces its signed record (records.ts) to every rendezvous every announceMs, and
// also to a few hosts it knows (hosts answer on their own peer too), so a rendezvous that withholds records, or
// squatted ids, do not cut anyone off from hosts already known. A rendezvous that learns something new pushes its
// table to everyone connected to it. Records are verified before they count (signature, key, proof of work) and a
// record replaces another only with a higher sequence; departures are signed; tables are bounded
// (record-table.ts). Every rendezvous link starts with link-auth.ts's authentication (and, in a private swarm, the
// proof of membership: outsiders learn nothing), is rate limited, and must use 'raw' serialization.
// Discovery messages are small UTF-8 JSON in binary frames on their own channel (label 'flock-rv'), validated field by
// field; never on the hot path. Not here: the hidden-state protocol, routing, hosts.

import type { DataConnection, Peer } from 'peerjs';
import { withoutUndefined } from '../model/options';
import { SignalError } from './errors';
import type { Identity } from './identity';
import { authenticate } from './link-auth';
import type { Limits } from './protocol';
import {
  parseDeparture, parseRecord, RECORD_TTL_MS, signDeparture, signRecord, usableRecords, verifyDeparture, verifyRecord,
  type Departure, type PeerRecord, type RecordFields,
} from './records';
import { RecordTable } from './record-table';
import { rendezvousKey, type SwarmConfig } from './swarm-config';
import type { Directory } from './swarm-model';
import { dial, openPeer, probe, type LinkAuth, type LinkOptions, type PeerLink, type ProbeResult, type SignalConfig } from './transport';

/** Rendezvous ids per swarm and epoch. 3: one can leave and be replaced while two keep the table. */
export const RENDEZVOUS = 3;
/** Rendezvous ids change this often. 10 min: squatting costs an attacker fresh claims every 10 minutes. */
export const EPOCH_MS = 10 * 60_000;
/** Known hosts announced to directly each round, besides the rendezvous. */
const GOSSIP_PEERS = 3;
/** Largest discovery message. 64 KiB holds ~200 signed records; a bigger one is dropped. */
const MAX_DISCOVERY_BYTES = 64 * 1024;
/** Most records taken from one message (bounds the table a hostile peer can fill per round). */
const MAX_RECORDS_PER_MESSAGE = 256;
/** Most records kept (when full, the soonest to expire makes room: record-table.ts). */
const MAX_TABLE = 4096;
/** Most announcers a rendezvous serves at once, and per key: a flood of connections is refused, not served. */
const MAX_ANNOUNCERS = 256;
const MAX_ANNOUNCERS_PER_KEY = 4;
/** Messages an announcer may send: a bucket of 20, refilled at 10 a second (an honest one sends one per round). */
const RV_BURST = 20;
const RV_PER_SECOND = 10;
/** A rendezvous attempt that has not opened after this long is forgotten (PeerServer expires offers after 5 s). */
const ATTEMPT_MS = 8_000;
/** A rendezvous pushes its table at most this often. 200 ms: a burst of announcements becomes one push. */
const PUSH_MS = 200;
/** A rendezvous link silent for this many rounds is dead (both ends talk every round). */
const SILENT_ROUNDS = 3;
/** Skip a push to a connection whose send buffer holds more than this (a slow or stuck reader). 256 KiB. */
const PUSH_BUFFER_BYTES = 256 * 1024;
/** Time for a rendezvous link's authentication. */
const AUTH_MS = 5_000;

export interface DiscoveryOptions {
  signal: SignalConfig;
  swarm: SwarmConfig;
  /** who we are: records are signed with it, links prove it */
  identity: Identity;
  /** how often to announce / refresh. 3 s (tests: 300 ms); records live ttlMs */
  announceMs: number;
  /** what we serve, if we host (called at every announce so throughput and free KV stay current) */
  self?: () => RecordFields;
  /** record lifetime. RECORD_TTL_MS */
  ttlMs: number;
  /** whether this participant may claim a rendezvous id */
  serveRendezvous: boolean;
  link: Partial<LinkOptions>;
  /** rendezvous ids change this often (EPOCH_MS; tests: seconds) */
  epochMs: number;
  /** hosts known from before (a cache kept by the caller): announced to directly, like the rendezvous */
  knownPeers: readonly string[];
}

/** Rendezvous id `i` of `epoch` for a swarm's rendezvous key. */
export function rendezvousId(key: string, epoch: number, i: number): string {
  return `flock-${key}-${epoch}-rv-${i}`;
}

/** A discovery message: signed records, and signed departures. */
export interface Table {
  records: PeerRecord[];
  gone: Departure[];
}

/**
 * A table as one message of at most MAX_DISCOVERY_BYTES: departures first, then records, as many as fit (a receiver
 * drops a bigger message whole). What does not fit goes in the next round's message: tables are sent every round.
 */
function encodeTable(t: Table): ArrayBuffer {
  const enc = new TextEncoder();
  const parts: string[] = [];
  let size = 40; // {"v":2,"records":[],"gone":[]} and commas
  const take = (items: unknown[], max: number): string[] => {
    const out: string[] = [];
    for (const x of items.slice(0, max)) {
      const s = JSON.stringify(x);
      const n = enc.encode(s).length + 1;
      if (size + n > MAX_DISCOVERY_BYTES) break;
      size += n;
      out.push(s);
    }
    return out;
  };
  const gone = take(t.gone.map((d) => ({ ...d, gone: true })), MAX_RECORDS_PER_MESSAGE);
  // records in a different order each time, so a table too big for one message reaches everyone over a few rounds
  const shuffled = [...t.records];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  const records = take(shuffled, MAX_RECORDS_PER_MESSAGE);
  parts.push(`{"v":2,"records":[${records.join(',')}],"gone":[${gone.join(',')}]}`);
  const bytes = enc.encode(parts[0]);
  const out = new ArrayBuffer(bytes.length);
  new Uint8Array(out).set(bytes);
  return out;
}

/** A discovery message's records and departures, checked field by field (signatures: verifyTable). Never throws. */
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
  const list = 'records' in parsed ? parsed.records : undefined;
  const left = 'gone' in parsed ? parsed.gone : undefined;
  return {
    records: Array.isArray(list) ? list.slice(0, MAX_RECORDS_PER_MESSAGE).map((x) => parseRecord(x, now)).filter((r): r is PeerRecord => r !== null) : [],
    gone: Array.isArray(left) ? left.slice(0, MAX_RECORDS_PER_MESSAGE).map(parseDeparture).filter((d): d is Departure => d !== null) : [],
  };
}

/** Only what its owners signed (and whose keys carry the swarm's work): forged or altered entries are dropped. */
export async function verifyTable(t: Table, powBits: number): Promise<Table> {
  const [r, g] = await Promise.all([
    Promise.all(t.records.map((x) => verifyRecord(x, powBits))),
    Promise.all(t.gone.map((x) => verifyDeparture(x, powBits))),
  ]);
  return { records: t.records.filter((_, i) => r[i]), gone: t.gone.filter((_, i) => g[i]) };
}

/** An announcer's connection to one rendezvous or known host. */
interface RvAttempt {
  conn: DataConnection;
  since: number;
  /** authenticated and ready */
  ready: boolean;
  /** the last time the other end answered */
  heard: number;
}

/** As a rendezvous: an announcer, its key, and its message budget. */
interface Announcer {
  keyId: string;
  heard: number;
  tokens: number;
  tokensAt: number;
}

export class Discovery implements Directory {
  readonly opts: DiscoveryOptions;
  private readonly table = new RecordTable(MAX_TABLE);
  /** the rendezvous peer we hold (at most one), and its epoch */
  private rv: { peer: Peer; index: number; epoch: number } | null = null;
  /** as a rendezvous (or a host answering on its own peer): the announcers connected to us */
  private readonly announcers = new Map<DataConnection, Announcer>();
  private pushTimer: ReturnType<typeof setTimeout> | undefined;
  /** our links to rendezvous and known hosts, by the id dialled */
  private readonly outgoing = new Map<string, RvAttempt>();
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

  static async start(peer: Peer, opts: Partial<DiscoveryOptions> & Pick<DiscoveryOptions, 'signal' | 'swarm' | 'identity'>): Promise<Discovery> {
    const d = new Discovery(peer, {
      announceMs: 3_000, ttlMs: RECORD_TTL_MS, serveRendezvous: true, link: {}, epochMs: EPOCH_MS, knownPeers: [],
      ...withoutUndefined(opts), signal: opts.signal, swarm: opts.swarm, identity: opts.identity,
    });
    d.key = await rendezvousKey(d.opts.swarm);
    // an offer to an id nobody holds expires: try again at the next round, not after ATTEMPT_MS
    peer.on('error', (e: { type: string; message: string }) => {
      if (e.type !== 'peer-unavailable') return;
      for (const [id, a] of d.outgoing) if (!a.ready && e.message.endsWith(` ${id}`)) d.outgoing.delete(id);
    });
    await d.round();
    d.timer = setInterval(() => void d.round().catch(() => undefined), d.opts.announceMs); // a failed round waits for the next
    await d.settle();
    return d;
  }

  /** The rendezvous index we serve, or null. */
  get rendezvousIndex(): number | null {
    return this.rv?.index ?? null;
  }

  /** Who links are opened as (our identity, our swarm). */
  get auth(): LinkAuth {
    return { identity: this.opts.identity, swarm: this.opts.swarm };
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
      p = dial(this.peer, id, limits ? { ...this.opts.link, limits } : this.opts.link, this.auth);
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
   * Leaving on purpose: a signed departure to everyone we announce to (they pass it on), and no more announcing.
   * Best effort: what does not arrive expires within the record's TTL.
   */
  async leave(): Promise<void> {
    this.opts.self = undefined;
    const myId = this.peer.id as string | null;
    if (!myId) return; // never reached the signalling server, or lost it: the record expires on its own
    const d = await signDeparture(this.opts.identity, myId);
    this.table.depart(d, Date.now());
    const msg = encodeTable({ records: [], gone: [d] });
    for (const a of this.outgoing.values()) if (a.ready && a.conn.open) a.conn.send(msg);
    this.push();
    // give the messages (and a push, if we are a rendezvous) a moment to leave before the caller closes everything
    await new Promise((r) => setTimeout(r, PUSH_MS + 50));
  }

  /** A 'flock-rv' connection to us, on our rendezvous peer or (hosts) on our main peer: serve it the table. */
  answer(conn: DataConnection): void {
    // never close a connection mid-negotiation (PeerJS throws from its candidate handler): refuse once it is open
    const refuse = (): void => void (conn.open ? conn.close() : conn.once('open', () => conn.close()));
    if (this.stopped || conn.serialization !== 'raw' || this.announcers.size >= MAX_ANNOUNCERS) return refuse();
    const start = async (): Promise<void> => {
      let keyId: string;
      let early: unknown[];
      try {
        const proved = await authenticate(conn, this.opts.identity, conn.provider.id, this.opts.swarm, AUTH_MS);
        keyId = proved.remote.keyId;
        early = proved.early;
      } catch {
        return refuse();
      }
      if ([...this.announcers.values()].filter((a) => a.keyId === keyId).length >= MAX_ANNOUNCERS_PER_KEY) return refuse();
      const a: Announcer = { keyId, heard: performance.now(), tokens: RV_BURST, tokensAt: performance.now() };
      this.announcers.set(conn, a);
      const onData = (data: unknown): void => {
        const now = performance.now();
        a.heard = now;
        a.tokens = Math.min(RV_BURST, a.tokens + ((now - a.tokensAt) * RV_PER_SECOND) / 1000);
        a.tokensAt = now;
        if (a.tokens < 1) {
          this.announcers.delete(conn); // a flood: hang up
          conn.close();
          return;
        }
        a.tokens -= 1;
        void this.accept(data).then((changed) => {
          if (conn.open) conn.send(encodeTable(this.snapshot()));
          if (changed) this.push();
        });
      };
      conn.on('data', onData);
      for (const d of early) onData(d);
    };
    conn.on('close', () => this.announcers.delete(conn));
    conn.on('error', () => conn.close());
    if (conn.open) void start();
    else conn.once('open', () => void start());
  }

  private async roundInner(): Promise<void> {
    const now = Date.now();
    const self = this.opts.self?.();
    const myId = this.peer.id as string | null; // null while the signalling server is out of reach (PeerJS)
    if (self && myId) {
      const r = await signRecord(this.opts.identity, myId, self, now + this.opts.ttlMs);
      if (this.table.merge([r], now)) this.push();
    }
    const epoch = Math.floor(now / this.opts.epochMs);
    if (this.rv && this.rv.epoch !== epoch) {
      this.rv.peer.destroy(); // the epoch moved on: give the old id up
      this.rv = null;
    }
    if (this.opts.serveRendezvous && !this.rv) await this.claim(epoch);
    const targets = new Set<string>();
    for (let i = 0; i < RENDEZVOUS; i++) if (this.rv?.index !== i) targets.add(rendezvousId(this.key, epoch, i));
    for (const id of this.gossipPeers()) targets.add(id);
    // links to targets no longer wanted (an old epoch's rendezvous, a host gone from the table) are closed
    for (const [id, a] of this.outgoing) {
      if (targets.has(id)) continue;
      if (a.ready && a.conn.open) a.conn.close();
      if (a.ready) this.outgoing.delete(id);
    }
    for (const id of targets) this.announceTo(id);
    // as a rendezvous: forget announcers that went silent (a crashed peer's channel may never close)
    const silentMs = SILENT_ROUNDS * this.opts.announceMs;
    for (const [conn, a] of this.announcers) {
      if (performance.now() - a.heard > silentMs) {
        this.announcers.delete(conn);
        conn.close();
      }
    }
  }

  /** Hosts to announce to directly: the known ones first, then hosts in our table, GOSSIP_PEERS at most. */
  private gossipPeers(): string[] {
    const me = this.peer.id;
    const fromTable = this.records().map((r) => r.id);
    const pool = [...new Set([...this.opts.knownPeers, ...fromTable])].filter((id) => id !== me);
    const kept = pool.filter((id) => this.outgoing.get(id)?.ready); // keep links that work
    const rest = pool.filter((id) => !kept.includes(id));
    for (let i = rest.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [rest[i], rest[j]] = [rest[j], rest[i]];
    }
    return [...kept, ...rest].slice(0, GOSSIP_PEERS);
  }

  private snapshot(): Table {
    const now = Date.now();
    return { records: this.table.list(now), gone: this.table.departures(now) };
  }

  /** Verify and take what a message carries; returns whether the table changed. */
  private async accept(data: unknown): Promise<boolean> {
    const t = await verifyTable(decodeTable(data, Date.now()), this.opts.swarm.powBits);
    const now = Date.now();
    let changed = false;
    for (const d of t.gone) changed = this.table.depart(d, now) || changed;
    return this.table.merge(t.records, now) || changed;
  }

  /** Try to take a free rendezvous id of `epoch` (lowest index first). */
  private async claim(epoch: number): Promise<void> {
    for (let i = 0; i < RENDEZVOUS && !this.stopped; i++) {
      let res;
      try {
        res = await openPeer(this.opts.signal, rendezvousId(this.key, epoch, i));
      } catch {
        return; // signalling trouble: try again next round
      }
      if (res.kind === 'taken') continue;
      if (this.stopped) {
        res.peer.destroy();
        return;
      }
      const rvPeer = res.peer;
      this.rv = { peer: rvPeer, index: i, epoch };
      rvPeer.on('connection', (conn) => (conn.label === 'flock-rv' ? this.answer(conn) : conn.once('open', () => conn.close())));
      rvPeer.on('disconnected', () => {
        // lost the signalling server: give the id up so another participant can claim it
        if (this.rv?.peer === rvPeer) this.rv = null;
        rvPeer.destroy();
      });
      return;
    }
  }

  /** As a rendezvous: send the table to every announcer connected to us, soon (one push per PUSH_MS at most). */
  private push(): void {
    if (this.pushTimer || this.stopped || this.announcers.size === 0) return;
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

  /**
   * Send our table to `id` (a rendezvous or a known host; its answer is merged when it comes). Never blocks a round:
   * while the channel is not open and authenticated there is one pending attempt per id, left to PeerJS until it
   * opens or PeerServer expires it. We never close a pending attempt ourselves: PeerServer queues an offer to a free
   * id and delivers it to whoever claims that id next, and closing a connection in the middle of that negotiation
   * crashes PeerJS (an unhandled rejection in its candidate handler). A ready channel that has not answered for
   * SILENT_ROUNDS rounds is dead: closed and redialled.
   */
  private announceTo(id: string): void {
    const cur = this.outgoing.get(id);
    if (cur?.ready && cur.conn.open && performance.now() - cur.heard < SILENT_ROUNDS * this.opts.announceMs) {
      cur.conn.send(encodeTable(this.snapshot()));
      return;
    }
    if (cur && !cur.ready && performance.now() - cur.since < ATTEMPT_MS) return; // still negotiating
    if (cur?.ready) cur.conn.close(); // a channel that went down or silent
    this.outgoing.delete(id);
    if (this.peer.destroyed || this.peer.disconnected) return;
    // PeerJS returns undefined (and logs) instead of throwing when it cannot connect
    const c: DataConnection | undefined = this.peer.connect(id, { serialization: 'raw', reliable: true, label: 'flock-rv' });
    if (!c) return;
    const entry: RvAttempt = { conn: c, since: performance.now(), ready: false, heard: performance.now() };
    this.outgoing.set(id, entry);
    c.on('open', () => {
      // a rendezvous id is not a key's id: the rendezvous proves its key, fingerprints and membership, not the id
      void authenticate(c, this.opts.identity, this.peer.id, this.opts.swarm, AUTH_MS, { bindId: !id.startsWith('flock-') }).then(
        ({ early }) => {
          entry.ready = true;
          entry.heard = performance.now();
          const onData = (data: unknown): void => {
            entry.heard = performance.now();
            void this.accept(data).then((changed) => changed && this.push());
          };
          c.on('data', onData);
          for (const d of early) onData(d);
          c.send(encodeTable(this.snapshot()));
        },
        () => {
          c.close();
          if (this.outgoing.get(id) === entry) this.outgoing.delete(id);
        },
      );
    });
    c.on('close', () => {
      if (this.outgoing.get(id) === entry) this.outgoing.delete(id);
    });
  }

  /** Wait until every pending rendezvous attempt is ready or timeoutMs passed (start-up). */
  async settle(timeoutMs = 2_000): Promise<void> {
    const t0 = performance.now();
    while (performance.now() - t0 < timeoutMs && [...this.outgoing.values()].some((e) => !e.ready)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (this.outgoing.size > 0) await new Promise((r) => setTimeout(r, 100)); // the answers to our first announce
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.pushTimer);
    for (const e of this.outgoing.values()) if (e.conn.open) e.conn.close();
    this.outgoing.clear();
    this.rv?.peer.destroy();
    this.rv = null;
    for (const conn of this.announcers.keys()) if (conn.open) conn.close();
    this.announcers.clear();
    for (const p of this.links.values()) p.then((l) => l.close(), () => {});
    this.links.clear();
  }
}
