// Quantizers for test fixtures: F32, F16, BF16, Q8_0 and Q4_0 following llama.cpp's reference (`*_ref`) rules so a
// fixture we quantize holds the bytes llama.cpp's own quantizer would write for the same values; Q4_K and Q6_K with
// simple rules of our own (llama.cpp's reference K-quantizers search for error-minimizing scales), whose bytes are
// valid blocks of those formats: llama.cpp reading them is the check (tests/engine/kquant-parity.test.ts).
// Not here: dequantizing (src/model/quant.ts is the one dequantizer, and the tests round-trip through it),
// or anything fast: fixtures are small.
//
// Float rounding matters for bit-equality with llama.cpp: its reference code computes in C `float`, so every
// intermediate here goes through Math.fround in the same order.

import { f16ToF32, GgmlType } from '../../src/model/quant';

const f32Bits = new Float32Array(1);
const u32Bits = new Uint32Array(f32Bits.buffer);

/** float -> IEEE half bits, rounding to nearest even (what F16C's `vcvtps2ph` and ggml's fallback do). */
export function f32ToF16(x: number): number {
  f32Bits[0] = x; // rounds a double to float first, as a C float argument would be
  const b = u32Bits[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf stays Inf, NaN stays a (quiet) NaN
  const e = exp - 127 + 15; // half's exponent bias is 15
  if (e >= 31) return sign | 0x7c00; // too large: Inf
  if (e <= 0) {
    // Half subnormal (or zero): value = m * 2^-24 with m = significand >> shift.
    if (e < -10) return sign; // below half the smallest subnormal (2^-25): rounds to zero
    const sig = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = sig >>> shift;
    const rem = sig & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++; // a carry into the exponent field is still correct
    return sign | h;
  }
  let h = sign | (e << 10) | (mant >>> 13); // keep 10 of float's 23 mantissa bits
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // carries into the exponent, up to Inf, as they should
  return h;
}

/** The smallest half at or above a non-negative x (so a scale stored as f16 never shrinks the range it must cover). */
function f16Up(x: number): number {
  let h = f32ToF16(x);
  if (f16ToF32(h) < x) h++; // the next half up (x >= 0: bits and values grow together)
  return h;
}

/** float -> bfloat16 bits as ggml's GGML_FP32_TO_BF16: round to nearest even on the f32 bits, NaN kept quiet. */
export function f32ToBf16(x: number): number {
  f32Bits[0] = x;
  const u = u32Bits[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** C's roundf: halves away from zero (Math.round sends -2.5 to -2, roundf to -3). */
function roundHalfAway(v: number): number {
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
}

/** Per block: f16 scale d = amax / 127, then 32 signed bytes q = roundf(x / d) (computed as x * (1/d) in float). */
function quantizeQ8_0(values: Float32Array): Uint8Array {
  const nb = values.length / 32;
  const out = new Uint8Array(nb * 34);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(values[b * 32 + j]));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    dv.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < 32; j++) {
      dv.setInt8(b * 34 + 2 + j, roundHalfAway(Math.fround(values[b * 32 + j] * id)));
    }
  }
  return out;
}

/**
 * Per block: `max` is the value of largest magnitude (the first one on ties, sign kept), d = max / -8, and
 * q = min(15, trunc(x / d + 8.5)), stored as nibbles: element j in the low nibble of byte j, element j + 16 in the
 * high one. Dividing by -8 (not 8) maps `max` itself to q = 0 exactly; the other extreme lands on 16 and is
 * clamped to 15, so the code range [0, 15] covers [-8 d, 7 d].
 */
function quantizeQ4_0(values: Float32Array): Uint8Array {
  const nb = values.length / 32;
  const out = new Uint8Array(nb * 18);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = values[b * 32 + j];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    dv.setUint16(b * 18, f32ToF16(d), true);
    const code = (x: number) => Math.min(15, Math.trunc(Math.fround(Math.fround(x * id) + 8.5)));
    for (let j = 0; j < 16; j++) {
      out[b * 18 + 2 + j] = code(values[b * 32 + j]) | (code(values[b * 32 + 16 + j]) << 4);
    }
  }
  return out;
}

