// Tests for src/model/tokenizer.ts and src/model/tokenizer-spm.ts, the SentencePiece ("llama") tokenizer.
// Oracles, strongest first:
//   1. llama.cpp's own test vectors in ../shared/tokenizers (README there): for each vocabulary, the .inp file holds
//      strings each followed by "\n__ggml_vocab_test__\n", the .out file one line of ids per string, made by
//      llama.cpp's test-tokenizer-0 with add_special = false (no BOS) and parse_special = false, i.e. our encode().
//   2. llama.cpp itself through node-llama-cpp on the same vocab-only GGUF, on our own corpus of hard strings and
//      seeded random strings. How its calls line up with ours (read from node-llama-cpp 3.21.1's addon source):
//        model.tokenize(s, false)     -> llama_tokenize(add_special = false, parse_special = false): encode(s)
//        model.tokenize(s, true)      -> llama_tokenize(add_special = false, parse_special = true): encodeWithSpecial(s)
//        model.detokenize(ids, false) -> llama_detokenize(remove_special = false, unparse_special = false): decode(ids)
//      add_special = false means no BOS on either side, and llama.cpp still prefixes the one space that SentencePiece
//      adds at the start of the input (add_space_prefix), exactly as encode() does, so the ids compare directly;
//      on decode both sides drop that space from the first piece again. tokenize("") returns [] on both sides.
//   3. Small hand-made vocabularies for the cases where we follow the sentencepiece library instead of llama.cpp
//      (see the header of tokenizer-spm.ts); those cases cannot arise in the two real vocabularies.
// Not tested here: chat templates, BOS placement by the engine, or other tokenizer kinds (gpt2, bert…), which
// createTokenizer rejects.

import path from 'node:path';
import type { Llama } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, TokenizerError } from '../../src/model/errors';
import { createTokenizer, type Tokenizer } from '../../src/model/tokenizer';
import {
  VOCAB_DIR,
  expectEncodesLikeLlama,
  expectEveryIdLikeLlama,
  expectFastEncode,
  expectNoSpecialIds,
  expectStreamsLikeDecode,
  describeTestVectors,
  loadVocab,
  openLlama,
  randomStrings as randomFrom,
  specialPieceStrings as specialStrings,
  stream,
  type LoadedVocab,
} from '../helpers/vocab-files';
import { rng } from '../helpers/rng';

const VOCABS = ['ggml-vocab-llama-spm.gguf', 'ggml-vocab-phi-3.gguf'] as const;
type VocabName = (typeof VOCABS)[number];

let llama: Llama;
const loaded = new Map<VocabName, LoadedVocab>();

function get(name: VocabName): LoadedVocab {
  const l = loaded.get(name);
  if (!l) throw new Error(`${name} was not loaded`);
  return l;
}

beforeAll(async () => {
  // On the phi-3 file llama.cpp logs "missing tensor 'token_embd.weight'" while loading; the vocab-only load still
  // succeeds (checked by the tests).
  llama = await openLlama();
  for (const name of VOCABS) loaded.set(name, await loadVocab(llama, path.join(VOCAB_DIR, name), createTokenizer));
});

afterAll(async () => {
  for (const l of loaded.values()) await l.model.dispose();
  await llama?.dispose();
});

// ---------------------------------------------------------------------------------------------------------------
// Corpus.

