// Writes a benchmark model once to bench-results/models/ (later runs reuse it) and prints its path:
//   190m  a Llama of realistic shape (1024 wide, 8 layers) in a Q4_K_M-like layout from the fixture generator
//         (Q4_K for most matrices, Q6_K for attn_v, ffn_down and output, F32 norms): ~110 MB, the H100 runs' model
//   1b    Llama-3.2-1B's shapes in llama.cpp's Q4_K_M layout, random valid blocks (tests/helpers/bench-gguf.ts): ~0.8 GB
//   8b    Llama-3.1-8B's shapes, the same way: ~4.9 GB (for GPU machines)
// Random weights: it measures speed, not text.
// Usage: node --import tsx scripts/bench-model.ts [190m|1b|8b] [OUT_PATH]

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { GgmlType } from '../src/model/quant';
import { LLAMA_3_1_8B, LLAMA_3_2_1B, writeBenchModel, type BenchModelSpec } from '../tests/helpers/bench-gguf';
import { buildLlamaFixture, type LlamaFixtureSpec } from '../tests/helpers/llama-fixture';

export const BENCH_SPEC: LlamaFixtureSpec = {
  name: 'bench-llama-q4_k_m-190m', seed: 1, type: GgmlType.Q4_K,
  typeByRole: { attn_v: GgmlType.Q6_K, ffn_down: GgmlType.Q6_K, output: GgmlType.Q6_K }, fileType: 15,
  // 1024 wide (a multiple of 256, as K-quant rows must be), 16 heads of 64 with 4 KV heads, FFN 4x, 8 layers
  dim: 1024, nLayers: 8, nHeads: 16, nKvHeads: 4, ffn: 4096, vocab: 32000, ctx: 2048,
};

const SIZES: Record<string, BenchModelSpec> = { '1b': LLAMA_3_2_1B, '8b': LLAMA_3_1_8B };

// the first argument names a size; an older form passed only the output path (the 190M model)
const args = process.argv.slice(2);
const size = args[0] === undefined || args[0].endsWith('.gguf') ? '190m' : args.shift()!;
if (size !== '190m' && !(size in SIZES)) {
  process.stderr.write(`bench-model: unknown size "${size}"; use 190m, 1b or 8b\n`);
  process.exit(2);
}
const name = size === '190m' ? BENCH_SPEC.name : SIZES[size].name;
const out = args[0] ?? `bench-results/models/${name}.gguf`;
const t0 = performance.now();
let wrote: boolean;
if (size === '190m') {
  wrote = !existsSync(out);
  if (wrote) {
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, buildLlamaFixture(BENCH_SPEC));
  }
} else {
  wrote = writeBenchModel(SIZES[size], out);
}
process.stdout.write(wrote ? `wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n` : `${out} exists\n`);
