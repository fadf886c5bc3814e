// The OpenAI-style chat API in the shape WebLLM offers, over any Backend (a LocalModel, a swarm session):
//   const engine = await createFlockChatEngine(ggufUrl);   // instead of: await CreateMLCEngine(modelId)
//   (or `new FlockChatEngine(backend)` over a model already loaded, or a swarm session)
//   const reply = await engine.chat.completions.create({ messages, temperature: 0.7 });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) …
// Requests, responses and chunks are WebLLM's own types (imported as types only: its runtime is never bundled).
// The conversation is rendered with the model's chat template (src/model/chat-template.ts), generation runs through
// the shared loop (./generate), and the reply ends at an end-of-generation token, the template's end-of-turn token,
// a `stop` string, `max_tokens`, the end of the context, or interruptGenerate().
// Over a swarm whose hosts are checked, a streamed reply may be corrected: tokens already sent are withdrawn (a chunk
// with `flock.correction`) and new ones follow; `checkedOnly` sends only tokens whose steps were checked instead.
// With a PrefixCache, a request that continues the last one's conversation runs only its new tokens; resetChat()
// drops what is cached. Not here: tool calls, JSON mode/grammars, logprobs, n > 1, images (all refused with
// UnsupportedChatFeatureError).

import type { ChatCompletionFinishReason, ChatCompletionRequestBase, CompletionUsage } from '@mlc-ai/web-llm';
import { ChatTemplate, type ChatMessage } from '../model/chat-template';
import { ChatRequestError, InvalidArgumentError, UnsupportedChatFeatureError } from '../model/errors';
import { normalizeSampling, type SamplingParams } from '../model/sampler';
import { requestFlockDevice, type FlockDevice } from '../gpu/device';
import { openWebSource, type ByteSource } from '../model/source';
import type { ChatEngine, FinishReason, FlockChunk, FlockCompletion, FlockCompletions, FlockCorrection, FlockReplyExtra } from './chat-api';
import { StopStringFilter } from './chat-stop';
import { drain, generateTokens, prepareInput, type Backend, type GenerationResult, type PrefixCache } from './generate';
import { LocalModel, type LoadOptions } from './local-model';

export { ChatRequestError, UnsupportedChatFeatureError };
export type * from './chat-api';

/** A backend, and where it has one, the GGUF metadata it came from (chat template, model name). */
export type ChatBackend = Backend & { readonly file?: { readonly metadata: Record<string, unknown> } };

export interface FlockChatEngineOptions {
  /** Jinja template to use instead of the file's `tokenizer.chat_template`; null forces the plain fallback */
  chatTemplate?: string | null;
  /** the `model` reported in responses (default: the file's general.name, else "flock") */
  model?: string;
  /** sampling for what a request leaves out (default: llama.cpp's defaults, see src/model/sampler.ts) */
  sampling?: Partial<SamplingParams>;
  /** the clock for templates that print today's date (Llama 3.1+); default: now */
  now?: () => Date;
  /** keep each reply's KV cache for the next request that continues the conversation (generate.ts PrefixCache) */
  cache?: PrefixCache;
  /**
   * Over a swarm whose hosts are checked: stream only tokens whose steps were checked, so no streamed token is ever
   * withdrawn. Every step then waits for a witness's round trip per hop (about twice the latency per token on
   * loopback; README, "Checked hops"). Default false: tokens stream at once and a wrong one is corrected.
   */
  checkedOnly?: boolean;
}

/** A request after validation: everything a generation needs. */
interface PreparedTurn {
  inputIds: number[];
  maxTokens: number;
  sampling: Partial<SamplingParams>;
  stops: string[];
  ignoreEos: boolean;
  includeUsage: boolean;
  received: number;
}

/** What one generation produced, before it is shaped as a completion or a chunk. */
interface TurnResult {
  text: string;
  finishReason: ChatCompletionFinishReason;
  usage: CompletionUsage;
  reply: FlockReplyExtra;
}

/** A piece of reply text and the ids it completes; or a correction of what was streamed (with empty text). */
interface ReplyPiece {
  text: string;
  ids: number[];
  correction?: FlockCorrection;
}

