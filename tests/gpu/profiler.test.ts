// The GPU profiler (flock bench --profile) on Dawn: every dispatch of a decode step is timed and tagged with its
// kernel kind. Oracle: stories260K's structure — per decode step, 4 matrix-product dispatches per layer (q/k/v as one,
// o, gate/up as one, down) over 5 layers plus the output head, one rope_kv and attention per layer, the Head's final
// norm, one embed and one top-k (the layers' norms and SwiGLU run inside the matrix products when decoding) — so the
// counts must be exactly those, and nothing may go untimed; and the wall clock around the generation: every kind's GPU
// time is finite and not negative, the heavy kinds (matrix products, attention) took some, and their total is positive and
// less than the wall time. (A one-row embed can read 0 µs: the timer's ticks are coarser than the kernel.)

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeDevice } from '../../src/cli/dawn';
import { generateAll, LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { GpuProfiler } from '../../src/gpu/profiler';
import { FileSource } from '../../src/model/source-file';
import { STORIES, takeGpuErrors, testDevice } from '../helpers/gpu';

let dev: FlockDevice;
let model: LocalModel;

beforeAll(async () => {
  await nodeDevice({ timestamps: true }); // this file's process: the shared device with timestamp queries
  dev = await testDevice();
  model = await LocalModel.load(dev, new FileSource(STORIES), { maxContext: 64 });
});

afterAll(() => model?.destroy());

describe('GPU profiler', () => {
  it('times every dispatch of a decode step, by kernel kind', async () => {
    expect(dev.device.features.has('timestamp-query')).toBe(true);
    const steps = 4;
    const profiler = new GpuProfiler(dev);
    dev.profiler = profiler;
    const t0 = performance.now();
    try {
      // a one-token prompt: every step, the first one too, has the decode shape
      await generateAll(model, { inputIds: [1], maxTokens: steps, temperature: 0, ignoreEos: true });
    } finally {
      dev.profiler = undefined;
    }
    const wallUs = (performance.now() - t0) * 1000;
    const kinds = await profiler.read();
    const count = Object.fromEntries(kinds.map((k) => [k.kind, k.dispatches / steps]));
    expect(count).toEqual({
      'matvec f32': 4 * 5 + 1, rmsnorm: 1, rope_kv: 5, attention: 5, 'embed f32': 1, topk: 1,
    });
    expect(profiler.dropped).toBe(0);
    // real durations: the heavy kinds took GPU time, and all of it fits in the wall time of the generation
    const totalUs = kinds.reduce((sum, k) => sum + k.us, 0);
    console.log(`profiler: ${kinds.map((k) => `${k.kind} ${k.us.toFixed(0)} µs`).join(', ')}; total ${totalUs.toFixed(0)} µs of ${wallUs.toFixed(0)} µs wall`);
    for (const k of kinds) {
      expect(Number.isFinite(k.us), k.kind).toBe(true);
      expect(k.us, k.kind).toBeGreaterThanOrEqual(0);
    }
    const us = Object.fromEntries(kinds.map((k) => [k.kind, k.us]));
    expect(us['matvec f32']).toBeGreaterThan(0);
    expect(us.attention).toBeGreaterThan(0);
    expect(totalUs).toBeGreaterThan(0);
    expect(totalUs).toBeLessThan(wallUs);
    // a second read starts over
    expect(await profiler.read()).toEqual([]);
    profiler.destroy();
    expect(takeGpuErrors()).toEqual([]);
  });
});
