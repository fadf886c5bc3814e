// Tests for src/model/sampler.ts: parameter validation, the repetition penalty, the xoshiro128** Rng against
// known answers, and Sampler.pick against an oracle. The oracle here is written independently of the module: it
// follows llama.cpp's chain literally (top-k, top-p on the untempered softmax, min-p on probabilities relative to
// the max, temperature) in probability space, and the small tables' surviving sets are also written out by hand.
// Empirical frequencies come from fixed seeds, so every run is the same; the bound is stated at `within`.
// Not tested here: the GPU top-k kernel (tests/gpu) or the generation loop (tests/engine).

import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/model/errors';
import {
  DEFAULT_SAMPLING,
  Rng,
  Sampler,
  type SamplingParams,
  applyPenalty,
  applyPenaltyInPlace,
  candidateCount,
  isGreedy,
  normalizeSampling,
  penalizedIds,
} from '../../src/model/sampler';

// ---------------------------------------------------------------------------------------------------------------
// Oracle and statistics helpers.

/** Everything off except what a test turns on; temperature 1 so the draw is the plain softmax. */
function params(over: Partial<SamplingParams>): SamplingParams {
  return { temperature: 1, topK: 0, topP: 1, minP: 0, repeatPenalty: 1, repeatLastN: 0, seed: 1234, ...over };
}

