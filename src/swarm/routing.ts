// Routing: the chain of hosts a client sends hidden states through, as a pure function over peer records. A route
// for [from, to) is a sequence of records whose spans, cut to [from, to), tile it exactly: a host runs its whole span
// except where the route's ends cut into it (a client running its own first and last layers). Cost of a hop =
// hopMs (a fixed price per hop: serialisation + a network round trip on a good link) + its measured round trip, or
// defaultRttMs when unmeasured, + its compute time (1000 / throughput ms per token, when known), + what its failures
// are expected to cost per token (reliability.ts), when it failed this client before. The cheapest tiling
// wins (a shortest path over layer boundaries, which only move forward); ties go to fewer hops, then lower peer ids,
// so equal inputs give equal routes. Not here: measuring, banning (the caller passes `exclude`).

import type { PeerRecord } from './records';
import type { Span } from './protocol';

export interface Hop {
  peer: string;
  span: Span;
}

export interface RouteOptions {
  /** peers not to use (banned, failed) */
  exclude?: ReadonlySet<string>;
  /** measured round trips by peer id, ms */
  rttMs?: ReadonlyMap<string, number>;
  /** fixed cost per hop. 2 ms: what a hop adds on loopback beyond compute (bench-swarm) */
  hopMs?: number;
  /** cost of a peer whose round trip was never measured. 20 ms: a typical WAN round trip */
  defaultRttMs?: number;
  /** a decode step's measured round trip through each peer this client used, ms: replaces its claim */
  measuredMs?: ReadonlyMap<string, number>;
  /** by peer id, what the host's failures are expected to cost per token, ms (reliability.ts): added to its hop */
  penaltyMs?: ReadonlyMap<string, number>;
}

/**
 * What a hop through `r` costs, ms per token (see the header). A hop this client has measured (a decode step's round
 * trip through it, compute included) costs what was measured: a host's own claim of speed counts only until then.
 * A host that failed this client costs its expected failures on top.
 */
export function hopCost(r: PeerRecord, rttMs?: ReadonlyMap<string, number>, opts: Pick<RouteOptions, 'hopMs' | 'defaultRttMs' | 'measuredMs' | 'penaltyMs'> = {}): number {
  const penalty = opts.penaltyMs?.get(r.id) ?? 0;
  const measured = opts.measuredMs?.get(r.id);
  if (measured !== undefined) return (opts.hopMs ?? 2) + measured + penalty;
  return (opts.hopMs ?? 2) + (rttMs?.get(r.id) ?? opts.defaultRttMs ?? 20) + (r.throughput > 0 ? 1000 / r.throughput : 0) + penalty;
}

/**
 * Whether a host claims to be much faster than it measured: a decode step through it, less the link's round trip
 * (the network's share), took more than OVERCLAIM times its claimed compute per token (1000 / throughput). The round
 * trip is subtracted, not scaled: on a loaded machine a slow ping must not excuse a claim thousands of times too fast.
 */
export function overclaims(r: PeerRecord, measuredMs: number, rttMs: number): boolean {
  return r.throughput > 0 && measuredMs - rttMs > OVERCLAIM * (1000 / r.throughput);
}

/** A claim of speed this many times what was measured marks its host. 4: far beyond a busy moment's noise. */
const OVERCLAIM = 4;

/** Whether a host announcing `has` can run `want` (a run of its layers). */
export function holdsSpan(has: Span, want: Span): boolean {
  return want.start >= has.start && want.end <= has.end && want.start < want.end;
}

/** Cheapest chain of records tiling [from, to) (each cut to it), or null when the records cannot cover it. */
export function findRoute(records: readonly PeerRecord[], from: number, to: number, opts: RouteOptions = {}): Hop[] | null {
  if (!(from < to)) return null;
  const cost = (r: PeerRecord): number => hopCost(r, opts.rttMs, opts);
  // best[p] = cheapest way to reach boundary p from `from`: [cost, hops, lastRecord, previous boundary]
  type Best = { cost: number; hops: number; rec: PeerRecord | null; prev: number; key: string };
  const best = new Map<number, Best>([[from, { cost: 0, hops: 0, rec: null, prev: -1, key: '' }]]);
  const usable = records
    .filter((r) => !opts.exclude?.has(r.id) && r.span.start < to && r.span.end > from)
    .map((r) => ({ ...r, span: { start: Math.max(from, r.span.start), end: Math.min(to, r.span.end) } }))
    .sort((a, b) => a.span.start - b.span.start || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  // Spans only move forward, so visiting records by start relaxes every edge after its source is final.
  for (const r of usable) {
    const src = best.get(r.span.start);
    if (!src) continue;
    const cand: Best = { cost: src.cost + cost(r), hops: src.hops + 1, rec: r, prev: r.span.start, key: `${src.key}/${r.id}` };
    const cur = best.get(r.span.end);
    if (!cur || cand.cost < cur.cost - 1e-9 || (Math.abs(cand.cost - cur.cost) <= 1e-9 && (cand.hops < cur.hops || (cand.hops === cur.hops && cand.key < cur.key)))) {
      best.set(r.span.end, cand);
    }
  }
  if (!best.has(to)) return null;
  const hops: Hop[] = [];
  for (let p = to; p !== from; ) {
    const b = best.get(p)!;
    hops.push({ peer: b.rec!.id, span: { start: b.rec!.span.start, end: b.rec!.span.end } });
    p = b.prev;
  }
  return hops.reverse();
}

/** The first layer range in [from, to) no record covers (for error messages), or null when all are covered. */
export function uncovered(records: readonly PeerRecord[], from: number, to: number, exclude?: ReadonlySet<string>): Span | null {
  const cov = new Array<boolean>(to - from).fill(false);
  for (const r of records) {
    if (exclude?.has(r.id)) continue;
    for (let l = Math.max(from, r.span.start); l < Math.min(to, r.span.end); l++) cov[l - from] = true;
  }
  const first = cov.indexOf(false);
  if (first < 0) return null;
  let end = first;
  while (end < cov.length && !cov[end]) end++;
  return { start: from + first, end: from + end };
}
