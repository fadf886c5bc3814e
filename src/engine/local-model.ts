// A model running on this device: one Head plus one or more Stages chained in-process, and the generation loop
// (prefill in chunks, then one submission and one small readback per decoded token, streaming text, abortable).
// The swarm's client session reuses the same loop shape with remote Stages.

import { partTensors, readConfig, type ModelConfig } from '../model/config';
import { ContextOverflowError, InvalidArgumentError } from '../model/errors';
import { openGguf, type GgufFile } from '../model/gguf';
import {
  candidateCount, normalizeSampling, penalizedIds, Sampler, type SamplingParams,
} from '../model/sampler';
import type { ByteSource } from '../model/source';
import { createTokenizer, TokenDecoder, type Tokenizer } from '../model/tokenizer';
import { storageBuffer, submit, type FlockDevice, type GpuCounters } from '../gpu/device';
import { GpuHead } from '../gpu/head';
import { GpuStage, type StageSession } from '../gpu/stage';
import type { LoadCounter } from '../gpu/weights';
import { splitLayers } from './spans';

export interface LoadProgress {
  loaded: number;
  total: number;
}

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
}

export interface GenerateOptions extends Partial<SamplingParams> {
  /** user text; encoded as plain text after BOS */
  prompt?: string;
  /** token ids to start from instead of a prompt (BOS is not added) */
  inputIds?: number[];
  maxTokens: number;
  signal?: AbortSignal;
  /** keep going past end-of-generation tokens (benchmarks) */
  ignoreEos?: boolean;
}

export interface GeneratedToken {
  id: number;
  /** the text this token completes (may be empty while a UTF-8 character is incomplete) */
  text: string;
}

export interface GenerationResult {
  inputIds: number[];
  outputIds: number[];
  text: string;
  finishReason: 'length' | 'stop' | 'abort' | 'context';
  timings: {
    /** prompt submission to first token, ms */
    prefillMs: number;
    /** all decode steps after the first token, ms */
    decodeMs: number;
    prefillTokensPerSecond: number;
    decodeTokensPerSecond: number;
  };
  /** GPU work per decode step (averaged over decode steps) */
  perDecodeStep: GpuCounters;
}

export class LocalModel {
  private busy = false;
  /** hidden states [maxBatch, dim], shared by the Head and every Stage of this model */
  private readonly X: GPUBuffer;

  private constructor(
    readonly dev: FlockDevice,
    readonly file: GgufFile,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    readonly head: GpuHead,
    readonly stages: GpuStage[],
    readonly maxBatch: number,
    readonly maxContext: number,
  ) {
    this.X = storageBuffer(dev, 'hidden', maxBatch * config.dim * 4);
  }

  static async load(dev: FlockDevice, source: ByteSource, opts: LoadOptions = {}): Promise<LocalModel> {
    const file = await openGguf(source);
    const config = readConfig(file);
    const tokenizer = createTokenizer(file.metadata);
    const spans = splitLayers(config.nLayers, opts.stages ?? 1);
    const maxBatch = opts.maxBatch ?? 64;
    const maxContext = Math.min(opts.maxContext ?? 2048, config.ctx);
    const total = file.fileSize - file.dataOffset;
    const counter: LoadCounter = { loaded: 0, onBytes: (loaded) => opts.onProgress?.({ loaded, total }) };
    // validate every tensor (presence, type, shape, bounds) before fetching any weight
    partTensors(file, config, { start: 0, end: config.nLayers, head: true });
    const common = { maxBatch, maxPartBytes: opts.maxPartBytes, counter, signal: opts.signal };
    let head: GpuHead | undefined;
    const stages: GpuStage[] = [];
    try {
      head = await GpuHead.load(dev, file, config, common);
      for (const s of spans) stages.push(await GpuStage.load(dev, file, config, s.start, s.end, { ...common, maxContext }));
    } catch (e) {
      head?.destroy();
      for (const s of stages) s.destroy();
      throw e;
    }
    opts.onProgress?.({ loaded: total, total });
    return new LocalModel(dev, file, config, tokenizer, head, stages, maxBatch, maxContext);
  }

  /** Token ids for a prompt: BOS (when the vocabulary wants it) then the text as plain text. */
  encodePrompt(prompt: string): number[] {
    const ids = this.tokenizer.encode(prompt);
    const bos = this.tokenizer.bosId;
    return this.tokenizer.addBos && bos !== null ? [bos, ...ids] : ids;
  }

