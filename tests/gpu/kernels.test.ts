// Every WGSL kernel against its CPU twin, on the shared Dawn device (SwiftShader here): matmul (matvec and tiled, each
// weight type, split weights), rmsnorm, rope_kv, attention, swiglu, embed, topk and penalty. Each block states its
// tolerance and why; the largest error measured per kernel is printed at the end of the file.
// Not here: whole layers, Stages or the Head (tests/gpu/stage.test.ts).
//
// Oracles: dequantize() (src/model/quant.ts) for weights, then plain f64 arithmetic for products, softmax and norms,
// and the reference's own functions where the kernel twins one (rmsNorm, applyRope, ropeTable, applyPenaltyInPlace).

import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FlockDevice } from '../../src/gpu/device';
import { attentionWgsl } from '../../src/gpu/kernels/attention';
import { TOPK_CHUNK, TOPK_MAX } from '../../src/gpu/kernels/topk';
import { grid2d, makeOp, type Op } from '../../src/gpu/pipelines';
import { MATVEC_WG, matmulWgsl, matvecThreadsPerRow } from '../../src/gpu/kernels/matmul';
import { matmulOps, matvecMultiOps, uploadMatrix } from '../../src/gpu/weights';
import { GgmlType } from '../../src/model/quant';
import { applyRope, rmsNorm } from '../../src/model/reference';
import { ropeTable } from '../../src/model/rope';
import { applyPenaltyInPlace } from '../../src/model/sampler';
import { expectNoGpuErrors, recordErrors, takeGpuErrors, testDevice } from '../helpers/gpu';
import {
  checkEmbed, checkMatmul, gpuFilled, gpuMaxAbsDiff, gpuMemoryFile, gpuParams, gpuRandom, gpuRead, gpuRun, gpuScratch, gpuUpload,
  gpuWriteParams,
} from '../helpers/gpu-kernels';
import { FixtureRng } from '../helpers/llama-fixture';
import { quantize } from '../helpers/quantize';

let dev: FlockDevice;
beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
});
// A failed test may leave its WebGPU errors behind; they belong to it, not to the next test.
beforeEach(() => {
  takeGpuErrors();
});

/** Largest error seen per check, in the unit its tolerance uses (printed at the end for the record). */
const record = recordErrors('kernels');


// ---------------------------------------------------------------------------------------------------------------
// matmul

const TYPES = [
  // f32/f16: K = 13 and 172 take the unaligned (scalar) reads, K = 64 the vec4 ones; K = 13 < 32 is matvec's
  // one-thread-per-row case (matvecThreadsPerRow = 1, no reduction).
  { name: 'f32', id: GgmlType.F32, shapes: [{ K: 13, rows: 70 }, { K: 64, rows: 5 }, { K: 172, rows: 131 }] },
  { name: 'f16', id: GgmlType.F16, shapes: [{ K: 13, rows: 70 }, { K: 64, rows: 5 }, { K: 172, rows: 131 }] },
  // quants: K = 32·k (one to five blocks per row; 18- and 34-byte blocks put fields at every byte offset).
  { name: 'q8_0', id: GgmlType.Q8_0, shapes: [{ K: 32, rows: 70 }, { K: 96, rows: 5 }, { K: 160, rows: 131 }] },
  { name: 'q4_0', id: GgmlType.Q4_0, shapes: [{ K: 32, rows: 70 }, { K: 96, rows: 5 }, { K: 160, rows: 131 }] },
] as const;
/**
 * The tiled kernel takes ~1 s per variant to compile on SwiftShader (and rowBase, rows and accumulate are all part
 * of the variant), so it runs one shape per type: two unaligned f32/f16 rows, two quant shapes, all rows not a
 * multiple of its 64-row tile. The matvec kernel compiles in ~20 ms and runs every shape.
 */
const TILED_SHAPES: Record<string, { K: number; rows: number }> = {
  f32: { K: 13, rows: 70 }, f16: { K: 172, rows: 131 }, q8_0: { K: 160, rows: 131 }, q4_0: { K: 96, rows: 70 },
};
const NS = [1, 3, 17, 40];

