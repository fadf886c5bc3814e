// Parity with llama.cpp on Q4_K, Q6_K and BF16 weights: the synthetic Llamas of KQUANT_FIXTURES (Q4_K, Q6_K, BF16
// and a Q4_K_M-like mix of Q4_K and Q6_K), run live through node-llama-cpp's CPU build. This is the check that our
// block layouts are llama.cpp's: it reads the bytes our quantizers wrote, and our kernels and CPU dequantizer must
// agree with what it computes from them.
//   - the fixtures themselves (as tests/model/fixtures.test.ts guards LLAMA_FIXTURES): deterministic, each tensor in
//     the type its spec says, and llama.cpp decodes 32 greedy tokens from [BOS] with every top-1/top-2 gap at least
//     GREEDY_MIN_GAP, giving the ids recorded in the table;
//   - our engine's 32 greedy ids from [BOS] equal llama.cpp's, and our log-probs at each step agree with llama.cpp's
//     within a tolerance per type (same method as llama-parity.test.ts: teacher-forced decode, parity-logits.ts).
// Not here: single kernels (tests/gpu/kquant.test.ts) or the other weight types (llama-parity.test.ts).
//
// Tolerances, on |our log p - llama.cpp's log p| over every token of every step, and on its mean over one step's
// tokens. llama.cpp's CPU build multiplies Q4_K and Q6_K weights with activations quantized to Q8_K (8 bits per
// 256-element block, step max|x|/127) and BF16 weights with activations rounded to bf16 (8 significant bits), and
// keeps its KV cache in f16; we compute in f32. Measured with node-llama-cpp 3.21.1 CPU, 1 thread (max over all
// tokens / over the top 10 / largest step mean):
//   Q4_K            0.143 / 0.125 / 0.037
//   Q6_K            0.193 / 0.114 / 0.038   the same Q8_K activations as Q4_K: the ~0.2 of ARCHITECTURE.md
//   Q4_K_M-like mix 0.151 / 0.098 / 0.047
//   BF16            0.041 / 0.038 / 0.023   bf16 activations on 60- and 150-long rows, no block-wide step
// The K-quant bounds are llama-parity.test.ts's for Q8_0 and Q4_0, whose activations are quantized the same way
// (1.8x the largest max, 2.6x the largest mean measured); BF16's are 2.4x and 2.2x its own. That the differences are
// llama.cpp's rounding and not ours: our log-probs equal the exact-f32 CPU reference's (src/model/reference.ts, over
// the same dequantize()) to 1e-3 (measured <= 5.7e-6 for every fixture). A kernel bug does not hide under these
// bounds: dropping attention moves logits by ~0.6 on average (llama-fixture.ts), 5x the K-quant mean bound.
// Set FLOCK_PARITY_LOG=1 to print the measured differences.

import { gguf } from '@huggingface/gguf';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { GgmlType, ggmlTypeName } from '../../src/model/quant';
import { FileSource } from '../../src/model/source-file';
import { takeGpuErrors, testDevice } from '../helpers/gpu';
import {
  buildLlamaFixture, FIXTURE_TOKENS, GREEDY_MIN_GAP, KQUANT_FIXTURES, weightType, writeLlamaFixture,
  type LlamaFixture, type LlamaWeightRole,
} from '../helpers/llama-fixture';
import { llamaGreedy } from '../helpers/llama-ref';
import {
  expectClearWinners, expectLlamaParity, showDiffs, type Tolerance,
} from '../helpers/parity-logits';

const STEPS = 32;

/** Per fixture, by the type of most of its weights; see the header for the measurements behind each number. */
const TOLERANCE: Record<number, Tolerance> = {
  [GgmlType.Q4_K]: { max: 0.35, mean: 0.12 },
  [GgmlType.Q6_K]: { max: 0.35, mean: 0.12 },
  [GgmlType.BF16]: { max: 0.1, mean: 0.05 },
};

let dev: FlockDevice;
beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
});
afterAll(() => {
  expect(takeGpuErrors()).toEqual([]);
});

/** The fixture's name for each tensor's role, or null for the F32 norms. */
function roleOf(tensor: string): LlamaWeightRole | null {
  if (tensor.endsWith('norm.weight')) return null;
  return tensor.replace(/^blk\.\d+\./, '').replace(/\.weight$/, '') as LlamaWeightRole;
}

const typesOf = (fx: LlamaFixture) =>
  [...new Set([fx.type, ...Object.values(fx.typeByRole ?? {})])].map(ggmlTypeName).join('+');

describe('the K-quant and BF16 fixtures', () => {
  it('are deterministic, small, and hold each tensor in the type their spec says', async () => {
    const seen = new Set<number>();
    for (const fx of KQUANT_FIXTURES) {
      const a = buildLlamaFixture(fx);
      expect(Buffer.compare(buildLlamaFixture(fx), a), `${fx.name} is not deterministic`).toBe(0);
      expect(a.length).toBeLessThan(2 * 1024 * 1024);
      const parsed = await gguf(await writeLlamaFixture(fx), { allowLocalFile: true });
      expect(parsed.tensorInfos.length).toBe(1 + 9 * fx.nLayers + 1 + (fx.tiedOutput ? 0 : 1));
      for (const t of parsed.tensorInfos) {
        const role = roleOf(t.name);
        const want = role === null ? GgmlType.F32 : weightType(fx, role);
        expect(Number(t.dtype), `${fx.name} ${t.name}`).toBe(want);
        seen.add(want);
      }
    }
    // every new type is covered, and the mix really mixes
    for (const t of [GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.BF16]) expect(seen.has(t), ggmlTypeName(t)).toBe(true);
    expect(KQUANT_FIXTURES.some((fx) => fx.typeByRole && Object.keys(fx.typeByRole).length > 0)).toBe(true);
  });
});

describe('llama.cpp parity on Q4_K, Q6_K and BF16 Llamas', () => {
  for (const fx of KQUANT_FIXTURES) {
    it(`${fx.name} (${typesOf(fx)}): llama.cpp's clear winners, then our 32 greedy ids and every step's log-probs`, async () => {
      const path = await writeLlamaFixture(fx);
      const ref = await llamaGreedy(path, [FIXTURE_TOKENS.bos], STEPS);

      // The fixture guard (as fixtures.test.ts does for LLAMA_FIXTURES): clear winners, no underflow, the ids recorded.
      expect(ref.logprobs.length).toBe(STEPS);
      expectClearWinners(fx, ref, GREEDY_MIN_GAP);

      const source = new FileSource(path);
      const model = await LocalModel.load(dev, source, { maxContext: 64 });
      try {
        const d = await expectLlamaParity(model, [FIXTURE_TOKENS.bos], ref, TOLERANCE[fx.type], fx.name);
        expect(d.minGap, showDiffs(d)).toBeGreaterThanOrEqual(GREEDY_MIN_GAP);
      } finally {
        model.destroy();
        await source.close();
      }
    });
  }
});
