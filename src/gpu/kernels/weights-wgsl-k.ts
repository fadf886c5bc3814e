// WGSL `dq4(row, k)` for the 256-element super-block formats (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS): elements k..k+3
// of a row, decoded in registers from the block's bytes. Each body expects the helpers weights-wgsl.ts puts before it
// (wU32, wHalf, wByte, sx8, bytes4, iq4x4) and the consts K and RB. Four consecutive elements always share their
// sub-block, so one scale (and min) serves all four. Element e of a block is k & 255.
// CPU twin: the decoders in src/model/quant-k.ts, whose comments give each layout.

export type SuperBlockType = 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k' | 'iq4_xs';

/** Q4_K/Q5_K sub-block j's 6-bit scale and min from block words 1..3 (see q4kScaleMin): `sc`, `mn` as u32. */
const scaleMinK4 = `
  let sh = (j & 3u) * 8u;
  let s1 = W[o + 1u] >> sh;
  let s2 = W[o + 2u] >> sh;
  let s3 = W[o + 3u] >> sh;
  let hi = j >= 4u;
  let sc = select(s1 & 63u, (s3 & 15u) | ((s1 >> 2u) & 48u), hi);
  let mn = select(s2 & 63u, ((s3 >> 4u) & 15u) | ((s2 >> 2u) & 48u), hi);`;

export function superBlockWgsl(type: SuperBlockType): string {
  switch (type) {
    case 'q2_k':
      // Block words: 0..3 scales (byte e / 16: scale in the low nibble, min in the high one), 4..19 qs, 20 (d, dmin).
      // Element e = 128h + 32g + l takes bits 2g of qs byte 32h + l. d * scale * q is exact, so the one rounding is
      // the subtraction, as on the CPU.
      return `fn dq4(row: u32, k: u32) -> vec4f {
  let o = (row * RB + (k >> 8u) * 84u) >> 2u;
  let e = k & 255u;
  let s = e >> 4u;
  let sc = (W[o + (s >> 2u)] >> ((s & 3u) * 8u)) & 255u;
  let q = (W[o + 4u + ((e >> 7u) << 3u) + ((e & 31u) >> 2u)] >> (((e >> 5u) & 3u) * 2u)) & 0x03030303u;
  let dm = unpack2x16float(W[o + 20u]);
  return (dm.x * f32(sc & 15u)) * bytes4(q) - dm.y * f32(sc >> 4u);
}`;
    case 'q3_k':
      // Block bytes: hmask 0..31, qs 32..95, scales 96..107, f16 d at 108 (blocks start at even offsets only). The
      // high bit of element e is bit e / 32 of hmask[e % 32]; low bits as Q2_K's; the 6-bit scale of sub-block s has
      // its low nibble in byte 96 + (s & 7) (nibble s >> 3) and its top 2 bits at bit 2(s >> 2) of byte 104 + (s & 3).
      // Every product is exact (at most 20 bits).
      return `fn dq4(row: u32, k: u32) -> vec4f {
  let o = row * RB + (k >> 8u) * 110u;
  let e = k & 255u;
  let l = e & 31u;
  let g = e >> 5u;
  let lo = (wU32(o + 32u + ((e >> 7u) << 5u) + l) >> ((g & 3u) * 2u)) & 0x03030303u;
  let hm = (wU32(o + l) >> g) & 0x01010101u;
  let s = e >> 4u;
  let scl = (wByte(o + 96u + (s & 7u)) >> ((s >> 3u) * 4u)) & 15u;
  let sch = (wByte(o + 104u + (s & 3u)) >> ((s >> 2u) * 2u)) & 3u;
  let sc = f32(scl | (sch << 4u)) - 32.0;
  return (wHalf(o + 108u) * sc) * (bytes4(lo | (hm << 2u)) - 4.0);
}`;
    case 'q4_k':
      // Block words: 0 = (d, dmin); 1..3 = the 12 scale bytes; 4..35 = nibbles (word 4 + 8c + l / 4 for chunk c).
      // d * sc * q is exact in f32, so the one rounding is the subtraction, as on the CPU.
      return `fn dq4(row: u32, k: u32) -> vec4f {
  let o = (row * RB + (k >> 8u) * 144u) >> 2u;
  let e = k & 255u;
  let j = e >> 5u;
  let dm = unpack2x16float(W[o]);${scaleMinK4}
  let q = (W[o + 4u + ((e >> 6u) << 3u) + ((e & 31u) >> 2u)] >> ((j & 1u) * 4u)) & 0x0f0f0f0fu;
  return (dm.x * f32(sc)) * bytes4(q) - dm.y * f32(mn);
}`;
    case 'q5_k':
      // Q4_K's words 0..3, then qh in words 4..11 (the fifth bit of element e is bit j = e / 32 of byte e % 32), then
      // the nibbles in words 12..43.
      return `fn dq4(row: u32, k: u32) -> vec4f {
  let o = (row * RB + (k >> 8u) * 176u) >> 2u;
  let e = k & 255u;
  let j = e >> 5u;
  let dm = unpack2x16float(W[o]);${scaleMinK4}
  let lo = (W[o + 12u + ((e >> 6u) << 3u) + ((e & 31u) >> 2u)] >> ((j & 1u) * 4u)) & 0x0f0f0f0fu;
  let hb = (W[o + 4u + ((e & 31u) >> 2u)] >> j) & 0x01010101u;
  return (dm.x * f32(sc)) * bytes4(lo | (hb << 4u)) - dm.y * f32(mn);
}`;
    case 'q6_k':
      // Block bytes: ql 0..127, qh 128..191, int8 scales 192..207, f16 d at 208. Element e = 128h + 32g + l:
      // 4 low bits from ql[64h + 32(g & 1) + l] (high nibble when g >= 2), 2 high bits from qh[32h + l] >> 2g.
      // Four consecutive elements share h, g and the scale; their bytes are consecutive, so one wU32 each.
      return `fn dq4(row: u32, k: u32) -> vec4f {
  let o = row * RB + (k >> 8u) * 210u;
  let e = k & 255u;
  let h = e >> 7u;
  let g = (e >> 5u) & 3u;
  let l = e & 31u;
  let lo = (wU32(o + h * 64u + (g & 1u) * 32u + l) >> ((g >> 1u) * 4u)) & 0x0f0f0f0fu;
  let hb = (wU32(o + 128u + h * 32u + l) >> (g * 2u)) & 0x03030303u;
  let so = o + 192u + (e >> 4u);
  let sc = sx8(W[so >> 2u], so & 3u);
  return (wHalf(o + 208u) * sc) * (bytes4(lo | (hb << 4u)) - 32.0);
}`;
    case 'iq4_xs':
      // Block words: 0 = (f16 d, u16 scales_h), 1 = scales_l (sub-block ib's low 4 bits at bit 4ib), 2..33 = qs
      // (16 bytes per sub-block, IQ4_NL's layout). d * (ls - 32) is exact; its product with a level is rounded once,
      // as on the CPU.
      return `fn dq4(row: u32, k: u32) -> vec4f {
  let o = (row * RB + (k >> 8u) * 136u) >> 2u;
  let e = k & 255u;
  let ib = e >> 5u;
  let j = e & 31u;
  let w0 = W[o];
  let ls = ((W[o + 1u] >> (4u * ib)) & 15u) | (((w0 >> (16u + 2u * ib)) & 3u) << 4u);
  let dl = unpack2x16float(w0).x * (f32(ls) - 32.0);
  let q = W[o + 2u + 4u * ib + ((j & 15u) >> 2u)] >> select(0u, 4u, j >= 16u);
  return dl * iq4x4(q);
}`;
  }
}
