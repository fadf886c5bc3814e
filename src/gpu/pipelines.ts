// The op set and its pipeline cache. A kernel variant is plain data; its JSON is both the cache key and the GPU
// object's label, so a validation error names the exact kernel. Adding an op means adding a case here.
// Building an op compiles nothing: its pipeline and bind group are made when it is first encoded, from the cache.
// compilePipelines fills the cache ahead with createComputePipelineAsync, all variants at once, so a model can
// compile every kernel it will run while it loads (LocalModel.load) instead of at its first reply.

import type { FlockDevice } from './device';
import { attentionWgsl, type AttentionVariant } from './kernels/attention';
import { embedWgsl, type EmbedVariant } from './kernels/embed';
import { matmulWgsl, type MatmulVariant } from './kernels/matmul';
import { matvecMultiWgsl, type MatvecMultiVariant } from './kernels/matvec-multi';
import { rmsNormWgsl, type RmsNormVariant } from './kernels/rmsnorm';
import { ropeKvWgsl, type RopeKvVariant } from './kernels/rope-kv';
import { swigluWgsl, type SwigluVariant } from './kernels/swiglu';
import { penaltyWgsl, topKWgsl, type PenaltyVariant, type TopKVariant } from './kernels/topk';

export type KernelVariant =
  | MatmulVariant
  | MatvecMultiVariant
  | RmsNormVariant
  | RopeKvVariant
  | AttentionVariant
  | SwigluVariant
  | EmbedVariant
  | TopKVariant
  | PenaltyVariant;

export function kernelSource(v: KernelVariant): string {
  switch (v.op) {
    case 'matvec':
    case 'tiled':
      return matmulWgsl(v);
    case 'matvec_multi':
      return matvecMultiWgsl(v);
    case 'rmsnorm':
      return rmsNormWgsl(v);
    case 'rope_kv':
      return ropeKvWgsl(v);
    case 'attention':
      return attentionWgsl(v);
    case 'swiglu':
      return swigluWgsl(v);
    case 'embed':
      return embedWgsl(v);
    case 'topk':
      return topKWgsl(v);
    case 'penalty':
      return penaltyWgsl(v);
    default: {
      const never: never = v;
      throw new Error(`unknown kernel ${JSON.stringify(never)}`);
    }
  }
}

interface PipelineCache {
  ready: Map<string, GPUComputePipeline>;
  /** being compiled by compilePipelines */
  pending: Map<string, Promise<void>>;
  /** compiled at first use, blocking the thread that encodes (what compilePipelines exists to avoid) */
  compiledAtUse: number;
  /** compiled ahead by compilePipelines */
  compiledAhead: number;
}

const caches = new WeakMap<FlockDevice, PipelineCache>();

function cacheOf(dev: FlockDevice): PipelineCache {
  let c = caches.get(dev);
  if (!c) caches.set(dev, (c = { ready: new Map(), pending: new Map(), compiledAtUse: 0, compiledAhead: 0 }));
  return c;
}

const keyOf = (v: KernelVariant): string => JSON.stringify(v);

export function pipelineFor(dev: FlockDevice, v: KernelVariant): GPUComputePipeline {
  const cache = cacheOf(dev);
  const key = keyOf(v);
  let p = cache.ready.get(key);
  if (!p) {
    const module = dev.device.createShaderModule({ label: key, code: kernelSource(v) });
    p = dev.device.createComputePipeline({ label: key, layout: 'auto', compute: { module, entryPoint: 'main' } });
    cache.ready.set(key, p);
    cache.compiledAtUse++;
  }
  return p;
}

/** Pipelines this device compiled ahead (compilePipelines) and at first use (tests check a loaded model needs none). */
export function pipelineCounts(dev: FlockDevice): { ahead: number; atUse: number } {
  const c = cacheOf(dev);
  return { ahead: c.compiledAhead, atUse: c.compiledAtUse };
}

/**
 * Compile every variant not in the cache yet, all at once (createComputePipelineAsync: the implementation may compile
 * them in parallel, off the calling thread). `onCompiled(done, total)` follows the ones this call compiles (variants
 * another call is already compiling are awaited, not counted); resolves when all are ready.
 */
