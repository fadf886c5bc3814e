// Parity with llama.cpp, the oracle, run live here through node-llama-cpp's CPU build (tests/helpers/llama-ref.ts):
// for every synthetic Llama in LLAMA_FIXTURES (F32, F16, Q8_0, Q4_0, GQA, tied head), our engine's 32 greedy ids from
// [BOS] equal llama.cpp's (and the ids recorded in the table), and our log-probabilities at each of those 32 steps
// agree with llama.cpp's within a tolerance per tensor type; for stories260K, our 64 greedy ids after
// "Once upon a time" equal llama.cpp's for the same input ids, and so do the log-probs; and the F32 twins of the
// fixtures with Llama-3-style settings (F32_TWINS) are held to the F32 bound, so a misread setting shows.
//
// How our log-probs are taken: a teacher-forced decode through the Head and the Stages (parity-logits.ts): [BOS] (or
// the prompt) in one submission, then llama.cpp's ids one per submission, each ending in the Head's full-vocabulary
// select (generate's path with topK 0). That is the order llama.cpp evaluated them in, and reuses the decode
// pipelines `generate` already compiled (a 32-token prefill would compile the tiled kernels again per fixture: ~5 s
// each on SwiftShader).
//
// Tolerances, on |our log p - llama.cpp's log p| over every token of every step (the fixtures keep logit spreads far
// below float32 underflow, so all of llama.cpp's log-probs are finite; the top-10 tokens are among them), and on its
// mean over one step's tokens. Measured with node-llama-cpp 3.21.1 CPU, 1 thread; max over all tokens / over the
// top 10 / largest step mean, the worst fixture of each type:
//   F32   0.0028 / 0.0017 / 0.0008   llama.cpp's only rounding is its F16 KV cache (K and V, and with them q·K and
//                                    softmax·V, in half precision: relative 2^-11 per element).
//   F16   0.0056 / 0.0046 / 0.0032   + activations rounded to f16 before every F16 matrix product.
//   Q8_0  0.22 / 0.18 / 0.066        + activations quantized to Q8_0 (8 bits per 32-element block, step max|x|/127)
//   Q4_0  0.22 / 0.14 / 0.066          before every quantized matrix product: the ~0.2 of ARCHITECTURE.md.
//   stories260K (F32) 0.022 / 0.018 / 0.0098: the F16 KV cache as above, on a real model's wider logits.
// Every bound is 1.6-3.6x the largest value measured for its type. That the difference is llama.cpp's
// rounding and not ours is checked here too: our log-probs equal the exact-f32 CPU reference (src/model/reference.ts)
// to 1e-3 (measured <= 2.1e-5 for every fixture), and the CPU reference differs from llama.cpp by the same amounts as
// we do. A kernel bug does not hide under the quantized bounds: dropping attention moves logits by ~0.6 on average
// (llama-fixture.ts), 5x the mean bound. Set FLOCK_PARITY_LOG=1 to print the measured differences.
//
// Why the F32 twins: the quantized bounds (0.35) are wide enough to hide a setting read wrongly from the file, and
// the check against the CPU reference cannot see one (both read it through the same readConfig). Measured with a
// readConfig that ignores rope.freq_base (10000 instead of 500000): the Q4_0 h64 and Q4_K_M fixtures kept their
// greedy ids and moved by 0.59 and 0.45 (against 0.35); one that ignores the RMS eps (1e-5 instead of 1e-6): 0.12 and
// 0.15, inside the bound. On the twins (F32, residual stream at a real model's scale, llama-fixture.ts) we measure
// 0.0007-0.0018 against llama.cpp, and those two misreadings 0.45-0.87 and 1.09-1.29: 45x the bound and more.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { GgmlType, ggmlTypeName } from '../../src/model/quant';
import { FileSource } from '../../src/model/source-file';
import { STORIES, takeGpuErrors, testDevice } from '../helpers/gpu';
import { F32_TWINS, FIXTURE_TOKENS, GREEDY_MIN_GAP, LLAMA_FIXTURES, writeLlamaFixture } from '../helpers/llama-fixture';
import { llamaGreedy } from '../helpers/llama-ref';
import {
  expectClearWinners, expectLlamaParity, showDiffs, type Tolerance,
} from '../helpers/parity-logits';

