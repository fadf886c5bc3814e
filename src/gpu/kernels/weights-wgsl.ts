// WGSL that decodes weights in registers, straight from their GGUF bytes bound as `W: array<u32>`.
// `dq4(row, k)` returns elements k..k+3 of a row (k a multiple of 4) as f32; rows are RB bytes apart and K long.
// Works without shader-f16: half floats (F16 values and block scales) are read with unpack2x16float, BF16 by shifting
// its 16 bits into the top of an f32.
// Blocks of 18 (Q4_0, IQ4_NL), 22 (Q5_0), 34 (Q8_0), 110 (Q3_K) or 210 (Q6_K) bytes put their fields at any byte
// offset (any even one for the halves): wU32 reads 4 bytes from any offset by joining two words. Blocks of 20 (Q4_1),
// 24 (Q5_1), 84 (Q2_K), 136 (IQ4_XS), 144 (Q4_K) and 176 (Q5_K) bytes keep every field on a word boundary, so they read
// words directly. A dq4 call never crosses a sub-block (32 elements, 16 in Q2_K/Q3_K/Q6_K), so one scale serves all
// four values. This file holds the float and 32-element formats, weights-wgsl-k.ts the 256-element super-blocks.
// CPU twin: dequantize() in src/model/quant.ts.

import { IQ4_VALUES, type TensorTypeName } from '../../model/quant';
import { superBlockWgsl } from './weights-wgsl-k';

/** Bytes of one row of K elements. */
export function rowBytes(type: TensorTypeName, K: number): number {
  switch (type) {
    case 'f32': return K * 4;
    case 'f16': return K * 2;
    case 'bf16': return K * 2;
    case 'q4_0': return (K / 32) * 18;
    case 'q4_1': return (K / 32) * 20;
    case 'q5_0': return (K / 32) * 22;
    case 'q5_1': return (K / 32) * 24;
    case 'q8_0': return (K / 32) * 34;
    case 'iq4_nl': return (K / 32) * 18;
    case 'q2_k': return (K / 256) * 84;
    case 'q3_k': return (K / 256) * 110;
    case 'q4_k': return (K / 256) * 144;
    case 'q5_k': return (K / 256) * 176;
    case 'q6_k': return (K / 256) * 210;
    case 'iq4_xs': return (K / 256) * 136;
  }
}

/** IQ4_VALUES as four words of four int8 each, for iq4(code) below. */
function iq4Words(): string {
  const words = [0, 1, 2, 3].map((w) =>
    IQ4_VALUES.slice(4 * w, 4 * w + 4).reduce((acc, v, i) => acc | ((v & 0xff) << (8 * i)), 0) >>> 0);
  return words.map((w) => `0x${w.toString(16).padStart(8, '0')}u`).join(', ');
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
fn wByte(o: u32) -> u32 {
  return (W[o >> 2u] >> ((o & 3u) * 8u)) & 255u;
}
fn bytes4(q: u32) -> vec4f {
  return vec4f(f32(q & 255u), f32((q >> 8u) & 255u), f32((q >> 16u) & 255u), f32(q >> 24u));
}
const IQ4 = vec4u(${iq4Words()});
fn iq4(code: u32) -> f32 {
  return sx8(IQ4[code >> 2u], code & 3u);
}
fn iq4x4(q: u32) -> vec4f {
  return vec4f(iq4(q & 15u), iq4((q >> 8u) & 15u), iq4((q >> 16u) & 15u), iq4((q >> 24u) & 15u));
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
    case 'q4_1':
      // Block words: 0 = (d, m); 1..4 = qs. d * q is exact, so the one rounding is the addition, as on the CPU.
      return common + `fn dq4(row: u32, k: u32) -> vec4f {
  let o = (row * RB + (k >> 5u) * 20u) >> 2u;
  let j = k & 31u;
  let dm = unpack2x16float(W[o]);
  let q = (W[o + 1u + ((j & 15u) >> 2u)] >> select(0u, 4u, j >= 16u)) & 0x0f0f0f0fu;
  return dm.x * bytes4(q) + dm.y;
}`;
    case 'q5_0':
      // Bytes: f16 d at 0, qh at 2 (bit j = element j's fifth bit), qs at 6. Bits j..j+3 of qh are spread to the
      // top of each byte of the four nibbles.
      return common + `fn dq4(row: u32, k: u32) -> vec4f {
  let o = row * RB + (k >> 5u) * 22u;
  let j = k & 31u;
  let h = wU32(o + 2u) >> j;
  let hb = (h & 1u) | ((h & 2u) << 7u) | ((h & 4u) << 14u) | ((h & 8u) << 21u);
  let q = ((wU32(o + 6u + (j & 15u)) >> select(0u, 4u, j >= 16u)) & 0x0f0f0f0fu) | (hb << 4u);
  return wHalf(o) * (bytes4(q) - 16.0);
}`;
    case 'q5_1':
      // Block words: 0 = (d, m); 1 = qh; 2..5 = qs. As Q5_0 for the bits, as Q4_1 for the value.
      return common + `fn dq4(row: u32, k: u32) -> vec4f {
  let o = (row * RB + (k >> 5u) * 24u) >> 2u;
  let j = k & 31u;
  let dm = unpack2x16float(W[o]);
  let h = W[o + 1u] >> j;
  let hb = (h & 1u) | ((h & 2u) << 7u) | ((h & 4u) << 14u) | ((h & 8u) << 21u);
  let q = ((W[o + 2u + ((j & 15u) >> 2u)] >> select(0u, 4u, j >= 16u)) & 0x0f0f0f0fu) | (hb << 4u);
  return dm.x * bytes4(q) + dm.y;
}`;
    case 'iq4_nl':
      // Q4_0's layout, each nibble a code into IQ4_VALUES; d * level is exact.
      return common + `fn dq4(row: u32, k: u32) -> vec4f {
  let o = row * RB + (k >> 5u) * 18u;
  let j = k & 31u;
  let q = wU32(o + 2u + (j & 15u)) >> select(0u, 4u, j >= 16u);
  return wHalf(o) * iq4x4(q);
}`;
    case 'q2_k':
    case 'q3_k':
    case 'q4_k':
    case 'q5_k':
    case 'q6_k':
    case 'iq4_xs':
      return common + superBlockWgsl(type);
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
  }
}
