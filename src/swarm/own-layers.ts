// The layers a swarm client runs itself, before and after the hosts' (a pure description; open-client.ts loads them),
// and the layers hosts are therefore sent: what a host that chooses its own span serves (placement.ts).

import { InvalidArgumentError } from '../model/errors';
import type { Span } from './protocol';

/**
 * Layers the client runs itself: the first `first` and the last `last`. With first >= 1 no host receives embedding
 * rows (which give back every token id by a nearest-row lookup), with last >= 1 none receives the last hidden states
 * (which give the next token's scores through the public output head). It raises the bar, no more: a host that knows
 * the weights can still invert a few layers (tests/swarm/inversion.test.ts measures both).
 */
export interface OwnLayers {
  first: number;
  last: number;
}

/**
 * 1 and 1: the least that keeps embedding rows and the last hidden states on this device. More layers cost their
 * download and their compute here and measured no gain against an attacker that inverts layers by search
 * (tests/swarm/inversion.test.ts: 100 % of tokens recovered through 1, 2 and 3 layers of stories260K).
 * Every client of a swarm should keep them: hosts that choose their own span serve only the layers between.
 */
export const DEFAULT_OWN_LAYERS: OwnLayers = { first: 1, last: 1 };

export interface ClientSpans {
  /** layers run here before the hosts' (empty when first = 0) */
  front: Span | null;
  /** the hosts' layers */
  remote: Span;
  /** layers run here after the hosts' */
  back: Span | null;
}

/** Where a client's own layers and the swarm's meet; at least one layer must be left to the hosts. */
export function clientSpans(nLayers: number, own: OwnLayers): ClientSpans {
  const { first, last } = own;
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 0 || last < 0 || first + last >= nLayers) {
    throw new InvalidArgumentError(
      `This device can run the first and last layers itself (${first} and ${last} asked), but together fewer than the model's ${nLayers}: the swarm runs the rest.`,
    );
  }
  return {
    front: first > 0 ? { start: 0, end: first } : null,
    remote: { start: first, end: nLayers - last },
    back: last > 0 ? { start: nLayers - last, end: nLayers } : null,
  };
}

/** The layers clients with the default own layers send to hosts: where a host choosing its own span serves. */
export function hostedLayers(nLayers: number): Span {
  const { first, last } = DEFAULT_OWN_LAYERS;
  return first + last < nLayers ? { start: first, end: nLayers - last } : { start: 0, end: nLayers };
}
