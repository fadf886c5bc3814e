// Benchmark models at real sizes: GGUF files with a Llama's shapes (Llama-3.2-1B, Llama-3.1-8B) in the tensor types
// llama.cpp's Q4_K_M gives them, filled with seeded random but valid Q4_K/Q6_K blocks, streamed to disk (the 8B file
// is ~4.9 GB, more than one JS buffer holds). They measure speed, not text: weights are noise at a sane scale, so
// logits stay finite and llama.cpp and our engine run the same arithmetic on the same bytes.
// Not here: the small fixtures the parity tests run (llama-fixture.ts), quantizing real values (quantize.ts).
//
// Q4_K_M's layout (llama.cpp src/llama-quant.cpp, llama_tensor_get_type): Q4_K for every matrix except Q6_K for the
// output head (and for token_embd when the head is tied to it), and for attn_v and ffn_down in the layers where
// use_more_bits(i, n) holds: the first and last eighth of the layers and every third layer between them.

import { closeSync, existsSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { GgmlType } from '../../src/model/quant';
import { ggmlTensorBytes, ggufHeader, type GgufMetadata, type GgufTensorInfo } from './gguf-writer';

export interface BenchModelSpec {
  name: string;
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  ffn: number;
  vocab: number;
  ctx: number;
  ropeBase: number;
  normEps: number;
  /** no output.weight: the head reuses token_embd (then stored as Q6_K) */
  tiedOutput: boolean;
  /** Llama 3.1's RoPE scaling, stored as rope_freqs.weight divisors */
  ropeScaling: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalContext: number };
  seed: number;
}

const LLAMA3_ROPE = { lowFreqFactor: 1, highFreqFactor: 4, originalContext: 8192 };

/** Llama-3.2-1B's shapes (config.json of meta-llama/Llama-3.2-1B): ~0.8 GB as Q4_K_M. */
export const LLAMA_3_2_1B: BenchModelSpec = {
  name: 'bench-llama-3.2-1b-q4_k_m', dim: 2048, nLayers: 16, nHeads: 32, nKvHeads: 8, ffn: 8192, vocab: 128256,
  ctx: 131072, ropeBase: 500000, normEps: 1e-5, tiedOutput: true, ropeScaling: { factor: 32, ...LLAMA3_ROPE }, seed: 1,
};

/** Llama-3.1-8B's shapes: ~4.9 GB as Q4_K_M. */
export const LLAMA_3_1_8B: BenchModelSpec = {
  name: 'bench-llama-3.1-8b-q4_k_m', dim: 4096, nLayers: 32, nHeads: 32, nKvHeads: 8, ffn: 14336, vocab: 128256,
  ctx: 131072, ropeBase: 500000, normEps: 1e-5, tiedOutput: false, ropeScaling: { factor: 8, ...LLAMA3_ROPE }, seed: 2,
};

/** llama.cpp's use_more_bits: the layers Q4_K_M gives Q6_K attn_v and ffn_down. */
export function useMoreBits(layer: number, nLayers: number): boolean {
  const e = Math.floor(nLayers / 8);
  return layer < e || layer >= Math.floor((7 * nLayers) / 8) || (layer - e) % 3 === 2;
}

