// Quantizers for test fixtures in the 256-element super-block formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS), with
// simple rules of our own: llama.cpp's reference K-quantizers search for error-minimizing scales, ours pick each scale
// so that no value falls outside its sub-block's range and the error bound is easy to state (each function's comment;
// tests/gpu/quant-types.test.ts and kquant.test.ts check them). The bytes are valid blocks of those formats: llama.cpp
// reading them is the check (tests/engine/quant-mix-parity.test.ts, kquant-parity.test.ts).
// Not here: dequantizing (src/model/quant-k.ts), the 32-element formats (quantize.ts).

import { f16ToF32, IQ4_VALUES } from '../../src/model/quant';
import { f16Up } from './half-encode';

const maxOf = (x: ArrayLike<number>, from: number, n: number) => {
  let m = -Infinity;
  for (let i = from; i < from + n; i++) m = Math.max(m, x[i]);
  return m;
};
const minOf = (x: ArrayLike<number>, from: number, n: number) => {
  let m = Infinity;
  for (let i = from; i < from + n; i++) m = Math.min(m, x[i]);
  return m;
};
/** The value of largest magnitude in x[from, from + n), sign kept (the first one on ties); 0 for an all-zero run. */
function signedMax(x: ArrayLike<number>, from: number, n: number): number {
  let amax = 0;
  let max = 0;
  for (let i = from; i < from + n; i++) {
    if (Math.abs(x[i]) > amax) {
      amax = Math.abs(x[i]);
      max = x[i];
    }
  }
  return max;
}

/**
 * The IQ4 code (0..15) whose decoded value Math.fround(scale * IQ4_VALUES[code]) is nearest to x (the lowest code on
 * ties). With |scale| >= max|x| / 127 every x lies within 14|scale| of a level (half the widest gap, 24, inside
 * [-127, 113]; 127 - 113 = 14 past the top level).
 */
export function nearestIq4(x: number, scale: number): number {
  let best = 0;
  let bestErr = Infinity;
  for (let c = 0; c < 16; c++) {
    const err = Math.abs(x - Math.fround(scale * IQ4_VALUES[c]));
    if (err < bestErr) {
      best = c;
      bestErr = err;
    }
  }
  return best;
}

/**
 * Scale and min of the asymmetric K-quants (Q2_K, Q4_K, Q5_K): per sub-block j, value = d·ls_j·q - dmin·lm_j with
 * q in 0..qmax and ls_j, lm_j in 0..smax:
 *   1. m_j = max(0, -min x) (the range always includes 0, as llama.cpp's does); dmin = max m_j / smax rounded UP to a
 *      half, lm_j = ceil(m_j / dmin), so the offset lo_j = -dmin·lm_j lies at or below the sub-block's smallest value;
 *   2. the span above it S_j = max x - lo_j; d = max S_j / (qmax·smax) rounded UP to a half, ls_j = ceil(S_j / (qmax d)),
 *      so qmax steps of d·ls_j reach the largest value;
 *   3. q = round((x - lo_j) / (d·ls_j)), never out of range: |error| <= d·ls_j / 2 < (S_j / qmax + d) / 2.
 */
function asymmetric(x: Float32Array, subLen: number, qmax: number, smax: number) {
  const n = x.length / subLen;
  const mins: number[] = [];
  const maxs: number[] = [];
  for (let j = 0; j < n; j++) {
    mins.push(-Math.min(0, minOf(x, j * subLen, subLen)));
    maxs.push(maxOf(x, j * subLen, subLen));
  }
  const dminBits = f16Up(Math.max(...mins) / smax);
  const dmin = f16ToF32(dminBits);
  const lm = mins.map((m) => (dmin > 0 ? Math.min(smax, Math.ceil(m / dmin)) : 0));
  const spans = maxs.map((hi, j) => Math.max(0, hi + dmin * lm[j]));
  const dBits = f16Up(Math.max(...spans) / (qmax * smax));
  const d = f16ToF32(dBits);
  const ls = spans.map((s) => (d > 0 ? Math.min(smax, Math.ceil(s / (qmax * d))) : 0));
  const q = new Uint8Array(x.length);
  for (let j = 0; j < n; j++) {
    const step = d * ls[j];
    const lo = -dmin * lm[j];
    for (let l = 0; l < subLen; l++) {
      const i = j * subLen + l;
      q[i] = step > 0 ? Math.max(0, Math.min(qmax, Math.round((x[i] - lo) / step))) : 0;
    }
  }
  return { dBits, dminBits, ls, lm, q };
}

