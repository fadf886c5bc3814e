// GGML tensor types that Flock reads: their block layout (elements and bytes per block) and a CPU dequantizer for each.
// The CPU dequantizers are the oracle for the GPU kernels, which decode the same bytes in registers.
// Not here: quantizing (only test fixtures need that) or any GPU code.

import { UnsupportedTensorTypeError } from './errors';

/** GGML type ids as stored in GGUF tensor infos. */
export const GgmlType = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q8_0: 8,
  Q4_K: 12,
  Q6_K: 14,
  BF16: 30,
} as const;
export type GgmlTypeId = (typeof GgmlType)[keyof typeof GgmlType];

export type TensorTypeName = 'f32' | 'f16' | 'bf16' | 'q4_0' | 'q8_0' | 'q4_k' | 'q6_k';

export interface BlockFormat {
  name: TensorTypeName;
  id: GgmlTypeId;
  /** elements per block */
  blockElems: number;
  /** bytes per block */
  blockBytes: number;
}

const FORMATS: Record<number, BlockFormat> = {
  [GgmlType.F32]: { name: 'f32', id: GgmlType.F32, blockElems: 1, blockBytes: 4 },
  [GgmlType.F16]: { name: 'f16', id: GgmlType.F16, blockElems: 1, blockBytes: 2 },
  // Q4_0: f16 scale d, then 16 bytes: element j (< 16) in the low nibble of byte j, element j + 16 in its high nibble;
  // value = d * (nibble - 8).
  [GgmlType.Q4_0]: { name: 'q4_0', id: GgmlType.Q4_0, blockElems: 32, blockBytes: 18 },
  // Q8_0: f16 scale d, then 32 signed bytes; value = d * q.
  [GgmlType.Q8_0]: { name: 'q8_0', id: GgmlType.Q8_0, blockElems: 32, blockBytes: 34 },
  // BF16: the upper 16 bits of an f32.
  [GgmlType.BF16]: { name: 'bf16', id: GgmlType.BF16, blockElems: 1, blockBytes: 2 },
  // Q4_K: 256 elements in 8 sub-blocks of 32. f16 d, f16 dmin, 12 bytes of 6-bit sub-block scales sc[j] and mins m[j]
  // (packing in q4kScaleMin), then 128 bytes of nibbles: per 64-element chunk c, byte 32c + l holds element
  // 64c + l in its low nibble and 64c + 32 + l in its high one. value = d * sc[j] * q - dmin * m[j], j = element / 32.
  [GgmlType.Q4_K]: { name: 'q4_k', id: GgmlType.Q4_K, blockElems: 256, blockBytes: 144 },
  // Q6_K: 256 elements in 16 sub-blocks of 16. ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.
  // Per 128-element half h, element 128h + 32g + l (g < 4, l < 32): low bits in ql[64h + 32(g & 1) + l] (the low
  // nibble for g < 2, the high one for g >= 2), high bits in qh[32h + l] >> 2g; value = d * scales[element / 16] * (q - 32).
  [GgmlType.Q6_K]: { name: 'q6_k', id: GgmlType.Q6_K, blockElems: 256, blockBytes: 210 },
};

/**
 * The 6-bit scale and min of Q4_K sub-block j (0..7) from the block's 12 scale bytes s (llama.cpp's get_scale_min_k4):
 * j < 4: sc = s[j] & 63, m = s[j + 4] & 63; j >= 4: the low 4 bits in s[j + 4] (sc low nibble, m high nibble), the
 * top 2 bits in the spare top bits of s[j - 4] (sc) and s[j] (m).
 */
export function q4kScaleMin(s: Uint8Array, j: number): [sc: number, m: number] {
  if (j < 4) return [s[j] & 63, s[j + 4] & 63];
  return [(s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)];
}

const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K',
  12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL',
  21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16',
};

export function ggmlTypeName(id: number): string {
  return GGML_TYPE_NAMES[id] ?? `type #${id}`;
}

