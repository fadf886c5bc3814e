// The op set and its pipeline cache. A kernel variant is plain data; its JSON is both the cache key and the GPU
// object's label, so a validation error names the exact kernel. Adding an op means adding a case here.

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

const caches = new WeakMap<FlockDevice, Map<string, GPUComputePipeline>>();

export function pipelineFor(dev: FlockDevice, v: KernelVariant): GPUComputePipeline {
  let cache = caches.get(dev);
  if (!cache) caches.set(dev, (cache = new Map()));
  const key = JSON.stringify(v);
  let p = cache.get(key);
  if (!p) {
    const module = dev.device.createShaderModule({ label: key, code: kernelSource(v) });
    p = dev.device.createComputePipeline({ label: key, layout: 'auto', compute: { module, entryPoint: 'main' } });
    cache.set(key, p);
  }
  return p;
}

/** A recorded dispatch: a pipeline, its bindings, and how many workgroups it needs for a batch of n tokens. */
export interface Op {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  grid: (n: number) => [number, number, number];
  /** weight bytes this dispatch reads for n tokens (0 for ops without weights) */
  weightBytes: (n: number) => number;
  /** the kernel and, for matrix kernels, the weight type ("matvec q4_k"): what the profiler sums by */
  kind: string;
}

export function makeOp(
  dev: FlockDevice,
  v: KernelVariant,
  buffers: GPUBuffer[],
  grid: Op['grid'],
  weightBytes: Op['weightBytes'] = () => 0,
): Op {
  const pipeline = pipelineFor(dev, v);
  const bindGroup = dev.device.createBindGroup({
    label: JSON.stringify(v),
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const kind = v.op === 'matvec_multi'
    ? `matvec ${[...new Set(v.mats.map((m) => m.type))].join('+')}`
    : 'type' in v && typeof v.type === 'string' ? `${v.op} ${v.type}` : v.op;
  return { pipeline, bindGroup, grid, weightBytes, kind };
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
    pass.setPipeline(op.pipeline);
    pass.setBindGroup(0, op.bindGroup);
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
