// Tests of the test fixtures themselves: the GGUF writer's output parses with an independent reader
// (@huggingface/gguf), the quantizers round-trip through src/model/quant.ts within each format's error bound, and
// every synthetic Llama in LLAMA_FIXTURES loads in llama.cpp and decodes greedily with clear winners (this guards the
// seeds recorded in the table). Not here: anything about Flock's own engine.

import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { gguf } from '@huggingface/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockFormat, dequantize, f16ToF32, GgmlType } from '../../src/model/quant';
import { writeGguf, type GgufTensor } from '../helpers/gguf-writer';
import {
  buildLlamaFixture,
  FixtureRng,
  FIXTURE_TOKENS,
  GREEDY_MIN_GAP,
  LLAMA_FIXTURES,
  writeLlamaFixture,
} from '../helpers/llama-fixture';
import { llamaGreedy } from '../helpers/llama-ref';
import { smallestGap } from '../helpers/parity-logits';
import { f32ToF16, quantize } from '../helpers/quantize';

let tmp = '';
beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'flock-fixtures-test-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const rng = new FixtureRng(seed);
  return Float32Array.from({ length: n }, () => scale * rng.normal());
}

describe('gguf-writer', () => {
  it('writes a GGUF v3 file that @huggingface/gguf reads back: metadata, tensor infos, offsets, data', async () => {
    const tensors: GgufTensor[] = [
      { name: 'a.f32', dims: [5], type: GgmlType.F32, data: quantize(GgmlType.F32, randomValues(5, 1)) },
      { name: 'b.f16', dims: [3, 7], type: GgmlType.F16, data: quantize(GgmlType.F16, randomValues(21, 2)) },
      { name: 'c.q8_0', dims: [64, 3], type: GgmlType.Q8_0, data: quantize(GgmlType.Q8_0, randomValues(192, 3)) },
      { name: 'd.q4_0', dims: [32, 2, 3], type: GgmlType.Q4_0, data: quantize(GgmlType.Q4_0, randomValues(192, 4)) },
    ];
    const bytes = writeGguf({
      alignment: 64,
      metadata: [
        ['general.architecture', { type: 'string', value: 'llama' }],
        ['t.u8', { type: 'u8', value: 255 }],
        ['t.i8', { type: 'i8', value: -128 }],
        ['t.u16', { type: 'u16', value: 65535 }],
        ['t.i16', { type: 'i16', value: -32768 }],
        ['t.u32', { type: 'u32', value: 4294967295 }],
        ['t.i32', { type: 'i32', value: -2147483648 }],
        ['t.f32', { type: 'f32', value: 0.5 }],
        ['t.f64', { type: 'f64', value: Math.PI }],
        ['t.u64', { type: 'u64', value: 2n ** 63n + 5n }],
        ['t.i64', { type: 'i64', value: -(2n ** 40n) }],
        ['t.bool', { type: 'bool', value: true }],
        ['t.str', { type: 'string', value: 'héllo ▁wörld' }],
        ['t.strs', { type: 'array', itemType: 'string', value: ['<s>', '', '▁a'] }],
        ['t.f32s', { type: 'array', itemType: 'f32', value: [1.5, -2, 0] }],
        ['t.i32s', { type: 'array', itemType: 'i32', value: [1, -6, 3] }],
        ['t.empty', { type: 'array', itemType: 'u32', value: [] }],
      ],
      tensors,
    });
    expect(new TextDecoder().decode(bytes.subarray(0, 4))).toBe('GGUF');
    const file = path.join(tmp, 'writer.gguf');
    await writeFile(file, bytes);

    const parsed = await gguf(file, { allowLocalFile: true });
    const md = parsed.metadata as Record<string, unknown>;
    expect(md.version).toBe(3);
    expect(md.tensor_count).toBe(4n);
    // 17 given + general.alignment, added because it is not the default 32
    expect(md.kv_count).toBe(18n);
    expect(md['general.alignment']).toBe(64);
    expect(md['t.u8']).toBe(255);
    expect(md['t.i8']).toBe(-128);
    expect(md['t.u16']).toBe(65535);
    expect(md['t.i16']).toBe(-32768);
    expect(md['t.u32']).toBe(4294967295);
    expect(md['t.i32']).toBe(-2147483648);
    expect(md['t.f32']).toBe(0.5);
    expect(md['t.f64']).toBe(Math.PI);
    expect(md['t.u64']).toBe(2n ** 63n + 5n);
    expect(md['t.i64']).toBe(-(2n ** 40n));
    expect(md['t.bool']).toBe(true);
    expect(md['t.str']).toBe('héllo ▁wörld');
    expect(md['t.strs']).toEqual(['<s>', '', '▁a']);
    expect(md['t.f32s']).toEqual([1.5, -2, 0]);
    expect(md['t.i32s']).toEqual([1, -6, 3]);
    expect(md['t.empty']).toEqual([]);

    expect(Number(parsed.tensorDataOffset) % 64).toBe(0);
    // Our reader's facts: a 5-element F32 tensor, padded to 64, puts the next one at offset 64.
    expect(parsed.tensorInfos[1].offset).toBe(64n);
    expect(parsed.tensorInfos.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
    parsed.tensorInfos.forEach((info, i) => {
      const t = tensors[i];
      expect(info.n_dims).toBe(t.dims.length);
      expect(info.shape.map(Number)).toEqual(t.dims);
      expect(Number(info.dtype)).toBe(t.type);
      expect(Number(info.offset) % 64).toBe(0);
      const start = Number(parsed.tensorDataOffset + info.offset);
      expect(bytes.subarray(start, start + t.data.length)).toEqual(t.data);
    });
    const last = parsed.tensorInfos[3];
    expect(bytes.length).toBe(Number(parsed.tensorDataOffset + last.offset) + tensors[3].data.length);
  });

  it('refuses what llama.cpp would refuse: wrong data size, partial blocks, bad alignment, duplicates, bad values', () => {
    const ok = { name: 'w', dims: [32, 2], type: GgmlType.Q8_0, data: new Uint8Array(68) };
    expect(() => writeGguf({ metadata: [], tensors: [ok] })).not.toThrow();
    expect(() => writeGguf({ metadata: [], tensors: [{ ...ok, data: new Uint8Array(67) }] })).toThrow(/needs 68/);
    expect(() => writeGguf({ metadata: [], tensors: [{ ...ok, dims: [16, 4] }] })).toThrow(/block of 32/);
    expect(() => writeGguf({ metadata: [], tensors: [ok, ok] })).toThrow(/twice/);
    expect(() => writeGguf({ metadata: [], tensors: [ok], alignment: 48 })).toThrow(/power of two/);
    expect(() => writeGguf({ metadata: [['general.alignment', { type: 'u32', value: 64 }]], tensors: [], alignment: 32 }))
      .toThrow(/disagrees/);
    expect(() => writeGguf({ metadata: [['k', { type: 'u8', value: 256 }]], tensors: [] })).toThrow(/not a valid u8/);
    expect(() => writeGguf({ metadata: [['k', { type: 'u32', value: 1.5 }]], tensors: [] })).toThrow(/not a valid u32/);
    expect(() => writeGguf({ metadata: [['k', { type: 'u64', value: -1n }]], tensors: [] })).toThrow(/not a valid u64/);
  });
});

describe('quantize', () => {
  it('F16 rounds to nearest, ties to even, with subnormals, overflow and signs', () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(-2)).toBe(0xc000);
    expect(f32ToF16(65504)).toBe(0x7bff); // largest half
    expect(f32ToF16(65520)).toBe(0x7c00); // halfway to 2^16 rounds (to even) up to Inf
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie: stays on the even mantissa
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: rounds up to the even mantissa
    expect(f32ToF16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f32ToF16(2 ** -25)).toBe(0x0000); // tie with zero: even is zero
    expect(f32ToF16(3 * 2 ** -25)).toBe(0x0002); // 1.5 subnormal steps: tie, to even
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(Number.isNaN(f16ToF32(f32ToF16(NaN)))).toBe(true);
    // Every half value maps back to itself.
    for (let h = 0; h < 0x7c00; h += 7) {
      expect(f32ToF16(f16ToF32(h))).toBe(h);
      expect(f32ToF16(f16ToF32(h | 0x8000))).toBe(h | 0x8000);
    }
  });

  // Error bounds, per element, with d the block's f16 scale and 2^-11 half's relative rounding:
  //   F32: exact.  F16: |err| <= 2^-11 |x| (normal range).
  //   Q8_0: d = amax/127, |err| <= d/2 from rounding q, plus up to 127 * |d - f16(d)| <= 127 * d * 2^-11 from the
  //         stored scale: |err| <= d * (0.5 + 0.0621).
  //   Q4_0: |d| = amax/8; values rounded inside the code range err <= |d|/2; the extreme opposite to `max` lands on
  //         code 16 and is clamped to 15, err <= |d|; plus 8 * |d| * 2^-11 from the stored scale: |err| <= |d| * 1.004.
  it.each([
    ['F32', GgmlType.F32],
    ['F16', GgmlType.F16],
    ['Q8_0', GgmlType.Q8_0],
    ['Q4_0', GgmlType.Q4_0],
  ])('%s round-trips through dequantize within its error bound', (_name, type) => {
    const n = 32 * 64;
    const x = randomValues(n, 11 + type, 0.3);
    // Edge cases in the first blocks: all zeros, a single spike, equal magnitudes of both signs.
    x.fill(0, 0, 32);
    x.fill(0, 32, 64);
    x[40] = -3;
    for (let j = 64; j < 96; j++) x[j] = j % 2 ? 0.75 : -0.75;
    const bytes = quantize(type, x);
    const f = blockFormat(type);
    expect(bytes.length).toBe((n / f.blockElems) * f.blockBytes);
    const y = dequantize(f, bytes, 0, n);
    for (let b = 0; b < n / 32; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
      for (let j = 0; j < 32; j++) {
        const i = b * 32 + j;
        const err = Math.abs(y[i] - x[i]);
        let bound: number;
        switch (type) {
          case GgmlType.F32: bound = 0; break;
          // below 2^-14 halves are subnormal with a fixed step of 2^-24: absolute error up to 2^-25
          case GgmlType.F16: bound = Math.max(Math.abs(x[i]) * 2 ** -11, 2 ** -25); break;
          case GgmlType.Q8_0: bound = (amax / 127) * (0.5 + 127 * 2 ** -11); break;
          default: bound = (amax / 8) * (1 + 8 * 2 ** -11);
        }
        if (err > bound + 1e-12) throw new Error(`element ${i}: |${y[i]} - ${x[i]}| = ${err} > ${bound}`);
      }
    }
    // A zero block stays zero (Q4_0 gives -0: d = 0 / -8). In Q4_0 the spike defines the scale and comes back
    // exactly (d = 3/8 is exact in f16); Q8_0's d = 3/127 is not, so it only meets the bound.
    expect(y.subarray(0, 32).every((v) => v === 0)).toBe(true);
    if (type === GgmlType.Q4_0 || type === GgmlType.F32) expect(y[40]).toBe(-3);
  });

  it('Q4_0 follows the reference rule: d = max / -8, q = min(15, trunc(x/d + 8.5)), low nibbles first', () => {
    const x = new Float32Array(32);
    x[1] = -2; // the largest magnitude, sign kept: d = -2 / -8 = 0.25; its own code is trunc(-8 + 8.5) = 0
    x[0] = 1; // trunc(4 + 8.5) = 12
    x[2] = 2; // the opposite extreme: trunc(8 + 8.5) = 16, clamped to 15
    x[16] = 0.3; // trunc(1.2 + 8.5) = 9, in the high nibble of byte 0
    const b = quantize(GgmlType.Q4_0, x);
    expect(f16ToF32(b[0] | (b[1] << 8))).toBe(0.25);
    expect(b[2]).toBe(12 | (9 << 4));
    expect(b[3]).toBe(0 | (8 << 4)); // x[1] and x[17] = 0 -> trunc(8.5) = 8
    expect(b[4] & 0x0f).toBe(15);
  });
});

