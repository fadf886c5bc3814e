// Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K and IQ4_XS weights: the fixture quantizers (tests/helpers/quantize*.ts)
// round-trip through the CPU dequantizer within each format's stated error; the CPU dequantizer reads hand-built
// blocks as llama.cpp's dequantize_row_* loops do; and the GPU's in-register decoding (dq4 in
// src/gpu/kernels/weights-wgsl*.ts) in the matvec, tiled and embed kernels matches the CPU twin, whole and split over
// several buffers. Not here: the older types (kernels.test.ts, kquant.test.ts) or llama.cpp reading these bytes
// (tests/engine/quant-mix-parity.test.ts).

import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { FlockDevice } from '../../src/gpu/device';
import { blockFormat, dequantize, f16ToF32, GgmlType, IQ4_VALUES, q3kScale } from '../../src/model/quant';
import { expectNoGpuErrors, recordErrors, takeGpuErrors, testDevice } from '../helpers/gpu';
import { checkEmbed, checkMatmul, gpuRandom } from '../helpers/gpu-kernels';
import { quantize } from '../helpers/quantize';

let dev: FlockDevice;
beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
});
beforeEach(() => {
  takeGpuErrors();
});

const record = recordErrors('quant-types');

const F16_ULP = 2 ** -10; // relative spacing of halves: a scale rounded UP to a half grows by less than this
const F16_HALF_ULP = 2 ** -11; // largest relative error of rounding to the nearest half
const F32_SLOP = 2 ** -22; // room for the f32 roundings of a decoded value and of the quantizer's float steps

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
  x.fill(0.375, 608, 624); // constant positive (one 16-element sub-block)
  return x;
}

const range = (x: Float32Array, from: number, n: number) => {
  let lo = Infinity;
  let hi = -Infinity;
  let amax = 0;
  for (let i = from; i < from + n; i++) {
    lo = Math.min(lo, x[i]);
    hi = Math.max(hi, x[i]);
    amax = Math.max(amax, Math.abs(x[i]));
  }
  return { lo, hi, amax };
};

/**
 * Per-element error bounds of each quantizer (their rules are in quantize.ts and quantize-k.ts), computed from the
 * input values alone, with `b` the element's block and `i` its index.
 */
const BOUNDS: Record<string, { id: number; bound: (x: Float32Array, i: number) => number }> = {
  // d = (max - min)/(2^bits - 1), then d and min each rounded to a half; q rounds (x - min)/d to the nearest step
  q4_1: { id: GgmlType.Q4_1, bound: (x, i) => withMinBound(x, i, 15) },
  q5_1: { id: GgmlType.Q5_1, bound: (x, i) => withMinBound(x, i, 31) },
  // d = max/-16: half a step, a full step for values clamped at code 31 (x/d > 15.5), plus d's rounding to a half
  // moving the farthest code (16 steps) by 16·2^-11·|d|
  q5_0: {
    id: GgmlType.Q5_0,
    bound: (x, i) => {
      const { amax } = range(x, i - (i % 32), 32);
      const d = amax / 16;
      return d * (Math.abs(x[i]) > 15.5 * d ? 1 : 0.5) + 16 * F16_HALF_ULP * d;
    },
  },
  // |d| = amax/127 rounded up: every value within 14|d| of a level
  iq4_nl: { id: GgmlType.IQ4_NL, bound: (x, i) => 14 * (range(x, i - (i % 32), 32).amax / 127) * (1 + F16_ULP) },
  // asymmetric K-quants: (S_j / qmax + d) / 2 (see `asymmetric` in quantize-k.ts)
  q2_k: { id: GgmlType.Q2_K, bound: (x, i) => asymmetricBound(x, i, 16, 3, 15) },
  q5_k: { id: GgmlType.Q5_K, bound: (x, i) => asymmetricBound(x, i, 32, 31, 63) },
  // signed 6-bit scales (see `signedScales`): Q3_K's step is below max|x_j|/4 + d and no error exceeds one step;
  // IQ4_XS's step is below max|x_j|/127 + d and no error exceeds 14 steps
  q3_k: { id: GgmlType.Q3_K, bound: (x, i) => signedBound(x, i, 16, 4, 1) },
  iq4_xs: { id: GgmlType.IQ4_XS, bound: (x, i) => signedBound(x, i, 32, 127, 14) },
};

