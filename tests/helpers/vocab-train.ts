// Small byte-level BPE vocabularies trained by the tests themselves (tokenizer-bpe and chat-template tests), for
// the tokenizers ../shared has no real vocabulary of: GPT-2's byte alphabet written independently of
// src/model/tokenizer-bpe.ts (so that the two check each other), greedy BPE training on raw text, and the metadata
// of a vocab-only "gpt2" GGUF that llama.cpp loads (write it with ./gguf-writer).

import type { GgufMetadata } from './gguf-writer';

/** GPT-2's byte alphabet: printable bytes stand for themselves, the others are shifted above U+0100. */
export const BYTE_CHARS: string[] = (() => {
  const chars: string[] = [];
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b > 0x20 && b < 0x7f) || (b > 0xa0 && b !== 0xad);
    chars.push(String.fromCharCode(printable ? b : 256 + shifted++));
  }
  return chars;
})();

/**
 * BPE trained on raw text: start from the 256 byte characters, repeatedly merge the most frequent adjacent pair
 * (ties: the smaller pair text) across the whole text, with no word boundaries at all, up to `maxMerges` merges.
 * A pair whose joined text `reserved` names is never merged. Returns the byte characters plus each new piece, and
 * the merge rules.
 */
export function trainBpe(
  text: string,
  maxMerges: number,
  reserved: (piece: string) => boolean = () => false,
): { tokens: string[]; merges: string[] } {
  let seq = Array.from(new TextEncoder().encode(text), (b) => BYTE_CHARS[b]);
  const tokens = [...BYTE_CHARS];
  const known = new Set(tokens);
  const merges: string[] = [];
  while (merges.length < maxMerges) {
    const counts = new Map<string, number>();
    for (let i = 0; i + 1 < seq.length; i++) {
      const pair = `${seq[i]} ${seq[i + 1]}`;
      counts.set(pair, (counts.get(pair) ?? 0) + 1);
    }
    let best = '';
    let bestCount = 1;
    for (const [pair, c] of counts) {
      if (reserved(pair.replace(' ', ''))) continue;
      if (c > bestCount || (c === bestCount && best !== '' && pair < best)) {
        best = pair;
        bestCount = c;
      }
    }
    if (best === '') break;
    const [a, b] = best.split(' ');
    merges.push(best);
    if (!known.has(a + b)) {
      known.add(a + b);
      tokens.push(a + b);
    }
    const next: string[] = [];
    for (let i = 0; i < seq.length; i++) {
      if (i + 1 < seq.length && seq[i] === a && seq[i + 1] === b) {
        next.push(a + b);
        i++;
      } else {
        next.push(seq[i]);
      }
    }
    seq = next;
  }
  return { tokens, merges };
}

/**
 * A vocab-only GGUF llama.cpp loads: it needs an architecture and that architecture's required hyper-parameters
 * (block count, context and embedding length, feed-forward length, head count, norm epsilon for "gpt2") besides the
 * tokenizer keys; merges are mandatory for "gpt2" vocabularies, token types optional (we give them). BOS and EOS are
 * given by piece text; add_bos_token is written only when `addBos` is given.
 */
export function bpeVocabMetadata(v: {
  name: string;
  pre: string;
  tokens: string[];
  types: number[];
  merges: string[];
  bos: string;
  eos: string;
  addBos?: boolean;
}): GgufMetadata {
  const id = (text: string): number => v.tokens.indexOf(text);
  return [
    ['general.architecture', { type: 'string', value: 'gpt2' }],
    ['general.name', { type: 'string', value: v.name }],
    ['gpt2.block_count', { type: 'u32', value: 1 }],
    ['gpt2.context_length', { type: 'u32', value: 64 }],
    ['gpt2.embedding_length', { type: 'u32', value: 8 }],
    ['gpt2.feed_forward_length', { type: 'u32', value: 16 }],
    ['gpt2.attention.head_count', { type: 'u32', value: 1 }],
    ['gpt2.attention.layer_norm_epsilon', { type: 'f32', value: 1e-5 }],
    ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
    ['tokenizer.ggml.pre', { type: 'string', value: v.pre }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: v.tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: v.types }],
    ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: v.merges }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: id(v.bos) }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: id(v.eos) }],
    ...(v.addBos === undefined ? [] : [['tokenizer.ggml.add_bos_token', { type: 'bool', value: v.addBos }] as const]),
  ];
}