describe('llama fixtures', () => {
  it('are deterministic, small, and shaped as their spec says', async () => {
    for (const fx of LLAMA_FIXTURES) {
      const a = buildLlamaFixture(fx);
      expect(Buffer.compare(buildLlamaFixture(fx), a), `${fx.name} is not deterministic`).toBe(0);
      expect(a.length).toBeLessThan(2 * 1024 * 1024);
      const file = await writeLlamaFixture(fx, tmp);
      expect(file).toBe(path.join(tmp, `${fx.name}.gguf`));
      const written = (await stat(file)).mtimeMs;
      expect(await writeLlamaFixture(fx, tmp)).toBe(file); // same bytes already there: kept, not rewritten
      expect((await stat(file)).mtimeMs).toBe(written);
      const parsed = await gguf(file, { allowLocalFile: true });
      const md = parsed.metadata as Record<string, unknown>;
      expect(md['general.architecture']).toBe('llama');
      expect(md['llama.block_count']).toBe(fx.nLayers);
      expect(md['llama.attention.head_count_kv']).toBe(fx.nKvHeads);
      expect((md['tokenizer.ggml.tokens'] as string[]).length).toBe(fx.vocab);
      const shapes = new Map(parsed.tensorInfos.map((t) => [t.name, t.shape.map(Number)]));
      const hd = fx.dim / fx.nHeads;
      expect(shapes.get('token_embd.weight')).toEqual([fx.dim, fx.vocab]);
      expect(shapes.get('blk.0.attn_k.weight')).toEqual([fx.dim, fx.nKvHeads * hd]);
      expect(shapes.get('blk.0.attn_output.weight')).toEqual([fx.nHeads * hd, fx.dim]);
      expect(shapes.get('blk.0.ffn_down.weight')).toEqual([fx.ffn, fx.dim]);
      expect(shapes.has('output.weight')).toBe(!fx.tiedOutput);
      expect(parsed.tensorInfos.length).toBe(1 + 9 * fx.nLayers + 1 + (fx.tiedOutput ? 0 : 1));
      for (const t of parsed.tensorInfos) {
        expect(Number(t.dtype), t.name).toBe(t.name.endsWith('norm.weight') ? GgmlType.F32 : fx.type);
      }
    }
  });

  // Each fixture: llama.cpp loads it and decodes 32 tokens greedily from BOS; every step's top-1 minus top-2
  // log-probability (= logit gap) must be at least GREEDY_MIN_GAP, and the ids must be the ones recorded.
  const cases = LLAMA_FIXTURES.map((fx) => [fx.name, fx] as const);
  it.each(cases)('%s: llama.cpp decodes with clear winners', async (_name, fx) => {
    const file = await writeLlamaFixture(fx, tmp);
    const { ids, logprobs } = await llamaGreedy(file, [FIXTURE_TOKENS.bos], 32);
    const { gap: minGap, at } = smallestGap(logprobs);
    const report = `${fx.name}: llama.cpp ids [${ids.join(', ')}]; min gap ${minGap.toFixed(2)} at step ${at}`;
    console.log(report);
    expect(logprobs.length).toBe(32);
    for (let step = 0; step < 32; step++) {
      const lp = logprobs[step];
      expect(lp.length, report).toBe(fx.vocab);
      // The greedy pick is the arg-max, and no probability underflowed (logit spreads stay under float32's e^-87).
      expect(lp.indexOf(Math.max(...lp)), `step ${step}: ${report}`).toBe(ids[step]);
      expect(Math.min(...lp), `step ${step}: ${report}`).toBeGreaterThan(-80);
    }
    expect(minGap, report).toBeGreaterThanOrEqual(GREEDY_MIN_GAP);
    expect(new Set(ids).size, `not a varied sequence: ${report}`).toBeGreaterThan(16);
    expect(ids, report).toEqual(fx.greedyIds);
    // The recorded gap is what llama.cpp measures; two builds (other SIMD paths) may each sit ~0.2 from f32 math,
    // so allow twice that.
    expect(Math.abs(minGap - fx.minGap), report).toBeLessThan(0.5);
  });
});
