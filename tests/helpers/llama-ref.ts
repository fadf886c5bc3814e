// The llama.cpp oracle for tests: greedy decoding of a GGUF file through node-llama-cpp's CPU build, returning the
// ids it picks and its full-vocabulary log-probabilities before each pick.
// Not here: tokenizing text, sampling other than greedy, or GPU builds (CI has no GPU; the CPU build is the reference).
//
// Why log-probabilities and not logits: node-llama-cpp 3.21.1 exposes no raw logits. The closest is
// `LlamaContextSequence.controlledEvaluate` with `generateNext: {probabilities: true}`, which (in its addon,
// AddonContext.cpp SampleToken) applies the sampler chain — with temperature 0 that is only llama.cpp's greedy
// sampler, which leaves the logits alone — then returns softmax(logits) for every token, computed in float32 as
// exp(l - max) / sum. So log(p) = logit - logsumexp(logits), exact up to float32 rounding of p (relative 6e-8, i.e.
// ~1e-7 absolute in log space) as long as p stays a normal float32: keep logit spreads under ~87 (fixtures do).
// Compare these with log-softmax of our logits; differences between logits (the top-1/top-2 gap) are unchanged.

import { getLlama, LlamaLogLevel, type Llama, type Token } from 'node-llama-cpp';

export interface LlamaGreedyResult {
  /** the `steps` ids greedy decoding picked after the input */
  ids: number[];
  /**
   * log-probabilities over the whole vocabulary before each picked id (one Float32Array of length n_vocab per
   * step): logit - logsumexp(logits). -Infinity where llama.cpp's float32 probability underflowed to 0.
   */
  logprobs: Float32Array[];
}

let llamaPromise: Promise<Llama> | null = null;

/** One llama.cpp per process: loading the native addon takes a few hundred ms and holds a thread pool. */
export function getReferenceLlama(): Promise<Llama> {
  // gpu: false — the CPU build, the same on every machine; build: 'never' — use the prebuilt binary, never compile.
  llamaPromise ??= getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  return llamaPromise;
}

/**
 * Greedy-decode `steps` tokens after `inputIds` (start them with BOS yourself: nothing is added) with llama.cpp.
 * One thread: on these 2-core machines more threads made llama.cpp ~20x slower (measured on stories260K).
 */
export async function llamaGreedy(path: string, inputIds: number[], steps: number): Promise<LlamaGreedyResult> {
  if (inputIds.length === 0) throw new Error('llamaGreedy: give at least one input id (usually BOS)');
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`llamaGreedy: steps must be a positive integer, got ${steps}`);
  const llama = await getReferenceLlama();
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  try {
    const nVocab = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length;
    if (!nVocab) throw new Error(`llamaGreedy: ${path} has no tokenizer.ggml.tokens`);
    const context = await model.createContext({
      contextSize: inputIds.length + steps,
      sequences: 1,
      threads: 1,
      // The plain attention path (softmax of f32 scores over the f16 KV cache, llama.cpp's default cache type);
      // flash attention accumulates differently and is not what a default llama.cpp CPU run does.
      flashAttention: false,
    });
    try {
      const sequence = context.getSequence();
      const ids: number[] = [];
      const logprobs: Float32Array[] = [];
      // temperature 0 selects llama.cpp's greedy sampler; no repeat penalty is configured unless asked for.
      const generateNext = { token: true, probabilities: true, options: { temperature: 0 } } as const;
      let input: Parameters<typeof sequence.controlledEvaluate>[0] = [
        // node-llama-cpp brands token ids; ours are plain numbers from the same vocabulary.
        ...inputIds.slice(0, -1).map((t) => t as Token),
        [inputIds[inputIds.length - 1] as Token, { generateNext }],
      ];
      for (let step = 0; step < steps; step++) {
        const out = await sequence.controlledEvaluate(input);
        const next = out[input.length - 1]?.next;
        if (next?.token == null || !next.probabilities) {
          throw new Error(`llamaGreedy: llama.cpp returned no token at step ${step} for ${path}`);
        }
        // The greedy chain keeps every candidate, so the map should hold the whole vocabulary; absent ids stay -Inf.
        const lp = new Float32Array(nVocab).fill(-Infinity);
        for (const [token, p] of next.probabilities) lp[token] = Math.log(p);
        ids.push(next.token);
        logprobs.push(lp);
        input = [[next.token, { generateNext }]];
      }
      return { ids, logprobs };
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}
