// The client side of the swarm: a Backend (engine/generate.ts) whose Head (embedding, output head, sampler) and own
// first and last layers (open-client.ts OwnLayers) run on this device and whose other layers run on remote hosts. A
// step embeds the ids on the local GPU, runs the own first layers, reads the hidden states back, sends them through
// the route's hops in order, uploads the last result, runs the own last layers and the Head's select. Hosts receive
// hidden states, not token ids or text; but hidden states can be turned back into the tokens that made them (a host
// that knows the public weights inverts a few layers by search: tests/swarm/inversion.test.ts), so in a public swarm
// hosts can reconstruct what the user writes. The own layers only raise that bar.
//
// Failure recovery (Petals' inference_session.py): each hop keeps the hidden-state inputs it was sent, one per step.
// When a hop fails (link down, heartbeat, error, or no result within hopTimeoutMs) the client leaves that host out
// (banned with a doubling backoff when it misbehaved, or only until it announces again when it is gone; a ban or a
// dropped session is also remembered, and routing prices the host by it: reliability.ts), opens a
// route for just that hop's span (route-opener.ts: candidates raced, a warm spare first), replays the kept inputs
// there in chunks of up to maxBatch positions (N decode steps cost N/maxBatch round trips; the new KV cache equals the
// lost one up to float rounding, as a prefill's equals a decode's) and continues: the ids are the fault-free run's.
// With no replacement within recoverTimeoutMs of the failure: NoRouteError, carrying the conversation's ids.
// Checked hops (witness.ts, hop-check.ts): a hop's answers are compared with a witness's on its first step and then at
// random; a host two others contradict is banned and the sequence voids the positions from its first wrong answer on,
// for the generation loop to run again (BackendSequence.checks). Not here: discovery (a Directory supplies records
// and links), the generation loop.

import type { ModelConfig } from '../model/config';
import { InvalidArgumentError } from '../model/errors';
import type { Tokenizer } from '../model/tokenizer';
import { encodeReadback, submit, writeBufferPadded, type FlockDevice, type GpuCounters } from '../gpu/device';
import type { Candidates, GpuHead } from '../gpu/head';
import type { GpuStage, StageSession } from '../gpu/stage';
import type { Backend, BackendSequence, SequenceChecks, StepSelect } from '../engine/generate';
import type { FlockReplyChecks } from '../engine/chat-api';
import { FlockError, StepAbortedError } from '../model/errors';
import { HopTimeoutError, LinkDownError, RemoteError } from './errors';
import { encodeTensor, modelLimits, TENSOR_PAYLOAD_OFFSET, type Dtype, type Limits, type ResultMsg, type Span } from './protocol';
import type { PeerRecord } from './records';
import type { GgufFile } from '../model/gguf';
import { withoutUndefined } from '../model/options';
import { BanList } from './bans';
import { Reliability } from './reliability';
import { overclaims } from './routing';
import type { Link } from './link';
import { requests } from './link-requests';
import { blame, describe, RouteOpener, type HopContext, type HopSession } from './route-opener';
import { checksOff, DEFAULT_CHECK_POLICY, emptyVerification, validatePolicy, type CheckPolicy, type Verification } from './hop-check';
import { cutRows, HopChecks, rowsOf, type CheckContext, type CheckedRoute } from './witness';
import { HopMismatchError } from './errors';

/**
 * Where a client gets peer records and links from: Discovery itself (discovery.ts), or in the engine worker the
 * records the page pushes and the links it relays (src/worker/swarm-directory.ts).
 */
export interface Directory {
  /** live records of hosts serving the model with this hash, with our protocol version */
  recordsFor(modelHash: string): PeerRecord[];
  /** measured round trips by peer id, ms (for routing; may be empty) */
  rttMs?(): Map<string, number>;
  /** a link to `peer` that encodes and accepts frames under `limits` (shared between sessions while it is up) */
  connect(peer: string, limits: Limits): Promise<Link>;
  /** whether `peer` is still on the signalling server (for a host gone quiet mid-step; transport.ts probe) */
  probe?(peer: string): Promise<'gone' | 'alive' | 'unknown'>;
}

