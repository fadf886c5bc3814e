// The SentencePiece ("llama") tokenizer that GGUF files with `tokenizer.ggml.model = "llama"` describe: Llama 2,
// Mistral, TinyLlama, Phi-3 and friends. It reproduces llama.cpp's SPM tokenizer (src/llama-vocab.cpp) on the
// vocabulary, scores and token types stored in the GGUF:
//   1. special pieces are cut out of the text first (user-defined ones always, control ones only on request);
//   2. each remaining run of text gets a leading space when it starts the input or follows a special piece
//      (`tokenizer.ggml.add_space_prefix`, default true), and every " " becomes "▁" (U+2581);
//   3. starting from single characters, the adjacent pair whose concatenation is the best-scoring vocabulary piece is
//      merged, again and again (a heap keeps the candidates);
//   4. characters left without a piece become their UTF-8 bytes as <0xNN> tokens ("byte fallback").
// Decoding is llama.cpp's llama_detokenize with remove_special = false and unparse_special = false.
// Not here: the .model protobuf of the sentencepiece library, its unigram mode (GGUF "t5"/UGM), text normalisation
// (llama.cpp applies none for these vocabularies), byte-level BPE ("gpt2"), BOS insertion (the caller does that), or
// what both tokenizers share: vocabulary reading and decode plumbing (./tokenizer-vocab), special pieces
// (./tokenizer-special), the merge loop (./tokenizer-merge).
//
// Where this file deliberately differs from llama.cpp, it follows the sentencepiece library instead, and only where
// llama.cpp's result would be a bug for us; none of these cases occurs in the llama-spm or phi-3 vocabularies (the
// tests compare every vocabulary piece and ~700 hard strings with llama.cpp):
//   - Control, unknown and byte pieces never come out of merging, so plain text cannot turn into a control id
//     (llama.cpp looks merges up in the whole vocabulary). This is what keeps encode() free of prompt injection.
//   - A merge that lands on an "unused" (or undefined-type) piece is split back into its halves at the end, as
//     sentencepiece does; llama.cpp would emit a token that decodes to nothing.
//   - A vocabulary without byte tokens gets one <unk> per unknown character; llama.cpp throws.

import { TokenizerError } from './errors';
import { mergeSymbols } from './tokenizer-merge';
import { SpecialPieces, addMetadataEndIds, markEndPieces } from './tokenizer-special';
import {
  TokenType,
  VocabTokenizer,
  bytePieceValue,
  indexPieces,
  numberArray,
  optionalBool,
  optionalId,
  tokenTypes,
  vocabularyPieces,
} from './tokenizer-vocab';

/**
 * Pieces that end a turn in the chat formats of SentencePiece-vocabulary models. GGUF files often record only
 * eos_token_id, yet Phi-3 ends its turns with <|end|>, Gemma with <end_of_turn>. llama.cpp recognises these by
 * their text and also treats them as control pieces even when the file says otherwise (see `markEndPieces`).
 */
const END_OF_TURN_PIECES = new Set([
  '</s>',
  '<eos>',
  '<|endoftext|>',
  '<|end|>',
  '<|eot_id|>',
  '<|eom_id|>',
  '<|im_end|>',
  '<end_of_turn>',
  '<|end_of_text|>',
  '<EOT>',
]);

