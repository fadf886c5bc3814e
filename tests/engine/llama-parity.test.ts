// Parity with llama.cpp (the oracle, run live through node-llama-cpp's CPU build): for every synthetic Llama in
// LLAMA_FIXTURES, our greedy ids over 32 steps from [BOS] and our log-probabilities at every step; for stories260K,
// our first 64 greedy ids after "Once upon a time".

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateAll, LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { GgmlType } from '../../src/model/quant';
import { FileSource } from '../../src/model/source-file';
import { STORIES, takeGpuErrors, testDevice } from '../helpers/gpu';
import { FIXTURE_TOKENS, LLAMA_FIXTURES, writeLlamaFixture } from '../helpers/llama-fixture';
import { llamaGreedy } from '../helpers/llama-ref';
import { logSoftmax, maxFiniteDiff, maxTopKDiff, prefillLogits } from '../helpers/parity-logits';

const STEPS = 32;
const TOP = 10;

let dev: FlockDevice;
beforeAll(async () => {
  dev = await testDevice();
});
afterAll(() => {
  expect(takeGpuErrors()).toEqual([]);
});

const measured: string[] = [];
afterAll(() => {
  console.log(measured.join('\n'));
});

describe('llama.cpp parity on synthetic Llamas', () => {
  for (const fx of LLAMA_FIXTURES) {
    it(`${fx.name}: 32 greedy ids and every step's log-probs match llama.cpp`, async () => {
      const path = await writeLlamaFixture(fx);
      const ref = await llamaGreedy(path, [FIXTURE_TOKENS.bos], STEPS);
      const source = new FileSource(path);
      const model = await LocalModel.load(dev, source, { maxContext: 64 });
      try {
        const ours = await generateAll(model, { inputIds: [FIXTURE_TOKENS.bos], maxTokens: STEPS, temperature: 0, ignoreEos: true });
        const rows = await prefillLogits(model, [FIXTURE_TOKENS.bos, ...ref.ids.slice(0, STEPS - 1)]);
        let top = 0;
        let fin = 0;
        let minGap = Infinity;
        rows.forEach((row, t) => {
          const lp = logSoftmax(row);
          top = Math.max(top, maxTopKDiff(lp, ref.logprobs[t], TOP));
          fin = Math.max(fin, maxFiniteDiff(lp, ref.logprobs[t]));
          const s = [...row].sort((a, b) => b - a);
          minGap = Math.min(minGap, s[0] - s[1]);
        });
        measured.push(`${fx.name} type ${fx.type}: top${TOP} ${top.toFixed(5)} finite ${fin.toFixed(5)} gap ${minGap.toFixed(2)}`);
        expect(ref.ids).toEqual(fx.greedyIds);
        expect(ours.outputIds).toEqual(ref.ids);
      } finally {
        model.destroy();
        await source.close();
      }
    });
  }
});

describe('llama.cpp parity on stories260K', () => {
  it('64 greedy ids after "Once upon a time"', async () => {
    const source = new FileSource(STORIES);
    const model = await LocalModel.load(dev, source, { maxContext: 128, maxBatch: 128 });
    try {
      const input = model.encodePrompt('Once upon a time');
      const ref = await llamaGreedy(STORIES, input, 64);
      const ours = await generateAll(model, { inputIds: input, maxTokens: 64, temperature: 0, ignoreEos: true });
      const rows = await prefillLogits(model, [...input, ...ref.ids.slice(0, 63)]);
      let top = 0;
      let fin = 0;
      rows.slice(input.length - 1).forEach((row, t) => {
        const lp = logSoftmax(row);
        top = Math.max(top, maxTopKDiff(lp, ref.logprobs[t], TOP));
        fin = Math.max(fin, maxFiniteDiff(lp, ref.logprobs[t]));
      });
      measured.push(`stories: input ${input.join(',')} top${TOP} ${top.toFixed(5)} finite ${fin.toFixed(5)}`);
      expect(ours.outputIds).toEqual(ref.ids);
    } finally {
      model.destroy();
      await source.close();
    }
  });
});
void GgmlType;
