// Small helpers for GPU kernel and stage tests: an in-memory GGUF-like file (so `uploadMatrix` can be fed bytes made by
// `quantize` without writing a file), uniform and storage buffers, one-submission runs of a list of ops, readback,
// seeded test values and error measures. Not here: the shared device (gpu.ts) or any oracle (the tests hold those).

import { encodeReadback, storageBuffer, submit, uploadBuffer, type FlockDevice } from '../../src/gpu/device';
import { encodeParams, PARAMS_BYTES, type StepParams } from '../../src/gpu/kernels/params';
import { encodeOps, makeOp, type Op } from '../../src/gpu/pipelines';
import { matmulOps, uploadMatrix } from '../../src/gpu/weights';
import type { GgufFile, TensorEntry } from '../../src/model/gguf';
import { blockFormat, byteSize, dequantize } from '../../src/model/quant';
import type { ByteSource } from '../../src/model/source';
import { expect } from 'vitest';
import { FixtureRng } from './llama-fixture';
import { quantize } from './quantize';

/** A ByteSource over bytes in memory. */
class MemorySource implements ByteSource {
  bytesFetched = 0;
  readonly name = 'memory';
  constructor(private readonly bytes: Uint8Array) {}
  async size(): Promise<number> {
    return this.bytes.byteLength;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = this.bytes.slice(offset, offset + length);
    this.bytesFetched += out.byteLength;
    return out;
  }
}

export interface MemoryTensor {
  name: string;
  /** ggml order: dims[0] is the row length */
  dims: number[];
  type: number;
  data: Uint8Array;
}

/** A GgufFile whose tensors live in memory (32-byte aligned, as in a real file); enough for uploadMatrix/Vector. */
export function gpuMemoryFile(tensors: readonly MemoryTensor[]): GgufFile {
  const entries = new Map<string, TensorEntry>();
  let size = 0;
  for (const t of tensors) {
    const nElems = t.dims.reduce((a, b) => a * b, 1);
    if (byteSize(blockFormat(t.type, t.name), nElems) !== t.data.byteLength) {
      throw new Error(`gpuMemoryFile: ${t.name} has ${t.data.byteLength} bytes, not the size of its dims and type`);
    }
    entries.set(t.name, { name: t.name, dims: t.dims, type: t.type, offset: size, nElems });
    size = Math.ceil((size + t.data.byteLength) / 32) * 32;
  }
  const bytes = new Uint8Array(size);
  for (const t of tensors) bytes.set(t.data, entries.get(t.name)!.offset);
  return { source: new MemorySource(bytes), metadata: {}, tensors: entries, fileSize: size, dataOffset: 0 };
}

