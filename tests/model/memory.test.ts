// Memory a model needs at a context (src/model/memory.ts), checked two ways:
//   - a table of the catalog's shapes, whose KV caches are twice what llama.cpp reports for the same context with its
//     default f16 cache (Flock keeps K and V as f32), and of limits that make a model fit only at a shorter context
//     or not at all;
//   - the oracle: the buffers LocalModel really allocates on the GPU (Dawn), counted by label while stories260K loads
//     and opens a session: KV buffers byte for byte, weights up to the 16-byte padding of each buffer, everything
//     within 1%.

import { afterAll, describe, expect, it } from 'vitest';
import { LocalModel } from '../../src/engine/local-model';
import { readConfig } from '../../src/model/config';
import { openGguf } from '../../src/model/gguf';
import {
  contextChoices, effectiveContext, layerKvBytes, longestFit, memoryAt, memoryProblems, weightSizes, type MemoryLimits, type MemoryShape,
} from '../../src/model/memory';
import { FileSource } from '../../src/model/source-file';
import { expectNoGpuErrors, STORIES, testDevice } from '../helpers/gpu';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

// shapes from the catalog's files' headers (llama.cpp's print_info lines for the same files say the same)
const SMOLLM2_135M: MemoryShape = { nLayers: 30, dim: 576, nHeads: 9, nKvHeads: 3, headDim: 64, ffn: 1536, vocab: 49152, ropeDim: 64, ctx: 8192 };
const QWEN25_05B: MemoryShape = { nLayers: 24, dim: 896, nHeads: 14, nKvHeads: 2, headDim: 64, ffn: 4864, vocab: 151936, ropeDim: 64, ctx: 32768 };
const LLAMA32_1B: MemoryShape = { nLayers: 16, dim: 2048, nHeads: 32, nKvHeads: 8, headDim: 64, ffn: 8192, vocab: 128256, ropeDim: 64, ctx: 131072 };

describe('KV cache per context', () => {
  // llama.cpp (f16 K and V) reports these at n_ctx 2048: SmolLM2-135M 45 MiB, Qwen2.5-0.5B 24 MiB, Llama-3.2-1B 64 MiB
  const table: [string, MemoryShape, number, number][] = [
    ['SmolLM2-135M', SMOLLM2_135M, 2048, 2 * 45 * MiB],
    ['Qwen2.5-0.5B', QWEN25_05B, 2048, 2 * 24 * MiB],
    ['Llama-3.2-1B', LLAMA32_1B, 2048, 2 * 64 * MiB],
    ['Llama-3.2-1B', LLAMA32_1B, 131072, 2 * 4096 * MiB],
    ['Qwen2.5-0.5B', QWEN25_05B, 512, 2 * 6 * MiB],
  ];
  for (const [name, shape, ctx, want] of table) {
    it(`${name} at ${ctx} positions: ${want / MiB} MiB`, () => {
      const need = memoryAt(shape, { bytes: 0, largestRow: 0 }, ctx);
      expect(need.kvCache).toBe(want);
      expect(shape.nLayers * layerKvBytes(shape, ctx)).toBe(want);
      expect(need.kvBuffer).toBe(want / shape.nLayers / 2);
    });
  }
});

