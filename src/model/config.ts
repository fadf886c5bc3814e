// The model configuration a forward pass needs, read from GGUF metadata, and the tensor names each part of the model
// (a Stage's layer span, the Head) reads. Validation happens here, before any weight is fetched: unknown
// architecture, missing or mistyped tensors, and shapes that disagree with the metadata all raise named errors.

import {
  ModelConfigError,
  UnsupportedArchitectureError,
  TensorBoundsError,
} from './errors';
import { checkTensorBounds, metaNumber, metaString, type GgufFile, type TensorEntry } from './gguf';
import { blockFormat, byteSize } from './quant';

export type Architecture = 'llama' | 'qwen2' | 'phi3';

export interface ModelConfig {
  arch: Architecture;
  nLayers: number;
  dim: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  ffn: number;
  vocab: number;
  ctx: number;
  normEps: number;
  ropeBase: number;
  /** how many leading dimensions of each head RoPE rotates */
  ropeDim: number;
  /** rotate pairs (i, i + ropeDim/2) (GPT-NeoX layout: qwen2, phi3) instead of (2i, 2i+1) (llama) */
  ropeNeox: boolean;
  /** linear RoPE scaling: positions are multiplied by this (1 / rope.scaling.factor) */
  ropeFreqScale: number;
  /** per-pair frequency divisors from a `rope_freqs.weight` tensor (Llama 3.1+) */
  ropeFreqs: boolean;
  /** Q, K and V projections have biases (qwen2) */
  qkvBias: boolean;
  /** one attn_qkv tensor holds Q, K and V rows (phi3) */
  fusedQkv: boolean;
  /** ffn_up holds the gate rows then the up rows (phi3) */
  fusedGateUp: boolean;
  /** no output.weight: the token embedding matrix is the output head */
  tiedOutput: boolean;
}

export const SUPPORTED_ARCHITECTURES: readonly Architecture[] = ['llama', 'qwen2', 'phi3'];

/** What each architecture changes relative to llama (all are pre-norm decoders with RMSNorm, SwiGLU and RoPE). */
const ARCH_TRAITS: Record<Architecture, Pick<ModelConfig, 'ropeNeox' | 'qkvBias' | 'fusedQkv' | 'fusedGateUp'>> = {
  llama: { ropeNeox: false, qkvBias: false, fusedQkv: false, fusedGateUp: false },
  qwen2: { ropeNeox: true, qkvBias: true, fusedQkv: false, fusedGateUp: false },
  phi3: { ropeNeox: true, qkvBias: false, fusedQkv: true, fusedGateUp: true },
};

function isArchitecture(a: string): a is Architecture {
  return (SUPPORTED_ARCHITECTURES as readonly string[]).includes(a);
}