export async function compilePipelines(
  dev: FlockDevice, variants: readonly KernelVariant[], onCompiled?: (done: number, total: number) => void,
): Promise<void> {
  const cache = cacheOf(dev);
  const todo = new Map<string, KernelVariant>();
  const others: Promise<void>[] = [];
  for (const v of variants) {
    const key = keyOf(v);
    const pending = cache.pending.get(key);
    if (pending) others.push(pending);
    else if (!cache.ready.has(key)) todo.set(key, v);
  }
  let done = 0;
  onCompiled?.(0, todo.size);
  const mine = [...todo].map(([key, v]) => {
    const compiled = (async () => {
      const module = dev.device.createShaderModule({ label: key, code: kernelSource(v) });
      const p = await dev.device.createComputePipelineAsync({ label: key, layout: 'auto', compute: { module, entryPoint: 'main' } });
      if (!cache.ready.has(key)) {
        cache.ready.set(key, p);
        cache.compiledAhead++;
      }
      onCompiled?.(++done, todo.size);
    })().finally(() => cache.pending.delete(key));
    cache.pending.set(key, compiled);
    return compiled;
  });
  await Promise.all([...mine, ...others]);
}

/**
 * A recorded dispatch: a kernel variant, its bindings, and how many workgroups it needs for a batch of n tokens. Its
 * pipeline and bind group are made at its first encode.
 */
export interface Op {
  readonly variant: KernelVariant;
  readonly buffers: readonly GPUBuffer[];
  grid: (n: number) => [number, number, number];
  /** weight bytes this dispatch reads for n tokens (0 for ops without weights) */
  weightBytes: (n: number) => number;
  /** the kernel and, for matrix kernels, the weight type ("matvec q4_k"): what the profiler sums by */
  kind: string;
  gpu?: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup };
}

export function makeOp(
  _dev: FlockDevice,
  v: KernelVariant,
  buffers: GPUBuffer[],
  grid: Op['grid'],
  weightBytes: Op['weightBytes'] = () => 0,
): Op {
  const kind = v.op === 'matvec_multi'
    ? `matvec ${[...new Set(v.mats.map((m) => m.type))].join('+')}`
    : 'type' in v && typeof v.type === 'string' ? `${v.op} ${v.type}` : v.op;
  return { variant: v, buffers, grid, weightBytes, kind };
}

/** The op's pipeline (from the cache, compiled now if it is not there) and its bind group. */
function materialize(dev: FlockDevice, op: Op): { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup } {
  const pipeline = pipelineFor(dev, op.variant);
  const bindGroup = dev.device.createBindGroup({
    label: keyOf(op.variant),
    layout: pipeline.getBindGroupLayout(0),
    entries: op.buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  return { pipeline, bindGroup };
}

/** Encode ops into one compute pass. */
export function encodeOps(dev: FlockDevice, enc: GPUCommandEncoder, ops: readonly Op[], n: number, label: string): void {
  const t0 = performance.now();
  const profiler = dev.profiler;
  let pass = enc.beginComputePass({ label });
  for (const op of ops) {
    const [x, y, z] = op.grid(n);
    if (x === 0 || y === 0 || z === 0) continue;
    if (profiler) {
      // one pass per dispatch, timed at its start and end
      pass.end();
      pass = enc.beginComputePass({ label: op.kind, timestampWrites: profiler.slot(op.kind) });
    }
    const gpu = (op.gpu ??= materialize(dev, op));
    pass.setPipeline(gpu.pipeline);
    pass.setBindGroup(0, gpu.bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    dev.counters.dispatches++;
    dev.counters.weightBytesRead += op.weightBytes(n);
  }
  pass.end();
  dev.counters.encodeMs += performance.now() - t0;
}

/** Split a count of workgroups over x and y so neither exceeds WebGPU's 65,535 per dimension. */
export function grid2d(count: number): [number, number] {
  if (count <= 65535) return [count, 1];
  const x = 32768;
  return [x, Math.ceil(count / x)];
}
