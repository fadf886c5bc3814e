// The host service: serves one GpuStage (layers [start, end) of one model) to many client sessions over PeerLinks.
// Every link starts by proving who is at the other end (link-auth.ts); what follows is keyed by that key, not by a
// peer id anyone could change: bans, links per key, sessions, KV cache and session opens per minute per key. Every
// message is checked before it costs anything: spans must lie in what we serve, dims must match, steps must come in order
// (StepGuard per link), sessions and KV cache are bounded (per link, per key, in total, and by a byte budget), and
// forwards run one at a time on the GPU with keys taking turns (fair-queue.ts), so a greedy key slows only itself.
// A peer that breaks the protocol is told why, disconnected and its key banned with a doubling backoff; the others
// keep being served. Idle sessions expire. Not here: discovery (discovery.ts) or the CLI.

import type { DataConnection } from 'peerjs';
import type { GpuStage, StageSession } from '../gpu/stage';
import { LinkDownError, ProtocolError, ReassemblyError, StepOrderError } from './errors';
import { BanList } from './bans';
import { FairQueue } from './fair-queue';
import { keyIdOf } from './identity';
import { StepGuard } from './step-guard';
import { modelLimits, PROTOCOL_VERSION, type ForwardMsg, type Msg, type OpenMsg, type Span, type WireErrorCode } from './protocol';
import { withoutUndefined } from '../model/options';
import { PeerLink, type LinkAuth, type LinkOptions } from './transport';

/** The GPU part a host needs (GpuStage, or a stand-in in tests). */
export type HostStage = Pick<GpuStage, 'start' | 'end' | 'cfg' | 'maxBatch' | 'maxContext' | 'kvBytesPerPosition' | 'kvBytesPerPositionOf' | 'holds' | 'createSession' | 'closeSession' | 'forward' | 'truncate'>;

export interface HostOptions {
  /** our peer id (announced in hello) */
  peerId: string;
  /** sha256 of the model's GGUF header, hex (records.ts modelHashOf) */
  modelHash: string;
  /** KV cache bytes all sessions may reserve together. 256 MiB: a tenth of a small GPU; stories260K needs 2.5 KiB/token. */
  kvBudgetBytes: number;
  /** Sessions open at once, all links together. */
  maxSessions: number;
  /** Sessions one link may hold. 8: a client needs one per hop it routes here; two tabs of one user, with room. */
  maxSessionsPerLink: number;
  /** A session unused for this long is closed. 120 s: a reader pausing mid-chat reopens by replay anyway. */
  idleMs: number;
  /** First ban of a peer that broke the protocol; doubles per repeat offence, capped at maxBanMs. 30 s / 30 min. */
  banMs: number;
  maxBanMs: number;
  /** Forwards waiting for the GPU per link. 4: a client has one in flight per session; more is a flood. */
  maxQueuedPerLink: number;
  /** Links at once, and per key. 128 / 4: a client needs one link per host; a tab or two of one user, with room. */
  maxLinks: number;
  maxLinksPerKey: number;
  /** Sessions one key may hold, all its links together. 8: a conversation needs one per hop routed here. */
  maxSessionsPerKey: number;
  /** Share of kvBudgetBytes one key may reserve (never less than one whole-context session). 1/4: four heavy users at least fit. */
  kvShareOfKey: number;
  /** Sessions one key may open per minute. 30: a client opens one per hop per conversation or re-route. */
  opensPerMinutePerKey: number;
  link: Partial<LinkOptions>;
  /** who this host is, and in which swarm: every link starts by proving both ends (link-auth.ts) */
  auth: LinkAuth;
}

export const DEFAULT_HOST_OPTIONS: Omit<HostOptions, 'peerId' | 'modelHash' | 'auth'> = {
  maxLinks: 128,
  maxLinksPerKey: 4,
  maxSessionsPerKey: 8,
  kvShareOfKey: 0.25,
  opensPerMinutePerKey: 30,
  kvBudgetBytes: 256 * 1024 * 1024,
  maxSessions: 64,
  maxSessionsPerLink: 8,
  idleMs: 120_000,
  banMs: 30_000,
  maxBanMs: 30 * 60_000,
  maxQueuedPerLink: 4,
  link: {},
};

