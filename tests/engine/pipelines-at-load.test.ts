// A model compiles every GPU pipeline it runs while it loads (LocalModel.load, compilePipelines), so its first reply
// after "ready" compiles nothing. Oracle: the device's own count of pipelines compiled at first use (pipelines.ts),
// which a model loaded without compiling ahead does raise — and the replies' ids, which must not change.
//   - stories260K (F32) and a Q4_K_M-like fixture (a Q4_K + Q6_K matvec_multi), as one and as two Stages: a prompt
//     longer than 4 tokens (the tiled prefill kernels), greedy decode queued ahead and one step at a time, sampling
//     with the default top-k, the repetition penalty: no pipeline compiled at use;
//   - load progress counts the pipelines: they all compile before load resolves, the bytes reach the total.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateAll, LocalModel } from '../../src/engine/local-model';
import type { LoadProgress } from '../../src/model/source';
import type { FlockDevice } from '../../src/gpu/device';
import { pipelineCounts } from '../../src/gpu/pipelines';
import { FileSource } from '../../src/model/source-file';
import { expectNoGpuErrors, STORIES, takeGpuErrors, testDevice } from '../helpers/gpu';
import { KQUANT_FIXTURES, writeLlamaFixture } from '../helpers/llama-fixture';

let dev: FlockDevice;
const sources: FileSource[] = [];
beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
});
afterAll(async () => {
  for (const s of sources) await s.close();
  expectNoGpuErrors();
});

async function load(path: string, opts: { stages?: number; compilePipelines?: boolean } = {}): Promise<{ model: LocalModel; events: LoadProgress[] }> {
  const source = new FileSource(path);
  sources.push(source);
  const events: LoadProgress[] = [];
  const model = await LocalModel.load(dev, source, { ...opts, maxContext: 64, onProgress: (p) => events.push(p) });
  return { model, events };
}

/** Replies that between them run every kind of step a chat runs. */
async function replies(model: LocalModel): Promise<number[][]> {
  const prompt = [1, ...model.tokenizer.encode('Once upon a time, there was a little')];
  expect(prompt.length).toBeGreaterThan(4); // the tiled prefill
  const out: number[][] = [];
  for (const opts of [
    { temperature: 0 },
    { temperature: 0, decodeAhead: 0 },
    { temperature: 0.8, seed: 3 }, // the default top-k 40
    { temperature: 0, repeatPenalty: 1.2 },
  ]) {
    out.push((await generateAll(model, { inputIds: prompt, maxTokens: 6, ignoreEos: true, ...opts })).outputIds);
  }
  return out;
}

describe('pipelines compiled while loading', () => {
  it.each([
    { name: 'stories260K', stages: 1 },
    { name: 'stories260K', stages: 2 },
    { name: 'llama-q4_k_m', stages: 1 },
  ])('$name, $stages stage(s): the first replies compile nothing; the ids are those of a model that compiles at use', async ({ name, stages }) => {
    const path = name === 'stories260K' ? STORIES : await writeLlamaFixture(KQUANT_FIXTURES.find((f) => f.name === name)!);
    const ahead0 = pipelineCounts(dev).ahead;
    const { model, events } = await load(path, { stages });
    const before = pipelineCounts(dev);
    const got = await replies(model);
    expect(pipelineCounts(dev).atUse).toBe(before.atUse);
    model.destroy();

    const last = events[events.length - 1];
    expect(last.loaded).toBe(last.total);
    expect(last.compiled).toBe(last.pipelines);
    expect(before.ahead - ahead0).toBe(last.pipelines);
    for (let i = 1; i < events.length; i++) {
      expect(events[i].loaded).toBeGreaterThanOrEqual(events[i - 1].loaded);
      expect(events[i].compiled ?? -1).toBeGreaterThanOrEqual(events[i - 1].compiled ?? 0);
    }
    // the oracle: the same replies from a model that compiles at first use (everything is cached by now)
    const lazy = await load(path, { stages, compilePipelines: false });
    expect(lazy.events[lazy.events.length - 1].pipelines).toBe(0);
    expect(await replies(lazy.model)).toEqual(got);
    lazy.model.destroy();
    expectNoGpuErrors();
  });

  it('a model that does not compile ahead compiles at first use (what the counter above watches)', async () => {
    // a fixture no other test in this file loads (its variants are not cached yet)
    const fx = KQUANT_FIXTURES.find((f) => f.name === 'llama-q6_k-gqa4-h32')!;
    const { model, events } = await load(await writeLlamaFixture(fx), { compilePipelines: false });
    expect(events[events.length - 1].pipelines).toBe(0);
    const atUse = pipelineCounts(dev).atUse;
    await replies(model);
    expect(pipelineCounts(dev).atUse - atUse).toBeGreaterThan(10);
    model.destroy();
  });
});
