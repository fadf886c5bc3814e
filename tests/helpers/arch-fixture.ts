// Synthetic qwen2, phi3 and Llama-3-style fixtures, made by rewriting a llama fixture from llama-fixture.ts: the same
// seeded weights and peaked logits, in another architecture's layout. qwen2: keys renamed, Q/K/V biases added (its
// RoPE is NeoX-style, which llama.cpp picks from the architecture). phi3: Q/K/V rows concatenated into attn_qkv and
// gate/up rows into ffn_up. llama3: a `rope_freqs.weight` tensor of per-pair frequency divisors, as Llama 3.1 files
// carry. llama.cpp reading the result is the check that the layout is right.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gguf, GGUFValueType } from '@huggingface/gguf';
import { ggmlTensorBytes, writeGguf, type GgufMetadata, type GgufTensor, type GgufValue } from './gguf-writer';
import { buildLlamaFixture, fixtureDir, FixtureRng, type LlamaFixtureSpec } from './llama-fixture';
import { quantize } from './quantize';
import { GgmlType } from '../../src/model/quant';

export type ArchVariant = 'qwen2' | 'phi3' | 'llama3';

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
  const md: GgufMetadata = metadata.map(([k, v]) => {
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