interface HostSession {
  id: number;
  stage: StageSession;
  kvBytes: number;
  lastUsed: number;
  /** position the next accepted forward must start at (ahead of stage.length while forwards are queued) */
  nextPos: number;
}

interface LinkState {
  link: PeerLink;
  guard: StepGuard;
  sessions: Map<number, HostSession>;
  queued: number;
  /** stop listening to the link (after a violation nothing more it sends is looked at) */
  unlisten: () => void;
  /** it broke the protocol: banned once, whatever else it did */
  violated: boolean;
}

export interface HostStats {
  links: number;
  sessions: number;
  /** peer ids of the links holding sessions now: what this host can tell about who it serves */
  clients: string[];
  kvBytesReserved: number;
  /** bytes held by reassemblers for partial messages, all links */
  bufferedBytes: number;
  /** the most any one link's reassembler held at once, over the host's life */
  peakBufferedBytes: number;
  forwards: number;
  /** token positions run through the span, all sessions (replays included) */
  tokens: number;
  violations: number;
  bans: number;
  banned: string[];
}

export class StageHost {
  readonly opts: HostOptions;
  readonly span: Span;
  private readonly links = new Set<LinkState>();
  private readonly bans: BanList;
  private kvReserved = 0;
  private peakBuffered = 0;
  private nSessions = 0;
  /** every forward and session release runs here, one at a time, keys taking turns (a greedy key slows only itself) */
  private readonly gpu = new FairQueue();
  /** per key: when it opened its recent sessions (the last minute's) */
  private readonly opens = new Map<string, number[]>();
  private sweeper: ReturnType<typeof setInterval>;
  private frozen = false;
  private stopped = false;
  private readonly counts = { forwards: 0, tokens: 0, violations: 0, bans: 0 };
  /** measured decode speed of this span, tokens per second (exponential average over forwards; 0 until measured) */
  tokensPerSecond = 0;

  constructor(
    readonly stage: HostStage,
    opts: Partial<HostOptions> & Pick<HostOptions, 'peerId' | 'modelHash' | 'auth'>,
  ) {
    this.opts = { ...DEFAULT_HOST_OPTIONS, ...withoutUndefined(opts), peerId: opts.peerId, modelHash: opts.modelHash, auth: opts.auth };
    // Limits from what we serve, not the protocol's generous defaults: a forward can never be bigger than
    // maxBatch x dim, so a frame claiming more is rejected by the decoder before the reassembler reserves anything
    // (with the defaults, one 256 KiB frame could make us reserve a 64 MiB tensor).
    const { dim } = stage.cfg;
    // An open may ask for up to the model's context: one longer than ours is refused (kv-full), not a violation.
    const limits = opts.link?.limits ?? modelLimits({ dim, nLayers: stage.cfg.nLayers, maxBatch: stage.maxBatch, maxContext: Math.max(stage.maxContext, stage.cfg.ctx) });
    this.opts.link = { ...this.opts.link, limits };
    this.bans = new BanList(this.opts.banMs, this.opts.maxBanMs);
    this.span = { start: stage.start, end: stage.end };
    this.sweeper = setInterval(() => this.expireIdle(), Math.max(250, Math.min(this.opts.idleMs / 4, 10_000)));
  }

  /** Free KV capacity in positions (the most one client can still open: never more than the stage's context), for records and hello. */
  get freeKvTokens(): number {
    return Math.max(0, Math.min(this.stage.maxContext, Math.floor((this.opts.kvBudgetBytes - this.kvReserved) / this.stage.kvBytesPerPosition)));
  }

  stats(): HostStats {
    let buffered = 0;
    let peak = this.peakBuffered;
    for (const l of this.links) {
      buffered += l.link.bufferedBytes;
      peak = Math.max(peak, l.link.peakBufferedBytes);
    }
    return {
      links: this.links.size,
      sessions: this.nSessions,
      clients: [...this.links].filter((l) => l.sessions.size > 0).map((l) => l.link.peer),
      kvBytesReserved: this.kvReserved,
      bufferedBytes: buffered,
      peakBufferedBytes: peak,
      ...this.counts,
      banned: [...this.bans.banned()],
    };
  }

  /** Whether the key behind `peer` (an id, or a key id) is banned here. */
  isBanned(peer: string): boolean {
    return this.bans.isBanned(keyIdOf(peer));
  }

