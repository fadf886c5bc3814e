// The model picker's catalog (src/ui/catalog.ts) against what its files hold: each entry's model (architecture,
// shapes, vocabulary, tied or separate output head) is in the table below, its file's tensor-type mix is the one
// llama.cpp's quantizer writes for that model (tests/helpers/llama-mix.ts), and from those this test builds the file's
// exact header (every tensor's name, shape, type and offset; a small stand-in vocabulary) and checks:
//   - Flock's own header check (inspectSource, what the picker's Check runs) finds the file runnable;
//   - the sizes shown are the files': the tensor data alone, which the header fixes to the byte, plus one header per
//     model (the vocabulary and template metadata, at most HEADER_ALLOWANCE), within the 3-digit rounding shown;
//   - the mix has been run against llama.cpp: at shapes whose rows are not whole 256-element blocks (fallback types),
//     a parity fixture with the entry's per-layer shape and mix (mix-fixtures.ts); elsewhere, every tensor type of
//     the entry is one the parity fixtures hold.
// Not here: downloading (tests/storage), the picker's UI (tests/e2e/models.test.ts).

import { describe, expect, it } from 'vitest';
import type { GgufMetadata, GgufTensorInfo } from '../helpers/gguf-writer';
import { ggufHeader } from '../helpers/gguf-writer';
import { GgmlType, ggmlTypeName } from '../../src/model/quant';
import type { ByteSource } from '../../src/model/source';
import { CATALOG, type CatalogEntry } from '../../src/ui/catalog';
import { inspectSource } from '../../src/worker/inspect';
import { KQUANT_FIXTURES, LLAMA_FIXTURES, weightType, type LlamaWeightRole } from '../helpers/llama-fixture';
import { llamaCppType, MIX_FILE_TYPE, type LlamaCppMix, type MixRole } from '../helpers/llama-mix';
import { MIX_FIXTURES } from '../helpers/mix-fixtures';

interface CatalogModel {
  arch: 'llama' | 'qwen2';
  nLayers: number;
  dim: number;
  nHeads: number;
  nKvHeads: number;
  ffn: number;
  vocab: number;
  ctx: number;
  /** no output.weight (the head reuses token_embd) */
  tiedOutput: boolean;
  /** a rope_freqs.weight tensor (Llama 3.1+) */
  ropeFreqs: boolean;
  /** tokenizer.ggml.pre of the real file */
  pre: string;
}

/**
 * Each catalog model's hyperparameters (from its config.json on Hugging Face). SmolLM2's and Llama 3.2's files tie
 * the output head to token_embd; Qwen's own GGUF files carry a separate output.weight (their sizes only add up with
 * it: 676 MB for Q8_0 against 531 MB without).
 */
const MODELS: Record<string, CatalogModel> = {
  'SmolLM2-135M-Instruct': {
    arch: 'llama', nLayers: 30, dim: 576, nHeads: 9, nKvHeads: 3, ffn: 1536, vocab: 49152, ctx: 8192,
    tiedOutput: true, ropeFreqs: false, pre: 'smollm',
  },
  'Qwen2.5-0.5B-Instruct': {
    arch: 'qwen2', nLayers: 24, dim: 896, nHeads: 14, nKvHeads: 2, ffn: 4864, vocab: 151936, ctx: 32768,
    tiedOutput: false, ropeFreqs: false, pre: 'qwen2',
  },
  'Llama-3.2-1B-Instruct': {
    arch: 'llama', nLayers: 16, dim: 2048, nHeads: 32, nKvHeads: 8, ffn: 8192, vocab: 128256, ctx: 131072,
    tiedOutput: true, ropeFreqs: true, pre: 'llama-bpe',
  },
};

/**
 * The most a real header may add to the tensor data: the vocabulary (a GGUF string, 8-byte length plus UTF-8, and a
 * 4-byte type per token; BPE merges, about as many as tokens, each a string), the chat template and the tensor infos.
 * 100 bytes per token plus 1 MB is well above each of these files' (about 1.5 MB for SmolLM2's 49k tokens).
 */
