// The benchmark models' generator (tests/helpers/bench-gguf.ts): its random K-quant blocks are valid blocks that
// llama.cpp and our engine compute the same numbers from, and its files are the sizes and layout it promises.
//   - a small model of the same make (Q4_K_M layout, random blocks, tied head, Llama-3 RoPE scaling): llama.cpp's
//     log-probs over 4 greedy steps from BOS equal ours within the K-quant tolerance of kquant-parity.test.ts, and
//     ours equal the exact-f32 CPU reference's; nothing is NaN.
//   - the 1B and 8B specs: sizes from the header alone (nothing written), Q6_K exactly where Q4_K_M puts it.
// Random weights give near-ties, so ids are compared teacher-forced (on llama.cpp's), not as free greedy runs.

import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { GgmlType } from '../../src/model/quant';
import { FileSource } from '../../src/model/source-file';
import {
  benchModelBytes, benchTensors, LLAMA_3_1_8B, LLAMA_3_2_1B, useMoreBits, writeBenchModel, type BenchModelSpec,
} from '../helpers/bench-gguf';
import { takeGpuErrors, testDevice } from '../helpers/gpu';
import { llamaGreedy } from '../helpers/llama-ref';
import { compareLogprobs, CPU_REFERENCE_MAX, showDiffs } from '../helpers/parity-logits';

const SMALL: BenchModelSpec = {
  ...LLAMA_3_2_1B, name: 'bench-small', dim: 256, nLayers: 8, nHeads: 4, nKvHeads: 2, ffn: 512, vocab: 600, ctx: 256,
};

let dev: FlockDevice;
let dir: string;
beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
  dir = await mkdtemp(path.join(os.tmpdir(), 'flock-bench-model-'));
});
afterAll(async () => {
  expect(takeGpuErrors()).toEqual([]);
  await rm(dir, { recursive: true, force: true });
});

describe('benchmark models', () => {
  it('random Q4_K/Q6_K blocks: llama.cpp and our engine compute the same log-probs from them', async () => {
    const file = path.join(dir, 'small.gguf');
    expect(writeBenchModel(SMALL, file)).toBe(true);
    expect(writeBenchModel(SMALL, file)).toBe(false); // cached: a file of the right size stays
    expect((await stat(file)).size).toBe(benchModelBytes(SMALL));
    const ref = await llamaGreedy(file, [1], 4);
    for (const lp of ref.logprobs) expect(lp.every((x) => !Number.isNaN(x))).toBe(true);
    const source = new FileSource(file);
    const model = await LocalModel.load(dev, source, { maxContext: 16 });
    try {
      const d = await compareLogprobs(model, [1], ref);
      expect(d.cpuMax, showDiffs(d)).toBeLessThanOrEqual(CPU_REFERENCE_MAX);
      // kquant-parity.test.ts's Q4_K bounds: llama.cpp rounds activations to 8 bits inside K-quant products
      expect(d.max, showDiffs(d)).toBeLessThanOrEqual(0.35);
      expect(d.mean, showDiffs(d)).toBeLessThanOrEqual(0.12);
    } finally {
      model.destroy();
      await source.close();
    }
  });

  // sizes of the published Q4_K_M files of Llama-3.2-1B-Instruct (807,694,464 bytes) and Llama-3.1-8B-Instruct
  // (4,920,734,016 bytes); ours differ by their tokenizer metadata (a short SentencePiece vocabulary, no merges)
  it.each([
    { spec: LLAMA_3_2_1B, bytes: 807_694_464, moreBitsLayers: 8 },
    { spec: LLAMA_3_1_8B, bytes: 4_920_734_016, moreBitsLayers: 16 },
  ])('$spec.name: the size of a Q4_K_M file of its shapes, Q6_K where Q4_K_M puts it', ({ spec, bytes, moreBitsLayers }) => {
      expect(Math.abs(benchModelBytes(spec) - bytes) / bytes).toBeLessThan(0.01);
      const tensors = benchTensors(spec);
      const q6 = (role: string) => tensors.filter((t) => t.name.endsWith(`${role}.weight`) && t.type === GgmlType.Q6_K).length;
      expect(q6('attn_v')).toBe(moreBitsLayers);
      expect(q6('ffn_down')).toBe(moreBitsLayers);
      expect(Array.from({ length: spec.nLayers }, (_, l) => l).filter((l) => useMoreBits(l, spec.nLayers)).length).toBe(moreBitsLayers);
      const head = tensors.find((t) => t.name === (spec.tiedOutput ? 'token_embd.weight' : 'output.weight'));
      expect(head?.type).toBe(GgmlType.Q6_K);
  });
});
