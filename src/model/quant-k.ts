// CPU decoders of the 256-element super-block formats: the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) and IQ4_XS, and
// the helpers their scale packings need. Each decodes `nb` whole blocks starting at block `b0` of a tensor's bytes into
// `out` (256 values per block), giving the value llama.cpp's dequantize_row_* gives for the same bytes: the GPU
// kernels (src/gpu/kernels/weights-wgsl-k.ts) are tested against these. Layouts are described in FORMATS (quant.ts).
// Not here: the block table or the dispatch by type (quant.ts), quantizing (tests/helpers).

import { f16ToF32 } from './half';

/** Decode `nb` blocks starting at block `b0` of `bytes` (viewed as `dv`) into out[0 .. 256 nb). */
export type BlockDecoder = (bytes: Uint8Array, dv: DataView, b0: number, nb: number, out: Float32Array) => void;

/** IQ4_NL's and IQ4_XS's 16 levels (llama.cpp's kvalues_iq4nl): a 4-bit code q stands for IQ4_VALUES[q] times the scale. */
export const IQ4_VALUES: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/**
 * The 6-bit scale and min of Q4_K/Q5_K sub-block j (0..7) from the block's 12 scale bytes s (llama.cpp's
 * get_scale_min_k4): j < 4: sc = s[j] & 63, m = s[j + 4] & 63; j >= 4: the low 4 bits in s[j + 4] (sc low nibble, m
 * high nibble), the top 2 bits in the spare top bits of s[j - 4] (sc) and s[j] (m).
 */
export function q4kScaleMin(s: Uint8Array, j: number): [sc: number, m: number] {
  if (j < 4) return [s[j] & 63, s[j + 4] & 63];
  return [(s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)];
}

/**
 * The 6-bit scale (0..63, used as scale - 32) of Q3_K sub-block i (0..15) from the block's 12 scale bytes s: the low
 * 4 bits are nibble i >> 3 of s[i & 7], the top 2 bits are bits 2(i >> 2) of s[8 + (i & 3)] (llama.cpp unpacks the
 * same bits with its kmask shuffles in dequantize_row_q3_K).
 */
export function q3kScale(s: Uint8Array, i: number): number {
  return ((s[i & 7] >> (4 * (i >> 3))) & 15) | (((s[8 + (i & 3)] >> (2 * (i >> 2))) & 3) << 4);
}

