// The CPU reference forward pass: plain f32 TypeScript over dequantized weights, written to be read, not to be fast.
// It is the oracle the GPU kernels and the Stage/Head passes are tested against. It can run any layer span, the Head,
// or the whole model, with a KV cache per sequence.

import type { ModelConfig, WeightRole } from './config';
import { layerWeights, partTensors, type Part } from './config';
import { readBytes, type GgufFile } from './gguf';
import { blockFormat, byteSize, dequantize } from './quant';
import { ropeTable } from './rope';

export type Weights = Map<string, Float32Array>;

/** Dequantize every tensor a part needs. */
export async function loadReferenceWeights(file: GgufFile, cfg: ModelConfig, part: Part): Promise<Weights> {
  const w: Weights = new Map();
  for (const [name, t] of partTensors(file, cfg, part)) {
    const f = blockFormat(t.type, name);
    const bytes = await readBytes(file, t.offset, byteSize(f, t.nElems));
    w.set(name, dequantize(f, bytes, 0, t.nElems));
  }
  return w;
}

export function rmsNorm(x: Float32Array, w: Float32Array, eps: number, out = new Float32Array(x.length)): Float32Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * inv * w[i];
  return out;
}

/** y[r] = sum_k W[r, k] x[k] for W stored row-major [rows, k]. */
export function matVec(W: Float32Array, x: Float32Array, rows: number, out = new Float32Array(rows)): Float32Array {
  const K = x.length;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const o = r * K;
    for (let k = 0; k < K; k++) s += W[o + k] * x[k];
    out[r] = s;
  }
  return out;
}

export const silu = (x: number): number => x / (1 + Math.exp(-x));

/** Per-layer K and V for positions already seen: k[l][pos * kvDim + j]. */
export class ReferenceCache {
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  constructor(cfg: ModelConfig, readonly maxPos: number) {
    const kvDim = cfg.nKvHeads * cfg.headDim;
    this.k = Array.from({ length: cfg.nLayers }, () => new Float32Array(maxPos * kvDim));
    this.v = Array.from({ length: cfg.nLayers }, () => new Float32Array(maxPos * kvDim));
  }
}

export function referenceEmbed(cfg: ModelConfig, w: Weights, ids: readonly number[]): Float32Array {
  const E = w.get('token_embd.weight') as Float32Array;
  const x = new Float32Array(ids.length * cfg.dim);
  ids.forEach((id, t) => x.set(E.subarray(id * cfg.dim, (id + 1) * cfg.dim), t * cfg.dim));
  return x;
}

/**
 * Run layers [start, end) on hidden states x: [n, dim] for tokens at positions pos0..pos0+n-1. Returns new states.
 */