export interface SwarmOptions {
  /** wire dtype of hidden states: f32 is bit exact, f16 halves the bytes */
  dtype: Dtype;
  /** a forward with no result after this long fails the hop. 10 s: far above a step on any sane host */
  hopTimeoutMs: number;
  /** give up finding a replacement after this long, with NoRouteError. 20 s */
  recoverTimeoutMs: number;
  /** first ban of a failed peer; doubles per failure of the same peer (60 s, 120 s, …), at most MAX_BAN_MS */
  banMs: number;
  /** most positions a conversation holds (sessions are opened with this many, capped by maxPos) */
  maxContext: number;
  /** most tokens per step (the Head's maxBatch; hosts' default maxBatch is 64) */
  maxBatch: number;
  /** time to wait for `opened` (and for a host's hello) */
  openTimeoutMs: number;
  /** which steps are checked by a witness, and how close answers must be (hop-check.ts) */
  checks: CheckPolicy;
}

/** A host on the route heard from not at all for this long while a forward waits is asked after. 1.5 s: one and a
 *  half missed heartbeats at the default 1 s, well before the heartbeat gives up on it (5 s). */
const SILENT_MS = 1_500;

/** Positions beyond this turn's that a kept conversation reserves on hosts. 512: a few more turns of a short chat. */
const CACHED_ROOM = 512;

/** Longest ban of a failing host. 30 min: long enough to stop retrying a broken host, short enough to forgive one. */
const MAX_BAN_MS = 30 * 60_000;

export const DEFAULT_SWARM_OPTIONS: SwarmOptions = {
  dtype: 'f32',
  hopTimeoutMs: 10_000,
  recoverTimeoutMs: 20_000,
  banMs: 60_000,
  maxContext: 2048,
  maxBatch: 64,
  openTimeoutMs: 10_000,
  checks: DEFAULT_CHECK_POLICY,
};

export interface RouteEntry {
  peer: string;
  start: number;
  end: number;
  /** the latest forward's round trip through this hop (send, the host's layers, result back), ms; NaN before one */
  ms: number;
}

export interface Reroute {
  /** sequence step (0 = first prefill chunk) during which the hop failed */
  step: number;
  span: Span;
  from: string;
  /** the peers now serving the span, in order */
  to: string[];
  /** why the hop failed */
  reason: string;
  /** time from failure to the replacement being caught up, ms */
  ms: number;
}

/** Where the latest sequence's layers ran: its route and every re-route. Sequences write it, the model shows it. */
class RouteLog {
  route: RouteEntry[] = [];
  reroutes: Reroute[] = [];
  /** what the checks of the latest sequence found (the sequence's own counts, live) */
  verification: Verification = emptyVerification();
  /** the layer ranges of the latest sequence's hops whose answers are not settled (checked, or found undecidable) */
  unsettled: () => Span[] = () => [];
  /** the latest forward round trip per peer, ms (RouteEntry.ms reads it) */
  readonly hopMs = new Map<string, number>();
  /** the latest decode step's (one token's) round trip per peer, ms: what routing believes over a host's claim */
  readonly decodeMs = new Map<string, number>();

  /** A route entry whose `ms` follows hopMs. */
  entry(peer: string, span: Span): RouteEntry {
    const hopMs = this.hopMs;
    return {
      peer, start: span.start, end: span.end,
      get ms() {
        return hopMs.get(peer) ?? Number.NaN;
      },
    };
  }

  /** A new sequence's first route. */
  start(hops: readonly { peer: string; span: Span }[]): void {
    this.route = hops.map((h) => this.entry(h.peer, h.span));
    this.reroutes = [];
  }

  /** A hop replaced: the route as it is now, and the re-route that made it so. */
  rerouted(hops: readonly { peer: string; span: Span }[], r: Reroute): void {
    this.route = hops.map((h) => this.entry(h.peer, h.span));
    this.reroutes.push(r);
  }
}

export class SwarmModel implements Backend, HopContext {
  readonly opts: SwarmOptions;
  readonly maxBatch: number;
  readonly maxContext: number;
  /** bytes of hidden states sent and received, all sequences */
  readonly wire = { bytesOut: 0, bytesIn: 0 };
  /** what every link of this client accepts and sends: this model's shapes (protocol.ts modelLimits) */
  readonly limits: Limits;
  /** @internal written by sequences */
  readonly log = new RouteLog();
  private readonly bans: BanList;
  /** peers that failed by leaving, with the expiry of the record they had then */
  private readonly gone = new Map<string, number>();
  /** what this client saw of each host: positions served, failures (routing prices hosts by it) */
  readonly reliability = new Reliability();
  private readonly X: GPUBuffer;
  /** the Head on this device */
  readonly head: GpuHead;
  /** this device's own first and last layers (open-client.ts OwnLayers), around the hosts' */
  readonly front: GpuStage | undefined;
  readonly back: GpuStage | undefined;
  /** the layers the hosts run */
  readonly remote: Span;
  private busy = false;

