// Greedy decoding queued ahead (generate.ts decodeAhead, LocalModel's sequence): steps run several per submission,
// each embedding the id the GPU chose in the step before, and ids come back a submission at a time. Oracles:
// llama.cpp's 255 greedy ids for stories260K (tests/fixtures/stories260K.greedy.json) and the same generation one
// step per token (decodeAhead 0) — ids, finish reasons, and what a prefix cache keeps must all be identical.
//   - ids for several step counts per submission and for chained Stages; submissions and readbacks per token;
//   - an end-of-generation id in the middle of a submission: the steps queued past it are dropped, the KV cache
//     keeps exactly the positions one-step decoding keeps, and the next turn through the prefix cache is unchanged;
//   - an abort as ids arrive (what the chat engine's stop strings do), and the end of the context;
//   - sampling that needs the CPU (temperature, repetition penalty) runs step by step, with the same ids.

import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drain, generateTokens, PrefixCache, type Backend, type GenerateOptions } from '../../src/engine/generate';
import { LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { InvalidArgumentError } from '../../src/model/errors';
import { FileSource } from '../../src/model/source-file';
import type { Tokenizer } from '../../src/model/tokenizer';
import { expectNoGpuErrors, STORIES, takeGpuErrors, testDevice } from '../helpers/gpu';

const REFERENCE: number[] = JSON.parse(readFileSync('tests/fixtures/stories260K.greedy.json', 'utf8')).output_ids;
const BOS = 1;

let dev: FlockDevice;
let model: LocalModel;
let twoStages: LocalModel;
const sources: FileSource[] = [];

async function load(stages: number, maxContext = 256): Promise<LocalModel> {
  const source = new FileSource(STORIES);
  sources.push(source);
  return LocalModel.load(dev, source, { stages, maxContext });
}

beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
  model = await load(1);
  twoStages = await load(2);
});
afterAll(async () => {
  model?.destroy();
  twoStages?.destroy();
  for (const s of sources) await s.close();
  expectNoGpuErrors();
});

const run = (m: Backend, opts: Partial<GenerateOptions> & { maxTokens: number }) =>
  drain(generateTokens(m, { inputIds: [BOS], temperature: 0, ignoreEos: true, ...opts }));

/** The model with a different end-of-generation id: the real engine, as if `eos` ended the text. */
function endingAt(m: LocalModel, eos: number): Backend {
  const tokenizer: Tokenizer = Object.create(m.tokenizer, { isEndOfGeneration: { value: (id: number) => id === eos } });
  return { config: m.config, tokenizer, maxBatch: m.maxBatch, maxContext: m.maxContext, begin: (n) => m.begin(n), counters: () => m.counters() };
}

