// The generation loop, shared by every backend (a local model, a swarm session): prompt checks, prefill in chunks,
// then one step per token with sampling on GPU-selected candidates, streaming text, stop conditions and statistics.
// A backend only has to run token ids through all layers and return top candidates for the last row.
// Greedy decoding on a backend that can choose on its device (decodeAhead) does not wait for each token: steps are
// queued ahead in submissions of several, each step embedding the id the one before chose on the GPU, and ids are
// read back a submission at a time while the next runs. End-of-generation ids, stop checks and aborts apply as ids
// arrive, in the same order as step by step; steps that ran past the end are dropped, and the sequence is cut back
// to the positions whose ids the generation kept, so a prefix cache holds exactly what one-step decoding leaves.
// A sequence whose results are checked after the fact (a swarm's: BackendSequence.checks) may say that positions
// from p on were wrong: the loop goes back to p (the ids there, the sampler's draws, the detokenizer), runs again
// from there and tells its consumer which tokens it withdrew (a 'rollback' event), so the reply equals one made
// without the wrong answers. The end of a reply waits for the sequence's end-of-reply checks; `checkedOnly` hands out
// only tokens whose steps were checked.

import type { ModelConfig } from '../model/config';
import { ContextOverflowError, InvalidArgumentError, StepAbortedError } from '../model/errors';
import { candidateCount, isGreedy, normalizeSampling, penalizedIds, Sampler, type SamplerState, type SamplingParams } from '../model/sampler';
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

/**
 * What a sequence whose results are checked after the fact offers the loop (a swarm sequence: src/swarm/witness.ts).
 * Local sequences have none: their results are their own.
 */
export interface SequenceChecks {
  /** positions whose results were checked: an id chosen from the logits of a position before this one is final */
  readonly checkedLength: number;
  /**
   * The first position found wrong since the last call, or undefined (then clear). The sequence holds only the
   * positions before it; the ids from there on must run again.
   */
  takeVoided(): number | undefined;
  /**
   * Check every position run so far (emit-only-checked: after every step). Rejects with StepAbortedError soon after
   * `signal` aborts, as step does; the sequence is then void.
   */
  checkAll(signal?: AbortSignal): Promise<void>;
  /** the reply is about to end: run the checks the sequence runs then (every position, unless configured off); `signal` as for checkAll */
  finish(signal?: AbortSignal): Promise<void>;
}

export interface BackendSequence {
  /** positions filled so far */
  readonly length: number;
  /** present on sequences whose results are checked after the fact (swarm sequences) */
  readonly checks?: SequenceChecks;
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
  /** ids that end the reply as an end-of-generation id does (a chat template's end-of-turn), unless ignoreEos */
  endIds?: ReadonlySet<number>;
  /**
   * Asked after every token handed out: true ends the reply there as an end-of-generation id would (the caller
   * found a stop string). A sequence's end-of-reply checks still run and may take the tokens back (a rollback event),
   * after which the reply goes on and this is asked again.
   */
  stopped?: () => boolean;
  /**
   * On a sequence with checks: hand out a token only once the steps it came from were checked (every step is
   * checked as it runs: a witness's round trip per hop per token), so no token is ever withdrawn. Elsewhere: no effect.
   */
  checkedOnly?: boolean;
}

/** Greedy decode steps per submission by default (decodeAhead). */
export const DEFAULT_DECODE_AHEAD = 4;
/** Submissions of queued steps in flight at once: one runs while the ids of the one before are read. */
const AHEAD_DEPTH = 2;

export interface GeneratedToken {
  kind: 'token';
  id: number;
  /** the text this token completes (may be empty while a UTF-8 character is incomplete) */
  text: string;
}

/** Tokens handed out before were withdrawn (the sequence found results they came from wrong); new ones follow. */
export interface Rollback {
  kind: 'rollback';
  /** tokens of the reply that stand: the first `keep`; every later one handed out so far is withdrawn */
  keep: number;
  /** the withdrawn ids, in order */
  withdrawn: number[];
  /** the text of the tokens that stand (the reply's text is cut back to it) */
  text: string;
  /** the first position whose result was wrong */
  position: number;
}

export type GenerationEvent = GeneratedToken | Rollback;

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
  /** every time the loop went back (a sequence's checks found a wrong result): tokens kept, and the ids it dropped */
  rollbacks: { keep: number; withdrawn: number[] }[];
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

