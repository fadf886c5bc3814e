// Checked hops: a second host (or chain of hosts) for the same layers, the witness, runs the same inputs a route hop
// ran and the client compares the answers (hop-check.ts). Per hop on the route it keeps the answers the hop gave
// since its last check; per span a witness session, opened in the background as soon as a hop joins the route (a
// check that finds none ready waits for a later step, and never holds a token up for a connection), whose KV cache is
// caught up lazily: at a check it runs the hop's
// kept inputs since its own last position in chunks of maxBatch (the replay of swarm-model.ts's recover), which
// gives its answers for every position since the hop's last check, so one check covers every step since the last,
// checked or not. On a mismatch a third opinion (another host or chain, caught up from position 0) decides: the hop
// that disagrees with two others is banned and the route is cut back to the first wrong position (the caller
// replaces the hop and the generation loop runs again from there); a witness that disagrees with two others is
// banned (a single host) or no longer trusted (a chain: which of its hosts lied is not known) and the third opinion
// becomes the witness. With no third opinion to be had the positions stay unverified and no one is banned (a coin
// toss is no evidence), and later checks ask again (a host may have joined); when three answers all differ they stand
// unverified. Not here: which steps are checked and the tolerance (hop-check.ts), the forward loop, replay and
// replacing hops (swarm-model.ts), the generation loop's rollback (engine/generate.ts).

import { InvalidArgumentError } from '../model/errors';
import { HopMismatchError, HopTimeoutError, LinkDownError, RemoteError, WitnessUnavailableError } from './errors';
import { checksOff, emptyVerification, firstMismatch, rowDivergence, unpredictable, type CheckPolicy, type Verification } from './hop-check';
import type { Span } from './protocol';
import type { HopSession } from './route-opener';

/** What checks need of the client. */
export interface CheckContext {
  readonly dim: number;
  readonly maxBatch: number;
  readonly policy: CheckPolicy;
  /** one forward through one session (a pos0 before the session's length rewinds it); keeps no inputs */
  forward(h: HopSession, x: Float32Array, nTokens: number, pos0: number): Promise<Float32Array>;
  /** sessions tiling `span` on hosts not in `avoid` (nor banned, nor gone), or null when there are none now */
  open(span: Span, avoid: ReadonlySet<string>): Promise<HopSession[] | null>;
  close(h: HopSession): void;
  /** a host whose answers two others contradicted */
  ban(peer: string): void;
  /** a witness that failed as a hop fails (gone, timed out, broke the protocol): route-opener.ts blame */
  blame(peer: string, e: unknown): void;
  /** hidden-state bytes on the wire so far, both ways (what checks cost is the difference) */
  wireBytes(): number;
}

/** What the route's sequence offers checks. */
export interface CheckedRoute {
  readonly hops: readonly HopSession[];
  /** positions run so far */
  readonly length: number;
  /** positions from `p` on are void: cut the route's inputs, answers and length back to `p` */
  voidFrom(p: number): void;
  /** replace hop `i`, whose host lied (banned already): a new route for its span, replayed up to `length` */
  replace(i: number, cause: HopMismatchError): Promise<void>;
}

export type CheckVerdict =
  | { kind: 'agree' }
  /** no witness could be had now: the hop stays due */
  | { kind: 'deferred' }
  /** a mismatch no third opinion could decide */
  | { kind: 'unverified'; at: number }
  /** the hop's host answered wrong first at position `at` */
  | { kind: 'liar'; at: number; peer: string };

/** A route hop's answers since its last check. */
interface HopState {
  /** positions [0, verified) are settled: checked, or found unverifiable */
  verified: number;
  /** the hop's answers for positions [verified, verified + rows), in blocks as they came */
  answers: Float32Array[];
  rows: number;
  /** forwards served on the route */
  served: number;
  /** a check is owed: the hop's first step, a random pick, or one deferred for want of a witness */
  due: boolean;
  /** the position of a mismatch no third opinion could be had for (counted once; asked again at later checks) */
  undecided?: number;
  /** a check found no witness (counted once until a check runs) */
  waiting?: boolean;
}

/**
 * How long a hop's first step, the end of a reply, or a checked-only step waits for a witness still being opened
 * (it starts opening when the hop joins the route, so by the hop's first step it is usually open). 3 s: a WebRTC link
 * on a good network opens in well under a second, and a candidate that never answers (a host frozen but still
 * announced) must not hold every reply up for the whole open timeout.
 */
const WITNESS_WAIT_MS = 3_000;

/** Rounds of third opinions one check may ask for (a witness that lied is replaced by the third opinion, which is then
 *  compared with the hop again). 2: one liar among witnesses, and one more chance. */