function softmax(xs: readonly number[]): number[] {
  const m = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** Exact probability of each id under llama.cpp's chain, computed step by step in its order. */
function oracle(ids: readonly number[], logits: readonly number[], p: SamplingParams): Map<number, number> {
  let c = ids.map((id, i) => ({ id, l: logits[i] })).sort((a, b) => b.l - a.l || a.id - b.id);
  if (p.topK > 0) c = c.slice(0, p.topK);
  if (p.topP < 1) {
    const probs = softmax(c.map((x) => x.l));
    let cum = 0;
    let keep = c.length;
    for (let i = 0; i < probs.length; i++) {
      cum += probs[i];
      if (cum >= p.topP) {
        keep = i + 1;
        break;
      }
    }
    c = c.slice(0, keep);
  }
  if (p.minP > 0) {
    const probs = softmax(c.map((x) => x.l));
    const pMax = Math.max(...probs);
    c = c.filter((_, i) => probs[i] >= p.minP * pMax);
  }
  const probs = softmax(c.map((x) => x.l / p.temperature));
  return new Map(c.map((x, i) => [x.id, probs[i]]));
}

function frequencies(s: Sampler, ids: readonly number[], logits: readonly number[], n: number): Map<number, number> {
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const id = s.pick(ids, logits);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return new Map([...counts].map(([id, c]) => [id, c / n]));
}

/** Draws per distribution check: 20,000 keeps the whole file well under a second. */
const N = 20_000;
/** Each frequency is within 5 standard errors of its probability, sqrt(p(1-p)/N). For a correct sampler a 5-sigma
 *  miss has two-sided probability about 6e-7 per token, so the fixed seeds are not cherry-picked; at N = 20,000 the
 *  bound is at most 5 * 0.5 / sqrt(20000) = 0.018, so an error of 0.02 or more in any probability is caught.
 *  A token the oracle gives probability 0 must never be drawn (exact). */
function within(freq: Map<number, number>, expected: Map<number, number>, n = N): string[] {
  const problems: string[] = [];
  const all = new Set([...freq.keys(), ...expected.keys()]);
  for (const id of all) {
    const p = expected.get(id) ?? 0;
    const f = freq.get(id) ?? 0;
    const bound = 5 * Math.sqrt((p * (1 - p)) / n);
    if (Math.abs(f - p) > bound) problems.push(`id ${id}: frequency ${f.toFixed(4)} vs p ${p.toFixed(4)} ± ${bound.toFixed(4)}`);
  }
  return problems;
}

function support(m: Map<number, number>): number[] {
  return [...m.keys()].filter((id) => (m.get(id) ?? 0) > 0).sort((a, b) => a - b);
}

/** Logits whose softmax is exactly the given probabilities (up to rounding). */
const logOf = (probs: number[]): number[] => probs.map(Math.log);

// ---------------------------------------------------------------------------------------------------------------

describe('normalizeSampling', () => {
  it('fills every field from DEFAULT_SAMPLING (llama.cpp CLI defaults)', () => {
    expect(DEFAULT_SAMPLING).toEqual({
      temperature: 0.8,
      topK: 40,
      topP: 0.95,
      minP: 0.05,
      repeatPenalty: 1.0,
      repeatLastN: 64,
      seed: 0,
    });
    expect(normalizeSampling({})).toEqual(DEFAULT_SAMPLING);
    expect(normalizeSampling({ topK: 0, seed: 7, temperature: 0 })).toEqual({ ...DEFAULT_SAMPLING, topK: 0, seed: 7, temperature: 0 });
  });

  it('accepts the edges of each range', () => {
    const edges: Partial<SamplingParams> = { temperature: 0, topK: 0, topP: 1, minP: 1, repeatPenalty: 0.5, repeatLastN: 0, seed: 0xffffffff };
    expect(normalizeSampling(edges)).toEqual({ ...DEFAULT_SAMPLING, ...edges });
    expect(normalizeSampling({ topP: 1e-6, minP: 0 }).topP).toBe(1e-6);
  });

  it('copies only the known fields', () => {
    const extra = { topK: 5, maxTokens: 10 } as Partial<SamplingParams>;
    expect(Object.keys(normalizeSampling(extra)).sort()).toEqual(Object.keys(DEFAULT_SAMPLING).sort());
  });

  // [field, bad value, text the message must contain (the allowed range)]
  const cases: [keyof SamplingParams, unknown, string][] = [
    ['temperature', -0.1, '>= 0'],
    ['temperature', Number.NaN, '>= 0'],
    ['temperature', Number.POSITIVE_INFINITY, 'finite'],
    ['temperature', '0.7', '>= 0'],
    ['topK', -1, '[0, 4294967295]'],
    ['topK', 2.5, 'integer'],
    ['topK', Number.NaN, 'integer'],
    ['topP', 0, '(0, 1]'],
    ['topP', 1.01, '(0, 1]'],
    ['topP', -0.5, '(0, 1]'],
    ['topP', Number.NaN, '(0, 1]'],
    ['minP', -0.01, '[0, 1]'],
    ['minP', 1.5, '[0, 1]'],
    ['repeatPenalty', 0, '> 0'],
    ['repeatPenalty', -1.1, '> 0'],
    ['repeatPenalty', Number.NaN, '> 0'],
    ['repeatLastN', -1, '[0, 4294967295]'],
    ['repeatLastN', 3.5, 'integer'],
    ['seed', 1.5, '[0, 4294967295]'],
    ['seed', -1, '[0, 4294967295]'],
    ['seed', 2 ** 32, '[0, 4294967295]'],
    ['seed', null, '[0, 4294967295]'],
  ];
  it.each(cases)('%s = %s throws InvalidArgumentError naming the field and range', (field, value, range) => {
    let caught: unknown;
    try {
      normalizeSampling({ [field]: value } as Partial<SamplingParams>);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError);
    const err = caught as InvalidArgumentError;
    expect(err.name).toBe('InvalidArgumentError');
    expect(err.message).toContain(field);
    expect(err.message).toContain(range);
  });

  it('rejects a non-object', () => {
    expect(() => normalizeSampling(null as unknown as Partial<SamplingParams>)).toThrow(InvalidArgumentError);
  });

  it('Sampler validates its parameters too', () => {
    expect(() => new Sampler(params({ topP: 0 }))).toThrow(InvalidArgumentError);
  });
});

describe('isGreedy and candidateCount', () => {
  it('isGreedy: temperature 0 or topK 1', () => {
    expect(isGreedy(params({ temperature: 0, topK: 40 }))).toBe(true);
    expect(isGreedy(params({ temperature: 1, topK: 1 }))).toBe(true);
    expect(isGreedy(params({ temperature: 0.01, topK: 2 }))).toBe(false);
    expect(isGreedy(params({ temperature: 1, topK: 0 }))).toBe(false);
  });

  // [params, vocab size, expected count]
  const table: [Partial<SamplingParams>, number, number][] = [
    [{ temperature: 0, topK: 40 }, 32000, 1],
    [{ temperature: 0.8, topK: 1 }, 32000, 1],
    [{ temperature: 0.8, topK: 40 }, 32000, 40],
    [{ temperature: 0.8, topK: 40 }, 10, 10],
    [{ temperature: 0.8, topK: 0 }, 32000, 32000],
    [{ temperature: 0, topK: 0 }, 32000, 1],
    [{ temperature: 0.8, topK: 2 }, 1, 1],
  ];
  it.each(table)('%o over a vocabulary of %i -> %i', (over, vocab, want) => {
    expect(candidateCount(params(over), vocab)).toBe(want);
  });

  it('rejects a bad vocabulary size', () => {
    expect(() => candidateCount(params({}), 0)).toThrow(InvalidArgumentError);
    expect(() => candidateCount(params({}), 1.5)).toThrow(InvalidArgumentError);
  });
});

describe('repetition penalty', () => {
  it('divides positive logits and multiplies negative ones (llama.cpp rule)', () => {
    expect(applyPenalty(2, 1.25)).toBe(1.6);
    expect(applyPenalty(-2, 1.25)).toBe(-2.5);
    expect(applyPenalty(0, 1.25)).toBe(0);
    // a penalty always lowers a token's logit, whatever its sign
    for (const l of [-3, -0.1, 0.1, 3]) expect(applyPenalty(l, 1.1)).toBeLessThan(l);
    // penalty < 1 raises it
    expect(applyPenalty(2, 0.5)).toBe(4);
    expect(applyPenalty(-2, 0.5)).toBe(-1);
  });

  it('penalizedIds: unique ids of the last repeatLastN tokens, ascending', () => {
    const history = [5, 1, 5, 7, 2, 9, 7];
    expect(penalizedIds(history, params({ repeatPenalty: 1.1, repeatLastN: 4 }))).toEqual([2, 7, 9]); // 7 2 9 7
    expect(penalizedIds(history, params({ repeatPenalty: 1.1, repeatLastN: 5 }))).toEqual([2, 5, 7, 9]);
    expect(penalizedIds(history, params({ repeatPenalty: 1.1, repeatLastN: 64 }))).toEqual([1, 2, 5, 7, 9]);
    expect(penalizedIds(history, params({ repeatPenalty: 1, repeatLastN: 64 }))).toEqual([]);
    expect(penalizedIds(history, params({ repeatPenalty: 1.1, repeatLastN: 0 }))).toEqual([]);
    expect(penalizedIds([], params({ repeatPenalty: 1.1, repeatLastN: 64 }))).toEqual([]);
  });

  it('applyPenaltyInPlace touches only the listed ids, once each, in f32', () => {
    const logits = new Float32Array([3, -1.5, 0.7, 2, -4]);
    applyPenaltyInPlace(logits, [0, 1, 1, 4], 1.5);
    const f = Math.fround;
    const want = [f(3 / f(1.5)), f(-1.5 * f(1.5)), f(0.7), 2, f(-4 * f(1.5))];
    expect(Array.from(logits)).toEqual(want);
    expect(Array.from(logits)).toEqual([2, -2.25, f(0.7), 2, -6]); // the same numbers by hand
    expect(() => applyPenaltyInPlace(logits, [5], 1.5)).toThrow(InvalidArgumentError);
    expect(() => applyPenaltyInPlace(logits, [-1], 1.5)).toThrow(InvalidArgumentError);
  });

  it('the CPU path (penalise, then greedy) turns away from a just-seen token', () => {
    const p = params({ temperature: 0, repeatPenalty: 1.1, repeatLastN: 64 });
    const logits = new Float32Array([2.0, 1.9, -1]);
    const ids = [0, 1, 2];
    expect(new Sampler(p).pick(ids, logits)).toBe(0);
    applyPenaltyInPlace(logits, penalizedIds([0, 2], p), p.repeatPenalty); // 2.0 / 1.1 = 1.818 < 1.9
    expect(new Sampler(p).pick(ids, logits)).toBe(1);
  });
});

describe('Rng (xoshiro128**, SplitMix32 seeding)', () => {
  // Reference values from the xoshiro128** C code of Blackman & Vigna, compiled with gcc on this machine; the
  // raw-state vector (state 1, 2, 3, 4) is the one commonly published for xoshiro128**.
  it('matches the reference outputs for state (1, 2, 3, 4)', () => {
    const r = Rng.fromState(1, 2, 3, 4);
    const got = Array.from({ length: 8 }, () => r.nextU32());
    expect(got).toEqual([11520, 0, 5927040, 70819200, 2031721883, 1637235492, 1287239034, 3734860849]);
  });

  it.each([
    [0, [3809008728, 1133695204, 53579671, 2891528803, 139681546, 2203266335]],
    [42, [2837322924, 544945897, 479756282, 3500138142, 339756180, 113173290]],
    [0xffffffff, [835879718, 1921286648, 2356205009, 1885780724, 980451116, 1053911718]],
  ])('seed %i gives the reference C outputs', (seed, want) => {
    const r = new Rng(seed);
    expect(Array.from({ length: want.length }, () => r.nextU32())).toEqual(want);
  });

  it('nextFloat is in [0, 1) with mean 1/2 and uniform deciles', () => {
    const r = new Rng(99);
    const n = 100_000;
    const bins = new Array<number>(10).fill(0);
    let sum = 0;
    let outside = 0;
    for (let i = 0; i < n; i++) {
      const x = r.nextFloat();
      if (!(x >= 0 && x < 1)) outside++;
      sum += x;
      bins[Math.floor(x * 10)]++;
    }
    expect(outside).toBe(0);
    // the mean of n uniforms has standard deviation sqrt(1/12/n) = 0.00091; allow 5 of them
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / n));
    // each decile's count: p = 0.1, sd = sqrt(n * 0.1 * 0.9) = 95; allow 5 sd
    for (const b of bins) expect(Math.abs(b - n / 10)).toBeLessThan(5 * Math.sqrt(n * 0.09));
  });

  it('rejects bad seeds and the all-zero state', () => {
    for (const s of [-1, 1.5, 2 ** 32, Number.NaN]) expect(() => new Rng(s)).toThrow(InvalidArgumentError);
    expect(() => Rng.fromState(0, 0, 0, 0)).toThrow(InvalidArgumentError);
  });
});