export function readConfig(file: GgufFile): ModelConfig {
  const m = file.metadata;
  const arch = metaString(m, 'general.architecture');
  if (arch === undefined) throw new ModelConfigError(`${file.source.name} has no general.architecture key.`);
  if (!isArchitecture(arch)) {
    throw new UnsupportedArchitectureError(
      `${file.source.name} is a "${arch}" model; Flock runs ${SUPPORTED_ARCHITECTURES.join(', ')} models.`,
    );
  }
  const need = (key: string): number => {
    const v = metaNumber(m, `${arch}.${key}`);
    if (v === undefined || !Number.isFinite(v) || v <= 0) {
      throw new ModelConfigError(`${file.source.name} lacks a valid ${arch}.${key} (got ${String(m[`${arch}.${key}`])}).`);
    }
    return v;
  };
  const dim = need('embedding_length');
  const nHeads = need('attention.head_count');
  const nKvHeads = metaNumber(m, `${arch}.attention.head_count_kv`) ?? nHeads;
  if (dim % nHeads !== 0) throw new ModelConfigError(`embedding_length ${dim} is not a multiple of head_count ${nHeads}.`);
  if (nHeads % nKvHeads !== 0) throw new ModelConfigError(`head_count ${nHeads} is not a multiple of head_count_kv ${nKvHeads}.`);
  const headDim = dim / nHeads;
  const ropeDim = metaNumber(m, `${arch}.rope.dimension_count`) ?? headDim;
  if (ropeDim % 2 !== 0 || ropeDim > headDim) throw new ModelConfigError(`rope.dimension_count ${ropeDim} is invalid for head size ${headDim}.`);
  const scaling = metaString(m, `${arch}.rope.scaling.type`) ?? 'none';
  let ropeFreqScale = 1;
  if (scaling === 'linear') {
    const factor = metaNumber(m, `${arch}.rope.scaling.factor`) ?? 1;
    if (!(factor > 0)) throw new ModelConfigError(`rope.scaling.factor ${factor} is invalid.`);
    ropeFreqScale = 1 / factor;
  } else if (scaling !== 'none') {
    throw new ModelConfigError(`${file.source.name} asks for RoPE scaling "${scaling}", which Flock does not support yet (supported: none, linear, rope_freqs).`);
  }
  if (file.tensors.has('rope_factors_long.weight') || file.tensors.has('rope_factors_short.weight')) {
    throw new ModelConfigError(`${file.source.name} uses long-context RoPE factors (LongRoPE), which Flock does not support yet.`);
  }
  const embd = file.tensors.get('token_embd.weight');
  if (!embd) throw new ModelConfigError(`${file.source.name} has no token_embd.weight tensor.`);
  const cfg: ModelConfig = {
    arch,
    nLayers: need('block_count'),
    dim,
    nHeads,
    nKvHeads,
    headDim,
    ffn: need('feed_forward_length'),
    vocab: embd.dims[1] ?? 0,
    ctx: need('context_length'),
    normEps: metaNumber(m, `${arch}.attention.layer_norm_rms_epsilon`) ?? 1e-5,
    ropeBase: metaNumber(m, `${arch}.rope.freq_base`) ?? 10000,
    ropeDim,
    ropeFreqScale,
    ropeFreqs: file.tensors.has('rope_freqs.weight'),
    ...ARCH_TRAITS[arch],
    tiedOutput: !file.tensors.has('output.weight'),
  };
  return cfg;
}

/** What part of the model a component reads: a span of layers, plus the Head's tensors or not. */
export interface Part {
  start: number;
  end: number;
  head: boolean;
}

/** The tensors of one llama layer (the common case; other architectures fuse or add some, see layerTensors). */
export const LAYER_TENSORS = [
  'attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down',
] as const;

/** The tensor names (without `blk.N.` and `.weight`/`.bias`) a layer of this config stores. */
export function layerTensors(cfg: ModelConfig): string[] {
  const attn = cfg.fusedQkv ? ['attn_qkv'] : ['attn_q', 'attn_k', 'attn_v'];
  const ffn = cfg.fusedGateUp ? ['ffn_up'] : ['ffn_gate', 'ffn_up'];
  return ['attn_norm', ...attn, 'attn_output', 'ffn_norm', ...ffn, 'ffn_down'];
}

/** Logical weights of a layer: each is a row range of a stored tensor (fused tensors hold several). */
export type WeightRole = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';
export interface WeightSlice {
  name: string;
  rowStart: number;
  rows: number;
  /** bias vector (same rows), if the architecture has one */
  bias?: string;
}

export function layerWeights(cfg: ModelConfig, l: number): Record<WeightRole, WeightSlice> {
  const q = cfg.nHeads * cfg.headDim;
  const kv = cfg.nKvHeads * cfg.headDim;
  const p = `blk.${l}.`;
  const bias = (t: string) => (cfg.qkvBias ? `${p}${t}.bias` : undefined);
  const attn = cfg.fusedQkv
    ? {
        q: { name: `${p}attn_qkv.weight`, rowStart: 0, rows: q },
        k: { name: `${p}attn_qkv.weight`, rowStart: q, rows: kv },
        v: { name: `${p}attn_qkv.weight`, rowStart: q + kv, rows: kv },
      }
    : {
        q: { name: `${p}attn_q.weight`, rowStart: 0, rows: q, bias: bias('attn_q') },
        k: { name: `${p}attn_k.weight`, rowStart: 0, rows: kv, bias: bias('attn_k') },
        v: { name: `${p}attn_v.weight`, rowStart: 0, rows: kv, bias: bias('attn_v') },
      };
  const ffn = cfg.fusedGateUp
    ? {
        gate: { name: `${p}ffn_up.weight`, rowStart: 0, rows: cfg.ffn },
        up: { name: `${p}ffn_up.weight`, rowStart: cfg.ffn, rows: cfg.ffn },
      }
    : {
        gate: { name: `${p}ffn_gate.weight`, rowStart: 0, rows: cfg.ffn },
        up: { name: `${p}ffn_up.weight`, rowStart: 0, rows: cfg.ffn },
      };
  return {
    ...attn,
    o: { name: `${p}attn_output.weight`, rowStart: 0, rows: cfg.dim },
    ...ffn,
    down: { name: `${p}ffn_down.weight`, rowStart: 0, rows: cfg.dim },
  };
}

