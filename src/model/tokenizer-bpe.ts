// The byte-level BPE tokenizer that GGUF files with `tokenizer.ggml.model = "gpt2"` describe: GPT-2, Llama 3.x,
// Qwen2.5, SmolLM2, DeepSeek, StarCoder, Falcon, MPT and friends. It reproduces llama.cpp's BPE tokenizer
// (src/llama-vocab.cpp) on the vocabulary, merges and token types stored in the GGUF:
//   1. special pieces are cut out of the text first, longest first (user-defined ones always, control ones only in
//      encodeWithSpecial);
//   2. each remaining run of text is cut into words by the pre-tokenizer `tokenizer.ggml.pre` names (./pretokenize);
//   3. each word's UTF-8 bytes are spelled with GPT-2's byte alphabet (every byte is one printable character: "Ġ" is
//      the space), and adjacent symbols are merged by the rank of their pair in `tokenizer.ggml.merges`, lowest rank
//      first, leftmost first among equals (a heap keeps the candidates; results are cached per word);
//   4. each final symbol is looked up in the vocabulary.
// Decoding maps each piece's characters back to bytes through the inverse alphabet (llama_detokenize with
// remove_special = false and unparse_special = false), except that we never apply llama.cpp's "clean up
// tokenization spaces" pass (" ," → ","): it is lossy and would make streamed text differ from decode().
// Not here: SentencePiece (./tokenizer-spm), byte-level BPE without the byte alphabet (Gemma 4's "▁" style), BOS
// insertion (the caller does that), or pre-tokenizer rules (./pretokenize).
//
// Where this file deliberately differs from llama.cpp, only where llama.cpp's result would be a bug for us, and in
// no case that occurs in the vocabularies the tests compare:
//   - Merging and whole-word lookup never produce a control or unknown id, so plain text cannot turn into one (prompt
//     injection); such a symbol is spelled as its single-byte pieces instead.
//   - Where llama.cpp picks a fill-in-the-middle piece by text from a hash map (two candidates for one role), we take
//     the lowest id.
// The U+FEFF quirk that tokenizer-spm.ts works around (@huggingface/gguf drops a leading U+FEFF from every string)
// cannot hit byte-level pieces: the byte alphabet has no U+FEFF. Only an added piece starting with U+FEFF could lose
// it; we know of no vocabulary with one. An empty piece is named "[EMPTY_<id>]", as llama.cpp names it.

import { InvalidArgumentError, TokenizerError } from './errors';
import { type PreTokenizer, preTokenizerFor } from './pretokenize';
import type { Tokenizer } from './tokenizer';

/** Values of `tokenizer.ggml.token_type` (llama.cpp's llama_token_type). */
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
 * Pieces llama.cpp treats as ending a generation whatever the file says, and turns into control pieces if the file
 * stored them otherwise (so that a user who types them gets plain text).
 */
const END_OF_GENERATION_PIECES = new Set([
  '<|eot_id|>',
  '<|im_end|>',
  '<|end|>',
  '<|return|>',
  '<|call|>',
  '<|flush|>',
  '<|calls|>',
  '<end_of_turn>',
  '<|endoftext|>',
  '</s>',
  '<|eom_id|>',
  '<EOT>',
  '_<EOT>',
  '[EOT]',
  '[EOS]',
  '<|end_of_text|>',
  '<end_of_utterance>',
  '<eos>',
  '<turn|>',
  '<|tool_response>',
  '<｜end▁of▁sentence｜>',
  '[e~[',
]);

/**
 * Fill-in-the-middle roles: the metadata key that names the id, and the pieces that fill the role when the key is
 * absent. llama.cpp makes every such piece a control piece; pad, repo and file-separator also end a generation.
 */
