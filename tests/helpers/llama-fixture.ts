// Synthetic Llama models for tests: small GGUF files (architecture `llama`, an SPM-style vocabulary llama.cpp
// accepts) with seeded weights in any type Flock runs (one type for every matrix, a type per tensor role, or the type
// llama.cpp's quantizer gives each tensor of a Q4_K_M, Q2_K, IQ4_XS… file: llama-mix.ts), and the tables of fixtures
// the engine tests run.
// Not here: writing bytes (gguf-writer.ts), quantizing (quantize.ts), running llama.cpp (llama-ref.ts).
//
// Why the weights are not all plain noise: llama.cpp rounds activations to 8 bits inside quantized matrix products
// (and to f16 in F16 ones, and keeps its KV cache in f16), so its logits differ from exact f32 arithmetic by up to
// ~0.2 on small random models. Greedy ids only compare fairly when no step is a near-tie, and the top-2 gap of ~300
// Gaussian logits is small (about 0.3 standard deviations), so pure noise would need logits far wider than float32
// probabilities can hold. Instead layer 0's feed-forward block holds a small associative memory ("after token a
// comes token b"): a few FFN units whose gate/up rows match token a's embedding and whose down column writes token
// b's output direction into the residual stream. Greedy decoding from BOS then walks a cycle of distinct tokens
// with a clear winner at every step (top-2 gaps of 3–10 logits), while every other weight (attention, the other
// FFN units, later layers, the output head's noise) is seeded noise at ~1/sqrt(fan_in) that moves every logit: a
// wrong kernel shows in the logits (dropping attention altogether moves them by ~0.6 on average), a badly wrong one
// in the ids. The price: the ids mostly follow the memory, so greedy ids alone prove little — compare logits too.
// Prompts other than [BOS, cycle tokens…] have no such guarantee.

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { blockFormat, GgmlType } from '../../src/model/quant';
import { llamaCppType, MIX_FILE_TYPE, type FallbackEra, type LlamaCppMix } from './llama-mix';
import { writeGguf, type GgufMetadata, type GgufTensor } from './gguf-writer';
import { quantize } from './quantize';

/** The 2-D weights of a Llama by role: the tensor name without `blk.N.` and `.weight`. */
export type LlamaWeightRole =
  | 'token_embd' | 'output' | 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_gate' | 'ffn_up' | 'ffn_down';

export interface LlamaFixtureSpec {
  name: string;
  seed: number;
  /** ggml type id of every 2-D weight matrix, token_embd and output included (unless typeByRole says otherwise); norms are always F32 */
  type: number;
  /** per-role exceptions to `type`, in every layer (e.g. Q4_K_M's Q6_K attn_v, ffn_down and output) */
  typeByRole?: Readonly<Partial<Record<LlamaWeightRole, number>>>;
  /**
   * every 2-D weight in the type llama.cpp's quantizer gives it in a file of this mix (llama-mix.ts: per role and
   * layer, with its fallbacks for rows that are not whole blocks); `type` and `typeByRole` are then only labels
   */
  mix?: { name: LlamaCppMix; era?: FallbackEra };
  /** `general.file_type` (llama_ftype); default: the mix's, or the one for `type` (0 F32, 1 F16, 2 Q4_0, 7 Q8_0, 14 Q4_K_S, 18 Q6_K, 32 BF16) */
  fileType?: number;
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  ffn: number;
  vocab: number;
  ctx: number;
  /** default 1e-5 */
  normEps?: number;
  /** default 10000 */
  ropeBase?: number;
  /** no output.weight: the head reuses token_embd */
  tiedOutput?: boolean;
  /**
   * Per-element RMS of the residual stream (default 1): token embeddings, attn_output and ffn_down are all scaled by
   * it, so the model computes the same thing up to RMSNorm's eps, which is added to mean(x^2). At 1, eps (1e-5 or
   * 1e-6) moves no logit measurably; real models' embeddings sit near 0.01 (mean(x^2) ~1e-4), where eps matters.
   */
  residualRms?: number;
}

