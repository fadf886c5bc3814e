// Writes the benchmark's synthetic model: a Llama of realistic shape in a Q4_K_M-like layout (Q4_K for most
// matrices, Q6_K for attn_v, ffn_down and output, F32 norms), from the project's own GGUF writer and quantizers.
// Random weights: it measures speed, not text. ~190 M parameters, ~110 MB; written once to bench-results/models/.
// Usage: node --import tsx scripts/bench-model.ts [OUT_PATH]

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { GgmlType } from '../src/model/quant';
import { buildLlamaFixture, type LlamaFixtureSpec } from '../tests/helpers/llama-fixture';

export const BENCH_SPEC: LlamaFixtureSpec = {
  name: 'bench-llama-q4_k_m-190m', seed: 1, type: GgmlType.Q4_K,
  typeByRole: { attn_v: GgmlType.Q6_K, ffn_down: GgmlType.Q6_K, output: GgmlType.Q6_K }, fileType: 15,
  // 1024 wide (a multiple of 256, as K-quant rows must be), 16 heads of 64 with 4 KV heads, FFN 4x, 8 layers
  dim: 1024, nLayers: 8, nHeads: 16, nKvHeads: 4, ffn: 4096, vocab: 32000, ctx: 2048,
};

const out = process.argv[2] ?? 'bench-results/models/bench-llama-q4_k_m-190m.gguf';
if (existsSync(out)) {
  process.stdout.write(`${out} exists\n`);
} else {
  const t0 = performance.now();
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, buildLlamaFixture(BENCH_SPEC));
  process.stdout.write(`wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