const MAX_OPINIONS = 2;

export class HopChecks {
  /** what checks found in this sequence */
  readonly counts: Verification = emptyVerification();
  private readonly states = new Map<HopSession, HopState>();
  /** per span ('start:end'): a chain caught up on the span's inputs to its sessions' length */
  private readonly witnesses = new Map<string, HopSession[]>();
  /** hosts of witness chains that two others contradicted: never a witness again in this sequence */
  private readonly distrusted = new Set<string>();
  /** per span: a witness being opened in the background */
  private readonly opening = new Map<string, Promise<void>>();
  private closed = false;

  constructor(private readonly ctx: CheckContext) {}

  /** `h` joins the route with positions [0, verified) settled; its first forward will be checked. */
  join(h: HopSession, verified: number): void {
    if (checksOff(this.ctx.policy)) return;
    this.states.set(h, { verified, answers: [], rows: 0, served: 0, due: false });
    if (!this.usable(this.witnesses.get(spanKey(h.span)), h)) this.prepare(h);
  }

  /** `h` left the route: its answers not yet checked, positions [from, from + rows), for comparison with its replacement. */
  leave(h: HopSession): { from: number; answers: Float32Array } | undefined {
    const st = this.states.get(h);
    this.states.delete(h);
    if (!st || st.rows === 0) return undefined;
    return { from: st.verified, answers: joinRows(st.answers, st.rows * this.ctx.dim) };
  }

  /** `h` served positions [pos0, pos0 + n) on the route with `y`; this step is checked on the hop's first, or at the policy's rate. */
  served(h: HopSession, pos0: number, y: Float32Array): void {
    const st = this.states.get(h);
    if (!st) return;
    if (pos0 !== st.verified + st.rows) throw new InvalidArgumentError(`A hop answered position ${pos0}; its checks expected ${st.verified + st.rows}.`);
    st.answers.push(y);
    st.rows += y.length / this.ctx.dim;
    st.served++;
    if (st.served === 1 || unpredictable() < this.ctx.policy.rate) st.due = true;
  }

  /** Positions whose answers are settled on every hop of `hops`. */
  settled(hops: readonly HopSession[]): number {
    let min = Infinity;
    for (const h of hops) min = Math.min(min, this.states.get(h)?.verified ?? 0);
    return Number.isFinite(min) ? min : 0;
  }

  /** The route was cut back to `p` positions: answers from `p` on are forgotten. Witnesses rewind at their next use. */
  truncate(p: number): void {
    const dim = this.ctx.dim;
    for (const st of this.states.values()) {
      if (st.verified >= p) {
        st.verified = p;
        st.answers = [];
        st.rows = 0;
      } else if (st.verified + st.rows > p) {
        st.rows = p - st.verified;
        st.answers = [joinRows(st.answers, st.rows * dim)];
      }
    }
  }

  /**
   * A replacement's replay answered positions [0, L) (`replayed`, the chain's output): compare the positions the
   * replaced hop answered unchecked. Returns the first position where they differ, or -1. Two hosts agreeing settles
   * those positions; where they differ the caller goes back there (the replaced host is gone; its replacement's
   * answers are checked at its first step like any new hop's).
   */
  compareReplay(prior: { from: number; answers: Float32Array }, replayed: Float32Array): number {
    const dim = this.ctx.dim;
    const mine = replayed.subarray(prior.from * dim, prior.from * dim + prior.answers.length);
    if (mine.length !== prior.answers.length) return -1;
    this.counts.checks++;
    const p = firstMismatch(prior.answers, mine, dim, this.ctx.policy.tolerance);
    if (p < 0) return -1;
    this.counts.mismatches++;
    return prior.from + p;
  }

  /**
   * Run the checks that are due (all: every hop with unsettled positions), fixing what they find: a hop found lying
   * is banned, the route cut back to its first wrong position and the hop replaced. Returns the first position made
   * void, if any.
   */
  async run(route: CheckedRoute, all: boolean): Promise<number | undefined> {
    let voided: number | undefined;
    const tried = new Set<HopSession>();
    for (;;) {
      const i = route.hops.findIndex((h) => !tried.has(h) && this.isDue(h, route.length, all));
      if (i < 0) return voided;
      const h = route.hops[i];
      tried.add(h);
      const first = this.states.get(h)?.served === 1;
      let v = await this.check(h, route.length);
      const opening = this.opening.get(spanKey(h.span));
      if (v.kind === 'deferred' && (all || first) && opening) {
        // a hop's first step, the end of a reply and a checked-only step wait a while for a witness being opened
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([opening, new Promise((r) => (timer = setTimeout(r, WITNESS_WAIT_MS)))]);
        clearTimeout(timer);
        v = await this.check(h, route.length);
      }
      if (v.kind !== 'liar') continue;
      route.voidFrom(v.at);
      this.counts.rollbacks++;
      voided = Math.min(voided ?? Infinity, v.at);
      await route.replace(i, new HopMismatchError(v.peer, v.at, `${v.peer} answered position ${v.at} of layers [${h.span.start}, ${h.span.end}) unlike two other hosts`));
    }
  }