/** Token ids fixed by the vocabulary layout below. */
export const FIXTURE_TOKENS = { unk: 0, bos: 1, eos: 2, firstByte: 3, firstPiece: 259 } as const;

/**
 * The fixtures the engine tests run. Each seed was checked with llama.cpp (tests/model/fixtures.test.ts): greedy from
 * BOS for 32 steps, every step's top-1 minus top-2 logit at least GREEDY_MIN_GAP. `minGap` is what llama.cpp measured
 * then (CPU build, one thread); `greedyIds` are its 32 greedy ids from [BOS], recorded so a changed generator or a
 * different llama.cpp shows up as a readable diff, and so GPU tests have a reference without running llama.cpp.
 */
export interface LlamaFixture extends LlamaFixtureSpec {
  minGap: number;
  greedyIds: readonly number[];
}

/** The top-1/top-2 logit gap every greedy step of a fixture must keep: 5x llama.cpp's ~0.2 deviation from f32. */
export const GREEDY_MIN_GAP = 1.0;

// Seeds: the best of 1..8 by llama.cpp's smallest top-2 gap; every seed in 1..12 cleared 3.4 with this generator, so
// the margin over GREEDY_MIN_GAP does not hang on a lucky seed.
export const LLAMA_FIXTURES: readonly LlamaFixture[] = [
  {
    // F32, nothing a multiple of 32: head size 12, ffn 172, vocab 301; plain multi-head attention.
    name: 'llama-f32-h12', seed: 3, type: GgmlType.F32,
    dim: 36, nLayers: 2, nHeads: 3, nKvHeads: 3, ffn: 172, vocab: 301, ctx: 256,
    minGap: 6.96,
    greedyIds: [44, 37, 92, 145, 64, 62, 277, 220, 235, 276, 206, 41, 207, 94, 43, 293, 89, 163, 95, 195, 229, 98,
      131, 198, 287, 33, 155, 150, 234, 108, 253, 16],
  },
  {
    // F16, head size 10 and ffn 150 (not multiples of 4), odd vocab; GQA ratio 2.
    name: 'llama-f16-gqa2-h10', seed: 3, type: GgmlType.F16,
    dim: 60, nLayers: 3, nHeads: 6, nKvHeads: 3, ffn: 150, vocab: 333, ctx: 256,
    minGap: 8.36,
    greedyIds: [215, 302, 238, 263, 137, 28, 312, 170, 315, 86, 203, 145, 3, 276, 113, 275, 8, 16, 230, 172, 181, 74,
      188, 22, 205, 192, 54, 37, 136, 36, 14, 219],
  },
  {
    // Q8_0, GQA ratio 4 (one KV head), head size 16.
    name: 'llama-q8_0-gqa4', seed: 1, type: GgmlType.Q8_0,
    dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 1, ffn: 160, vocab: 400, ctx: 256,
    minGap: 10.14,
    greedyIds: [127, 162, 276, 258, 380, 60, 200, 114, 223, 323, 294, 273, 373, 275, 195, 340, 392, 128, 38, 264, 268, 248,
      304, 303, 101, 9, 150, 15, 234, 131, 54, 381],
  },
  {
    // Q4_0, GQA ratio 2, four layers.
    name: 'llama-q4_0-gqa2', seed: 3, type: GgmlType.Q4_0,
    dim: 64, nLayers: 4, nHeads: 4, nKvHeads: 2, ffn: 192, vocab: 512, ctx: 256,
    minGap: 8.67,
    greedyIds: [195, 208, 173, 334, 268, 261, 307, 394, 228, 257, 298, 44, 92, 502, 292, 96, 354, 440, 447, 90, 194, 406,
      35, 436, 294, 183, 157, 211, 353, 48, 172, 361],
  },
  {
    // Q8_0 with a tied head (no output.weight: logits read token_embd), GQA ratio 2.
    name: 'llama-q8_0-tied', seed: 6, type: GgmlType.Q8_0,
    dim: 96, nLayers: 3, nHeads: 6, nKvHeads: 3, ffn: 256, vocab: 600, ctx: 256, tiedOutput: true,
    minGap: 8.41,
    greedyIds: [265, 49, 190, 412, 537, 560, 293, 183, 431, 88, 78, 89, 427, 74, 351, 439, 552, 8, 32, 536, 358, 341,
      324, 191, 260, 541, 3, 199, 441, 196, 334, 569],
  },
  {
    // Q4_0 at a realistic head size (64), GQA ratio 4, Llama-3-style RMS eps 1e-6 and RoPE base 500000.
    name: 'llama-q4_0-gqa4-h64', seed: 2, type: GgmlType.Q4_0,
    dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 1, ffn: 384, vocab: 420, ctx: 256, normEps: 1e-6, ropeBase: 500000,
    minGap: 12.51,
    greedyIds: [176, 229, 182, 30, 43, 153, 92, 191, 163, 278, 64, 285, 390, 241, 23, 368, 384, 34, 165, 146, 295, 372,
      114, 96, 122, 113, 355, 336, 405, 223, 290, 359],
  },
];