describe('Sampler.pick: greedy', () => {
  it('picks the highest logit whatever the order', () => {
    const s = new Sampler(params({ temperature: 0 }));
    expect(s.pick([4, 9, 2, 7], [0.1, 3.5, -2, 3.4])).toBe(9);
    expect(s.pick([7, 2, 9, 4], [3.4, -2, 3.5, 0.1])).toBe(9);
    expect(s.pick([11], [-100])).toBe(11);
  });

  it('breaks ties toward the lowest id', () => {
    const s = new Sampler(params({ temperature: 0 }));
    expect(s.pick([8, 3, 5], [1, 1, 1])).toBe(3);
    expect(s.pick([5, 8, 3], [2, 1, 2])).toBe(3);
  });

  it('topK 1 is greedy at any temperature; NaN logits never win', () => {
    const s = new Sampler(params({ temperature: 5, topK: 1 }));
    for (let i = 0; i < 50; i++) expect(s.pick([1, 2, 3], [0.5, 0.6, 0.4])).toBe(2);
    expect(new Sampler(params({ temperature: 0 })).pick([1, 2, 3], [Number.NaN, -5, -7])).toBe(2);
  });

  it('rejects empty or mismatched candidates', () => {
    const s = new Sampler(params({}));
    expect(() => s.pick([], [])).toThrow(InvalidArgumentError);
    expect(() => s.pick([1, 2], [0.5])).toThrow(InvalidArgumentError);
  });
});

