// Span choice for a host started without --layers: a pure function over the swarm's records (as Petals'
// block_selection does). Coverage of layer l = how many live hosts serve it, weighted by throughput when known; a new
// host takes the `maxLayers`-long window whose weakest layer is weakest (ties: the smallest sum, then the lowest start).
// Not here: when to move (shouldMove compares the current span with the best one).

import { InvalidArgumentError } from '../model/errors';
import type { PeerRecord } from './records';
import type { Span } from './protocol';

/** Per layer, the summed throughput of the hosts serving it (a host of unknown throughput counts as 1). */
export function coverage(nLayers: number, records: readonly Pick<PeerRecord, 'span' | 'throughput'>[]): number[] {
  const cov = new Array<number>(nLayers).fill(0);
  for (const r of records) {
    const w = r.throughput > 0 ? r.throughput : 1;
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

/** The span of `min(maxLayers, nLayers)` layers this host should serve given the others' records. */
export function chooseSpan(nLayers: number, maxLayers: number, records: readonly Pick<PeerRecord, 'span' | 'throughput'>[]): Span {
  if (!Number.isInteger(nLayers) || nLayers < 1) throw new InvalidArgumentError(`nLayers = ${nLayers} must be >= 1.`);
  if (!Number.isInteger(maxLayers) || maxLayers < 1) throw new InvalidArgumentError(`--max-layers = ${maxLayers} must be >= 1.`);
  const len = Math.min(maxLayers, nLayers);
  const cov = coverage(nLayers, records);
  let best = 0;
  let bestScore = score(cov, 0, len);
  for (let s = 1; s + len <= nLayers; s++) {
    const sc = score(cov, s, len);
    if (sc[0] < bestScore[0] || (sc[0] === bestScore[0] && sc[1] < bestScore[1])) {
      best = s;
      bestScore = sc;
    }
  }
  return { start: best, end: best + len };
}

/**
 * Should a host serving `current` move to the best span? Only when the weakest layer of the best span (counting the
 * others, not us) is covered less than half as well as our current span's weakest layer without us: moving costs a
 * weight download and drops sessions, so small differences are not worth it (Petals uses a similar 'balance quality').
 */
export function shouldMove(nLayers: number, current: Span, others: readonly Pick<PeerRecord, 'span' | 'throughput'>[]): Span | null {
  const len = current.end - current.start;
  const cov = coverage(nLayers, others);
  const best = chooseSpan(nLayers, len, others);
  const [curMin] = score(cov, current.start, len);
  const [bestMin] = score(cov, best.start, len);
  return bestMin * 2 < curMin ? best : null;
}
