// Q4_K, Q6_K and BF16 weights: the fixture quantizers (tests/helpers/quantize.ts) round-trip through the CPU
// dequantizer within each format's stated error, and the GPU's in-register decoding (dq4 in
// src/gpu/kernels/weights-wgsl.ts) in the matvec, tiled and embed kernels matches the CPU twin: dequantize() and an
// f64 product. Not here: the other weight types (kernels.test.ts, quant-types.test.ts) or llama.cpp reading these bytes
// (tests/engine/kquant-parity.test.ts, the check that our block layouts are llama.cpp's).

import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FlockDevice } from '../../src/gpu/device';
import { bf16ToF32, blockFormat, dequantize, f16ToF32, GgmlType, q4kScaleMin } from '../../src/model/quant';
import { expectNoGpuErrors, recordErrors, takeGpuErrors, testDevice } from '../helpers/gpu';
import { checkEmbed, checkMatmul, gpuRandom } from '../helpers/gpu-kernels';
import { f32ToBf16, quantize } from '../helpers/quantize';

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
const record = recordErrors('kquant');


const F16_ULP = 2 ** -10; // relative spacing of halves: a scale rounded UP to a half grows by less than this

// ---------------------------------------------------------------------------------------------------------------
// CPU: the quantizers against dequantize()

/** Seeded values with the awkward blocks in front: zeros, a spike, one-signed and constant sub-blocks. */
function testValues(n: number, seed: number): Float32Array {
  const x = gpuRandom(n, seed, 0.3);
  x.fill(0, 0, 256); // a zero block
  x[256 + 40] = -3; // a spike in an otherwise zero block
  x.fill(0, 257, 256 + 40);
  x.fill(0, 256 + 41, 512);
  for (let j = 512; j < 544; j++) x[j] = -0.5 - 0.01 * (j % 7); // a sub-block of negatives only
  for (let j = 544; j < 576; j++) x[j] = 0.25 + 0.02 * (j % 5); // positives only
  x.fill(-0.125, 576, 608); // constant negative
  x.fill(0.375, 608, 624); // constant positive (one Q6_K sub-block)
  return x;
}