export class FlockChatEngine implements ChatEngine {
  readonly backend: ChatBackend;
  readonly template: ChatTemplate;
  readonly modelName: string;
  readonly chat: { readonly completions: FlockCompletions };
  private readonly defaults: Partial<SamplingParams>;
  private readonly now: () => Date;
  private readonly cache: PrefixCache | undefined;
  private readonly checkedOnly: boolean;
  /** one generation at a time (a backend runs one sequence); later requests wait their turn */
  private queue: Promise<void> = Promise.resolve();
  private current: AbortController | null = null;
  private lastUsage: CompletionUsage | null = null;

  constructor(backend: ChatBackend, opts: FlockChatEngineOptions = {}) {
    this.backend = backend;
    const metadata = backend.file?.metadata ?? {};
    this.template =
      opts.chatTemplate !== undefined
        ? new ChatTemplate(opts.chatTemplate, backend.tokenizer)
        : ChatTemplate.fromMetadata(metadata, backend.tokenizer);
    const name = metadata['general.name'];
    this.modelName = opts.model ?? (typeof name === 'string' && name !== '' ? name : 'flock');
    this.defaults = { ...opts.sampling };
    normalizeSampling(this.defaults); // refuse bad defaults now, not at the first request
    this.now = opts.now ?? (() => new Date());
    this.cache = opts.cache;
    this.checkedOnly = opts.checkedOnly ?? false;
    const create = (request: ChatCompletionRequestBase) => this.create(request);
    // The overloads are checked at the call site; one implementation serves all three.
    this.chat = { completions: { create: create as FlockCompletions['create'] } };
  }

  /** Stop the reply being generated; it ends with finish_reason "abort". */
  interruptGenerate(): void {
    this.current?.abort();
  }

  /** Forget the conversation: the reply in progress ends, and the cached KV of the last one is freed (over a swarm: its hosts' sessions close). */
  async resetChat(): Promise<void> {
    this.interruptGenerate();
    await this.queue;
    this.cache?.clear();
  }

  /** Speeds of the last reply, in WebLLM's wording. */
  async runtimeStatsText(): Promise<string> {
    const u = this.lastUsage;
    if (!u) return 'No generation yet.';
    return `prefill: ${u.extra.prefill_tokens_per_s.toFixed(1)} tokens/sec, decoding: ${u.extra.decode_tokens_per_s.toFixed(1)} tokens/sec`;
  }

  /** Free the model's GPU memory (for backends that hold any). */
  async unload(): Promise<void> {
    this.interruptGenerate();
    await this.queue;
    this.cache?.clear(); // it holds a sequence of the backend
    const b = this.backend as { destroy?: () => void };
    b.destroy?.();
  }

  private async create(request: ChatCompletionRequestBase): Promise<AsyncIterable<FlockChunk> | FlockCompletion> {
    // Everything that can be refused is refused here, so create() rejects rather than the stream failing later.
    const turn = this.prepare(request);
    const id = `chatcmpl-${randomHex(12)}`;
    const created = Math.floor(Date.now() / 1000);
    if (request.stream === true) return this.stream(turn, id, created);
    const res = await drain(this.run(turn));
    return {
      id,
      object: 'chat.completion',
      created,
      model: this.modelName,
      choices: [{ index: 0, finish_reason: res.finishReason, logprobs: null, message: { role: 'assistant', content: res.text } }],
      usage: res.usage,
      flock: res.reply,
    };
  }