const FIM_ROLES: { keys: string[]; pieces: string[]; endsGeneration: boolean }[] = [
  {
    keys: ['tokenizer.ggml.fim_pre_token_id', 'tokenizer.ggml.prefix_token_id'],
    pieces: ['<|fim_prefix|>', '<fim-prefix>', '<fim_prefix>', '<｜fim▁begin｜>', '<PRE>', '▁<PRE>', '<|code_prefix|>',
      '<|prefix|>'],
    endsGeneration: false,
  },
  {
    keys: ['tokenizer.ggml.fim_suf_token_id', 'tokenizer.ggml.suffix_token_id'],
    pieces: ['<|fim_suffix|>', '<fim-suffix>', '<fim_suffix>', '<｜fim▁hole｜>', '<SUF>', '▁<SUF>', '<|code_suffix|>',
      '<|suffix|>'],
    endsGeneration: false,
  },
  {
    keys: ['tokenizer.ggml.fim_mid_token_id', 'tokenizer.ggml.middle_token_id'],
    pieces: ['<|fim_middle|>', '<fim-middle>', '<fim_middle>', '<｜fim▁end｜>', '<MID>', '▁<MID>', '<|code_middle|>',
      '<|middle|>'],
    endsGeneration: false,
  },
  {
    keys: ['tokenizer.ggml.fim_pad_token_id'],
    pieces: ['<|fim_pad|>', '<fim-pad>', '<fim_pad>', '<PAD>', '[PAD]'],
    endsGeneration: true,
  },
  {
    keys: ['tokenizer.ggml.fim_rep_token_id'],
    pieces: ['<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<reponame>'],
    endsGeneration: true,
  },
  { keys: ['tokenizer.ggml.fim_sep_token_id'], pieces: ['<|file_sep|>'], endsGeneration: true },
];

/** gpt-oss's channel markers: llama.cpp always renders them as text (user-defined), whatever the file says. */
const ALWAYS_RENDERED = new Set(['<|channel|>', '<|message|>', '<|start|>', '<|constrain|>']);

/** Pieces that keep the whitespace after them in Phi-3-named files (see `phi3TrailingSpace` in tokenizer-spm.ts). */
const PHI3_KEEPS_TRAILING_SPACE = new Set(['<unk>', '<s>', '<|endoftext|>']);

/**
 * GPT-2's byte alphabet. Bytes that are printable and not a space keep their own code point ("!".."~", "¡".."¬",
 * "®".."ÿ"); the other 68 get U+0100, U+0101, … in byte order. So the space 0x20 is "Ġ" (U+0120), "\n" is "Ċ".
 */
const BYTE_TO_CHAR: string[] = [];
/** Inverse of BYTE_TO_CHAR by code point (all below U+0144); -1 for characters outside the alphabet. */
const CHAR_TO_BYTE = new Int16Array(0x144).fill(-1);
{
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const keeps = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const cp = keeps ? b : 0x100 + extra++;
    BYTE_TO_CHAR.push(String.fromCharCode(cp));
    CHAR_TO_BYTE[cp] = b;
  }
}

/** Words whose ids are remembered; a chat prompt repeats most of its words, a long document far fewer. */
const WORD_CACHE_LIMIT = 50_000;

/** A special piece matched literally in the input before any merging. */
interface Literal {
  readonly id: number;
  readonly text: string;
  /** User-defined pieces are matched in plain text too; control and unknown ones only in encodeWithSpecial. */
  readonly inPlainText: boolean;
  /** Swallow whitespace that follows the piece (Phi-3-named files only). */
  readonly eatsSpaceAfter: boolean;
  /** UTF-8 length, the sort key. */
  readonly byteLength: number;
}

