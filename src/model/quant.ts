// GGML tensor types that Flock reads: their block layout (elements and bytes per block) and a CPU dequantizer for each.
// The CPU dequantizers are the oracle for the GPU kernels, which decode the same bytes in registers.
// The 32-element formats are decoded here, the 256-element super-blocks in quant-k.ts.
// Not here: quantizing (only test fixtures need that) or any GPU code.

import { UnsupportedTensorTypeError } from './errors';
import { bf16ToF32, f16ToF32 } from './half';
import { IQ4_VALUES, SUPER_BLOCK_DECODERS } from './quant-k';

export { bf16ToF32, f16ToF32 } from './half';
export { IQ4_VALUES, q3kScale, q4kScaleMin } from './quant-k';

/** GGML type ids as stored in GGUF tensor infos. */
export const GgmlType = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  IQ4_NL: 20,
  IQ4_XS: 23,
  BF16: 30,
} as const;
export type GgmlTypeId = (typeof GgmlType)[keyof typeof GgmlType];

export type TensorTypeName =
  | 'f32' | 'f16' | 'bf16' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q8_0' | 'iq4_nl'
  | 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k' | 'iq4_xs';

export interface BlockFormat {
  name: TensorTypeName;
  id: GgmlTypeId;
  /** elements per block */
  blockElems: number;
  /** bytes per block */
  blockBytes: number;
}

// Layouts (llama.cpp's ggml-common.h block structs; "f16" is an IEEE half, all fields little endian). In the 32-element
// formats, element j < 16 sits in the low nibble of qs[j] and element j + 16 in its high nibble.
const FORMATS: Record<number, BlockFormat> = {
  [GgmlType.F32]: { name: 'f32', id: GgmlType.F32, blockElems: 1, blockBytes: 4 },
  [GgmlType.F16]: { name: 'f16', id: GgmlType.F16, blockElems: 1, blockBytes: 2 },
  // BF16: the upper 16 bits of an f32.
  [GgmlType.BF16]: { name: 'bf16', id: GgmlType.BF16, blockElems: 1, blockBytes: 2 },
  // Q4_0: f16 d, qs[16]; value = d * (nibble - 8).
  [GgmlType.Q4_0]: { name: 'q4_0', id: GgmlType.Q4_0, blockElems: 32, blockBytes: 18 },
  // Q4_1: f16 d, f16 m, qs[16]; value = d * nibble + m.
  [GgmlType.Q4_1]: { name: 'q4_1', id: GgmlType.Q4_1, blockElems: 32, blockBytes: 20 },
  // Q5_0: f16 d, qh (u32: bit j is element j's fifth bit), qs[16]; value = d * ((nibble | bit << 4) - 16).
  [GgmlType.Q5_0]: { name: 'q5_0', id: GgmlType.Q5_0, blockElems: 32, blockBytes: 22 },
  // Q5_1: f16 d, f16 m, qh (u32), qs[16]; value = d * (nibble | bit << 4) + m.
  [GgmlType.Q5_1]: { name: 'q5_1', id: GgmlType.Q5_1, blockElems: 32, blockBytes: 24 },
  // Q8_0: f16 d, then 32 signed bytes; value = d * q.
  [GgmlType.Q8_0]: { name: 'q8_0', id: GgmlType.Q8_0, blockElems: 32, blockBytes: 34 },
  // IQ4_NL: f16 d, qs[16]; value = d * IQ4_VALUES[nibble] (16 non-uniform levels).
  [GgmlType.IQ4_NL]: { name: 'iq4_nl', id: GgmlType.IQ4_NL, blockElems: 32, blockBytes: 18 },
  // Q2_K: 256 elements in 16 sub-blocks of 16. scales[16] (4-bit scale low, 4-bit min high), qs[64] (2 bits each),
  // f16 d, f16 dmin. Element e = 128h + 32g + l (h < 2, g < 4, l < 32): bits 2g of qs[32h + l];
  // value = d * (sc & 15) * q - dmin * (sc >> 4), sc = scales[e / 16].
  [GgmlType.Q2_K]: { name: 'q2_k', id: GgmlType.Q2_K, blockElems: 256, blockBytes: 84 },
  // Q3_K: 256 elements in 16 sub-blocks of 16. hmask[32] (high bits), qs[64] (low 2 bits, placed as in Q2_K),
  // 12 bytes of 6-bit scales (packing in q3kScale), f16 d. The high bit of element e is bit e / 32 of hmask[e % 32];
  // value = d * (scale - 32) * ((low | high << 2) - 4).
  [GgmlType.Q3_K]: { name: 'q3_k', id: GgmlType.Q3_K, blockElems: 256, blockBytes: 110 },
  // Q4_K: 256 elements in 8 sub-blocks of 32. f16 d, f16 dmin, 12 bytes of 6-bit sub-block scales sc[j] and mins m[j]
  // (packing in q4kScaleMin), then 128 bytes of nibbles: per 64-element chunk c, byte 32c + l holds element
  // 64c + l in its low nibble and 64c + 32 + l in its high one. value = d * sc[j] * q - dmin * m[j], j = element / 32.
  [GgmlType.Q4_K]: { name: 'q4_k', id: GgmlType.Q4_K, blockElems: 256, blockBytes: 144 },
  // Q5_K: Q4_K's d, dmin and scales, then qh[32] (element e's fifth bit is bit e / 32 of qh[e % 32]), then Q4_K's
  // 128 bytes of nibbles. value = d * sc[j] * (nibble | bit << 4) - dmin * m[j].
  [GgmlType.Q5_K]: { name: 'q5_k', id: GgmlType.Q5_K, blockElems: 256, blockBytes: 176 },
  // Q6_K: 256 elements in 16 sub-blocks of 16. ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.
  // Per 128-element half h, element 128h + 32g + l (g < 4, l < 32): low bits in ql[64h + 32(g & 1) + l] (the low
  // nibble for g < 2, the high one for g >= 2), high bits in qh[32h + l] >> 2g; value = d * scales[element / 16] * (q - 32).
  [GgmlType.Q6_K]: { name: 'q6_k', id: GgmlType.Q6_K, blockElems: 256, blockBytes: 210 },
  // IQ4_XS: 256 elements in 8 sub-blocks of 32. f16 d, u16 scales_h (2 high bits per sub-block), scales_l[4] (4 low
  // bits per sub-block, sub-block ib in nibble ib & 1 of byte ib >> 1), qs[128]: 16 bytes per sub-block laid out as
  // IQ4_NL's. value = d * (ls - 32) * IQ4_VALUES[nibble].
  [GgmlType.IQ4_XS]: { name: 'iq4_xs', id: GgmlType.IQ4_XS, blockElems: 256, blockBytes: 136 },
};