  /**
   * Generate tokens. Yields each token with the text it completes; returns the whole result when done.
   * Stops at maxTokens, an end-of-generation token, the end of the context, or when `signal` aborts.
   */
  async *generate(opts: GenerateOptions): AsyncGenerator<GeneratedToken, GenerationResult, void> {
    const sampling = normalizeSampling(opts);
    if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 0) {
      throw new InvalidArgumentError(`maxTokens must be a whole number >= 0, got ${opts.maxTokens}`);
    }
    let input = opts.inputIds ? [...opts.inputIds] : this.encodePrompt(opts.prompt ?? '');
    if (input.length === 0) {
      const bos = this.tokenizer.bosId;
      if (bos === null) throw new InvalidArgumentError('An empty prompt needs a BOS token, and this vocabulary has none.');
      input = [bos];
    }
    if (input.length >= this.maxContext) {
      throw new ContextOverflowError(
        `The prompt is ${input.length} tokens but the context holds ${this.maxContext}, leaving no room for a reply. Shorten the prompt.`,
      );
    }
    for (const id of input) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocab) {
        throw new InvalidArgumentError(`Input token id ${id} is outside the vocabulary (0..${this.config.vocab - 1}).`);
      }
    }
    if (this.busy) throw new InvalidArgumentError('This model is already generating; wait for it or abort it first.');
    this.busy = true;
    const maxPos = Math.min(this.maxContext, input.length + opts.maxTokens);
    const sessions = this.stages.map((s) => s.createSession(maxPos));
    const X = this.X;
    const sampler = new Sampler(sampling);
    const k = candidateCount(sampling, this.config.vocab);
    const history = [...input];
    const output: number[] = [];
    const decoder = new TokenDecoder(this.tokenizer);
    let text = '';
    let finishReason: GenerationResult['finishReason'] = 'length';
    const t0 = performance.now();
    let tFirst = t0;
    let cAfterFirst = { ...this.dev.counters };
    try {
      // One submission: embed `ids`, run every stage, and (when `select`) pick candidates for the last row.
      const step = async (ids: number[], select: boolean): Promise<number | undefined> => {
        const enc = this.dev.device.createCommandEncoder({ label: 'step' });
        this.head.encodeEmbed(enc, X, ids);
        this.stages.forEach((st, i) => st.encode(enc, sessions[i], X, ids.length));
        const read = select
          ? this.head.encodeSelect(enc, X, ids.length - 1, k, penalizedIds(history, sampling), sampling.repeatPenalty)
          : undefined;
        submit(this.dev, enc);
        if (!read) return undefined;
        const c = await read();
        return sampler.pick(c.ids, c.logits);
      };
      // prefill: the prompt in chunks of maxBatch; the last chunk also yields the first token
      let next: number | undefined;
      for (let i = 0; i < input.length; i += this.maxBatch) {
        if (opts.signal?.aborted) {
          finishReason = 'abort';
          break;
        }
        const chunk = input.slice(i, i + this.maxBatch);
        next = await step(chunk, i + this.maxBatch >= input.length && opts.maxTokens > 0);
      }
      tFirst = performance.now();
      cAfterFirst = { ...this.dev.counters };
      // decode: one token per submission
      while (next !== undefined) {
        if (!opts.ignoreEos && this.tokenizer.isEndOfGeneration(next)) {
          finishReason = 'stop';
          break;
        }
        output.push(next);
        history.push(next);
        const piece = decoder.push(next);
        text += piece;
        yield { id: next, text: piece };
        if (output.length >= opts.maxTokens) break;
        if (opts.signal?.aborted) {
          finishReason = 'abort';
          break;
        }
        if (sessions[0].length >= maxPos) {
          finishReason = 'context';
          break;
        }
        next = await step([next], true);
      }
      const tail = decoder.flush();
      text += tail;
    } finally {
      sessions.forEach((s, i) => this.stages[i].closeSession(s));
      this.busy = false;
    }
    const tEnd = performance.now();
    const decodeSteps = Math.max(0, output.length - 1);
    const per = (key: keyof GpuCounters) =>
      decodeSteps > 0 ? (this.dev.counters[key] - cAfterFirst[key]) / decodeSteps : 0;
    return {
      inputIds: input,
      outputIds: output,
      text,
      finishReason,
      timings: {
        prefillMs: tFirst - t0,
        decodeMs: tEnd - tFirst,
        prefillTokensPerSecond: (input.length / (tFirst - t0)) * 1000,
        decodeTokensPerSecond: decodeSteps > 0 ? (decodeSteps / (tEnd - tFirst)) * 1000 : 0,
      },
      perDecodeStep: { submits: per('submits'), readbacks: per('readbacks'), dispatches: per('dispatches'), weightBytesRead: per('weightBytesRead') },
    };
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
    this.head.destroy();
    for (const s of this.stages) s.destroy();
  }
}

/** Run a generation to the end and return its result (tokens are not streamed). */
export async function generateAll(model: LocalModel, opts: GenerateOptions): Promise<GenerationResult> {
  const it = model.generate(opts);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}