  constructor(
    readonly dev: FlockDevice,
    /** the model's GGUF header (its metadata holds the chat template) */
    readonly file: GgufFile,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    /** our model's hash (records.ts modelHashOf): hosts must announce it, and a hello naming another is refused */
    readonly modelHash: string,
    /** what runs on this device, and the hidden-state buffer [maxBatch, dim] they share; the model owns them */
    local: { head: GpuHead; front?: GpuStage; back?: GpuStage; X: GPUBuffer },
    readonly directory: Directory,
    opts: Partial<SwarmOptions> = {},
  ) {
    this.head = local.head;
    this.front = local.front;
    this.back = local.back;
    this.X = local.X;
    this.remote = { start: this.front?.end ?? 0, end: this.back?.start ?? config.nLayers };
    this.opts = { ...DEFAULT_SWARM_OPTIONS, ...withoutUndefined(opts) };
    validatePolicy(this.opts.checks);
    const own = [local.front, local.back].filter((st) => st !== undefined);
    this.maxBatch = Math.min(this.opts.maxBatch, local.head.maxBatch, ...own.map((st) => st.maxBatch));
    this.maxContext = Math.min(this.opts.maxContext, config.ctx, ...own.map((st) => st.maxContext));
    this.limits = modelLimits({ dim: config.dim, nLayers: config.nLayers, maxBatch: this.maxBatch, maxContext: this.maxContext });
    this.bans = new BanList(this.opts.banMs, MAX_BAN_MS);
  }

  /** the latest sequence's route, hop by hop, each with its latest round trip */
  get route(): readonly RouteEntry[] {
    return this.log.route;
  }

  /** every re-route of the latest sequence */
  get reroutes(): readonly Reroute[] {
    return this.log.reroutes;
  }

  /** what the latest sequence's checks found */
  get verification(): Verification {
    return this.log.verification;
  }

  /** A mark of the checks so far, for replyChecks to tell what one reply's checks found. */
  checksMark(): ChecksMark {
    const v = this.log.verification;
    return { counts: v, checks: v.checks, unverified: v.unverified };
  }

  /** What the checks found since `mark` (taken when the reply began): for the reply's `flock.checks`. */
  replyChecks(mark: ChecksMark): FlockReplyChecks {
    const v = this.log.verification;
    const same = v === mark.counts; // the reply went on in the sequence the mark saw, or began a new one
    const checks = v.checks - (same ? mark.checks : 0);
    const unverified = v.unverified - (same ? mark.unverified : 0);
    if (checksOff(this.opts.checks)) return { state: 'off', checks: 0, unchecked: [] };
    const unchecked = mergeSpans(this.log.unsettled());
    return { state: unverified > 0 ? 'disputed' : unchecked.length > 0 ? 'unchecked' : 'checked', checks, unchecked };
  }

  counters(): GpuCounters {
    return { ...this.dev.counters };
  }

  /** Peers banned now. */
  banned(): Set<string> {
    return this.bans.banned();
  }

  /** A host that misbehaved: banned (doubling), and its failure remembered for after the ban. */
  ban(peer: string): void {
    this.bans.ban(peer);
    this.reliability.failed(peer);
  }

  /**
   * A host that is gone (its link closed, it was unavailable, it is leaving) or full: left out until it announces
   * again; `failure` (not when it was only full): remembered, so routing prefers steadier hosts (reliability.ts).
   */
  markGone(peer: string, failure: boolean): void {
    const r = this.directory.recordsFor(this.modelHash).find((x) => x.id === peer);
    this.gone.set(peer, r?.expiresAt ?? Date.now());
    if (failure) this.reliability.failed(peer);
  }

  /** What each host's failures are expected to cost per token through it, ms (what routing adds to its hops). */
  penaltyMs(): ReadonlyMap<string, number> {
    return this.reliability.penaltyMs();
  }

