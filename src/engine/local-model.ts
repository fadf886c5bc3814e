// A model running on this device: one Head plus one or more Stages chained in-process. Each generation step is one
// submission (embed, every Stage, head, top-k) and one small readback; greedy decoding can instead queue several
// steps per submission, each embedding the id the GPU chose in the step before (decodeAhead), and read their ids
// back together. The loop itself lives in generate.ts.

import { partTensors, readConfig, type ModelConfig } from '../model/config';
import { InvalidArgumentError } from '../model/errors';
import { openGguf, type GgufFile } from '../model/gguf';
import { DEFAULT_CONTEXT, DEFAULT_MAX_BATCH } from '../model/memory';
import { candidateCount, normalizeSampling } from '../model/sampler';
import type { ByteSource, LoadProgress } from '../model/source';
import { createTokenizer, type Tokenizer } from '../model/tokenizer';
import { encodeReadback, storageBuffer, submit, type FlockDevice, type GpuCounters } from '../gpu/device';
import { checkChosenIds, GpuHead, type Candidates } from '../gpu/head';
import { compilePipelines, type KernelVariant } from '../gpu/pipelines';
import { GpuStage, MAX_STEPS_PER_SUBMISSION, type StageSession } from '../gpu/stage';
import type { LoadCounter } from '../gpu/weights';
import {
  drain, encodePrompt, generateTokens, type Backend, type BackendSequence, type GenerateOptions, type GenerationEvent,
  type GenerationResult, type StepSelect,
} from './generate';
import { splitLayers } from './spans';

export type { GenerateOptions, GeneratedToken, GenerationEvent, GenerationResult } from './generate';

export interface LoadOptions {
  /** run the layers as this many Stages (all on this device); default 1 */
  stages?: number;
  /** most positions per conversation; default min(model context, 2048) */
  maxContext?: number;
  /** most prompt tokens per prefill submission; default 64 */
  maxBatch?: number;
  /** largest weight buffer in bytes (default: the device limit) */
  maxPartBytes?: number;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /**
   * Compile every GPU pipeline the model runs while it loads (default true), so the first reply after load costs
   * what any reply of its length costs; false leaves each to its first use (benchmarks compare the two).
   */
  compilePipelines?: boolean;
}

export class LocalModel implements Backend {
  private busy = false;
  /** hidden states [maxBatch, dim], shared by the Head and every Stage of this model */
  private readonly X: GPUBuffer;
  /** ids chosen by greedy steps queued together [MAX_STEPS_PER_SUBMISSION] u32 (decodeAhead) */
  private readonly chosen: GPUBuffer;

  private constructor(
    readonly dev: FlockDevice,
    readonly file: GgufFile,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    readonly head: GpuHead,
    readonly stages: GpuStage[],
    readonly maxBatch: number,
    readonly maxContext: number,
    X: GPUBuffer,
  ) {
    this.X = X;
    this.chosen = storageBuffer(dev, 'chosen ids', MAX_STEPS_PER_SUBMISSION * 4);
  }

  static async load(dev: FlockDevice, source: ByteSource, opts: LoadOptions = {}): Promise<LocalModel> {
    const file = await openGguf(source);
    const config = readConfig(file);
    const tokenizer = createTokenizer(file.metadata);
    const spans = splitLayers(config.nLayers, opts.stages ?? 1);
    const maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    const maxContext = Math.min(opts.maxContext ?? DEFAULT_CONTEXT, config.ctx);
    const total = file.fileSize - file.dataOffset;
    const progress: Required<LoadProgress> = { loaded: 0, total, compiled: 0, pipelines: 0 };
    const report = () => opts.onProgress?.({ ...progress });
    const counter: LoadCounter = { loaded: 0, onBytes: (loaded) => { progress.loaded = loaded; report(); } };
    // validate every tensor (presence, type, shape, bounds) before fetching any weight
    partTensors(file, config, { start: 0, end: config.nLayers, head: true });
    const common = { maxBatch, maxPartBytes: opts.maxPartBytes, counter, signal: opts.signal };
    const X = storageBuffer(dev, 'hidden', maxBatch * config.dim * 4); // X: [maxBatch, dim]
    // each part's pipelines compile while the next part's weights upload
    const compiling: Promise<void>[] = [];
    const compile = (variants: KernelVariant[]) => {
      if (opts.compilePipelines === false) return;
      let counted = 0;
      const p = compilePipelines(dev, variants, (done, n) => {
        if (done === 0) progress.pipelines += n;
        progress.compiled += done - counted;
        counted = done;
        report();
      });
      p.catch(() => {}); // awaited below; a failed load must not leave it unhandled
      compiling.push(p);
    };
    let head: GpuHead | undefined;
    const stages: GpuStage[] = [];
    try {
      head = await GpuHead.load(dev, file, config, common);
      // greedy (1 candidate) and the sampler's default top-k
      compile(head.kernelVariants(X, [1, candidateCount(normalizeSampling({}), config.vocab)]));
      for (const s of spans) {
        const stage = await GpuStage.load(dev, file, config, s.start, s.end, { ...common, maxContext });
        stages.push(stage);
        compile(stage.kernelVariants(X));
      }
      await Promise.all(compiling);
    } catch (e) {
      await Promise.allSettled(compiling);
      head?.destroy();
      for (const s of stages) s.destroy();
      X.destroy();
      throw e;
    }
    progress.loaded = total;
    report();
    return new LocalModel(dev, file, config, tokenizer, head, stages, maxBatch, maxContext, X);
  }

