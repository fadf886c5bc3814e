// Weight tensors on the GPU, in their GGUF encoding. A matrix larger than one storage binding is split by rows over
// several buffers, each dispatched with its row offset. Norm vectors (tiny) are stored as f32.
// Tensors are read from the file one at a time (or one part at a time), so loading never holds the whole file.

import { InvalidArgumentError } from '../model/errors';
import { readBytes, type GgufFile, type TensorEntry } from '../model/gguf';
import { blockFormat, byteSize, dequantize, type TensorTypeName } from '../model/quant';
import { storageBuffer, uploadBuffer, writeBufferPadded, type FlockDevice } from './device';
import { makeOp, grid2d, type Op } from './pipelines';
import { MATVEC_WG, matvecThreadsPerRow, TILE_R, TILE_T } from './kernels/matmul';
import { matvecMultiGroups, matvecMultiStorageBuffers, type MatvecMultiVariant } from './kernels/matvec-multi';
import { rowBytes } from './kernels/weights-wgsl';

export interface WeightPart {
  buffer: GPUBuffer;
  rowBase: number;
  rows: number;
}

export interface GpuMatrix {
  name: string;
  type: TensorTypeName;
  /** row length */
  K: number;
  /** total rows */
  rows: number;
  parts: WeightPart[];
  bytes: number;
}

export interface LoadCounter {
  loaded: number;
  onBytes?: (n: number) => void;
}

/** Bytes read and written per piece while uploading (a multiple of 4, as writeBuffer offsets must be). 16 MiB keeps
 *  memory flat while loading multi-gigabyte files and keeps the number of reads (HTTP Range requests) low. */
export const UPLOAD_PIECE_BYTES = 16 << 20;

/** Rows [start, start + count) of a stored tensor: a logical weight inside a fused one (phi3's attn_qkv). */
export interface RowRange {
  start: number;
  count: number;
}

/** Upload a 2-D tensor (or a range of its rows), split into parts of at most `maxPartBytes` (whole rows). */
export async function uploadMatrix(
  dev: FlockDevice, file: GgufFile, t: TensorEntry, maxPartBytes: number, counter?: LoadCounter, signal?: AbortSignal,
  range?: RowRange,
): Promise<GpuMatrix> {
  const f = blockFormat(t.type, t.name);
  const K = t.dims[0];
  const rows = range?.count ?? t.dims[1] ?? 1;
  const rb = rowBytes(f.name, K);
  const base = t.offset + (range?.start ?? 0) * rb;
  // keep 16 bytes of slack per part for the two-word reads of unaligned block fields
  const rowsPerPart = Math.max(1, Math.floor((maxPartBytes - 16) / rb));
  const parts: WeightPart[] = [];
  for (let r0 = 0; r0 < rows; r0 += rowsPerPart) {
    signal?.throwIfAborted();
    const n = Math.min(rowsPerPart, rows - r0);
    const buffer = storageBuffer(dev, `${t.name}[${r0}:${r0 + n}]`, n * rb + 16);
    try {
      // stream the part in pieces so a large tensor never sits whole in JS memory
      for (let o = 0; o < n * rb; o += UPLOAD_PIECE_BYTES) {
        signal?.throwIfAborted();
        const len = Math.min(UPLOAD_PIECE_BYTES, n * rb - o);
        const bytes = await readBytes(file, base + r0 * rb + o, len, signal);
        writeBufferPadded(dev, buffer, o, bytes);
        if (counter) {
          counter.loaded += bytes.byteLength;
          counter.onBytes?.(counter.loaded);
        }
      }
    } catch (e) {
      buffer.destroy();
      for (const p of parts) p.buffer.destroy();
      throw e;
    }
    parts.push({ buffer, rowBase: r0, rows: n });
  }
  return { name: t.name, type: f.name, K, rows, parts, bytes: rows * rb };
}

/** Upload a 1-D tensor (a norm weight) as f32. */
export async function uploadVector(dev: FlockDevice, file: GgufFile, t: TensorEntry, counter?: LoadCounter): Promise<GPUBuffer> {
  const f = blockFormat(t.type, t.name);
  const bytes = await readBytes(file, t.offset, byteSize(f, t.nElems));
  if (counter) {
    counter.loaded += bytes.byteLength;
    counter.onBytes?.(counter.loaded);
  }
  return uploadBuffer(dev, t.name, dequantize(f, bytes, 0, t.nElems));
}

/** One matrix of a fused matvec: weights, the buffer its outputs go to, and an optional per-row bias. */
export interface MatvecTarget {
  W: GpuMatrix;
  Y: GPUBuffer;
  bias?: GPUBuffer;
}