/**
 * Fixtures in the K-quant and BF16 formats, kept apart from LLAMA_FIXTURES so the tests written for that table's
 * types stay as they are; tests/engine/kquant-parity.test.ts guards them the same way (llama.cpp decodes them with
 * clear winners and the recorded ids) and checks our engine against llama.cpp on them. Rows of K-quant matrices are
 * whole 256-element blocks, so dim and ffn are multiples of 256. Seeds: the best of 1..8 by llama.cpp's smallest
 * top-2 gap (CPU build, one thread); every seed in 1..8 cleared 9.3 (BF16: 6.8).
 */
export const KQUANT_FIXTURES: readonly LlamaFixture[] = [
  {
    // Q4_K throughout (Q4_K_S-like), GQA ratio 2, head size 64.
    name: 'llama-q4_k-gqa2', seed: 2, type: GgmlType.Q4_K,
    dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffn: 512, vocab: 400, ctx: 256,
    minGap: 12.31,
    greedyIds: [8, 394, 89, 334, 377, 193, 217, 178, 7, 62, 36, 236, 179, 360, 175, 47, 95, 96, 326, 51, 18, 52, 329, 383,
      67, 49, 260, 151, 134, 38, 310, 285],
  },
  {
    // Q6_K throughout, GQA ratio 4, head size 32.
    name: 'llama-q6_k-gqa4-h32', seed: 4, type: GgmlType.Q6_K,
    dim: 256, nLayers: 2, nHeads: 8, nKvHeads: 2, ffn: 512, vocab: 350, ctx: 256,
    minGap: 12.01,
    greedyIds: [99, 138, 280, 13, 110, 80, 314, 57, 148, 348, 331, 127, 239, 182, 73, 134, 24, 158, 287, 266, 25, 35, 332,
      189, 319, 170, 316, 238, 89, 167, 166, 284],
  },
  {
    // BF16, head size 10 and ffn 150 (not multiples of 4: the kernels' unaligned reads), GQA ratio 2.
    name: 'llama-bf16-gqa2-h10', seed: 4, type: GgmlType.BF16,
    dim: 60, nLayers: 2, nHeads: 6, nKvHeads: 3, ffn: 150, vocab: 333, ctx: 256,
    minGap: 9.32,
    greedyIds: [258, 325, 302, 200, 83, 232, 298, 314, 202, 142, 152, 139, 59, 70, 94, 102, 224, 75, 24, 62, 231, 299, 246,
      68, 287, 48, 56, 330, 141, 329, 251, 209],
  },
  {
    // A Q4_K_M-like mix, as llama.cpp's quantizer lays out a 2-layer model (use_more_bits picks both layers): Q6_K
    // for output, attn_v and ffn_down, Q4_K for the rest, F32 norms; Llama-3-style RMS eps 1e-6 and RoPE base 500000.
    name: 'llama-q4_k_m', seed: 2, type: GgmlType.Q4_K,
    typeByRole: { attn_v: GgmlType.Q6_K, ffn_down: GgmlType.Q6_K, output: GgmlType.Q6_K }, fileType: 15,
    dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffn: 768, vocab: 420, ctx: 256, normEps: 1e-6, ropeBase: 500000,
    minGap: 12.01,
    greedyIds: [176, 229, 182, 30, 43, 153, 92, 191, 163, 278, 64, 285, 390, 241, 23, 368, 384, 34, 165, 146, 295, 372,
      114, 96, 122, 113, 355, 336, 405, 223, 290, 359],
  },
];

