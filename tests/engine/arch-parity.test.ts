// Parity with llama.cpp for the other architectures Flock runs: qwen2 (Q/K/V biases, NeoX RoPE), phi3 (fused
// attn_qkv and gate/up, NeoX RoPE) and a Llama-3-style file (rope_freqs divisors). Each fixture is a llama fixture
// rewritten into that layout (tests/helpers/arch-fixture.ts); llama.cpp (node-llama-cpp CPU) is the oracle: our 32
// greedy ids from [BOS] equal its ids, and our log-probs agree within the per-type bounds of llama-parity.test.ts
// (same causes: llama.cpp's F16 KV cache and 8-bit activations in quantized products). Our GPU also matches the
// exact-f32 CPU reference to 1e-3, so a difference from llama.cpp is its rounding, not ours.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateAll, LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { GgmlType } from '../../src/model/quant';
import { FileSource } from '../../src/model/source-file';
import { writeArchFixture, type ArchVariant } from '../helpers/arch-fixture';
import { takeGpuErrors, testDevice } from '../helpers/gpu';
import { F32_TWINS, FIXTURE_TOKENS, GREEDY_MIN_GAP, KQUANT_FIXTURES, LLAMA_FIXTURES } from '../helpers/llama-fixture';
import { getReferenceLlama, llamaGreedy } from '../helpers/llama-ref';
import { CPU_REFERENCE_MAX, compareLogprobs, showDiffs, topGap } from '../helpers/parity-logits';

const STEPS = 32;
/** |Δ log p| bounds per weight type, as in llama-parity.test.ts (measured there: F32 0.0028, Q8_0 0.22). */
const MAX_DIFF: Record<number, number> = {
  [GgmlType.F32]: 0.01, [GgmlType.F16]: 0.02, [GgmlType.Q8_0]: 0.35, [GgmlType.Q4_0]: 0.35,
  // as kquant-parity.test.ts: K-quants like the other quantized types; BF16 activations stay f32 in llama.cpp
  [GgmlType.Q4_K]: 0.35, [GgmlType.Q6_K]: 0.35, [GgmlType.BF16]: 0.1,
};

const CASES: { variant: ArchVariant; base: string }[] = [
  { variant: 'qwen2', base: 'llama-q8_0-gqa4' },
  { variant: 'qwen2', base: 'llama-f32-h12' },
  { variant: 'phi3', base: 'llama-q4_0-gqa2' },
  { variant: 'phi3', base: 'llama-f16-gqa2-h10' },
  { variant: 'llama3', base: 'llama-q8_0-tied' },
  { variant: 'qwen2', base: 'llama-q4_k_m' },
  { variant: 'phi3', base: 'llama-q6_k-gqa4-h32' },
  { variant: 'llama3', base: 'llama-bf16-gqa2-h10' },
  // the F32 twin of the first llama3 case, with Llama 3's eps 1e-6 and RoPE base 500000: held to the F32 bound
  { variant: 'llama3', base: 'llama-f32-tied-h16' },
];

let dev: FlockDevice;
beforeAll(async () => {
  dev = await testDevice();
});
afterAll(() => {
  expect(takeGpuErrors()).toEqual([]);
});

describe.each(CASES)('$variant from $base', ({ variant, base }) => {
  it('greedy ids and log-probs match llama.cpp', async () => {
    const spec = [...LLAMA_FIXTURES, ...KQUANT_FIXTURES, ...F32_TWINS].find((f) => f.name === base)!;
    const path = await writeArchFixture({ base: spec, variant });
    const ref = await llamaGreedy(path, [FIXTURE_TOKENS.bos], STEPS);
    // the comparison of ids is fair only where llama.cpp has no near-tie
    for (const lp of ref.logprobs) expect(topGap(lp)).toBeGreaterThan(GREEDY_MIN_GAP / 2);
    const model = await LocalModel.load(dev, new FileSource(path), { maxContext: 64 });
    try {
      expect(model.config.arch).toBe(variant === 'llama3' ? 'llama' : variant);
      if (variant === 'llama3') {
        expect(model.config.ropeFreqs).toBe(true);
        expect(model.tokenizer.tokenText(1)).toBe('<|begin_of_text|>');
        // the byte-level BPE vocabulary encodes text as llama.cpp's tokenizer does on the same file
        const vocab = await (await getReferenceLlama()).loadModel({ modelPath: path, vocabOnly: true });
        try {
          for (const text of [' the quick brown fox', 'hello\n\n  world 12345', 'über-naïve ✓']) {
            expect(model.tokenizer.encode(text)).toEqual(Array.from(vocab.tokenize(text, false)));
          }
        } finally {
          await vocab.dispose();
        }
      }
      const ours = await generateAll(model, { inputIds: [FIXTURE_TOKENS.bos], maxTokens: STEPS, temperature: 0, ignoreEos: true });
      expect(ours.outputIds).toEqual(ref.ids);
      const d = await compareLogprobs(model, [FIXTURE_TOKENS.bos], ref);
      if (process.env.FLOCK_PARITY_LOG) console.log(`${variant}/${base}: ${showDiffs(d)}`);
      expect(d.cpuMax, showDiffs(d)).toBeLessThan(CPU_REFERENCE_MAX);
      expect(d.max, showDiffs(d)).toBeLessThan(MAX_DIFF[spec.type]);
    } finally {
      model.destroy();
    }
  });
});
