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
} as const;
export type GgmlTypeId = (typeof GgmlType)[keyof typeof GgmlType];

export type TensorTypeName = 'f32' | 'f16' | 'q4_0' | 'q8_0';

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
};

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
        `(supported: F32, F16, Q8_0, Q4_0). Use a GGUF file quantized to one of these.`,
    );
  }
  return f;
}

/** Bytes that `nElems` elements (a whole number of blocks) take in this format. */
export function byteSize(f: BlockFormat, nElems: number): number {
  return (nElems / f.blockElems) * f.blockBytes;
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
    default: {
      const never: never = f.name;
      throw new UnsupportedTensorTypeError(`no dequantizer for ${String(never)}`);
    }
  }
}