  /** Chunks as WebLLM sends them: deltas, then one with finish_reason (and usage), then a usage-only chunk when the
   *  request asked for `stream_options.include_usage`. */
  private async *stream(turn: PreparedTurn, id: string, created: number): AsyncGenerator<FlockChunk, void, void> {
    const base = { id, created, model: this.modelName, object: 'chat.completion.chunk' as const };
    const it = this.run(turn);
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          const res = r.value;
          yield {
            ...base, choices: [{ index: 0, delta: {}, finish_reason: res.finishReason, logprobs: null }], usage: res.usage,
            flock: { ids: [], reply: res.reply },
          };
          if (turn.includeUsage) yield { ...base, choices: [], usage: res.usage, flock: { ids: [] } };
          return;
        }
        const piece = r.value;
        yield {
          ...base, choices: [{ index: 0, delta: { role: 'assistant', content: piece.text }, finish_reason: null, logprobs: null }],
          flock: piece.correction ? { ids: piece.ids, correction: piece.correction } : { ids: piece.ids },
        };
      }
    } finally {
      // A consumer that stops iterating early still ends the generation and frees the backend.
      await it.return(undefined as never);
    }
  }

  /**
   * One generation: yields reply text as it becomes final, with its ids, and corrections of what was yielded when
   * the generation went back (a swarm host's wrong results); returns how it ended and the usage.
   */
  private async *run(turn: PreparedTurn): AsyncGenerator<ReplyPiece, TurnResult, void> {
    const release = await this.lock();
    const abort = new AbortController();
    this.current = abort;
    let filter = new StopStringFilter(turn.stops);
    let raw = ''; // every piece the loop yielded, to find the tail it adds at the end
    let reply = ''; // what we passed on: raw text up to a stop string
    let stopped = false;
    const tokens: number[] = []; // every token the loop yielded that stands
    let ids: number[] = []; // generated since the last piece we yielded
    const corrections: FlockCorrection[] = [];
    let result: GenerationResult | undefined;
    const gen = generateTokens(this.backend, {
      ...turn.sampling,
      inputIds: turn.inputIds,
      maxTokens: turn.maxTokens,
      signal: abort.signal,
      ignoreEos: turn.ignoreEos,
      cache: this.cache,
      // the format's end-of-turn tokens, which the tokenizer alone may not flag as end of generation
      endIds: this.template.stopIds,
      stopped: () => stopped,
      checkedOnly: this.checkedOnly,
    });
    try {
      for (;;) {
        const r = await gen.next();
        if (r.done) {
          result = r.value;
          break;
        }
        const ev = r.value;
        if (ev.kind === 'rollback') {
          // Tokens we passed on were withdrawn: the text goes back to what the tokens that stand give (through a
          // fresh stop filter: what it held back may differ), and the reply goes on from there.
          const pending = Math.max(0, tokens.length - ids.length); // the first token not yet in a yielded piece
          tokens.length = ev.keep;
          ids = tokens.slice(Math.min(pending, ev.keep));
          raw = ev.text;
          filter = new StopStringFilter(turn.stops);
          const out = filter.push(raw);
          reply = out.text;
          stopped = out.stopped;
          const correction = { at: ev.keep, withdrawn: ev.withdrawn, keepChars: reply.length };
          corrections.push(correction);
          yield { text: '', ids: [], correction };
          continue;
        }
        if (stopped) continue; // nothing follows a stop unless a rollback takes it back
        raw += ev.text;
        tokens.push(ev.id);
        ids.push(ev.id);
        const out = filter.push(ev.text);
        reply += out.text;
        if (out.text !== '') {
          yield { text: out.text, ids };
          ids = [];
        }
        if (out.stopped) stopped = true; // the loop ends the reply (after its checks) when it asks stopped()
      }
      if (!stopped) {
        // The detokenizer's last bytes (an unfinished character) come only in the loop's final text.
        const out = filter.push(result.text.slice(raw.length));
        stopped = out.stopped;
        const rest = out.text + filter.flush();
        reply += rest;
        if (rest !== '') yield { text: rest, ids };
      }
    } finally {
      // Ends the loop (and its backend sequence) when our consumer stopped early; a no-op after a normal end.
      await gen.return(undefined as never);
      if (this.current === abort) this.current = null;
      release();
    }
    const outputIds = result.outputIds;
    const finish: FinishReason = stopped ? 'stop' : result.finishReason;
    const usage = makeUsage(result, turn.inputIds.length, outputIds.length, turn.received);
    this.lastUsage = usage;
    return { text: reply, finishReason: toFinishReason(finish), usage, reply: { finish, outputIds, cachedTokens: result.cachedTokens, corrections } };
  }

  /** Wait for the previous generation; the returned function lets the next one in. */
  private async lock(): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const before = this.queue;
    this.queue = before.then(() => mine);
    await before;
    return release;
  }

  /** Validate a request and turn it into prompt ids and generation settings. */
  private prepare(req: ChatCompletionRequestBase): PreparedTurn {
    const received = performance.now();
    if (typeof req !== 'object' || req === null) throw new ChatRequestError('The request must be an object with `messages`.');
    refuseUnsupported(req);
    const messages = toChatMessages(req.messages);
    const extra: Record<string, unknown> = {};
    const thinking = req.extra_body?.enable_thinking;
    if (thinking !== undefined && thinking !== null) extra.enable_thinking = thinking;
    const prompt = this.template.apply(messages, { now: this.now(), extra });

    const sampling: Partial<SamplingParams> = { ...this.defaults };
    const temperature = optionalNumber(req.temperature, 'temperature', (v) => v >= 0 && v <= 2, 'between 0 and 2');
    if (temperature !== undefined) sampling.temperature = temperature;
    const topP = optionalNumber(req.top_p, 'top_p', (v) => v > 0 && v <= 1, 'in (0, 1]');
    if (topP !== undefined) sampling.topP = topP;
    const penalty = optionalNumber(req.repetition_penalty, 'repetition_penalty', (v) => v > 0, 'greater than 0');
    if (penalty !== undefined) sampling.repeatPenalty = penalty;
    const seed = optionalNumber(req.seed, 'seed', Number.isInteger, 'an integer');
    // OpenAI semantics: without a seed, replies differ from call to call. Any integer maps onto the u32 seed space.
    sampling.seed = seed !== undefined ? seed >>> 0 : (sampling.seed ?? randomU32());
    try {
      normalizeSampling(sampling);
    } catch (e) {
      throw new ChatRequestError(e instanceof Error ? e.message : String(e));
    }

    const room = this.backend.maxContext - prompt.ids.length;
    const maxTokens = optionalNumber(req.max_tokens, 'max_tokens', (v) => Number.isInteger(v) && v >= 1, 'a whole number >= 1');
    // Checks the prompt ids against the vocabulary and the context (ContextOverflowError) before anything runs.
    const inputIds = prepareInput(this.backend, { inputIds: prompt.ids, maxTokens: maxTokens ?? Math.max(room, 0) });

    return {
      inputIds,
      // Without max_tokens the reply may fill the rest of the context; the loop stops there with 'context'.
      maxTokens: maxTokens ?? room,
      sampling,
      stops: [...this.template.stopStrings, ...toStops(req.stop)],
      ignoreEos: req.ignore_eos === true,
      includeUsage: req.stream_options?.include_usage === true,
      received,
    };
  }
}