describe('Sampler.pick: distributions against the oracle', () => {
  it('temperature only: frequencies match softmax(logits / T), and not the untempered softmax', () => {
    const ids = [7, 3, 12, 0, 5];
    const logits = [1.5, 0.2, -0.3, 1.0, -2];
    const p = params({ temperature: 0.7, seed: 1 });
    const want = oracle(ids, logits, p);
    // an independent check of the oracle on this table: softmax of l / 0.7
    const byHand = softmax(logits.map((l) => l / 0.7));
    ids.forEach((id, i) => expect(want.get(id)).toBeCloseTo(byHand[i], 12));
    const freq = frequencies(new Sampler(p), ids, logits, N);
    expect(within(freq, want)).toEqual([]);
    // power: the same frequencies are far outside the bound for temperature 1
    expect(within(freq, oracle(ids, logits, params({ temperature: 1 }))).length).toBeGreaterThan(0);
  });

  it('top-k keeps the k best and renormalises', () => {
    const ids = [40, 41, 42, 43, 44];
    const logits = [1, 3, 0, 2, -1];
    const p = params({ topK: 2, seed: 2 });
    const want = oracle(ids, logits, p);
    // by hand: logits 3 and 2 survive: p = 1 / (1 + e^-1) = 0.7311 and 0.2689
    expect(support(want)).toEqual([41, 43]);
    expect(want.get(41)).toBeCloseTo(1 / (1 + Math.exp(-1)), 12);
    expect(within(frequencies(new Sampler(p), ids, logits, N), want)).toEqual([]);
  });

  it('top-p runs on the untempered softmax, before temperature', () => {
    // logits 2, 1, 0, -1: untempered probabilities 0.644, 0.237, 0.087, 0.032; cumulative 0.644, 0.881 -> with
    // topP 0.8 the nucleus is {logit 2, logit 1}. Tempered first (T = 2) they would be 0.455, 0.276, 0.167 (cum
    // 0.898 only at the third), a 3-token nucleus. Drawn with T = 2: e^1 / (e^1 + e^0.5) = 0.6225 and 0.3775.
    const ids = [20, 21, 22, 23];
    const logits = [0, 2, -1, 1];
    const p = params({ topP: 0.8, temperature: 2, seed: 3 });
    const want = oracle(ids, logits, p);
    expect(support(want)).toEqual([21, 23]);
    expect(want.get(21)).toBeCloseTo(Math.exp(1) / (Math.exp(1) + Math.exp(0.5)), 12);
    const freq = frequencies(new Sampler(p), ids, logits, N);
    expect(within(freq, want)).toEqual([]);
    expect(freq.get(20)).toBeUndefined(); // the token a tempered top-p would have kept is never drawn
  });

  it('top-p keeps the token that crosses the threshold, and always at least one', () => {
    const ids = [0, 1, 2];
    const logits = logOf([0.5, 0.3, 0.2]);
    // 0.5 < 0.6 <= 0.5 + 0.3: keeps two
    const p = params({ topP: 0.6, seed: 4 });
    expect(support(oracle(ids, logits, p))).toEqual([0, 1]);
    expect(within(frequencies(new Sampler(p), ids, logits, N), oracle(ids, logits, p))).toEqual([]);
    // the first token alone reaches 0.45, and a tiny topP still keeps one token
    for (const topP of [0.45, 1e-9]) {
      const s = new Sampler(params({ topP, seed: 5 }));
      for (let i = 0; i < 200; i++) expect(s.pick(ids, logits)).toBe(0);
    }
  });

  it('min-p cuts relative to the top probability, not absolutely', () => {
    // probabilities 0.5, 0.3, 0.1, 0.06, 0.04; minP 0.15 -> threshold 0.15 * 0.5 = 0.075 keeps {0.5, 0.3, 0.1}
    // (an absolute cut at 0.15 would keep two); renormalised 5/9, 3/9, 1/9.
    const ids = [10, 11, 12, 13, 14];
    const logits = logOf([0.3, 0.06, 0.5, 0.04, 0.1]);
    const p = params({ minP: 0.15, seed: 6 });
    const want = oracle(ids, logits, p);
    expect(support(want)).toEqual([10, 12, 14]);
    expect(want.get(14)).toBeCloseTo(1 / 9, 12);
    expect(within(frequencies(new Sampler(p), ids, logits, N), want)).toEqual([]);
  });

  it('top-p mass is measured over the top-k set, not over the min-p survivors', () => {
    // probabilities 0.4, 0.3, 0.2, 0.05, 0.05. min-p 0.3 keeps p >= 0.12: {0.4, 0.3, 0.2}. top-p 0.75 over the
    // whole set: cum 0.4, 0.7, 0.9 -> {0.4, 0.3, 0.2}. Renormalised to the min-p survivors first (0.444, 0.778) it
    // would wrongly stop at two. topK 0 exercises the path that filters by min-p before sorting.
    const ids = [0, 1, 2, 3, 4];
    const logits = logOf([0.05, 0.2, 0.4, 0.05, 0.3]);
    const p = params({ topP: 0.75, minP: 0.3, seed: 7 });
    const want = oracle(ids, logits, p);
    expect(support(want)).toEqual([1, 2, 4]);
    const freq = frequencies(new Sampler(p), ids, logits, N);
    expect(within(freq, want)).toEqual([]);
    expect(freq.get(1)).toBeGreaterThan(0.15); // 0.2 / 0.9 = 0.222
    // with top-p the shorter one (0.6 -> {0.4, 0.3}), top-p decides
    const p2 = params({ topP: 0.6, minP: 0.3, seed: 8 });
    expect(support(oracle(ids, logits, p2))).toEqual([2, 4]);
    expect(within(frequencies(new Sampler(p2), ids, logits, N), oracle(ids, logits, p2))).toEqual([]);
  });

  it('the default chain (top-k, top-p, min-p, temperature) on a larger table', () => {
    const ids = [3, 14, 15, 92, 65, 35, 89, 79];
    const logits = [2.2, 1.9, 1.0, 0.4, -0.5, 2.5, -3, 0.9];
    const p = params({ temperature: 0.8, topK: 6, topP: 0.9, minP: 0.21, seed: 9 });
    const want = oracle(ids, logits, p);
    // By hand: top-6 logits 2.5, 2.2, 1.9, 1.0, 0.9, 0.4 -> probabilities .352 .261 .193 .079 .071 .043;
    // cumulative .352 .614 .807 .886 .957 -> top-p 0.9 keeps five (logit 0.4 out, top-k already dropped -0.5, -3);
    // min-p 0.21 needs p >= 0.21 * .352 = .074: .079 stays, .071 (logit 0.9, id 79) goes. Each filter removes one.
    expect(support(want)).toEqual([3, 14, 15, 35]);
    expect(within(frequencies(new Sampler(p), ids, logits, N), want)).toEqual([]);
  });

  it('never draws a -Infinity candidate; all -Infinity falls back to the lowest id', () => {
    const s = new Sampler(params({ seed: 10 }));
    const freq = frequencies(s, [1, 2, 3], [0, Number.NEGATIVE_INFINITY, 0], 2000);
    expect(freq.get(2)).toBeUndefined();
    expect(s.pick([6, 4], [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY])).toBe(4);
  });
});