/** Expected ggml shapes ([row length, rows]) of every tensor, to check a file against its metadata. */
function expectedShape(cfg: ModelConfig, name: string): number[] {
  const q = cfg.nHeads * cfg.headDim;
  const kv = cfg.nKvHeads * cfg.headDim;
  const kind = name.replace(/^blk\.\d+\./, '');
  switch (kind) {
    case 'token_embd.weight': return [cfg.dim, cfg.vocab];
    case 'output.weight': return [cfg.dim, cfg.vocab];
    case 'output_norm.weight': case 'attn_norm.weight': case 'ffn_norm.weight': return [cfg.dim];
    case 'rope_freqs.weight': return [cfg.ropeDim / 2];
    case 'attn_q.weight': return [cfg.dim, q];
    case 'attn_k.weight': case 'attn_v.weight': return [cfg.dim, kv];
    case 'attn_q.bias': return [q];
    case 'attn_k.bias': case 'attn_v.bias': return [kv];
    case 'attn_qkv.weight': return [cfg.dim, q + 2 * kv];
    case 'attn_output.weight': return [q, cfg.dim];
    case 'ffn_gate.weight': return [cfg.dim, cfg.ffn];
    case 'ffn_up.weight': return [cfg.dim, cfg.fusedGateUp ? 2 * cfg.ffn : cfg.ffn];
    case 'ffn_down.weight': return [cfg.ffn, cfg.dim];
    default: throw new ModelConfigError(`no expected shape for tensor ${name}`);
  }
}

export function tensorNames(cfg: ModelConfig, part: Part): string[] {
  const names: string[] = [];
  if (part.head) {
    names.push('token_embd.weight', 'output_norm.weight');
    if (!cfg.tiedOutput) names.push('output.weight');
  }
  if (cfg.ropeFreqs && part.end > part.start) names.push('rope_freqs.weight');
  for (let l = part.start; l < part.end; l++) {
    for (const t of layerTensors(cfg)) names.push(`blk.${l}.${t}.weight`);
    if (cfg.qkvBias) for (const t of ['attn_q', 'attn_k', 'attn_v']) names.push(`blk.${l}.${t}.bias`);
  }
  return names;
}

/** Validate every tensor a part needs (presence, type, shape, bounds) and return them. Fetches nothing. */
export function partTensors(file: GgufFile, cfg: ModelConfig, part: Part): Map<string, TensorEntry> {
  if (!(part.start >= 0 && part.start <= part.end && part.end <= cfg.nLayers)) {
    throw new ModelConfigError(`Layer span [${part.start}, ${part.end}) is outside the model's ${cfg.nLayers} layers.`);
  }
  const out = new Map<string, TensorEntry>();
  for (const name of tensorNames(cfg, part)) {
    const t = file.tensors.get(name);
    if (!t) throw new ModelConfigError(`${file.source.name} has no tensor ${name}.`);
    const f = blockFormat(t.type, name);
    const want = expectedShape(cfg, name);
    if (t.dims.length !== want.length || t.dims.some((d, i) => d !== want[i])) {
      throw new ModelConfigError(`Tensor ${name} has shape [${t.dims.join(', ')}], expected [${want.join(', ')}].`);
    }
    if (t.dims[0] % f.blockElems !== 0) {
      throw new TensorBoundsError(`Tensor ${name}: row length ${t.dims[0]} is not a multiple of its block size ${f.blockElems}.`);
    }
    checkTensorBounds(file, t, byteSize(f, t.nElems));
    out.set(name, t);
  }
  return out;
}

/**
 * Bytes of a part's weights as stored in the file: what loading the part reads and uploads. rope_freqs (a few
 * hundred bytes every Stage loads once) is left out, so a span's bytes are the sum of its layers'.
 */
export function partBytes(file: GgufFile, cfg: ModelConfig, part: Part): number {
  let sum = 0;
  for (const t of partTensors(file, cfg, part).values()) if (t.name !== 'rope_freqs.weight') sum += byteSize(blockFormat(t.type, t.name), t.nElems);
  return sum;
}
