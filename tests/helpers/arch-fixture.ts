// Synthetic qwen2, phi3 and Llama-3-style fixtures, made by rewriting a llama fixture from llama-fixture.ts: the same
// seeded weights and peaked logits, in another architecture's layout. qwen2: keys renamed, Q/K/V biases added (its
// RoPE is NeoX-style, which llama.cpp picks from the architecture). phi3: Q/K/V rows concatenated into attn_qkv and
// gate/up rows into ffn_up. llama3: a `rope_freqs.weight` tensor of per-pair frequency divisors, as Llama 3.1 files
// carry, and a byte-level BPE vocabulary (tokenizer.ggml.model gpt2, pre llama-bpe). llama.cpp reading the result
// is the check that the layout is right.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gguf, GGUFValueType } from '@huggingface/gguf';
import { ggmlTensorBytes, writeGguf, type GgufMetadata, type GgufTensor, type GgufValue } from './gguf-writer';
import { buildLlamaFixture, fixtureDir, FixtureRng, type LlamaFixtureSpec } from './llama-fixture';
import { quantize } from './quantize';
import { GgmlType } from '../../src/model/quant';

export type ArchVariant = 'qwen2' | 'phi3' | 'llama3';

/** GPT-2's printable alphabet for bytes: printable Latin-1 bytes stand for themselves, the rest map to U+0100 on. */
function byteAlphabet(): string[] {
  const chars: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    chars[b] = String.fromCodePoint(printable ? b : next++);
  }
  return chars;
}

/**
 * A Llama-3-style byte-level BPE vocabulary of `vocab` entries with the fixture's ids for control tokens:
 * 0 a reserved control token, 1 <|begin_of_text|> (BOS), 2 <|end_of_text|> (EOS), 3..258 the byte alphabet, then
 * two-character pieces, each with its merge.
 */
function bpeVocabulary(vocab: number): [string, GgufValue][] {
  const alphabet = byteAlphabet();
  const tokens = ['<|reserved_special_token_0|>', '<|begin_of_text|>', '<|end_of_text|>', ...alphabet];
  const types = [3, 3, 3, ...alphabet.map(() => 1)];
  const merges: string[] = [];
  // pieces from common letters (and the space marker Ġ), in a fixed order
  const letters = ['Ġ', ...'etaoinshrdlucmfwypvbgkqjxz'];
  outer: for (const a of letters) {
    for (const b of letters) {
      if (tokens.length >= vocab) break outer;
      if (a === 'Ġ' && b === 'Ġ') continue;
      tokens.push(a + b);
      types.push(1);
      merges.push(`${a} ${b}`);
    }
  }
  if (tokens.length !== vocab) throw new Error(`bpe fixture vocabulary: wanted ${vocab} tokens, made ${tokens.length}`);
  return [
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: 'llama-bpe' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types }],
    ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: merges }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 1 }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: 2 }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
  ];
}

export interface ArchFixtureSpec {
  base: LlamaFixtureSpec;
  variant: ArchVariant;
}

const SCALAR: Record<number, GgufValue['type']> = {
  [GGUFValueType.UINT8]: 'u8', [GGUFValueType.INT8]: 'i8', [GGUFValueType.UINT16]: 'u16', [GGUFValueType.INT16]: 'i16',
  [GGUFValueType.UINT32]: 'u32', [GGUFValueType.INT32]: 'i32', [GGUFValueType.FLOAT32]: 'f32', [GGUFValueType.BOOL]: 'bool',
  [GGUFValueType.STRING]: 'string', [GGUFValueType.UINT64]: 'u64', [GGUFValueType.INT64]: 'i64', [GGUFValueType.FLOAT64]: 'f64',
};

/** Parse a fixture back into the writer's typed metadata and tensor list. */
async function readBack(path: string): Promise<{ metadata: [string, GgufValue][]; tensors: GgufTensor[] }> {
  const bytes = readFileSync(path);
  const parsed = await gguf(path, { allowLocalFile: true, typedMetadata: true });
  const metadata: [string, GgufValue][] = [];
  for (const [key, tv] of Object.entries(parsed.typedMetadata)) {
    if (key === 'version' || key === 'tensor_count' || key === 'kv_count') continue;
    const entry = tv as { value: unknown; type: number; subType?: number };
    if (entry.type === GGUFValueType.ARRAY) {
      metadata.push([key, { type: 'array', itemType: SCALAR[entry.subType!], value: entry.value } as GgufValue]);
    } else {
      metadata.push([key, { type: SCALAR[entry.type], value: entry.value } as GgufValue]);
    }
  }
  const base = Number(parsed.tensorDataOffset);
  const infos = parsed.tensorInfos.map((t) => ({ ...t, offset: base + Number(t.offset) }));
  const tensors: GgufTensor[] = infos.map((t, i) => {
    const end = i + 1 < infos.length ? infos[i + 1].offset : bytes.length;
    return { name: t.name, dims: t.shape.map(Number), type: t.dtype, data: new Uint8Array(bytes.subarray(t.offset, end)) };
  });
  // trim alignment padding: each tensor's data is exactly its bytes
  for (const t of tensors) t.data = t.data.subarray(0, tensorBytes(t));
  return { metadata, tensors };
}