/** The block format of a GGML type, or a named error for types we have no kernel for. */
export function blockFormat(typeId: number, tensorName = 'tensor'): BlockFormat {
  const f = FORMATS[typeId];
  if (!f) {
    throw new UnsupportedTensorTypeError(
      `${tensorName} has tensor type ${ggmlTypeName(typeId)}, which Flock cannot run yet ` +
        `(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K). Use a GGUF file quantized to one of these.`,
    );
  }
  return f;
}

/** Bytes that `nElems` elements (a whole number of blocks) take in this format. */
export function byteSize(f: BlockFormat, nElems: number): number {
  return (nElems / f.blockElems) * f.blockBytes;
}

const bf16Bits = new Uint32Array(1);
const bf16Float = new Float32Array(bf16Bits.buffer);

/** bfloat16 -> float, exact: the 16 bits become the top half of an f32. */
export function bf16ToF32(h: number): number {
  bf16Bits[0] = (h & 0xffff) << 16;
  return bf16Float[0];
}

/** IEEE half -> float, exact. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Dequantize `nElems` elements that start at element `firstElem` of a tensor's bytes (both multiples of the block size).
 * `bytes` holds the whole tensor (or at least the blocks asked for), starting at element 0.
 */
export function dequantize(
  f: BlockFormat,
  bytes: Uint8Array,
  firstElem: number,
  nElems: number,
  out: Float32Array = new Float32Array(nElems),
): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (f.name) {
    case 'f32':
      for (let i = 0; i < nElems; i++) out[i] = dv.getFloat32((firstElem + i) * 4, true);
      return out;
    case 'f16':
      for (let i = 0; i < nElems; i++) out[i] = f16ToF32(dv.getUint16((firstElem + i) * 2, true));
      return out;
    case 'bf16':
      for (let i = 0; i < nElems; i++) out[i] = bf16ToF32(dv.getUint16((firstElem + i) * 2, true));
      return out;
    case 'q8_0': {
      const b0 = firstElem / 32;
      for (let b = 0; b < nElems / 32; b++) {
        const o = (b0 + b) * 34;
        const d = f16ToF32(dv.getUint16(o, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * dv.getInt8(o + 2 + j);
      }
      return out;
    }
    case 'q4_0': {
      const b0 = firstElem / 32;
      for (let b = 0; b < nElems / 32; b++) {
        const o = (b0 + b) * 18;
        const d = f16ToF32(dv.getUint16(o, true));
        for (let j = 0; j < 16; j++) {
          const q = bytes[o + 2 + j];
          out[b * 32 + j] = d * ((q & 0x0f) - 8);
          out[b * 32 + j + 16] = d * ((q >> 4) - 8);
        }
      }
      return out;
    }
    case 'q4_k': {
      // Every product below is exact in f32 (11-bit d times a 6-bit scale times a 4-bit q), so each value has one
      // rounding, in the final subtraction: the same value llama.cpp's dequantize_row_q4_K and our kernel compute.
      const b0 = firstElem / 256;
      for (let b = 0; b < nElems / 256; b++) {
        const o = (b0 + b) * 144;
        const d = f16ToF32(dv.getUint16(o, true));
        const dmin = f16ToF32(dv.getUint16(o + 2, true));
        const scales = bytes.subarray(o + 4, o + 16);
        for (let j = 0; j < 8; j++) {
          const [sc, m] = q4kScaleMin(scales, j);
          const d1 = d * sc;
          const m1 = dmin * m;
          const qs = o + 16 + 32 * (j >> 1); // the 32 bytes of this sub-block's 64-element chunk
          const shift = (j & 1) * 4; // even sub-blocks in the low nibbles, odd ones in the high
          for (let l = 0; l < 32; l++) out[b * 256 + 32 * j + l] = d1 * ((bytes[qs + l] >> shift) & 15) - m1;
        }
      }
      return out;
    }
    case 'q6_k': {
      // d * scale * (q - 32) needs at most 11 + 7 + 6 = 24 bits: exact in f32, in any order.
      const b0 = firstElem / 256;
      for (let b = 0; b < nElems / 256; b++) {
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
      return out;
    }
    default: {
      const never: never = f.name;
      throw new UnsupportedTensorTypeError(`no dequantizer for ${String(never)}`);
    }
  }
}