/**
 * F32 twins of the fixtures that carry Llama-3-style settings (RMS eps 1e-6, RoPE base 500000): the shapes of
 * llama-q4_0-gqa4-h64, of llama-q4_k_m and of the Llama-3 file arch-fixture.ts makes from llama-q8_0-tied, with every
 * matrix in F32. Against llama.cpp an F32 model differs only by its F16 KV cache (~0.003 in log-probs), so the
 * bound can be 0.01 where the quantized originals need 0.35 — tight enough to see a wrong setting that the GPU-vs-CPU
 * reference check cannot (both read it through the same readConfig). Their residual stream is at a real model's
 * scale (residualRms 0.01: mean(x^2) ~1e-4), where eps 1e-6 against 1e-5 moves the normed activations by ~4%; at
 * scale 1 no eps would show. Seeds and ids: measured as for KQUANT_FIXTURES (llama.cpp CPU, one thread).
 */
export const F32_TWINS: readonly LlamaFixture[] = [
  {
    // llama-q4_0-gqa4-h64's shape in F32: head size 64, GQA ratio 4.
    name: 'llama-f32-gqa4-h64', seed: 2, type: GgmlType.F32,
    dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 1, ffn: 384, vocab: 420, ctx: 256, normEps: 1e-6, ropeBase: 500000,
    residualRms: 0.01,
    minGap: 12.12,
    greedyIds: [176, 229, 182, 30, 43, 153, 92, 191, 163, 278, 64, 285, 390, 241, 23, 368, 384, 34, 165, 146, 295, 372,
      114, 96, 122, 113, 355, 336, 405, 223, 290, 359],
  },
  {
    // llama-q4_k_m's shape in F32: GQA ratio 2, ffn 768.
    name: 'llama-f32-gqa2-h64-ffn768', seed: 2, type: GgmlType.F32,
    dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffn: 768, vocab: 420, ctx: 256, normEps: 1e-6, ropeBase: 500000,
    residualRms: 0.01,
    minGap: 11.80,
    greedyIds: [176, 229, 182, 30, 43, 153, 92, 191, 163, 278, 64, 285, 390, 241, 23, 368, 384, 34, 165, 146, 295, 372,
      114, 96, 122, 113, 355, 336, 405, 223, 290, 359],
  },
  {
    // The base of the Llama-3 twin (arch-fixture.ts variant llama3): llama-q8_0-tied's shape in F32, tied head.
    name: 'llama-f32-tied-h16', seed: 6, type: GgmlType.F32,
    dim: 96, nLayers: 3, nHeads: 6, nKvHeads: 3, ffn: 256, vocab: 600, ctx: 256, tiedOutput: true, normEps: 1e-6,
    ropeBase: 500000, residualRms: 0.01,
    minGap: 8.15,
    greedyIds: [265, 49, 190, 412, 537, 560, 293, 183, 431, 88, 78, 89, 427, 74, 351, 439, 552, 8, 32, 536, 358, 341,
      324, 191, 260, 541, 3, 199, 441, 196, 334, 569],
  },
];