/**
 * Ops computing Y_i = X @ W_i^T for matrices that share X (and its norm): as few matvec_multi dispatches as the
 * device's storage-buffer limit allows, in the order given. A matrix split over several buffers (larger than one
 * binding) keeps its own matmulOps. Outputs are bit-identical to matmulOps per matrix (kernels/matvec-multi.ts).
 */
export function matvecMultiOps(
  dev: FlockDevice, targets: readonly MatvecTarget[], X: GPUBuffer, params: GPUBuffer, norm?: { weight: GPUBuffer; eps: number },
): Op[] {
  const K = targets[0].W.K;
  if (targets.some((t) => t.W.K !== K)) throw new InvalidArgumentError('Fused matrices must share their row length.');
  const limit = dev.device.limits.maxStorageBuffersPerShaderStage;
  const threads = matvecThreadsPerRow(K, dev.matvecSteps);
  const ops: Op[] = [];
  let group: MatvecTarget[] = [];
  const flush = () => {
    if (group.length === 1) {
      const t = group[0];
      ops.push(...matmulOps(dev, t.W, X, t.Y, params, false, false, t.bias, norm ? { kind: 'norm', ...norm } : undefined));
    } else if (group.length > 1) {
      const v: MatvecMultiVariant = {
        op: 'matvec_multi', K, threads,
        mats: group.map((t) => ({ type: t.W.type, rows: t.W.rows, ...(t.bias ? { bias: true } : {}) })),
        ...(norm ? { input: { kind: 'norm' as const, eps: norm.eps } } : {}),
      };
      const buffers = [X, params, ...(norm ? [norm.weight] : []), ...group.flatMap((t) => [t.W.parts[0].buffer, t.Y, ...(t.bias ? [t.bias] : [])])];
      const count = matvecMultiGroups(v).reduce((a, b) => a + b, 0);
      const bytes = group.reduce((a, t) => a + t.W.bytes, 0);
      ops.push(makeOp(dev, v, buffers, (n) => [...grid2d(count), n], (n) => bytes * n));
    }
    group = [];
  };
  for (const t of targets) {
    if (t.W.parts.length > 1) {
      flush();
      group = [t];
      flush();
      continue;
    }
    const mats = [...group, t].map((g) => ({ type: g.W.type, rows: g.W.rows, bias: g.bias !== undefined }));
    if (matvecMultiStorageBuffers(mats, norm !== undefined) > limit) flush();
    group.push(t);
  }
  flush();
  return ops;
}

/** Largest batch the decode kernel (matvec) handles; larger batches use the tiled kernel. */
export const MATVEC_MAX_N = 4;

/**
 * Ops computing Y[:, rows] (+)= X @ W^T for one matrix, one op per part.
 * `tiled` picks the prefill kernel; decode uses matvec with the token index in z.
 */
/** A matvec's fused input (kernels/matmul.ts MatmulVariant.input): X normalised with weight `weight`, or silu(X) * U. */
export type FusedInput = { kind: 'norm'; weight: GPUBuffer; eps: number } | { kind: 'glu'; U: GPUBuffer };

export function matmulOps(
  dev: FlockDevice, W: GpuMatrix, X: GPUBuffer, Y: GPUBuffer, params: GPUBuffer, tiled: boolean, accumulate: boolean,
  bias?: GPUBuffer, input?: FusedInput,
): Op[] {
  if (input && tiled) throw new InvalidArgumentError('Fused inputs are for the matvec kernel only.');
  const threads = matvecThreadsPerRow(W.K, dev.matvecSteps);
  return W.parts.map((part) => {
    const v = {
      op: tiled ? ('tiled' as const) : ('matvec' as const),
      type: W.type, K: W.K, rows: part.rows, rowBase: part.rowBase, outStride: W.rows, accumulate,
      ...(bias ? { bias: true } : {}),
      ...(tiled ? {} : { threads }),
      ...(input ? { input: input.kind === 'norm' ? { kind: 'norm' as const, eps: input.eps } : { kind: 'glu' as const } } : {}),
    };
    const extra = !input ? [] : input.kind === 'norm' ? [input.weight] : [input.U];
    const buffers = [part.buffer, X, Y, params, ...(bias ? [bias] : []), ...extra];
    const partBytes = part.rows * rowBytes(W.type, W.K);
    if (tiled) {
      return makeOp(dev, v, buffers,
        (n) => [Math.ceil(part.rows / TILE_R), Math.ceil(n / TILE_T), 1],
        (n) => partBytes * Math.ceil(n / TILE_T));
    }
    return makeOp(dev, v, buffers,
      (n) => [...grid2d(Math.ceil(part.rows / (MATVEC_WG / threads))), n],
      (n) => partBytes * n);
  });
}
