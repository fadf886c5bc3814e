// The tokenizer seam: the interface every tokenizer kind implements, the streaming detokenizer built on it, and the
// factory that picks an implementation from a GGUF file's `tokenizer.ggml.model`.
// Not here: any tokenizer algorithm (SentencePiece lives in ./tokenizer-spm), chat templates, or reading GGUF
// headers (the caller hands us the metadata record it already parsed).
//
// Two rules every implementation keeps, because mixing them up is a prompt-injection bug:
//   - encode() treats its input as plain text. A user who types "<s>" or "<|end|>" gets the tokens for those
//     characters, never the control id. encodeWithSpecial() is for strings our own code assembled (chat templates).
//   - Neither adds BOS. The caller prepends `bosId` when `addBos` says so, in one visible place.

import { TokenizerError } from './errors';
import { BpeTokenizer } from './tokenizer-bpe';
import { SpmTokenizer } from './tokenizer-spm';

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** From tokenizer.ggml.add_bos_token (llama.cpp's default for SentencePiece vocabularies is true). */
  readonly addBos: boolean;
  /** Encode user text. Text is ALWAYS plain text: "<s>" typed by a user is never turned into a control token. */
  encode(text: string): number[];
  /** Encode text that our own code built (e.g. a chat template), where special-token strings ARE parsed into ids. */
  encodeWithSpecial(text: string): number[];
  /** Text for a sequence of ids; control and unknown tokens render as nothing. */
  decode(ids: readonly number[]): string;
  /** True for ids that end a generation: eos, eot/eom from metadata, and the tokenizer's known end-of-turn pieces. */
  isEndOfGeneration(id: number): boolean;
  /** The raw vocabulary piece (e.g. "▁Hello", "<0x0A>", "</s>"), for debugging and logs. */
  tokenText(id: number): string;
  /**
   * The UTF-8 bytes decode() emits for `id`; `first` says it is the first id of the sequence (SentencePiece drops
   * the space it prefixed while encoding there). A byte-fallback id yields a single byte that may be only part of a
   * character, which is why this returns bytes and not a string. The returned array must not be modified.
   */
  tokenBytes(id: number, first: boolean): Uint8Array;
}

/**
 * Streaming detokenizer: push ids one at a time, get back the newly completed text. Byte-fallback tokens such as
 * <0xE2><0x9C><0x93> together form one character, so an incomplete UTF-8 sequence is held back until the bytes that
 * finish it arrive (or flush() gives up on it and emits U+FFFD, exactly as decode() of the whole sequence would).
 * The concatenation of every push() plus flush() equals tok.decode(allIds).
 */
export class TokenDecoder {
  private readonly tok: Tokenizer;
  // TextDecoder in stream mode keeps the trailing partial character internally and follows the same WHATWG rules
  // as a one-shot decode, which is what makes streamed and whole-sequence output identical.
  // ignoreBOM: a leading U+FEFF is a character the model produced, and decode() keeps it too.
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  private first = true;

  constructor(tok: Tokenizer) {
    this.tok = tok;
  }

  push(id: number): string {
    const bytes = this.tok.tokenBytes(id, this.first);
    this.first = false;
    return this.utf8.decode(bytes, { stream: true });
  }

  /** End of the sequence: emits what is still held back (U+FFFD for a character whose bytes never completed). */
  flush(): string {
    return this.utf8.decode();
  }
}

/** Build the tokenizer a GGUF file describes. Throws TokenizerError for kinds Flock does not implement. */
export function createTokenizer(metadata: Record<string, unknown>): Tokenizer {
  const model = metadata['tokenizer.ggml.model'];
  switch (model) {
    case 'llama':
      return new SpmTokenizer(metadata);
    case 'gpt2':
      return new BpeTokenizer(metadata);
    default: {
      const shown = typeof model === 'string' ? JSON.stringify(model) : String(model);
      throw new TokenizerError(
        `tokenizer.ggml.model = ${shown} is not supported; Flock implements "llama" (SentencePiece) and "gpt2" ` +
          '(byte-level BPE) vocabularies. Use a model whose GGUF has one of those tokenizers.',
      );
    }
  }
}
