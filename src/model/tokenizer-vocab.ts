// What every vocabulary-based tokenizer (./tokenizer-spm, ./tokenizer-bpe) shares: reading the vocabulary keys of a
// GGUF metadata record (pieces, token types, special ids, flags), and VocabTokenizer, the base class that does the
// id checking, per-id byte cache, decode() plumbing and end-of-generation lookup of the Tokenizer interface.
// Not here: any encoding algorithm, special-piece splitting (./tokenizer-special) or merging (./tokenizer-merge).

import { InvalidArgumentError, TokenizerError } from './errors';
import type { Tokenizer } from './tokenizer';

/** Values of `tokenizer.ggml.token_type` (llama.cpp's llama_token_type, the same numbering as sentencepiece). */
export const TokenType = {
  Undefined: 0,
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;

export function stringArray(metadata: Record<string, unknown>, key: string): string[] {
  const v = metadata[key];
  if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string')) {
    throw new TokenizerError(`${key} is missing or not an array of strings; the GGUF file has no usable vocabulary`);
  }
  return v.slice(); // our copy: empty pieces get renamed
}

/** `tokenizer.ggml.tokens`, our own copy; throws when it is missing or empty. */
export function vocabularyPieces(metadata: Record<string, unknown>): string[] {
  const pieces = stringArray(metadata, 'tokenizer.ggml.tokens');
  if (pieces.length === 0) throw new TokenizerError('tokenizer.ggml.tokens is empty; the GGUF file has no vocabulary');
  return pieces;
}

/**
 * A numeric array with at least `n` entries, or null when the key is absent. 'float' (SentencePiece scores and
 * types) takes any number from a plain, Float32, Int32 or Uint32 array; 'integer' (byte-level BPE types) takes only
 * integers, from a plain array or any typed array, into an Int32Array.
 */
type Metadata = Record<string, unknown>;
export function numberArray(metadata: Metadata, key: string, n: number, kind: 'float'): Float64Array | null;
export function numberArray(metadata: Metadata, key: string, n: number, kind: 'integer'): Int32Array | null;
export function numberArray(
  metadata: Record<string, unknown>,
  key: string,
  n: number,
  kind: 'float' | 'integer',
): Float64Array | Int32Array | null {
  const v = metadata[key];
  if (v === undefined) return null;
  const accepted =
    Array.isArray(v) ||
    (kind === 'integer'
      ? ArrayBuffer.isView(v)
      : v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint32Array);
  if (!accepted) throw new TokenizerError(`${key} is not an array; the GGUF file's vocabulary is damaged`);
  const arr = v as ArrayLike<unknown>;
  if (arr.length < n) {
    throw new TokenizerError(`${key} has ${arr.length} entries for ${n} tokens; the GGUF file's vocabulary is damaged`);
  }
  const out = kind === 'integer' ? new Int32Array(n) : new Float64Array(n);
  const what = kind === 'integer' ? 'an integer' : 'a number';
  for (let i = 0; i < n; i++) {
    const x = arr[i];
    if (typeof x === 'number' && (kind === 'float' || Number.isInteger(x))) out[i] = x;
    else if (typeof x === 'bigint') out[i] = Number(x);
    else throw new TokenizerError(`${key}[${i}] is not ${what}; the GGUF file's vocabulary is damaged`);
  }
  return out;
}

/** Token types from the raw `tokenizer.ggml.token_type` values (all normal when absent; unknown values undefined). */
export function tokenTypes(raw: ArrayLike<number> | null, n: number): Uint8Array {
  const types = new Uint8Array(n);
  for (let id = 0; id < n; id++) {
    const t = raw === null ? TokenType.Normal : raw[id];
    types[id] = t >= TokenType.Normal && t <= TokenType.Byte ? t : TokenType.Undefined;
  }
  return types;
}

/**
 * Renames empty pieces in place and returns piece -> id. An empty piece becomes "[EMPTY_<id>]", as llama.cpp names
 * it. With `restoreBom`, the first one becomes "\uFEFF" instead: @huggingface/gguf decodes strings with a default
 * TextDecoder, which drops a leading U+FEFF, so Llama's piece "\uFEFF" (id 30143) reaches us as "" (and a piece
 * "\uFEFFx" would arrive as "x"). Byte-level pieces cannot start with U+FEFF, so only SentencePiece asks for it.
 * A repeated piece is not fatal: `repeated` says whether its first or its last id keeps the text.
 */
