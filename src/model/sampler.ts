// The token sampler: sampling parameters and their validation, the repetition penalty, a seeded PRNG, and the CPU
// step that picks one token from a short list of (id, logit) candidates.
// Division of work: the GPU applies the repetition penalty to the logits and returns the top-k candidates (k from
// `candidateCount`), so a decode step reads back k pairs, not the vocabulary; `Sampler.pick` finishes on those. The
// CPU reference path penalises the full logits with `applyPenaltyInPlace` and passes every token; both give the same
// pick (see the test "top-k candidates and the full vocabulary give the same picks").
// Not here: the GPU kernels (src/gpu), the generation loop and its token history (src/engine), frequency/presence
// penalties, DRY, typical-p, XTC, mirostat or grammars.
//
// Semantics follow llama.cpp's default sampler chain (common/sampling + src/llama-sampling.cpp):
//   penalties -> top-k -> top-p -> min-p -> temperature -> draw.
// top-p and min-p therefore see the softmax of the untempered (but penalised) logits; temperature only shapes the
// final draw among the survivors.

import { InvalidArgumentError } from './errors';

export interface SamplingParams {
  /** <= 0 means greedy (normalizeSampling only accepts >= 0). */
  temperature: number;
  /** 0 = disabled (all tokens are candidates); 1 = greedy. */
  topK: number;
  /** 1 = disabled; otherwise keep the smallest most-likely set whose probability mass reaches topP. */
  topP: number;
  /** 0 = disabled; otherwise drop tokens whose probability is below minP times the top token's probability. */
  minP: number;
  /** 1 = disabled; > 1 discourages repeats, < 1 encourages them. */
  repeatPenalty: number;
  /** How many most recent tokens the penalty looks at (0 = none). */
  repeatLastN: number;
  /** u32; same seed + same inputs => same choices. */
  seed: number;
}

/** llama.cpp's current CLI defaults (common_params_sampling): --temp 0.8 --top-k 40 --top-p 0.95 --min-p 0.05
 *  --repeat-penalty 1.0 (off; it was 1.1 in older releases) --repeat-last-n 64. */
export const DEFAULT_SAMPLING: SamplingParams = Object.freeze({
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1.0,
  repeatLastN: 64,
  seed: 0,
});

const U32_MAX = 0xffff_ffff;

type Field = keyof SamplingParams;

function bad(field: Field, value: unknown, range: string): InvalidArgumentError {
  const shown = typeof value === 'number' ? String(value) : `${typeof value} ${JSON.stringify(value)}`;
  return new InvalidArgumentError(`sampling.${field} must be ${range}; got ${shown}`);
}

/** Read one field: undefined takes the default; anything else must be a number passing `ok`. */
function field(p: Partial<SamplingParams>, name: Field, ok: (v: number) => boolean, range: string): number {
  const v: unknown = p[name];
  if (v === undefined) return DEFAULT_SAMPLING[name];
  if (typeof v !== 'number' || !ok(v)) throw bad(name, v, range);
  return v;
}

/** Fill defaults and validate every range. Throws InvalidArgumentError naming the field and its allowed range.
 *  Only the known fields are copied; the result is a fresh object. */
export function normalizeSampling(p: Partial<SamplingParams>): SamplingParams {
  if (typeof p !== 'object' || p === null) {
    throw new InvalidArgumentError(`sampling parameters must be an object; got ${p === null ? 'null' : typeof p}`);
  }
  const finite = Number.isFinite;
  const int = Number.isInteger;
  return {
    temperature: field(p, 'temperature', (v) => finite(v) && v >= 0, 'a finite number >= 0 (0 = greedy)'),
    // topK above the vocabulary is allowed (it is capped by candidateCount); it must fit a u32 for the GPU.
    topK: field(p, 'topK', (v) => int(v) && v >= 0 && v <= U32_MAX, 'an integer in [0, 4294967295] (0 = disabled)'),
    topP: field(p, 'topP', (v) => finite(v) && v > 0 && v <= 1, 'a number in (0, 1] (1 = disabled)'),
    minP: field(p, 'minP', (v) => finite(v) && v >= 0 && v <= 1, 'a number in [0, 1] (0 = disabled)'),
    repeatPenalty: field(p, 'repeatPenalty', (v) => finite(v) && v > 0, 'a finite number > 0 (1 = disabled)'),
    repeatLastN: field(p, 'repeatLastN', (v) => int(v) && v >= 0 && v <= U32_MAX, 'an integer in [0, 4294967295]'),
    seed: field(p, 'seed', (v) => int(v) && v >= 0 && v <= U32_MAX, 'an integer in [0, 4294967295]'),
  };
}

export function isGreedy(p: SamplingParams): boolean {
  return p.temperature <= 0 || p.topK === 1;
}