  /** Banned peers, and peers gone since the record they hold now was made. */
  excluded(records: readonly PeerRecord[]): Set<string> {
    const out = this.bans.banned();
    for (const r of records) {
      const at = this.gone.get(r.id);
      if (at === undefined) continue;
      if (r.expiresAt > at) this.gone.delete(r.id); // announced since: back
      else out.add(r.id);
    }
    return out;
  }

  // HopContext: where hops come from (route-opener.ts)
  recordsFor(modelHash: string): PeerRecord[] {
    return this.directory.recordsFor(modelHash);
  }

  rttMs(): Map<string, number> | undefined {
    return this.directory.rttMs?.();
  }

  measuredMs(): ReadonlyMap<string, number> {
    return this.log.decodeMs;
  }

  /** Hosts whose claimed speed is far beyond what this client measured through them (routing.ts overclaims). */
  overclaimed(): string[] {
    const rtt = this.rttMs();
    return this.recordsFor(this.modelHash)
      .filter((r) => {
        const m = this.log.decodeMs.get(r.id);
        return m !== undefined && overclaims(r, m, rtt?.get(r.id) ?? 0);
      })
      .map((r) => r.id);
  }

  connect(peer: string, limits: Limits): Promise<Link> {
    return this.directory.connect(peer, limits);
  }

  get openTimeoutMs(): number {
    return this.opts.openTimeoutMs;
  }

  async begin(maxPos: number, need = maxPos): Promise<BackendSequence> {
    if (this.busy) throw new InvalidArgumentError('This swarm model is already generating; wait for it or abort it first.');
    if (!Number.isInteger(maxPos) || maxPos < 1 || maxPos > this.maxContext) {
      throw new InvalidArgumentError(`A sequence of ${maxPos} positions does not fit the context of ${this.maxContext}.`);
    }
    this.busy = true;
    try {
      const seq = new SwarmSequence(this, maxPos, Math.min(need, maxPos));
      await seq.start();
      return seq;
    } catch (e) {
      this.busy = false;
      throw e;
    }
  }

  /**
   * A conversation kept across turns reserves KV cache on every host of its route: room for this turn and about as
   * much again (at least CACHED_ROOM more positions), not the whole context, and no more than the hosts that could
   * serve it announce they have room for (a host's context may be shorter than ours). A turn past it starts a new
   * sequence.
   */
  cachedCapacity(maxPos: number): number {
    const want = Math.min(this.maxContext, Math.max(2 * maxPos, maxPos + CACHED_ROOM));
    const span = this.remote;
    if (span.start >= span.end) return want;
    const room = this.directory.recordsFor(this.modelHash).filter((r) => r.span.start < span.end && r.span.end > span.start).map((r) => r.freeKv);
    return Math.max(maxPos, Math.min(want, ...room));
  }

  /** @internal */
  release(): void {
    this.busy = false;
  }

  /** @internal the X buffer the Head works in */
  get hidden(): GPUBuffer {
    return this.X;
  }

  destroy(): void {
    this.X.destroy();
    this.head.destroy();
    this.front?.destroy();
    this.back?.destroy();
  }
}

class SwarmSequence implements BackendSequence, CheckedRoute {
  length = 0;
  hops: HopSession[] = [];
  private stepNo = 0;
  /** every id stepped so far (for NoRouteError.ids) */
  private readonly ids: number[] = [];
  private closed = false;
  private readonly opener: RouteOpener;
  /** sessions of this device's own first and last layers */
  private readonly front: StageSession | undefined;
  private readonly back: StageSession | undefined;
  /** witnesses and what they found (witness.ts) */
  private readonly checker: HopChecks;
  /** the first position found wrong and not yet told to the generation loop */
  private voided: number | undefined;
  /** a replacement's replay disagreed with the host it replaced from here: void once the step under way ends */
  private replayMismatch: number | undefined;
  /** hooks for the generation loop: what is checked, what was voided (engine/generate.ts) */
  readonly checks: SequenceChecks;