export function referenceLayers(
  cfg: ModelConfig, w: Weights, cache: ReferenceCache, x: Float32Array, pos0: number, start: number, end: number,
): Float32Array {
  const { dim, nHeads, nKvHeads, headDim: hd, ffn } = cfg;
  const n = x.length / dim;
  const kvDim = nKvHeads * hd;
  const group = nHeads / nKvHeads;
  const rope = ropeTable(cfg, pos0 + n, w.get('rope_freqs.weight'));
  const h = x.slice();
  for (let l = start; l < end; l++) {
    const slices = layerWeights(cfg, l);
    // a logical weight: its rows of the stored (possibly fused) tensor
    const W = (role: WeightRole) => {
      const sl = slices[role];
      const t = w.get(sl.name) as Float32Array;
      const K = role === 'o' ? nHeads * hd : role === 'down' ? ffn : dim; // row length
      return t.subarray(sl.rowStart * K, (sl.rowStart + sl.rows) * K);
    };
    const addBias = (v: Float32Array, role: WeightRole) => {
      const b = slices[role].bias;
      if (b) {
        const bv = w.get(b) as Float32Array;
        for (let i = 0; i < v.length; i++) v[i] += bv[i];
      }
    };
    const norm = (t: string) => w.get(`blk.${l}.${t}.weight`) as Float32Array;
    for (let t = 0; t < n; t++) {
      const pos = pos0 + t;
      const xt = h.subarray(t * dim, (t + 1) * dim);
      // attention: norm, q/k/v projections, rotate q and k, append k/v to the cache
      const xn = rmsNorm(xt, norm('attn_norm'), cfg.normEps);
      const q = matVec(W('q'), xn, nHeads * hd); // q: [nHeads * hd]
      const k = matVec(W('k'), xn, kvDim); // k: [nKvHeads * hd]
      const v = matVec(W('v'), xn, kvDim);
      addBias(q, 'q');
      addBias(k, 'k');
      addBias(v, 'v');
      applyRope(q, nHeads, hd, cfg.ropeDim, rope, pos, cfg.ropeNeox);
      applyRope(k, nKvHeads, hd, cfg.ropeDim, rope, pos, cfg.ropeNeox);
      cache.k[l].set(k, pos * kvDim);
      cache.v[l].set(v, pos * kvDim);
      // each head attends over positions 0..pos of its KV head
      const att = new Float32Array(nHeads * hd); // att: [nHeads * hd]
      const scores = new Float64Array(pos + 1);
      for (let hh = 0; hh < nHeads; hh++) {
        const kvh = Math.floor(hh / group);
        let max = -Infinity;
        for (let p = 0; p <= pos; p++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[hh * hd + d] * cache.k[l][p * kvDim + kvh * hd + d];
          scores[p] = s / Math.sqrt(hd);
          max = Math.max(max, scores[p]);
        }
        let sum = 0;
        for (let p = 0; p <= pos; p++) sum += scores[p] = Math.exp(scores[p] - max);
        for (let d = 0; d < hd; d++) {
          let a = 0;
          for (let p = 0; p <= pos; p++) a += scores[p] * cache.v[l][p * kvDim + kvh * hd + d];
          att[hh * hd + d] = a / sum;
        }
      }
      const o = matVec(W('o'), att, dim);
      for (let i = 0; i < dim; i++) xt[i] += o[i];
      // feed-forward: norm, SwiGLU, down projection, residual
      const xn2 = rmsNorm(xt, norm('ffn_norm'), cfg.normEps);
      const g = matVec(W('gate'), xn2, ffn); // g: [ffn]
      const u = matVec(W('up'), xn2, ffn);
      for (let i = 0; i < ffn; i++) g[i] = silu(g[i]) * u[i];
      const down = matVec(W('down'), g, dim);
      for (let i = 0; i < dim; i++) xt[i] += down[i];
    }
  }
  return h;
}

/**
 * Rotate each head's first ropeDim dimensions: pairs (2i, 2i+1) (llama), or (i, i + ropeDim/2) with `neox`
 * (qwen2, phi3), by the angle of pair i at `pos`.
 */
export function applyRope(
  v: Float32Array, heads: number, hd: number, ropeDim: number, table: Float32Array, pos: number, neox = false,
): void {
  const half = ropeDim / 2;
  for (let hh = 0; hh < heads; hh++) {
    for (let i = 0; i < half; i++) {
      const c = table[pos * ropeDim + 2 * i];
      const s = table[pos * ropeDim + 2 * i + 1];
      const ia = hh * hd + (neox ? i : 2 * i);
      const ib = ia + (neox ? half : 1);
      const a = v[ia];
      const b = v[ib];
      v[ia] = a * c - b * s;
      v[ib] = a * s + b * c;
    }
  }
}

/** Final norm and output head for every row of x: [n, dim] -> logits [n, vocab]. */
export function referenceLogits(cfg: ModelConfig, w: Weights, x: Float32Array): Float32Array {
  const n = x.length / cfg.dim;
  const head = (w.get('output.weight') ?? w.get('token_embd.weight')) as Float32Array;
  const out = new Float32Array(n * cfg.vocab);
  for (let t = 0; t < n; t++) {
    const xn = rmsNorm(x.subarray(t * cfg.dim, (t + 1) * cfg.dim), w.get('output_norm.weight') as Float32Array, cfg.normEps);
    matVec(head, xn, cfg.vocab, out.subarray(t * cfg.vocab, (t + 1) * cfg.vocab));
  }
  return out;
}

/** Greedy decoding with the reference model: the oracle for end-to-end id tests. */
export function referenceGreedy(cfg: ModelConfig, w: Weights, prompt: readonly number[], steps: number): number[] {
  const cache = new ReferenceCache(cfg, prompt.length + steps);
  let x = referenceLayers(cfg, w, cache, referenceEmbed(cfg, w, prompt), 0, 0, cfg.nLayers);
  const out: number[] = [];
  let pos = prompt.length;
  for (let s = 0; s < steps; s++) {
    const logits = referenceLogits(cfg, w, x.subarray(x.length - cfg.dim));
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    out.push(best);
    x = referenceLayers(cfg, w, cache, referenceEmbed(cfg, w, [best]), pos++, 0, cfg.nLayers);
  }
  return out;
}
