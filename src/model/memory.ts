// How much GPU memory a model needs at a given context, and whether that fits a device: the weights as the GPU keeps
// them (matrices in their GGUF encoding, vectors as f32), the KV cache (f32 K and V per layer and position, as
// GpuStage keeps them), and the working buffers a local model allocates. Pure functions over plain numbers, so the
// model picker, Contribute mode and hosts agree on one answer before anything is fetched or allocated.
// Not here: the device's limits (the engine worker reads them) or words for the user (the UI writes those).

import { partTensors, type ModelConfig } from './config';
import type { GgufFile } from './gguf';
import { blockFormat, byteSize } from './quant';

/** Bytes per K or V value in the cache: f32. */
export const KV_VALUE_BYTES = 4;
/** Most prompt tokens per prefill submission a local model sizes its working buffers for (LocalModel's default). */
export const DEFAULT_MAX_BATCH = 64;
/** Positions a conversation may hold when nobody chose (LocalModel's default; never more than the model's own). */
export const DEFAULT_CONTEXT = 2048;
/** The shortest context the picker offers: a few turns of chat. */
export const MIN_CONTEXT = 512;
/** Ids the repetition penalty reads (GpuHead's MAX_PENALTY_IDS), 4 bytes each. */
const PENALTY_IDS = 4096;

/** The numbers of a model's shape that memory depends on (ModelConfig has them all). */
export type MemoryShape = Pick<ModelConfig, 'nLayers' | 'dim' | 'nHeads' | 'nKvHeads' | 'headDim' | 'ffn' | 'vocab' | 'ropeDim' | 'ctx'>;

/** A model's weights on the GPU: their bytes, and the longest row (a row is never split across buffers). */
export interface WeightSizes {
  bytes: number;
  largestRow: number;
}

/** What a model needs at one context, in bytes. */
export interface MemoryNeed {
  context: number;
  weights: number;
  /** K and V of every layer for `context` positions */
  kvCache: number;
  /** activations, the RoPE table, logits and the other working buffers */
  work: number;
  total: number;
  /** one layer's K (or V) cache: the largest buffer that grows with the context, bound whole */
  kvBuffer: number;
  /** the RoPE table, bound whole */
  ropeTable: number;
  largestRow: number;
}

/** Weight bytes of the whole model as the GPU keeps it (validating every tensor on the way; fetches nothing). */
export function weightSizes(file: GgufFile, cfg: ModelConfig): WeightSizes {
  let bytes = 0;
  let largestRow = 0;
  for (const t of partTensors(file, cfg, { start: 0, end: cfg.nLayers, head: true }).values()) {
    if (t.name === 'rope_freqs.weight') continue; // read into the RoPE table, not kept
    const f = blockFormat(t.type, t.name);
    if (t.dims.length === 1) {
      bytes += t.nElems * 4; // vectors are uploaded as f32
      continue;
    }
    bytes += byteSize(f, t.nElems);
    largestRow = Math.max(largestRow, byteSize(f, t.dims[0]));
  }
  return { bytes, largestRow };
}

/** One layer's K (or V) cache buffer for `context` positions. */
export function kvBufferBytes(s: Pick<MemoryShape, 'nKvHeads' | 'headDim'>, context: number): number {
  return context * s.nKvHeads * s.headDim * KV_VALUE_BYTES;
}

/** KV cache bytes one layer needs for `context` positions (its K and its V). */
export function layerKvBytes(s: Pick<MemoryShape, 'nKvHeads' | 'headDim'>, context: number): number {
  return 2 * kvBufferBytes(s, context);
}

/** Memory a whole local model needs at `context` positions. */
export function memoryAt(s: MemoryShape, w: WeightSizes, context: number, maxBatch = DEFAULT_MAX_BATCH): MemoryNeed {
  const f32 = 4;
  const q = s.nHeads * s.headDim;
  const kv = s.nKvHeads * s.headDim;
  const ropeTable = context * s.ropeDim * f32;
  // GpuStage's scratch (xn, q, k, v, att, g, u), the hidden states shared by Head and Stages, the Head's buffers
  const scratch = maxBatch * (s.dim + 2 * q + 2 * kv + 2 * s.ffn) * f32;
  const head = maxBatch * s.dim * f32 + maxBatch * 4 + s.dim * f32 + s.vocab * f32 + PENALTY_IDS * 4;
  const kvCache = s.nLayers * layerKvBytes(s, context);
  const work = scratch + head + ropeTable;
  return {
    context, weights: w.bytes, kvCache, work, total: w.bytes + kvCache + work,
    kvBuffer: kvBufferBytes(s, context), ropeTable, largestRow: w.largestRow,
  };
}

/** What a device allows: its largest buffer, its largest binding, and the memory the app may use (null: unknown). */
export interface MemoryLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  budget: number | null;
}

/** Why a model does not fit at some context. */
export type MemoryProblem =
  | { kind: 'budget'; need: number; budget: number }
  | { kind: 'buffer'; what: 'kv-cache' | 'rope-table' | 'weight-row'; bytes: number; limit: number; limitName: 'maxBufferSize' | 'maxStorageBufferBindingSize' };

/** Everything that keeps `need` from fitting `limits` (empty: it fits). */
export function memoryProblems(need: MemoryNeed, limits: MemoryLimits): MemoryProblem[] {
  const out: MemoryProblem[] = [];
  const binding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const limitName = limits.maxStorageBufferBindingSize <= limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
  // a weight part keeps 16 bytes of slack after its rows (gpu/weights.ts)
  if (need.largestRow + 16 > binding) out.push({ kind: 'buffer', what: 'weight-row', bytes: need.largestRow + 16, limit: binding, limitName });
  if (need.kvBuffer > binding) out.push({ kind: 'buffer', what: 'kv-cache', bytes: need.kvBuffer, limit: binding, limitName });
  if (need.ropeTable > binding) out.push({ kind: 'buffer', what: 'rope-table', bytes: need.ropeTable, limit: binding, limitName });
  if (limits.budget !== null && need.total > limits.budget) out.push({ kind: 'budget', need: need.total, budget: limits.budget });
  return out;
}

/** The contexts a user may choose for a model: powers of two from MIN_CONTEXT below its own context, then its own. */
export function contextChoices(modelCtx: number): number[] {
  const out: number[] = [];
  for (let c = MIN_CONTEXT; c < modelCtx; c *= 2) out.push(c);
  out.push(modelCtx);
  return out;
}

/** The context a choice means for this model: 0 is the model's own; never more than the model's own. */
export function effectiveContext(choice: number, modelCtx: number): number {
  return choice > 0 ? Math.min(choice, modelCtx) : modelCtx;
}

/** The longest context at which the model fits `limits`: `upTo` itself, or else the longest shorter choice
 *  (contextChoices); 0 when none fits. */
export function longestFit(s: MemoryShape, w: WeightSizes, limits: MemoryLimits, upTo: number, maxBatch = DEFAULT_MAX_BATCH): number {
  const top = Math.min(upTo, s.ctx);
  const candidates = [...contextChoices(s.ctx).filter((c) => c < top), top];
  const fitting = candidates.filter((c) => memoryProblems(memoryAt(s, w, c, maxBatch), limits).length === 0);
  return fitting.at(-1) ?? 0;
}