  constructor(
    private readonly m: SwarmModel,
    private readonly maxPos: number,
    /** positions the generation running in it needs (reserve() raises it for a later turn) */
    private need: number,
  ) {
    this.opener = new RouteOpener(m, maxPos, () => Math.max(this.need, this.length + 1));
    this.front = m.front?.createSession(maxPos);
    this.back = m.back?.createSession(maxPos);
    this.checker = new HopChecks(this.checkContext());
    m.log.verification = this.checker.counts;
    m.log.unsettled = () => this.unsettled();
    const self = this;
    this.checks = {
      get checkedLength() {
        return self.checker.settled(self.hops);
      },
      takeVoided: () => {
        const v = this.voided;
        this.voided = undefined;
        return v;
      },
      checkAll: (signal) => untilAborted(this.runChecks(true), signal),
      finish: (signal) => (m.opts.checks.atEnd ? untilAborted(this.runChecks(true), signal) : Promise.resolve()),
    };
  }

  /** Positions it can hold: what it was opened with, or less where a host granted less. */
  get capacity(): number {
    return Math.min(this.maxPos, ...this.hops.map((h) => h.maxTokens));
  }

  reserve(need: number): void {
    this.need = Math.max(this.need, need);
  }

  async start(): Promise<void> {
    try {
      this.hops = await this.opener.openRange(this.m.remote, performance.now() + this.m.opts.recoverTimeoutMs, this.ids, -1);
    } catch (e) {
      this.freeOwn();
      throw e;
    }
    this.m.log.start(this.hops);
    this.opener.warmSpares(this.hops);
    for (const h of this.hops) this.checker.join(h, 0);
  }

  private freeOwn(): void {
    if (this.front) this.m.front!.closeSession(this.front);
    if (this.back) this.m.back!.closeSession(this.back);
  }

  /**
   * One forward through one hop session: send X, wait for its result (at most hopTimeoutMs, and not past `deadline`).
   * A position before what the session holds rewinds it: flagged as a replay (after a truncate, a rollback, or a
   * witness caught up from an earlier position). `keep`: remember X as the hop's input (route hops do; witnesses run
   * inputs the route hop keeps).
   */
  private async forwardHop(h: HopSession, x: Float32Array, nTokens: number, pos0: number, deadline = Infinity, keep = true): Promise<Float32Array> {
    if (this.closed) throw new StepAbortedError('The sequence was closed during its step.');
    const req = requests(h.link);
    // steps go on in order; the replay flag has the host rewind to pos0 first (protocol.ts ForwardMsg)
    const replay = pos0 < h.length;
    const step = h.step;
    const t0 = performance.now();
    const answer = req.wait(`fwd:${h.session}:${step}`, Math.max(1, Math.min(this.m.opts.hopTimeoutMs, deadline - t0)));
    answer.catch(() => {}); // a send failure below rejects first; this promise must not go unhandled
    // Encoded here (not in link.send) to count the bytes on the wire, headers included.
    const frames = encodeTensor(
      { kind: 'forward', session: h.session, step, replay, pos0, nTokens, dim: this.m.config.dim, dtype: this.m.opts.dtype, payload: x },
      h.link.frameBytes, h.link.limits,
    );
    await h.link.sendFrames(frames);
    for (const f of frames) this.m.wire.bytesOut += f.byteLength;
    const r = await this.watch(h, answer);
    const ms = performance.now() - t0;
    this.m.log.hopMs.set(h.peer, ms);
    if (nTokens === 1) this.m.log.decodeMs.set(h.peer, ms);
    if (r.kind !== 'result' || !resultMatches(r, pos0, nTokens, this.m.config.dim)) {
      h.link.close('protocol', 'a result of the wrong shape');
      throw new LinkDownError('protocol', h.peer, `${h.peer} answered step ${step} with a result of the wrong shape`);
    }
    // a result comes back in as many frames as the forward went out, each with the same header
    this.m.wire.bytesIn += r.payload.length * (r.dtype === 'f32' ? 4 : 2) + frames.length * TENSOR_PAYLOAD_OFFSET;
    this.m.reliability.served(h.peer, nTokens);
    h.step = step + 1;
    h.length = pos0 + nTokens;
    if (keep) h.inputs.push(x);
    return r.payload;
  }

