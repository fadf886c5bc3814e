// Span choice for a host started without --layers: a pure function over the swarm's records (as Petals'
// block_selection does), within the layers clients send to hosts (own-layers.ts hostedLayers). Coverage of layer l = how many live hosts serve it, weighted by throughput when known; a new
// host takes the window (at most maxLayers long, aligned to existing span boundaries) whose weakest layer is weakest.
// Not here: when to move (shouldMove compares the current span with the best one).

import { InvalidArgumentError } from '../model/errors';
import type { PeerRecord } from './records';
import type { Span } from './protocol';

/**
 * Per layer, the summed throughput of the hosts serving it. A host that has not measured its throughput yet (0)
 * counts as the median of those that have (1 when none has): a new host is neither free nor worthless.
 */
export function coverage(nLayers: number, records: readonly Pick<PeerRecord, 'span' | 'throughput'>[]): number[] {
  const cov = new Array<number>(nLayers).fill(0);
  const known = records.map((r) => r.throughput).filter((t) => t > 0).sort((a, b) => a - b);
  const fallback = known.length > 0 ? known[Math.floor(known.length / 2)] : 1;
  for (const r of records) {
    const w = r.throughput > 0 ? r.throughput : fallback;
    for (let l = Math.max(0, r.span.start); l < Math.min(nLayers, r.span.end); l++) cov[l] += w;
  }
  return cov;
}

function score(cov: number[], start: number, len: number): [number, number] {
  let min = Infinity;
  let sum = 0;
  for (let l = start; l < start + len; l++) {
    min = Math.min(min, cov[l]);
    sum += cov[l];
  }
  return [min, sum];
}

/**
 * The span this host should serve given the others' records: at most `maxLayers` layers, starting at a boundary of
 * an existing span (or the range's start) and, when one lies inside the window, ending at the last such boundary. Hosts run whole spans, so a route
 * must tile [0, L) with them; spans that overlap partially cannot be chained, while boundary-aligned ones can.
 * Best = the weakest layer least covered, then the longest window, then the least summed coverage, then the lowest start.
 */
export function chooseSpan(
  nLayers: number, maxLayers: number, records: readonly Pick<PeerRecord, 'span' | 'throughput'>[], range: Span = { start: 0, end: nLayers },
): Span {
  if (!Number.isInteger(nLayers) || nLayers < 1) throw new InvalidArgumentError(`nLayers = ${nLayers} must be >= 1.`);
  if (!Number.isInteger(maxLayers) || maxLayers < 1) throw new InvalidArgumentError(`--max-layers = ${maxLayers} must be >= 1.`);
  if (!(range.start >= 0 && range.start < range.end && range.end <= nLayers)) throw new InvalidArgumentError(`Layers [${range.start}, ${range.end}) are not a part of ${nLayers}.`);
  // within `range`: layers renumbered from its start, records cut to it
  const shifted = records.map((r) => ({ throughput: r.throughput, span: { start: r.span.start - range.start, end: r.span.end - range.start } }));
  const s = chooseFrom(range.end - range.start, maxLayers, shifted);
  return { start: s.start + range.start, end: s.end + range.start };
}

function chooseFrom(nLayers: number, maxLayers: number, records: readonly Pick<PeerRecord, 'span' | 'throughput'>[]): Span {
  const len = Math.min(maxLayers, nLayers);
  const cov = coverage(nLayers, records);
  const bounds = new Set<number>([0]);
  for (const r of records) for (const b of [r.span.start, r.span.end]) if (b >= 0 && b < nLayers) bounds.add(b);
  const sorted = [...bounds].sort((a, b) => a - b);
  let best: { start: number; end: number; min: number; sum: number } | null = null;
  for (const s of sorted) {
    const full = Math.min(s + len, nLayers);
    const inner = sorted.filter((b) => b > s && b <= full);
    const ends = full === nLayers || inner.length === 0 ? [full] : [inner[inner.length - 1]];
    for (const e of ends) {
      const [min, sum] = score(cov, s, e - s);
      const better =
        !best ||
        min < best.min ||
        (min === best.min && (e - s > best.end - best.start || (e - s === best.end - best.start && (sum < best.sum || (sum === best.sum && s < best.start)))));
      if (better) best = { start: s, end: e, min, sum };
    }
  }
  return { start: best!.start, end: best!.end };
}

/**
 * Should a host serving `current` move to the best span? Only when the weakest layer of the best span (counting the
 * others, not us) is covered less than half as well as our current span's weakest layer without us: moving costs a
 * weight download and drops sessions, so small differences are not worth it (Petals uses a similar 'balance quality').
 */
export function shouldMove(
  nLayers: number, current: Span, others: readonly Pick<PeerRecord, 'span' | 'throughput'>[], range: Span = { start: 0, end: nLayers },
): Span | null {
  const len = current.end - current.start;
  const cov = coverage(nLayers, others);
  const best = chooseSpan(nLayers, len, others, range);
  const [curMin] = score(cov, current.start, len);
  const [bestMin] = score(cov, best.start, best.end - best.start);
  return bestMin * 2 < curMin ? best : null;
}