/** How many top candidates the GPU must return per step: 1 if greedy, else topK capped at the vocabulary,
 *  or the whole vocabulary when topK is 0. */
export function candidateCount(p: SamplingParams, vocabSize: number): number {
  if (!Number.isInteger(vocabSize) || vocabSize < 1) {
    throw new InvalidArgumentError(`vocabSize must be an integer >= 1; got ${vocabSize}`);
  }
  if (isGreedy(p)) return 1;
  if (p.topK === 0) return vocabSize;
  return Math.min(p.topK, vocabSize);
}

/** Unique ids among the last `repeatLastN` tokens of `history`, ascending (a stable order for a GPU upload).
 *  Empty when the penalty is disabled (1) or the window is 0. Each id is penalised once, however often it
 *  repeats, as in llama.cpp's repeat penalty (its count only feeds the frequency penalty, which we do not have). */
export function penalizedIds(history: readonly number[], p: SamplingParams): number[] {
  if (p.repeatPenalty === 1 || p.repeatLastN === 0) return [];
  const start = Math.max(0, history.length - p.repeatLastN);
  const seen = new Set<number>();
  for (let i = start; i < history.length; i++) seen.add(history[i]);
  return [...seen].sort((a, b) => a - b);
}

/** llama.cpp's (CTRL-style) rule: a positive logit is divided by the penalty, a non-positive one multiplied, so a
 *  penalty > 1 always makes the token less likely (dividing a negative logit would make it more likely). */
export function applyPenalty(logit: number, penalty: number): number {
  return logit <= 0 ? logit * penalty : logit / penalty;
}

/** Penalise `logits[id]` once for each distinct id in `ids` (duplicates are applied once). Throws on an id outside
 *  the logits. The penalty is rounded to f32 and so is the result: the same arithmetic as an f32 GPU kernel. */