  /** Take an incoming DataConnection (from peer.on('connection')). Never throws. */
  async accept(conn: DataConnection): Promise<void> {
    if (this.stopped || this.isBanned(conn.peer) || this.links.size >= this.opts.maxLinks) {
      // Hang up once the channel is open: closing a PeerJS connection in the middle of its ICE negotiation makes
      // PeerJS throw from its candidate handler.
      if (conn.open) conn.close();
      else conn.once('open', () => conn.close());
      return;
    }
    let link: PeerLink;
    try {
      link = await PeerLink.open(conn, this.opts.link, this.opts.auth);
    } catch {
      return; // never opened or never proved who it is: PeerLink.open closed it
    }
    if (this.linksOf(link.remote.keyId).length >= this.opts.maxLinksPerKey || this.isBanned(link.remote.keyId)) {
      link.close('banned', 'too many links for this key');
      return;
    }
    if (this.frozen) link.mute();
    const st: LinkState = { link, guard: new StepGuard(this.opts.maxSessionsPerLink), sessions: new Map(), queued: 0, unlisten: () => {}, violated: false };
    this.links.add(st);
    const offMessage = link.onMessage((m) => this.onMessage(st, m));
    const offViolation = link.onViolation((e) => this.violation(st, e));
    st.unlisten = () => {
      offMessage();
      offViolation();
    };
    void link.closed.then(() => this.dropLink(st));
    link
      .send({
        kind: 'hello', protocolVersion: PROTOCOL_VERSION, peerId: this.opts.peerId, modelHash: this.opts.modelHash,
        span: this.span, maxSessions: this.opts.maxSessions, freeKvTokens: Math.min(this.freeKvTokens, 0xffffffff),
      })
      .catch(() => {});
  }

  /** Test hook: stop answering anything (frames, pings) on every link, present and future, without closing. */
  freeze(): void {
    this.frozen = true;
    for (const l of this.links) l.link.mute();
  }

  /** Test hook: hang up every link now, without a word (as a crashing tab would), and go on serving new ones. */
  hangUp(): void {
    for (const l of [...this.links]) l.link.close('closed', 'host hung up');
  }

