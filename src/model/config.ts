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

export interface ModelConfig {
  arch: 'llama';
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
  /** how many leading dimensions of each head RoPE rotates (pairs (2i, 2i+1), llama.cpp's "normal" layout) */
  ropeDim: number;
  /** no output.weight: the token embedding matrix is the output head */
  tiedOutput: boolean;
}

export const SUPPORTED_ARCHITECTURES = ['llama'] as const;

export function readConfig(file: GgufFile): ModelConfig {
  const m = file.metadata;
  const arch = metaString(m, 'general.architecture');
  if (arch === undefined) throw new ModelConfigError(`${file.source.name} has no general.architecture key.`);
  if (arch !== 'llama') {
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
  const scaling = metaString(m, `${arch}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== 'none') {
    throw new ModelConfigError(`RoPE scaling "${scaling}" is not supported yet.`);
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

export const LAYER_TENSORS = [
  'attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down',
] as const;
export type LayerTensor = (typeof LAYER_TENSORS)[number];

/** Expected ggml shapes ([row length, rows]) of every tensor, to check a file against its metadata. */
function expectedShape(cfg: ModelConfig, name: string): number[] {
  const q = cfg.nHeads * cfg.headDim;
  const kv = cfg.nKvHeads * cfg.headDim;
  const kind = name.replace(/^blk\.\d+\./, '').replace(/\.weight$/, '');
  switch (kind) {
    case 'token_embd': return [cfg.dim, cfg.vocab];
    case 'output': return [cfg.dim, cfg.vocab];
    case 'output_norm': case 'attn_norm': case 'ffn_norm': return [cfg.dim];
    case 'attn_q': return [cfg.dim, q];
    case 'attn_k': case 'attn_v': return [cfg.dim, kv];
    case 'attn_output': return [q, cfg.dim];
    case 'ffn_gate': case 'ffn_up': return [cfg.dim, cfg.ffn];
    case 'ffn_down': return [cfg.ffn, cfg.dim];
    default: throw new ModelConfigError(`no expected shape for tensor ${name}`);
  }
}

export function tensorNames(cfg: ModelConfig, part: Part): string[] {
  const names: string[] = [];
  if (part.head) {
    names.push('token_embd.weight', 'output_norm.weight');
    if (!cfg.tiedOutput) names.push('output.weight');
  }
  for (let l = part.start; l < part.end; l++) for (const t of LAYER_TENSORS) names.push(`blk.${l}.${t}.weight`);
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
