// llama.cpp's side of the benchmark, run in a child process per backend (its Vulkan build and Dawn must not share
// a process): prefill and decode speed on a GGUF file through node-llama-cpp, printed as one JSON line.
// Usage: node --import tsx src/cli/bench-llama.ts MODEL cpu|vulkan PROMPT_TOKENS DECODE_TOKENS [THREADS] [RUNS]

import { getLlama, LlamaLogLevel, type Token } from 'node-llama-cpp';

const [modelPath, backend, promptArg, decodeArg, threadsArg, runsArg] = process.argv.slice(2);
const promptTokens = Number(promptArg);
const decodeTokens = Number(decodeArg);
// one thread by default: on 2-core machines more threads made llama.cpp 20x slower (1 thread: ~1,300 tok/s on
// stories260K); machines with many cores pass their own count
const threads = Number(threadsArg ?? 1);
const runs = Number(runsArg ?? 3);

const llama = await getLlama({ gpu: backend === 'vulkan' ? 'vulkan' : false, build: 'never', logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, gpuLayers: backend === 'vulkan' ? 'max' : 0 });
const context = await model.createContext({ contextSize: promptTokens + decodeTokens + 8, threads, batchSize: Math.max(promptTokens, 1) });
const bos = model.tokens.bos ?? 1;
const vocab = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length ?? 32;
// a prompt of ordinary (non-control) token ids, the same as our engine's
const prompt = [bos, ...Array.from({ length: promptTokens - 1 }, (_, i) => 3 + ((i * 7) % Math.max(1, vocab - 3)))] as Token[];

async function once(): Promise<{ prefillMs: number; decodeMs: number; decoded: number }> {
  const seq = context.getSequence();
  const t0 = performance.now();
  let tFirst = t0;
  let n = 0;
  for await (const _t of seq.evaluate(prompt, { temperature: 0 })) {
    if (n === 0) tFirst = performance.now();
    if (++n > decodeTokens) break;
  }
  const tEnd = performance.now();
  seq.dispose();
  return { prefillMs: tFirst - t0, decodeMs: tEnd - tFirst, decoded: n - 1 };
}

await once(); // warm-up
const results = [];
for (let i = 0; i < runs; i++) results.push(await once());
const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const prefill = median(results.map((r) => (promptTokens / r.prefillMs) * 1000));
const decode = median(results.map((r) => (r.decoded / r.decodeMs) * 1000));
process.stdout.write(JSON.stringify({ backend, threads, prefillTokensPerSecond: prefill, decodeTokensPerSecond: decode }) + '\n');
await context.dispose();
await model.dispose();
await llama.dispose();
process.exit(0);
