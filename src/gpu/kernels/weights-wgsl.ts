// WGSL that decodes weights in registers, straight from their GGUF bytes bound as `W: array<u32>`.
// `dq4(row, k)` returns elements k..k+3 of a row (k a multiple of 4) as f32; rows are RB bytes apart and K long.
// Works without shader-f16: half floats (F16 values and block scales) are read with unpack2x16float.
// Quant blocks are 18 (Q4_0) or 34 (Q8_0) bytes, so their fields sit at any byte offset: wU32 reads 4 bytes from
// any offset by joining two words. CPU twin: dequantize() in src/model/quant.ts.

import type { TensorTypeName } from '../../model/quant';

/** Bytes of one row of K elements. */
export function rowBytes(type: TensorTypeName, K: number): number {
  switch (type) {
    case 'f32': return K * 4;
    case 'f16': return K * 2;
    case 'q8_0': return (K / 32) * 34;
    case 'q4_0': return (K / 32) * 18;
  }
}

const common = /* wgsl */ `
fn wU32(o: u32) -> u32 {
  let i = o >> 2u;
  let s = (o & 3u) * 8u;
  if (s == 0u) { return W[i]; }
  return (W[i] >> s) | (W[i + 1u] << (32u - s));
}
fn wHalf(o: u32) -> f32 {
  return unpack2x16float(W[o >> 2u] >> ((o & 2u) * 8u)).x;
}
fn sx8(q: u32, byte: u32) -> f32 {
  return f32(bitcast<i32>(q << (24u - 8u * byte)) >> 24u);
}
`;

/** WGSL defining dq4(row, k) for a weight type with row length K (needs `W` declared and consts K, RB). */
export function dequantWgsl(type: TensorTypeName, K: number): string {
  const aligned = K % 4 === 0;
  switch (type) {
    case 'f32':
      return common + (aligned
        ? `fn dq4(row: u32, k: u32) -> vec4f {
  let b = row * K + k;
  return vec4f(bitcast<f32>(W[b]), bitcast<f32>(W[b + 1u]), bitcast<f32>(W[b + 2u]), bitcast<f32>(W[b + 3u]));
}`
        : `fn dq4(row: u32, k: u32) -> vec4f {
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) { if (k + j < K) { v[j] = bitcast<f32>(W[row * K + k + j]); } }
  return v;
}`);
    case 'f16':
      return common + (aligned
        ? `fn dq4(row: u32, k: u32) -> vec4f {
  let w = (row * K + k) >> 1u;
  return vec4f(unpack2x16float(W[w]), unpack2x16float(W[w + 1u]));
}`
        : `fn dq4(row: u32, k: u32) -> vec4f {
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) { if (k + j < K) { v[j] = wHalf((row * K + k + j) * 2u); } }
  return v;
}`);
    case 'q8_0':
      return common + `fn dq4(row: u32, k: u32) -> vec4f {
  let o = row * RB + (k >> 5u) * 34u;
  let q = wU32(o + 2u + (k & 31u));
  return wHalf(o) * vec4f(sx8(q, 0u), sx8(q, 1u), sx8(q, 2u), sx8(q, 3u));
}`;
    case 'q4_0':
      return common + `fn dq4(row: u32, k: u32) -> vec4f {
  let o = row * RB + (k >> 5u) * 18u;
  let j = k & 31u;
  let q = wU32(o + 2u + (j & 15u)) >> select(0u, 4u, j >= 16u);
  let n = vec4f(f32(q & 15u), f32((q >> 8u) & 15u), f32((q >> 16u) & 15u), f32((q >> 24u) & 15u));
  return wHalf(o) * (n - 8.0);
}`;
  }
}
