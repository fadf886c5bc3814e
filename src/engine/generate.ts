// The generation loop, shared by every backend (a local model, a swarm session): prompt checks, prefill in chunks,
// then one step per token with sampling on GPU-selected candidates, streaming text, stop conditions and statistics.
// A backend only has to run token ids through all layers and return top candidates for the last row.
// Greedy decoding on a backend that can choose on its device (decodeAhead) does not wait for each token: steps are
// queued ahead in submissions of several, each step embedding the id the one before chose on the GPU, and ids are
// read back a submission at a time while the next runs. End-of-generation ids, stop checks and aborts apply as ids
// arrive, in the same order as step by step; steps that ran past the end are dropped, and the sequence is cut back
// to the positions whose ids the generation kept, so a prefix cache holds exactly what one-step decoding leaves.

import type { ModelConfig } from '../model/config';
import { ContextOverflowError, InvalidArgumentError, StepAbortedError } from '../model/errors';
import { candidateCount, isGreedy, normalizeSampling, penalizedIds, Sampler, type SamplingParams } from '../model/sampler';
import { TokenDecoder, type Tokenizer } from '../model/tokenizer';
import type { GpuCounters } from '../gpu/device';
import type { Candidates } from '../gpu/head';
import { MAX_STEPS_PER_SUBMISSION } from '../gpu/stage';

export interface StepSelect {
  /** candidates to return (0 = every logit) */
  k: number;
  penaltyIds: number[];
  penalty: number;
}

export interface BackendSequence {
  /** positions filled so far */
  readonly length: number;
  /**
   * Run ids (at most maxBatch) at the next positions; with `select`, return candidates for the last row. A backend
   * whose steps can wait long (on other machines) rejects with StepAbortedError soon after `signal` aborts; the
   * sequence is then void (closed, never reused).
   */
  step(ids: number[], select?: StepSelect, signal?: AbortSignal): Promise<Candidates | undefined>;
  /** Forget every position from `length` on; the ones before stay cached (sequences that can: local models). */
  truncate?(length: number): void;
  /** Positions it can hold in all, when fewer than it was opened with (a swarm host granted less). */
  readonly capacity?: number;
  /** A later generation in it needs `positions` in all (swarm sequences open sessions on new hosts with at least that). */
  reserve?(positions: number): void;
  /**
   * Greedy steps queued ahead (backends that choose on their device: local models): run `count` steps in one
   * submission, the first on `first` (undefined: on the id the previous call's last step chose), each later one on
   * the id chosen by the step before; resolves to the `count` chosen ids. Positions advance by `count` at once.
   */
  decodeAhead?(first: number | undefined, count: number): Promise<Uint32Array>;
  close(): void;
}

/**
 * The KV cache of the last generation, kept for the next one (a chat's next turn starts with the whole conversation
 * so far): the sequence stays open with the ids it holds, and a generation whose input starts with those ids runs
 * only the rest. Needs a backend whose sequences truncate; it keeps one sequence open (and the backend busy) until
 * the next generation or clear().
 */
export class PrefixCache {
  /** @internal */ seq: BackendSequence | undefined;
  /** @internal ids whose keys and values the sequence holds, position by position */
  ids: number[] = [];
  /** @internal positions the sequence was opened with */
  capacity = 0;

  clear(): void {
    this.seq?.close();
    this.seq = undefined;
    this.ids = [];
    this.capacity = 0;
  }
}

export interface Backend {
  readonly config: ModelConfig;
  readonly tokenizer: Tokenizer;
  readonly maxBatch: number;
  readonly maxContext: number;
  /** A sequence of maxPos positions; `need` (default maxPos) is what this generation needs, the rest room for later turns. */
  begin(maxPos: number, need?: number): BackendSequence | Promise<BackendSequence>;
  /**
   * Positions to open a sequence with that a PrefixCache will keep for later turns, when this generation needs
   * `maxPos` (default: maxContext). A backend whose positions cost other machines memory asks for less; a later turn
   * that does not fit then starts a new sequence.
   */
  cachedCapacity?(maxPos: number): number;
  /** GPU work counters of this device so far */
  counters(): GpuCounters;
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
  /** reuse the KV cache of the previous generation for the ids this input shares with it */
  cache?: PrefixCache;
  /**
   * Greedy decoding without a round trip per token, where the backend allows it: steps per submission (1..16),
   * 0 = one step and one readback per token. Default DEFAULT_DECODE_AHEAD.
   */
  decodeAhead?: number;
}