  /**
   * Wait for a hop's answer; while waiting, a host gone quiet (nothing heard, not even a heartbeat, for SILENT_MS)
   * is asked after at the signalling server, and the hop fails at once when the host is gone there (a killed process
   * drops off the server immediately; its silent link would take the heartbeat's seconds to be declared dead).
   * A host that is only slow still sends heartbeats and is left alone: a probe costs it a connection attempt.
   */
  private async watch<T>(h: HopSession, answer: Promise<T>): Promise<T> {
    const dir = this.m.directory;
    if (!dir.probe) return answer;
    let done = false;
    let asked = false;
    const timer = setInterval(() => {
      if (asked || h.link.silentMs < SILENT_MS) return;
      asked = true; // once per forward
      void dir.probe!(h.peer).then((r) => {
        if (r === 'gone' && !done) h.link.close('unavailable', `${h.peer} is no longer on the signalling server`);
      });
    }, SILENT_MS / 3);
    try {
      return await answer;
    } finally {
      done = true;
      clearInterval(timer);
    }
  }

  /**
   * Replace hop i: leave its host out (banned, or gone until it announces again: route-opener.ts blame), open a
   * route for its span, replay its kept inputs there; all of it within one deadline from the failure.
   */
  private async recover(i: number, cause: unknown): Promise<void> {
    const t0 = performance.now();
    const deadline = t0 + this.m.opts.recoverTimeoutMs;
    const old = this.hops[i];
    const reason = describe(cause);
    if (!(cause instanceof HopMismatchError)) blame(this.m, old.peer, cause); // a liar the checks banned already
    this.opener.close(old);
    this.opener.lastError = reason;
    const unchecked = this.checker.leave(old);
    for (;;) {
      const fresh = await this.opener.openRange(old.span, deadline, this.ids, this.stepNo);
      try {
        // Replay: the kept inputs, in order, as chunks of up to maxBatch positions through the new chain. Chunks
        // rather than the original steps: a replay of N decode steps costs N/maxBatch round trips instead of N (the
        // KV cache it builds equals the original up to float rounding, as a prefill's does a decode's).
        let pos = 0;
        const replayed: Float32Array[] = [];
        for (const chunk of replayChunks(old.inputs, this.m.maxBatch, this.m.config.dim)) {
          const n = chunk.length / this.m.config.dim;
          let y = chunk;
          for (const h of fresh) y = await this.forwardHop(h, y, n, pos, deadline);
          replayed.push(y);
          pos += n;
        }
        this.hops.splice(i, 1, ...fresh);
        // the replaced host's answers not yet checked meet its replacement's: where they differ, the loop goes back
        // (the step under way still runs through them; the loop is told once it ends)
        const wrong = unchecked ? this.checker.compareReplay(unchecked, rowsOf(replayed, 0, pos, this.m.config.dim)) : -1;
        if (wrong >= 0) this.replayMismatch = Math.min(this.replayMismatch ?? Infinity, wrong);
        for (const h of fresh) this.checker.join(h, pos);
        this.m.log.rerouted(this.hops, { step: this.stepNo, span: old.span, from: old.peer, to: fresh.map((h) => h.peer), reason, ms: performance.now() - t0 });
        this.opener.warmSpares(this.hops);
        return;
      } catch (e) {
        if (!isHopFailure(e)) {
          for (const h of fresh) this.opener.close(h);
          throw e;
        }
        // a replacement failed during replay: leave out whoever failed and try again within the same deadline
        this.opener.lastError = describe(e);
        for (const h of fresh) this.opener.close(h);
        const failed = e instanceof LinkDownError || e instanceof RemoteError ? e.peer : fresh.find((h) => h.link.isDown)?.peer;
        if (failed) blame(this.m, failed, e);
        else for (const h of fresh) this.m.ban(h.peer); // a hop timeout: whoever of them did not answer
      }
    }
  }

