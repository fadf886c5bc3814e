// Helpers for comparing our engine with llama.cpp: every position's logits from one prefill of a token sequence,
// log-softmax, and the largest log-probability difference over a step's top tokens.
// Not here: running llama.cpp (llama-ref.ts) or building fixtures (llama-fixture.ts).

import { storageBuffer, submit } from '../../src/gpu/device';
import type { LocalModel } from '../../src/engine/local-model';

/**
 * Logits of every position of `ids` ([n, vocab] rows; row t predicts token t+1), from one prefill through the Head and
 * every Stage (the tiled prefill kernels when n > 4). `ids.length` must be at most the model's maxBatch.
 */
export async function prefillLogits(model: LocalModel, ids: readonly number[]): Promise<Float32Array[]> {
  const { dim, vocab } = model.config;
  const n = ids.length;
  const sessions = model.openSessions(n);
  const X = storageBuffer(model.dev, 'parity hidden', n * dim * 4); // X: [n, dim]
  try {
    const enc = model.dev.device.createCommandEncoder({ label: 'parity prefill' });
    model.head.encodeEmbed(enc, X, ids);
    model.stages.forEach((st, i) => st.encode(enc, sessions[i], X, n));
    submit(model.dev, enc);
    const all = await model.head.logitsAll(X, n); // [n, vocab]
    return Array.from({ length: n }, (_, t) => all.slice(t * vocab, (t + 1) * vocab));
  } finally {
    sessions.forEach((s, i) => model.stages[i].closeSession(s));
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

/** Largest |ours - theirs| over every token where the reference's probability is a finite log (did not underflow). */
export function maxFiniteDiff(ours: ArrayLike<number>, theirs: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < theirs.length; i++) if (Number.isFinite(theirs[i])) m = Math.max(m, Math.abs(ours[i] - theirs[i]));
  return m;
}