describe('decode ahead', () => {
  it.each([
    { ahead: 1, stages: 1 },
    { ahead: 5, stages: 1 },
    { ahead: 16, stages: 1 },
    { ahead: 3, stages: 2 },
  ])("$ahead step(s) per submission, $stages stage(s): llama.cpp's greedy ids, one submission and readback per $ahead tokens", async ({ ahead, stages }) => {
    const m = stages === 1 ? model : twoStages;
    const n = 64;
    const r = await run(m, { maxTokens: n, decodeAhead: ahead });
    expect(r.outputIds).toEqual(REFERENCE.slice(0, n));
    expect(r.finishReason).toBe('length');
    // n - 1 decode steps in submissions of `ahead` (the first token comes from the prompt's step)
    const submissions = Math.ceil((n - 1) / ahead);
    expect(r.perDecodeStep.submits * (n - 1)).toBeCloseTo(submissions, 6);
    expect(r.perDecodeStep.readbacks * (n - 1)).toBeCloseTo(submissions, 6);
    const oneByOne = await run(m, { maxTokens: n, decodeAhead: 0 });
    expect(oneByOne.perDecodeStep.submits).toBe(1);
    expect(r.perDecodeStep.dispatches).toBe(oneByOne.perDecodeStep.dispatches);
  });

  it('an end-of-generation id inside a submission: the same reply, finish reason and KV cache as one step at a time', async () => {
    const eos = REFERENCE[21]; // the 22nd id ends the text: in the middle of the 6th submission of 4
    expect(REFERENCE.indexOf(eos)).toBe(21);
    const want = REFERENCE.slice(0, 21);
    const kept: number[][] = [];
    for (const decodeAhead of [0, 4]) {
      const cache = new PrefixCache();
      const r = await run(endingAt(model, eos), { maxTokens: 100, decodeAhead, ignoreEos: false, cache });
      expect(r.outputIds).toEqual(want);
      expect(r.finishReason).toBe('stop');
      // the sequence holds every position that ran on a kept id: BOS and the 21 ids (the last one ran to give EOS)
      expect(cache.seq?.length).toBe(1 + want.length);
      kept.push(cache.ids);
      // the next turn continues from the cache: the reference ids after the end-of-generation id
      const next = await run(model, { inputIds: [BOS, ...want, eos], maxTokens: 8, decodeAhead, cache });
      expect(next.cachedTokens).toBe(1 + want.length);
      expect(next.outputIds).toEqual(REFERENCE.slice(22, 30));
      cache.clear();
    }
    expect(kept[1]).toEqual(kept[0]);
  });

  it('an abort as ids arrive keeps the ids so far; the cache holds only positions of kept ids', async () => {
    for (const decodeAhead of [0, 4]) {
      const ac = new AbortController();
      const cache = new PrefixCache();
      const it = generateTokens(model, { inputIds: [BOS], maxTokens: 100, temperature: 0, ignoreEos: true, decodeAhead, signal: ac.signal, cache });
      const ids: number[] = [];
      let r = await it.next();
      while (!r.done) {
        if (r.value.kind === 'token') ids.push(r.value.id); // a local sequence never rolls back
        if (ids.length === 10) ac.abort(); // what the chat engine does on a stop string
        r = await it.next();
      }
      expect(r.value.finishReason).toBe('abort');
      expect(r.value.outputIds).toEqual(REFERENCE.slice(0, 10));
      // every cached position ran on the id the cache says it holds
      expect(cache.ids).toEqual([BOS, ...REFERENCE.slice(0, cache.ids.length - 1)]);
      expect(cache.seq?.length).toBe(cache.ids.length);
      expect(cache.ids.length).toBeGreaterThanOrEqual(10);
      const next = await run(model, { inputIds: [BOS, ...REFERENCE.slice(0, 12)], maxTokens: 6, decodeAhead, cache });
      expect(next.outputIds).toEqual(REFERENCE.slice(12, 18));
      cache.clear();
    }
  });

  it('the end of the context ends the reply where one step at a time ends it', async () => {
    const small = await load(1, 40);
    try {
      const a = await run(small, { maxTokens: 100, decodeAhead: 0 });
      const b = await run(small, { maxTokens: 100, decodeAhead: 16 });
      expect(a.finishReason).toBe('context');
      expect(b.finishReason).toBe('context');
      expect(b.outputIds).toEqual(a.outputIds);
      expect(b.outputIds).toEqual(REFERENCE.slice(0, a.outputIds.length));
    } finally {
      small.destroy();
    }
  });

  it('sampling that needs the CPU runs step by step, with the same ids', async () => {
    for (const opts of [{ temperature: 0.8, seed: 7 }, { temperature: 0, repeatPenalty: 1.3 }]) {
      const a = await run(model, { maxTokens: 24, decodeAhead: 0, ...opts });
      const b = await run(model, { maxTokens: 24, decodeAhead: 8, ...opts });
      expect(b.outputIds).toEqual(a.outputIds);
      expect(b.perDecodeStep.submits).toBe(1);
    }
  });

  it('a step count outside 0..16 is a named error', async () => {
    await expect(run(model, { maxTokens: 4, decodeAhead: 17 })).rejects.toThrow(InvalidArgumentError);
    await expect(run(model, { maxTokens: 4, decodeAhead: 1.5 })).rejects.toThrow(InvalidArgumentError);
  });
});