function withMinBound(x: Float32Array, i: number, qmax: number): number {
  const { lo, hi } = range(x, i - (i % 32), 32);
  const d = (hi - lo) / qmax;
  return d / 2 + qmax * F16_HALF_ULP * d + F16_HALF_ULP * Math.abs(lo);
}

/** Sub-blocks of `sub` in a 256-block: m_j, widths W_j; dmin < M/smax·(1 + 2^-10); S_j < W_j + dmin; d < max S/(qmax smax)·(1 + 2^-10). */
function asymmetricBound(x: Float32Array, i: number, sub: number, qmax: number, smax: number): number {
  const b = i - (i % 256);
  const mins: number[] = [];
  const widths: number[] = [];
  for (let j = 0; j < 256 / sub; j++) {
    const { lo, hi } = range(x, b + j * sub, sub);
    mins.push(-Math.min(0, lo));
    widths.push(hi - Math.min(0, lo));
  }
  const dmin = (Math.max(...mins) / smax) * (1 + F16_ULP);
  const spans = widths.map((w) => w + dmin);
  const d = (Math.max(...spans) / (qmax * smax)) * (1 + F16_ULP);
  return (spans[(i - b) / sub | 0] / qmax + d) / 2;
}

/** s_j = max|x_j| / levels; d < max s_j / 31·(1 + 2^-10); the step is below s_j + d; error below `steps` steps. */
function signedBound(x: Float32Array, i: number, sub: number, levels: number, steps: number): number {
  const b = i - (i % 256);
  const s = Array.from({ length: 256 / sub }, (_, j) => range(x, b + j * sub, sub).amax / levels);
  const d = (Math.max(...s) / 31) * (1 + F16_ULP);
  return steps * (s[(i - b) / sub | 0] + d);
}

// ---------------------------------------------------------------------------------------------------------------
// CPU: the quantizers against dequantize()