/**
 * Q4_K, per 256-element block of 8 sub-blocks of 32 (value = d·sc·q - dmin·m, q in 0..15, sc and m 6-bit):
 *   1. each sub-block's min is m_j = max(0, -min x) (the range always includes 0, as llama.cpp's does);
 *      dmin = max m_j / 63 rounded UP to a half, and lm_j = ceil(m_j / dmin), so the stored offset
 *      lo_j = -dmin·lm_j lies at or below the sub-block's smallest value (and within dmin of -m_j);
 *   2. each sub-block's span above lo_j is S_j = max x - lo_j; d = max S_j / (15·63) rounded UP to a half, and
 *      ls_j = ceil(S_j / (15 d)) <= 63, so 15 steps of d·ls_j reach the largest value;
 *   3. q = round((x - lo_j) / (d·ls_j)), never clamped: |error| <= d·ls_j / 2 < (S_j / 15 + d) / 2.
 * Scales and mins are packed as llama.cpp's get_scale_min_k4 reads them (q4kScaleMin), quants 64 at a time: low
 * nibbles elements 0..31 of the chunk, high nibbles 32..63.
 */
function quantizeQ4_K(values: Float32Array): Uint8Array {
  const nb = values.length / 256;
  const out = new Uint8Array(nb * 144);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const x = values.subarray(b * 256, (b + 1) * 256);
    const mins: number[] = [];
    const maxs: number[] = [];
    for (let j = 0; j < 8; j++) {
      let lo = 0;
      let hi = -Infinity;
      for (let l = 0; l < 32; l++) {
        lo = Math.min(lo, x[32 * j + l]);
        hi = Math.max(hi, x[32 * j + l]);
      }
      mins.push(-lo);
      maxs.push(hi);
    }
    const dminBits = f16Up(Math.max(...mins) / 63);
    const dmin = f16ToF32(dminBits);
    const lm = mins.map((m) => (dmin > 0 ? Math.min(63, Math.ceil(m / dmin)) : 0));
    const spans = maxs.map((hi, j) => Math.max(0, hi + dmin * lm[j]));
    const dBits = f16Up(Math.max(...spans) / (15 * 63));
    const d = f16ToF32(dBits);
    const ls = spans.map((s) => (d > 0 ? Math.min(63, Math.ceil(s / (15 * d))) : 0));
    const o = b * 144;
    dv.setUint16(o, dBits, true);
    dv.setUint16(o + 2, dminBits, true);
    for (let j = 0; j < 8; j++) {
      if (j < 4) {
        out[o + 4 + j] = ls[j];
        out[o + 4 + j + 4] = lm[j];
      } else {
        out[o + 4 + j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
        out[o + 4 + j - 4] |= (ls[j] >> 4) << 6;
        out[o + 4 + j] |= (lm[j] >> 4) << 6;
      }
    }
    for (let j = 0; j < 8; j++) {
      const step = d * ls[j];
      const lo = -dmin * lm[j];
      for (let l = 0; l < 32; l++) {
        const q = step > 0 ? Math.max(0, Math.min(15, Math.round((x[32 * j + l] - lo) / step))) : 0;
        out[o + 16 + 32 * (j >> 1) + l] |= q << (4 * (j & 1));
      }
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
 * Quantize `values` (a whole tensor, rows back to back) to ggml type `typeId`.
 * Q8_0 and Q4_0 need a multiple of 32 values, Q4_K and Q6_K of 256; in a tensor that means a row length that is a
 * multiple of the block.
 */
export function quantize(typeId: number, values: Float32Array): Uint8Array {
  switch (typeId) {
    case GgmlType.F32:
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case GgmlType.F16: {
      const out = new Uint8Array(values.length * 2);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < values.length; i++) dv.setUint16(i * 2, f32ToF16(values[i]), true);
      return out;
    }
    case GgmlType.Q8_0:
    case GgmlType.Q4_0:
      if (values.length % 32 !== 0) {
        throw new Error(`quantize: ${values.length} values are not whole 32-element blocks`);
      }
      return typeId === GgmlType.Q8_0 ? quantizeQ8_0(values) : quantizeQ4_0(values);
    case GgmlType.BF16: {
      const out = new Uint8Array(values.length * 2);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < values.length; i++) dv.setUint16(i * 2, f32ToBf16(values[i]), true);
      return out;
    }
    case GgmlType.Q4_K:
    case GgmlType.Q6_K:
      if (values.length % 256 !== 0) {
        throw new Error(`quantize: ${values.length} values are not whole 256-element blocks`);
      }
      return typeId === GgmlType.Q4_K ? quantizeQ4_K(values) : quantizeQ6_K(values);
    default:
      throw new Error(`quantize: no quantizer for ggml type ${typeId} (have F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)`);
  }
}