const STEPS = 32;
const STORIES_STEPS = 64;

/** Per weight type; see the header for the measurements behind each number. */
const TOLERANCE: Record<number, Tolerance> = {
  [GgmlType.F32]: { max: 0.01, mean: 0.003 },
  [GgmlType.F16]: { max: 0.02, mean: 0.008 },
  [GgmlType.Q8_0]: { max: 0.35, mean: 0.12 },
  [GgmlType.Q4_0]: { max: 0.35, mean: 0.12 },
};
const STORIES_TOLERANCE: Tolerance = { max: 0.05, mean: 0.02 };

let dev: FlockDevice;
beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
});
afterAll(() => {
  expect(takeGpuErrors()).toEqual([]);
});

describe('llama.cpp parity on the synthetic Llamas', () => {
  for (const fx of LLAMA_FIXTURES) {
    const tol = TOLERANCE[fx.type];
    it(`${fx.name} (${ggmlTypeName(fx.type)}): 32 greedy ids from [BOS] and every step's log-probs`, async () => {
      const path = await writeLlamaFixture(fx);
      const ref = await llamaGreedy(path, [FIXTURE_TOKENS.bos], STEPS);
      // the oracle still agrees with the table (a changed generator or llama.cpp shows up here first)
      expect(ref.ids).toEqual(fx.greedyIds);
      for (const lp of ref.logprobs) expect(lp.every(Number.isFinite)).toBe(true);

      const source = new FileSource(path);
      const model = await LocalModel.load(dev, source, { maxContext: 64 });
      try {
        const d = await expectLlamaParity(model, [FIXTURE_TOKENS.bos], ref, tol, fx.name);
        // no near-tie anywhere: the id comparison above is a fair one
        expect(d.minGap, showDiffs(d)).toBeGreaterThanOrEqual(GREEDY_MIN_GAP);
      } finally {
        model.destroy();
        await source.close();
      }
    });
  }
});

describe('llama.cpp parity on the F32 twins (eps 1e-6, RoPE base 500000) at the F32 bound', () => {
  for (const fx of F32_TWINS) {
    it(`${fx.name}: llama.cpp's clear winners, then our 32 greedy ids and every step's log-probs within 0.01`, async () => {
      expect(fx.type).toBe(GgmlType.F32);
      const path = await writeLlamaFixture(fx);
      const ref = await llamaGreedy(path, [FIXTURE_TOKENS.bos], STEPS);
      expectClearWinners(fx, ref, GREEDY_MIN_GAP);
      const source = new FileSource(path);
      const model = await LocalModel.load(dev, source, { maxContext: 64 });
      try {
        await expectLlamaParity(model, [FIXTURE_TOKENS.bos], ref, TOLERANCE[GgmlType.F32], fx.name);
      } finally {
        model.destroy();
        await source.close();
      }
    });
  }
});

describe('llama.cpp parity on stories260K', () => {
  it('64 greedy ids after "Once upon a time", and every step\'s log-probs', async () => {
    const source = new FileSource(STORIES);
    const model = await LocalModel.load(dev, source, { maxContext: 128 });
    try {
      const input = model.encodePrompt('Once upon a time');
      expect(input[0]).toBe(model.tokenizer.bosId);
      const ref = await llamaGreedy(STORIES, input, STORIES_STEPS);
      // stories260K is not built for clear winners: its smallest top-1/top-2 gap over these 64 steps is ~0.07 logits.
      // The ids still agree, with room: a log-prob difference of at most 0.022 moves a top-2 gap by at most 0.045.
      await expectLlamaParity(model, input, ref, STORIES_TOLERANCE, 'stories260K');
    } finally {
      model.destroy();
      await source.close();
    }
  });
});