  /** Token ids for a prompt: BOS (when the vocabulary wants it) then the text as plain text. */
  encodePrompt(prompt: string): number[] {
    return encodePrompt(this.tokenizer, prompt);
  }

  /**
   * Generate tokens. Yields each token with the text it completes; returns the whole result when done.
   * Stops at maxTokens, an end-of-generation token, the end of the context, or when `signal` aborts.
   */
  generate(opts: GenerateOptions): AsyncGenerator<GenerationEvent, GenerationResult, void> {
    return generateTokens(this, opts);
  }

  /** Start a sequence: a session on every Stage. One sequence at a time (they share the hidden-state buffer). */
  begin(maxPos: number): BackendSequence {
    if (this.busy) throw new InvalidArgumentError('This model is already generating; wait for it or abort it first.');
    this.busy = true;
    const sessions = this.stages.map((s) => s.createSession(maxPos));
    const X = this.X;
    return {
      get length() {
        return sessions[0].length;
      },
      // One submission: embed `ids`, run every stage, and (when `select`) pick candidates for the last row.
      step: async (ids: number[], select?: StepSelect): Promise<Candidates | undefined> => {
        const enc = this.dev.device.createCommandEncoder({ label: 'step' });
        this.head.encodeEmbed(enc, X, ids);
        this.stages.forEach((st, i) => st.encode(enc, sessions[i], X, ids.length));
        const read = select ? this.head.encodeSelect(enc, X, ids.length - 1, select.k, select.penaltyIds, select.penalty) : undefined;
        submit(this.dev, enc);
        return read ? await read() : undefined;
      },
      // Greedy steps queued together: step j embeds the id step j - 1 chose on the GPU (the first embeds `first`, or,
      // when undefined, the id the previous call's last step chose), so nothing waits for the CPU between steps.
      decodeAhead: async (first: number | undefined, count: number): Promise<Uint32Array> => {
        if (!Number.isInteger(count) || count < 1 || count > MAX_STEPS_PER_SUBMISSION) {
          throw new InvalidArgumentError(`decodeAhead runs 1..${MAX_STEPS_PER_SUBMISSION} steps per submission, not ${count}.`);
        }
        const enc = this.dev.device.createCommandEncoder({ label: `decode ahead ${count}` });
        for (let j = 0; j < count; j++) {
          if (j === 0 && first !== undefined) this.head.encodeEmbed(enc, X, [first]);
          else this.head.encodeEmbedChosen(enc, X);
          this.stages.forEach((st, i) => st.encode(enc, sessions[i], X, 1, j));
          this.head.encodeGreedyId(enc, X, 0, this.chosen, j);
        }
        const read = encodeReadback(this.dev, enc, this.chosen, count * 4);
        submit(this.dev, enc);
        return checkChosenIds(new Uint32Array(await read()));
      },
      truncate: (length: number) => sessions.forEach((s, i) => this.stages[i].truncate(s, length)),
      close: () => {
        sessions.forEach((s, i) => this.stages[i].closeSession(s));
        this.busy = false;
      },
    };
  }

  counters(): GpuCounters {
    return { ...this.dev.counters };
  }

  /** Weight bytes held by the Head and all Stages. */
  get weightBytes(): number {
    return this.head.weightBytes + this.stages.reduce((a, s) => a + s.weightBytes, 0);
  }

  /** Stage sessions for callers that drive stages directly (tests, benchmarks). */
  openSessions(maxPos: number): StageSession[] {
    return this.stages.map((s) => s.createSession(maxPos));
  }

  destroy(): void {
    this.X.destroy();
    this.chosen.destroy();
    this.head.destroy();
    for (const s of this.stages) s.destroy();
  }
}

/** Run a generation to the end and return its result (tokens are not streamed). */
export function generateAll(model: LocalModel, opts: GenerateOptions): Promise<GenerationResult> {
  return drain(model.generate(opts));
}
