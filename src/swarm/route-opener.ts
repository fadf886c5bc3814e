// Opening a route through the swarm for a client session, fast under churn. A route for a layer range is planned
// over the live records (routing.ts), then every hop opens at once; for each hop's span the best few candidates are
// raced (connect, hello, `opened`) and the first that answers wins; hops that opened are kept when another fails,
// and only the failed spans are planned again. A candidate that fails is left out at once, so no attempt waits on
// one that failed elsewhere; all of it runs under one deadline. While generating, a warm spare is kept per span (a
// connected, introduced link to the next best host), so a re-route rarely needs a new connection.
// How failures count: a host that is gone (link closed, unavailable, never opened, leaving, closed before it proved
// who it is) or whose link's fingerprints do not cross is only left out until it announces itself again; one that
// misbehaves (wrong model or span, protocol errors, a bad key or signature, no answer while connected) is banned with
// a doubling backoff. A ban, or a session dropped, is also remembered (reliability.ts): routing prices a host by its
// failures, so one that keeps dropping sessions and announcing again loses to steadier hosts. A full host (busy, no
// room), or one that could not be reached, is only left out. Not here: replay and the forward loop (swarm-model.ts).

import { StepAbortedError } from '../model/errors';
import { HopTimeoutError, LinkAuthError, LinkDownError, NoRouteError, RemoteError } from './errors';
import type { Link } from './link';
import { requests } from './link-requests';
import type { Limits, Span } from './protocol';
import type { PeerRecord } from './records';
import { findRoute, holdsSpan, hopCost, uncovered } from './routing';

/** Candidates raced at once for one span. 3: enough to beat a stale record or two, few enough not to flood. */
const RACE = 3;
/** How often a range with no route looks at the records again while its deadline allows. */
const REPLAN_MS = 100;

/** One open session on one host, with the inputs it was sent (for replay on a replacement). */
export interface HopSession {
  peer: string;
  span: Span;
  link: Link;
  session: number;
  step: number;
  /** positions the host's session holds (a forward at an earlier position rewinds it: sent as a replay) */
  length: number;
  /** hidden-state inputs, one per step, in order (kept for replay) */
  inputs: Float32Array[];
  /** positions the host's session can hold (fewer than asked when the host's context is shorter) */
  maxTokens: number;
}

/** What opening hops needs of the client. */
export interface HopContext {
  recordsFor(modelHash: string): PeerRecord[];
  rttMs(): Map<string, number> | undefined;
  /** a decode step's measured round trip through each host used so far (routing.ts hopCost) */
  measuredMs(): ReadonlyMap<string, number>;
  /** what each host's failures are expected to cost per token, ms (reliability.ts) */
  penaltyMs(): ReadonlyMap<string, number>;
  connect(peer: string, limits: Limits): Promise<Link>;
  readonly modelHash: string;
  readonly limits: Limits;
  readonly openTimeoutMs: number;
  /** peers not to use now: banned, or gone since their last record */
  excluded(records: readonly PeerRecord[]): Set<string>;
  /** a host that misbehaved: banned, and remembered as a failure */
  ban(peer: string): void;
  /** a host that is gone (or full): left out until its record is refreshed; `failure`: remembered as one (not when full) */
  markGone(peer: string, failure: boolean): void;
}

/** Session ids: random, u32, never 0 (a host cannot link sessions of one client by counting). */
function newSessionId(): number {
  const v = crypto.getRandomValues(new Uint32Array(1))[0];
  return v === 0 ? 1 : v;
}

/** Whether a failure means the host is gone or full (leave it out for now) rather than misbehaving (ban it). */
export function isDeparture(e: unknown): boolean {
  if (e instanceof LinkDownError) return e.reason === 'closed' || e.reason === 'unavailable' || e.reason === 'leaving' || e.reason === 'open-timeout' || e.reason === 'heartbeat' || e.reason === 'send-timeout';
  // no-session: the host let the session expire (idle between turns); it did nothing wrong
  if (e instanceof RemoteError) return e.code === 'shutting-down' || e.code === 'busy' || e.code === 'kv-full' || e.code === 'no-session';
  // a link closed before it authenticated (a tab closing as it opened), or fingerprints that do not cross (whoever
  // sits in the path, not provably the host): leave it out until it announces again, never ban its key for it
  if (e instanceof LinkAuthError) return e.code === 'no-auth' || e.code === 'fingerprint';
  return false;
}

/** Whether a host refused for want of room (busy, no KV left): it did nothing wrong, it is only full now. */
function isFull(e: unknown): boolean {
  return e instanceof RemoteError && (e.code === 'busy' || e.code === 'kv-full');
}

