// Where HOP_TOLERANCE (src/swarm/hop-check.ts) comes from: how far honest answers for the same hop input lie apart,
// and how far a host that scales one layer's output by 1.05 lies from them. stories260K split 0:2 / 2:4 / 4:5, the
// inputs of each span along llama.cpp's greedy reply (40 positions), every span run by GpuStages on this device:
//   - decode steps one position at a time (what a route hop does) against one prefill chunk (what a witness catching
//     up does): the same GPU, other kernels (matvec against the tiled matmul);
//   - the GPU against the CPU reference forward pass (another implementation's rounding: what a host on another
//     vendor's GPU stands for);
//   - f16 frames: input and result rounded to f16 on the wire, decode against prefill;
//   - the liar: layer l of the span run on its own, its output x1.05, the rest of the span after it.
//   - a session over part of a host's span (a client running its own first and last layers routes through [1, 4) of
//     a host of [0, 5)) against a stage of just those layers: what a route hop and its witness may each be.
// Honest divergences must stay a factor below the tolerance and the liar's, on every position, a factor above.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readConfig, type ModelConfig } from '../../src/model/config';
import { openGguf, type GgufFile } from '../../src/model/gguf';
import { loadReferenceWeights, ReferenceCache, referenceEmbed, referenceLayers } from '../../src/model/reference';
import { FileSource } from '../../src/model/source-file';
import type { FlockDevice } from '../../src/gpu/device';
import { GpuStage } from '../../src/gpu/stage';
import { HOP_TOLERANCE, roundF16, rowDivergence } from '../../src/swarm/hop-check';
import { expectNoGpuErrors, STORIES, testDevice } from '../helpers/gpu';
import { referenceIds } from './harness';

const SPANS = [{ start: 0, end: 2 }, { start: 2, end: 4 }, { start: 4, end: 5 }];
const N = 40;

let dev: FlockDevice;
let file: GgufFile;
let cfg: ModelConfig;
let source: FileSource;
const stages = new Map<string, GpuStage>();

async function stage(start: number, end: number): Promise<GpuStage> {
  const key = `${start}:${end}`;
  let s = stages.get(key);
  if (!s) {
    s = await GpuStage.load(dev, file, cfg, start, end, { maxContext: 64 });
    stages.set(key, s);
  }
  return s;
}

/** Decode: one position per forward, as a route hop runs (a session over `span`, default the stage's layers). */
async function decode(st: GpuStage, x: Float32Array, span?: { start: number; end: number }): Promise<Float32Array> {
  const s = st.createSession(N, span);
  const out = new Float32Array(x.length);
  for (let r = 0; r < x.length / cfg.dim; r++) out.set(await st.forward(s, x.subarray(r * cfg.dim, (r + 1) * cfg.dim)), r * cfg.dim);
  st.closeSession(s);
  return out;
}

/** Prefill: every position in one forward, as a witness catching up runs. */
async function prefill(st: GpuStage, x: Float32Array): Promise<Float32Array> {
  const s = st.createSession(N);
  const out = await st.forward(s, x);
  st.closeSession(s);
  return out;
}

const max = (d: Float64Array): number => d.reduce((a, b) => Math.max(a, b), 0);
const min = (d: Float64Array): number => d.reduce((a, b) => Math.min(a, b), Infinity);

beforeAll(async () => {
  dev = await testDevice();
  source = new FileSource(STORIES);
  file = await openGguf(source);
  cfg = readConfig(file);
});
afterAll(async () => {
  for (const s of stages.values()) s.destroy();
  await source.close();
});

describe('hop tolerance', () => {
  it('honest answers differ by rounding far below HOP_TOLERANCE; a x1.05 layer far above it, on every position', async () => {
    const ref = await referenceIds();
    const ids = [1, ...ref.slice(0, N - 1)];
    const w = await loadReferenceWeights(file, cfg, { start: 0, end: cfg.nLayers, head: true });
    // the inputs of every span along the reply: the CPU reference's hidden states at the span boundaries
    const cache = new ReferenceCache(cfg, N);
    let x = referenceEmbed(cfg, w, ids);
    const rows: string[] = [];
    const seen = { decodePrefill: 0, gpuCpu: 0, f16: 0, part: 0, liar: Infinity };
    for (const sp of SPANS) {
      const input = x;
      const cpu = referenceLayers(cfg, w, cache, input, 0, sp.start, sp.end);
      const st = await stage(sp.start, sp.end);
      const a = await decode(st, input);
      const b = await prefill(st, input);
      const x16 = roundF16(input);
      const a16 = roundF16(await decode(st, x16));
      const b16 = roundF16(await prefill(st, x16));
      const dp = max(rowDivergence(a, b, cfg.dim));
      const gc = Math.max(max(rowDivergence(a, cpu, cfg.dim)), max(rowDivergence(b, cpu, cfg.dim)));
      const f16 = max(rowDivergence(a16, b16, cfg.dim));
      seen.decodePrefill = Math.max(seen.decodePrefill, dp);
      seen.gpuCpu = Math.max(seen.gpuCpu, gc);
      seen.f16 = Math.max(seen.f16, f16);
      // the liar: layer l's output x1.05, then the span's remaining layers
      for (let l = sp.start; l < sp.end; l++) {
        let y = await decode(await stage(sp.start, l + 1), input);
        y = y.map((v) => v * 1.05);
        if (l + 1 < sp.end) y = await decode(await stage(l + 1, sp.end), y);
        const liar = min(rowDivergence(a, y, cfg.dim));
        seen.liar = Math.min(seen.liar, liar);
        rows.push(`span ${sp.start}:${sp.end} layer ${l} x1.05: ${liar.toExponential(2)} at the least`);
      }
      rows.push(`span ${sp.start}:${sp.end}: decode/prefill ${dp.toExponential(2)}, GPU/CPU ${gc.toExponential(2)}, f16 frames ${f16.toExponential(2)}`);
      x = cpu;
    }
    // part of a host's span: [1, 4) of a stage of [0, 5) against a stage of [1, 4), on the input of layer 1
    const in1 = referenceLayers(cfg, w, new ReferenceCache(cfg, N), referenceEmbed(cfg, w, ids), 0, 0, 1);
    const part = await decode(await stage(0, cfg.nLayers), in1, { start: 1, end: cfg.nLayers - 1 });
    const own = await decode(await stage(1, cfg.nLayers - 1), in1);
    seen.part = max(rowDivergence(part, own, cfg.dim));
    rows.push(`[1, ${cfg.nLayers - 1}) of a host of [0, ${cfg.nLayers}) against a stage of [1, ${cfg.nLayers - 1}): ${seen.part.toExponential(2)}`);
    console.log(`hop divergence (max over ${N} positions; the liar's min):\n  ${rows.join('\n  ')}\n  tolerance ${HOP_TOLERANCE}`);
    expect(seen.decodePrefill).toBeLessThan(HOP_TOLERANCE / 100);
    expect(seen.gpuCpu).toBeLessThan(HOP_TOLERANCE / 100);
    expect(seen.f16).toBeLessThan(HOP_TOLERANCE / 4);
    expect(seen.part).toBeLessThan(HOP_TOLERANCE / 100);
    expect(seen.liar).toBeGreaterThan(HOP_TOLERANCE * 2);
    expectNoGpuErrors();
  });
});
