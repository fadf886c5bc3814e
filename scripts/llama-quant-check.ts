// The driver of scripts/llama-quant-check.sh (see there): argv[2] is the compiled llama-quant-check, argv[3] a
// scratch folder. Prints one line per check and exits 1 on any mismatch.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gguf } from '@huggingface/gguf';
import { blockFormat, dequantize, GgmlType, ggmlTypeName } from '../src/model/quant';
import { writeArchFixture } from '../tests/helpers/arch-fixture';
import { buildLlamaFixture, FixtureRng, type LlamaFixtureSpec } from '../tests/helpers/llama-fixture';
import { llamaCppType, MIX_FILE_TYPE, type LlamaCppMix, type MixRole } from '../tests/helpers/llama-mix';

const [bin, dir] = process.argv.slice(2);
let failures = 0;

// 1. Dequantizers: 64 random blocks per type, every f16 field a random finite half (normal or subnormal, either sign).
const HALVES: Record<string, number[]> = {
  q4_0: [0], q4_1: [0, 2], q5_0: [0], q5_1: [0, 2], q8_0: [0], iq4_nl: [0],
  q2_k: [80, 82], q3_k: [108], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208], iq4_xs: [0],
};
const rng = new FixtureRng(77);
for (const id of Object.values(GgmlType)) {
  const f = blockFormat(id);
  if (f.blockElems === 1) continue;
  const nb = 64;
  const bytes = new Uint8Array(nb * f.blockBytes);
  for (let i = 0; i < bytes.length; i++) bytes[i] = rng.nextU32() & 255;
  const dv = new DataView(bytes.buffer);
  for (let b = 0; b < nb; b++) {
    for (const at of HALVES[f.name]) {
      const e = b % 7 === 0 ? 0 : 1 + (rng.nextU32() % 29);
      dv.setUint16(b * f.blockBytes + at, (rng.nextU32() & 0x8000) | (e << 10) | (rng.nextU32() & 0x3ff), true);
    }
  }
  writeFileSync(join(dir, 'blocks.bin'), bytes);
  execFileSync(bin, ['dequantize', f.name, String(nb * f.blockElems), join(dir, 'blocks.bin'), join(dir, 'values.bin')]);
  const theirs = new Float32Array(readFileSync(join(dir, 'values.bin')).buffer.slice(0));
  const ours = dequantize(f, bytes, 0, nb * f.blockElems);
  const differ = ours.reduce((n, v, i) => n + (Object.is(v, theirs[i]) || (v === 0 && theirs[i] === 0) ? 0 : 1), 0);
  if (differ) failures++;
  console.log(`dequantize ${ggmlTypeName(id)}: ${differ ? `${differ} of ${ours.length} values differ` : `${ours.length} values bit-identical`}`);
}

// 2. Mixes: F32 files quantized by llama_model_quantize, each tensor's type against llamaCppType (era 'q4_0': the
// fallback of this llama.cpp build).
const SHAPES: { spec: LlamaFixtureSpec; qwen2?: boolean }[] = [
  { spec: { name: 'mix-smollm2', seed: 1, type: GgmlType.F32, dim: 576, nLayers: 16, nHeads: 9, nKvHeads: 3, ffn: 1536, vocab: 300, ctx: 64, tiedOutput: true } },
  { spec: { name: 'mix-qwen25', seed: 1, type: GgmlType.F32, dim: 896, nLayers: 3, nHeads: 14, nKvHeads: 2, ffn: 4864, vocab: 300, ctx: 64 }, qwen2: true },
  { spec: { name: 'mix-d256', seed: 1, type: GgmlType.F32, dim: 256, nLayers: 9, nHeads: 4, nKvHeads: 2, ffn: 512, vocab: 300, ctx: 64 } },
  { spec: { name: 'mix-d512', seed: 1, type: GgmlType.F32, dim: 512, nLayers: 2, nHeads: 8, nKvHeads: 2, ffn: 768, vocab: 300, ctx: 64, tiedOutput: true } },
];
let tensors = 0;
let wrong = 0;
for (const { spec, qwen2 } of SHAPES) {
  let path = join(dir, `${spec.name}.gguf`);
  if (qwen2) path = await writeArchFixture({ base: spec, variant: 'qwen2' }, dir);
  else writeFileSync(path, buildLlamaFixture(spec));
  for (const mix of Object.keys(MIX_FILE_TYPE) as LlamaCppMix[]) {
    const out = join(dir, `${spec.name}-${mix}.gguf`);
    execFileSync(bin, ['quantize', path, out, String(MIX_FILE_TYPE[mix])], { stdio: 'ignore' });
    for (const t of (await gguf(out, { allowLocalFile: true })).tensorInfos) {
      if (t.shape.length < 2) continue;
      const [, layer, role] = /^(?:blk\.(\d+)\.)?(\w+)\.weight$/.exec(t.name)!;
      const want = llamaCppType(mix, { ...spec, tiedOutput: spec.tiedOutput ?? false }, role as MixRole, Number(layer ?? 0), 'q4_0');
      tensors++;
      if (want !== Number(t.dtype)) {
        wrong++;
        console.log(`${spec.name} ${mix} ${t.name}: llama.cpp wrote ${ggmlTypeName(Number(t.dtype))}, llama-mix.ts says ${ggmlTypeName(want)}`);
      }
    }
  }
}
if (wrong) failures++;
console.log(`mixes: ${tensors - wrong} of ${tensors} tensors in the type llama-mix.ts gives them`);
process.exit(failures ? 1 : 0);
