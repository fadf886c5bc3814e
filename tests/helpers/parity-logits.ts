// Helpers for comparing our engine with llama.cpp: our logits at every step of a teacher-forced decode, the exact-f32
// CPU reference's logits for the same tokens, log-softmax, and the log-probability differences we put bounds on.
// Not here: running llama.cpp (llama-ref.ts) or building fixtures (llama-fixture.ts).

import { expect } from 'vitest';
import { storageBuffer, submit } from '../../src/gpu/device';
import { generateAll, type LocalModel } from '../../src/engine/local-model';
import {
  loadReferenceWeights, ReferenceCache, referenceEmbed, referenceLayers, referenceLogits,
} from '../../src/model/reference';

/**
 * Our logits at every step of a teacher-forced decode, the way llama.cpp evaluates in llama-ref.ts: one submission
 * with all of `input` (prefill; the tiled kernels when it is longer than 4 tokens), then one submission per token of
 * `forced`. Each submission ends in the Head's full-vocabulary select (what `generate` runs with topK 0), so row 0
 * predicts the token after `input` and row t (t >= 1) the token after forced[t - 1]. Returns forced.length + 1 rows.
 */
export async function decodeLogits(model: LocalModel, input: readonly number[], forced: readonly number[]): Promise<Float32Array[]> {
  const { dev, config, head, stages } = model;
  if (input.length < 1 || input.length > model.maxBatch) throw new Error(`decodeLogits: input of 1..${model.maxBatch} tokens`);
  const sessions = model.openSessions(input.length + forced.length);
  const X = storageBuffer(dev, 'parity hidden', model.maxBatch * config.dim * 4); // X: [maxBatch, dim]
  const rows: Float32Array[] = [];
  try {
    for (const ids of [input, ...forced.map((id) => [id])]) {
      const enc = dev.device.createCommandEncoder({ label: 'parity step' });
      head.encodeEmbed(enc, X, ids);
      stages.forEach((st, i) => st.encode(enc, sessions[i], X, ids.length));
      const read = head.encodeSelect(enc, X, ids.length - 1, 0, [], 1); // k = 0: every logit, in id order
      submit(dev, enc);
      const c = await read();
      if (c.logits.length !== config.vocab || c.ids[config.vocab - 1] !== config.vocab - 1) {
        throw new Error('decodeLogits: the Head returned a partial or reordered vocabulary');
      }
      rows.push(Float32Array.from(c.logits));
    }
    return rows;
  } finally {
    sessions.forEach((s, i) => stages[i].closeSession(s));
    X.destroy();
  }
}

/** log-softmax in float64: logit - logsumexp(logits). */
export function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(logits, (x) => x - lse);
}

/** Indices of the `k` largest values, largest first. */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: values.length }, (_, i) => i)
    .sort((a, b) => values[b] - values[a])
    .slice(0, k);
}

/** Largest |ours - theirs| over the reference's top-k tokens (the ones sampling ever picks from). */
export function maxTopKDiff(ours: ArrayLike<number>, theirs: ArrayLike<number>, k: number): number {
  let m = 0;
  for (const i of topIndices(theirs, k)) m = Math.max(m, Math.abs(ours[i] - theirs[i]));
  return m;
}

/** Mean |ours - theirs| over every token where the reference's log-probability is finite. */
export function meanFiniteDiff(ours: ArrayLike<number>, theirs: ArrayLike<number>): number {
  let s = 0;
  let n = 0;
  for (let i = 0; i < theirs.length; i++) {
    if (Number.isFinite(theirs[i])) {
      s += Math.abs(ours[i] - theirs[i]);
      n++;
    }
  }
  return n > 0 ? s / n : 0;
}

/** Largest |ours - theirs| over every token where the reference's probability is a finite log (did not underflow). */
export function maxFiniteDiff(ours: ArrayLike<number>, theirs: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < theirs.length; i++) if (Number.isFinite(theirs[i])) m = Math.max(m, Math.abs(ours[i] - theirs[i]));
  return m;
}

/** The exact-f32 CPU reference's logits for every position of `seq` ([seq.length] rows; row t predicts seq[t+1]). */
export async function referenceSequenceLogits(model: LocalModel, seq: readonly number[]): Promise<Float32Array[]> {
  const cfg = model.config;
  const w = await loadReferenceWeights(model.file, cfg, { start: 0, end: cfg.nLayers, head: true });
  const cache = new ReferenceCache(cfg, seq.length);
  const x = referenceLayers(cfg, w, cache, referenceEmbed(cfg, w, seq), 0, 0, cfg.nLayers); // x: [n, dim]
  const all = referenceLogits(cfg, w, x); // [n, vocab]
  return Array.from({ length: seq.length }, (_, t) => all.slice(t * cfg.vocab, (t + 1) * cfg.vocab));
}

export interface Diffs {
  /** largest |Δ log p| over every token of every step, against llama.cpp */
  max: number;
  /** the same over each step's top 10 tokens */
  top10: number;
  /** largest mean |Δ log p| over one step's tokens */
  mean: number;
  /** largest |Δ log p| against the exact-f32 CPU reference */
  cpuMax: number;
  /** our smallest top-1/top-2 logit gap */
  minGap: number;
}

/**
 * Compare our per-step log-probs (teacher-forced on llama.cpp's ids after `input`) with llama.cpp's and with the CPU
 * reference's. Row t of ours predicts ref.ids[t].
 */