describe('what fits', () => {
  const desktop: MemoryLimits = { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 2 * GiB, budget: 4 * GiB };
  const phone: MemoryLimits = { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB, budget: 2 * GiB };
  // Llama-3.2-1B Q4_K_M: 808 MB of weights, a 2048-float row of Q6_K is 1680 bytes
  const llamaQ4 = { bytes: 808e6, largestRow: 1680 };
  const table: [string, MemoryShape, { bytes: number; largestRow: number }, MemoryLimits, number, number][] = [
    // [case, shape, weights, limits, asked for, longest that fits]
    ['a desktop runs Llama-3.2-1B at 2048', LLAMA32_1B, llamaQ4, desktop, 2048, 2048],
    // 4 GiB: 808 MB + 64 KiB per position (16 layers × 2 × 512 × 4) + work fits 32768 (2 GiB of KV) but not 65536 (4 GiB)
    ['a desktop cannot hold its full 131072 context, 32768 fits', LLAMA32_1B, llamaQ4, desktop, 131072, 32768],
    // 2 GiB: 808 MB + 1 GiB of KV at 16384 + 11 MB of work fits; 32768 (2 GiB of KV) does not
    ['a phone with 2 GiB fits 16384 of Llama-3.2-1B', LLAMA32_1B, llamaQ4, phone, 131072, 16384],
    // the binding alone: one layer's K at 65536 is 128 MiB (fits), at 131072 256 MiB
    ['with no budget, a 128 MiB binding caps Llama-3.2-1B at 65536', LLAMA32_1B, llamaQ4, { ...phone, budget: null }, 131072, 65536],
    ['weights over the budget fit at no context', LLAMA32_1B, { bytes: 2.5 * GiB, largestRow: 1680 }, phone, 2048, 0],
    ['a weight row over the binding fits at no context', SMOLLM2_135M, { bytes: 1e6, largestRow: 200 * MiB }, phone, 2048, 0],
    ['SmolLM2-135M Q8_0 (145 MB) fits a 256 MiB budget at 2048', SMOLLM2_135M, { bytes: 145e6, largestRow: 612 }, { ...phone, budget: 256 * MiB }, 2048, 2048],
  ];
  for (const [label, shape, w, limits, asked, want] of table) {
    it(label, () => {
      expect(longestFit(shape, w, limits, asked)).toBe(want);
      const problems = memoryProblems(memoryAt(shape, w, asked), limits);
      expect(problems.length === 0).toBe(want === asked);
    });
  }

  it('names the limit a buffer breaks', () => {
    const need = memoryAt(LLAMA32_1B, llamaQ4, 131072);
    expect(memoryProblems(need, { maxBufferSize: 256 * MiB, maxStorageBufferBindingSize: 128 * MiB, budget: null })).toEqual([
      { kind: 'buffer', what: 'kv-cache', bytes: 256 * MiB, limit: 128 * MiB, limitName: 'maxStorageBufferBindingSize' },
    ]);
  });

  it('offers powers of two from 512 up to the model\'s own context', () => {
    expect(contextChoices(2048)).toEqual([512, 1024, 2048]);
    expect(contextChoices(32768)).toEqual([512, 1024, 2048, 4096, 8192, 16384, 32768]);
    expect(contextChoices(3000)).toEqual([512, 1024, 2048, 3000]);
    expect(contextChoices(256)).toEqual([256]);
    expect(effectiveContext(0, 8192)).toBe(8192);
    expect(effectiveContext(4096, 2048)).toBe(2048);
  });
});

describe('the prediction against what LocalModel allocates', () => {
  const sources: FileSource[] = [];
  afterAll(async () => {
    for (const s of sources) await s.close();
  });

  it('stories260K at 1024 positions', async () => {
    const dev = await testDevice();
    const source = new FileSource(STORIES);
    sources.push(source);
    const file = await openGguf(source);
    const cfg = readConfig(file);
    const context = 1024;
    const need = memoryAt(cfg, weightSizes(file, cfg), context);
    const made: { label: string; size: number }[] = [];
    const device = dev.device;
    const create = device.createBuffer.bind(device);
    device.createBuffer = (d: GPUBufferDescriptor) => {
      const b = create(d);
      if (d.usage & GPUBufferUsage.STORAGE) {
        const entry = { label: d.label ?? '', size: d.size };
        made.push(entry);
        // buffers freed again before the model is used (the one-position session that lists kernel variants while
        // loading) are not what the model holds
        const destroy = b.destroy.bind(b);
        b.destroy = () => {
          if (!using) made.splice(made.indexOf(entry), 1);
          destroy();
        };
      }
      return b;
    };
    let using = false;
    let model: LocalModel | undefined;
    try {
      model = await LocalModel.load(dev, source, { maxContext: context });
      using = true;
      model.begin(context).close();
    } finally {
      device.createBuffer = create;
      model?.destroy();
    }
    const sum = (f: (label: string) => boolean) => made.filter((b) => f(b.label)).reduce((a, b) => a + b.size, 0);
    const kv = sum((l) => /^[kv] cache /.test(l));
    const weightBuffers = made.filter((b) => file.tensors.has(b.label.replace(/\[\d+:\d+\]$/, '')));
    const weights = weightBuffers.reduce((a, b) => a + b.size, 0);
    const total = sum(() => true);
    console.log(`stories260K at ${context}: predicted ${need.total} bytes (weights ${need.weights}, KV ${need.kvCache}, work ${need.work}); allocated ${total} (weights ${weights}, KV ${kv}) in ${made.length} buffers`);
    expect(kv).toBe(need.kvCache); // every K and V buffer, to the byte
    expect(weights - need.weights).toBeGreaterThanOrEqual(0);
    expect(weights - need.weights).toBeLessThanOrEqual(32 * weightBuffers.length); // 16 bytes of slack + rounding to 16
    expect(Math.abs(total - need.total) / total).toBeLessThan(0.01);
    expectNoGpuErrors();
  });
});