describe('quantizers round-trip through dequantize', () => {
  const n = 256 * 12;

  // Q4_K bound per element of sub-block j (32 values) of a block (quantize.ts's rule): with m_j = max(0, -min x),
  // M = max_j m_j, W_j = max x - min(0, min x): dmin < M/63·(1 + 2^-10) (rounded up to a half), the stored offset
  // is within dmin below -m_j, so the span above it is S_j < W_j + dmin, and d < max_j S_j / 945 · (1 + 2^-10).
  // The quant rounds to the nearest of 16 steps of d·ls_j < S_j/15 + d: |err| <= (S_j/15 + d)/2, plus one f32
  // rounding of the decoded value (2^-24 relative, bounded by 2^-23·(|x| + |err|)).
  it('Q4_K: |error| <= half a step, (S_j/15 + d)/2, on every element; zero blocks stay zero', () => {
    const x = testValues(n, 41);
    const bytes = quantize(GgmlType.Q4_K, x);
    expect(bytes.length).toBe((n / 256) * 144);
    const y = dequantize(blockFormat(GgmlType.Q4_K), bytes, 0, n);
    let worst = 0;
    for (let b = 0; b < n / 256; b++) {
      const mins: number[] = [];
      const widths: number[] = [];
      for (let j = 0; j < 8; j++) {
        const sub = x.subarray(b * 256 + 32 * j, b * 256 + 32 * j + 32);
        const lo = Math.min(0, ...sub);
        mins.push(-lo);
        widths.push(Math.max(...sub) - lo);
      }
      const dmin = (Math.max(...mins) / 63) * (1 + F16_ULP);
      const spans = widths.map((w) => w + dmin);
      const d = (Math.max(...spans) / 945) * (1 + F16_ULP);
      for (let j = 0; j < 8; j++) {
        const bound = (spans[j] / 15 + d) / 2;
        for (let l = 0; l < 32; l++) {
          const i = b * 256 + 32 * j + l;
          const err = Math.abs(y[i] - x[i]);
          worst = Math.max(worst, bound > 0 ? err / bound : err);
          if (err > bound + 2 ** -23 * (Math.abs(x[i]) + bound) + 1e-30) {
            throw new Error(`Q4_K element ${i}: |${y[i]} - ${x[i]}| = ${err} > ${bound}`);
          }
        }
      }
    }
    record('Q4_K round trip (|err| / bound)', worst);
    expect(y.subarray(0, 256).every((v) => v === 0)).toBe(true);
  });

  // Q6_K bound per element of sub-block j (16 values): s_j = max|x|/31, d < max_j s_j/127·(1 + 2^-10), and the
  // stored step d·sc_j < s_j + d; no value is clamped, so |err| <= (s_j + d)/2 (the decoded value is exact in f32).
  it('Q6_K: |error| <= half a step, (max|x|/31 + d)/2, on every element; zero blocks stay zero', () => {
    const x = testValues(n, 43);
    const bytes = quantize(GgmlType.Q6_K, x);
    expect(bytes.length).toBe((n / 256) * 210);
    const y = dequantize(blockFormat(GgmlType.Q6_K), bytes, 0, n);
    let worst = 0;
    for (let b = 0; b < n / 256; b++) {
      const steps: number[] = [];
      for (let j = 0; j < 16; j++) {
        steps.push(Math.max(...x.subarray(b * 256 + 16 * j, b * 256 + 16 * j + 16).map(Math.abs)) / 31);
      }
      const d = (Math.max(...steps) / 127) * (1 + F16_ULP);
      for (let e = 0; e < 256; e++) {
        const i = b * 256 + e;
        const bound = (steps[e >> 4] + d) / 2;
        const err = Math.abs(y[i] - x[i]);
        worst = Math.max(worst, bound > 0 ? err / bound : err);
        if (err > bound + 1e-30) throw new Error(`Q6_K element ${i}: |${y[i]} - ${x[i]}| = ${err} > ${bound}`);
      }
    }
    record('Q6_K round trip (|err| / bound)', worst);
    expect(y.subarray(0, 256).every((v) => v === 0)).toBe(true);
  });

  // BF16: round to nearest even on the f32 bits (ggml's GGML_FP32_TO_BF16): |err| <= 2^-8·|x|, half an ulp of its
  // 8 significant bits.
  it('BF16: |error| <= 2^-8·|x|, ties to even', () => {
    const x = testValues(n, 47);
    const y = dequantize(blockFormat(GgmlType.BF16), quantize(GgmlType.BF16, x), 0, n);
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const err = Math.abs(y[i] - x[i]);
      worst = Math.max(worst, x[i] ? err / Math.abs(x[i]) : err);
      if (err > 2 ** -8 * Math.abs(x[i])) throw new Error(`BF16 element ${i}: |${y[i]} - ${x[i]}| = ${err}`);
    }
    record('BF16 round trip (relative)', worst);
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(-2.5)).toBe(0xc020);
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80); // tie: stays on the even mantissa
    expect(f32ToBf16(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie: rounds up to the even one
    expect(bf16ToF32(0x3f81)).toBe(1 + 2 ** -7);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(NaN)))).toBe(true);
  });

  it('Q4_K scale/min packing is get_scale_min_k4: 6 bits each, sub-blocks 4..7 split over nibbles and top bits', () => {
    // scale bytes chosen so every field differs: sc_j = 10 + 7j, m_j = 60 - 5j (values >= 16 use the top bits)
    const sc = Array.from({ length: 8 }, (_, j) => 10 + 7 * j);
    const mn = Array.from({ length: 8 }, (_, j) => 60 - 5 * j);
    const s = new Uint8Array(12);
    for (let j = 0; j < 4; j++) {
      s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
      s[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
      s[j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4);
    }
    for (let j = 0; j < 8; j++) expect(q4kScaleMin(s, j)).toEqual([sc[j], mn[j]]);
    // And one whole block: d = 1, dmin = 0.5, element e's quant = e % 16: value = sc_j·q - 0.5·m_j, low nibbles of a
    // 64-chunk first.
    const block = new Uint8Array(144);
    const dv = new DataView(block.buffer);
    dv.setUint16(0, 0x3c00, true);
    dv.setUint16(2, 0x3800, true);
    block.set(s, 4);
    for (let e = 0; e < 256; e++) block[16 + 32 * (e >> 6) + (e & 31)] |= (e % 16) << (e & 32 ? 4 : 0);
    const y = dequantize(blockFormat(GgmlType.Q4_K), block, 0, 256);
    for (let e = 0; e < 256; e++) expect(y[e], `element ${e}`).toBe(sc[e >> 5] * (e % 16) - 0.5 * mn[e >> 5]);
  });

  it('Q6_K layout is dequantize_row_q6_K\'s: ql/qh interleave per 128 elements, one int8 scale per 16', () => {
    // d = 0.5, scale_j = j - 8 (negative ones too), quant of element e = (5e + 3) % 64: value = 0.5·scale·(q - 32)
    const block = new Uint8Array(210);
    const dv = new DataView(block.buffer);
    dv.setUint16(208, 0x3800, true);
    for (let j = 0; j < 16; j++) dv.setInt8(192 + j, j - 8);
    const q = (e: number) => (5 * e + 3) % 64;
    // written the way llama.cpp's loop reads it: n (half), l (0..31); q1..q4 at l, l + 32, l + 64, l + 96
    for (let n = 0; n < 2; n++) {
      for (let l = 0; l < 32; l++) {
        const [q1, q2, q3, q4] = [0, 32, 64, 96].map((off) => q(128 * n + l + off));
        block[64 * n + l] = (q1 & 15) | ((q3 & 15) << 4);
        block[64 * n + l + 32] = (q2 & 15) | ((q4 & 15) << 4);
        block[128 + 32 * n + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
    const y = dequantize(blockFormat(GgmlType.Q6_K), block, 0, 256);
    for (let e = 0; e < 256; e++) expect(y[e], `element ${e}`).toBe(0.5 * ((e >> 4) - 8) * (q(e) - 32));
    expect(f16ToF32(0x3800)).toBe(0.5);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// GPU: matmul and embed against dequantize()

const TYPES = [
  // K-quants: one, two and three 256-element blocks per row; 131 and 70 rows are not multiples of any tile.
  { name: 'q4_k', id: GgmlType.Q4_K, shapes: [{ K: 256, rows: 70 }, { K: 512, rows: 5 }, { K: 768, rows: 131 }] },
  { name: 'q6_k', id: GgmlType.Q6_K, shapes: [{ K: 256, rows: 70 }, { K: 512, rows: 5 }, { K: 768, rows: 131 }] },
  // BF16: K = 13 and 174 take the unaligned (scalar) reads (odd rows start mid-word), K = 64 the two-word ones.
  { name: 'bf16', id: GgmlType.BF16, shapes: [{ K: 13, rows: 70 }, { K: 64, rows: 5 }, { K: 174, rows: 131 }] },
] as const;
/** One tiled shape per type: each tiled variant compiles in ~1 s on SwiftShader. */
const TILED_SHAPES: Record<string, { K: number; rows: number }> = {
  q4_k: { K: 512, rows: 70 }, q6_k: { K: 256, rows: 131 }, bf16: { K: 174, rows: 70 },
};
const NS = [1, 3, 17, 40];

describe('matmul on Q4_K / Q6_K / BF16 weights (CPU twin: dequantize + f64 product)', () => {
  // Tolerance: |gpu - exact| <= (K + 2)·2^-24 · (sum_k |W[r,k] X[t,k]| + |Y0|). The GPU decodes each weight to the
  // same f32 as dequantize() (checked bit for bit by the embed tests below), so the only difference is f32
  // arithmetic: K rounded products and sums, the classical bound γ_K ≈ K·2^-24 of sum|terms|, plus the accumulate's
  // one addition. That is 4.6e-5 for K = 768, the longest row here; typical errors are ~sqrt(K)·2^-24.
  const check = (typeId: number, op: 'matvec' | 'tiled', K: number, rows: number, splitRows: number, seed: number, d: FlockDevice = dev) =>
    checkMatmul({ dev: d, typeId, op, K, rows, splitRows, seed, ns: NS, rel: (K + 2) * 2 ** -24, record });

  for (const T of TYPES) {
    for (const { K, rows } of T.shapes) {
      it(`matvec ${T.name}: K ${K}, ${rows} rows, n ${NS.join('/')}, whole and in parts of 29 rows, accumulate on/off`, async () => {
        await check(T.id, 'matvec', K, rows, 29, 3000 * T.id + K + rows);
        expectNoGpuErrors();
      });
    }
    // the split a GPU gets (4 vec4 steps per thread, so more threads per row) and the widest one (1 step)
    const longest = T.shapes[T.shapes.length - 1];
    it(`matvec ${T.name} with the GPU split (1 and 4 steps per thread): K ${longest.K}, ${longest.rows} rows`, async () => {
      for (const matvecSteps of [1, 4]) await check(T.id, 'matvec', longest.K, longest.rows, 29, 5000 * T.id + longest.K + matvecSteps, { ...dev, matvecSteps });
      expectNoGpuErrors();
    });
    const { K, rows } = TILED_SHAPES[T.name];
    it(`tiled ${T.name}: K ${K}, ${rows} rows, n ${NS.join('/')}, whole (overwrite) and in 2 parts (accumulate)`, async () => {
      await check(T.id, 'tiled', K, rows, Math.ceil(rows / 2), 4000 * T.id + K + rows);
      expectNoGpuErrors();
    });
  }
});

describe('embed of Q4_K / Q6_K / BF16 rows (CPU twin: dequantize of the id rows)', () => {
  // Tolerance: exact. Decoding is f16 -> f32 and products of a half, a small scale and a small quant (exact in f32),
  // then for Q4_K one subtraction, rounded once on both sides; BF16 is a shift. Every element must equal
  // dequantize() bit for bit.
  const cases = [
    { name: 'q4_k', id: GgmlType.Q4_K, dim: 512 },
    { name: 'q6_k', id: GgmlType.Q6_K, dim: 256 },
    { name: 'q6_k', id: GgmlType.Q6_K, dim: 768 },
    { name: 'bf16', id: GgmlType.BF16, dim: 13 },
    { name: 'bf16', id: GgmlType.BF16, dim: 64 },
  ];
  for (const c of cases) {
    it(`${c.name}, dim ${c.dim}: whole and vocabulary split over parts of 7 rows`, async () => {
      await checkEmbed(dev, c.id, c.dim, testValues(50 * c.dim, c.dim + c.id));
      expectNoGpuErrors();
    });
  }
});