// ---------------------------------------------------------------------------------------------------------------
// Shape constants of the generator. Logits are about LOGIT_SCALE * cos(final hidden state, head row): ~20 for the
// winner and within ±15 for the rest, so log-softmax stays far from float32 underflow (e^-87).
const LOGIT_SCALE = 24;
/** Per-element RMS of token embeddings; the residual stream is scale-free under RMSNorm, so 1 is as good as any. */
const EMBED_RMS = 1;
/** Gate/up gain of a memory unit: it sees cos(x, e_a) * MEMORY_SHARPNESS, ~4 when matched and ~±0.5 otherwise. */
const MEMORY_SHARPNESS = 4;
/**
 * Memory output (per-element RMS) relative to the embedding. At 3 the winner's logit beats the runner-up by 3–10 on
 * every seed tried (2.5: 1–8; 4: larger gaps but the layers' noise matters less).
 */
const MEMORY_GAIN = 3;
/**
 * Gain of layer 0's attn_output. At the first positions attention averages over one or two values, so its output is
 * a full-size random vector in the memory's input; at gain 1 it spoiled the lookup (top-2 gaps under 0.5 at steps 0–3
 * for half the seeds tried). Later layers keep gain 1: removing all attention still moves logits by ~0.6 on average.
 */
const LAYER0_ATTN_OUT_GAIN = 0.5;
/** How far an untied head row strays from its token's embedding direction (relative norm of the added noise). */
const HEAD_NOISE = 0.5;
/** Norm weights are 1 + NORM_NOISE * N(0, 1). */
const NORM_NOISE = 0.1;
/** Memory units at most (one for BOS, the rest a cycle of up to 47 distinct tokens: more than tests decode). */
const MAX_MEMORY = 48;

/**
 * A small seeded PRNG (a 32-bit counter hashed with xor-shift-multiply rounds). Only integer ops, +, / and sqrt touch
 * the numbers (no log/sin/cos, whose last bits may differ between JS engines), so fixtures are bit-identical in Node
 * and in any browser.
 */
export class FixtureRng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 2^32). */
  nextU32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0; // golden-ratio increment: every state visited once per 2^32
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform in (0, 1). */
  uniform(): number {
    return (this.nextU32() + 0.5) / 4294967296;
  }

  /**
   * Approximately standard normal: the sum of 12 uniforms minus 6 (mean 0, variance 12 * 1/12 = 1, tails cut at ±6,
   * which weights do not miss). The sum is exact in doubles: each term is a multiple of 2^-33 below 1.
   */
  normal(): number {
    let s = 0;
    for (let i = 0; i < 12; i++) s += this.uniform();
    return s - 6;
  }

  /** Integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}

/** Token strings: specials, the 256 byte tokens, then plain pieces ("▁", letters, "▁a", pairs…) up to `vocab`. */
function vocabulary(vocab: number): { tokens: string[]; scores: number[]; types: number[] } {
  // llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte.
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  const pieces = ['▁', ...letters, ...letters.map((c) => `▁${c}`)];
  for (const a of letters) for (const b of letters) pieces.push(a + b, `▁${a}${b}`);
  const need = vocab - tokens.length;
  // three-letter pieces only for large vocabularies (the benchmark's), so smaller fixtures keep their exact bytes
  if (need > pieces.length) for (const a of letters) for (const b of letters) for (const c of letters) pieces.push(a + b + c, `▁${a}${b}${c}`);
  if (need > pieces.length) {
    throw new Error(`llama fixture: vocab ${vocab} is larger than the ${tokens.length + pieces.length} tokens we make`);
  }
  for (let i = 0; i < need; i++) {
    tokens.push(pieces[i]);
    types.push(1);
  }
  // SPM merges prefer higher scores: shorter (earlier) pieces score higher. Specials and bytes score 0.
  const scores = tokens.map((_, i) => (i < FIXTURE_TOKENS.firstPiece ? 0 : -(i - FIXTURE_TOKENS.firstPiece)));
  return { tokens, scores, types };
}

