// The chat interface Flock offers, the same whether the engine runs on this thread (FlockChatEngine, chat.ts) or in
// the page's engine worker (src/worker/engine-client.ts), after WebLLM's MLCEngineInterface: requests, completions
// and chunks are WebLLM's own OpenAI-protocol types, and Flock's extras travel beside them in a typed `flock` field
// (token ids, the 'context' finish that OpenAI's finish_reason folds into 'length', prefix-cache reuse, corrections
// of a reply whose swarm hosts were caught returning wrong results).
// Types only; not here: the engine.

import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequestBase,
  ChatCompletionRequestNonStreaming,
  ChatCompletionRequestStreaming,
} from '@mlc-ai/web-llm';

export type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequestBase };

/** Why a reply ended, as Flock tells it: 'context' is a full context window, 'length' the request's max_tokens. */
export type FinishReason = 'length' | 'stop' | 'abort' | 'context';

/** How a reply ended and what it was made of (on the last chunk of a stream, and on a whole completion). */
export interface FlockReplyExtra {
  finish: FinishReason;
  /** every generated token id of the reply (an end-of-turn id is not part of it) */
  outputIds: number[];
  /** input positions taken from the previous reply's KV cache instead of being run again */
  cachedTokens: number;
  /** where the reply was corrected while it streamed (empty for most replies; always, on a local model) */
  corrections: FlockCorrection[];
  /** what a swarm's checks found for this reply (src/swarm/witness.ts); absent on a local model */
  checks?: FlockReplyChecks;
}

/**
 * Whether the hosts' results behind a reply were checked. 'checked': every hop's answers matched another host's;
 * 'unchecked': the layers in `unchecked` had no other host to compare with (the rest were checked); 'disputed':
 * hosts disagreed and no third one could decide (those answers stand, unverified); 'off': checks are turned off.
 */
export interface FlockReplyChecks {
  state: 'checked' | 'unchecked' | 'disputed' | 'off';
  /** checks run during the reply */
  checks: number;
  /** layer ranges [start, end) whose hosts' answers nobody checked */
  unchecked: { start: number; end: number }[];
}

/**
 * Tokens already streamed were withdrawn and replaced: a swarm host's results they came from were found wrong
 * (src/swarm/witness.ts), and generation went back to the last checked token. The chunk that carries it has an empty
 * delta; the reply's text is cut to `keepChars` characters, and the deltas that follow continue from there.
 */
export interface FlockCorrection {
  /** the index (0-based) in the reply's tokens of the first token withdrawn */
  at: number;
  /** the ids withdrawn, in order */
  withdrawn: number[];
  /** length (UTF-16 code units) the streamed text is cut back to before the next delta */
  keepChars: number;
}

/** Flock's extras on a streamed chunk. */
export interface FlockChunkExtra {
  /** token ids whose text this chunk's delta completes */
  ids: number[];
  /** on a chunk that takes streamed text back (its delta is empty) */
  correction?: FlockCorrection;
  /** on the chunk that carries finish_reason */
  reply?: FlockReplyExtra;
}

export type FlockChunk = ChatCompletionChunk & { flock: FlockChunkExtra };
export type FlockCompletion = ChatCompletion & { flock: FlockReplyExtra };

export interface FlockCompletions {
  create(request: ChatCompletionRequestNonStreaming): Promise<FlockCompletion>;
  create(request: ChatCompletionRequestStreaming): Promise<AsyncIterable<FlockChunk>>;
  create(request: ChatCompletionRequestBase): Promise<AsyncIterable<FlockChunk> | FlockCompletion>;
}

/** What the page, the CLI and API users chat through. */
export interface ChatEngine {
  readonly chat: { readonly completions: FlockCompletions };
  /** end the reply being generated; it finishes with finish_reason "abort" */
  interruptGenerate(): void;
}
