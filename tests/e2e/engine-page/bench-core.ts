// One engine benchmark that runs the same way in Node (Dawn) and in the page (a Web Worker, as the app runs the
// engine), so scripts/bench-page.ts can put the two side by side from one run: the model's load time (with or
// without compiling its pipelines then), the first reply after "ready" against the same prompt once warm, and
// prefill/decode speed with the GPU work per decode token for each decode-ahead setting (runs of the settings
// alternate, so a shared machine's load falls on each alike).

import { generateAll, LocalModel, type GenerationResult } from '../../../src/engine/local-model';
import type { FlockDevice, GpuCounters } from '../../../src/gpu/device';
import type { ByteSource } from '../../../src/model/source';

export interface EngineBenchOptions {
  /** prompt lengths decode is timed after */
  contexts: number[];
  /** tokens per timed generation */
  tokens: number;
  runs: number;
  /** decode-ahead settings to compare (0: one step and one readback per token) */
  aheads: number[];
  /** compile every pipeline while loading (the default), or at first use */
  compilePipelines: boolean;
}

export interface EngineBenchRow {
  context: number;
  decodeAhead: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  perDecodeStep: GpuCounters;
}

export interface EngineBenchResult {
  adapter: string;
  compilePipelines: boolean;
  /** pipelines compiled while loading */
  pipelines: number;
  /** LocalModel.load until it resolves ("ready"), ms */
  loadMs: number;
  /** the first reply after ready (FIRST_PROMPT ids, FIRST_TOKENS tokens): its first token and its whole time, ms */
  firstReply: { firstTokenMs: number; totalMs: number };
  /** the same reply again, every pipeline compiled */
  warmReply: { firstTokenMs: number; totalMs: number };
  rows: EngineBenchRow[];
}

/** A chat-sized first prompt (long enough for the prefill kernels) and reply. */
const FIRST_PROMPT = 16;
const FIRST_TOKENS = 8;

/** The bench prompt (as flock bench and bench-llama.ts build it): BOS then ordinary pieces. */
function prompt(bos: number, vocab: number, n: number): number[] {
  return [bos, ...Array.from({ length: n - 1 }, (_, i) => 3 + ((i * 7) % Math.max(1, vocab - 3)))];
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function benchEngine(dev: FlockDevice, source: ByteSource, o: EngineBenchOptions): Promise<EngineBenchResult> {
  const t0 = performance.now();
  let pipelines = 0;
  const model = await LocalModel.load(dev, source, {
    maxContext: Math.max(FIRST_PROMPT, ...o.contexts) + Math.max(FIRST_TOKENS, o.tokens) + 8,
    compilePipelines: o.compilePipelines,
    onProgress: (p) => (pipelines = p.pipelines ?? 0),
  });
  const loadMs = performance.now() - t0;
  try {
    const bos = model.tokenizer.bosId ?? 1;
    const reply = async () => {
      const t = performance.now();
      const r = await generateAll(model, { inputIds: prompt(bos, model.config.vocab, FIRST_PROMPT), maxTokens: FIRST_TOKENS, temperature: 0, ignoreEos: true });
      return { firstTokenMs: r.timings.prefillMs, totalMs: performance.now() - t };
    };
    const firstReply = await reply();
    const warmReply = await reply();
    const rows: EngineBenchRow[] = [];
    for (const context of o.contexts) {
      const results = new Map<number, GenerationResult[]>(o.aheads.map((a) => [a, []]));
      for (let i = 0; i < o.runs; i++) {
        for (const decodeAhead of o.aheads) {
          const ids = prompt(bos, model.config.vocab, context);
          results.get(decodeAhead)!.push(await generateAll(model, { inputIds: ids, maxTokens: o.tokens, temperature: 0, ignoreEos: true, decodeAhead }));
        }
      }
      for (const [decodeAhead, rs] of results) {
        rows.push({
          context,
          decodeAhead,
          prefillTokensPerSecond: median(rs.map((r) => r.timings.prefillTokensPerSecond)),
          decodeTokensPerSecond: median(rs.map((r) => r.timings.decodeTokensPerSecond)),
          perDecodeStep: rs[0].perDecodeStep,
        });
      }
    }
    return { adapter: dev.adapterName, compilePipelines: o.compilePipelines, pipelines, loadMs, firstReply, warmReply, rows };
  } finally {
    model.destroy();
  }
}