/**
 * Load a GGUF (URL, Blob or ByteSource) onto a WebGPU device and wrap it in a chat engine: Flock's counterpart of
 * WebLLM's CreateMLCEngine. Without `device`, the browser's navigator.gpu is used.
 */
export async function createFlockChatEngine(
  source: string | Blob | ByteSource,
  opts: LoadOptions & FlockChatEngineOptions & { device?: FlockDevice } = {},
): Promise<FlockChatEngine> {
  const dev = opts.device ?? (await requestFlockDevice(globalThis.navigator?.gpu));
  const src = typeof source === 'string' || source instanceof Blob ? openWebSource(source) : source;
  const model = await LocalModel.load(dev, src, opts);
  try {
    return new FlockChatEngine(model, opts);
  } catch (e) {
    model.destroy();
    throw e;
  }
}

/** OpenAI messages → template messages (text only). Each field is checked: messages may come from anywhere. */
function toChatMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new ChatRequestError('`messages` must be a non-empty array of {role, content}.');
  }
  const out: ChatMessage[] = [];
  messages.forEach((m: unknown, i: number) => {
    if (typeof m !== 'object' || m === null || !('role' in m)) {
      throw new ChatRequestError(`messages[${i}] must be an object with a role and content.`);
    }
    const content = 'content' in m ? m.content : undefined;
    switch (m.role) {
      case 'system':
        if (i !== 0) throw new ChatRequestError(`messages[${i}]: a system message may only come first.`);
        out.push({ role: 'system', content: textContent(content, i) });
        break;
      case 'user':
        out.push({ role: 'user', content: textContent(content, i) });
        break;
      case 'assistant': {
        const calls = 'tool_calls' in m ? m.tool_calls : undefined;
        if (Array.isArray(calls) && calls.length > 0) {
          throw new UnsupportedChatFeatureError(`messages[${i}]: assistant tool calls are not supported.`);
        }
        out.push({ role: 'assistant', content: content === null || content === undefined ? '' : textContent(content, i) });
        break;
      }
      case 'tool':
      case 'function':
        throw new UnsupportedChatFeatureError(`messages[${i}]: ${m.role} messages are not supported (Flock has no tool calling).`);
      default:
        throw new ChatRequestError(`messages[${i}] has role ${JSON.stringify(m.role)}; use "system", "user" or "assistant".`);
    }
  });
  const last = out[out.length - 1];
  if (last.role !== 'user') {
    throw new ChatRequestError(`The last message must be from the user (it is from the ${last.role}).`);
  }
  return out;
}