const GGML_TYPE_NAMES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K',
  12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL',
  21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 30: 'BF16',
};

export function ggmlTypeName(id: number): string {
  return GGML_TYPE_NAMES[id] ?? `type #${id}`;
}

/** The GGML names of the types Flock runs, for messages: "F32, F16, …". */
export const SUPPORTED_TYPE_NAMES = Object.values(FORMATS).map((f) => ggmlTypeName(f.id)).join(', ');

/** The block format of a GGML type, or a named error for types we have no kernel for. */
export function blockFormat(typeId: number, tensorName = 'tensor'): BlockFormat {
  const f = FORMATS[typeId];
  if (!f) {
    throw new UnsupportedTensorTypeError(
      `${tensorName} has tensor type ${ggmlTypeName(typeId)}, which Flock cannot run yet ` +
        `(supported: ${SUPPORTED_TYPE_NAMES}). Use a GGUF file quantized to one of these.`,
    );
  }
  return f;
}

/** Bytes that `nElems` elements (a whole number of blocks) take in this format. */
export function byteSize(f: BlockFormat, nElems: number): number {
  return (nElems / f.blockElems) * f.blockBytes;
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
  const b0 = firstElem / f.blockElems;
  const nb = nElems / f.blockElems;
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
    case 'q8_0':
      for (let b = 0; b < nb; b++) {
        const o = (b0 + b) * 34;
        const d = f16ToF32(dv.getUint16(o, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * dv.getInt8(o + 2 + j);
      }
      return out;
    case 'q4_0':
    case 'q4_1':
    case 'q5_0':
    case 'q5_1':
      decodeQ45(f, bytes, dv, b0, nb, out);
      return out;
    case 'iq4_nl':
      // d * level: 11 + 8 bits, exact in f32
      for (let b = 0; b < nb; b++) {
        const o = (b0 + b) * 18;
        const d = f16ToF32(dv.getUint16(o, true));
        for (let j = 0; j < 16; j++) {
          const q = bytes[o + 2 + j];
          out[b * 32 + j] = d * IQ4_VALUES[q & 15];
          out[b * 32 + j + 16] = d * IQ4_VALUES[q >> 4];
        }
      }
      return out;
    case 'q2_k':
    case 'q3_k':
    case 'q4_k':
    case 'q5_k':
    case 'q6_k':
    case 'iq4_xs':
      SUPER_BLOCK_DECODERS[f.name](bytes, dv, b0, nb, out);
      return out;
    default: {
      const never: never = f.name;
      throw new UnsupportedTensorTypeError(`no dequantizer for ${String(never)}`);
    }
  }
}

/**
 * Q4_0, Q4_1, Q5_0 and Q5_1: 32 elements of 4 or 5 bits (a fifth bit from the u32 qh), with a scale d and either a
 * fixed offset (Q4_0: -8, Q5_0: -16; value = d * (q - offset), exact in f32) or a stored f16 min m (value = d * q + m:
 * an exact product, then one rounding, as llama.cpp's `x*d + m`).
 */
function decodeQ45(f: BlockFormat, bytes: Uint8Array, dv: DataView, b0: number, nb: number, out: Float32Array): void {
  const hasMin = f.name === 'q4_1' || f.name === 'q5_1';
  const fiveBits = f.name === 'q5_0' || f.name === 'q5_1';
  const qsAt = (hasMin ? 4 : 2) + (fiveBits ? 4 : 0);
  const offset = hasMin ? 0 : fiveBits ? 16 : 8;
  for (let b = 0; b < nb; b++) {
    const o = (b0 + b) * f.blockBytes;
    const d = f16ToF32(dv.getUint16(o, true));
    const m = hasMin ? f16ToF32(dv.getUint16(o + 2, true)) : 0;
    const qh = fiveBits ? dv.getUint32(o + qsAt - 4, true) : 0;
    for (let j = 0; j < 32; j++) {
      const nibble = (bytes[o + qsAt + (j & 15)] >> (j & 16 ? 4 : 0)) & 15;
      const q = nibble | (((qh >>> j) & 1) << 4);
      out[b * 32 + j] = hasMin ? d * q + m : d * (q - offset);
    }
  }
}