/** Greedy decode steps per submission by default (decodeAhead). */
export const DEFAULT_DECODE_AHEAD = 4;
/** Submissions of queued steps in flight at once: one runs while the ids of the one before are read. */
const AHEAD_DEPTH = 2;

export interface GeneratedToken {
  id: number;
  /** the text this token completes (may be empty while a UTF-8 character is incomplete) */
  text: string;
}

export interface GenerationResult {
  inputIds: number[];
  outputIds: number[];
  /** input positions taken from the prefix cache instead of being run again */
  cachedTokens: number;
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


/** Token ids for a prompt: BOS (when the vocabulary wants it) then the text as plain text. */
export function encodePrompt(tokenizer: Tokenizer, prompt: string): number[] {
  const ids = tokenizer.encode(prompt);
  const bos = tokenizer.bosId;
  return tokenizer.addBos && bos !== null ? [bos, ...ids] : ids;
}

/** Check and complete the input ids of a generation. */
export function prepareInput(backend: Backend, opts: GenerateOptions): number[] {
  if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 0) {
    throw new InvalidArgumentError(`maxTokens must be a whole number >= 0, got ${opts.maxTokens}`);
  }
  const ahead = opts.decodeAhead;
  if (ahead !== undefined && !(Number.isInteger(ahead) && ahead >= 0 && ahead <= MAX_STEPS_PER_SUBMISSION)) {
    throw new InvalidArgumentError(`decodeAhead must be a whole number in 0..${MAX_STEPS_PER_SUBMISSION}, got ${ahead}`);
  }
  let input = opts.inputIds ? [...opts.inputIds] : encodePrompt(backend.tokenizer, opts.prompt ?? '');
  if (input.length === 0) {
    const bos = backend.tokenizer.bosId;
    if (bos === null) throw new InvalidArgumentError('An empty prompt needs a BOS token, and this vocabulary has none.');
    input = [bos];
  }
  if (input.length >= backend.maxContext) {
    throw new ContextOverflowError(
      `The prompt is ${input.length} tokens but the context holds ${backend.maxContext}, leaving no room for a reply. Shorten the prompt.`,
    );
  }
  for (const id of input) {
    if (!Number.isInteger(id) || id < 0 || id >= backend.config.vocab) {
      throw new InvalidArgumentError(`Input token id ${id} is outside the vocabulary (0..${backend.config.vocab - 1}).`);
    }
  }
  return input;
}

/**
 * The sequence a generation runs in: the cached one when it can hold this generation and shares a prefix with the
 * input (cut back to that prefix; the last input id always runs again, its logits pick the first token), else a new
 * one (with the backend's whole context when caching, so later turns fit).
 */
async function openSequence(backend: Backend, input: number[], maxPos: number, cache: PrefixCache | undefined): Promise<{ seq: BackendSequence; reused: number }> {
  if (cache?.seq?.truncate && Math.min(cache.capacity, cache.seq.capacity ?? Infinity) >= maxPos) {
    let common = 0;
    while (common < cache.ids.length && common < input.length - 1 && cache.ids[common] === input[common]) common++;
    const seq = cache.seq;
    cache.seq = undefined;
    cache.ids = [];
    seq.truncate!(common);
    seq.reserve?.(maxPos);
    return { seq, reused: common };
  }
  cache?.clear();
  const capacity = cache ? Math.max(maxPos, Math.min(backend.maxContext, backend.cachedCapacity?.(maxPos) ?? backend.maxContext)) : maxPos;
  const seq = await backend.begin(capacity, maxPos);
  if (cache) cache.capacity = capacity;
  return { seq, reused: 0 };
}