export class SpmTokenizer extends VocabTokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly addBos: boolean;
  readonly addSpacePrefix: boolean;

  protected readonly pieces: string[];
  private readonly scores: Float64Array;
  private readonly types: Uint8Array;
  /** Piece -> id for every piece merging may produce: normal, user-defined, unused and undefined-type pieces. */
  private readonly mergeable = new Map<string, number>();
  /** Byte value -> id of its fallback token, -1 where the vocabulary has none. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly specials: SpecialPieces;

  constructor(metadata: Record<string, unknown>) {
    super();
    const pieces = vocabularyPieces(metadata);
    const n = pieces.length;
    this.vocabSize = n;
    this.scores = numberArray(metadata, 'tokenizer.ggml.scores', n, 'float') ?? new Float64Array(n);
    const rawTypes = numberArray(metadata, 'tokenizer.ggml.token_type', n, 'float');

    // Vocabulary: the first empty piece is Llama's "\uFEFF" (see `indexPieces`); any further one gets a name no
    // text contains. A repeated piece is not fatal: the first id keeps the text.
    const all = indexPieces(pieces, true, 'first');
    this.types = tokenTypes(rawTypes, n);
    markEndPieces(pieces, this.types, END_OF_TURN_PIECES, this.endIds);
    this.pieces = pieces;

    // Special ids: llama.cpp's defaults for SentencePiece vocabularies are unk 0, bos 1, eos 2.
    this.bosId = optionalId(metadata, 'tokenizer.ggml.bos_token_id', 1, n);
    this.eosId = optionalId(metadata, 'tokenizer.ggml.eos_token_id', 2, n);
    this.unkId = optionalId(metadata, 'tokenizer.ggml.unknown_token_id', 0, n);
    addMetadataEndIds(metadata, n, this.eosId, this.endIds);
    this.addBos = optionalBool(metadata, 'tokenizer.ggml.add_bos_token', true);
    this.addSpacePrefix = optionalBool(metadata, 'tokenizer.ggml.add_space_prefix', true);

    for (let id = 0; id < n; id++) {
      switch (this.types[id]) {
        case TokenType.Normal:
        case TokenType.UserDefined:
        case TokenType.Unused:
        case TokenType.Undefined:
          if (all.get(pieces[id]) === id) this.mergeable.set(pieces[id], id);
          break;
        default:
          break;
      }
    }

    // Byte fallback ids are looked up by text, as llama.cpp does: "<0xE2>" (upper-case hex), or failing that the
    // one-character piece for an ASCII byte.
    for (let b = 0; b < 256; b++) {
      const hex = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
      const id = all.get(hex) ?? (b < 0x80 ? all.get(String.fromCharCode(b)) : undefined);
      if (id !== undefined) this.byteIds[b] = id;
    }

    this.specials = new SpecialPieces(pieces, this.types, metadata);
  }

  override tokenBytes(id: number, first: boolean): Uint8Array {
    const bytes = super.tokenBytes(id, first);
    // The space that encoding prefixed is dropped again from the first piece only (llama.cpp strips one space from
    // the first id even when that id renders as nothing, e.g. a BOS, so " Hello" after BOS keeps its space).
    if (first && this.addSpacePrefix && bytes.length > 0 && bytes[0] === 0x20) return bytes.subarray(1);
    return bytes;
  }

  protected renderPiece(id: number): Uint8Array {
    const piece = this.pieces[id];
    switch (this.types[id]) {
      case TokenType.Normal:
        return this.utf8.encode(piece.replaceAll('\u2581', ' '));
      case TokenType.UserDefined:
        // Added pieces are stored as written (no "▁" escaping), so they decode verbatim.
        return this.utf8.encode(piece);
      case TokenType.Byte: {
        const b = bytePieceValue(piece);
        return b >= 0 ? Uint8Array.of(b) : this.utf8.encode(piece);
      }
      default:
        // Control, unknown, unused and undefined-type pieces are not text.
        return new Uint8Array(0);
    }
  }

  protected tokenize(text: string, parseSpecial: boolean): number[] {
    const out: number[] = [];
    let afterSpecial = true; // the start of the input counts as "after a special piece": it gets the prefix space
    for (const fragment of this.specials.split(text, parseSpecial)) {
      if (typeof fragment === 'number') {
        out.push(fragment);
        afterSpecial = true;
        continue;
      }
      const spaced = this.addSpacePrefix && afterSpecial ? ' ' + fragment : fragment;
      this.segment(spaced.replaceAll(' ', '\u2581'), out);
      afterSpecial = false;
    }
    return out;
  }

  /** Merge one run of escaped text into pieces (steps 3 and 4 of the header) and append their ids to `out`. */
  private segment(text: string, out: number[]): void {
    // Symbols start as single code points, each a span text[start, start + len) that merging grows (tokenizer-merge).
    const cap = text.length;
    const start = new Int32Array(cap);
    const len = new Int32Array(cap);
    let count = 0;
    for (let i = 0; i < text.length; count++) {
      const c = text.charCodeAt(i);
      const width = c >= 0xd800 && c <= 0xdbff ? 2 : 1; // the text is well-formed: a high surrogate has its pair
      start[count] = i;
      len[count] = width;
      i += width;
    }
    if (count === 0) return;

    // Merged pieces that are "unused" remember where they were joined, so they can be split again at the end.
    const splitAt = new Map<string, number>();
    const next = mergeSymbols(len, count, (left, right) => {
      const piece = text.slice(start[left], start[left] + len[left] + len[right]);
      const id = this.mergeable.get(piece);
      if (id === undefined) return undefined;
      if (this.mustResplit(id)) splitAt.set(piece, len[left]);
      return this.scores[id];
    });

    for (let i = 0; i !== -1; i = next[i]) this.emit(text.slice(start[i], start[i] + len[i]), splitAt, out);
  }

  private mustResplit(id: number): boolean {
    const t = this.types[id];
    return t === TokenType.Unused || t === TokenType.Undefined;
  }

  /** Append the ids of one final symbol: its piece, its halves if it is an unused piece, or its bytes. */
  private emit(piece: string, splitAt: Map<string, number>, out: number[]): void {
    const id = this.mergeable.get(piece);
    if (id !== undefined) {
      const split = this.mustResplit(id) ? splitAt.get(piece) : undefined;
      if (split === undefined) {
        out.push(id);
      } else {
        this.emit(piece.slice(0, split), splitAt, out);
        this.emit(piece.slice(split), splitAt, out);
      }
      return;
    }
    // Only single characters get here: every merged symbol is a vocabulary piece by construction.
    const bytes = this.utf8.encode(piece);
    if (bytes.every((b) => this.byteIds[b] >= 0)) {
      for (const b of bytes) out.push(this.byteIds[b]);
    } else if (this.unkId !== null) {
      out.push(this.unkId);
    } else {
      throw new TokenizerError(
        `cannot encode ${JSON.stringify(piece)}: the vocabulary has neither byte tokens (<0xNN>) nor an unknown ` +
          'token for it',
      );
    }
  }
}
