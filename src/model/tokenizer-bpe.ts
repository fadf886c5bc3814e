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
// insertion (the caller does that), pre-tokenizer rules (./pretokenize), or what both tokenizers share: vocabulary
// reading and decode plumbing (./tokenizer-vocab), special pieces (./tokenizer-special), the merge loop
// (./tokenizer-merge).
//
// Where this file deliberately differs from llama.cpp, only where llama.cpp's result would be a bug for us, and in
// no case that occurs in the vocabularies the tests compare:
//   - Merging and whole-word lookup never produce a control or unknown id, so plain text cannot turn into one (prompt
//     injection); such a symbol is spelled as its single-byte pieces instead.
//   - Where llama.cpp picks a fill-in-the-middle piece by text from a hash map (two candidates for one role), we take
//     the lowest id.
// The U+FEFF quirk that tokenizer-spm.ts works around (`indexPieces` in ./tokenizer-vocab; @huggingface/gguf drops
// a leading U+FEFF from every string) cannot hit byte-level pieces: the byte alphabet has no U+FEFF. Only an added
// piece starting with U+FEFF could lose it; we know of no vocabulary with one. An empty piece is named
// "[EMPTY_<id>]", as llama.cpp names it.

import { TokenizerError } from './errors';
import { type PreTokenizer, preTokenizerFor } from './pretokenize';
import { mergeSymbols } from './tokenizer-merge';
import { SpecialPieces, addMetadataEndIds, markEndPieces } from './tokenizer-special';
import {
  TokenType,
  VocabTokenizer,
  bytePieceValue,
  firstId,
  indexPieces,
  numberArray,
  optionalBool,
  optionalId,
  tokenTypes,
  vocabularyPieces,
} from './tokenizer-vocab';

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

export class BpeTokenizer extends VocabTokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly addBos: boolean;
  /** From tokenizer.ggml.add_eos_token (default false); like BOS, the caller appends EOS where it wants one. */
  readonly addEos: boolean;
  /** The `tokenizer.ggml.pre` rule set in use. */
  readonly preTokenizer: PreTokenizer;

  protected readonly pieces: string[];
  private readonly types: Uint8Array;
  /** Piece -> id for every piece encoding may emit: all but control and unknown pieces. */
  private readonly emittable = new Map<string, number>();
  /** "left right" -> merge rank; the first occurrence of a pair wins, as in llama.cpp. */
  private readonly ranks = new Map<string, number>();
  private readonly specials: SpecialPieces;
  private readonly wordCache = new Map<string, number[]>();

  constructor(metadata: Record<string, unknown>) {
    super();
    const pieces = vocabularyPieces(metadata);
    const n = pieces.length;
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
    const rawTypes = numberArray(metadata, 'tokenizer.ggml.token_type', n, 'integer');

    // A repeated piece (llama.cpp refuses the file) resolves to its last id, as there.
    const byText = indexPieces(pieces, false, 'last');
    this.types = tokenTypes(rawTypes, n);
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
    for (const role of FIM_ROLES) {
      let id = firstId(metadata, role.keys, n);
      if (id === null) {
        const found = role.pieces.map((p) => byText.get(p)).filter((x): x is number => x !== undefined);
        if (found.length > 0) {
          id = Math.min(...found);
          this.types[id] = TokenType.Control;
        }
      }
      if (id !== null && role.endsGeneration) this.endIds.add(id);
    }
    markEndPieces(pieces, this.types, END_OF_GENERATION_PIECES, this.endIds);
    for (let id = 0; id < n; id++) if (ALWAYS_RENDERED.has(pieces[id])) this.types[id] = TokenType.UserDefined;
    addMetadataEndIds(metadata, n, this.eosId, this.endIds);
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

    this.specials = new SpecialPieces(pieces, this.types, metadata);
  }

  protected renderPiece(id: number): Uint8Array {
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
        const b = bytePieceValue(piece);
        return b >= 0 ? Uint8Array.of(b) : new Uint8Array(0);
      }
      default:
        // Control, unknown, unused and undefined-type pieces are not text.
        return new Uint8Array(0);
    }
  }

  protected tokenize(text: string, parseSpecial: boolean): number[] {
    const out: number[] = [];
    for (const fragment of this.specials.split(text, parseSpecial)) {
      if (typeof fragment === 'number') {
        out.push(fragment);
        continue;
      }
      for (const word of this.preTokenizer.split(fragment)) this.encodeWord(word, out);
    }
    return out;
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
    // Symbol i starts at spelled[i]; merging grows it (tokenizer-merge). A lower rank is a better merge.
    const len = new Int32Array(count).fill(1);
    const next = mergeSymbols(len, count, (left, right) => {
      const key = `${spelled.slice(left, left + len[left])} ${spelled.slice(right, right + len[right])}`;
      const rank = this.ranks.get(key);
      return rank === undefined ? undefined : -rank;
    });
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