describe('matmul (CPU twin: dequantize + f64 product)', () => {
  // Tolerance: |gpu - exact| <= 1e-5 * sum_k |W[r,k] X[t,k]| (+ |Y0| when accumulating). Both sides use the same
  // dequantized weights (f16 scales times small integers are exact in f32), so the only difference is f32
  // accumulation in the GPU's order: the classical bound for a K-term f32 sum is (K-1)·2^-24·sum|terms|, which is
  // 1.0e-5 for K = 172, the longest row here. Typical errors are ~sqrt(K)·2^-24, far below.
  const REL = 1e-5;

  const check = (typeId: number, op: 'matvec' | 'tiled', K: number, rows: number, splitRows: number, seed: number, d: FlockDevice = dev) =>
    checkMatmul({ dev: d, typeId, op, K, rows, splitRows, seed, ns: NS, rel: REL, record });

  for (const T of TYPES) {
    for (const { K, rows } of T.shapes) {
      it(`matvec ${T.name}: K ${K}, ${rows} rows, n ${NS.join('/')}, whole and in parts of 29 rows, accumulate on/off`, async () => {
        await check(T.id, 'matvec', K, rows, 29, 1000 * T.id + K + rows);
        expectNoGpuErrors();
      });
    }
    // the split a GPU gets (4 vec4 steps per thread, so more threads per row) and the widest one (1 step)
    const longest = T.shapes[T.shapes.length - 1];
    it(`matvec ${T.name} with the GPU split (1 and 4 steps per thread): K ${longest.K}, ${longest.rows} rows`, async () => {
      for (const matvecSteps of [1, 4]) {
        expect(matvecThreadsPerRow(longest.K, matvecSteps)).toBeGreaterThanOrEqual(matvecThreadsPerRow(longest.K));
        await check(T.id, 'matvec', longest.K, longest.rows, 29, 3000 * T.id + longest.K + matvecSteps, { ...dev, matvecSteps });
      }
      expectNoGpuErrors();
    });
    const { K, rows } = TILED_SHAPES[T.name];
    it(`tiled ${T.name}: K ${K}, ${rows} rows, n ${NS.join('/')}, whole (overwrite) and in 2 parts (accumulate)`, async () => {
      await check(T.id, 'tiled', K, rows, Math.ceil(rows / 2), 2000 * T.id + K + rows);
      expectNoGpuErrors();
    });
  }

  // Decode fuses RMSNorm into the products that read it and SwiGLU into Wdown's input. Oracle: the separate kernels
  // (rmsnorm or swiglu, then matvec), themselves checked against their CPU twins above: the same operations in the
  // same order, so the outputs must be equal bit for bit, for every weight type, aligned and unaligned rows, 1..4
  // tokens, whole and split matrices, with a bias.
  describe('matvec with a fused input equals the separate kernels, bit for bit', () => {
    for (const T of TYPES) {
      const { K, rows } = T.shapes[T.shapes.length - 1];
      it(`${T.name}: K ${K}, ${rows} rows`, async () => {
        const bytes = quantize(T.id, gpuRandom(rows * K, 77 + T.id, 0.5));
        const file = gpuMemoryFile([{ name: 'w', dims: [K, rows], type: T.id, data: bytes }]);
        const rb = bytes.byteLength / rows;
        const whole = await uploadMatrix(dev, file, file.tensors.get('w')!, 1 << 30);
        const split = await uploadMatrix(dev, file, file.tensors.get('w')!, 16 + 29 * rb);
        const n = 4;
        const X = gpuUpload(dev, gpuRandom(n * K, 78 + T.id, 3));
        const U = gpuUpload(dev, gpuRandom(n * K, 79 + T.id));
        const Wn = gpuUpload(dev, gpuRandom(K, 80 + T.id));
        const bias = gpuUpload(dev, gpuRandom(rows, 81 + T.id));
        const P = gpuParams(dev, { n, pos0: 0 });
        const eps = 1e-5;
        for (const M of [whole, split]) {
          for (const nn of [1, n]) {
            gpuWriteParams(dev, P, { n: nn, pos0: 0 });
            // norm: rmsnorm into XN, then matvec; against matvec over X with the norm fused
            const XN = gpuScratch(dev, n * K);
            await gpuRun(dev, [makeOp(dev, { op: 'rmsnorm', dim: K, eps, singleRow: false }, [X, Wn, XN, P], (m) => [m, 1, 1])], nn, XN, nn * K);
            const Ys0 = gpuFilled(dev, n * rows, 0);
            const sep = await gpuRun(dev, matmulOps(dev, M, XN, Ys0, P, false, false, bias), nn, Ys0, nn * rows);
            const Yf = gpuFilled(dev, n * rows, 0);
            const fused = await gpuRun(dev, matmulOps(dev, M, X, Yf, P, false, false, bias, { kind: 'norm', weight: Wn, eps }), nn, Yf, nn * rows);
            expect(gpuMaxAbsDiff(fused, sep), `norm ${T.name} parts=${M.parts.length} n=${nn}`).toBe(0);
            // glu: swiglu in place in G, then matvec (accumulating); against matvec over G and U with SwiGLU fused
            const G1 = gpuUpload(dev, await gpuRead(dev, X, n * K));
            const Y0 = gpuRandom(n * rows, 82 + T.id);
            const Ys = gpuUpload(dev, Y0);
            const sepGlu = await gpuRun(dev, [
              makeOp(dev, { op: 'swiglu', ffn: K }, [G1, U, P], (m) => [Math.ceil((m * K) / 64), 1, 1]),
              ...matmulOps(dev, M, G1, Ys, P, false, true),
            ], nn, Ys, nn * rows);
            const Yg = gpuUpload(dev, Y0);
            const fusedGlu = await gpuRun(dev, matmulOps(dev, M, X, Yg, P, false, true, undefined, { kind: 'glu', U }), nn, Yg, nn * rows);
            expect(gpuMaxAbsDiff(fusedGlu, sepGlu), `glu ${T.name} parts=${M.parts.length} n=${nn}`).toBe(0);
            for (const b of [XN, Ys0, Yf, G1, Ys, Yg]) b.destroy();
          }
        }
        for (const M of [whole, split]) for (const p of M.parts) p.buffer.destroy();
        for (const b of [X, U, Wn, bias, P]) b.destroy();
        expectNoGpuErrors();
      });
    }
    it('is refused for the tiled kernel', () => {
      expect(() => matmulWgsl({ op: 'tiled', type: 'f32', K: 8, rows: 8, rowBase: 0, outStride: 8, accumulate: false, input: { kind: 'glu' } })).toThrow(/matvec/);
    });
  });

  // Decode runs Q, K and V (and gate and up) as one dispatch: matvec_multi. Oracle: one matvec per matrix (checked
  // against the CPU twin above), bit for bit: each row's arithmetic is the same in the same order. Mixed weight types
  // (as Q4_K_M mixes them), rows that do not fill a workgroup, a bias on some matrices, the fused norm on and off,
  // 1 and 4 tokens, the SwiftShader and GPU thread splits; a matrix in several buffers and the storage-buffer limit
  // split the group into several dispatches.
  describe('matvec_multi equals one matvec per matrix, bit for bit', () => {
    // three matrices fill the 8 storage buffers with the norm (X, Wn, 3 x (W, Y)); two leave room for biases
    const MIXES = [
      { name: 'q4_0 + q8_0 + f16 (K 160)', K: 160, bias: false, mats: [{ id: GgmlType.Q4_0, rows: 70 }, { id: GgmlType.Q8_0, rows: 21 }, { id: GgmlType.F16, rows: 33 }] },
      { name: 'q4_k + q4_k + q6_k (K 512)', K: 512, bias: false, mats: [{ id: GgmlType.Q4_K, rows: 40 }, { id: GgmlType.Q4_K, rows: 9 }, { id: GgmlType.Q6_K, rows: 9 }] },
      { name: 'f32 x 2 with biases, unaligned (K 13)', K: 13, bias: true, mats: [{ id: GgmlType.F32, rows: 70 }, { id: GgmlType.F32, rows: 5 }] },
    ];
    for (const mix of MIXES) {
      it(mix.name, async () => {
        const { K } = mix;
        const n = 4;
        const mats = await Promise.all(mix.mats.map(async (m, i) => {
          const bytes = quantize(m.id, gpuRandom(m.rows * K, 90 + i + m.id, 0.5));
          const file = gpuMemoryFile([{ name: `w${i}`, dims: [K, m.rows], type: m.id, data: bytes }]);
          return uploadMatrix(dev, file, file.tensors.get(`w${i}`)!, 1 << 30);
        }));
        const X = gpuUpload(dev, gpuRandom(n * K, 95, 3));
        const Wn = gpuUpload(dev, gpuRandom(K, 96));
        const biases = mats.map((M, i) => (mix.bias ? gpuUpload(dev, gpuRandom(M.rows, 97 + i)) : undefined));
        const P = gpuParams(dev, { n, pos0: 0 });
        for (const d of [dev, { ...dev, matvecSteps: 4 }]) {
          for (const norm of [undefined, { weight: Wn, eps: 1e-5 }]) {
            for (const nn of [1, n]) {
              gpuWriteParams(dev, P, { n: nn, pos0: 0 });
              const sep: Float32Array[] = [];
              for (const [i, M] of mats.entries()) {
                const Y = gpuFilled(dev, n * M.rows, 7);
                sep.push(await gpuRun(d, matmulOps(d, M, X, Y, P, false, false, biases[i], norm ? { kind: 'norm', ...norm } : undefined), nn, Y, nn * M.rows));
                Y.destroy();
              }
              const Ys = mats.map((M) => gpuFilled(dev, n * M.rows, 7));
              const ops = matvecMultiOps(d, mats.map((W, i) => ({ W, Y: Ys[i], bias: biases[i] })), X, P, norm);
              expect(ops.length).toBe(1);
              await gpuRun(d, ops, nn, Ys[0], 1);
              for (const [i, M] of mats.entries()) {
                const got = await gpuRead(dev, Ys[i], nn * M.rows);
                expect(gpuMaxAbsDiff(got, sep[i]), `${mix.name} matrix ${i} steps=${d.matvecSteps} norm=${!!norm} n=${nn}`).toBe(0);
              }
              for (const Y of Ys) Y.destroy();
            }
          }
        }
        for (const M of mats) for (const p of M.parts) p.buffer.destroy();
        for (const b of [X, Wn, P, ...biases]) b?.destroy();
        expectNoGpuErrors();
      });
    }

    it('splits into several dispatches at the storage-buffer limit and around a matrix in several buffers', async () => {
      const K = 64;
      const file = gpuMemoryFile([{ name: 'w', dims: [K, 40], type: GgmlType.F32, data: quantize(GgmlType.F32, gpuRandom(40 * K, 98)) }]);
      const whole = await uploadMatrix(dev, file, file.tensors.get('w')!, 1 << 30);
      const split = await uploadMatrix(dev, file, file.tensors.get('w')!, 16 + 16 * K * 4);
      expect(split.parts.length).toBe(3);
      const X = gpuUpload(dev, gpuRandom(K, 99));
      const P = gpuParams(dev, { n: 1, pos0: 0 });
      const B = gpuUpload(dev, gpuRandom(40, 100));
      const Y = () => gpuFilled(dev, 40, 0);
      const limit = dev.device.limits.maxStorageBuffersPerShaderStage;
      // matrices with a bias take 3 storage buffers each, X takes 1: floor((limit - 1) / 3) per dispatch
      const perDispatch = Math.floor((limit - 1) / 3);
      const many = Array.from({ length: perDispatch + 1 }, () => ({ W: whole, Y: Y(), bias: B }));
      expect(matvecMultiOps(dev, many, X, P).length).toBe(2);
      const ref = await gpuRun(dev, matmulOps(dev, whole, X, many[0].Y, P, false, false, B), 1, many[0].Y, 40);
      await gpuRun(dev, matvecMultiOps(dev, many, X, P), 1, many[0].Y, 1);
      for (const t of many) expect(gpuMaxAbsDiff(await gpuRead(dev, t.Y, 40), ref)).toBe(0);
      // [whole, split, whole]: the split matrix keeps its per-part matvecs, the others are not fused across it
      const mixed = [{ W: whole, Y: Y() }, { W: split, Y: Y() }, { W: whole, Y: Y() }];
      const ops = matvecMultiOps(dev, mixed, X, P);
      expect(ops.map((o) => o.kind)).toEqual(['matvec f32', 'matvec f32', 'matvec f32', 'matvec f32', 'matvec f32']);
      await gpuRun(dev, ops, 1, mixed[0].Y, 1);
      const plain = await gpuRun(dev, matmulOps(dev, whole, X, mixed[0].Y, P, false, false), 1, mixed[0].Y, 40);
      for (const t of mixed) expect(gpuMaxAbsDiff(await gpuRead(dev, t.Y, 40), plain)).toBe(0);
      for (const t of [...many, ...mixed]) t.Y.destroy();
      for (const M of [whole, split]) for (const p of M.parts) p.buffer.destroy();
      for (const b of [X, P, B]) b.destroy();
      expectNoGpuErrors();
    });
  });

  it('matvec over a 2-D grid of workgroups (as grid2d splits > 65,535): every row once, nothing past the output', async () => {
    // K 32: 2 threads per row, 32 rows per workgroup; K 4096: 64 threads per row, one row per workgroup.
    for (const { K, rows, grid } of [{ K: 32, rows: 97, grid: [3, 2] }, { K: 4096, rows: 3, grid: [2, 2] }]) {
      const perWg = MATVEC_WG / matvecThreadsPerRow(K);
      expect(grid[0] * grid[1] * perWg).toBeGreaterThanOrEqual(rows); // more workgroups than rows need: guarded
      const values = gpuRandom(rows * K, K + rows, 0.5);
      const file = gpuMemoryFile([{ name: 'w', dims: [K, rows], type: GgmlType.F32, data: quantize(GgmlType.F32, values) }]);
      const M = await uploadMatrix(dev, file, file.tensors.get('w')!, 1 << 30);
      const x = gpuRandom(2 * K, 7);
      const X = gpuUpload(dev, x);
      const Y = gpuFilled(dev, 2 * rows + 8, 12345); // 8 elements past the output must stay untouched
      const P = gpuParams(dev, { n: 2, pos0: 0 });
      const op = makeOp(dev, { op: 'matvec', type: 'f32', K, rows, rowBase: 0, outStride: rows, accumulate: false },
        [M.parts[0].buffer, X, Y, P], (n) => [grid[0], grid[1], n]);
      const got = await gpuRun(dev, [op], 2, Y, 2 * rows + 8);
      for (let t = 0; t < 2; t++) {
        for (let r = 0; r < rows; r++) {
          let s = 0;
          let mag = 0;
          for (let k = 0; k < K; k++) {
            s += values[r * K + k] * x[t * K + k];
            mag += Math.abs(values[r * K + k] * x[t * K + k]);
          }
          // K = 4096: (K-1)·2^-24 ≈ 2.4e-4 is the classical bound; the tree reduction makes it far smaller.
          expect(Math.abs(got[t * rows + r] - s), `K ${K} t ${t} row ${r}`).toBeLessThanOrEqual(2.5e-4 * mag);
        }
      }
      expect(Array.from(got.subarray(2 * rows))).toEqual(new Array(8).fill(12345));
      for (const b of [X, Y, P, ...M.parts.map((p) => p.buffer)]) b.destroy();
    }
    const [gx, gy] = grid2d(70000);
    expect(gx).toBeLessThanOrEqual(65535);
    expect(gx * gy).toBeGreaterThanOrEqual(70000);
    expectNoGpuErrors();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// rmsnorm

describe('rmsnorm (CPU twin: rmsNorm)', () => {
  // Tolerance: relative 1e-5 of each output. The sum of D squares differs only in order (<= D·2^-24 relative, 6e-6
  // for D = 100), then WGSL's sqrt (inherited from inverseSqrt: 2 ULP) and division (2.5 ULP) add a few ULP.
  const REL = 1e-5;
  for (const dim of [13, 100, 200]) {
    it(`dim ${dim}: every row, and singleRow (row P.a into row 0)`, async () => {
      const n = 4;
      const eps = 1e-5;
      const x = gpuRandom(n * dim, dim, 2);
      const w = Float32Array.from(gpuRandom(dim, dim + 1, 0.1), (v) => 1 + v);
      const X = gpuUpload(dev, x);
      const Wn = gpuUpload(dev, w);
      const check = (got: Float32Array, row: number, into: number) => {
        const exp = rmsNorm(x.subarray(row * dim, (row + 1) * dim), w, eps);
        for (let i = 0; i < dim; i++) {
          const err = Math.abs(got[into * dim + i] - exp[i]) / Math.max(Math.abs(exp[i]), 1e-30);
          record('rmsnorm (relative)', err);
          expect(err, `dim ${dim} row ${row} i ${i}`).toBeLessThanOrEqual(REL);
        }
      };
      // all rows: dispatch n + 2 workgroups with P.n = n; rows n, n+1 must stay untouched
      {
        const Y = gpuFilled(dev, (n + 2) * dim, 12345);
        const P = gpuParams(dev, { n, pos0: 0 });
        const op = makeOp(dev, { op: 'rmsnorm', dim, eps, singleRow: false }, [X, Wn, Y, P], (nn) => [nn + 2, 1, 1]);
        const got = await gpuRun(dev, [op], n, Y, (n + 2) * dim);
        for (let t = 0; t < n; t++) check(got, t, t);
        expect(got.subarray(n * dim).every((v) => v === 12345)).toBe(true);
        Y.destroy();
        P.destroy();
      }
      // singleRow: row a of X into row 0 of Y, nothing else written
      for (const a of [0, 2, n - 1]) {
        const Y = gpuFilled(dev, 2 * dim, 12345);
        const P = gpuParams(dev, { n: 1, pos0: 0, a });
        const op = makeOp(dev, { op: 'rmsnorm', dim, eps, singleRow: true }, [X, Wn, Y, P], () => [1, 1, 1]);
        const got = await gpuRun(dev, [op], 1, Y, 2 * dim);
        check(got, a, 0);
        expect(got.subarray(dim).every((v) => v === 12345)).toBe(true);
        Y.destroy();
        P.destroy();
      }
      X.destroy();
      Wn.destroy();
      expectNoGpuErrors();
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// rope_kv

describe('rope_kv (CPU twin: applyRope + the reference cache write)', () => {
  // Tolerance: |gpu - cpu| <= 2^-22 · (|a| + |b|) per rotated element (a, b the input pair). Both rotate by the same
  // f32 cos/sin table; the CPU computes a·c - b·s in f64 and rounds once, the GPU rounds each product (or fuses one
  // into an FMA): at most ~2 roundings of magnitude |a|+|b|. V is copied, so it must match exactly, as must
  // dimensions past ropeDim (not rotated) and every cache position the batch does not own.
  const cases = [
    { nHeads: 4, nKvHeads: 4, headDim: 8, ropeDim: 8, pos0: 0, n: 1, base: 10000 },
    { nHeads: 4, nKvHeads: 2, headDim: 16, ropeDim: 8, pos0: 7, n: 5, base: 10000 }, // ropeDim < headDim, GQA 2
    { nHeads: 8, nKvHeads: 2, headDim: 10, ropeDim: 10, pos0: 30, n: 17, base: 500000 }, // GQA 4, head size 10
    { nHeads: 6, nKvHeads: 3, headDim: 12, ropeDim: 4, pos0: 200, n: 3, base: 10000 },
  ];
  for (const c of cases) {
    it(`heads ${c.nHeads}/${c.nKvHeads}, headDim ${c.headDim}, ropeDim ${c.ropeDim}, positions ${c.pos0}..${c.pos0 + c.n - 1}`, async () => {
      const { nHeads, nKvHeads, headDim: hd, ropeDim, pos0, n } = c;
      const qDim = nHeads * hd;
      const kvDim = nKvHeads * hd;
      const ctx = pos0 + n + 4;
      const q = gpuRandom(n * qDim, pos0 + 1, 2);
      const k = gpuRandom(n * kvDim, pos0 + 2, 2);
      const v = gpuRandom(n * kvDim, pos0 + 3, 2);
      const table = ropeTable({ ropeBase: c.base, ropeDim }, ctx);
      const Q = gpuUpload(dev, q);
      const Kin = gpuUpload(dev, k);
      const Vin = gpuUpload(dev, v);
      const Kc = gpuFilled(dev, ctx * kvDim, 777);
      const Vc = gpuFilled(dev, ctx * kvDim, 888);
      const R = gpuUpload(dev, table);
      const P = gpuParams(dev, { n, pos0 });
      const op = makeOp(dev, { op: 'rope_kv', nHeads, nKvHeads, headDim: hd, ropeDim },
        [Q, Kin, Vin, Kc, Vc, R, P], (nn) => [Math.ceil(((nHeads + nKvHeads) * hd) / 2 / 64), nn, 1]);
      const gotQ = await gpuRun(dev, [op], n, Q, n * qDim);
      const gotK = await gpuRead(dev, Kc, ctx * kvDim);
      const gotV = await gpuRead(dev, Vc, ctx * kvDim);
      // CPU: rotate each token's q and k, write k and v at its position
      const expQ = q.slice();
      const expK = new Float32Array(ctx * kvDim).fill(777);
      const expV = new Float32Array(ctx * kvDim).fill(888);
      for (let t = 0; t < n; t++) {
        const qt = expQ.subarray(t * qDim, (t + 1) * qDim);
        const kt = k.slice(t * kvDim, (t + 1) * kvDim);
        applyRope(qt, nHeads, hd, ropeDim, table, pos0 + t);
        applyRope(kt, nKvHeads, hd, ropeDim, table, pos0 + t);
        expK.set(kt, (pos0 + t) * kvDim);
        expV.set(v.subarray(t * kvDim, (t + 1) * kvDim), (pos0 + t) * kvDim);
      }
      const cmp = (got: Float32Array, exp: Float32Array, input: Float32Array, offset: number, width: number, what: string) => {
        for (let i = 0; i < got.length; i++) {
          const j = i - offset;
          const inside = j >= 0 && j < n * width;
          const d = i % hd;
          if (!inside || d >= ropeDim) {
            expect(got[i], `${what}[${i}] (not rotated)`).toBe(exp[i]);
            continue;
          }
          const pair = j - (d % 2);
          const mag = Math.abs(input[pair]) + Math.abs(input[pair + 1]);
          const err = Math.abs(got[i] - exp[i]) / mag;
          record('rope_kv (relative to |a|+|b|)', err);
          expect(err, `${what}[${i}]`).toBeLessThanOrEqual(2 ** -22);
        }
      };
      cmp(gotQ, expQ, q, 0, qDim, 'Q');
      cmp(gotK, expK, k, pos0 * kvDim, kvDim, 'Kc');
      expect(Array.from(gotV)).toEqual(Array.from(expV));
      for (const b of [Q, Kin, Vin, Kc, Vc, R, P]) b.destroy();
      expectNoGpuErrors();
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// attention

describe('attention (CPU twin: causal softmax attention in f64, written here)', () => {
  // Tolerance: |gpu - exact| <= 2e-5 · max|V| over the keys a query sees. WGSL's exp is accurate to 3 + 2·|x| ULP
  // (|x| <= ~25 here: ~50 ULP ≈ 3e-6 relative per weight), and the online softmax sums up to 200 weights and
  // weighted values in f32 (<= 200·2^-24 ≈ 1.2e-5 relative); the output is a convex combination of V rows.
  const cases = [
    { nHeads: 4, nKvHeads: 4, headDim: 8, pos0: 0, n: 1 }, // one key
    { nHeads: 4, nKvHeads: 2, headDim: 16, pos0: 62, n: 1 }, // 63 keys: one partial chunk
    { nHeads: 4, nKvHeads: 2, headDim: 16, pos0: 63, n: 1 }, // 64: exactly one chunk
    { nHeads: 4, nKvHeads: 2, headDim: 16, pos0: 64, n: 1 }, // 65: a second chunk of one key
    { nHeads: 8, nKvHeads: 2, headDim: 8, pos0: 199, n: 1 }, // 200 keys, GQA 4
    { nHeads: 4, nKvHeads: 1, headDim: 16, pos0: 60, n: 6 }, // a batch whose lengths 61..66 cross the chunk, GQA 4
    { nHeads: 6, nKvHeads: 3, headDim: 10, pos0: 0, n: 17 }, // prefill from position 0, GQA 2
    { nHeads: 4, nKvHeads: 4, headDim: 12, pos0: 160, n: 40 }, // lengths 161..200
    { nHeads: 2, nKvHeads: 1, headDim: 72, pos0: 70, n: 3 }, // head size > 64 threads: each thread owns 2 dims
  ];
  for (const c of cases) {
    it(`heads ${c.nHeads}/${c.nKvHeads} (GQA ${c.nHeads / c.nKvHeads}), headDim ${c.headDim}, lengths ${c.pos0 + 1}..${c.pos0 + c.n}`, async () => {
      const { nHeads, nKvHeads, headDim: hd, pos0, n } = c;
      const qDim = nHeads * hd;
      const kvDim = nKvHeads * hd;
      const used = pos0 + n;
      const ctx = used + 5;
      const q = gpuRandom(n * qDim, 10 * used + 1, 2); // scale 2: scores with sd ~2, a peaked but not one-hot softmax
      const kc = gpuRandom(ctx * kvDim, 10 * used + 2);
      const vc = gpuRandom(ctx * kvDim, 10 * used + 3);
      // positions past the batch hold poison: a kernel that reads them (breaking causality) gives NaN or garbage
      kc.fill(1e30, used * kvDim);
      vc.fill(NaN, used * kvDim);
      const Q = gpuUpload(dev, q);
      const Kc = gpuUpload(dev, kc);
      const Vc = gpuUpload(dev, vc);
      const O = gpuFilled(dev, n * qDim, 12345);
      const P = gpuParams(dev, { n, pos0 });
      const op = makeOp(dev, { op: 'attention', nHeads, nKvHeads, headDim: hd }, [Q, Kc, Vc, O, P], (nn) => [nHeads, nn, 1]);
      const got = await gpuRun(dev, [op], n, O, n * qDim);
      const group = nHeads / nKvHeads;
      for (let t = 0; t < n; t++) {
        const len = pos0 + t + 1; // causal: token t sees positions 0..pos0+t
        for (let h = 0; h < nHeads; h++) {
          const kvOff = Math.floor(h / group) * hd;
          const s = new Float64Array(len);
          let max = -Infinity;
          let vmax = 0;
          for (let p = 0; p < len; p++) {
            let dot = 0;
            for (let d = 0; d < hd; d++) dot += q[t * qDim + h * hd + d] * kc[p * kvDim + kvOff + d];
            s[p] = dot / Math.sqrt(hd);
            max = Math.max(max, s[p]);
            for (let d = 0; d < hd; d++) vmax = Math.max(vmax, Math.abs(vc[p * kvDim + kvOff + d]));
          }
          let sum = 0;
          for (let p = 0; p < len; p++) sum += s[p] = Math.exp(s[p] - max);
          for (let d = 0; d < hd; d++) {
            let a = 0;
            for (let p = 0; p < len; p++) a += s[p] * vc[p * kvDim + kvOff + d];
            const err = Math.abs(got[t * qDim + h * hd + d] - a / sum) / vmax;
            record('attention (relative to max|V|)', err);
            expect(err, `t ${t} h ${h} d ${d}`).toBeLessThanOrEqual(2e-5);
          }
        }
      }
      for (const b of [Q, Kc, Vc, O, P]) b.destroy();
      expectNoGpuErrors();
    });
  }

  it('the kernel source names its variant constants (GQA group, scale)', () => {
    const src = attentionWgsl({ op: 'attention', nHeads: 8, nKvHeads: 2, headDim: 16 });
    expect(src).toContain('const GROUP: u32 = 4u;');
    expect(src).toContain(`const SCALE: f32 = ${(0.25).toExponential(9)};`);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// swiglu

describe('swiglu (CPU twin: silu(g) * u)', () => {
  // Tolerance: |gpu - exact| <= 1e-5·|exact| + 1e-30. exp(-g) is within 3 + 2|g| ULP (|g| <= 40 in the finite
  // range: ~83 ULP ≈ 5e-6), then one division and one product (~3.5 ULP). For g = ±100, exp overflows f32 on the GPU
  // (silu -> -0 for g = -100 where f64 gives -4e-42, a subnormal: hence the absolute 1e-30).
  for (const { n, ffn } of [{ n: 3, ffn: 172 }, { n: 41, ffn: 1700 }]) {
    it(`n ${n}, ffn ${ffn} (${n * ffn} elements${n * ffn > 65536 ? ': a second row of the grid' : ''})`, async () => {
      const total = n * ffn;
      const g = gpuRandom(total, total, 3);
      const u = gpuRandom(total, total + 1);
      [-100, -40, -20, -1e-3, 0, 1e-3, 20, 40, 100].forEach((v, i) => (g[i * 7] = v));
      const G = gpuUpload(dev, new Float32Array([...g, 12345, 12345, 12345, 12345]));
      const U = gpuUpload(dev, u);
      const P = gpuParams(dev, { n, pos0: 0 });
      const op = makeOp(dev, { op: 'swiglu', ffn }, [G, U, P], (nn) => {
        const groups = Math.ceil((nn * ffn) / 64); // as GpuStage dispatches it: 1024 workgroups per grid row
        return [Math.min(groups, 1024), Math.ceil(groups / 1024), 1];
      });
      const got = await gpuRun(dev, [op], n, G, total + 4);
      for (let i = 0; i < total; i++) {
        const exp = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
        const err = Math.abs(got[i] - exp);
        record('swiglu (relative)', err / Math.max(Math.abs(exp), 1e-30));
        expect(err, `i ${i} g ${g[i]}`).toBeLessThanOrEqual(1e-5 * Math.abs(exp) + 1e-30);
      }
      expect(Array.from(got.subarray(total))).toEqual([12345, 12345, 12345, 12345]);
      for (const b of [G, U, P]) b.destroy();
      expectNoGpuErrors();
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// embed

describe('embed (CPU twin: dequantize of the id rows)', () => {
  // Tolerance: exact. The kernel only decodes (f16 -> f32, scale × small integer: exact in f32), no arithmetic that
  // rounds, so every element must equal dequantize() bit for bit.
  const cases = [
    { name: 'f32', id: GgmlType.F32, dim: 13 },
    { name: 'f16', id: GgmlType.F16, dim: 13 },
    { name: 'f16', id: GgmlType.F16, dim: 64 },
    { name: 'q8_0', id: GgmlType.Q8_0, dim: 64 },
    { name: 'q4_0', id: GgmlType.Q4_0, dim: 96 },
  ];
  for (const c of cases) {
    it(`${c.name}, dim ${c.dim}: whole and vocabulary split over parts of 7 rows`, async () => {
      await checkEmbed(dev, c.id, c.dim, gpuRandom(50 * c.dim, c.dim + c.id));
      expectNoGpuErrors();
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// topk and penalty

/** The CPU's ranking: logit descending, id ascending (Sampler's byRank), first k. */
function cpuTopK(logits: Float32Array, k: number): { ids: number[]; vals: number[] } {
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
  return { ids: order, vals: order.map((i) => logits[i]) };
}

/** The GPU chain GpuHead runs: logits -> ceil(V/1024)·k pairs -> ... -> k pairs, in one pass. */
async function gpuTopK(logits: Float32Array, k: number): Promise<{ ids: number[]; vals: number[]; passes: number }> {
  const L = gpuUpload(dev, logits);
  const words = Math.ceil(logits.length / TOPK_CHUNK) * k * 2;
  const pairs = [gpuScratch(dev, words, 'pairs 0'), gpuScratch(dev, words, 'pairs 1')];
  const params: GPUBuffer[] = [];
  const ops: Op[] = [];
  let input = L;
  for (let count = logits.length, i = 0; ; i++) {
    const groups = Math.ceil(count / TOPK_CHUNK);
    const P = gpuParams(dev, { n: 1, pos0: 0, a: count });
    params.push(P);
    const out = pairs[i % 2];
    ops.push(makeOp(dev, { op: 'topk', k, source: i === 0 ? 'logits' : 'pairs' }, [input, out, P], () => [groups, 1, 1]));
    input = out;
    if (groups === 1) break;
    count = groups * k;
  }
  const got = await gpuRun(dev, ops, 1, input, 2 * k);
  const u = new Uint32Array(got.buffer);
  const res = { ids: [] as number[], vals: [] as number[], passes: ops.length };
  for (let i = 0; i < k; i++) {
    res.vals.push(got[2 * i]);
    res.ids.push(u[2 * i + 1]);
  }
  for (const b of [L, ...pairs, ...params]) b.destroy();
  return res;
}

describe('topk (CPU twin: the sampler ranking, logit descending then id ascending)', () => {
  // Tolerance: exact. Selection moves values without arithmetic, so ids and logits must equal the CPU's sorted
  // top-k exactly, including which of several equal logits win (the lower ids).
  const inputs: { name: string; make: (v: number) => Float32Array }[] = [
    { name: 'continuous', make: (v) => gpuRandom(v, v) },
    {
      // 12 distinct levels: hundreds of ties at the top level, spread over every chunk of 1024
      name: 'many ties',
      make: (v) => {
        const rng = new FixtureRng(v + 1);
        return Float32Array.from({ length: v }, () => rng.below(12) - 3);
      },
    },
    {
      // continuous, with the maximum planted at the same few ids in later chunks first, then earlier ones
      name: 'planted equal maxima',
      make: (v) => {
        const x = gpuRandom(v, v + 2);
        for (const id of [v - 1, Math.floor(v / 2), 1500 % v, 1, 0]) x[id] = 9;
        return x;
      },
    },
  ];
  // 1000: one pass; 3000: two (3 chunks -> 3k pairs); 30000 with k 40: three (30 chunks -> 1200 pairs -> 80 -> 40).
  const cases = [
    ...[1, 5, 40].flatMap((k) => [{ vocab: 1000, k }, { vocab: 3000, k }]),
    { vocab: 30000, k: 40 },
  ];
  for (const { vocab, k } of cases) {
    it(`vocab ${vocab}, k ${k}`, async () => {
      for (const input of inputs) {
        const logits = input.make(vocab);
        const exp = cpuTopK(logits, k);
        const got = await gpuTopK(logits, k);
        expect(got.ids, `${input.name}: ids`).toEqual(exp.ids);
        expect(got.vals, `${input.name}: logits`).toEqual(exp.vals);
        expect(got.passes).toBe(vocab === 1000 ? 1 : vocab === 3000 ? 2 : 3);
      }
      expectNoGpuErrors();
    });
  }

  it(`k = TOPK_MAX (${TOPK_MAX}) over 3000 logits with ties`, async () => {
    const rng = new FixtureRng(5);
    const logits = Float32Array.from({ length: 3000 }, () => rng.below(40) / 4);
    const got = await gpuTopK(logits, TOPK_MAX);
    const exp = cpuTopK(logits, TOPK_MAX);
    expect(got.ids).toEqual(exp.ids);
    expect(got.vals).toEqual(exp.vals);
    expectNoGpuErrors();
  });
});

describe('penalty (CPU twin: applyPenaltyInPlace)', () => {
  // Tolerance: relative 2^-22 (2.5 ULP, rounded up to 4). x·p is correctly rounded in WGSL, like the CPU's
  // Math.fround; x/p is only required to be within 2.5 ULP. Ids the list does not name must be untouched (exact).
  for (const penalty of [1.3, 0.7]) {
    it(`penalty ${penalty}: positive logits divided, non-positive multiplied, other ids untouched`, async () => {
      const vocab = 5000;
      const logits = gpuRandom(vocab, 11, 4);
      logits[0] = 0;
      const rng = new FixtureRng(12);
      const set = new Set<number>([0, vocab - 1]);
      while (set.size < 300) set.add(rng.below(vocab));
      const ids = [...set].sort((a, b) => a - b); // unique, as penalizedIds() gives them
      const L = gpuUpload(dev, logits);
      const Ids = gpuUpload(dev, new Uint32Array(ids));
      const P = gpuParams(dev, { n: 1, pos0: 0, b: ids.length, f: penalty });
      const op = makeOp(dev, { op: 'penalty' }, [L, Ids, P], () => [Math.ceil(4096 / 64), 1, 1]); // as GpuHead does
      const got = await gpuRun(dev, [op], 1, L, vocab);
      const exp = logits.slice();
      applyPenaltyInPlace(exp, ids, penalty);
      for (let i = 0; i < vocab; i++) {
        if (!set.has(i)) {
          expect(got[i]).toBe(exp[i]);
          continue;
        }
        const err = Math.abs(got[i] - exp[i]) / Math.max(Math.abs(exp[i]), 1e-30);
        record('penalty (relative)', exp[i] === 0 ? Math.abs(got[i]) : err);
        if (exp[i] === 0) expect(got[i]).toBe(0);
        else expect(err, `id ${i}`).toBeLessThanOrEqual(2 ** -22);
      }
      for (const b of [L, Ids, P]) b.destroy();
      expectNoGpuErrors();
    });
  }
});