/**
 * Record a failed host the way its failure says. A session the host expired (idle) is nobody's fault. A departure is
 * remembered as a failure only when the host held a session (`held`): one that dropped a session it took costs a
 * re-route; one that could not be reached costs only a raced attempt, and unreachable is what a path in the middle
 * (a hostile signalling server) can make of any honest host, so it must not be able to mark honest hosts so.
 */
export function blame(ctx: HopContext, peer: string, e: unknown, held = true): void {
  if (e instanceof RemoteError && e.code === 'no-session') return;
  if (isDeparture(e)) ctx.markGone(peer, held && !isFull(e));
  else ctx.ban(peer);
}

export function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

export class RouteOpener {
  /** per span ('start:end'), a peer whose link is up and introduced, not on the route: the first to try */
  private readonly spares = new Map<string, string>();
  lastError = '';
  /** set when the sequence is closed: a route still being opened is closed again and the opening ends */
  stopped = false;

  constructor(
    private readonly ctx: HopContext,
    /** positions the sessions are opened with */
    private readonly maxPos: number,
    /** the fewest a session may have, when a host has no room for maxPos (what the conversation needs now) */
    readonly minPos: () => number = () => maxPos,
  ) {}

  /**
   * Sessions along a route that tiles `range`, by `deadline` (performance.now() ms); NoRouteError (with `ids`) when
   * none could be opened by then.
   */
  async openRange(range: Span, deadline: number, ids: readonly number[], step: number, avoid?: ReadonlySet<string>): Promise<HopSession[]> {
    for (;;) {
      if (this.stopped) throw new StepAbortedError('The sequence was closed while its route was being opened.');
      const records = this.ctx.recordsFor(this.ctx.modelHash);
      const exclude = this.excludedNow(records, avoid);
      const plan = findRoute(records, range.start, range.end, { exclude, rttMs: this.ctx.rttMs(), measuredMs: this.ctx.measuredMs(), penaltyMs: this.ctx.penaltyMs() });
      if (plan && performance.now() < deadline) {
        const opened = await Promise.all(plan.map((hop) => this.openSpan(hop.span, deadline, avoid)));
        if (this.stopped) {
          for (const h of opened) if (h) this.close(h);
          throw new StepAbortedError('The sequence was closed while its route was being opened.');
        }
        if (opened.every((h) => h !== null)) return opened as HopSession[];
        // keep what opened; plan again only the spans that did not
        try {
          const out: HopSession[] = [];
          for (let i = 0; i < plan.length; i++) {
            const h = opened[i];
            out.push(...(h ? [h] : await this.openRange(plan[i].span, deadline, ids, step, avoid)));
          }
          return out;
        } catch (e) {
          for (const h of opened) if (h) this.close(h);
          throw e;
        }
      }
      if (performance.now() >= deadline) {
        const missing = uncovered(records, range.start, range.end, exclude) ?? range;
        throw new NoRouteError(
          `No peer serves layers [${missing.start}, ${missing.end}) of this model (step ${step}; last failure: ${this.lastError || 'none'}). ` +
            'The conversation is kept; retry when more hosts are online.',
          missing,
          [...ids],
        );
      }
      await new Promise((r) => setTimeout(r, Math.min(REPLAN_MS, Math.max(0, deadline - performance.now()))));
    }
  }

  /**
   * Whether a route for `range` exists now among hosts not excluded and not in `avoid` (checks ask before opening a
   * witness, so a span nobody else serves costs no wait).
   */
  canRoute(range: Span, avoid?: ReadonlySet<string>): boolean {
    const records = this.ctx.recordsFor(this.ctx.modelHash);
    return findRoute(records, range.start, range.end, { exclude: this.excludedNow(records, avoid) }) !== null;
  }

  private excludedNow(records: readonly PeerRecord[], avoid?: ReadonlySet<string>): Set<string> {
    const exclude = this.ctx.excluded(records);
    for (const p of avoid ?? []) exclude.add(p);
    return exclude;
  }

  /** A session on the first of the span's candidates to answer (RACE at a time), or null when none did. */
  async openSpan(span: Span, deadline: number, avoid?: ReadonlySet<string>): Promise<HopSession | null> {
    const key = `${span.start}:${span.end}`;
    const queue = this.candidates(span, avoid);
    let winner: HopSession | null = null;
    await new Promise<void>((done) => {
      let running = 0;
      const next = (): void => {
        while (!winner && running < RACE && queue.length > 0 && performance.now() < deadline) {
          const peer = queue.shift()!;
          running++;
          this.attempt(peer, span, deadline).then(
            (h) => {
              if (winner) {
                this.close(h); // a later answer: its link stays up as this span's spare
                if (!this.spares.has(key)) this.spares.set(key, h.peer);
              } else {
                winner = h;
                if (this.spares.get(key) === h.peer) this.spares.delete(key);
              }
            },
            (e: unknown) => {
              this.lastError = describe(e);
              blame(this.ctx, peer, e, false);
              if (this.spares.get(key) === peer) this.spares.delete(key);
            },
          ).finally(() => {
            running--;
            if (winner || (running === 0 && (queue.length === 0 || performance.now() >= deadline))) done();
            else next();
          });
        }
        if (running === 0) done();
      };
      next();
    });
    return winner;
  }