  async step(ids: number[], select?: StepSelect, signal?: AbortSignal): Promise<Candidates | undefined> {
    if (this.closed) throw new InvalidArgumentError('This sequence is closed.');
    if (signal?.aborted) throw new StepAbortedError('The generation was stopped.');
    const n = ids.length;
    const { dim } = this.m.config;
    if (n < 1 || n > this.m.maxBatch) throw new InvalidArgumentError(`A step runs 1..${this.m.maxBatch} tokens, not ${n}.`);
    if (this.length + n > this.maxPos) throw new InvalidArgumentError(`Step past the sequence's ${this.maxPos} positions.`);
    const dev = this.m.dev;
    const X = this.m.hidden;
    const { front, back } = this.m;
    // embed and run the own first layers on the local GPU, read the hidden states back: X [n, dim]
    const enc = dev.device.createCommandEncoder({ label: 'swarm embed' });
    this.m.head.encodeEmbed(enc, X, ids);
    if (front) front.encode(enc, this.front!, X, n);
    const read = encodeReadback(dev, enc, X, n * dim * 4);
    submit(dev, enc);
    try {
      const x0 = new Float32Array(await read());
      this.ids.push(...ids);
      // Stop ends the step at once, even mid-recovery or mid-check: the hops' work goes on in the background until it
      // notices the sequence closed (the generation closes a voided sequence), and is thrown away
      const x = await untilAborted(this.throughHops(x0, n), signal);
      // the own last layers and the Head: upload the hosts' result, layers, final norm, logits, top-k
      writeBufferPadded(dev, X, 0, x);
      const enc2 = dev.device.createCommandEncoder({ label: 'swarm head' });
      if (back) back.encode(enc2, this.back!, X, n);
      const sel = select ? this.m.head.encodeSelect(enc2, X, n - 1, select.k, select.penaltyIds, select.penalty) : undefined;
      submit(dev, enc2);
      this.length += n;
      this.stepNo++;
      // the checks due now run while the candidates are read back; what they void (own layers included) the
      // generation loop takes after this step (checks.takeVoided)
      const candidates = sel?.();
      candidates?.catch(() => {}); // awaited below unless a check fails first
      await untilAborted(this.afterStep(), signal);
      return await candidates;
    } catch (e) {
      if (e instanceof StepAbortedError) throw e; // void: closed, never reused
      // a step that did not finish leaves no trace in the own layers' caches
      if (front) front.truncate(this.front!, this.length);
      if (back) back.truncate(this.back!, this.length);
      this.ids.length = Math.min(this.ids.length, this.length);
      throw e;
    }
  }

  /** The hidden states x [n, dim] through every hop of the route, in order; a failed hop is replaced (maybe by several) and retried in place. */
  private async throughHops(x: Float32Array, n: number): Promise<Float32Array> {
    for (let i = 0; i < this.hops.length; ) {
      try {
        const h = this.hops[i];
        x = await this.forwardHop(h, x, n, this.length);
        this.checker.served(h, this.length, x);
        i++;
      } catch (e) {
        if (!isHopFailure(e)) throw e;
        await this.recover(i, e);
      }
    }
    return x;
  }

  /** After a step: a replacement's replay that disagreed with the host it replaced voids from there; then the checks due now. */
  private async afterStep(): Promise<void> {
    if (this.replayMismatch !== undefined) {
      this.checker.counts.rollbacks++;
      this.voidFrom(this.replayMismatch);
      this.replayMismatch = undefined;
    }
    await this.runChecks(false);
  }

  /**
   * Forget every position from `length` on (a next turn sharing the first `length` positions with this one): the own
   * layers' caches are cut here, each hop's kept inputs (and the checks' unchecked answers) are cut, and its host
   * rewinds with the next forward (flagged replay). Each turn then sends only its new tokens' hidden states; the
   * sessions stay open on the hosts meanwhile (until they expire idle: then the next forward re-routes and replays
   * the kept inputs, as for any failed hop).
   */
  truncate(length: number): void {
    if (this.closed) throw new InvalidArgumentError('This sequence is closed.');
    if (!Number.isInteger(length) || length < 0) throw new InvalidArgumentError(`Cannot cut a sequence to ${length} positions.`);
    if (length >= this.length) return;
    this.cutTo(length);
  }

  /** Layer ranges of hops with positions not yet settled by a check (no witness could be had for them). */
  private unsettled(): Span[] {
    return this.hops.filter((h) => this.checker.settled([h]) < this.length).map((h) => ({ start: h.span.start, end: h.span.end }));
  }

  close(): void {
    if (this.closed) return;
    const last = this.unsettled(); // the checks' state goes with the sequence: what the reply ended with stays readable
    this.m.log.unsettled = () => last;
    this.closed = true;
    this.opener.stopped = true;
    for (const h of this.hops) this.opener.close(h);
    this.checker.close();
    this.freeOwn();
    this.m.release();
  }