const HARD_STRINGS: string[] = [
  // empty and whitespace
  '', ' ', '  ', '   ', '    ', '\t', '\n', '\r\n', '\r', ' \n ', '\n\n\n', '\t\t hello\t', 'hello ', 'hello  ',
  '  hello  world  ', 'a  b   c    d     e', ' leading', 'trailing ', '\nnewline first', 'last newline\n',
  'tab\tin\tthe\tmiddle', 'mixed \t\n \r\n whitespace', '\u00a0non-breaking\u00a0space', '\u3000ideographic space',
  '\v\f vertical tab and form feed',
  // digits and numbers
  '0', '7', '123', '3.14159', '1,000,000', '2024-01-01T12:34:56Z', '0x1F', '9999999999', '-42', '1e-9', '½ ¾ ⅓',
  // emoji
  '🦙', '👨‍👩‍👧‍👦', '🏳️‍🌈', '😀😃😄', 'ok👍🏽', '✓', '✅ done', '❤️', 'flag: 🇯🇵', 'emoji at end 🎉',
  // scripts
  '日本語のテキスト', '中文测试，标点。', '한국어 텍스트', 'مرحبا بالعالم', 'नमस्ते दुनिया', 'עברית', 'ไทย', 'Ελληνικά',
  'Кириллица и латиница', 'mixed: English, 日本語, العربية, हिन्दी 123 😀', 'Tiếng Việt có dấu', 'Ünïcödé çàfé naïve',
  // special-token strings typed as text
  '<s>', '</s>', '<unk>', '<s>hello</s>', ' <s> ', 'x</s>y', '<<s>>', '<</s>', '<s><s></s>', '<|endoftext|>',
  '<|end|>', '<|user|>', '<|assistant|>', '<|system|>', '[PAD32011]', '<|placeholder1|>',
  '<|user|>\nHi there<|end|>\n<|assistant|>\n', '<|system|>\nBe brief.<|end|>\n<|user|>\n  Q?  <|end|>\n',
  '<s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nhello [/INST] answer </s><s>[INST] again [/INST]',
  'text <s> text', 'a<s>b', '<s>\n', ' </s> ', '<|endoftext|> after', 'before <|end|>   \n\n next',
  // byte-token spellings typed as text
  '<0x41>', '<0x0A>', '<0xE2><0x9C><0x93>', '<0xFF>',
  // characters that need byte fallback, control characters, odd code points
  '\u0000', '\u0001\u0002', '\u007f', '\u{10FFFF}', '\ue000', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𠀀𠀁', '\ufeffBOM', 'zero\u200bwidth',
  'e\u0301 combining', 'ﬁ ligature', 'a\ud800b lone surrogate', '\udc00', '▁', 'a▁b', '▁▁ ▁', '▁Hello',
  // code and markup
  'function f(x) {\n\treturn x * 2;\n}', 'def f():\n    pass\n', '{"key": [1, 2, {"n": null}]}',
  'https://example.com/a?b=c&d=e#f', '# Title\n\n- item\n- **bold** _it_\n', '<div class="x">&amp;</div>',
  "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", '!!!!!!', '...', '—', '«»', '""', "'''",
];

/** Seeded random strings from fragments chosen to collide: spaces, scripts, emoji modifiers, "<s"-like pieces. */
function randomStrings(count: number, seed: number): string[] {
  const parts = [
    'a', 'b', 'e', 'the', ' ', '  ', '\n', '\t', '1', '42', '.', ',', '!', 'é', 'ß', '日', '本', '語', '🦙', '👍🏽',
    '\u200d', 'م', 'र', 'ि', '<', '>', '/', 's', '|', '▁', '\u0000', '𠀀', 'Hello', 'world', "'", '"', '<s>', '</s>',
    '<|end|>', '<|user|>', '\r\n', '✓',
  ];
  return randomFrom(parts, count, seed);
}

/** A 5,000-character string mixing everything above, so merges run over one long fragment. */
function longString(): string {
  const next = rng(42);
  let s = '';
  while (s.length < 5000) s += HARD_STRINGS[Math.floor(next() * HARD_STRINGS.length)] + ' ';
  return s.slice(0, 5000);
}

/** Every special piece of a vocabulary, typed as text alone and inside other text. */
function specialPieceStrings(metadata: Record<string, unknown>): string[] {
  return specialStrings(metadata, (_, type) => type !== 1 && type !== 6);
}