function tensorBytes(t: GgufTensor): number {
  return ggmlTensorBytes(t.type, t.dims, t.name);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export async function writeArchFixture(spec: ArchFixtureSpec, dir = fixtureDir()): Promise<string> {
  const name = `${spec.base.name}-${spec.variant}`;
  const path = join(dir, `${name}.gguf`);
  mkdirSync(dir, { recursive: true });
  const basePath = join(dir, `${name}.base.gguf`);
  writeFileSync(basePath, buildLlamaFixture(spec.base));
  const { metadata, tensors } = await readBack(basePath);
  const rng = new FixtureRng(spec.base.seed + 1000);
  const arch = spec.variant === 'llama3' ? 'llama' : spec.variant;
  let kept = metadata;
  if (spec.variant === 'llama3') {
    // Llama 3's tokenizer: byte-level BPE instead of the base fixture's SentencePiece vocabulary
    kept = [...metadata.filter(([k]) => !k.startsWith('tokenizer.')), ...bpeVocabulary(spec.base.vocab)];
  }
  const md: GgufMetadata = kept.map(([k, v]) => {
    if (k === 'general.architecture') return [k, { type: 'string', value: arch }] as const;
    // not "phi3" in the name: llama.cpp then expects Phi-3's own special tokens in the vocabulary
    if (k === 'general.name') return [k, { type: 'string', value: `${spec.base.name} as ${arch === 'phi3' ? 'fused-qkv' : arch}` }] as const;
    return [k.startsWith('llama.') ? `${arch}.${k.slice(6)}` : k, v] as const;
  });
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const out: GgufTensor[] = [];
  const { dim, nHeads, nKvHeads, ffn } = spec.base;
  const hd = dim / nHeads;
  const f32 = (n: number, f: () => number) => quantize(GgmlType.F32, Float32Array.from({ length: n }, f));
  if (spec.variant === 'llama3') {
    // Llama 3.1's divisors grow from 1 (high frequencies) to the scaling factor (low ones); 1..8 here
    const divisors = Float32Array.from({ length: hd / 2 }, (_, i) => 1 + (7 * i) / (hd / 2 - 1));
    out.push({ name: 'rope_freqs.weight', dims: [hd / 2], type: GgmlType.F32, data: quantize(GgmlType.F32, divisors) });
  }
  for (const t of tensors) {
    const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(t.name);
    if (!m) {
      out.push(t);
      continue;
    }
    const [, l, kind] = m;
    const get = (k: string) => byName.get(`blk.${l}.${k}.weight`)!;
    if (spec.variant === 'phi3') {
      if (kind === 'attn_q') {
        out.push({ name: `blk.${l}.attn_qkv.weight`, dims: [dim, nHeads * hd + 2 * nKvHeads * hd], type: t.type, data: concat(t.data, get('attn_k').data, get('attn_v').data) });
      } else if (kind === 'ffn_gate') {
        out.push({ name: `blk.${l}.ffn_up.weight`, dims: [dim, 2 * ffn], type: t.type, data: concat(t.data, get('ffn_up').data) });
      } else if (kind !== 'attn_k' && kind !== 'attn_v' && kind !== 'ffn_up') {
        out.push(t);
      }
      continue;
    }
    out.push(t);
    if (spec.variant === 'qwen2' && (kind === 'attn_q' || kind === 'attn_k' || kind === 'attn_v')) {
      const rows = kind === 'attn_q' ? nHeads * hd : nKvHeads * hd;
      out.push({ name: `blk.${l}.${kind}.bias`, dims: [rows], type: GgmlType.F32, data: f32(rows, () => 0.2 * rng.normal()) });
    }
  }
  const bytes = writeGguf({ metadata: md, tensors: out });
  if (!existsSync(path) || !Buffer.from(readFileSync(path)).equals(Buffer.from(bytes))) writeFileSync(path, bytes);
  return path;
}
