// Synthetic models in the tensor-type mixes llama.cpp writes (llama-mix.ts) at the catalog's shapes: SmolLM2-135M's
// (llama, dim 576, 9 heads, 3 KV heads, FFN 1536, tied head) and Qwen2.5-0.5B's (qwen2, dim 896, 14 heads, 2 KV
// heads, FFN 4864, separate output head as Qwen's own files have), whose rows of 576 and 896 are not whole 256-element
// blocks, so most of their matrices take llama.cpp's fallbacks (Q5_0, Q5_1, Q8_0, IQ4_NL); and a dim-512 Llama whose
// rows are whole blocks, so Q2_K and Q4_1 appear themselves. Few layers and a small vocabulary keep them quick
// on SwiftShader; the per-layer shapes are the real ones. Built by llama-fixture.ts's generator (peaked logits).
// Not here: the rules of the mixes (llama-mix.ts) or the tests (tests/engine/quant-mix-parity.test.ts).

import { GgmlType } from '../../src/model/quant';
import { writeArchFixture } from './arch-fixture';
import { writeLlamaFixture, type LlamaFixture } from './llama-fixture';
import type { LlamaCppMix } from './llama-mix';

export interface MixFixture extends LlamaFixture {
  arch: 'llama' | 'qwen2';
  mix: { name: LlamaCppMix };
}

/** The catalog's per-layer shapes (layers and vocabulary cut down). */
export const CATALOG_SHAPES = {
  smollm2: { dim: 576, nHeads: 9, nKvHeads: 3, ffn: 1536, tiedOutput: true },
  qwen25: { dim: 896, nHeads: 14, nKvHeads: 2, ffn: 4864, tiedOutput: false },
} as const;

/** The type most weights of a mix start from, the fixture's label. */
const LABEL: Record<LlamaCppMix, number> = {
  Q8_0: GgmlType.Q8_0, Q4_1: GgmlType.Q4_1, Q4_K_M: GgmlType.Q4_K, Q5_K_M: GgmlType.Q5_K, Q3_K_M: GgmlType.Q3_K,
  Q2_K: GgmlType.Q2_K, IQ4_XS: GgmlType.IQ4_XS,
};

// Greedy ids from [BOS], as llama.cpp decoded them (CPU build, one thread): the same seed in every mix of a shape
// walks the same memory cycle (llama-fixture.ts), so every mix of a shape shares them; its logits differ per mix.
// 16 steps each (a step of the dim-896 model reads 15M weights, about 0.3 s on SwiftShader, and the test decodes
// every step twice): MIX_STEPS.
export const MIX_STEPS = 16;
const SMOL_IDS = [89, 62, 246, 102, 151, 179, 37, 296, 21, 122, 145, 59, 201, 82, 36, 244];
const QWEN_IDS = [91, 287, 182, 224, 124, 50, 198, 261, 164, 170, 38, 291, 247, 218, 254, 9];
const D512_IDS = [111, 215, 37, 243, 216, 57, 230, 140, 267, 73, 148, 85, 250, 67, 110, 119];

function smol(mix: LlamaCppMix, minGap: number): MixFixture {
  return {
    name: `smollm2-shape-${mix.toLowerCase()}`, arch: 'llama', seed: 4, type: LABEL[mix], mix: { name: mix },
    ...CATALOG_SHAPES.smollm2, nLayers: 2, vocab: 320, ctx: 256, minGap, greedyIds: SMOL_IDS,
  };
}
function qwen(mix: LlamaCppMix, minGap: number): MixFixture {
  return {
    name: `qwen25-shape-${mix.toLowerCase()}`, arch: 'qwen2', seed: 4, type: LABEL[mix], mix: { name: mix },
    ...CATALOG_SHAPES.qwen25, nLayers: 1, vocab: 300, ctx: 256, minGap, greedyIds: QWEN_IDS,
  };
}
function d512(mix: LlamaCppMix, minGap: number): MixFixture {
  return {
    name: `llama-d512-${mix.toLowerCase()}`, arch: 'llama', seed: 2, type: LABEL[mix], mix: { name: mix },
    dim: 512, nHeads: 8, nKvHeads: 2, ffn: 768, nLayers: 2, vocab: 300, ctx: 256, minGap, greedyIds: D512_IDS,
  };
}

/**
 * Every mix at both catalog shapes, and at dim 512 (GQA 4, so Q2_K's attn_v is Q4_K) the two mixes whose own types
 * rows of 576 and 896 never show: Q2_K (Q2_K itself, also as token_embd) and Q4_1. Seeds: the best of 1..4 by
 * llama.cpp's smallest top-2 gap; every seed in 1..4 of these shapes and mixes (Q3_K_M and IQ4_XS at dim 512 too)
 * cleared 9.5 over 32 steps. `minGap` is llama.cpp's smallest gap over the MIX_STEPS steps.
 */
export const MIX_FIXTURES: readonly MixFixture[] = [
  smol('Q4_K_M', 11.54), smol('Q5_K_M', 11.58), smol('Q3_K_M', 11.49), smol('Q2_K', 11.35), smol('IQ4_XS', 11.46),
  qwen('Q4_K_M', 12.9), qwen('Q5_K_M', 12.97), qwen('Q3_K_M', 12.93), qwen('Q2_K', 12.73), qwen('IQ4_XS', 12.89),
  d512('Q2_K', 13.32), d512('Q4_1', 12.54),
];

const written = new Map<string, Promise<string>>();

/**
 * Write a mix fixture's GGUF file (in its architecture's layout) and return its path; once per process (building the
 * dim-896 ones takes a few seconds of seeded noise and quantizing).
 */
export function writeMixFixture(fx: MixFixture): Promise<string> {
  let p = written.get(fx.name);
  if (!p) {
    p = fx.arch === 'qwen2' ? writeArchFixture({ base: fx, variant: 'qwen2' }) : writeLlamaFixture(fx);
    written.set(fx.name, p);
  }
  return p;
}
