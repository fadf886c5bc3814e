// Half-width floats as GGUF stores them: IEEE binary16 (F16 tensors and every quant block's scales) and bfloat16,
// decoded exactly to numbers. Not here: encoding (only test fixtures need that) or block formats (quant.ts).

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