export async function* generateTokens(backend: Backend, opts: GenerateOptions): AsyncGenerator<GenerationEvent, GenerationResult, void> {
  const sampling = normalizeSampling(opts);
  const input = prepareInput(backend, opts);
  const maxPos = Math.min(backend.maxContext, input.length + opts.maxTokens);
  const { seq, reused } = await openSequence(backend, input, maxPos, opts.cache);
  const sampler = new Sampler(sampling);
  const k = candidateCount(sampling, backend.config.vocab);
  const history = [...input];
  const output: number[] = [];
  let decoder = new TokenDecoder(backend.tokenizer);
  let text = '';
  let finishReason: GenerationResult['finishReason'] = 'length';
  const t0 = performance.now();
  let tFirst = t0;
  let cAfterFirst = backend.counters();
  const checks = seq.checks;
  const checkedOnly = opts.checkedOnly === true && checks !== undefined;
  /** output tokens handed out so far */
  let shown = 0;
  /** the caller said stop (GenerateOptions.stopped) */
  let callerStopped = false;
  /** the sampler's state before output[i] was picked */
  const draws: SamplerState[] = [];
  const rollbacks: GenerationResult['rollbacks'] = [];
  // A step (or a check) that Stop cut short voids the sequence: the generation ends as aborted and the sequence is
  // not kept
  let seqVoid = false;
  const step = async (ids: number[], select: boolean): Promise<number | undefined> => {
    try {
      const c = await seq.step(ids, select ? { k, penaltyIds: penalizedIds(history, sampling), penalty: sampling.repeatPenalty } : undefined, opts.signal);
      if (checkedOnly) await checks.checkAll(opts.signal);
      if (!c) return undefined;
      draws[output.length] = sampler.state();
      return sampler.pick(c.ids, c.logits);
    } catch (e) {
      if (!(e instanceof StepAbortedError)) throw e;
      seqVoid = true;
      finishReason = 'abort';
      return undefined;
    }
  };
  /** Hand out output tokens up to `upTo`; true when the caller said stop. */
  const show = function* (upTo: number): Generator<GenerationEvent, boolean, void> {
    while (shown < upTo) {
      const id = output[shown++];
      const piece = decoder.push(id);
      text += piece;
      yield { kind: 'token', id, text: piece };
      if (opts.stopped?.()) return (callerStopped = true);
    }
    return false;
  };
  /** Tokens that may be handed out now: all of them, or with checkedOnly those whose logits' positions are checked. */
  const showable = (): number => (checkedOnly ? Math.min(output.length, checks.checkedLength - input.length + 1) : output.length);
  /** Positions from `p` on were wrong: keep the ids up to p (p's own id came from checked logits), restore the draws
   *  and the text, tell the consumer what was withdrawn. Returns where to run again from. */
  const rewind = function* (p: number): Generator<GenerationEvent, number, void> {
    const keep = Math.min(output.length, Math.max(0, p + 1 - input.length));
    const withdrawn = output.slice(keep);
    rollbacks.push({ keep, withdrawn });
    output.length = keep;
    history.length = input.length + keep;
    if (draws[keep]) sampler.restore(draws[keep]);
    if (keep < shown) {
      const gone = withdrawn.slice(0, shown - keep);
      shown = keep;
      decoder = new TokenDecoder(backend.tokenizer);
      text = output.map((id) => decoder.push(id)).join('');
      yield { kind: 'rollback', keep, withdrawn: gone, text, position: p };
    }
    return Math.min(p, history.length - 1);
  };
  /** Run the ids at positions [from, history.length) (in chunks of maxBatch) and choose the next token from the last
   *  one's logits; when the sequence voids positions on the way, go back there and run again. */
  const runFrom = async function* (from: number): AsyncGenerator<GenerationEvent, number | undefined, void> {
    for (;;) {
      let next: number | undefined;
      let voided: number | undefined;
      for (let i = from; i < history.length; i += backend.maxBatch) {
        if (opts.signal?.aborted) {
          finishReason = 'abort';
          return undefined;
        }
        next = await step(history.slice(i, i + backend.maxBatch), i + backend.maxBatch >= history.length && opts.maxTokens > 0);
        if (seqVoid) return undefined;
        voided = checks?.takeVoided();
        if (voided !== undefined) break;
      }
      if (voided === undefined) return next;
      from = yield* rewind(voided);
    }
  };
  try {
    // prefill: the prompt in chunks of maxBatch; the last chunk also yields the first token
    let next = yield* runFrom(reused);
    tFirst = performance.now();
    cAfterFirst = backend.counters();
    // decode: one token per step, or (greedy, decodeAhead) several steps queued ahead of the ids read so far
    const ahead = checks ? 0 : aheadSteps(opts, sampling, seq);
    const queue: Promise<Uint32Array>[] = [];
    let ready: number[] = [];
    let queued = 0;
    // steps this generation may run: one per token after the first, within the context
    const budget = Math.min(opts.maxTokens - 1, maxPos - input.length);
    for (;;) {
      while (next !== undefined) {
        if (!opts.ignoreEos && (backend.tokenizer.isEndOfGeneration(next) || opts.endIds?.has(next))) {
          finishReason = 'stop';
          break;
        }
        output.push(next);
        history.push(next);
        if (yield* show(showable())) {
          finishReason = 'stop';
          break;
        }
        if (output.length >= opts.maxTokens) {
          finishReason = 'length';
          break;
        }
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
          const voided = checks?.takeVoided();
          if (voided !== undefined) next = yield* runFrom(yield* rewind(voided));
          if (yield* show(showable())) {
            finishReason = 'stop';
            break;
          }
        }
      }
      // The reply would end here. Unchecked results (streamed tokens) are checked first: a wrong one takes the
      // reply back there and it goes on. Tokens handed out with checkedOnly were checked already.
      if (!checks || checkedOnly || finishReason === 'abort') break;
      try {
        await checks.finish(opts.signal);
      } catch (e) {
        if (!(e instanceof StepAbortedError)) throw e;
        seqVoid = true;
        finishReason = 'abort';
        break;
      }
      const voided = checks.takeVoided();
      if (voided === undefined) break;
      next = yield* runFrom(yield* rewind(voided));
      finishReason = 'length';
      callerStopped = false;
    }
    // with checkedOnly: the tokens still held (their checks found no witness), up to a stop the caller asked for
    if (checkedOnly && finishReason !== 'abort' && !callerStopped && (yield* show(output.length))) finishReason = 'stop';
    output.length = shown;
    history.length = input.length + shown;
    // steps queued past the end ran on ids the generation did not keep: forget their positions
    if (!seqVoid && seq.length > history.length) seq.truncate?.(history.length);
    const tail = decoder.flush();
    text += tail;
    if (opts.cache && seq.truncate && !seqVoid) {
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
    rollbacks,
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