/** Every tensor of the model with its type and (ggml-order) dims, in file order. */
export function benchTensors(s: BenchModelSpec): GgufTensorInfo[] {
  const hd = s.dim / s.nHeads;
  const kv = s.nKvHeads * hd;
  const { Q4_K, Q6_K, F32 } = GgmlType;
  const t: GgufTensorInfo[] = [
    { name: 'token_embd.weight', dims: [s.dim, s.vocab], type: s.tiedOutput ? Q6_K : Q4_K },
    { name: 'rope_freqs.weight', dims: [hd / 2], type: F32 },
  ];
  for (let l = 0; l < s.nLayers; l++) {
    const more = useMoreBits(l, s.nLayers) ? Q6_K : Q4_K;
    t.push(
      { name: `blk.${l}.attn_norm.weight`, dims: [s.dim], type: F32 },
      { name: `blk.${l}.attn_q.weight`, dims: [s.dim, s.nHeads * hd], type: Q4_K },
      { name: `blk.${l}.attn_k.weight`, dims: [s.dim, kv], type: Q4_K },
      { name: `blk.${l}.attn_v.weight`, dims: [s.dim, kv], type: more },
      { name: `blk.${l}.attn_output.weight`, dims: [s.nHeads * hd, s.dim], type: Q4_K },
      { name: `blk.${l}.ffn_norm.weight`, dims: [s.dim], type: F32 },
      { name: `blk.${l}.ffn_gate.weight`, dims: [s.dim, s.ffn], type: Q4_K },
      { name: `blk.${l}.ffn_up.weight`, dims: [s.dim, s.ffn], type: Q4_K },
      { name: `blk.${l}.ffn_down.weight`, dims: [s.ffn, s.dim], type: more },
    );
  }
  t.push({ name: 'output_norm.weight', dims: [s.dim], type: F32 });
  if (!s.tiedOutput) t.push({ name: 'output.weight', dims: [s.dim, s.vocab], type: Q6_K });
  return t;
}

/** Llama 3.1 RoPE scaling as per-pair divisors of the frequency (what rope_freqs.weight holds). */
function llama3RopeFreqs(s: BenchModelSpec): Float32Array {
  const hd = s.dim / s.nHeads;
  const { factor, lowFreqFactor, highFreqFactor, originalContext } = s.ropeScaling;
  const out = new Float32Array(hd / 2);
  for (let i = 0; i < hd / 2; i++) {
    const wavelen = (2 * Math.PI) / Math.pow(s.ropeBase, (2 * i) / hd);
    if (wavelen < originalContext / highFreqFactor) out[i] = 1;
    else if (wavelen > originalContext / lowFreqFactor) out[i] = factor;
    else {
      const smooth = (originalContext / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

/** Distinct token strings: specials, the 256 byte tokens, then "a".."z", "aa".., each also with a leading "▁". */
function vocabulary(vocab: number): { tokens: string[]; scores: number[]; types: number[] } {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3]; // llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  const word = (j: number): string => {
    let s = '';
    for (let n = j + 1; n > 0; n = Math.floor((n - 1) / 26)) s = String.fromCharCode(97 + ((n - 1) % 26)) + s;
    return s;
  };
  for (let j = 0; tokens.length < vocab; j++) {
    tokens.push(j % 2 === 0 ? word(j >> 1) : `▁${word(j >> 1)}`);
    types.push(1);
  }
  return { tokens, scores: tokens.map((_, i) => -i), types };
}

function metadata(s: BenchModelSpec): GgufMetadata {
  const u32 = (value: number) => ({ type: 'u32', value }) as const;
  const f32 = (value: number) => ({ type: 'f32', value }) as const;
  const { tokens, scores, types } = vocabulary(s.vocab);
  return [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: s.name }],
    ['general.alignment', u32(32)],
    ['general.file_type', u32(15)], // LLAMA_FTYPE_MOSTLY_Q4_K_M
    ['llama.vocab_size', u32(s.vocab)],
    ['llama.context_length', u32(s.ctx)],
    ['llama.embedding_length', u32(s.dim)],
    ['llama.block_count', u32(s.nLayers)],
    ['llama.feed_forward_length', u32(s.ffn)],
    ['llama.attention.head_count', u32(s.nHeads)],
    ['llama.attention.head_count_kv', u32(s.nKvHeads)],
    ['llama.attention.layer_norm_rms_epsilon', f32(s.normEps)],
    ['llama.rope.freq_base', f32(s.ropeBase)],
    ['llama.rope.dimension_count', u32(s.dim / s.nHeads)],
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: scores }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types }],
    ['tokenizer.ggml.bos_token_id', u32(1)],
    ['tokenizer.ggml.eos_token_id', u32(2)],
    ['tokenizer.ggml.unknown_token_id', u32(0)],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
  ];
}