function checkSpec(s: LlamaFixtureSpec): void {
  const ints: Array<keyof LlamaFixtureSpec> = ['dim', 'nLayers', 'nHeads', 'nKvHeads', 'ffn', 'vocab', 'ctx'];
  for (const k of ints) {
    const v = s[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
      throw new Error(`llama fixture ${s.name}: ${k} must be a positive integer`);
    }
  }
  if (!/^[A-Za-z0-9._-]+$/.test(s.name)) throw new Error(`llama fixture name ${s.name} must be a plain file name`);
  if (s.dim % s.nHeads !== 0) {
    throw new Error(`llama fixture ${s.name}: dim ${s.dim} is not a multiple of nHeads ${s.nHeads}`);
  }
  if (s.nHeads % s.nKvHeads !== 0) {
    throw new Error(`llama fixture ${s.name}: nHeads ${s.nHeads} is not a multiple of nKvHeads ${s.nKvHeads}`);
  }
  if ((s.dim / s.nHeads) % 2 !== 0) throw new Error(`llama fixture ${s.name}: RoPE needs an even head size`);
  // A few plain pieces beyond the 259 specials and bytes, and room for the memory cycle.
  if (s.vocab < FIXTURE_TOKENS.firstPiece + 8) throw new Error(`llama fixture ${s.name}: vocab must be at least 267`);
  if (s.ffn < 8) throw new Error(`llama fixture ${s.name}: ffn must be at least 8 (memory units)`);
  // Every matrix row must be whole blocks: rows are dim long (q/k/v/gate/up/embd/output, and attn_output's
  // nHeads * headDim = dim) or ffn long (down).
  for (let l = 0; l < s.nLayers; l++) {
    for (const role of LLAMA_WEIGHT_ROLES) {
      const type = weightType(s, role, l);
      const block = blockFormat(type, `${s.name} ${role}`).blockElems;
      const rowLength = role === 'ffn_down' ? s.ffn : s.dim;
      if (rowLength % block !== 0) {
        throw new Error(`llama fixture ${s.name}: ${role} in ggml type ${type} has rows of ${rowLength}, not whole ` +
          `${block}-element blocks (quantized types need dim and ffn multiples of their block)`);
      }
    }
  }
}

const LLAMA_WEIGHT_ROLES: readonly LlamaWeightRole[] =
  ['token_embd', 'output', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];

/** The ggml type a fixture stores a 2-D weight of this role (in layer `layer`) in. */
export function weightType(s: LlamaFixtureSpec, role: LlamaWeightRole, layer = 0): number {
  if (s.mix) return llamaCppType(s.mix.name, { ...s, tiedOutput: s.tiedOutput ?? false }, role, layer, s.mix.era);
  return s.typeByRole?.[role] ?? s.type;
}

/**
 * ggml file_type for `general.file_type`: 0 all F32, 1 mostly F16, 2 mostly Q4_0, 7 mostly Q8_0, 14 mostly Q4_K
 * (Q4_K_S), 18 mostly Q6_K, 32 mostly BF16.
 */
function fileType(type: number): number {
  switch (type) {
    case GgmlType.F32: return 0;
    case GgmlType.F16: return 1;
    case GgmlType.Q4_0: return 2;
    case GgmlType.Q8_0: return 7;
    case GgmlType.Q4_K: return 14;
    case GgmlType.Q6_K: return 18;
    case GgmlType.BF16: return 32;
    default: throw new Error(`no file_type for ggml type ${type}`);
  }
}