  /** The span's hosts, best first: the spare, then by routing cost (failures included). */
  private candidates(span: Span, avoid?: ReadonlySet<string>): string[] {
    const records = this.ctx.recordsFor(this.ctx.modelHash);
    const exclude = this.excludedNow(records, avoid);
    const rtt = this.ctx.rttMs();
    const same = records.filter((r) => holdsSpan(r.span, span) && !exclude.has(r.id));
    const costs = { measuredMs: this.ctx.measuredMs(), penaltyMs: this.ctx.penaltyMs() };
    same.sort((a, b) => hopCost(a, rtt, costs) - hopCost(b, rtt, costs) || (a.id < b.id ? -1 : 1));
    const ids = same.map((r) => r.id);
    const spare = this.spares.get(`${span.start}:${span.end}`);
    if (spare && ids.includes(spare)) return [spare, ...ids.filter((p) => p !== spare)];
    return ids;
  }

  /** Connect to `peer` (or share its link), check its hello, open a session there. */
  private async attempt(peer: string, span: Span, deadline: number): Promise<HopSession> {
    const timeout = Math.max(1, Math.min(this.ctx.openTimeoutMs, deadline - performance.now()));
    const link = await this.ctx.connect(peer, this.ctx.limits);
    const req = requests(link);
    // The host introduces itself first: it must serve our model and the span we route through it.
    const hello = await link.waitHello(timeout);
    if (!hello) {
      if (link.isDown) throw await link.closed;
      throw new HopTimeoutError(`${peer} sent no hello within ${Math.round(timeout)} ms`);
    }
    if (hello.modelHash !== this.ctx.modelHash) {
      throw new RemoteError('model-mismatch', peer, `serves model ${hello.modelHash.slice(0, 12)}…, not ours`);
    }
    if (!holdsSpan(hello.span, span)) {
      throw new RemoteError('bad-request', peer, `serves layers [${hello.span.start}, ${hello.span.end}), not [${span.start}, ${span.end}) as its record said`);
    }
    const ask = async (maxTokens: number): Promise<HopSession> => {
      const session = newSessionId();
      const answer = req.wait(`open:${session}`, timeout);
      answer.catch(() => {}); // if the send below fails, its error is the one to report
      await link.send({ kind: 'open', session, span, maxTokens });
      await answer;
      return { peer, span, link, session, step: 0, length: 0, inputs: [], maxTokens };
    };
    const least = Math.min(this.maxPos, this.minPos());
    try {
      return await ask(this.maxPos);
    } catch (e) {
      // room kept for later turns is a wish: a host with a shorter context (or less room) may still hold this one
      if (!(e instanceof RemoteError && e.code === 'kv-full') || least >= this.maxPos) throw e;
      return await ask(least);
    }
  }

  /**
   * Keep a warm spare for each span of `route`: a link to the next best host for the span, introduced (its hello
   * checked), not holding a session. In the background; failures only mean there is no spare.
   */
  warmSpares(route: readonly HopSession[]): void {
    const onRoute = new Set(route.map((h) => h.peer));
    for (const h of route) {
      const key = `${h.span.start}:${h.span.end}`;
      const have = this.spares.get(key);
      if (have && !onRoute.has(have)) continue;
      const peer = this.candidates(h.span).find((p) => !onRoute.has(p));
      if (!peer) continue;
      this.spares.set(key, peer);
      void this.ctx.connect(peer, this.ctx.limits).then(
        async (link) => {
          const hello = await link.waitHello(this.ctx.openTimeoutMs);
          if (!hello || hello.modelHash !== this.ctx.modelHash || !holdsSpan(hello.span, h.span)) {
            if (this.spares.get(key) === peer) this.spares.delete(key);
          }
        },
        (e: unknown) => {
          blame(this.ctx, peer, e, false);
          if (this.spares.get(key) === peer) this.spares.delete(key);
        },
      );
    }
  }

  /** End a hop's session (its link stays up, shared). */
  close(h: HopSession): void {
    if (!h.link.isDown) h.link.send({ kind: 'close', session: h.session }).catch(() => {});
  }
}