export function applyPenaltyInPlace(logits: Float32Array, ids: readonly number[], penalty: number): void {
  if (penalty === 1) return;
  const penalty32 = Math.fround(penalty);
  const done = new Set<number>();
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= logits.length) {
      throw new InvalidArgumentError(`penalised token id ${id} is outside the vocabulary [0, ${logits.length})`);
    }
    if (done.has(id)) continue;
    done.add(id);
    logits[id] = Math.fround(applyPenalty(logits[id], penalty32));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Rng: xoshiro128** 1.0 (Blackman & Vigna, 2018; https://prng.di.unimi.it/), 128 bits of state, period 2^128 - 1,
// all in 32-bit integer arithmetic (no BigInt). The seed is expanded into the four state words with SplitMix32
// (a Weyl sequence stepping by 0x9E3779B9 = 2^32 / golden ratio, finished by MurmurHash3's fmix32 mixer), as Vigna
// recommends seeding xoshiro from a splitmix generator. fmix32 is a bijection and the four Weyl inputs differ, so at
// most one state word can be zero: the forbidden all-zero state cannot occur.

function rotl32(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > U32_MAX) {
      throw new InvalidArgumentError(`Rng seed must be an integer in [0, 4294967295]; got ${seed}`);
    }
    let w = seed >>> 0;
    const splitmix32 = (): number => {
      w = (w + 0x9e3779b9) >>> 0;
      let z = w;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = splitmix32();
    this.s1 = splitmix32();
    this.s2 = splitmix32();
    this.s3 = splitmix32();
  }

  /** Start from a raw state (for known-answer tests against the reference C code); not all zero. */
  static fromState(s0: number, s1: number, s2: number, s3: number): Rng {
    const words = [s0, s1, s2, s3];
    if (words.some((x) => !Number.isInteger(x) || x < 0 || x > U32_MAX) || words.every((x) => x === 0)) {
      throw new InvalidArgumentError('Rng state must be four u32 words, not all zero');
    }
    const r = new Rng(0);
    [r.s0, r.s1, r.s2, r.s3] = words;
    return r;
  }

  /** The four state words (Sampler.state: a generation that goes back restores its draws). */
  state(): [number, number, number, number] {
    return [this.s0, this.s1, this.s2, this.s3];
  }

  /** Continue from a state that state() gave. */
  restore(s: readonly [number, number, number, number]): void {
    [this.s0, this.s1, this.s2, this.s3] = s;
  }

  nextU32(): number {
    const result = Math.imul(rotl32(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 = (this.s2 ^ this.s0) >>> 0;
    this.s3 = (this.s3 ^ this.s1) >>> 0;
    this.s1 = (this.s1 ^ this.s2) >>> 0;
    this.s0 = (this.s0 ^ this.s3) >>> 0;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl32(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 bits of resolution: u32 / 2^32 is at most 1 - 2^-32 < 1. */
  nextFloat(): number {
    return this.nextU32() / 4294967296;
  }
}

// ---------------------------------------------------------------------------------------------------------------

/** NaN (a broken logit) counts as impossible, like -Infinity. */
function logitAt(logits: ArrayLike<number>, i: number): number {
  const l = logits[i];
  return Number.isNaN(l) ? -Infinity : l;
}

/** Index of the highest logit, ties -> lowest id. */
function argmax(ids: ArrayLike<number>, logits: ArrayLike<number>): number {
  let best = 0;
  let bestLogit = logitAt(logits, 0);
  for (let i = 1; i < ids.length; i++) {
    const l = logitAt(logits, i);
    if (l > bestLogit || (l === bestLogit && ids[i] < ids[best])) {
      best = i;
      bestLogit = l;
    }
  }
  return best;
}

/** A sampler's draws so far (its Rng's state words). */
export type SamplerState = readonly [number, number, number, number];

export class Sampler {
  readonly params: SamplingParams;
  private readonly rng: Rng;

  constructor(p: SamplingParams) {
    this.params = normalizeSampling(p);
    this.rng = new Rng(this.params.seed);
  }

  /** Where the draws stand: restore() returns to it, so picks made after it are made again the same way. */
  state(): SamplerState {
    return this.rng.state();
  }

  restore(s: SamplerState): void {
    this.rng.restore(s);
  }

  /** Choose a token from candidates (already penalised). ids/logits have equal length, any order, length >= 1.
   *  Greedy: the highest logit, ties -> lowest id. Otherwise, in llama.cpp's order: top-k, then top-p and min-p on
   *  the softmax of the untempered logits, then temperature, then draw with this sampler's Rng.
   *  Candidates are ranked by (logit descending, id ascending), so the result does not depend on their order, and
   *  k candidates from a GPU top-k give the same pick as the whole vocabulary (if the GPU also breaks ties toward
   *  the lower id). Every non-greedy pick consumes exactly one draw, so the Rng stream does not depend on how many
   *  candidates survive. If no candidate has a finite logit the pick is greedy. */
  pick(ids: ArrayLike<number>, logits: ArrayLike<number>): number {
    const n = ids.length;
    if (n < 1 || logits.length !== n) {
      throw new InvalidArgumentError(`pick needs equal, non-zero numbers of ids and logits; got ${n} and ${logits.length}`);
    }
    const p = this.params;
    if (isGreedy(p)) return ids[argmax(ids, logits)];

    const byRank = (a: number, b: number): number =>
      logitAt(logits, b) - logitAt(logits, a) || ids[a] - ids[b];

    // top-k: keep the k best indices (sorted); with topK 0 or >= n keep all, still unsorted.
    let kept: number[] = Array.from({ length: n }, (_, i) => i);
    let sorted = false;
    if (p.topK > 0 && p.topK < n) {
      kept.sort(byRank);
      kept.length = p.topK;
      sorted = true;
    }

    // Softmax normaliser of the untempered top-k set: top-p's probabilities are relative to it.
    let maxLogit = -Infinity;
    for (const i of kept) maxLogit = Math.max(maxLogit, logitAt(logits, i));
    const u = this.rng.nextFloat(); // drawn now so that every exit below consumes exactly one draw
    if (!Number.isFinite(maxLogit)) return ids[argmax(ids, logits)];
    let z = 0;
    for (const i of kept) z += Math.exp(logitAt(logits, i) - maxLogit);

    // min-p: p_i >= minP * p_max  <=>  logit_i >= maxLogit + ln(minP). llama.cpp runs it after top-p; both keep a
    // prefix of the same ranking and neither moves the other's threshold (top-p's mass is over the top-k set, min-p's
    // is relative to the max), so running it first keeps the same set and shrinks what we sort when topK is 0.
    if (p.minP > 0) {
      const cut = maxLogit + Math.log(p.minP);
      kept = kept.filter((i) => logitAt(logits, i) >= cut);
    }
    if (!sorted) kept.sort(byRank);

    // top-p: the shortest ranked prefix whose mass reaches topP (the token that crosses it is kept, so at least one).
    if (p.topP < 1) {
      let cum = 0;
      for (let r = 0; r < kept.length; r++) {
        cum += Math.exp(logitAt(logits, kept[r]) - maxLogit) / z;
        if (cum >= p.topP) {
          kept.length = r + 1;
          break;
        }
      }
    }

    // temperature, then draw from the softmax of the survivors.
    const weights = kept.map((i) => Math.exp((logitAt(logits, i) - maxLogit) / p.temperature));
    let total = 0;
    for (const w of weights) total += w;
    let acc = 0;
    const target = u * total;
    for (let r = 0; r < kept.length; r++) {
      acc += weights[r];
      if (target < acc) return ids[kept[r]];
    }
    return ids[kept[kept.length - 1]]; // rounding left target >= acc: the last survivor
  }
}
