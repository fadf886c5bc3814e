// Special pieces shared by the vocabulary tokenizers (./tokenizer-spm, ./tokenizer-bpe): cutting control,
// unknown and user-defined pieces out of the input before any merging (longest match first, with Phi-3's
// whitespace swallowing), and deciding which ids end a generation (ids the metadata names, pieces known by their
// text). Not here: which pieces a tokenizer kind knows by text (each tokenizer passes its own set), merging.

import { TokenType, optionalId } from './tokenizer-vocab';

/** Pieces that keep the whitespace after them in Phi-3-named files (see `phi3Named`). */
const PHI3_KEEPS_TRAILING_SPACE = new Set(['<unk>', '<s>', '<|endoftext|>']);

/** A special piece matched literally in the input before any merging. */
interface Literal {
  readonly id: number;
  readonly text: string;
  /** User-defined pieces are matched in plain text too; control and unknown ones only in encodeWithSpecial. */
  readonly inPlainText: boolean;
  /** Swallow whitespace that follows the piece (Phi-3's added tokens; see `phi3Named`). */
  readonly eatsSpaceAfter: boolean;
  /** UTF-8 length, the sort key. */
  readonly byteLength: number;
}

/** The control, unknown and user-defined pieces of a vocabulary, and the splitting of text at them. */
export class SpecialPieces {
  /** Special pieces, longest first, so that one containing a shorter special piece is matched whole. */
  private readonly literals: Literal[] = [];

  /** `types` must be final: a piece is special by its type at this point. */
  constructor(pieces: readonly string[], types: Uint8Array, metadata: Record<string, unknown>) {
    const utf8 = new TextEncoder();
    const eatsSpace = phi3Named(metadata);
    for (let id = 0; id < pieces.length; id++) {
      const t = types[id];
      if (t !== TokenType.Control && t !== TokenType.UserDefined && t !== TokenType.Unknown) continue;
      this.literals.push({
        id,
        text: pieces[id],
        inPlainText: t === TokenType.UserDefined,
        eatsSpaceAfter: eatsSpace && !PHI3_KEEPS_TRAILING_SPACE.has(pieces[id]),
        byteLength: utf8.encode(pieces[id]).length,
      });
    }
    // llama.cpp orders by UTF-8 length; among equal lengths (an order it leaves unspecified) we take id order.
    this.literals.sort((a, b) => b.byteLength - a.byteLength || a.id - b.id);
  }

  /**
   * Cut special pieces out of the text: strings are text still to be encoded, numbers are ids of special pieces.
   * Empty text gives no fragments. A lone UTF-16 surrogate has no UTF-8 form; it becomes U+FFFD, which is what
   * llama.cpp receives for it from node-llama-cpp too.
   */
  split(text: string, parseSpecial: boolean): (string | number)[] {
    if (text.length === 0) return [];
    const clean = text.replace(/\p{Cs}/gu, '\uFFFD');
    let fragments: (string | number)[] = [clean];
    for (const lit of this.literals) {
      if (!parseSpecial && !lit.inPlainText) continue;
      if (!clean.includes(lit.text)) continue; // cheap exit for the common case: most pieces never occur
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
}

/**
 * Pieces known by their text to end a generation (`endPieces`, the tokenizer kind's list) become control pieces
 * whatever the file says, as llama.cpp makes them, and are added to `endIds`; otherwise a user typing "</s>" to a
 * Phi-3 model (which stores it as user-defined) would produce a real </s>.
 */
export function markEndPieces(
  pieces: readonly string[],
  types: Uint8Array,
  endPieces: ReadonlySet<string>,
  endIds: Set<number>,
): void {
  for (let id = 0; id < pieces.length; id++) {
    if (endPieces.has(pieces[id])) {
      endIds.add(id);
      types[id] = TokenType.Control;
    }
  }
}

/** Add the ids the metadata says end a generation: eot and eom when present, and eos. */
export function addMetadataEndIds(
  metadata: Record<string, unknown>,
  n: number,
  eosId: number | null,
  endIds: Set<number>,
): void {
  for (const key of ['tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eom_token_id']) {
    const id = optionalId(metadata, key, null, n);
    if (id !== null) endIds.add(id);
  }
  if (eosId !== null) endIds.add(eosId);
}

/**
 * Phi-3's added tokens (<|user|>, <|end|>, …) were trained with the newline after them folded in (rstrip in its
 * Hugging Face tokenizer config). GGUF has no field for that, so llama.cpp recognises Phi-3 by `general.name`
 * (whatever the tokenizer kind) and lets every special piece except <unk>, <s> and <|endoftext|> swallow the
 * whitespace that follows it. We do the same so that a chat template's "<|user|>\n" encodes as llama.cpp encodes it.
 */
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