/** Build a fixture's GGUF bytes. Deterministic: the same spec gives the same bytes. */
export function buildLlamaFixture(spec: LlamaFixtureSpec): Uint8Array {
  checkSpec(spec);
  const { dim, nLayers, nHeads, nKvHeads, ffn, vocab, ctx } = spec;
  const headDim = dim / nHeads;
  const kvDim = nKvHeads * headDim;
  const rng = new FixtureRng(spec.seed);

  // Seeded tensors. `matrix(rows, cols)` holds rows of length cols (ggml dims [cols, rows]), entries N(0, gain^2 / cols).
  const matrix = (rows: number, cols: number, gain = 1) => {
    const m = new Float32Array(rows * cols);
    const s = gain / Math.sqrt(cols);
    for (let i = 0; i < m.length; i++) m[i] = s * rng.normal();
    return m;
  };
  const normWeights = (n: number, mean = 1) => {
    const w = new Float32Array(n);
    for (let i = 0; i < n; i++) w[i] = mean * (1 + NORM_NOISE * rng.normal());
    return w;
  };
  const unit = (v: Float32Array | number[]) => {
    let ss = 0;
    for (let i = 0; i < v.length; i++) ss += v[i] * v[i];
    const inv = 1 / Math.sqrt(ss);
    return Array.from(v, (x) => x * inv);
  };

  // token_embd: [vocab rows, dim], per-element RMS EMBED_RMS * residualRms.
  const rms = spec.residualRms ?? 1;
  const embd = matrix(vocab, dim, EMBED_RMS * rms * Math.sqrt(dim));
  const dirs: number[][] = []; // unit embedding direction per token
  for (let t = 0; t < vocab; t++) dirs.push(unit(embd.subarray(t * dim, (t + 1) * dim)));

  // The memory's greedy cycle: BOS -> c0 -> c1 -> … -> c(K-2) -> c0, distinct tokens drawn from bytes and pieces
  // (never unk, BOS or EOS, so llama.cpp never stops early).
  const nMemory = Math.min(MAX_MEMORY, Math.floor(ffn / 2));
  const pool: number[] = [];
  for (let t = FIXTURE_TOKENS.firstByte; t < vocab; t++) pool.push(t);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  const cycle = pool.slice(0, nMemory - 1);
  const memory: Array<[from: number, to: number]> = [[FIXTURE_TOKENS.bos, cycle[0]]];
  for (let i = 0; i < cycle.length; i++) memory.push([cycle[i], cycle[(i + 1) % cycle.length]]);

  // Output head rows (the direction each token's logit reads): tied, the embeddings themselves; untied, each token's
  // embedding direction plus noise, scaled so that logit ≈ LOGIT_SCALE * cos(normed hidden, row).
  let output: Float32Array | null = null;
  if (!spec.tiedOutput) {
    output = new Float32Array(vocab * dim);
    for (let t = 0; t < vocab; t++) {
      const noise = unit(Array.from({ length: dim }, () => rng.normal()));
      const row = unit(dirs[t].map((x, i) => x + HEAD_NOISE * noise[i]));
      for (let i = 0; i < dim; i++) output[t * dim + i] = (LOGIT_SCALE / Math.sqrt(dim)) * row[i];
    }
  }
  // The head reads the final RMSNorm's output, |n| ≈ sqrt(dim). A tied head's rows have norm EMBED_RMS*sqrt(dim),
  // so its output norm weights carry the scale instead: mean LOGIT_SCALE / (EMBED_RMS * dim).
  const outputNormMean = spec.tiedOutput ? LOGIT_SCALE / (EMBED_RMS * rms * dim) : 1;

  const tensors: GgufTensor[] = [];
  const add = (name: string, dims: number[], type: number, values: Float32Array) =>
    tensors.push({ name, dims, type, data: quantize(type, values) });
  const wt = (role: LlamaWeightRole, layer = 0) => weightType(spec, role, layer);

  add('token_embd.weight', [dim, vocab], wt('token_embd'), embd);
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}`;
    add(`${p}.attn_norm.weight`, [dim], GgmlType.F32, normWeights(dim));
    add(`${p}.attn_q.weight`, [dim, nHeads * headDim], wt('attn_q', l), matrix(nHeads * headDim, dim));
    add(`${p}.attn_k.weight`, [dim, kvDim], wt('attn_k', l), matrix(kvDim, dim));
    add(`${p}.attn_v.weight`, [dim, kvDim], wt('attn_v', l), matrix(kvDim, dim));
    const oGain = (l === 0 ? LAYER0_ATTN_OUT_GAIN : 1) * rms;
    add(`${p}.attn_output.weight`, [nHeads * headDim, dim], wt('attn_output', l), matrix(dim, nHeads * headDim, oGain));
    add(`${p}.ffn_norm.weight`, [dim], GgmlType.F32, normWeights(dim));
    const gate = matrix(ffn, dim);
    const up = matrix(ffn, dim);
    const down = matrix(dim, ffn, rms); // [dim rows, ffn]: column u is what unit u writes
    if (l === 0) {
      // Memory unit u for (a -> b): gate and up rows = (SHARPNESS / sqrt(dim)) * ê_a, so both read
      // SHARPNESS * cos(x, e_a) from the normed input x (|x| ≈ sqrt(dim)); silu(g) * u is then ~SHARPNESS^2 when
      // x is token a and small otherwise. Down column = ê_b * MEMORY_GAIN * EMBED_RMS * sqrt(dim) / SHARPNESS^2.
      const inGain = MEMORY_SHARPNESS / Math.sqrt(dim);
      const outGain = (MEMORY_GAIN * EMBED_RMS * rms * Math.sqrt(dim)) / MEMORY_SHARPNESS ** 2;
      memory.forEach(([a, b], u) => {
        const into = spec.tiedOutput ? dirs[b] : unit(output!.subarray(b * dim, (b + 1) * dim));
        for (let i = 0; i < dim; i++) {
          gate[u * dim + i] = inGain * dirs[a][i];
          up[u * dim + i] = inGain * dirs[a][i];
          down[i * ffn + u] = outGain * into[i];
        }
      });
    }
    add(`${p}.ffn_gate.weight`, [dim, ffn], wt('ffn_gate', l), gate);
    add(`${p}.ffn_up.weight`, [dim, ffn], wt('ffn_up', l), up);
    add(`${p}.ffn_down.weight`, [ffn, dim], wt('ffn_down', l), down);
  }
  add('output_norm.weight', [dim], GgmlType.F32, normWeights(dim, outputNormMean));
  if (output) add('output.weight', [dim, vocab], wt('output'), output);

  const { tokens, scores, types } = vocabulary(vocab);
  const u32 = (value: number) => ({ type: 'u32', value }) as const;
  const f32 = (value: number) => ({ type: 'f32', value }) as const;
  const metadata: GgufMetadata = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: spec.name }],
    ['general.alignment', u32(32)],
    ['general.file_type', u32(spec.fileType ?? (spec.mix ? MIX_FILE_TYPE[spec.mix.name] : fileType(spec.type)))],
    ['llama.vocab_size', u32(vocab)],
    ['llama.context_length', u32(ctx)],
    ['llama.embedding_length', u32(dim)],
    ['llama.block_count', u32(nLayers)],
    ['llama.feed_forward_length', u32(ffn)],
    ['llama.attention.head_count', u32(nHeads)],
    ['llama.attention.head_count_kv', u32(nKvHeads)],
    ['llama.attention.layer_norm_rms_epsilon', f32(spec.normEps ?? 1e-5)],
    ['llama.rope.freq_base', f32(spec.ropeBase ?? 10000)],
    ['llama.rope.dimension_count', u32(headDim)],
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: scores }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types }],
    ['tokenizer.ggml.bos_token_id', u32(FIXTURE_TOKENS.bos)],
    ['tokenizer.ggml.eos_token_id', u32(FIXTURE_TOKENS.eos)],
    ['tokenizer.ggml.unknown_token_id', u32(FIXTURE_TOKENS.unk)],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
  return writeGguf({ metadata, tensors });
}

/** Default folder for fixture files, shared by test processes. */
export function fixtureDir(): string {
  return path.join(os.tmpdir(), 'flock-fixtures');
}

/**
 * Write a fixture to `<dir>/<name>.gguf` and return its path. An existing file is kept when its bytes are the ones
 * this generator makes now (building is a few milliseconds; comparing guards against a stale file from an older
 * generator). Writes go to a temporary name and are renamed into place, so parallel test processes never read half
 * a file.
 */
export async function writeLlamaFixture(spec: LlamaFixtureSpec, dir = fixtureDir()): Promise<string> {
  const bytes = buildLlamaFixture(spec);
  const file = path.join(dir, `${spec.name}.gguf`);
  try {
    const old = await readFile(file);
    if (old.length === bytes.length && Buffer.compare(old, bytes) === 0) return file;
  } catch {
    // not there yet
  }
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
  return file;
}