/** A message's text: a string, or text parts (joined by newlines). Images and audio are refused. */
function textContent(content: unknown, i: number): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown, j: number) => {
        if (typeof part === 'object' && part !== null && 'type' in part) {
          if (part.type === 'text' && 'text' in part && typeof part.text === 'string') return part.text;
          if (part.type === 'image_url' || part.type === 'input_audio') {
            throw new UnsupportedChatFeatureError(`messages[${i}].content[${j}]: ${part.type} is not supported; send text.`);
          }
        }
        throw new ChatRequestError(`messages[${i}].content[${j}] must be {type: "text", text: string}.`);
      })
      .join('\n');
  }
  throw new ChatRequestError(`messages[${i}].content must be a string.`);
}

/** Refuse what the request asks for and Flock cannot do, rather than silently ignoring it. */
function refuseUnsupported(req: ChatCompletionRequestBase): void {
  const n = req.n;
  if (n !== undefined && n !== null && n !== 1) throw new UnsupportedChatFeatureError(`n = ${n}: Flock generates one choice per request.`);
  if (req.tools !== undefined && req.tools.length > 0) throw new UnsupportedChatFeatureError('tools are not supported.');
  if (req.tool_choice !== undefined && req.tool_choice !== 'none') throw new UnsupportedChatFeatureError('tool_choice is not supported.');
  if (req.logprobs === true || (req.top_logprobs ?? 0) > 0) throw new UnsupportedChatFeatureError('logprobs are not supported.');
  if (req.logit_bias && Object.keys(req.logit_bias).length > 0) throw new UnsupportedChatFeatureError('logit_bias is not supported.');
  const format = req.response_format?.type;
  if (format !== undefined && format !== 'text') {
    throw new UnsupportedChatFeatureError(`response_format "${format}" is not supported (no grammars or JSON mode).`);
  }
  for (const key of ['frequency_penalty', 'presence_penalty'] as const) {
    const v = req[key];
    if (v !== undefined && v !== null && v !== 0) {
      throw new UnsupportedChatFeatureError(`${key} is not supported; use repetition_penalty.`);
    }
  }
}

function optionalNumber(v: unknown, name: string, ok: (v: number) => boolean, range: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) {
    throw new ChatRequestError(`${name} must be ${range}; got ${JSON.stringify(v)}.`);
  }
  return v;
}

function toStops(stop: unknown): string[] {
  if (stop === undefined || stop === null) return [];
  const list = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list) || !list.every((s): s is string => typeof s === 'string' && s.length > 0)) {
    throw new ChatRequestError('stop must be a non-empty string or an array of them.');
  }
  return list;
}

function toFinishReason(r: FinishReason): ChatCompletionFinishReason {
  switch (r) {
    case 'stop':
      return 'stop';
    case 'abort':
      return 'abort';
    case 'length':
    case 'context':
      return 'length';
    default:
      throw new InvalidArgumentError(`unknown finish reason ${String(r)}`);
  }
}

function makeUsage(res: GenerationResult, promptTokens: number, completionTokens: number, received: number): CompletionUsage {
  const decodeSteps = Math.max(0, res.outputIds.length - 1);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    extra: {
      e2e_latency_s: (performance.now() - received) / 1000,
      prefill_tokens_per_s: res.timings.prefillTokensPerSecond,
      decode_tokens_per_s: res.timings.decodeTokensPerSecond,
      time_to_first_token_s: res.timings.prefillMs / 1000,
      time_per_output_token_s: decodeSteps > 0 ? res.timings.decodeMs / decodeSteps / 1000 : 0,
    },
  };
}

function randomU32(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
}