/**
 * Random blocks of a K-quant type, `count` of them. Every byte is seeded noise (xorshift32) except the block scales:
 * Q4_K's d = 2^-13 and dmin = 7.5·d (so a sub-block's mean d·sc·7.5 − dmin·m is centred), Q6_K's d = 2^-12 with its
 * int8 sub-block scales kept in [-16, 15]. Elements then spread by ~0.03 (Q4_K) and ~0.04 (Q6_K), near 1/sqrt(row length)
 * for these models, and no scale is an f16 subnormal (some GPUs flush those to zero).
 */
export function randomBlocks(type: number, count: number, state: { x: number }): Uint8Array {
  const bytes = type === GgmlType.Q4_K ? 144 : type === GgmlType.Q6_K ? 210 : 0;
  if (bytes === 0) throw new Error(`randomBlocks: ggml type ${type} is not Q4_K or Q6_K`);
  const out = new Uint8Array(Math.ceil((count * bytes) / 4) * 4);
  const words = new Uint32Array(out.buffer);
  let x = state.x;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  state.x = x;
  if (type === GgmlType.Q4_K) {
    const w = 0x0800 | (0x1380 << 16); // f16 2^-13 = 0x0800, 7.5·2^-13 = 0x1380
    for (let b = 0; b < count; b++) words[b * 36] = w;
  } else {
    for (let b = 0; b < count; b++) {
      const o = b * 210;
      for (let j = 192; j < 208; j++) out[o + j] = ((out[o + j] & 31) - 16) & 0xff;
      out[o + 208] = 0x00; // f16 2^-12 = 0x0c00, little endian
      out[o + 209] = 0x0c;
    }
  }
  return out.subarray(0, count * bytes);
}

/** Blocks written per piece: ~16 MiB, so memory stays flat however large the file. */
const PIECE_BLOCKS = 1 << 16;

/** Bytes the file will have. */
export function benchModelBytes(s: BenchModelSpec): number {
  const tensors = benchTensors(s);
  const h = ggufHeader(metadata(s), tensors);
  return h.bytes.length + h.dataBytes;
}

/**
 * Write the model to `path` unless a file of the right size is there already (the cache between runs). Writes to a
 * temporary name and renames, so an interrupted run leaves no half file. Returns whether it wrote.
 */
export function writeBenchModel(s: BenchModelSpec, path: string): boolean {
  const tensors = benchTensors(s);
  const h = ggufHeader(metadata(s), tensors);
  const total = h.bytes.length + h.dataBytes;
  if (existsSync(path) && statSync(path).size === total) return false;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, h.bytes, 0, h.bytes.length, 0);
    const state = { x: s.seed * 0x9e3779b1 || 1 };
    tensors.forEach((t, i) => {
      let at = h.bytes.length + h.offsets[i];
      if (t.type === GgmlType.F32) {
        const v = t.name === 'rope_freqs.weight' ? llama3RopeFreqs(s) : new Float32Array(t.dims[0]).fill(1);
        writeSync(fd, new Uint8Array(v.buffer), 0, v.byteLength, at);
        return;
      }
      const blocks = ggmlTensorBytes(t.type, t.dims, t.name) / (t.type === GgmlType.Q4_K ? 144 : 210);
      for (let b = 0; b < blocks; b += PIECE_BLOCKS) {
        const piece = randomBlocks(t.type, Math.min(PIECE_BLOCKS, blocks - b), state);
        writeSync(fd, piece, 0, piece.length, at);
        at += piece.length;
      }
    });
    // the last tensor ends the file; make the size exact even if it were padding
    if (statSync(tmp).size !== total) throw new Error(`bench model ${s.name}: wrote ${statSync(tmp).size} bytes, expected ${total}`);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return true;
}
