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
// (llama.cpp applies none for these vocabularies), byte-level BPE ("gpt2"), BOS insertion (the caller does that).
//
// Where this file deliberately differs from llama.cpp, it follows the sentencepiece library instead, and only where
// llama.cpp's result would be a bug for us; none of these cases occurs in the llama-spm or phi-3 vocabularies (the
// tests compare every vocabulary piece and ~700 hard strings with llama.cpp):
//   - Control, unknown and byte pieces never come out of merging, so plain text cannot turn into a control id
//     (llama.cpp looks merges up in the whole vocabulary). This is what keeps encode() free of prompt injection.
//   - A merge that lands on an "unused" (or undefined-type) piece is split back into its halves at the end, as
//     sentencepiece does; llama.cpp would emit a token that decodes to nothing.
//   - A vocabulary without byte tokens gets one <unk> per unknown character; llama.cpp throws.

import { InvalidArgumentError, TokenizerError } from './errors';
import type { Tokenizer } from './tokenizer';

/** Values of `tokenizer.ggml.token_type` (llama.cpp's llama_token_type, the same numbering as sentencepiece). */
const TokenType = {
  Undefined: 0,
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;

/**
 * Pieces that end a turn in the chat formats of SentencePiece-vocabulary models. GGUF files often record only
 * eos_token_id, yet Phi-3 ends its turns with <|end|>, Gemma with <end_of_turn>. llama.cpp recognises these by
 * their text and also treats them as control pieces even when the file says otherwise (Phi-3 stores </s> as
 * user-defined), so we do both; otherwise a user typing "</s>" to a Phi-3 model would produce a real </s>.
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

/** Pieces that keep the whitespace after them in Phi-3 files (see `phi3TrailingSpace`). */
const PHI3_KEEPS_TRAILING_SPACE = new Set(['<unk>', '<s>', '<|endoftext|>']);

/** A special piece matched literally in the input before any merging. */
interface Literal {
  readonly id: number;
  readonly text: string;
  /** User-defined pieces are matched in plain text too; control and unknown ones only in encodeWithSpecial. */
  readonly inPlainText: boolean;
  /** Swallow whitespace that follows the piece (Phi-3's added tokens; see `phi3TrailingSpace`). */
  readonly eatsSpaceAfter: boolean;
  /** UTF-8 length, the sort key. */
  readonly byteLength: number;
}

export class SpmTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly unkId: number | null;
  readonly addBos: boolean;
  readonly addSpacePrefix: boolean;

  private readonly pieces: string[];
  private readonly scores: Float64Array;
  private readonly types: Uint8Array;
  /** Piece -> id for every piece merging may produce: normal, user-defined, unused and undefined-type pieces. */
  private readonly mergeable = new Map<string, number>();
  /** Byte value -> id of its fallback token, -1 where the vocabulary has none. */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** Special pieces, longest first, so that one containing a shorter special piece is matched whole. */
  private readonly literals: Literal[] = [];
  private readonly endIds = new Set<number>();
  /** Decoded bytes per id, filled on first use (most of a 32k vocabulary is never decoded in a session). */
  private readonly pieceBytes: (Uint8Array | undefined)[];
  private readonly utf8 = new TextEncoder();

  constructor(metadata: Record<string, unknown>) {
    const pieces = stringArray(metadata, 'tokenizer.ggml.tokens');
    const n = pieces.length;
    if (n === 0) throw new TokenizerError('tokenizer.ggml.tokens is empty; the GGUF file has no vocabulary');
    this.vocabSize = n;
    this.scores = numberArray(metadata, 'tokenizer.ggml.scores', n) ?? new Float64Array(n);
    const rawTypes = numberArray(metadata, 'tokenizer.ggml.token_type', n);
    this.types = new Uint8Array(n);
    this.pieceBytes = new Array<Uint8Array | undefined>(n);

    // Vocabulary. @huggingface/gguf decodes strings with a default TextDecoder, which drops a leading U+FEFF, so
    // Llama's piece "\uFEFF" (id 30143) reaches us as "" and a piece "\uFEFFx" would arrive as "x". We restore
    // the first empty piece to "\uFEFF"; any further empty piece gets a name no text contains, as llama.cpp names
    // empty pieces. For the same reason a repeated piece is not fatal: the first id keeps the text.
    const all = new Map<string, number>();
    for (let id = 0; id < n; id++) {
      if (pieces[id] === '') pieces[id] = all.has('\uFEFF') ? `[EMPTY_${id}]` : '\uFEFF';
      if (!all.has(pieces[id])) all.set(pieces[id], id);
      const t = rawTypes === null ? TokenType.Normal : rawTypes[id];
      this.types[id] = t >= TokenType.Normal && t <= TokenType.Byte ? t : TokenType.Undefined;
      if (END_OF_TURN_PIECES.has(pieces[id])) {
        this.types[id] = TokenType.Control;
        this.endIds.add(id);
      }
    }
    this.pieces = pieces;

    // Special ids: llama.cpp's defaults for SentencePiece vocabularies are unk 0, bos 1, eos 2.
    this.bosId = optionalId(metadata, 'tokenizer.ggml.bos_token_id', 1, n);
    this.eosId = optionalId(metadata, 'tokenizer.ggml.eos_token_id', 2, n);
    this.unkId = optionalId(metadata, 'tokenizer.ggml.unknown_token_id', 0, n);
    for (const key of ['tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id']) {
      const id = optionalId(metadata, key, null, n);
      if (id !== null) this.endIds.add(id);
    }
    if (this.eosId !== null) this.endIds.add(this.eosId);
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

    const eatsSpace = phi3TrailingSpace(metadata);
    for (let id = 0; id < n; id++) {
      const t = this.types[id];
      if (t !== TokenType.Control && t !== TokenType.UserDefined && t !== TokenType.Unknown) continue;
      this.literals.push({
        id,
        text: pieces[id],
        inPlainText: t === TokenType.UserDefined,
        eatsSpaceAfter: eatsSpace && !PHI3_KEEPS_TRAILING_SPACE.has(pieces[id]),
        byteLength: this.utf8.encode(pieces[id]).length,
      });
    }
    // llama.cpp orders by UTF-8 length; among equal lengths (an order it leaves unspecified) we take id order.
    this.literals.sort((a, b) => b.byteLength - a.byteLength || a.id - b.id);
  }

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
    // Invalid or unfinished UTF-8 (a lone byte token) becomes U+FFFD, as in node-llama-cpp's string conversion.
    // ignoreBOM keeps a leading U+FEFF: it is text here (Llama has a piece for it), not a byte-order mark.
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }

  tokenBytes(id: number, first: boolean): Uint8Array {
    this.checkId(id);
    let bytes = this.pieceBytes[id];
    if (bytes === undefined) {
      bytes = this.renderPiece(id);
      this.pieceBytes[id] = bytes;
    }
    // The space that encoding prefixed is dropped again from the first piece only (llama.cpp strips one space from
    // the first id even when that id renders as nothing, e.g. a BOS, so " Hello" after BOS keeps its space).
    if (first && this.addSpacePrefix && bytes.length > 0 && bytes[0] === 0x20) return bytes.subarray(1);
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

  /** What one id decodes to, llama.cpp's token_to_piece with special = false. */
  private renderPiece(id: number): Uint8Array {
    const piece = this.pieces[id];
    switch (this.types[id]) {
      case TokenType.Normal:
        return this.utf8.encode(piece.replaceAll('\u2581', ' '));
      case TokenType.UserDefined:
        // Added pieces are stored as written (no "▁" escaping), so they decode verbatim.
        return this.utf8.encode(piece);
      case TokenType.Byte: {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
        return m ? Uint8Array.of(parseInt(m[1], 16)) : this.utf8.encode(piece);
      }
      default:
        // Control, unknown, unused and undefined-type pieces are not text.
        return new Uint8Array(0);
    }
  }

  private tokenize(text: string, parseSpecial: boolean): number[] {
    const out: number[] = [];
    if (text.length === 0) return out;
    // A lone UTF-16 surrogate has no UTF-8 form; U+FFFD is what llama.cpp receives for it from node-llama-cpp too.
    const clean = text.replace(/\p{Cs}/gu, '\uFFFD');
    let afterSpecial = true; // the start of the input counts as "after a special piece": it gets the prefix space
    for (const fragment of this.partition(clean, parseSpecial)) {
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

  /** Cut special pieces out of the text: strings are text still to be merged, numbers are ids of special pieces. */
  private partition(text: string, parseSpecial: boolean): (string | number)[] {
    let fragments: (string | number)[] = [text];
    for (const lit of this.literals) {
      if (!parseSpecial && !lit.inPlainText) continue;
      if (!text.includes(lit.text)) continue; // cheap exit for the common case: most pieces never occur
      const next: (string | number)[] = [];
      for (const f of fragments) {
        if (typeof f === 'number') {
          next.push(f);
          continue;
        }
        let pos = 0;
        for (;;) {
          const at = f.indexOf(lit.text, pos);
          if (at < 0) {
            if (pos < f.length) next.push(f.slice(pos));
            break;
          }
          if (at > pos) next.push(f.slice(pos, at));
          next.push(lit.id);
          pos = at + lit.text.length;
          if (lit.eatsSpaceAfter) while (pos < f.length && isCSpace(f.charCodeAt(pos))) pos++;
        }
      }
      fragments = next;
    }
    return fragments;
  }

  /** Merge one run of escaped text into pieces (steps 3 and 4 of the header) and append their ids to `out`. */
  private segment(text: string, out: number[]): void {
    // Symbols start as single code points; a merge grows the left symbol over the right one (which becomes empty),
    // so each live symbol is a contiguous span text[start, start + len) and the list stays in text order.
    const cap = text.length;
    const start = new Int32Array(cap);
    const len = new Int32Array(cap);
    const prev = new Int32Array(cap);
    const next = new Int32Array(cap);
    let count = 0;
    for (let i = 0; i < text.length; count++) {
      const c = text.charCodeAt(i);
      const width = c >= 0xd800 && c <= 0xdbff ? 2 : 1; // the text is well-formed: a high surrogate has its pair
      start[count] = i;
      len[count] = width;
      prev[count] = count - 1;
      next[count] = count + 1;
      i += width;
    }
    if (count === 0) return;
    next[count - 1] = -1;

    const queue = new MergeQueue();
    // Merged pieces that are "unused" remember where they were joined, so they can be split again at the end.
    const splitAt = new Map<string, number>();
    const offer = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const size = len[left] + len[right];
      const piece = text.slice(start[left], start[left] + size);
      const id = this.mergeable.get(piece);
      if (id === undefined) return;
      queue.push(this.scores[id], left, right, size);
      if (this.mustResplit(id)) splitAt.set(piece, len[left]);
    };

    for (let i = 1; i < count; i++) offer(i - 1, i);
    while (queue.length > 0) {
      const { left, right, size } = queue.pop();
      // Stale candidate: one side was merged into something else since it was offered.
      if (len[left] === 0 || len[right] === 0 || len[left] + len[right] !== size) continue;
      len[left] = size;
      len[right] = 0;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      offer(prev[left], left);
      offer(left, next[left]);
    }

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

/**
 * Candidate merges, best first: the highest score, and among equal scores the leftmost pair. That order decides
 * ties exactly as llama.cpp's priority queue does, which the test vectors depend on.
 */
class MergeQueue {
  private readonly items: { score: number; left: number; right: number; size: number }[] = [];

  get length(): number {
    return this.items.length;
  }

  push(score: number, left: number, right: number, size: number): void {
    const items = this.items;
    items.push({ score, left, right, size });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): { score: number; left: number; right: number; size: number } {
    const items = this.items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && this.before(l, best)) best = l;
        if (r < items.length && this.before(r, best)) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best], items[i]];
        i = best;
      }
    }
    return top;
  }

  private before(a: number, b: number): boolean {
    const x = this.items[a];
    const y = this.items[b];
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }
}