  /**
   * Close every link and session. Clients are told first ('shutting-down': move your sessions), so they re-route at
   * once instead of waiting for a dead link; the links close right after, when the word has left.
   */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.sweeper);
    for (const l of [...this.links]) {
      const link = l.link;
      link.send({ kind: 'error', session: 0, step: 0, code: 'shutting-down', message: 'this host is leaving the swarm' }).catch(() => {});
      setTimeout(() => link.close('closed', 'host stopping'), 50);
    }
  }

  // -------------------------------------------------------------------------------------------------------------

  private onMessage(st: LinkState, m: Msg): void {
    switch (m.kind) {
      case 'hello':
        return; // a client may introduce itself; nothing to do with it
      case 'open':
        return this.open(st, m);
      case 'forward':
        return this.forward(st, m);
      case 'close': {
        const s = st.sessions.get(m.session);
        if (s) this.closeSession(st, s);
        return;
      }
      case 'opened':
      case 'result':
      case 'error':
      case 'ping':
      case 'pong':
        // hosts do not receive these (ping/pong never reach here: the link answers them)
        return this.violation(st, new ProtocolError('bad-field', `a host does not accept '${m.kind}' messages`));
      default: {
        const never: never = m;
        void never;
        return this.violation(st, new ProtocolError('unknown-kind', 'unknown message'));
      }
    }
  }

  private reply(st: LinkState, session: number, step: number, code: WireErrorCode, message: string): void {
    st.link.send({ kind: 'error', session, step, code, message: message.slice(0, 500) }).catch(() => {});
  }

  private open(st: LinkState, m: OpenMsg): void {
    const { stage } = this;
    // a client may route through part of the span (its own first or last layers cut into it)
    if (!stage.holds(m.span)) {
      return this.reply(st, m.session, 0, 'bad-request', `this host serves layers [${this.span.start}, ${this.span.end}), which do not hold [${m.span.start}, ${m.span.end})`);
    }
    if (m.maxTokens > stage.maxContext) {
      return this.reply(st, m.session, 0, 'kv-full', `maxTokens ${m.maxTokens} > this host's context ${stage.maxContext}`);
    }
    const kvBytes = m.maxTokens * stage.kvBytesPerPositionOf(m.span);
    if (this.kvReserved + kvBytes > this.opts.kvBudgetBytes) {
      return this.reply(st, m.session, 0, 'kv-full', `${kvBytes} bytes of KV cache do not fit (${this.opts.kvBudgetBytes - this.kvReserved} free)`);
    }
    if (this.nSessions >= this.opts.maxSessions) {
      return this.reply(st, m.session, 0, 'busy', `${this.nSessions} sessions open; try another host`);
    }
    // per key: sessions, KV cache and opens per minute (an identity cannot take the host from everyone else)
    const key = st.link.remote.keyId;
    const mine = this.linksOf(key).flatMap((l) => [...l.sessions.values()]);
    if (mine.length >= this.opts.maxSessionsPerKey) {
      return this.reply(st, m.session, 0, 'busy', `this key holds ${mine.length} sessions here, the most one key may`);
    }
    const keyKv = mine.reduce((t, x) => t + x.kvBytes, 0);
    // a key may hold its share of the budget, and never less than one session of the whole context (a host whose
    // budget fits only that serves one conversation at a time, taking turns by the fair queue and the session limits)
    const keyCap = Math.max(this.opts.kvShareOfKey * this.opts.kvBudgetBytes, stage.maxContext * stage.kvBytesPerPosition);
    if (keyKv + kvBytes > keyCap) {
      return this.reply(st, m.session, 0, 'kv-full', `this key holds ${keyKv} bytes of KV cache here; one key may hold ${Math.floor(keyCap)}`);
    }
    const now = Date.now();
    const recent = (this.opens.get(key) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= this.opts.opensPerMinutePerKey) {
      return this.reply(st, m.session, 0, 'busy', `this key opened ${recent.length} sessions in the last minute, the most one key may`);
    }
    recent.push(now);
    this.opens.set(key, recent);
    try {
      st.guard.begin(m.session);
    } catch (e) {
      if (e instanceof StepOrderError && e.code === 'too-many-sessions') return this.reply(st, m.session, 0, 'busy', e.message);
      return this.violation(st, e instanceof StepOrderError ? e : new ProtocolError('bad-field', String(e)));
    }
    let session: StageSession;
    try {
      session = stage.createSession(m.maxTokens, m.span);
    } catch (e) {
      st.guard.end(m.session);
      return this.reply(st, m.session, 0, 'internal', e instanceof Error ? e.message : String(e));
    }
    st.sessions.set(m.session, { id: m.session, stage: session, kvBytes, lastUsed: Date.now(), nextPos: 0 });
    this.kvReserved += kvBytes;
    this.nSessions++;
    st.link.send({ kind: 'opened', session: m.session }).catch(() => {});
  }

  private forward(st: LinkState, m: ForwardMsg): void {
    const { stage } = this;
    const s = st.sessions.get(m.session);
    if (!s) return this.reply(st, m.session, m.step, 'no-session', `session ${m.session} is not open here (expired or never opened)`);
    // Shapes that cannot be right for this model are a broken peer, not a mistake to answer.
    if (m.dim !== stage.cfg.dim) return this.violation(st, new ProtocolError('size-mismatch', `dim ${m.dim}; this model's is ${stage.cfg.dim}`));
    if (m.nTokens > stage.maxBatch) return this.violation(st, new ProtocolError('too-large', `${m.nTokens} tokens in one forward; at most ${stage.maxBatch}`));
    if (st.queued >= this.opts.maxQueuedPerLink) return this.violation(st, new ProtocolError('too-large', `more than ${this.opts.maxQueuedPerLink} forwards queued`));
    let verdict: 'next' | 'replay';
    try {
      verdict = st.guard.check(m.session, m.step, m.replay);
    } catch (e) {
      return this.violation(st, e instanceof StepOrderError ? e : new ProtocolError('bad-field', String(e)));
    }
    // Positions must continue the session, or, flagged as a replay, rewind into it (recovery, or a client that cut
    // its conversation back to a shared prefix for the next turn); pos0 + n must fit the session.
    const expectPos = s.nextPos;
    const rewind = verdict === 'replay' || m.replay;
    if ((!rewind && m.pos0 !== expectPos) || (rewind && m.pos0 > expectPos)) {
      return this.violation(st, new ProtocolError('bad-field', `step ${m.step} at position ${m.pos0}; expected ${expectPos}`));
    }
    if (m.pos0 + m.nTokens > s.stage.maxPos) {
      return this.reply(st, m.session, m.step, 'kv-full', `positions up to ${m.pos0 + m.nTokens} exceed the session's ${s.stage.maxPos}`);
    }
    s.lastUsed = Date.now();
    s.nextPos = m.pos0 + m.nTokens;
    st.queued++;
    // One forward at a time on the GPU (the stage's scratch buffers are shared by every session), keys taking turns.
    void this.gpu.run(st.link.remote.keyId, async () => {
      st.queued--;
      if (st.link.isDown) return;
      if (st.sessions.get(m.session) !== s) {
        // closed (expired, or by the client) while this forward waited for the GPU: say so rather than stay silent
        this.reply(st, m.session, m.step, 'no-session', `session ${m.session} was closed before step ${m.step} ran`);
        return;
      }
      try {
        if (rewind) stage.truncate(s.stage, m.pos0);
        const t0 = performance.now();
        const out = await stage.forward(s.stage, m.payload);
        const tps = (m.nTokens * 1000) / Math.max(0.01, performance.now() - t0);
        this.tokensPerSecond = this.tokensPerSecond === 0 ? tps : 0.9 * this.tokensPerSecond + 0.1 * tps;
        this.counts.forwards++;
        this.counts.tokens += m.nTokens;
        s.lastUsed = Date.now();
        await st.link.send({ kind: 'result', session: m.session, step: m.step, pos0: m.pos0, nTokens: m.nTokens, dim: m.dim, dtype: m.dtype, payload: out });
      } catch (e) {
        if (e instanceof LinkDownError) return;
        this.reply(st, m.session, m.step, 'internal', e instanceof Error ? `${e.name}: ${e.message}` : String(e));
      }
    });
  }

  /** A peer broke the protocol: tell it why, hang up, ban it (30 s, doubling per offence). */
  private violation(st: LinkState, e: ProtocolError | ReassemblyError | StepOrderError): void {
    // counted even when the link is already down: a flood hangs up at once, and frames right behind the link's
    // proof break the protocol before we listen (the link holds those violations for us)
    if (st.violated) return;
    st.violated = true;
    this.counts.violations++;
    this.counts.bans++;
    const ms = this.bans.ban(st.link.remote.keyId); // the key, not the id: a new id for the same key is still banned
    const code: WireErrorCode = e instanceof StepOrderError ? 'bad-step' : 'protocol';
    const link = st.link;
    st.unlisten();
    // Best effort: send the reason, then close shortly after so the error frame can leave.
    link.send({ kind: 'error', session: 0, step: 0, code, message: `${e.message} — disconnected, banned for ${ms / 1000} s` }).catch(() => {});
    this.dropLink(st);
    setTimeout(() => link.close('banned', e.message), 50);
  }

  private closeSession(st: LinkState, s: HostSession): void {
    if (st.sessions.get(s.id) !== s) return;
    st.sessions.delete(s.id);
    st.guard.end(s.id);
    this.kvReserved -= s.kvBytes;
    this.nSessions--;
    // The GPU queue may still hold a forward of this session: free after it.
    void this.gpu.run(st.link.remote.keyId, async () => this.stage.closeSession(s.stage));
  }

  /** The links a key holds here. */
  private linksOf(keyId: string): LinkState[] {
    return [...this.links].filter((l) => l.link.remote.keyId === keyId);
  }

  private dropLink(st: LinkState): void {
    if (!this.links.delete(st)) return;
    this.peakBuffered = Math.max(this.peakBuffered, st.link.peakBufferedBytes);
    for (const s of [...st.sessions.values()]) this.closeSession(st, s);
  }

  private expireIdle(): void {
    const cutoff = Date.now() - this.opts.idleMs;
    for (const st of this.links) for (const s of [...st.sessions.values()]) if (s.lastUsed < cutoff) this.closeSession(st, s);
    this.bans.forgetOld();
  }
}