// Where the 2-bit fields of Q2_K and Q3_K sit: element e = 128h + 32g + l (h < 2, g < 4, l < 32) has its bits at
// bits 2g of qs[32h + l]; Q3_K's high bit is bit (e >> 5) of hmask[l].
const low2 = (bytes: Uint8Array, qs: number, e: number) => (bytes[qs + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;

/** Q2_K: value = d * (sc & 15) * q - dmin * (sc >> 4), sc = scales[e / 16]; exact products, one rounding. */
const q2K: BlockDecoder = (bytes, dv, b0, nb, out) => {
  for (let b = 0; b < nb; b++) {
    const o = (b0 + b) * 84;
    const d = f16ToF32(dv.getUint16(o + 80, true));
    const dmin = f16ToF32(dv.getUint16(o + 82, true));
    for (let e = 0; e < 256; e++) {
      const sc = bytes[o + (e >> 4)];
      out[b * 256 + e] = d * (sc & 15) * low2(bytes, o + 16, e) - dmin * (sc >> 4);
    }
  }
};

/** Q3_K: value = d * (scale - 32) * (q - 4), q = 2 low bits | hmask bit << 2: at most 20 bits, exact in f32. */
const q3K: BlockDecoder = (bytes, dv, b0, nb, out) => {
  for (let b = 0; b < nb; b++) {
    const o = (b0 + b) * 110;
    const d = f16ToF32(dv.getUint16(o + 108, true));
    const scales = bytes.subarray(o + 96, o + 108);
    for (let e = 0; e < 256; e++) {
      const q = low2(bytes, o + 32, e) | (((bytes[o + (e & 31)] >> (e >> 5)) & 1) << 2);
      out[b * 256 + e] = d * (q3kScale(scales, e >> 4) - 32) * (q - 4);
    }
  }
};

/**
 * Q4_K and Q5_K: value = d * sc[j] * q - dmin * m[j], j = element / 32. Every product is exact in f32 (11-bit d,
 * 6-bit scale, 4- or 5-bit q), so each value has one rounding, in the final subtraction (exact in f64, then rounded
 * once on the store into `out`): the value llama.cpp's dequantizer and our kernel compute.
 */
function q45K(bits: 4 | 5): BlockDecoder {
  const size = bits === 4 ? 144 : 176;
  const qsAt = bits === 4 ? 16 : 48; // Q5_K keeps 32 bytes of high bits (qh) between the scales and the nibbles
  return (bytes, dv, b0, nb, out) => {
    for (let b = 0; b < nb; b++) {
      const o = (b0 + b) * size;
      const d = f16ToF32(dv.getUint16(o, true));
      const dmin = f16ToF32(dv.getUint16(o + 2, true));
      const scales = bytes.subarray(o + 4, o + 16);
      for (let j = 0; j < 8; j++) {
        const [sc, m] = q4kScaleMin(scales, j);
        const d1 = d * sc;
        const m1 = dmin * m;
        const qs = o + qsAt + 32 * (j >> 1); // the 32 bytes of this sub-block's 64-element chunk
        const shift = (j & 1) * 4; // even sub-blocks in the low nibbles, odd ones in the high
        for (let l = 0; l < 32; l++) {
          const hi = bits === 5 ? ((bytes[o + 16 + l] >> j) & 1) << 4 : 0;
          out[b * 256 + 32 * j + l] = d1 * (((bytes[qs + l] >> shift) & 15) | hi) - m1;
        }
      }
    }
  };
}

/** Q6_K: d * scale * (q - 32) needs at most 11 + 7 + 6 = 24 bits: exact in f32, in any order. */
const q6K: BlockDecoder = (bytes, dv, b0, nb, out) => {
  for (let b = 0; b < nb; b++) {
    const o = (b0 + b) * 210;
    const d = f16ToF32(dv.getUint16(o + 208, true));
    for (let e = 0; e < 256; e++) {
      const h = e >> 7;
      const g = (e >> 5) & 3;
      const l = e & 31;
      const lo = (bytes[o + 64 * h + 32 * (g & 1) + l] >> (4 * (g >> 1))) & 15;
      const hi = (bytes[o + 128 + 32 * h + l] >> (2 * g)) & 3;
      out[b * 256 + e] = d * dv.getInt8(o + 192 + (e >> 4)) * ((lo | (hi << 4)) - 32);
    }
  }
};

/**
 * IQ4_XS: value = (d * (ls - 32)) * IQ4_VALUES[q], ls the 6-bit scale of sub-block e / 32. d * (ls - 32) is exact
 * (17 bits); the product with a level (up to 8 bits) may need 25, so it is rounded once, as llama.cpp's float product
 * is (the f64 product is exact; Math.fround rounds it to f32 once).
 */
const iq4XS: BlockDecoder = (bytes, dv, b0, nb, out) => {
  for (let b = 0; b < nb; b++) {
    const o = (b0 + b) * 136;
    const d = f16ToF32(dv.getUint16(o, true));
    const scalesH = dv.getUint16(o + 2, true);
    for (let ib = 0; ib < 8; ib++) {
      const ls = ((bytes[o + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 15) | (((scalesH >> (2 * ib)) & 3) << 4);
      const dl = d * (ls - 32);
      for (let j = 0; j < 16; j++) {
        const q = bytes[o + 8 + 16 * ib + j];
        out[b * 256 + 32 * ib + j] = Math.fround(dl * IQ4_VALUES[q & 15]);
        out[b * 256 + 32 * ib + j + 16] = Math.fround(dl * IQ4_VALUES[q >> 4]);
      }
    }
  }
};

/** The decoder of each super-block format, by tensor type name. */
export const SUPER_BLOCK_DECODERS = {
  q2_k: q2K, q3_k: q3K, q4_k: q45K(4), q5_k: q45K(5), q6_k: q6K, iq4_xs: iq4XS,
} as const satisfies Record<string, BlockDecoder>;