const HEADER_ALLOWANCE = (m: CatalogModel) => 100 * m.vocab + 1e6;
/** Sizes are shown with 3 significant digits. */
const ROUNDING = 0.005;

/** A file that is `header` followed by zeros up to `size` bytes: the header is all the checks read. */
class HeaderSource implements ByteSource {
  bytesFetched = 0;
  readonly name: string;
  constructor(private readonly header: Uint8Array, private readonly total: number, name: string) {
    this.name = name;
  }
  async size(): Promise<number> {
    return this.total;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(Math.max(0, Math.min(length, this.total - offset)));
    if (offset < this.header.length) out.set(this.header.subarray(offset, offset + out.length));
    this.bytesFetched += out.length;
    return out;
  }
}

const LAYER_ROLES: readonly MixRole[] = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_up', 'ffn_down'];

/** The tensors of `m` in mix `mix`, in llama.cpp's order, with their shapes (ggml order: row length first). */
function tensorInfos(m: CatalogModel, mix: LlamaCppMix): GgufTensorInfo[] {
  const kv = (m.dim / m.nHeads) * m.nKvHeads;
  const type = (role: MixRole, layer = 0) => llamaCppType(mix, m, role, layer);
  const out: GgufTensorInfo[] = [{ name: 'token_embd.weight', dims: [m.dim, m.vocab], type: type('token_embd') }];
  if (m.ropeFreqs) out.push({ name: 'rope_freqs.weight', dims: [m.dim / m.nHeads / 2], type: GgmlType.F32 });
  const rows: Record<string, number> = { attn_q: m.dim, attn_k: kv, attn_v: kv, attn_output: m.dim, ffn_gate: m.ffn, ffn_up: m.ffn, ffn_down: m.dim };
  for (let l = 0; l < m.nLayers; l++) {
    out.push({ name: `blk.${l}.attn_norm.weight`, dims: [m.dim], type: GgmlType.F32 });
    for (const role of LAYER_ROLES) {
      out.push({ name: `blk.${l}.${role}.weight`, dims: [role === 'ffn_down' ? m.ffn : m.dim, rows[role]], type: type(role, l) });
      if (m.arch === 'qwen2' && (role === 'attn_q' || role === 'attn_k' || role === 'attn_v')) {
        out.push({ name: `blk.${l}.${role}.bias`, dims: [rows[role]], type: GgmlType.F32 });
      }
    }
    out.push({ name: `blk.${l}.ffn_norm.weight`, dims: [m.dim], type: GgmlType.F32 });
  }
  out.push({ name: 'output_norm.weight', dims: [m.dim], type: GgmlType.F32 });
  if (!m.tiedOutput) out.push({ name: 'output.weight', dims: [m.dim, m.vocab], type: type('output') });
  return out;
}

