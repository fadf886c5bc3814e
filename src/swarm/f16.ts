// f32 <-> IEEE 754 binary16 ("half") conversion for the wire's 'f16' dtype: round to nearest, ties to even, in
// integer arithmetic so every runtime gives the same bits (Node 20 has neither DataView.getFloat16 nor
// Math.f16round). Not a numeric library: no f16 arithmetic, and NaN payloads are kept only as far as a quiet NaN.

/** Scratch for reading a number's f32 bits. */
const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/** Half bits (0..65535) -> the exact value as a number (every half is exact in f32 and f64). */
export function f16ToF32(h: number): number {
  const negative = (h & 0x8000) !== 0;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  let x: number;
  if (e === 0) x = m * 2 ** -24; // subnormal: m * 2^-24
  else if (e === 0x1f) x = m === 0 ? Infinity : NaN;
  else x = (1024 + m) * 2 ** (e - 25); // normal: (1 + m/1024) * 2^(e-15)
  return negative ? -x : x;
}

/** f32 bits (as an unsigned 32-bit integer) -> half bits, round to nearest, ties to even. */
export function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13); // Inf, or a quiet NaN
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00; // |x| >= 65536: overflows to Inf
  if (e <= 0) {
    // Half subnormal (or zero): value / 2^-24 = full * 2^(e - 14), full = the 24-bit significand.
    if (e < -10) return sign; // |x| < 2^-25: below half of the smallest subnormal, rounds to zero
    const full = mant | 0x800000;
    const shift = 14 - e; // 14..24
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    let m = full >>> shift;
    if (rem > half || (rem === half && (m & 1) !== 0)) m++; // m may carry into 0x400, the smallest normal
    return sign | m;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry into the exponent is right (0x7bff -> Inf)
  return h;
}

/** A number -> half bits: first rounded to f32 (as a Float32Array would store it), then to half. */
export function f32ToF16(x: number): number {
  scratchF[0] = x;
  return f32BitsToF16(scratchU[0]);
}

/** True when half bits are Inf or NaN (exponent all ones). */
export function f16IsNonFinite(h: number): boolean {
  return (h & 0x7c00) === 0x7c00;
}

/** 65,536 exact values, built on first use (256 KiB): decoding a half is then one load. */
let table: Float32Array | null = null;
function f16Table(): Float32Array {
  if (table === null) {
    table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = f16ToF32(h);
  }
  return table;
}

/** Widen src halves into dst[dstOffset ..]. The caller checked dst has room. */
export function f16ArrayToF32(src: Uint16Array, dst: Float32Array, dstOffset = 0): void {
  const t = f16Table();
  for (let i = 0; i < src.length; i++) dst[dstOffset + i] = t[src[i]];
}

/**
 * Narrow src into dst (same length) with round to nearest even. Returns the index of the first element whose half
 * is Inf or NaN (an f32 NaN/Inf, or a finite value with |x| >= 65520 that overflows), or -1 when all are finite.
 */
export function f32ArrayToF16(src: Float32Array, dst: Uint16Array): number {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length); // same bytes, read as integers
  let bad = -1;
  for (let i = 0; i < bits.length; i++) {
    const h = f32BitsToF16(bits[i]);
    dst[i] = h;
    if (bad < 0 && (h & 0x7c00) === 0x7c00) bad = i;
  }
  return bad;
}