export function indexPieces(pieces: string[], restoreBom: boolean, repeated: 'first' | 'last'): Map<string, number> {
  const byText = new Map<string, number>();
  for (let id = 0; id < pieces.length; id++) {
    if (pieces[id] === '') pieces[id] = restoreBom && !byText.has('\uFEFF') ? '\uFEFF' : `[EMPTY_${id}]`;
    if (repeated === 'last' || !byText.has(pieces[id])) byText.set(pieces[id], id);
  }
  return byText;
}

/** A token id from metadata; `fallback` when absent, and also when the id does not fit the vocabulary. */
export function optionalId(
  metadata: Record<string, unknown>,
  key: string,
  fallback: number | null,
  n: number,
): number | null {
  const v = metadata[key];
  const id = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : v === undefined ? fallback : NaN;
  if (id === null) return null;
  if (Number.isInteger(id) && id >= 0 && id < n) return id;
  // llama.cpp also ignores an out-of-range special id (with a warning) rather than refusing the model.
  return fallback !== null && fallback < n ? fallback : null;
}

/** The id under the first of `keys` the metadata has, or null. */
export function firstId(metadata: Record<string, unknown>, keys: readonly string[], n: number): number | null {
  for (const key of keys) {
    if (metadata[key] !== undefined) return optionalId(metadata, key, null, n);
  }
  return null;
}

export function optionalBool(metadata: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = metadata[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new TokenizerError(`${key} should be a boolean, found ${typeof v}`);
  return v;
}

/** The byte a "<0xNN>" piece stands for, or -1 for any other text. */
export function bytePieceValue(piece: string): number {
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  return m ? parseInt(m[1], 16) : -1;
}

/**
 * The parts of the Tokenizer interface that only look up the vocabulary: encode/encodeWithSpecial route to one
 * tokenize(), decode() joins tokenBytes(), and each id's bytes are rendered once by the subclass and cached.
 */
export abstract class VocabTokenizer implements Tokenizer {
  abstract readonly vocabSize: number;
  abstract readonly bosId: number | null;
  abstract readonly eosId: number | null;
  abstract readonly addBos: boolean;

  /** Ids that end a generation, filled by the subclass's constructor. */
  protected readonly endIds = new Set<number>();
  protected readonly utf8 = new TextEncoder();
  /** Decoded bytes per id, filled on first use (most of a large vocabulary is never decoded in a session). */
  private readonly pieceBytes: (Uint8Array | undefined)[] = [];

  /** The vocabulary pieces, by id. */
  protected abstract readonly pieces: readonly string[];

  /** Ids for text; `parseSpecial` says whether control pieces written in the text become their ids. */
  protected abstract tokenize(text: string, parseSpecial: boolean): number[];

  /** What one id decodes to, llama.cpp's token_to_piece with special = false. */
  protected abstract renderPiece(id: number): Uint8Array;

  encode(text: string): number[] {
    return this.tokenize(text, false);
  }

  encodeWithSpecial(text: string): number[] {
    return this.tokenize(text, true);
  }

  decode(ids: readonly number[]): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const bytes = this.tokenBytes(ids[i], i === 0);
      parts.push(bytes);
      total += bytes.length;
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      all.set(p, at);
      at += p.length;
    }
    // Invalid or unfinished UTF-8 (a byte token, or a piece that is part of a character) becomes U+FFFD, as in
    // node-llama-cpp's string conversion. ignoreBOM keeps a leading U+FEFF: it is text here (Llama has a piece for
    // it), not a byte-order mark.
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }

  /** The cached rendering of `id`; `first` changes nothing here (SentencePiece overrides this for its prefix space). */
  tokenBytes(id: number, _first: boolean): Uint8Array {
    this.checkId(id);
    let bytes = this.pieceBytes[id];
    if (bytes === undefined) {
      bytes = this.renderPiece(id);
      this.pieceBytes[id] = bytes;
    }
    return bytes;
  }

  isEndOfGeneration(id: number): boolean {
    return this.endIds.has(id);
  }

  tokenText(id: number): string {
    this.checkId(id);
    return this.pieces[id];
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new InvalidArgumentError(`token id ${id} is outside this vocabulary (0..${this.vocabSize - 1})`);
    }
  }
}