/** Metadata as the real file has it, with a stand-in vocabulary of the real size (unique pieces, one merge). */
function metadata(m: CatalogModel, entry: CatalogEntry): GgufMetadata {
  const a = m.arch;
  const u32 = (value: number) => ({ type: 'u32', value }) as const;
  const tokens = Array.from({ length: m.vocab }, (_, i) => `t${i}`);
  return [
    ['general.architecture', { type: 'string', value: a }],
    ['general.name', { type: 'string', value: entry.name }],
    ['general.file_type', u32(MIX_FILE_TYPE[entry.quant])],
    [`${a}.block_count`, u32(m.nLayers)],
    [`${a}.context_length`, u32(m.ctx)],
    [`${a}.embedding_length`, u32(m.dim)],
    [`${a}.feed_forward_length`, u32(m.ffn)],
    [`${a}.attention.head_count`, u32(m.nHeads)],
    [`${a}.attention.head_count_kv`, u32(m.nKvHeads)],
    [`${a}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: 1e-5 }],
    [`${a}.rope.freq_base`, { type: 'f32', value: 10000 }],
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: m.pre }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: tokens.map(() => 1) }],
    ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: ['t 1'] }],
  ];
}

/** Every tensor type our llama.cpp parity fixtures run (the ones not built from a mix, and the mixes' own). */
function typesRunAgainstLlamaCpp(): Set<number> {
  const seen = new Set<number>();
  const roles: LlamaWeightRole[] = ['token_embd', 'output', ...(LAYER_ROLES as LlamaWeightRole[])];
  for (const fx of [...LLAMA_FIXTURES, ...KQUANT_FIXTURES, ...MIX_FIXTURES]) {
    for (let l = 0; l < fx.nLayers; l++) for (const r of roles) seen.add(weightType(fx, r, l));
  }
  return seen;
}

describe('the model catalog', () => {
  it('has a model table row for every entry, and each entry names its own file', () => {
    expect(CATALOG.length).toBeGreaterThan(0);
    for (const entry of CATALOG) {
      expect(MODELS[entry.name], `${entry.name}: add its shapes to MODELS`).toBeDefined();
      expect(entry.url.toLowerCase()).toContain(entry.quant.toLowerCase());
      expect(entry.url).toMatch(/^https:\/\/huggingface\.co\/[^/]+\/[^/]+\/resolve\/main\/[^/]+\.gguf$/);
    }
  });

  for (const entry of CATALOG) {
    it(`${entry.name} ${entry.quant}: runnable by Flock's header check, with parity-tested types`, async () => {
      const m = MODELS[entry.name];
      const tensors = tensorInfos(m, entry.quant);
      const { bytes: header, dataBytes: dataSize } = ggufHeader(metadata(m, entry), tensors);
      // the header check alone: no memory budget, generous device limits (what fits a device is model/memory.ts's test)
      const report = await inspectSource(new HeaderSource(header, header.length + dataSize, `${entry.name}-${entry.quant}.gguf`),
        { context: 2048, budget: null, cachedBytes: 0 }, { maxBufferSize: 2 ** 40, maxStorageBufferBindingSize: 2 ** 40, freeStorage: null });
      expect(report.reason).toBe('');
      expect(report.runnable).toBe(true);
      expect(report.arch).toBe(m.arch);
      const types = new Set(tensors.map((t) => t.type));
      expect(report.tensorTypes).toEqual([...types].map(ggmlTypeName).sort());
      expect(report.size).toBe(header.length + dataSize);

      const covered = typesRunAgainstLlamaCpp();
      for (const t of types) expect(covered.has(t), `${ggmlTypeName(t)} has no llama.cpp parity fixture`).toBe(true);
      // a K-quant mix at rows that are not whole 256-element blocks holds fallback types: run at the same shapes
      if (entry.quant !== 'Q8_0' && (m.dim % 256 !== 0 || m.ffn % 256 !== 0)) {
        const same = MIX_FIXTURES.find((f) => f.mix.name === entry.quant && f.arch === m.arch && f.dim === m.dim &&
          f.nHeads === m.nHeads && f.nKvHeads === m.nKvHeads && f.ffn === m.ffn && (f.tiedOutput ?? false) === m.tiedOutput);
        expect(same, `no parity fixture with ${entry.name}'s shapes in ${entry.quant}`).toBeDefined();
      }
    });
  }

  // The header a size implies (size shown - tensor data, within the rounding) must be one header: at least 0, at most
  // HEADER_ALLOWANCE, and the same for every file of a model (their headers differ by a few bytes of metadata). A
  // wrong mix or a missing output head moves the tensor data by megabytes; a size copied from another file, by more.
  it('the sizes shown: tensor data plus one header per model, within the rounding shown', () => {
    for (const name of new Set(CATALOG.map((e) => e.name))) {
      const m = MODELS[name];
      let lo = 0;
      let hi = HEADER_ALLOWANCE(m);
      const seen: string[] = [];
      for (const entry of CATALOG.filter((e) => e.name === name)) {
        const { dataBytes: dataSize } = ggufHeader([], tensorInfos(m, entry.quant));
        lo = Math.max(lo, entry.size * (1 - ROUNDING) - dataSize);
        hi = Math.min(hi, entry.size * (1 + ROUNDING) - dataSize);
        seen.push(`${entry.quant}: shown ${entry.size}, tensor data ${dataSize}`);
      }
      expect(lo, `${name}: no header size fits ${seen.join('; ')}`).toBeLessThanOrEqual(hi);
    }
  });
});