  private isDue(h: HopSession, length: number, all: boolean): boolean {
    const st = this.states.get(h);
    return st !== undefined && st.verified < length && (all || st.due);
  }

  /** Check hop `h` over every position it answered since its last check (the route holds `length` positions). */
  async check(h: HopSession, length: number): Promise<CheckVerdict> {
    const st = this.states.get(h);
    if (!st || st.verified >= length) return { kind: 'agree' };
    if (st.verified + st.rows !== length) throw new InvalidArgumentError(`A hop holds answers up to ${st.verified + st.rows}, the route ${length}.`);
    const { dim, policy } = this.ctx;
    const from = st.verified;
    const mine = joinRows(st.answers, st.rows * dim);
    const bytes0 = this.ctx.wireBytes();
    const third: HopSession[][] = [];
    try {
      const first = this.witnessFor(h);
      if (!first) {
        if (!st.waiting) this.counts.deferred++;
        st.waiting = true;
        return { kind: 'deferred' };
      }
      st.waiting = false;
      let witness: HopSession[] = first;
      let theirs = await this.catchUp(witness, h.inputs, from, length);
      this.counts.checks++;
      for (let round = 0; ; round++) {
        const p = firstMismatch(mine, theirs, dim, policy.tolerance);
        if (p < 0) {
          this.settle(st, length);
          return { kind: 'agree' };
        }
        this.counts.mismatches++;
        const avoid = new Set<string>([h.peer, ...witness.map((w) => w.peer), ...this.distrusted]);
        const t: HopSession[] | null = round < MAX_OPINIONS ? await this.ctx.open(h.span, avoid) : null;
        if (!t) {
          // nobody to ask now: the positions stay unchecked, and a later check (a host may join) asks again
          if (st.undecided !== from + p) this.counts.unverified++;
          st.undecided = from + p;
          st.due = false;
          return { kind: 'unverified', at: from + p };
        }
        third.push(t);
        const answer = await this.catchUp(t, h.inputs, from, length);
        const hopAgrees = agreeAt(mine, answer, p, dim, policy.tolerance);
        const witnessAgrees = agreeAt(theirs, answer, p, dim, policy.tolerance);
        if (!hopAgrees && witnessAgrees) {
          // two against one: the hop lied. Everything before p agreed with the witness.
          this.ctx.ban(h.peer);
          this.counts.banned.push(h.peer);
          this.settle(st, from + p);
          return { kind: 'liar', at: from + p, peer: h.peer };
        }
        if (hopAgrees && !witnessAgrees) {
          // the witness lied: it goes, the third opinion (caught up) is the witness now, compared again with the hop
          this.dismiss(witness, true);
          third.pop();
          this.witnesses.set(spanKey(h.span), t);
          witness = t;
          theirs = answer;
          continue;
        }
        // three answers, no two alike: nothing to decide on; those positions stand unverified
        this.counts.unverified++;
        this.settle(st, length);
        return { kind: 'unverified', at: from + p };
      }
    } catch (e) {
      if (e instanceof WitnessUnavailableError) {
        if (!st.waiting) this.counts.deferred++;
        st.waiting = true;
        return { kind: 'deferred' };
      }
      throw e;
    } finally {
      for (const t of third) for (const s of t) this.ctx.close(s);
      this.counts.bytes += this.ctx.wireBytes() - bytes0;
    }
  }

  /** Close every witness (the sequence ends). */
  close(): void {
    this.closed = true;
    for (const w of this.witnesses.values()) for (const s of w) this.ctx.close(s);
    this.witnesses.clear();
    this.states.clear();
  }

  private settle(st: HopState, length: number): void {
    st.verified = length;
    st.answers = [];
    st.rows = 0;
    st.due = false;
    st.undecided = undefined;
  }

  /** The span's witness, not on `h`'s host; null when none is ready (one is then opened for a later check). */
  private witnessFor(h: HopSession): HopSession[] | null {
    const kept = this.witnesses.get(spanKey(h.span));
    if (this.usable(kept, h)) return kept;
    if (kept) this.dismiss(kept, false);
    this.prepare(h);
    return null;
  }

