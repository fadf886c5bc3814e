// Quantizers for test fixtures: F32, F16, Q8_0 and Q4_0, following llama.cpp's reference (`*_ref`) rules so a
// fixture we quantize holds the bytes llama.cpp's own quantizer would write for the same values.
// Not here: dequantizing (src/model/quant.ts is the one dequantizer, and the tests round-trip through it),
// K-quants (to come), or anything fast: fixtures are small.
//
// Float rounding matters for bit-equality with llama.cpp: its reference code computes in C `float`, so every
// intermediate here goes through Math.fround in the same order.

import { GgmlType } from '../../src/model/quant';

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
 * Quantize `values` (a whole tensor, rows back to back) to ggml type `typeId`.
 * Q8_0 and Q4_0 need a multiple of 32 values; in a tensor that means a row length that is a multiple of 32.
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
    default:
      throw new Error(`quantize: no quantizer for ggml type ${typeId} (have F32, F16, Q8_0, Q4_0)`);
  }
}