/**
 * Scales of the symmetric formats with a signed 6-bit sub-block scale (Q3_K, IQ4_XS): per sub-block j, the signed
 * extreme x_j maps to the most negative level `low` (-4 for Q3_K, -127 for IQ4_XS): s_j = x_j / low; d = max |s_j| / 31
 * rounded UP to a half; k_j = ceil(|s_j| / d) <= 31 and the stored scale is 32 + sign(s_j)·k_j, so the sub-block's step
 * d·(scale - 32) has magnitude at least |s_j| (and below |s_j| + d): no value lies beyond the extreme level.
 */
function signedScales(x: Float32Array, subLen: number, low: number) {
  const n = x.length / subLen;
  const s = Array.from({ length: n }, (_, j) => signedMax(x, j * subLen, subLen) / low);
  const dBits = f16Up(Math.max(...s.map(Math.abs)) / 31);
  const d = f16ToF32(dBits);
  const scales = s.map((v) => (d > 0 ? 32 + Math.sign(v) * Math.min(31, Math.ceil(Math.abs(v) / d)) : 32));
  return { dBits, d, scales };
}

/** Write Q4_K's and Q5_K's 6-bit scales and mins into 12 bytes at `at`, as q4kScaleMin reads them. */
function packScaleMinK4(out: Uint8Array, at: number, ls: number[], lm: number[]): void {
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      out[at + j] = ls[j];
      out[at + j + 4] = lm[j];
    } else {
      out[at + j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
      out[at + j - 4] |= (ls[j] >> 4) << 6;
      out[at + j] |= (lm[j] >> 4) << 6;
    }
  }
}

/** Q2_K: `asymmetric` over 16 sub-blocks of 16, q in 0..3, 4-bit scale and min: |error| < (S_j / 3 + d) / 2. */
function quantizeQ2_K(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 256) * 84);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < values.length / 256; b++) {
    const { dBits, dminBits, ls, lm, q } = asymmetric(values.subarray(b * 256, (b + 1) * 256), 16, 3, 15);
    const o = b * 84;
    for (let j = 0; j < 16; j++) out[o + j] = ls[j] | (lm[j] << 4);
    for (let e = 0; e < 256; e++) out[o + 16 + 32 * (e >> 7) + (e & 31)] |= q[e] << (2 * ((e >> 5) & 3));
    dv.setUint16(o + 80, dBits, true);
    dv.setUint16(o + 82, dminBits, true);
  }
  return out;
}

/**
 * Q3_K: `signedScales` over 16 sub-blocks of 16 with q - 4 in -4..3 = clamp(round(x / step_j)): the extreme maps to
 * -4 exactly, values of the other sign up to 4 steps clamp to 3, so |error| <= |step_j| < max|x_j| / 4 + d.
 */
function quantizeQ3_K(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 256) * 110);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < values.length / 256; b++) {
    const x = values.subarray(b * 256, (b + 1) * 256);
    const { dBits, d, scales } = signedScales(x, 16, -4);
    const o = b * 110;
    for (let s = 0; s < 16; s++) {
      out[o + 96 + (s & 7)] |= (scales[s] & 15) << (4 * (s >> 3));
      out[o + 104 + (s & 3)] |= (scales[s] >> 4) << (2 * (s >> 2));
    }
    dv.setUint16(o + 108, dBits, true);
    for (let e = 0; e < 256; e++) {
      const step = d * (scales[e >> 4] - 32);
      const q = (step !== 0 ? Math.max(-4, Math.min(3, Math.round(x[e] / step))) : 0) + 4;
      out[o + 32 + 32 * (e >> 7) + (e & 31)] |= (q & 3) << (2 * ((e >> 5) & 3));
      out[o + (e & 31)] |= (q >> 2) << (e >> 5);
    }
  }
  return out;
}

/**
 * Q4_K and Q5_K: `asymmetric` over 8 sub-blocks of 32 with 6-bit scales and mins, q in 0..15 (Q4_K) or 0..31 (Q5_K):
 * |error| < (S_j / qmax + d) / 2. Scales and mins are packed as get_scale_min_k4 reads them; nibbles 64 elements at a
 * time (low nibbles elements 0..31 of the chunk, high nibbles 32..63); Q5_K's fifth bits at bit j of qh[l].
 */