function corpus(metadata: Record<string, unknown>): string[] {
  return [
    ...HARD_STRINGS,
    ...randomStrings(300, 1234),
    longString(),
    'a'.repeat(5000),
    ' '.repeat(1000),
    '\n'.repeat(500),
    ...specialPieceStrings(metadata),
  ];
}

/** Mismatch reports stay readable when a 5,000-character string fails. */
function show(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}… (${s.length} chars)` : s;
}

// ---------------------------------------------------------------------------------------------------------------
// 1. llama.cpp's test vectors.

describeTestVectors(VOCABS, (name) => get(name as VocabName).tok);

// ---------------------------------------------------------------------------------------------------------------
// 2. Against llama.cpp on our corpus.

describe.each(VOCABS)('%s: same ids and text as llama.cpp', (name) => {
  it('encode() equals model.tokenize(s, false) and encodeWithSpecial() equals model.tokenize(s, true)', () => {
    const vocab = get(name);
    expectEncodesLikeLlama(vocab, corpus(vocab.metadata), show);
  });

  it('decode() equals model.detokenize(), and round-trips wherever llama.cpp does', () => {
    const { tok, model, metadata } = get(name);
    const mismatches: unknown[] = [];
    let roundTrips = 0;
    for (const s of corpus(metadata)) {
      for (const ids of [model.tokenize(s, false), model.tokenize(s, true)]) {
        const want = model.detokenize(ids, false);
        const got = tok.decode(ids);
        if (got !== want) mismatches.push({ s: show(s), ids, want: show(want), got: show(got) });
      }
      const back = tok.decode(tok.encode(s));
      if (model.detokenize(model.tokenize(s, false), false) === s) {
        roundTrips++;
        if (back !== s) mismatches.push({ s: show(s), roundTrip: show(back) });
      }
    }
    expect(mismatches).toEqual([]);
    // 354 of 433 (llama-spm) and 610 of 689 (phi-3) strings round-trip in llama.cpp. Every exception contains a typed
    // "▁" (it decodes as a space) or a lone surrogate (it becomes U+FFFD); ours fail on exactly the same ones.
    expect(roundTrips).toBeGreaterThan(300);
  });

  it('every id decodes like llama.cpp, first and not first, and ends generation where llama.cpp says', () => {
    const { tok, model } = get(name);
    expectEveryIdLikeLlama(tok, model, (ids) => tok.decode(ids));
  });

  it('plain text never yields a control or unknown id', () => {
    const { tok, metadata } = get(name);
    // 2 unknown, 3 control; phi-3's "</s>" is stored as user-defined (4) but is the end-of-text piece.
    expectNoSpecialIds(tok, metadata, corpus(metadata), (s) => JSON.stringify(s));
  });

  it('encodes a 100,000-character text quickly', () => {
    expectFastEncode(get(name).tok, longString().repeat(20));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 3. The interface, the factory, and streaming.

describe('Tokenizer interface on llama-spm', () => {
  it('reads special ids and flags from metadata and never adds BOS itself', () => {
    const { tok } = get('ggml-vocab-llama-spm.gguf');
    expect(tok.vocabSize).toBe(32000);
    expect(tok.bosId).toBe(1);
    expect(tok.eosId).toBe(2);
    expect(tok.addBos).toBe(true);
    expect(tok.encode('Hello')).toEqual([15043]);
    expect(tok.tokenText(15043)).toBe('▁Hello');
    expect(tok.encode('<s>Hello')[0]).not.toBe(1);
    expect(tok.encodeWithSpecial('<s>Hello')).toEqual([1, 15043]);
    expect(tok.isEndOfGeneration(2)).toBe(true);
    expect(tok.isEndOfGeneration(1)).toBe(false);
  });

  it('keeps the piece U+FEFF that the GGUF reader hands over as an empty string', () => {
    // @huggingface/gguf decodes strings with a BOM-stripping TextDecoder; see indexPieces in tokenizer-vocab.ts.
    const { tok, metadata } = get('ggml-vocab-llama-spm.gguf');
    const tokens = metadata['tokenizer.ggml.tokens'];
    expect(Array.isArray(tokens) && tokens[30143]).toBe('');
    expect(tok.tokenText(30143)).toBe('\ufeff');
    expect(tok.encode('\ufeff')).toEqual([29871, 30143]);
    expect(tok.decode([15043, 30143])).toBe('Hello\ufeff');
  });

  it('phi-3: eos is <|endoftext|> and <|end|> also ends a turn', () => {
    const { tok } = get('ggml-vocab-phi-3.gguf');
    expect(tok.eosId).toBe(32000);
    expect(tok.isEndOfGeneration(32000)).toBe(true);
    expect(tok.isEndOfGeneration(32007)).toBe(true);
    expect(tok.isEndOfGeneration(32010)).toBe(false);
  });

  it('rejects ids outside the vocabulary', () => {
    const { tok } = get('ggml-vocab-llama-spm.gguf');
    expect(() => tok.decode([-1])).toThrow(InvalidArgumentError);
    expect(() => tok.decode([32000])).toThrow(InvalidArgumentError);
    expect(() => tok.tokenText(1.5)).toThrow(InvalidArgumentError);
  });

  it('createTokenizer rejects tokenizer kinds it does not implement, and broken vocabularies', () => {
    expect(() => createTokenizer({ 'tokenizer.ggml.model': 'gpt2' })).toThrow(TokenizerError);
    expect(() => createTokenizer({})).toThrow(TokenizerError);
    expect(() => createTokenizer({ 'tokenizer.ggml.model': 'llama' })).toThrow(TokenizerError);
    const shortScores = { 'tokenizer.ggml.tokens': ['a', 'b'], 'tokenizer.ggml.scores': [0] };
    expect(() => createTokenizer({ 'tokenizer.ggml.model': 'llama', ...shortScores })).toThrow(TokenizerError);
  });
});

describe.each(VOCABS)('%s: TokenDecoder', (name) => {
  it('holds back a character split over byte-fallback tokens until its last byte arrives', () => {
    const { tok } = get(name);
    // "🦙" (F0 9F A6 99) has no piece of its own in these vocabularies, so it is spelled as four byte tokens.
    const ids = tok.encode('a 🦙 b');
    const bytes = [0xf0, 0x9f, 0xa6, 0x99].map((b) => findByte(tok, b));
    const at = ids.indexOf(bytes[0]);
    expect(at).toBeGreaterThan(0);
    expect(ids.slice(at, at + 4)).toEqual(bytes);
    const { text, chunks } = stream(tok, ids);
    expect(text).toBe('a 🦙 b');
    expect(chunks.slice(at, at + 4)).toEqual(['', '', '', '🦙']);
  });

  it('streams the same text as decode() for every corpus string', () => {
    const { tok, metadata } = get(name);
    expectStreamsLikeDecode(tok, corpus(metadata));
  });

  it('streams the same text as decode() for broken byte sequences (U+FFFD in the same places)', () => {
    const { tok } = get(name);
    const byte = (b: number): number => findByte(tok, b);
    const hello = tok.encode('Hello')[0];
    const cases = [
      [byte(0xe2)],
      [byte(0xe2), byte(0x9c)],
      [byte(0xe2), hello, byte(0x9c), byte(0x93)],
      [byte(0xf0), byte(0x9f), byte(0xa6), byte(0x99), byte(0x99)],
      [byte(0xff), hello],
      [hello, byte(0xc3)],
    ];
    for (const ids of cases) expect(stream(tok, ids).text).toBe(tok.decode(ids));
  });
});

function findByte(tok: Tokenizer, b: number): number {
  const piece = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
  for (let id = 0; id < tok.vocabSize; id++) if (tok.tokenText(id) === piece) return id;
  throw new Error(`no byte token ${piece}`);
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Hand-made vocabularies: merge order, and where we follow sentencepiece rather than llama.cpp.

/** A llama-kind metadata record from [piece, score, type] rows (type 1 normal, 2 unk, 3 control, 5 unused, 6 byte). */
function tinyVocab(rows: [string, number, number][], extra: Record<string, unknown> = {}): Tokenizer {
  return createTokenizer({
    'tokenizer.ggml.model': 'llama',
    'tokenizer.ggml.tokens': rows.map((r) => r[0]),
    'tokenizer.ggml.scores': rows.map((r) => r[1]),
    'tokenizer.ggml.token_type': rows.map((r) => r[2]),
    ...extra,
  });
}

const BASE: [string, number, number][] = [
  ['<unk>', 0, 2],
  ['<s>', 0, 3],
  ['</s>', 0, 3],
  ['▁', -1, 1],
  ['a', -1, 1],
  ['b', -1, 1],
];

describe('SPM merging on hand-made vocabularies', () => {
  it('merges the best-scoring pair first and breaks score ties leftmost first', () => {
    const tok = tinyVocab([...BASE, ['ab', -2, 1], ['ba', -2, 1]], { 'tokenizer.ggml.add_space_prefix': false });
    const id = (p: string): number => [...BASE.map((r) => r[0]), 'ab', 'ba'].indexOf(p);
    expect(tok.encode('aba')).toEqual([id('ab'), id('a')]);
    expect(tok.encode('bab')).toEqual([id('ba'), id('b')]);
    const better = tinyVocab([...BASE, ['ab', -3, 1], ['ba', -2, 1]], { 'tokenizer.ggml.add_space_prefix': false });
    expect(better.encode('aba')).toEqual([id('a'), id('ba')]);
  });

  it('adds the prefix space only when add_space_prefix is not false', () => {
    const rows: [string, number, number][] = [...BASE, ['▁a', -2, 1]];
    expect(tinyVocab(rows).encode('a')).toEqual([6]);
    expect(tinyVocab(rows, { 'tokenizer.ggml.add_space_prefix': false }).encode('a')).toEqual([4]);
    expect(tinyVocab(rows).decode([6])).toBe('a');
    expect(tinyVocab(rows, { 'tokenizer.ggml.add_space_prefix': false }).decode([6])).toBe(' a');
  });

  it('never merges into a control piece (llama.cpp would), but parses it in encodeWithSpecial', () => {
    const tok = tinyVocab([...BASE, ['ab', 10, 3]], { 'tokenizer.ggml.add_space_prefix': false });
    expect(tok.encode('ab')).toEqual([4, 5]);
    expect(tok.encodeWithSpecial('ab')).toEqual([6]);
  });

  it('splits a merge that lands on an unused piece back into its halves (sentencepiece; llama.cpp keeps it)', () => {
    const tok = tinyVocab([...BASE, ['ab', -0.5, 5], ['▁ab', -9, 5]]);
    // "▁ab": a+b merges into unused "ab", then ▁+ab into unused "▁ab"; both are undone.
    expect(tok.encode('ab')).toEqual([3, 4, 5]);
    expect(tok.decode(tok.encode('ab'))).toBe('ab');
  });

  it('spells unknown characters as bytes, or as one <unk> per character without byte tokens', () => {
    const bytes: [string, number, number][] = [];
    for (let b = 0; b < 256; b++) bytes.push([`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0, 6]);
    const withBytes = tinyVocab([...BASE, ...bytes], { 'tokenizer.ggml.add_space_prefix': false });
    const e6 = BASE.length + 0xe6;
    expect(withBytes.encode('日')).toEqual([e6, BASE.length + 0x97, BASE.length + 0xa5]);
    expect(withBytes.decode(withBytes.encode('a日b'))).toBe('a日b');
    const noBytes = tinyVocab(BASE, { 'tokenizer.ggml.add_space_prefix': false });
    expect(noBytes.encode('a日本b')).toEqual([4, 0, 0, 5]);
  });
});
