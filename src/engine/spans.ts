// Splitting a model's layers into contiguous spans: a pure function over plain numbers.

import { InvalidArgumentError } from '../model/errors';

export interface Span {
  start: number;
  end: number;
}

/** `parts` contiguous spans covering [0, nLayers), sizes differing by at most one (earlier spans get the extra). */
export function splitLayers(nLayers: number, parts: number): Span[] {
  if (!Number.isInteger(parts) || parts < 1 || parts > nLayers) {
    throw new InvalidArgumentError(`Cannot split ${nLayers} layers into ${parts} stages: use 1..${nLayers}.`);
  }
  const spans: Span[] = [];
  let start = 0;
  for (let i = 0; i < parts; i++) {
    const size = Math.floor(nLayers / parts) + (i < nLayers % parts ? 1 : 0);
    spans.push({ start, end: start + size });
    start += size;
  }
  return spans;
}