  // Checked hops (witness.ts): what the checks need of this sequence, and what they may do to it.

  private checkContext(): CheckContext {
    const m = this.m;
    return {
      dim: m.config.dim,
      maxBatch: m.maxBatch,
      policy: m.opts.checks,
      forward: (h, x, n, pos0) => this.forwardHop(h, x, n, pos0, Infinity, false),
      open: async (span, avoid) => {
        if (!this.opener.canRoute(span, avoid)) return null;
        try {
          return await this.opener.openRange(span, performance.now() + m.opts.openTimeoutMs, this.ids, this.stepNo, avoid);
        } catch {
          return null; // none opened in time: no opinion now
        }
      },
      close: (h) => this.opener.close(h),
      ban: (peer) => m.ban(peer),
      blame: (peer, e) => blame(m, peer, e),
      wireBytes: () => m.wire.bytesIn + m.wire.bytesOut,
    };
  }

  /** Run the checks due (all: every position not yet settled); what they void is kept for takeVoided. */
  private async runChecks(all: boolean): Promise<void> {
    if (this.closed || this.length === 0) return;
    const v = await this.checker.run(this, all);
    if (v !== undefined) this.voided = Math.min(this.voided ?? Infinity, v);
  }

  /** CheckedRoute: positions from `p` on are void; hosts rewind at their next forward (a replay at `p`). */
  voidFrom(p: number): void {
    if (this.closed || p >= this.length) return; // closed: a check still running after Stop changes nothing
    this.cutTo(p);
    this.voided = Math.min(this.voided ?? Infinity, p);
  }

  /**
   * Keep positions [0, p) (a truncate, or a rollback): the own layers' caches, the ids, each hop's kept inputs, the
   * checks' answers. Hosts (route hops and witnesses) hold more and rewind at their next forward (HopSession.length).
   */
  private cutTo(p: number): void {
    const dim = this.m.config.dim;
    if (this.front) this.m.front!.truncate(this.front, p);
    if (this.back) this.m.back!.truncate(this.back, p);
    this.length = p;
    this.ids.length = Math.min(this.ids.length, p);
    for (const h of this.hops) h.inputs = cutRows(h.inputs, p, dim);
    this.checker.truncate(p);
  }

  /** CheckedRoute: replace a hop whose host lied (banned by the checks) with a new route for its span. */
  async replace(i: number, cause: HopMismatchError): Promise<void> {
    await this.recover(i, cause);
  }
}

/** `p`, or StepAbortedError as soon as `signal` aborts (p keeps running; its outcome is dropped). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  p.catch(() => {}); // dropped after an abort: must not go unhandled
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new StepAbortedError('The generation was stopped.'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** What a reply's checks are measured from (SwarmModel.checksMark). */
export interface ChecksMark {
  counts: Verification;
  checks: number;
  unverified: number;
}

/** Spans sorted and joined where they touch: [1,3) and [3,4) are [1,4). */
export function mergeSpans(spans: readonly Span[]): Span[] {
  const out: Span[] = [];
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    const last = out.at(-1);
    if (last && s.start <= last.end) last.end = Math.max(last.end, s.end);
    else out.push({ start: s.start, end: s.end });
  }
  return out;
}

/** Kept inputs (one per step, [n_i, dim] each) joined in order and cut into chunks of at most maxBatch rows. */
export function replayChunks(inputs: readonly Float32Array[], maxBatch: number, dim: number): Float32Array[] {
  const total = inputs.reduce((t, x) => t + x.length, 0);
  const all = new Float32Array(total);
  let at = 0;
  for (const x of inputs) {
    all.set(x, at);
    at += x.length;
  }
  const out: Float32Array[] = [];
  const per = maxBatch * dim;
  for (let o = 0; o < total; o += per) out.push(all.subarray(o, Math.min(total, o + per)));
  return out;
}

function resultMatches(r: ResultMsg, pos0: number, nTokens: number, dim: number): boolean {
  return r.pos0 === pos0 && r.nTokens === nTokens && r.dim === dim && r.payload.length === nTokens * dim;
}

/** Failures that re-routing can fix (as opposed to bugs and bad arguments, which propagate). */
function isHopFailure(e: unknown): e is FlockError {
  return e instanceof LinkDownError || e instanceof HopTimeoutError || e instanceof RemoteError;
}