/** A uniform Params buffer holding `p`. */
export function gpuParams(dev: FlockDevice, p: StepParams): GPUBuffer {
  const b = dev.device.createBuffer({ label: 'test params', size: PARAMS_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  dev.device.queue.writeBuffer(b, 0, encodeParams(p));
  return b;
}

export function gpuWriteParams(dev: FlockDevice, b: GPUBuffer, p: StepParams): void {
  dev.device.queue.writeBuffer(b, 0, encodeParams(p));
}

/** A storage buffer holding `data` (f32 or u32). */
export function gpuUpload(dev: FlockDevice, data: Float32Array | Uint32Array, label = 'test data'): GPUBuffer {
  return uploadBuffer(dev, label, data);
}

/** A storage buffer of `elems` f32, every element `fill` (a sentinel that shows which elements a kernel wrote). */
export function gpuFilled(dev: FlockDevice, elems: number, fill: number, label = 'test out'): GPUBuffer {
  return gpuUpload(dev, new Float32Array(elems).fill(fill), label);
}

/** Encode `ops` for n tokens in one pass, submit, and read back `elems` f32 of `out`. */
export async function gpuRun(dev: FlockDevice, ops: readonly Op[], n: number, out: GPUBuffer, elems: number): Promise<Float32Array> {
  const enc = dev.device.createCommandEncoder({ label: 'test run' });
  encodeOps(dev, enc, ops, n, 'test');
  const read = encodeReadback(dev, enc, out, elems * 4);
  submit(dev, enc);
  return new Float32Array(await read());
}

/** Read back `elems` f32 of a buffer. */
export async function gpuRead(dev: FlockDevice, buf: GPUBuffer, elems: number): Promise<Float32Array> {
  const enc = dev.device.createCommandEncoder({ label: 'test read' });
  const read = encodeReadback(dev, enc, buf, elems * 4);
  submit(dev, enc);
  return new Float32Array(await read());
}

/** An empty f32 storage buffer of `elems` elements. */
export function gpuScratch(dev: FlockDevice, elems: number, label = 'test scratch'): GPUBuffer {
  return storageBuffer(dev, label, elems * 4);
}

/** Seeded N(0, scale²) values (FixtureRng: identical on every machine). */
export function gpuRandom(n: number, seed: number, scale = 1): Float32Array {
  const rng = new FixtureRng(seed);
  return Float32Array.from({ length: n }, () => scale * rng.normal());
}

/** Largest |a[i] - b[i]|. */
export function gpuMaxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`gpuMaxAbsDiff: lengths ${a.length} and ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN propagates as NaN
  }
  return m;
}

/** Index of the largest value (the first on ties). */
export function gpuArgmax(a: ArrayLike<number>, from = 0, to = a.length): number {
  let best = from;
  for (let i = from + 1; i < to; i++) if (a[i] > a[best]) best = i;
  return best - from;
}

/**
 * The embed kernel against dequantize() of the id rows, bit for bit (decoding rounds nothing), for a vocabulary of 50
 * rows of `dim` values of type `typeId`: whole, and split over parts of 7 rows so ROW_BASE is exercised.
 */
export async function checkEmbed(dev: FlockDevice, typeId: number, dim: number, values: Float32Array): Promise<void> {
  const vocab = 50;
  const bytes = quantize(typeId, values);
  const table = dequantize(blockFormat(typeId), bytes, 0, vocab * dim);
  const file = gpuMemoryFile([{ name: 'token_embd.weight', dims: [dim, vocab], type: typeId, data: bytes }]);
  const rb = bytes.byteLength / vocab;
  const ids = [0, 6, 7, 13, 49, 7, 22, 48, 1];
  const n = ids.length;
  const Ids = gpuUpload(dev, new Uint32Array(ids));
  const P = gpuParams(dev, { n, pos0: 0 });
  for (const maxPart of [1 << 30, 16 + 7 * rb]) {
    const M = await uploadMatrix(dev, file, file.tensors.get('token_embd.weight')!, maxPart);
    const X = gpuFilled(dev, (n + 1) * dim, 12345);
    const ops: Op[] = M.parts.map((part) =>
      makeOp(dev, { op: 'embed', type: M.type, dim, rows: part.rows, rowBase: part.rowBase },
        [part.buffer, Ids, X, P], (nn) => [Math.ceil(dim / 4 / 64), nn, 1]));
    const got = await gpuRun(dev, ops, n, X, (n + 1) * dim);
    const exp = new Float32Array((n + 1) * dim).fill(12345);
    ids.forEach((id, t) => exp.set(table.subarray(id * dim, (id + 1) * dim), t * dim));
    expect(M.parts.length).toBe(maxPart === 1 << 30 ? 1 : Math.ceil(vocab / 7));
    expect(Array.from(got)).toEqual(Array.from(exp));
    X.destroy();
    for (const p of M.parts) p.buffer.destroy();
  }
  Ids.destroy();
  P.destroy();
}

export interface MatmulCheck {
  /** the device the ops are built for (a copy of the shared one with another matvec split, say) */
  dev: FlockDevice;
  typeId: number;
  op: 'matvec' | 'tiled';
  K: number;
  rows: number;
  /** rows per part of the split upload (so ROW_BASE != 0) */
  splitRows: number;
  seed: number;
  /** token counts to run */
  ns: readonly number[];
  /** largest |gpu - exact| / (sum_k |W[r,k] X[t,k]| + |Y0|) allowed */
  rel: number;
  /** called with every measured worst error (for the test file's record of errors) */
  record: (key: string, worst: number) => void;
}

/**
 * Y (+)= X · Wᵀ on the GPU against the CPU twin (dequantize + f64 product), once per upload: `whole` (one part) and
 * split into parts of `splitRows` rows. Accumulate alternates per n for matvec; for tiled (whose variants are
 * expensive to compile) the whole matrix overwrites and the split one accumulates. Weights are uploaded with the
 * device of `c.dev`, which may be a copy of the shared device with another matvec split.
 */
export async function checkMatmul(c: MatmulCheck): Promise<void> {
  const { typeId, op, K, rows, splitRows, seed, ns, rel } = c;
  const up = c.dev;
  const fmt = blockFormat(typeId);
  const bytes = quantize(typeId, gpuRandom(rows * K, seed, 0.5));
  const W = dequantize(fmt, bytes, 0, rows * K);
  const file = gpuMemoryFile([{ name: 'w', dims: [K, rows], type: typeId, data: bytes }]);
  const rb = byteSize(fmt, K);
  expect(rb * rows).toBe(bytes.byteLength);
  const mats = [
    await uploadMatrix(up, file, file.tensors.get('w')!, 1 << 30),
    await uploadMatrix(up, file, file.tensors.get('w')!, 16 + splitRows * rb), // uploadMatrix keeps 16 bytes of slack per part
  ];
  expect(mats[0].parts.length).toBe(1);
  expect(mats[1].parts.length).toBe(Math.ceil(rows / splitRows));
  const Xall = gpuRandom(Math.max(...ns) * K, seed + 1);
  const X = gpuUpload(up, Xall);
  const P = gpuParams(up, { n: 1, pos0: 0 });
  for (const [mi, M] of mats.entries()) {
    for (const [ni, n] of ns.entries()) {
      const accumulate = op === 'tiled' ? mi === 1 : (ni + mi) % 2 === 1;
      const Y0 = gpuRandom(n * rows, seed + 2 + ni);
      const Y = accumulate ? gpuUpload(up, Y0) : gpuFilled(up, n * rows, 12345);
      gpuWriteParams(up, P, { n, pos0: 0 });
      const got = await gpuRun(up, matmulOps(c.dev, M, X, Y, P, op === 'tiled', accumulate), n, Y, n * rows);
      let worst = 0;
      for (let t = 0; t < n; t++) {
        for (let r = 0; r < rows; r++) {
          let s = 0;
          let mag = 0;
          for (let k = 0; k < K; k++) {
            const p = W[r * K + k] * Xall[t * K + k];
            s += p;
            mag += Math.abs(p);
          }
          const y0 = accumulate ? Y0[t * rows + r] : 0;
          const err = Math.abs(got[t * rows + r] - (s + y0)) / (mag + Math.abs(y0) + 1e-30);
          if (!(err <= worst)) worst = err; // NaN sticks
        }
      }
      c.record(`matmul ${op} ${fmt.name} K ${K} (relative to sum|w·x|; bound ${rel.toExponential(1)})`, worst);
      expect(worst, `${op} ${fmt.name} K=${K} rows=${rows} n=${n} parts=${M.parts.length} acc=${accumulate}`).toBeLessThanOrEqual(rel);
      Y.destroy();
    }
  }
  for (const M of mats) for (const p of M.parts) p.buffer.destroy();
  X.destroy();
  P.destroy();
}