describe('Sampler.pick: determinism and the GPU contract', () => {
  const uniformIds = Array.from({ length: 16 }, (_, i) => 100 + i);
  const uniformLogits = new Array<number>(16).fill(0);
  const run = (seed: number, ids = uniformIds, logits = uniformLogits, n = 200): number[] => {
    const s = new Sampler(params({ seed }));
    return Array.from({ length: n }, () => s.pick(ids, logits));
  };

  it('same seed -> same sequence; different seed -> different sequence', () => {
    const a = run(5);
    expect(run(5)).toEqual(a);
    expect(new Set(a).size).toBeGreaterThan(8); // it really samples
    // two independent 200-pick sequences over 16 equal tokens agree everywhere with probability 16^-200
    expect(run(6)).not.toEqual(a);
    expect(run(0)).not.toEqual(a);
  });

  it('the order of the candidates does not change the picks', () => {
    const ids = [3, 14, 15, 92, 65, 35];
    const logits = [0.2, 1.9, 1.0, 0.4, -0.5, 1.9];
    const perm = [5, 4, 1, 0, 3, 2]; // puts id 35 before id 14, its tie at 1.9: ties must rank by id, not position
    const a = run(11, ids, logits, 300);
    const b = run(11, perm.map((i) => ids[i]), perm.map((i) => logits[i]), 300);
    expect(b).toEqual(a);
  });

  it('k penalised candidates from a GPU-style top-k give the same picks as the whole penalised vocabulary', () => {
    // A 2,000-token vocabulary with peaked logits; the CPU reference passes all of it (topK is applied by pick),
    // the engine path passes only the k best after the penalty. Same seed -> identical sequences.
    const vocab = 2000;
    const rng = new Rng(77);
    const logits = new Float32Array(vocab);
    for (let i = 0; i < vocab; i++) logits[i] = (rng.nextFloat() - 0.5) * 12;
    const p = params({ temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1.1, repeatLastN: 64, seed: 3 });
    const history = Array.from({ length: 100 }, () => rng.nextU32() % vocab);
    applyPenaltyInPlace(logits, penalizedIds(history, p), p.repeatPenalty);

    const allIds = Array.from({ length: vocab }, (_, i) => i);
    const k = candidateCount(p, vocab);
    expect(k).toBe(40);
    const top = allIds.slice().sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
    const topIds = Int32Array.from(top.reverse()); // any order
    const topLogits = Float32Array.from(top, (i) => logits[i]);

    const cpu = new Sampler(p);
    const gpu = new Sampler(p);
    const a = Array.from({ length: 300 }, () => cpu.pick(allIds, logits));
    const b = Array.from({ length: 300 }, () => gpu.pick(topIds, topLogits));
    expect(b).toEqual(a);
    expect(new Set(a).size).toBeGreaterThan(1);
  });
});
