// What a curious host can read from the hidden states it is sent, played with the public weights on the CPU reference
// (src/model/reference.ts). Two attacks on the states after the first k layers:
// - nearest row: each position's state against every embedding row (cosine), the best row's id; exact for k = 0.
// - search: position by position, every id of the vocabulary run through layers [0, k) after the ids recovered so far
//   (their keys and values in the cache), keeping the id whose output is nearest the received state (least squares).
//   It needs only the public weights and k layer evaluations per candidate.
// And one on the last layers: a host whose output is the input of layers [L - k', L) reads the next token through the
// public final norm and output head (the "logit lens"); exact for k' = 0.
// Not here: the test that runs them (inversion.test.ts).

import type { ModelConfig } from '../../src/model/config';
import { ReferenceCache, referenceEmbed, referenceLayers, referenceLogits, type Weights } from '../../src/model/reference';

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Ids read back by the nearest embedding row (cosine similarity) of each row of `states` [n, dim]. */
export function nearestRow(cfg: ModelConfig, w: Weights, states: Float32Array): number[] {
  const E = w.get('token_embd.weight') as Float32Array;
  const { dim, vocab } = cfg;
  const norms = new Float32Array(vocab);
  for (let v = 0; v < vocab; v++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += E[v * dim + d] ** 2;
    norms[v] = Math.sqrt(s) || 1;
  }
  const out: number[] = [];
  for (let t = 0; t < states.length / dim; t++) {
    const h = states.subarray(t * dim, (t + 1) * dim);
    const score = new Float32Array(vocab);
    for (let v = 0; v < vocab; v++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += E[v * dim + d] * h[d];
      score[v] = s / norms[v];
    }
    out.push(argmax(score));
  }
  return out;
}

/** Ids read back by searching the vocabulary through layers [0, k), position by position (least squares). */
export function searchInversion(cfg: ModelConfig, w: Weights, states: Float32Array, k: number): number[] {
  const { dim, vocab } = cfg;
  const n = states.length / dim;
  const cache = new ReferenceCache(cfg, n);
  const out: number[] = [];
  for (let t = 0; t < n; t++) {
    const target = states.subarray(t * dim, (t + 1) * dim);
    let best = 0;
    let bestErr = Infinity;
    for (let v = 0; v < vocab; v++) {
      // position t's keys and values are overwritten by each candidate; earlier positions hold the recovered ids'
      const y = referenceLayers(cfg, w, cache, referenceEmbed(cfg, w, [v]), t, 0, k);
      let err = 0;
      for (let d = 0; d < dim; d++) err += (y[d] - target[d]) ** 2;
      if (err < bestErr) {
        bestErr = err;
        best = v;
      }
    }
    referenceLayers(cfg, w, cache, referenceEmbed(cfg, w, [best]), t, 0, k); // the cache keeps the chosen id's
    out.push(best);
  }
  return out;
}

/** The next token each row of `states` [n, dim] predicts through the public final norm and output head. */
export function logitLens(cfg: ModelConfig, w: Weights, states: Float32Array): number[] {
  const logits = referenceLogits(cfg, w, states);
  const out: number[] = [];
  for (let t = 0; t < states.length / cfg.dim; t++) out.push(argmax(logits.subarray(t * cfg.vocab, (t + 1) * cfg.vocab)));
  return out;
}

/** Hidden states after layers [0, k) of `ids` from position 0 (k = 0: the embedding rows). */
export function statesAfter(cfg: ModelConfig, w: Weights, ids: readonly number[], k: number): Float32Array {
  const x = referenceEmbed(cfg, w, ids);
  return k === 0 ? x : referenceLayers(cfg, w, new ReferenceCache(cfg, ids.length), x, 0, 0, k);
}

/** Share of positions where `got` equals `want`. */
export function agreement(got: readonly number[], want: readonly number[]): number {
  let same = 0;
  for (let i = 0; i < want.length; i++) if (got[i] === want[i]) same++;
  return same / want.length;
}
