// Which tensor type llama.cpp's quantizer (`llama-quantize`, src/llama-quant.cpp: llama_tensor_get_type) gives each
// weight of a dense Llama/Qwen2 model for the file types people download, so test fixtures and the catalog test hold
// the mixes real files hold. Covered: no imatrix, not a 70B or MoE model, no per-tensor overrides; the roles of a
// Llama or Qwen2 layer. scripts/llama-quant-check.sh checks these rules against llama_model_quantize itself (the
// build node-llama-cpp 3.21.1 ships) on F32 files of four shapes (the catalog's dim 576 and 896 ones, dim 256 and 512
// ones with GQA 2 and 4, up to 16 layers) in each of these mixes: all 1,512 tensors' types match, with era 'q4_0'.
// Not here: quantizing values (quantize.ts) or building files (llama-fixture.ts).

import { GgmlType } from '../../src/model/quant';

/** llama.cpp file types (LLAMA_FTYPE_MOSTLY_*) a fixture can take, by their usual name. */
export type LlamaCppMix = 'Q8_0' | 'Q4_1' | 'Q4_K_M' | 'Q5_K_M' | 'Q3_K_M' | 'Q2_K' | 'IQ4_XS';

/** `general.file_type` of each mix (llama_ftype). */
export const MIX_FILE_TYPE: Record<LlamaCppMix, number> = {
  Q8_0: 7, Q4_1: 3, Q4_K_M: 15, Q5_K_M: 17, Q3_K_M: 12, Q2_K: 10, IQ4_XS: 30,
};

/** The type a mix starts every weight from, before the per-role rules. */
const DEFAULT_TYPE: Record<LlamaCppMix, number> = {
  Q8_0: GgmlType.Q8_0, Q4_1: GgmlType.Q4_1, Q4_K_M: GgmlType.Q4_K, Q5_K_M: GgmlType.Q5_K, Q3_K_M: GgmlType.Q3_K,
  Q2_K: GgmlType.Q2_K, IQ4_XS: GgmlType.IQ4_XS,
};

/**
 * Where a tensor whose rows are not whole blocks of its chosen type goes instead (llama.cpp's fallback, with its
 * warning "not divisible by 256 … fallback"). Two llama.cpp eras differ for Q2_K and Q3_K: older builds (those that
 * made the Q2_K and Q3_K files on Hugging Face for the catalog's models) write IQ4_NL there, the build node-llama-cpp
 * 3.21.1 ships writes Q4_0.
 */
export type FallbackEra = 'iq4_nl' | 'q4_0';

function fallback(type: number, era: FallbackEra): number {
  switch (type) {
    case GgmlType.Q2_K:
    case GgmlType.Q3_K: return era === 'iq4_nl' ? GgmlType.IQ4_NL : GgmlType.Q4_0;
    case GgmlType.IQ4_XS: return GgmlType.IQ4_NL;
    case GgmlType.Q4_K: return GgmlType.Q5_0;
    case GgmlType.Q5_K: return GgmlType.Q5_1;
    case GgmlType.Q6_K: return GgmlType.Q8_0;
    default: return type; // 32-element types fit any row a model of ours has (row lengths are multiples of 32)
  }
}

const BLOCK: Record<number, number> = {
  [GgmlType.Q2_K]: 256, [GgmlType.Q3_K]: 256, [GgmlType.Q4_K]: 256, [GgmlType.Q5_K]: 256, [GgmlType.Q6_K]: 256,
  [GgmlType.IQ4_XS]: 256,
};
const blockOf = (type: number) => BLOCK[type] ?? 32;

/** The shape facts the rules read. */
export interface MixShape {
  nLayers: number;
  dim: number;
  nHeads: number;
  nKvHeads: number;
  ffn: number;
  /** no output.weight: token_embd is quantized as the output head is */
  tiedOutput: boolean;
}

export type MixRole =
  | 'token_embd' | 'output' | 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_gate' | 'ffn_up' | 'ffn_down';

/** llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between. */
function useMoreBits(i: number, n: number): boolean {
  return i < Math.trunc(n / 8) || i >= Math.trunc((7 * n) / 8) || (i - Math.trunc(n / 8)) % 3 === 2;
}

/** The ggml type llama.cpp writes for weight `role` of layer `layer` (ignored for token_embd and output). */
export function llamaCppType(mix: LlamaCppMix, s: MixShape, role: MixRole, layer: number, era: FallbackEra = 'iq4_nl'): number {
  const def = DEFAULT_TYPE[mix];
  const gqa = s.nHeads / s.nKvHeads;
  let t = def;
  const rowLength = role === 'ffn_down' ? s.ffn : s.dim;
  if (role === 'output' || (role === 'token_embd' && s.tiedOutput)) {
    // the output head: Q8_0 when its rows are not whole blocks of the mix's type, else Q6_K (Q8_0 stays Q8_0)
    if (rowLength % blockOf(def) !== 0) t = GgmlType.Q8_0;
    else if (def !== GgmlType.Q8_0) t = GgmlType.Q6_K;
  } else if (role === 'attn_v') {
    if (mix === 'Q2_K') t = gqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
    else if (mix === 'Q3_K_M') t = layer < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
    else if (mix === 'IQ4_XS' && gqa >= 4) t = GgmlType.Q5_K;
    else if ((mix === 'Q4_K_M' || mix === 'Q5_K_M') && useMoreBits(layer, s.nLayers)) t = GgmlType.Q6_K;
  } else if (role === 'ffn_down') {
    if (mix === 'Q2_K') t = GgmlType.Q3_K;
    else if (mix === 'Q3_K_M') t = layer < Math.trunc(s.nLayers / 16) ? GgmlType.Q5_K : GgmlType.Q4_K;
    else if (mix === 'Q4_K_M' && useMoreBits(layer, s.nLayers)) t = GgmlType.Q6_K;
    else if (mix === 'IQ4_XS' && layer < Math.trunc(s.nLayers / 8)) t = GgmlType.Q5_K;
    else if (mix === 'Q5_K_M' && useMoreBits(layer, s.nLayers)) t = GgmlType.Q6_K;
  } else if (role === 'attn_output') {
    if (mix === 'Q2_K') t = GgmlType.Q3_K;
    else if (mix === 'Q3_K_M') t = GgmlType.Q4_K;
  }
  return rowLength % blockOf(t) === 0 ? t : fallback(t, era);
}
