// WGSL that decodes weights in registers, straight from their GGUF bytes bound as `W: array<u32>`.
// `dq4(row, k)` returns elements k..k+3 of a row (k a multiple of 4) as f32; rows are RB bytes apart and K long.
// Works without shader-f16: half floats (F16 values and block scales) are read with unpack2x16float, BF16 by shifting
// its 16 bits into the top of an f32.
// Quant blocks are 18 (Q4_0), 34 (Q8_0) or 210 (Q6_K) bytes, so their fields sit at any byte offset (Q6_K: any even
// one): wU32 reads 4 bytes from any offset by joining two words. Q4_K's 144-byte blocks keep every field on a word
// boundary, so it reads words directly. A dq4 call never crosses a sub-block (32 elements in Q4_0/Q8_0/Q4_K, 16 in
// Q6_K), so one scale serves all four values. CPU twin: dequantize() in src/model/quant.ts.

import type { TensorTypeName } from '../../model/quant';

/** Bytes of one row of K elements. */
export function rowBytes(type: TensorTypeName, K: number): number {
  switch (type) {
    case 'f32': return K * 4;
    case 'f16': return K * 2;
    case 'q8_0': return (K / 32) * 34;
    case 'q4_0': return (K / 32) * 18;
    case 'bf16': return K * 2;
    case 'q4_k': return (K / 256) * 144;
    case 'q6_k': return (K / 256) * 210;
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
    case 'bf16':
      return common + (aligned
        ? `fn dq4(row: u32, k: u32) -> vec4f {
  let w = (row * K + k) >> 1u;
  let a = W[w];
  let b = W[w + 1u];
  return vec4f(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xffff0000u), bitcast<f32>(b << 16u), bitcast<f32>(b & 0xffff0000u));
}`
        : `fn dq4(row: u32, k: u32) -> vec4f {
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    let i = row * K + k + j;
    if (k + j < K) { v[j] = bitcast<f32>((W[i >> 1u] >> ((i & 1u) * 16u)) << 16u); }
  }
  return v;
}`);
    case 'q4_k':
      // Block words: 0 = (d, dmin); 1..3 = the 12 scale bytes s; 4..35 = nibbles. Sub-block j = e / 32 takes its
      // scale and min from byte j & 3 of words 1..3 (see q4kScaleMin): j < 4 the low 6 bits of s[j] (word 1) and
      // s[j + 4] (word 2); j >= 4 the nibbles of s[j + 4] (word 3) joined with the top 2 bits of s[j - 4] (word 1)
      // and s[j] (word 2). d * sc * q is exact in f32, so the one rounding is the subtraction, as on the CPU.
      return common + `fn dq4(row: u32, k: u32) -> vec4f {
  let o = (row * RB + (k >> 8u) * 144u) >> 2u;
  let e = k & 255u;
  let j = e >> 5u;
  let dm = unpack2x16float(W[o]);
  let sh = (j & 3u) * 8u;
  let s1 = W[o + 1u] >> sh;
  let s2 = W[o + 2u] >> sh;
  let s3 = W[o + 3u] >> sh;
  let hi = j >= 4u;
  let sc = select(s1 & 63u, (s3 & 15u) | ((s1 >> 2u) & 48u), hi);
  let mn = select(s2 & 63u, ((s3 >> 4u) & 15u) | ((s2 >> 2u) & 48u), hi);
  let q = W[o + 4u + ((e >> 6u) << 3u) + ((e & 31u) >> 2u)] >> ((j & 1u) * 4u);
  let n = vec4f(f32(q & 15u), f32((q >> 8u) & 15u), f32((q >> 16u) & 15u), f32((q >> 24u) & 15u));
  return (dm.x * f32(sc)) * n - dm.y * f32(mn);
}`;
    case 'q6_k':
      // Block bytes: ql 0..127, qh 128..191, int8 scales 192..207, f16 d at 208. Element e = 128h + 32g + l:
      // 4 low bits from ql[64h + 32(g & 1) + l] (high nibble when g >= 2), 2 high bits from qh[32h + l] >> 2g.
      // Four consecutive elements share h, g and the scale; their bytes are consecutive, so one wU32 each.
      return common + `fn dq4(row: u32, k: u32) -> vec4f {
  let o = row * RB + (k >> 8u) * 210u;
  let e = k & 255u;
  let h = e >> 7u;
  let g = (e >> 5u) & 3u;
  let l = e & 31u;
  let lo = (wU32(o + h * 64u + (g & 1u) * 32u + l) >> ((g >> 1u) * 4u)) & 0x0f0f0f0fu;
  let hb = (wU32(o + 128u + h * 32u + l) >> (g * 2u)) & 0x03030303u;
  let q = lo | (hb << 4u);
  let n = vec4f(f32(q & 63u), f32((q >> 8u) & 63u), f32((q >> 16u) & 63u), f32(q >> 24u));
  let so = o + 192u + (e >> 4u);
  let sc = sx8(W[so >> 2u], so & 3u);
  return (wHalf(o + 208u) * sc) * (n - 32.0);
}`;
  }
}
