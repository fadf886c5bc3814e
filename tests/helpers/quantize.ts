// Quantizers for test fixtures, one entry point (`quantize`) for every type Flock runs. F32, F16, BF16, Q8_0, Q4_0,
// Q4_1, Q5_0 and Q5_1 follow llama.cpp's reference (`*_ref`) rules, so a fixture we quantize holds the bytes llama.cpp's
// own quantizer would write for the same values; IQ4_NL here and the super-block formats (quantize-k.ts) use simple
// rules of our own (llama.cpp's quantizers for those search for error-minimizing scales), whose bytes are valid blocks
// of those formats: llama.cpp reading them is the check (tests/engine/quant-mix-parity.test.ts, kquant-parity.test.ts).
// Not here: dequantizing (src/model/quant.ts is the one dequantizer, and the tests round-trip through it),
// or anything fast: fixtures are small.
//
// Float rounding matters for bit-equality with llama.cpp: its reference code computes in C `float`, so every
// intermediate here goes through Math.fround in the same order.

import { blockFormat, f16ToF32, GgmlType } from '../../src/model/quant';
import { f16Up, f32ToBf16, f32ToF16, roundHalfAway } from './half-encode';
import { nearestIq4, SUPER_BLOCK_QUANTIZERS } from './quantize-k';

export { f32ToBf16, f32ToF16 } from './half-encode';

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
 * Q4_1 and Q5_1 (llama.cpp's quantize_row_q4_1_ref / q5_1_ref): per block, d = (max - min) / (2^bits - 1), m = min,
 * q = trunc((x - min) / d + 0.5) (as (x - min) * (1/d) in float; Q4_1 clamps to 15), both halves stored as f16:
 * |error| <= d/2 plus the f16 roundings of d (times q <= 31) and m.
 */
function quantizeWithMin(values: Float32Array, bits: 4 | 5): Uint8Array {
  const size = bits === 4 ? 20 : 24;
  const qsAt = bits === 4 ? 4 : 8;
  const out = new Uint8Array((values.length / 32) * size);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < values.length / 32; b++) {
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < 32; j++) {
      min = Math.min(min, values[b * 32 + j]);
      max = Math.max(max, values[b * 32 + j]);
    }
    const d = Math.fround((max - min) / ((1 << bits) - 1));
    const id = d ? Math.fround(1 / d) : 0;
    const o = b * size;
    dv.setUint16(o, f32ToF16(d), true);
    dv.setUint16(o + 2, f32ToF16(min), true);
    let qh = 0;
    for (let j = 0; j < 32; j++) {
      const t = Math.trunc(Math.fround(Math.fround(Math.fround(values[b * 32 + j] - min) * id) + 0.5));
      const q = bits === 4 ? Math.min(15, t) : t;
      out[o + qsAt + (j & 15)] |= (q & 15) << (j & 16 ? 4 : 0);
      qh |= (q >> 4) << j;
    }
    if (bits === 5) dv.setUint32(o + 4, qh >>> 0, true);
  }
  return out;
}

/**
 * Q5_0 (llama.cpp's quantize_row_q5_0_ref): Q4_0's rule with 5 bits: d = max / -16 (max the value of largest
 * magnitude, sign kept), q = min(31, trunc(x / d + 16.5)), the fifth bits in the u32 qh. The code range [0, 31]
 * covers [-16 d, 15 d]: |error| <= |d|/2 plus the f16 rounding of d, and up to |d| for values within a step of -max.
 */
function quantizeQ5_0(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 32) * 22);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < values.length / 32; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = values[b * 32 + j];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -16);
    const id = d ? Math.fround(1 / d) : 0;
    const o = b * 22;
    dv.setUint16(o, f32ToF16(d), true);
    let qh = 0;
    for (let j = 0; j < 32; j++) {
      const q = Math.min(31, Math.trunc(Math.fround(Math.fround(values[b * 32 + j] * id) + 16.5)));
      out[o + 6 + (j & 15)] |= (q & 15) << (j & 16 ? 4 : 0);
      qh |= (q >> 4) << j;
    }
    dv.setUint32(o + 2, qh >>> 0, true);
  }
  return out;
}

/**
 * IQ4_NL (a rule of our own): per block, the value of largest magnitude (sign kept) maps to the lowest level, -127:
 * d = max / -127 with its magnitude rounded UP to a half; each value takes its nearest level (nearestIq4):
 * |error| <= 14|d| (half the widest gap between levels is 12; values past the top level, 113, lose up to 14 steps).
 */
function quantizeIQ4_NL(values: Float32Array): Uint8Array {
  const out = new Uint8Array((values.length / 32) * 18);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < values.length / 32; b++) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = values[b * 32 + j];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const dBits = f16Up(amax / 127) | (max > 0 ? 0x8000 : 0);
    const d = f16ToF32(dBits);
    const o = b * 18;
    dv.setUint16(o, dBits, true);
    for (let j = 0; j < 16; j++) {
      out[o + 2 + j] = nearestIq4(values[b * 32 + j], d) | (nearestIq4(values[b * 32 + j + 16], d) << 4);
    }
  }
  return out;
}

/**
 * Quantize `values` (a whole tensor, rows back to back) to ggml type `typeId`. The block formats need a whole number
 * of blocks (32 or 256 values); in a tensor that means a row length that is a multiple of the block.
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
    case GgmlType.BF16: {
      const out = new Uint8Array(values.length * 2);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < values.length; i++) dv.setUint16(i * 2, f32ToBf16(values[i]), true);
      return out;
    }
  }
  const f = blockFormat(typeId);
  if (values.length % f.blockElems !== 0) {
    throw new Error(`quantize: ${values.length} values are not whole ${f.blockElems}-element blocks of ${f.name}`);
  }
  switch (f.name) {
    case 'q8_0': return quantizeQ8_0(values);
    case 'q4_0': return quantizeQ4_0(values);
    case 'q4_1': return quantizeWithMin(values, 4);
    case 'q5_1': return quantizeWithMin(values, 5);
    case 'q5_0': return quantizeQ5_0(values);
    case 'iq4_nl': return quantizeIQ4_NL(values);
    default: {
      const q = SUPER_BLOCK_QUANTIZERS[f.name];
      if (!q) throw new Error(`quantize: no quantizer for ${f.name}`);
      return q(values);
    }
  }
}