describe('quantizers round-trip through dequantize', () => {
  const n = 256 * 12;
  for (const [name, { id, bound }] of Object.entries(BOUNDS)) {
    it(`${name}: every element within its bound; zero blocks stay zero`, () => {
      const x = testValues(n, 100 + id);
      const f = blockFormat(id);
      const bytes = quantize(id, x);
      expect(bytes.length).toBe((n / f.blockElems) * f.blockBytes);
      const y = dequantize(f, bytes, 0, n);
      let worst = 0;
      for (let i = 0; i < n; i++) {
        const b = bound(x, i);
        const err = Math.abs(y[i] - x[i]);
        worst = Math.max(worst, b > 0 ? err / b : err);
        if (!(err <= b + F32_SLOP * (Math.abs(x[i]) + b) + 1e-30)) {
          throw new Error(`${name} element ${i}: |${y[i]} - ${x[i]}| = ${err} > ${b}`);
        }
      }
      record(`${name} round trip (|err| / bound)`, worst);
      expect(y.subarray(0, 256).every((v) => v === 0)).toBe(true);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// CPU: block layouts, each hand-built the way llama.cpp's dequantize_row_* loop reads it (ggml-quants.c)

describe('block layouts are llama.cpp\'s', () => {
  const half = (v: number) => ({ 1: 0x3c00, 0.5: 0x3800, 0.25: 0x3400, [-2]: 0xc000 })[v]!;

  it('Q4_1, Q5_0 and Q5_1: qs[j] holds elements j and j + 16; bit j of the u32 qh is element j\'s fifth bit', () => {
    const q = (j: number) => (7 * j + 3) % 32; // a 5-bit code per element, every bit pattern mixed
    for (const [id, size, hasMin] of [[GgmlType.Q4_1, 20, true], [GgmlType.Q5_0, 22, false], [GgmlType.Q5_1, 24, true]] as const) {
      const five = id !== GgmlType.Q4_1;
      const block = new Uint8Array(size);
      const dv = new DataView(block.buffer);
      dv.setUint16(0, half(0.5), true);
      if (hasMin) dv.setUint16(2, half(-2), true);
      const qs = size - 16;
      let qh = 0;
      for (let j = 0; j < 16; j++) {
        const [x0, x1] = [q(j) & (five ? 31 : 15), q(j + 16) & (five ? 31 : 15)];
        block[qs + j] = (x0 & 15) | ((x1 & 15) << 4);
        qh |= (x0 >> 4) << j; // llama.cpp: xh_0 = ((qh >> j) << 4) & 0x10
        qh |= (x1 >> 4) << (j + 16); // xh_1 = (qh >> (j + 12)) & 0x10
      }
      if (five) dv.setUint32(qs - 4, qh >>> 0, true);
      const y = dequantize(blockFormat(id), block, 0, 32);
      for (let j = 0; j < 32; j++) {
        const c = q(j) & (five ? 31 : 15);
        expect(y[j], `type ${id} element ${j}`).toBe(hasMin ? 0.5 * c - 2 : 0.5 * (c - 16));
      }
    }
  });

  it('IQ4_NL and IQ4_XS: codes into kvalues_iq4nl; IQ4_XS\'s 6-bit sub-block scales split over scales_l and scales_h', () => {
    const nl = new Uint8Array(18);
    new DataView(nl.buffer).setUint16(0, half(0.25), true);
    for (let j = 0; j < 16; j++) nl[2 + j] = j | ((15 - j) << 4);
    const y = dequantize(blockFormat(GgmlType.IQ4_NL), nl, 0, 32);
    for (let j = 0; j < 16; j++) {
      expect(y[j]).toBe(0.25 * IQ4_VALUES[j]);
      expect(y[j + 16]).toBe(0.25 * IQ4_VALUES[15 - j]);
    }
    // IQ4_XS: d = 1, ls_ib = 5 + 8·ib (0..63, so the top bits vary), code of element e = (e + ib) % 16
    const xs = new Uint8Array(136);
    const dv = new DataView(xs.buffer);
    dv.setUint16(0, half(1), true);
    let scalesH = 0;
    for (let ib = 0; ib < 8; ib++) {
      const ls = 5 + 8 * ib;
      xs[4 + (ib >> 1)] |= (ls & 15) << (4 * (ib % 2)); // ls = ((scales_l[ib/2] >> 4*(ib%2)) & 0xf) | …
      scalesH |= (ls >> 4) << (2 * ib); // … | ((scales_h >> 2*ib) & 3) << 4
      for (let j = 0; j < 16; j++) xs[8 + 16 * ib + j] = ((j + ib) % 16) | (((j + 16 + ib) % 16) << 4);
    }
    dv.setUint16(2, scalesH, true);
    const z = dequantize(blockFormat(GgmlType.IQ4_XS), xs, 0, 256);
    for (let e = 0; e < 256; e++) {
      const ib = e >> 5;
      expect(z[e], `element ${e}`).toBe((5 + 8 * ib - 32) * IQ4_VALUES[((e % 32) + ib) % 16]);
    }
  });

  it('Q2_K and Q3_K: 2-bit fields at bits 2g of qs[32h + l]; Q3_K\'s hmask bit and 6-bit scales', () => {
    const q2 = new Uint8Array(84);
    const dv2 = new DataView(q2.buffer);
    dv2.setUint16(80, half(0.5), true); // d
    dv2.setUint16(82, half(0.25), true); // dmin
    const code = (e: number) => (e * 5 + (e >> 4)) % 4;
    // written as llama.cpp's loop reads it: n (128-half), j (shift 2j), the two 16-element runs at q[l] and q[l + 16]
    for (let n = 0; n < 2; n++) {
      for (let j = 0; j < 4; j++) {
        for (let l = 0; l < 32; l++) q2[16 + 32 * n + l] |= code(128 * n + 32 * j + l) << (2 * j);
      }
    }
    for (let s = 0; s < 16; s++) q2[s] = (s % 16) | ((15 - s) << 4);
    const y2 = dequantize(blockFormat(GgmlType.Q2_K), q2, 0, 256);
    for (let e = 0; e < 256; e++) {
      const s = e >> 4;
      expect(y2[e], `Q2_K element ${e}`).toBe(0.5 * s * code(e) - 0.25 * (15 - s));
    }
    // Q3_K: scale s = 3 + 4s (6 bits), packed as the kmask shuffle unpacks it; d = -2; 3-bit code (e * 3) % 8
    const q3 = new Uint8Array(110);
    new DataView(q3.buffer).setUint16(108, half(-2), true);
    const sc = (s: number) => 3 + 4 * s;
    const aux = [0, 0, 0, 0]; // llama.cpp's aux[0..3] after the shuffle: bytes 0..15 are the 16 scales
    for (let s = 0; s < 16; s++) aux[s >> 2] |= sc(s) << (8 * (s & 3));
    // invert: aux[0] = (a0 & 0x0f0f0f0f) | ((tmp & 0x03030303) << 4), aux[2] = ((a0 >> 4) & 0x0f0f0f0f) | (((tmp >> 4) & 0x03030303) << 4), …
    let a0 = 0, a1 = 0, tmp = 0;
    a0 = (aux[0] & 0x0f0f0f0f) | ((aux[2] & 0x0f0f0f0f) << 4);
    a1 = (aux[1] & 0x0f0f0f0f) | ((aux[3] & 0x0f0f0f0f) << 4);
    tmp = ((aux[0] >> 4) & 0x03030303) | (((aux[1] >> 4) & 0x03030303) << 2) | (((aux[2] >> 4) & 0x03030303) << 4) | (((aux[3] >> 4) & 0x03030303) << 6);
    const sdv = new DataView(q3.buffer, 96, 12);
    sdv.setUint32(0, a0 >>> 0, true);
    sdv.setUint32(4, a1 >>> 0, true);
    sdv.setUint32(8, tmp >>> 0, true);
    for (let s = 0; s < 16; s++) expect(q3kScale(q3.subarray(96, 108), s), `scale ${s}`).toBe(sc(s));
    const c3 = (e: number) => (e * 3 + (e >> 5)) % 8;
    for (let n = 0; n < 2; n++) {
      for (let j = 0; j < 4; j++) {
        for (let l = 0; l < 32; l++) {
          const e = 128 * n + 32 * j + l;
          q3[32 + 32 * n + l] |= (c3(e) & 3) << (2 * j);
          if (c3(e) >= 4) q3[l] |= 1 << (4 * n + j); // hm[l] & m, m = 1 << (4n + j): set means "do not subtract 4"
        }
      }
    }
    const y3 = dequantize(blockFormat(GgmlType.Q3_K), q3, 0, 256);
    for (let e = 0; e < 256; e++) expect(y3[e], `Q3_K element ${e}`).toBe(-2 * (sc(e >> 4) - 32) * (c3(e) - 4));
    expect(f16ToF32(half(-2))).toBe(-2);
  });

  it('Q5_K: Q4_K\'s scales and nibbles, the fifth bit of element e at bit e / 32 of qh[e % 32]', () => {
    const block = new Uint8Array(176);
    const dv = new DataView(block.buffer);
    dv.setUint16(0, half(1), true);
    dv.setUint16(2, half(0.5), true);
    // sub-block j: sc = 2 + j, m = 2j, all below 16 (get_scale_min_k4 is checked with larger ones in kquant.test.ts):
    // j < 4 in bytes j and j + 4 of the scales, j >= 4 as the two nibbles of byte j + 4
    for (let j = 0; j < 4; j++) {
      block[4 + j] = 2 + j;
      block[8 + j] = 2 * j;
      block[12 + j] = (2 + j + 4) | ((2 * (j + 4)) << 4);
    }
    const q = (e: number) => (e * 11 + 7) % 32;
    // llama.cpp's loop: chunk of 64 at ql += 32, low nibble with u1 = 1 << 2c, high nibble with u2 = 2 << 2c
    for (let c = 0; c < 4; c++) {
      for (let l = 0; l < 32; l++) {
        const [lo, hi] = [q(64 * c + l), q(64 * c + 32 + l)];
        block[48 + 32 * c + l] = (lo & 15) | ((hi & 15) << 4);
        block[16 + l] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
      }
    }
    const y = dequantize(blockFormat(GgmlType.Q5_K), block, 0, 256);
    for (let e = 0; e < 256; e++) expect(y[e], `element ${e}`).toBe((2 + (e >> 5)) * q(e) - 0.5 * 2 * (e >> 5));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// GPU: matmul and embed against dequantize()

const BLOCK32 = [{ K: 32, rows: 70 }, { K: 96, rows: 5 }, { K: 160, rows: 131 }];
const BLOCK256 = [{ K: 256, rows: 70 }, { K: 512, rows: 5 }, { K: 768, rows: 131 }];
const TYPES = [
  // 32-element blocks: 20 and 24 bytes stay word-aligned; 18 and 22 put fields at every even offset
  { name: 'q4_1', id: GgmlType.Q4_1, shapes: BLOCK32, tiled: { K: 96, rows: 70 }, embedDim: 64 },
  { name: 'q5_0', id: GgmlType.Q5_0, shapes: BLOCK32, tiled: { K: 160, rows: 131 }, embedDim: 32 },
  { name: 'q5_1', id: GgmlType.Q5_1, shapes: BLOCK32, tiled: { K: 96, rows: 131 }, embedDim: 96 },
  { name: 'iq4_nl', id: GgmlType.IQ4_NL, shapes: BLOCK32, tiled: { K: 160, rows: 70 }, embedDim: 32 },
  // super-blocks: 84, 136 and 176 bytes are word-aligned, Q3_K's 110 is not (odd rows start mid-word)
  { name: 'q2_k', id: GgmlType.Q2_K, shapes: BLOCK256, tiled: { K: 512, rows: 70 }, embedDim: 256 },
  { name: 'q3_k', id: GgmlType.Q3_K, shapes: BLOCK256, tiled: { K: 256, rows: 131 }, embedDim: 256 },
  { name: 'q5_k', id: GgmlType.Q5_K, shapes: BLOCK256, tiled: { K: 768, rows: 70 }, embedDim: 512 },
  { name: 'iq4_xs', id: GgmlType.IQ4_XS, shapes: BLOCK256, tiled: { K: 256, rows: 70 }, embedDim: 256 },
];
const NS = [1, 3, 17, 40];

describe('matmul on the new weight types (CPU twin: dequantize + f64 product)', () => {
  // Tolerance: |gpu - exact| <= (K + 2)·2^-24 · (sum_k |W[r,k] X[t,k]| + |Y0|). The GPU decodes each weight to the
  // same f32 as dequantize() (bit for bit: the embed tests below), so the only difference is f32 arithmetic: K rounded
  // products and sums (the classical bound γ_K ≈ K·2^-24 of sum|terms|) plus the accumulate's one addition.
  const check = (typeId: number, op: 'matvec' | 'tiled', K: number, rows: number, splitRows: number, seed: number, d: FlockDevice = dev) =>
    checkMatmul({ dev: d, typeId, op, K, rows, splitRows, seed, ns: NS, rel: (K + 2) * 2 ** -24, record });

  for (const T of TYPES) {
    for (const { K, rows } of T.shapes) {
      it(`matvec ${T.name}: K ${K}, ${rows} rows, n ${NS.join('/')}, whole and in parts of 29 rows, accumulate on/off`, async () => {
        await check(T.id, 'matvec', K, rows, 29, 3000 * T.id + K + rows);
        expectNoGpuErrors();
      });
    }
    const longest = T.shapes[T.shapes.length - 1];
    it(`matvec ${T.name} with the GPU split (1 and 4 steps per thread): K ${longest.K}, ${longest.rows} rows`, async () => {
      for (const matvecSteps of [1, 4]) await check(T.id, 'matvec', longest.K, longest.rows, 29, 5000 * T.id + longest.K + matvecSteps, { ...dev, matvecSteps });
      expectNoGpuErrors();
    });
    it(`tiled ${T.name}: K ${T.tiled.K}, ${T.tiled.rows} rows, n ${NS.join('/')}, whole (overwrite) and in 2 parts (accumulate)`, async () => {
      await check(T.id, 'tiled', T.tiled.K, T.tiled.rows, Math.ceil(T.tiled.rows / 2), 4000 * T.id + T.tiled.K + T.tiled.rows);
      expectNoGpuErrors();
    });
  }
});

describe('embed of the new weight types (CPU twin: dequantize of the id rows)', () => {
  // Tolerance: exact. Every decoded value is a product of a half, small integers and (IQ4) a level, exact in f32 or
  // rounded once the same way on both sides, then (Q4_1, Q5_1, Q2_K, Q5_K) one subtraction or addition rounded once.
  for (const T of TYPES) {
    it(`${T.name}, dim ${T.embedDim}: whole and vocabulary split over parts of 7 rows`, async () => {
      await checkEmbed(dev, T.id, T.embedDim, testValues(50 * T.embedDim, T.embedDim + T.id));
      expectNoGpuErrors();
    });
  }
});
