// Float -> half-width encodings for test fixtures, rounding as ggml does (f16 and bf16 to nearest even), plus the
// small rounding helpers the quantizers share. Not here: decoding (src/model/half.ts) or block formats (quantize*.ts).

import { f16ToF32 } from '../../src/model/quant';

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
export function f16Up(x: number): number {
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
export function roundHalfAway(v: number): number {
  return Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
}