export async function* generateTokens(backend: Backend, opts: GenerateOptions): AsyncGenerator<GeneratedToken, GenerationResult, void> {
  const sampling = normalizeSampling(opts);
  const input = prepareInput(backend, opts);
  const maxPos = Math.min(backend.maxContext, input.length + opts.maxTokens);
  const { seq, reused } = await openSequence(backend, input, maxPos, opts.cache);
  const sampler = new Sampler(sampling);
  const k = candidateCount(sampling, backend.config.vocab);
  const history = [...input];
  const output: number[] = [];
  const decoder = new TokenDecoder(backend.tokenizer);
  let text = '';
  let finishReason: GenerationResult['finishReason'] = 'length';
  const t0 = performance.now();
  let tFirst = t0;
  let cAfterFirst = backend.counters();
  // a step that Stop cut short voids the sequence: the generation ends as aborted and the sequence is not kept
  let voided = false;
  const step = async (ids: number[], select: boolean): Promise<number | undefined> => {
    try {
      const c = await seq.step(ids, select ? { k, penaltyIds: penalizedIds(history, sampling), penalty: sampling.repeatPenalty } : undefined, opts.signal);
      return c ? sampler.pick(c.ids, c.logits) : undefined;
    } catch (e) {
      if (!(e instanceof StepAbortedError)) throw e;
      voided = true;
      finishReason = 'abort';
      return undefined;
    }
  };
  try {
    // prefill: the prompt in chunks of maxBatch; the last chunk also yields the first token
    let next: number | undefined;
    for (let i = reused; i < input.length; i += backend.maxBatch) {
      if (opts.signal?.aborted) {
        finishReason = 'abort';
        break;
      }
      next = await step(input.slice(i, i + backend.maxBatch), i + backend.maxBatch >= input.length && opts.maxTokens > 0);
      if (voided) break;
    }
    tFirst = performance.now();
    cAfterFirst = backend.counters();
    // decode: one token per step, or (greedy, decodeAhead) several steps queued ahead of the ids read so far
    const ahead = aheadSteps(opts, sampling, seq);
    const queue: Promise<Uint32Array>[] = [];
    let ready: number[] = [];
    let queued = 0;
    // steps this generation may run: one per token after the first, within the context
    const budget = Math.min(opts.maxTokens - 1, maxPos - input.length);
    while (next !== undefined) {
      if (!opts.ignoreEos && backend.tokenizer.isEndOfGeneration(next)) {
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
      // positions that hold kept ids: the last token has not run yet
      if (input.length + output.length - 1 >= maxPos) {
        finishReason = 'context';
        break;
      }
      if (ahead > 0) {
        if (ready.length === 0) {
          while (queue.length < AHEAD_DEPTH && queued < budget) {
            const n = Math.min(ahead, budget - queued);
            const ids = seq.decodeAhead!(queued === 0 ? next : undefined, n);
            ids.catch(() => {}); // awaited below, or dropped with the steps past the end
            queue.push(ids);
            queued += n;
          }
          ready = Array.from(await queue.shift()!);
        }
        next = ready.shift();
      } else {
        next = await step([next], true);
      }
    }
    // steps queued past the end ran on ids the generation did not keep: forget their positions
    if (!voided && seq.length > history.length) seq.truncate?.(history.length);
    const tail = decoder.flush();
    text += tail;
    if (opts.cache && seq.truncate && !voided) {
      // keep the sequence for the next turn: it holds the ids of every position it ran
      opts.cache.seq = seq;
      opts.cache.ids = history.slice(0, seq.length);
    }
  } finally {
    if (opts.cache?.seq !== seq) seq.close();
  }
  const tEnd = performance.now();
  const decodeSteps = Math.max(0, output.length - 1);
  const now = backend.counters();
  const per = (key: keyof GpuCounters) => (decodeSteps > 0 ? (now[key] - cAfterFirst[key]) / decodeSteps : 0);
  return {
    inputIds: input,
    outputIds: output,
    cachedTokens: reused,
    text,
    finishReason,
    timings: {
      prefillMs: tFirst - t0,
      decodeMs: tEnd - tFirst,
      prefillTokensPerSecond: ((input.length - reused) / (tFirst - t0)) * 1000,
      decodeTokensPerSecond: decodeSteps > 0 ? (decodeSteps / (tEnd - tFirst)) * 1000 : 0,
    },
    perDecodeStep: {
      submits: per('submits'), readbacks: per('readbacks'), dispatches: per('dispatches'), weightBytesRead: per('weightBytesRead'),
      encodeMs: per('encodeMs'),
    },
  };
}

/** Greedy steps per submission for this generation: 0 unless greedy without a penalty on a backend that can. */
function aheadSteps(opts: GenerateOptions, sampling: SamplingParams, seq: BackendSequence): number {
  const n = opts.decodeAhead ?? DEFAULT_DECODE_AHEAD;
  const penalty = sampling.repeatPenalty !== 1 && sampling.repeatLastN > 0; // needs the CPU's view of the history
  return seq.decodeAhead && isGreedy(sampling) && !penalty ? n : 0;
}

/** Run a generator to its end and return its result. */
export async function drain<R>(it: AsyncGenerator<unknown, R, void>): Promise<R> {
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}