export async function compareLogprobs(
  model: LocalModel, input: readonly number[], ref: { ids: readonly number[]; logprobs: readonly Float32Array[] },
): Promise<Diffs> {
  const steps = ref.ids.length;
  const ours = await decodeLogits(model, input, ref.ids.slice(0, steps - 1));
  const cpu = (await referenceSequenceLogits(model, [...input, ...ref.ids.slice(0, steps - 1)])).slice(input.length - 1);
  const d: Diffs = { max: 0, top10: 0, mean: 0, cpuMax: 0, minGap: Infinity };
  for (let t = 0; t < steps; t++) {
    const lp = logSoftmax(ours[t]);
    const theirs = ref.logprobs[t];
    d.max = Math.max(d.max, maxFiniteDiff(lp, theirs));
    d.top10 = Math.max(d.top10, maxTopKDiff(lp, theirs, 10));
    d.mean = Math.max(d.mean, meanFiniteDiff(lp, theirs));
    d.cpuMax = Math.max(d.cpuMax, maxFiniteDiff(lp, logSoftmax(cpu[t])));
    d.minGap = Math.min(d.minGap, topGap(ours[t]));
  }
  return d;
}

export const showDiffs = (d: Diffs): string =>
  `measured max ${d.max.toFixed(4)}, top-10 ${d.top10.toFixed(4)}, mean ${d.mean.toFixed(4)}, ` +
  `vs CPU reference ${d.cpuMax.toExponential(1)}, smallest top-2 gap ${d.minGap.toFixed(2)}`;

/** Bounds on |Δ log p| against llama.cpp for one weight type. */
export interface Tolerance {
  /** largest |Δ log p| over every token of every step */
  max: number;
  /** largest mean |Δ log p| over one step's tokens */
  mean: number;
}

/** The top-1 minus top-2 value of one step's scores (logits or log-probs: the same gap). */
export function topGap(values: ArrayLike<number>): number {
  let top1 = -Infinity;
  let top2 = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v > top1) [top1, top2] = [v, top1];
    else if (v > top2) top2 = v;
  }
  return top1 - top2;
}

/** The smallest top-1/top-2 gap over the steps, and the step it is at. */
export function smallestGap(steps: readonly ArrayLike<number>[]): { gap: number; at: number } {
  const gaps = steps.map(topGap);
  const gap = Math.min(...gaps);
  return { gap, at: gaps.indexOf(gap) };
}

/**
 * The guard on a fixture's seed, as tests/model/fixtures.test.ts runs it for LLAMA_FIXTURES: llama.cpp's greedy decode
 * from [BOS] has clear winners (every top-1/top-2 gap at least GREEDY_MIN_GAP, near the recorded minGap), no
 * underflowing log-probs, a varied sequence, and the ids recorded in the table.
 */
export function expectClearWinners(
  fx: { name: string; vocab: number; minGap: number; greedyIds: readonly number[] },
  ref: { ids: readonly number[]; logprobs: readonly Float32Array[] },
  minGap: number,
): void {
  const { gap, at } = smallestGap(ref.logprobs);
  const report = `${fx.name}: llama.cpp ids [${ref.ids.join(', ')}]; min gap ${gap.toFixed(2)} at step ${at}`;
  for (const lp of ref.logprobs) {
    expect(lp.length, report).toBe(fx.vocab);
    expect(Math.min(...lp), report).toBeGreaterThan(-80);
  }
  expect(gap, report).toBeGreaterThanOrEqual(minGap);
  expect(new Set(ref.ids).size, `not a varied sequence: ${report}`).toBeGreaterThan(16);
  expect(ref.ids, report).toEqual(fx.greedyIds);
  expect(Math.abs(gap - fx.minGap), report).toBeLessThan(0.5); // two llama.cpp builds may each sit ~0.2 from f32
}

/** Our GPU against the exact-f32 CPU reference: far below any tolerance against llama.cpp (measured ≤ 2.1e-5). */
export const CPU_REFERENCE_MAX = 1e-3;

/**
 * The parity check every llama.cpp fixture runs: our greedy ids after `input` equal llama.cpp's (to `ref.ids.length`
 * steps, ending by length), and every step's log-probs are within `tol` of llama.cpp's and within CPU_REFERENCE_MAX of
 * the CPU reference's. Returns the measured differences for further checks (near-ties, say).
 */
export async function expectLlamaParity(
  model: LocalModel, input: readonly number[], ref: { ids: readonly number[]; logprobs: readonly Float32Array[] }, tol: Tolerance, label: string,
): Promise<Diffs> {
  const ours = await generateAll(model, { inputIds: [...input], maxTokens: ref.ids.length, temperature: 0, ignoreEos: true });
  expect(ours.outputIds).toEqual(ref.ids);
  expect(ours.finishReason).toBe('length');
  const d = await compareLogprobs(model, input, ref);
  if (process.env.FLOCK_PARITY_LOG) console.log(`${label}: ${showDiffs(d)}`);
  expect(d.cpuMax, showDiffs(d)).toBeLessThanOrEqual(CPU_REFERENCE_MAX);
  expect(d.max, showDiffs(d)).toBeLessThanOrEqual(tol.max);
  expect(d.mean, showDiffs(d)).toBeLessThanOrEqual(tol.mean);
  return d;
}