export class BpeTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly addBos: boolean;
  /** From tokenizer.ggml.add_eos_token (default false); like BOS, the caller appends EOS where it wants one. */
  readonly addEos: boolean;
  /** The `tokenizer.ggml.pre` rule set in use. */
  readonly preTokenizer: PreTokenizer;

  private readonly pieces: string[];
  private readonly types: Uint8Array;
  /** Piece -> id for every piece encoding may emit: all but control and unknown pieces. */
  private readonly emittable = new Map<string, number>();
  /** "left right" -> merge rank; the first occurrence of a pair wins, as in llama.cpp. */
  private readonly ranks = new Map<string, number>();
  /** Special pieces, longest first, so that one containing a shorter special piece is matched whole. */
  private readonly literals: Literal[] = [];
  private readonly endIds = new Set<number>();
  private readonly wordCache = new Map<string, number[]>();
  /** Decoded bytes per id, filled on first use. */
  private readonly pieceBytes: (Uint8Array | undefined)[];
  private readonly utf8 = new TextEncoder();

  constructor(metadata: Record<string, unknown>) {
    const pieces = stringArray(metadata, 'tokenizer.ggml.tokens');
    const n = pieces.length;
    if (n === 0) throw new TokenizerError('tokenizer.ggml.tokens is empty; the GGUF file has no vocabulary');
    this.vocabSize = n;
    const pre = metadata['tokenizer.ggml.pre'];
    if (pre !== undefined && typeof pre !== 'string') {
      throw new TokenizerError(`tokenizer.ggml.pre should be a string, found ${typeof pre}`);
    }
    this.preTokenizer = preTokenizerFor(pre);
    const merges = metadata['tokenizer.ggml.merges'];
    if (!Array.isArray(merges) || !merges.every((m): m is string => typeof m === 'string')) {
      throw new TokenizerError(
        'tokenizer.ggml.merges is missing or not an array of strings; a byte-level BPE ("gpt2") vocabulary needs ' +
          'its merge list',
      );
    }
    const rawTypes = numberArray(metadata, 'tokenizer.ggml.token_type', n);
    this.types = new Uint8Array(n);
    this.pieceBytes = new Array<Uint8Array | undefined>(n);

    const byText = new Map<string, number>();
    for (let id = 0; id < n; id++) {
      if (pieces[id] === '') pieces[id] = `[EMPTY_${id}]`;
      byText.set(pieces[id], id); // a repeated piece (llama.cpp refuses the file) resolves to its last id, as there
      const t = rawTypes === null ? TokenType.Normal : rawTypes[id];
      this.types[id] = t >= TokenType.Normal && t <= TokenType.Byte ? t : TokenType.Undefined;
    }
    this.pieces = pieces;

    // Merge ranks. A rule is "left right"; llama.cpp splits at the first space after the first character.
    for (let rank = 0; rank < merges.length; rank++) {
      const rule = merges[rank];
      const at = rule.indexOf(' ', 1);
      const key = at < 0 ? ' ' : rule;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
    }

    // Special ids. llama.cpp's defaults for byte-level BPE are bos = eos = 11 (Falcon's "<|endoftext|>"), except
    // that ChatGLM has no default BOS; an id outside the vocabulary is ignored.
    const spec = this.preTokenizer.spec;
    this.bosId = optionalId(metadata, 'tokenizer.ggml.bos_token_id', spec.bosDefault, n);
    this.eosId = optionalId(metadata, 'tokenizer.ggml.eos_token_id', 11, n);
    this.padId = optionalId(metadata, 'tokenizer.ggml.padding_token_id', null, n);
    this.addBos = optionalBool(metadata, 'tokenizer.ggml.add_bos_token', spec.addBosDefault);
    this.addEos = optionalBool(metadata, 'tokenizer.ggml.add_eos_token', false);

    // Roles llama.cpp infers from piece text, in its order: fill-in-the-middle pieces, end-of-generation pieces,
    // gpt-oss's rendered markers, then the ids the file names.
    const makeControl = (id: number): void => {
      this.types[id] = TokenType.Control;
    };
    for (const role of FIM_ROLES) {
      let id = firstId(metadata, role.keys, n);
      if (id === null) {
        const found = role.pieces.map((p) => byText.get(p)).filter((x): x is number => x !== undefined);
        if (found.length > 0) {
          id = Math.min(...found);
          makeControl(id);
        }
      }
      if (id !== null && role.endsGeneration) this.endIds.add(id);
    }
    for (let id = 0; id < n; id++) {
      if (END_OF_GENERATION_PIECES.has(pieces[id])) {
        this.endIds.add(id);
        makeControl(id);
      }
    }
    for (let id = 0; id < n; id++) if (ALWAYS_RENDERED.has(pieces[id])) this.types[id] = TokenType.UserDefined;
    for (const key of ['tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id']) {
      const id = optionalId(metadata, key, null, n);
      if (id !== null) this.endIds.add(id);
    }
    if (this.eosId !== null) this.endIds.add(this.eosId);
    // Harmony-style vocabularies (<|return|> and <|call|>, or <|calls|> and <|flush|>) use <|end|> between messages,
    // not at the end of a generation; llama.cpp makes it plain user-defined text there.
    const endText = new Set([...this.endIds].map((id) => pieces[id]));
    const endId = byText.get('<|end|>');
    const hasCall = endText.has('<|call|>') || endText.has('<|calls|>');
    const harmony = hasCall && (endText.has('<|return|>') || endText.has('<|flush|>'));
    if (endId !== undefined && this.endIds.has(endId) && harmony) {
      this.endIds.delete(endId);
      this.types[endId] = TokenType.UserDefined;
    }
    // Gemma 4's vocabulary has </s> as ordinary text; its turns end with <turn|> / <|tool_response>.
    const closeS = byText.get('</s>');
    if (closeS !== undefined && this.endIds.has(closeS) && endText.has('<|tool_response>')) {
      this.endIds.delete(closeS);
      this.types[closeS] = TokenType.Normal;
    }

    for (let id = 0; id < n; id++) {
      const t = this.types[id];
      if (t !== TokenType.Control && t !== TokenType.Unknown && byText.get(pieces[id]) === id) {
        this.emittable.set(pieces[id], id);
      }
    }

    const eatsSpace = phi3Named(metadata);
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
    // Invalid or unfinished UTF-8 (a piece that is part of a character) becomes U+FFFD, as in node-llama-cpp.
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }

  /** Byte-level pieces carry their own spaces, so `first` changes nothing here. */
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

  /** What one id decodes to, llama.cpp's token_to_piece with special = false. */
  private renderPiece(id: number): Uint8Array {
    const piece = this.pieces[id];
    switch (this.types[id]) {
      case TokenType.Normal: {
        const out: number[] = [];
        for (const ch of piece) {
          const cp = ch.codePointAt(0)!;
          const b = cp < CHAR_TO_BYTE.length ? CHAR_TO_BYTE[cp] : -1;
          if (b >= 0) {
            out.push(b);
          } else {
            // A character outside the byte alphabet: llama.cpp emits this marker (with the whole piece in it)
            // rather than failing; we emit the same bytes so decoding agrees.
            const hex = [...this.utf8.encode(ch)].map((x) => x.toString(16).padStart(2, '0')).join('');
            out.push(...this.utf8.encode(`[UNK_BYTE_0x${hex}${piece}]`));
          }
        }
        return Uint8Array.from(out);
      }
      case TokenType.UserDefined:
        // Added pieces are stored as written, not in the byte alphabet, so they decode verbatim.
        return this.utf8.encode(piece);
      case TokenType.Byte: {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
        return m ? Uint8Array.of(parseInt(m[1], 16)) : new Uint8Array(0);
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
    for (const fragment of this.partition(clean, parseSpecial)) {
      if (typeof fragment === 'number') {
        out.push(fragment);
        continue;
      }
      for (const word of this.preTokenizer.split(fragment)) this.encodeWord(word, out);
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

  /** Append the ids of one pre-tokenizer word (steps 3 and 4 of the header). */
  private encodeWord(word: string, out: number[]): void {
    let spelled = '';
    for (const b of this.utf8.encode(word)) spelled += BYTE_TO_CHAR[b];
    const cached = this.wordCache.get(spelled);
    if (cached !== undefined) {
      for (const id of cached) out.push(id);
      return;
    }
    const ids: number[] = [];
    const whole = this.preTokenizer.spec.ignoreMerges ? this.emittable.get(spelled) : undefined;
    if (whole !== undefined) ids.push(whole);
    else for (const symbol of this.merge(spelled)) this.emitSymbol(symbol, ids);
    if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
    this.wordCache.set(spelled, ids);
    for (const id of ids) out.push(id);
  }

  /** BPE over one spelled word: the final symbols, in order. Every character of `spelled` is one byte (BMP). */
  private merge(spelled: string): string[] {
    const count = spelled.length;
    if (count === 1) return [spelled];
    // Symbol i covers spelled[i, i + len[i]); a merge grows the left symbol over the right one, which becomes empty.
    const len = new Int32Array(count).fill(1);
    const prev = new Int32Array(count);
    const next = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < count ? i + 1 : -1;
    }
    const queue = new MergeQueue();
    const offer = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const key = `${spelled.slice(left, left + len[left])} ${spelled.slice(right, right + len[right])}`;
      const rank = this.ranks.get(key);
      if (rank !== undefined) queue.push(rank, left, right, len[left] + len[right]);
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
    const symbols: string[] = [];
    for (let i = 0; i !== -1; i = next[i]) symbols.push(spelled.slice(i, i + len[i]));
    return symbols;
  }

  /**
   * Append the id of one final symbol. A symbol that is not a piece (a merge list that builds pieces the vocabulary
   * lacks) is spelled character by character, and characters without a piece are dropped, as llama.cpp does.
   */
  private emitSymbol(symbol: string, out: number[]): void {
    const id = this.emittable.get(symbol);
    if (id !== undefined) {
      out.push(id);
      return;
    }
    // llama.cpp looks up each UTF-8 byte of the symbol as a one-byte piece; only ASCII characters can match.
    for (const ch of symbol) {
      const single = ch.charCodeAt(0) < 0x80 ? this.emittable.get(ch) : undefined;
      if (single !== undefined) out.push(single);
    }
  }
}

/** Candidate merges, best first: the lowest rank, and among equal ranks the leftmost pair (llama.cpp's order). */
class MergeQueue {
  private readonly items: { rank: number; left: number; right: number; size: number }[] = [];

  get length(): number {
    return this.items.length;
  }

  push(rank: number, left: number, right: number, size: number): void {
    const items = this.items;
    items.push({ rank, left, right, size });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): { rank: number; left: number; right: number; size: number } {
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
    return x.rank < y.rank || (x.rank === y.rank && x.left < y.left);
  }
}

/** llama.cpp gives every special piece of a file whose general.name says Phi-3 the habit of eating the space after. */
function phi3Named(metadata: Record<string, unknown>): boolean {
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

/** A numeric array with at least `n` entries, or null when the key is absent (types default to normal). */
function numberArray(metadata: Record<string, unknown>, key: string, n: number): Int32Array | null {
  const v = metadata[key];
  if (v === undefined) return null;
  if (!Array.isArray(v) && !ArrayBuffer.isView(v)) {
    throw new TokenizerError(`${key} is not an array; the GGUF file's vocabulary is damaged`);
  }
  const arr = v as ArrayLike<unknown>;
  if (arr.length < n) {
    throw new TokenizerError(`${key} has ${arr.length} entries for ${n} tokens; the GGUF file's vocabulary is damaged`);
  }
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const x = arr[i];
    if (typeof x === 'number' && Number.isInteger(x)) out[i] = x;
    else if (typeof x === 'bigint') out[i] = Number(x);
    else throw new TokenizerError(`${key}[${i}] is not an integer; the GGUF file's vocabulary is damaged`);
  }
  return out;
}

/** A token id from metadata; `fallback` when absent, and also when the id does not fit the vocabulary. */
function optionalId(metadata: Record<string, unknown>, key: string, fallback: number | null, n: number): number | null {
  const v = metadata[key];
  const id = typeof v === 'number' ? v : typeof v === 'bigint' ? Number(v) : v === undefined ? fallback : NaN;
  if (id === null) return null;
  if (Number.isInteger(id) && id >= 0 && id < n) return id;
  // llama.cpp also ignores an out-of-range special id (with a warning) rather than refusing the model.
  return fallback !== null && fallback < n ? fallback : null;
}

/** The id under the first of `keys` the metadata has, or null. */
function firstId(metadata: Record<string, unknown>, keys: string[], n: number): number | null {
  for (const key of keys) {
    if (metadata[key] !== undefined) return optionalId(metadata, key, null, n);
  }
  return null;
}

function optionalBool(metadata: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = metadata[key];
  if (v === undefined) return fallback;
  if (typeof v !== 'boolean') throw new TokenizerError(`${key} should be a boolean, found ${typeof v}`);
  return v;
}