/**
 * Phi-3's added tokens (<|user|>, <|end|>, …) were trained with the newline after them folded in (rstrip in its
 * Hugging Face tokenizer config). GGUF has no field for that, so llama.cpp recognises Phi-3 by `general.name`
 * and lets every special piece except <unk>, <s> and <|endoftext|> swallow the whitespace that follows it. We do the
 * same so that a chat template's "<|user|>\n" encodes as llama.cpp encodes it.
 */
function phi3TrailingSpace(metadata: Record<string, unknown>): boolean {
  const name = metadata['general.name'];
  if (typeof name !== 'string') return false;
  const lower = name.toLowerCase();
  return lower.includes('phi-3') || lower.includes('phi3');
}

/** C's isspace() in the "C" locale, which llama.cpp uses for that stripping. */
function isCSpace(c: number): boolean {
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function stringArray(metadata: Record<string, unknown>, key: string): string[] {
  const v = metadata[key];
  if (!Array.isArray(v) || !v.every((x): x is string => typeof x === 'string')) {
    throw new TokenizerError(`${key} is missing or not an array of strings; the GGUF file has no usable vocabulary`);
  }
  return v.slice(); // our copy: empty pieces get renamed
}

/** A numeric array with at least `n` entries, or null when the key is absent (scores default to 0, types to normal). */
function numberArray(metadata: Record<string, unknown>, key: string, n: number): Float64Array | null {
  const v = metadata[key];
  if (v === undefined) return null;
  let arr: ArrayLike<unknown>;
  if (Array.isArray(v) || v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint32Array) arr = v;
  else throw new TokenizerError(`${key} is not an array; the GGUF file's vocabulary is damaged`);
  const out = new Float64Array(n);
  if (arr.length < n) {
    throw new TokenizerError(`${key} has ${arr.length} entries for ${n} tokens; the GGUF file's vocabulary is damaged`);
  }
  for (let i = 0; i < n; i++) {
    const x = arr[i];
    if (typeof x === 'number') out[i] = x;
    else if (typeof x === 'bigint') out[i] = Number(x);
    else throw new TokenizerError(`${key}[${i}] is not a number; the GGUF file's vocabulary is damaged`);
  }
  return out;
}

/** A token id from metadata; `fallback` when absent, null when the id does not fit the vocabulary. */
function optionalId(metadata: Record<string, unknown>, key: string, fallback: number | null, n: number): number | null {
  const v = metadata[key];
  const id = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : v === undefined ? fallback : NaN;
  if (id === null) return null;
  if (Number.isInteger(id) && id >= 0 && id < n) return id;
  // llama.cpp also ignores an out-of-range special id (with a warning) rather than refusing the model.
  return fallback !== null && fallback < n ? fallback : null;
}

function optionalBool(metadata: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = metadata[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new TokenizerError(`${key} should be a boolean, found ${typeof v}`);
  return v;
}