  private usable(w: HopSession[] | undefined, h: HopSession): w is HopSession[] {
    return w !== undefined && !w.some((s) => s.peer === h.peer || s.link.isDown);
  }

  /** Open a witness for `h`'s span on other hosts, in the background (none now: a later check asks again). */
  private prepare(h: HopSession): void {
    const key = spanKey(h.span);
    if (this.closed || this.opening.has(key)) return;
    const opened = this.ctx.open(h.span, new Set([h.peer, ...this.distrusted])).then(
      (w) => {
        if (!w) return;
        if (this.closed || this.witnesses.has(key)) for (const s of w) this.ctx.close(s);
        else this.witnesses.set(key, w);
      },
      () => {}, // no witness now
    ).finally(() => this.opening.delete(key));
    this.opening.set(key, opened);
  }

  /** Close a witness chain; one that lied is banned (one host) or no longer trusted (a chain). */
  private dismiss(w: HopSession[], lied: boolean): void {
    for (const s of w) this.ctx.close(s);
    for (const [k, v] of this.witnesses) if (v === w) this.witnesses.delete(k);
    if (!lied) return;
    if (w.length === 1) {
      this.ctx.ban(w[0].peer);
      this.counts.banned.push(w[0].peer);
    } else {
      for (const s of w) this.distrusted.add(s.peer);
    }
  }

  /**
   * Run the span's inputs (the route hop's kept `inputs`) from the chain's own position (or `from`, if earlier: it
   * rewinds) up to `to` through `chain`, in chunks of maxBatch; returns its answers for positions [from, to).
   */
  private async catchUp(chain: HopSession[], inputs: readonly Float32Array[], from: number, to: number): Promise<Float32Array> {
    const { dim, maxBatch } = this.ctx;
    const start = Math.min(from, chain[0].length);
    const x = rowsOf(inputs, start, to, dim);
    const out = new Float32Array((to - from) * dim);
    for (let r = start; r < to; r += maxBatch) {
      const n = Math.min(maxBatch, to - r);
      let y = x.subarray((r - start) * dim, (r - start + n) * dim);
      for (const s of chain) {
        try {
          y = await this.ctx.forward(s, y, n, r);
        } catch (e) {
          if (!(e instanceof LinkDownError || e instanceof HopTimeoutError || e instanceof RemoteError)) throw e;
          this.ctx.blame(s.peer, e);
          this.dismiss(chain, false);
          throw new WitnessUnavailableError(e.message);
        }
      }
      // keep rows [max(r, from), r + n)
      const keep = Math.max(r, from);
      if (keep < r + n) out.set(y.subarray((keep - r) * dim), (keep - from) * dim);
    }
    return out;
  }
}

function spanKey(s: Span): string {
  return `${s.start}:${s.end}`;
}

function agreeAt(a: Float32Array, b: Float32Array, row: number, dim: number, tol: number): boolean {
  const d = rowDivergence(a.subarray(row * dim, (row + 1) * dim), b.subarray(row * dim, (row + 1) * dim), dim)[0];
  return d <= tol;
}

/** The first `values` values of blocks joined in order. */
function joinRows(blocks: readonly Float32Array[], values: number): Float32Array {
  if (blocks.length === 1 && blocks[0].length === values) return blocks[0];
  const out = new Float32Array(values);
  let at = 0;
  for (const b of blocks) {
    if (at >= values) break;
    const n = Math.min(b.length, values - at);
    out.set(b.subarray(0, n), at);
    at += n;
  }
  return out;
}

/** Rows [from, to) of blocks of rows ([n_i, dim] each, in order), joined. */
export function rowsOf(blocks: readonly Float32Array[], from: number, to: number, dim: number): Float32Array {
  const out = new Float32Array((to - from) * dim);
  let row = 0;
  for (const b of blocks) {
    const n = b.length / dim;
    const lo = Math.max(from, row);
    const hi = Math.min(to, row + n);
    if (lo < hi) out.set(b.subarray((lo - row) * dim, (hi - row) * dim), (lo - from) * dim);
    row += n;
    if (row >= to) break;
  }
  if (row < to) throw new InvalidArgumentError(`Kept inputs hold ${row} positions; ${to} were asked for.`);
  return out;
}

/** Blocks of rows cut to their first `rows` rows. */
export function cutRows(blocks: readonly Float32Array[], rows: number, dim: number): Float32Array[] {
  const out: Float32Array[] = [];
  let row = 0;
  for (const b of blocks) {
    if (row >= rows) break;
    const n = b.length / dim;
    out.push(row + n <= rows ? b : b.subarray(0, (rows - row) * dim));
    row += n;
  }
  return out;
}