function quantizeQ45_K(values: Float32Array, bits: 4 | 5): Uint8Array {
  const size = bits === 4 ? 144 : 176;
  const qsAt = bits === 4 ? 16 : 48;
  const out = new Uint8Array((values.length / 256) * size);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < values.length / 256; b++) {
    const { dBits, dminBits, ls, lm, q } = asymmetric(values.subarray(b * 256, (b + 1) * 256), 32, bits === 4 ? 15 : 31, 63);
    const o = b * size;
    dv.setUint16(o, dBits, true);
    dv.setUint16(o + 2, dminBits, true);
    packScaleMinK4(out, o + 4, ls, lm);
    for (let e = 0; e < 256; e++) {
      const j = e >> 5;
      out[o + qsAt + 32 * (j >> 1) + (e & 31)] |= (q[e] & 15) << (4 * (j & 1));
      if (bits === 5) out[o + 16 + (e & 31)] |= (q[e] >> 4) << j;
    }
  }
  return out;
}

/**
 * Q6_K, per 256-element block of 16 sub-blocks of 16 (value = d·sc·(q - 32), q - 32 in -32..31, sc int8):
 *   1. each sub-block's step s_j = max|x| / 31, so q - 32 = round(x / step) stays in -31..31;
 *   2. d = max s_j / 127 rounded UP to a half and sc_j = ceil(s_j / d) <= 127, so the stored step d·sc_j >= s_j
 *      and no value is clamped: |error| <= d·sc_j / 2 < (s_j + d) / 2.
 * Bits go where llama.cpp's dequantize_row_q6_K reads them (see FORMATS in src/model/quant.ts).
 */
function quantizeQ6_K(values: Float32Array): Uint8Array {
  const nb = values.length / 256;
  const out = new Uint8Array(nb * 210);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const x = values.subarray(b * 256, (b + 1) * 256);
    const steps: number[] = [];
    for (let j = 0; j < 16; j++) {
      let amax = 0;
      for (let l = 0; l < 16; l++) amax = Math.max(amax, Math.abs(x[16 * j + l]));
      steps.push(amax / 31);
    }
    const dBits = f16Up(Math.max(...steps) / 127);
    const d = f16ToF32(dBits);
    const o = b * 210;
    dv.setUint16(o + 208, dBits, true);
    for (let j = 0; j < 16; j++) {
      const sc = d > 0 ? Math.min(127, Math.ceil(steps[j] / d)) : 0;
      dv.setInt8(o + 192 + j, sc);
      const step = d * sc;
      for (let l = 0; l < 16; l++) {
        const e = 16 * j + l;
        const q = (step > 0 ? Math.max(-32, Math.min(31, Math.round(x[e] / step))) : 0) + 32;
        const h = e >> 7;
        const g = (e >> 5) & 3;
        const i = e & 31;
        out[o + 64 * h + 32 * (g & 1) + i] |= (q & 15) << (4 * (g >> 1));
        out[o + 128 + 32 * h + i] |= (q >> 4) << (2 * g);
      }
    }
  }
  return out;
}

/**
 * IQ4_XS: `signedScales` over 8 sub-blocks of 32 (the extreme maps to level -127), then each value's nearest level at
 * the sub-block's step dl_j = d·(ls_j - 32): |error| <= 14|dl_j| < 14 (max|x_j| / 127 + d) (see nearestIq4).
 */
function quantizeIQ4_XS(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 256) * 136);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < values.length / 256; b++) {
    const x = values.subarray(b * 256, (b + 1) * 256);
    const { dBits, d, scales } = signedScales(x, 32, -127);
    const o = b * 136;
    dv.setUint16(o, dBits, true);
    let scalesH = 0;
    for (let ib = 0; ib < 8; ib++) {
      scalesH |= (scales[ib] >> 4) << (2 * ib);
      out[o + 4 + (ib >> 1)] |= (scales[ib] & 15) << (4 * (ib & 1));
      const dl = d * (scales[ib] - 32);
      for (let j = 0; j < 16; j++) {
        out[o + 8 + 16 * ib + j] = nearestIq4(x[32 * ib + j], dl) | (nearestIq4(x[32 * ib + j + 16], dl) << 4);
      }
    }
    dv.setUint16(o + 2, scalesH, true);
  }
  return out;
}

/** The super-block quantizer of each type name; every one needs whole 256-element blocks. */
export const SUPER_BLOCK_QUANTIZERS: Record<string, (values: Float32Array) => Uint8Array> = {
  q2_k: quantizeQ2_K,
  q3_k: quantizeQ3_K,
  q4_k: (v) => quantizeQ45_K(v, 4),
  q5_k: (v) => quantizeQ45_K(v, 5),
  q6_k: quantizeQ6_K,
  iq4_xs: quantizeIQ4_XS,
};
