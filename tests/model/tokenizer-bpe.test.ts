// Tests for src/model/tokenizer-bpe.ts and src/model/pretokenize.ts, the byte-level BPE ("gpt2") tokenizer.
// Oracles, strongest first:
//   1. llama.cpp's own test vectors in ../shared/tokenizers for the seven byte-level BPE vocabularies there (gpt-2,
//      deepseek-coder, deepseek-llm, falcon, mpt, refact, starcoder): the .inp file holds strings each followed by
//      "\n__ggml_vocab_test__\n", the .out file one line of ids per string, without BOS and with special tokens
//      not parsed, i.e. our encode().
//   2. llama.cpp itself through node-llama-cpp on the same vocab-only GGUF files, on our corpus of hard strings and
//      seeded random strings:
//        model.tokenize(s, false)     -> llama_tokenize(add_special = false, parse_special = false): encode(s)
//        model.tokenize(s, true)      -> llama_tokenize(add_special = false, parse_special = true):
//                                        encodeWithSpecial(s)
//        model.detokenize(ids, false) -> llama_detokenize(remove_special = false, unparse_special = false): decode(ids)
//      llama.cpp's detokenizer also "cleans up" spaces for some pre-tokenizers (" ," -> ","), which our decode() does
//      on purpose not do; `cleanSpaces` below replays that pass on our text before comparing.
//   3. Vocabularies we build here (../shared has none for Llama 3, Qwen2 or the other rule sets): a tiny BPE trained
//      in this file on raw text, without any pre-tokenization, so its merges cross every boundary a rule set may
//      draw; a rule set that cuts differently from llama.cpp's then yields different ids. One such GGUF per
//      supported `tokenizer.ggml.pre` name, compared with llama.cpp (which applies its rules by that name).
// Not tested here: SentencePiece (tokenizer-spm.test.ts), chat templates, BOS placement by the engine.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Llama, LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, TokenizerError } from '../../src/model/errors';
import { SUPPORTED_PRE_TOKENIZERS, preTokenizerFor } from '../../src/model/pretokenize';
import { createTokenizer, type Tokenizer } from '../../src/model/tokenizer';
import { BpeTokenizer } from '../../src/model/tokenizer-bpe';
import { writeGguf, type GgufMetadata } from '../helpers/gguf-writer';
import {
  VOCAB_DIR,
  asTokens,
  encodeMismatches,
  expectEncodesLikeLlama,
  expectEveryIdLikeLlama,
  expectFastEncode,
  expectNoSpecialIds,
  expectStreamsLikeDecode,
  describeTestVectors,
  loadVocab,
  openLlama,
  randomStrings as randomFrom,
  readMetadata,
  specialPieceStrings as specialStrings,
  stream,
  type LoadedVocab,
} from '../helpers/vocab-files';
import { rng } from '../helpers/rng';
import { BYTE_CHARS, bpeVocabMetadata, trainBpe } from '../helpers/vocab-train';

const VOCABS = [
  'ggml-vocab-gpt-2.gguf',
  'ggml-vocab-deepseek-coder.gguf',
  'ggml-vocab-deepseek-llm.gguf',
  'ggml-vocab-falcon.gguf',
  'ggml-vocab-mpt.gguf',
  'ggml-vocab-refact.gguf',
  'ggml-vocab-starcoder.gguf',
] as const;
type VocabName = (typeof VOCABS)[number];

let llama: Llama;
const loaded = new Map<VocabName, LoadedVocab<BpeTokenizer>>();
let synthDir = '';
/** Path of the trained vocabulary's GGUF for each pre-tokenizer name. */
const synthFiles = new Map<string, string>();

function get(name: VocabName): LoadedVocab<BpeTokenizer> {
  const l = loaded.get(name);
  if (!l) throw new Error(`${name} was not loaded`);
  return l;
}

function bpe(metadata: Record<string, unknown>): BpeTokenizer {
  const tok = createTokenizer(metadata);
  if (!(tok instanceof BpeTokenizer)) throw new Error('createTokenizer did not build a BpeTokenizer');
  return tok;
}

beforeAll(async () => {
  llama = await openLlama();
  for (const name of VOCABS) loaded.set(name, await loadVocab(llama, path.join(VOCAB_DIR, name), bpe));
  synthDir = mkdtempSync(path.join(tmpdir(), 'flock-bpe-'));
  const vocab = trainedVocab();
  for (const pre of SUPPORTED_PRE_TOKENIZERS) {
    const file = path.join(synthDir, `${pre}.gguf`);
    writeFileSync(file, writeGguf({ metadata: synthMetadata(vocab, pre), tensors: [] }));
    synthFiles.set(pre, file);
  }
});

afterAll(async () => {
  for (const l of loaded.values()) await l.model.dispose();
  await llama?.dispose();
  if (synthDir) rmSync(synthDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------
// Corpus.

const HARD_STRINGS: string[] = [
  // whitespace
  '', ' ', '  ', '   ', '    ', '\t', '\t\t', '\n', '\n\n', '\n\n\n', '\r\n', '\r\n\r\n', '\r', ' \n', '\n ', ' \n ',
  '  \n  ', 'a \n b', 'hello ', 'hello  ', ' hello', '  hello', '  hello  world  ', 'a  b   c    d     e',
  'tab\tin\tthe\tmiddle', '\t\t hello\t', 'mixed \t\n \r\n whitespace', '   \n\n  x', 'x = y\n\n\n\nz',
  '\u00a0non-breaking\u00a0space', '\u3000ideographic\u3000 space', '\u2028line\u2029para', '\u0085next line',
  '\v\f vertical tab and form feed', 'zero\u200bwidth', '\ufeffBOM', 'x\ufeff y',
  // digits (Llama 3 cuts digit runs into threes, Qwen2 into ones, GPT-2 keeps them)
  '0', '7', '12', '123', '1234', '12345', '1234567', '12345678901234567890', ' 1234567', 'a1234567b', '3.14159',
  '1,000,000', '2024-01-01T12:34:56Z', '0x1F', '-42', '1e-9', '½ ¾ ⅓', '٣٤٥ Arabic-Indic', '१२३ Devanagari digits',
  '①②③', 'Ⅻ roman', '１２３ fullwidth',
  // contractions, both cases
  "it's", "IT'S", "don't", "DON'T", "you're", "YOU'RE", "we've", "I'm", "I'M", "they'll", "THEY'LL", "he'd", "HE'D",
  "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D", "rock 'n' roll", "''quoted''", "'", "''", "'x", "l'homme",
  // emoji, including ZWJ sequences, modifiers, flags
  '🦙', '👍', '👍🏽', '👨‍👩‍👧‍👦', '🏳️‍🌈', '🧑🏽‍💻', '😀😃😄', '❤️', '🇯🇵🇫🇷', 'emoji at end 🎉', 'ok👍🏽ok',
  // scripts
  '日本語のテキスト', 'カタカナ ひらがな', '中文测试，标点。', '繁體中文', '한국어 텍스트', 'مرحبا بالعالم', 'שלום עולם',
  'नमस्ते दुनिया', 'हिन्दी में लिखा', 'ภาษาไทย สวัสดี', 'Ελληνικά', 'Кириллица и латиница', 'Tiếng Việt có dấu',
  'ქართული', 'አማርኛ', 'ᏣᎳᎩ', 'ǅemal ǈ', 'ß ẞ ſ', 'K Kelvin', 'Ａｂｃ！', '“quoted” ‘single’', '…。，、',
  'mixed: English, 日本語, العربية, हिन्दी 123 😀',
  // accents, composed (NFC) and decomposed (NFD)
  'café', 'cafe\u0301', 'Ünïcödé', 'U\u0308ni\u0308co\u0308de\u0301', 'ñ n\u0303', 'Å A\u030a',
  'a\u0300\u0301\u0302\u0303', 'e\u0301 combining',
  // special-token strings typed as text
  '<|endoftext|>', '<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>', '<|im_start|>user\nhi<|im_end|>\n',
  '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>', '<s>', '</s>', '<unk>', '<|padding|>',
  '<fim_prefix>a<fim_suffix>b<fim_middle>', '<fim_pad>', '<｜begin▁of▁sentence｜>hi', '<｜fim▁hole｜>', '<|User|>',
  '<|EOT|>', '>>TITLE<<', '>>>TITLE<<<', '<tool_call>{"a":1}</tool_call>', '<|endoftext|><|endoftext|>',
  'x<|endoftext|>y', '<|endoftext', 'endoftext|>', '<<|endoftext|>>', 'õ÷Á', '[PAD32022]',
  // control characters, odd code points, lone surrogates
  '\u0000', '\u0001\u0002', '\u007f', '\u{10FFFF}', '\ue000', '\u0378 unassigned', 'a\ud800b lone surrogate', '\udc00',
  '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '𠀀𠀁', 'Ġ Ċ ĠĠ',
  // code and markup
  'function f(x) {\n\treturn x * 2;\n}', 'def f():\n    pass\n', '    indented\n        more',
  'if (a && b || !c) { x += 1; }', '{"key": [1, 2, {"n": null}]}', 'https://example.com/a?b=c&d=e#f',
  '# Title\n\n- item\n- **bold** _it_\n', '<div class="x">&amp;</div>', 'a/b//c///d\n/\n', '$100 + 5% <= ^~|`',
  '...', '!!!', '?!', '—–-', '«»', '()[]{}', 'word, word. (x) [y] a ,b a . b', " ' ", "a ' b 's 'm 're 'll",
  // long words, mixed case
  'supercalifragilisticexpialidocious', 'Pneumonoultramicroscopicsilicovolcanoconiosis',
  'HelloWorld camelCase snake_case SCREAMING_CASE', 'ABCdef abcDEF ÉCOLE école',
  "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "I've 3 cats & 12 dogs.\n",
];

/**
 * Text where rule sets disagree: case changes inside words, digit runs, whitespace before digits and newlines,
 * apostrophes, backquotes next to punctuation, scripts DeepSeek singles out. The trained vocabulary sees it many
 * times, so its merges cross exactly these boundaries.
 */
const BOUNDARIES: string[] = [
  'HelloWorld', 'camelCaseWord', 'ABCdef', 'ÉCOLEécole', "IT'S", "it's", "we'LL", '1234567890', ' 1234', '  1',
  '   12', '     x', '      x', '\t\tx', 'a\n\n b', 'x  \ny', 'a \nb', 'x.\n\ny', '`code`,', '` ,', '`,`,',
  'x `y` `z`', 'a   b', 'c   d', '(x)', 'a—b', 'Hi!!', '日本語テキスト', 'カタカナひらがな', '한국어텍스트', 'ai\u0301', 'cafe\u0301s',
  'a/b/', '$1,000', '٣٤٥', 'x\r\ny', '…。，、', 'Ａｂｃ', 'ßẞ', ' \u3000x',
];

/** Seeded random strings from fragments chosen to collide: spaces, digits, apostrophes, scripts, emoji, specials. */
function randomStrings(count: number, seed: number): string[] {
  const parts = [
    'a', 'b', 'e', 'the', 'The', ' ', '  ', '\n', '\n\n', '\t', '\r\n', '1', '42', '999', '.', ',', '!', "'", "'s",
    "'LL", 'é', 'e\u0301', 'ß', '日', '本', '語', '한', '🦙', '👍🏽', '\u200d', 'م', 'र', 'ि', 'ไ', '<', '>', '/', '|',
    '\u00a0', '\u3000', '\u0000', '𠀀', 'Hello', 'WORLD', '"', '<|endoftext|>', '<|im_end|>', '<fim_pad>', 'õ', '✓',
  ];
  return randomFrom(parts, count, seed);
}

/** A 5,000-character string mixing the hard strings, so merges and rules run over one long fragment. */
function longString(seed = 42): string {
  const next = rng(seed);
  let s = '';
  while (s.length < 5000) s += HARD_STRINGS[Math.floor(next() * HARD_STRINGS.length)] + ' ';
  // Cut on a code point boundary, so the cut itself makes no lone surrogate.
  return Array.from(s).slice(0, 5000).join('');
}

const LONG_STRINGS = [
  longString(),
  'a'.repeat(5000),
  ' '.repeat(1000),
  '\n'.repeat(500),
  '7'.repeat(1000),
  'ab '.repeat(1700),
  '🦙'.repeat(500),
];

/** Special pieces of a vocabulary typed as text, alone and inside other text (a few of each [PADnnn] family). */
function specialPieceStrings(metadata: Record<string, unknown>): string[] {
  let pads = 0;
  return specialStrings(metadata, (t, type) => type !== 1 && !(/^\[PAD\d+\]$/.test(t) && pads++ >= 3));
}

function corpus(metadata: Record<string, unknown>): string[] {
  return [...HARD_STRINGS, ...randomStrings(250, 1234), ...LONG_STRINGS, ...specialPieceStrings(metadata)];
}

/** Mismatch reports stay readable when a 5,000-character string fails. */
function show(s: string): string {
  return s.length > 80 ? `${JSON.stringify(s.slice(0, 80))}… (${s.length} chars)` : JSON.stringify(s);
}

/** What a string becomes on the way to llama.cpp: lone surrogates turn into U+FFFD. */
function wellFormed(s: string): string {
  return s.replace(/\p{Cs}/gu, '\uFFFD');
}

/**
 * llama.cpp's clean-up pass over detokenized text (clean_spaces): drop the space before "?!.,", turn " ' " into
 * "'", and drop the space before "'s", "'m", "'re", "'ve". Replayed here, written from its description, so that our
 * exact decode() can be compared with llama.cpp's cleaned one. It only looks at ASCII, so working on UTF-16 code
 * units is the same as working on bytes.
 */
function cleanSpaces(text: string): string {
  if (text.length === 0) return text;
  let src = text.split('');
  let out = [src[0]];
  for (let i = 1; i < src.length; i++) {
    if (src[i - 1] === ' ' && '?!.,'.includes(src[i])) out.pop();
    out.push(src[i]);
  }
  src = out;
  out = [src[0]];
  for (let i = 1; i < src.length; i++) {
    const x = src[i];
    if (x === "'" && i + 1 < src.length && src[i - 1] === ' ' && src[i + 1] === ' ') {
      out.pop();
      out.push(x);
      src[i + 1] = '\0'; // llama.cpp overwrites the skipped space, so it no longer counts as the next one's "before"
      i++;
      continue;
    }
    out.push(x);
  }
  src = out;
  out = [src[0]];
  for (let i = 1; i < src.length; i++) {
    const x = src[i];
    if (src[i - 1] === ' ' && x === "'" && i + 1 < src.length) {
      const x1 = src[i + 1];
      const x2 = i + 2 < src.length ? src[i + 2] : '';
      if (x1 === 's' || x1 === 'm' || ((x1 === 'r' || x1 === 'v') && x2 === 'e')) out.pop();
    }
    out.push(x);
  }
  return out.join('');
}

/** Bytes whose alphabet character is not a piece of the vocabulary (encoding has to drop them). */
function missingBytes(metadata: Record<string, unknown>): Set<number> {
  const tokens = metadata['tokenizer.ggml.tokens'];
  if (!Array.isArray(tokens)) throw new Error('tokens is not an array');
  const pieces = new Set(tokens);
  const out = new Set<number>();
  BYTE_CHARS.forEach((ch, b) => {
    if (!pieces.has(ch)) out.add(b);
  });
  return out;
}

/** Our decode() as llama.cpp's detokenize() would print it for this vocabulary. */
function asLlamaPrints(tok: BpeTokenizer, ids: readonly number[]): string {
  const text = tok.decode(ids);
  return tok.preTokenizer.spec.cleanSpaces ? cleanSpaces(text) : text;
}

// ---------------------------------------------------------------------------------------------------------------
// A vocabulary trained here (oracle 3).

interface TrainedVocab {
  tokens: string[];
  types: number[];
  merges: string[];
}

/** Specials of both families: Llama 3's and Qwen2's control pieces, and two user-defined ones. */
const SYNTH_SPECIALS: [string, number][] = [
  ['<|begin_of_text|>', 3],
  ['<|end_of_text|>', 3],
  ['<|start_header_id|>', 3],
  ['<|end_header_id|>', 3],
  ['<|eot_id|>', 3],
  ['<|endoftext|>', 3],
  ['<|im_start|>', 3],
  ['<|im_end|>', 3],
  ['<tool_call>', 4],
  ['</tool_call>', 4],
];

/**
 * BPE trained on raw text with no word boundaries at all (trainBpe, tests/helpers/vocab-train.ts). 400 merges keep
 * the GGUF near 20 KB (tests/helpers/gguf-writer.ts must not grow its buffer during a number write; see the report).
 */
function trainedVocab(): TrainedVocab {
  const emphasis = Array.from({ length: 10 }, () => BOUNDARIES).flat();
  const training = [...HARD_STRINGS, ...randomStrings(120, 99), ...emphasis].join('\n');
  // No merge builds a piece that looks like a special one ("<…>" or "[…]"): the specials below would repeat it,
  // which llama.cpp refuses, and llama.cpp promotes others ("<fim_pad>", "</s>", …) to control pieces by their text
  // and then emits them from plain text, which we refuse on purpose (see the header of tokenizer-bpe.ts).
  const reserved = (text: string): boolean => /^<.*>$|^\[.*\]$/s.test(text);
  const { tokens, merges } = trainBpe(training, 400, reserved);
  const types = tokens.map(() => 1);
  for (const [text, type] of SYNTH_SPECIALS) {
    tokens.push(text);
    types.push(type);
  }
  return { tokens, types, merges };
}

/** The trained vocabulary as a vocab-only GGUF whose rules are `pre`, BOS and EOS Llama 3's. */
function synthMetadata(v: TrainedVocab, pre: string): GgufMetadata {
  return bpeVocabMetadata({
    name: 'flock-synthetic-bpe', pre, ...v, bos: '<|begin_of_text|>', eos: '<|end_of_text|>',
  });
}

// ---------------------------------------------------------------------------------------------------------------
// 1. llama.cpp's test vectors.

describeTestVectors(VOCABS, (name) => get(name as VocabName).tok);

// ---------------------------------------------------------------------------------------------------------------
// 2. Against llama.cpp on the shared vocabularies.

describe.each(VOCABS)('%s: same ids and text as llama.cpp', (name) => {
  it('encode() equals model.tokenize(s, false) and encodeWithSpecial() equals model.tokenize(s, true)', () => {
    const vocab = get(name);
    expectEncodesLikeLlama(vocab, corpus(vocab.metadata), show);
  });

  it('decode() is llama.cpp detokenize() before its space clean-up, and round-trips every string', () => {
    const { tok, model, metadata } = get(name);
    const missing = missingBytes(metadata);
    const mismatches: unknown[] = [];
    let skipped = 0;
    for (const s of corpus(metadata)) {
      for (const ids of [model.tokenize(s, false), model.tokenize(s, true)]) {
        const want = model.detokenize(ids, false);
        const got = asLlamaPrints(tok, ids);
        if (got !== want) mismatches.push({ s: show(s), ids, want: show(want), got: show(got) });
      }
      // Byte-level BPE loses nothing where the vocabulary has a piece for every byte of the text (lone surrogates
      // come back as U+FFFD). Falcon lacks a few control bytes (\v among them): those are dropped, as in llama.cpp.
      const back = tok.decode(tok.encode(s));
      const bytes = new TextEncoder().encode(s);
      if (bytes.some((b) => missing.has(b))) skipped++;
      else if (back !== wellFormed(s)) mismatches.push({ s: show(s), roundTrip: show(back) });
    }
    expect(mismatches).toEqual([]);
    expect(skipped).toBeLessThan(20);
  });

  it('every id decodes like llama.cpp and ends generation where llama.cpp says', () => {
    const { tok, model } = get(name);
    expectEveryIdLikeLlama(tok, model, (ids) => asLlamaPrints(tok, ids));
  });

  it('plain text never yields a control id', () => {
    const { tok, metadata } = get(name);
    expectNoSpecialIds(tok, metadata, corpus(metadata), show);
  });

  it('encodes a 100,000-character text quickly', () => {
    expectFastEncode(get(name).tok, Array.from({ length: 20 }, (_, i) => longString(i)).join(''));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 3. Every supported pre-tokenizer against llama.cpp, on the trained vocabulary.

/** The first name of each rule set (its aliases share the same rules and flags by construction). */
const RULE_SETS = SUPPORTED_PRE_TOKENIZERS.filter((n) => preTokenizerFor(n).spec.names[0] === n);
/** Compared on the whole corpus: every rule set, and by their own names Llama 3's, Qwen2.5's and SmolLM2's. */
const FULL_CORPUS_NAMES = [...new Set([...RULE_SETS, 'llama-bpe', 'qwen2', 'smollm'])];

async function withSynth<T>(pre: string, f: (tok: BpeTokenizer, model: LlamaModel) => T): Promise<T> {
  const file = synthFiles.get(pre);
  if (!file) throw new Error(`no synthetic vocabulary for ${pre}`);
  const tok = bpe(await readMetadata(file));
  const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
  try {
    return f(tok, model);
  } finally {
    await model.dispose();
  }
}

/** encode() and encodeWithSpecial() against llama.cpp on `texts`. */
function compareOn(tok: BpeTokenizer, model: LlamaModel, texts: readonly string[]): unknown[] {
  return encodeMismatches(tok, model, texts, show);
}

describe('pre-tokenizers on a trained vocabulary', () => {
  const synthCorpus = [...HARD_STRINGS, ...BOUNDARIES, ...randomStrings(150, 777), ...LONG_STRINGS];

  it('the vocabulary tells every two different rule sets apart (llama.cpp gives them different ids)', async () => {
    // Otherwise a rule set could pass the comparison below while implementing another set's rules.
    const probe = [...BOUNDARIES, ...HARD_STRINGS];
    const seen = new Map<string, string>();
    for (const pre of RULE_SETS) {
      const model = await llama.loadModel({ modelPath: synthFiles.get(pre)!, vocabOnly: true });
      seen.set(pre, JSON.stringify(probe.map((s) => model.tokenize(s, false))));
      await model.dispose();
    }
    // Rule sets whose rules are written differently but cut every text alike: bailingmoe's `\s*[\r\n]` takes the
    // same newline runs as `\s*[\r\n]+`, since `\s*` already swallows the newlines before the last one.
    const rules = (pre: string): string =>
      JSON.stringify(preTokenizerFor(pre === 'bailingmoe' ? 'qwen2' : pre).spec.steps);
    const alike: string[] = [];
    for (const a of RULE_SETS) {
      for (const b of RULE_SETS) {
        if (a < b && rules(a) !== rules(b) && seen.get(a) === seen.get(b)) alike.push(`${a}/${b}`);
      }
    }
    expect(alike).toEqual([]);
  });

  it.each(FULL_CORPUS_NAMES)('%s: the whole corpus encodes as in llama.cpp', async (pre) => {
    const mismatches = await withSynth(pre, (tok, model) => compareOn(tok, model, synthCorpus));
    expect(mismatches).toEqual([]);
  });

  it('every name: same ids on a sample, same add_bos default, same space clean-up on decode as llama.cpp', async () => {
    const sample = [...HARD_STRINGS.filter((_, i) => i % 4 === 0), LONG_STRINGS[0]];
    const mismatches: unknown[] = [];
    for (const pre of SUPPORTED_PRE_TOKENIZERS) {
      await withSynth(pre, (tok, model) => {
        for (const m of compareOn(tok, model, sample)) mismatches.push({ pre, m });
        if (tok.addBos !== model.tokens.shouldPrependBosToken) mismatches.push({ pre, addBos: tok.addBos });
        const ids = model.tokenize("a ,b . c 's", false);
        if (asLlamaPrints(tok, ids) !== model.detokenize(ids, false)) {
          mismatches.push({ pre, cleanSpaces: tok.preTokenizer.spec.cleanSpaces });
        }
        if (tok.bosId !== model.tokens.bos) mismatches.push({ pre, bos: tok.bosId, want: model.tokens.bos });
        for (let id = 0; id < tok.vocabSize; id++) {
          const [token] = asTokens([id]);
          if (tok.isEndOfGeneration(id) !== model.isEogToken(token)) {
            mismatches.push({ pre, id, eog: model.isEogToken(token) });
          }
        }
      });
    }
    expect(mismatches).toEqual([]);
  });

  it('splits digits, contractions and whitespace the way each family does', () => {
    const split = (pre: string, s: string): string[] => preTokenizerFor(pre).split(s);
    expect(split('llama-bpe', '1234567')).toEqual(['123', '456', '7']);
    expect(split('qwen2', '1234567')).toEqual(['1', '2', '3', '4', '5', '6', '7']);
    expect(split('gpt-2', '1234567')).toEqual(['1234567']);
    expect(split('llama-bpe', "IT'S")).toEqual(['IT', "'S"]);
    expect(split('gpt-2', "IT'S")).toEqual(['IT', "'", 'S']);
    expect(split('gpt-2', "it's")).toEqual(['it', "'s"]);
    expect(split('llama-bpe', 'a  b\n\n\nc')).toEqual(['a', ' ', ' b', '\n\n\n', 'c']);
    expect(split('gpt-2', 'a  b\n\n\nc')).toEqual(['a', ' ', ' b', '\n\n', '\n', 'c']);
    expect(split('llama-bpe', '  hello.\n\nworld')).toEqual([' ', ' hello', '.\n\n', 'world']);
    expect(split('smollm', 'x 2024')).toEqual(['x', ' ', '2', '0', '2', '4']);
    // Non-ASCII whitespace counts as whitespace; U+FEFF does not (unlike JavaScript's \s).
    expect(split('gpt-2', 'a\u3000\u3000b')).toEqual(['a', '\u3000', '\u3000', 'b']);
    expect(split('gpt-2', 'a\ufeffb')).toEqual(['a', '\ufeff', 'b']);
    for (const s of HARD_STRINGS) expect(split('llama-bpe', s).join('')).toBe(s);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// 4. The interface, the factory, and streaming.

describe('Tokenizer interface on gpt-2', () => {
  it('reads special ids and flags from metadata and never adds BOS itself', () => {
    const { tok } = get('ggml-vocab-gpt-2.gguf');
    expect(tok.vocabSize).toBe(50257);
    expect(tok.bosId).toBe(50256);
    expect(tok.eosId).toBe(50256);
    expect(tok.addBos).toBe(false);
    expect(tok.encode('Hello world')).toEqual([15496, 995]);
    expect(tok.tokenText(995)).toBe('Ġworld');
    expect(tok.decode([15496, 995])).toBe('Hello world');
    expect(tok.encode('<|endoftext|>')).not.toContain(50256);
    expect(tok.encodeWithSpecial('<|endoftext|>Hi')).toEqual([50256, 17250]);
    expect(tok.isEndOfGeneration(50256)).toBe(true);
    expect(tok.isEndOfGeneration(995)).toBe(false);
  });

  it('deepseek-llm: BOS is prepended by the caller when add_bos_token says so', () => {
    const { tok } = get('ggml-vocab-deepseek-llm.gguf');
    expect(tok.addBos).toBe(true);
    expect(tok.bosId).toBe(100000);
    expect(tok.encode('Hi')[0]).not.toBe(100000);
  });

  it('every byte of the alphabet decodes to itself', () => {
    const { tok, metadata } = get('ggml-vocab-gpt-2.gguf');
    const tokens = metadata['tokenizer.ggml.tokens'];
    if (!Array.isArray(tokens)) throw new Error('tokens is not an array');
    expect(new Set(tokens.slice(0, 256))).toEqual(new Set(BYTE_CHARS));
    BYTE_CHARS.forEach((ch, b) => expect([...tok.tokenBytes(tokens.indexOf(ch), false)]).toEqual([b]));
  });

  it('rejects ids outside the vocabulary', () => {
    const { tok } = get('ggml-vocab-gpt-2.gguf');
    expect(() => tok.decode([-1])).toThrow(InvalidArgumentError);
    expect(() => tok.decode([50257])).toThrow(InvalidArgumentError);
    expect(() => tok.tokenText(1.5)).toThrow(InvalidArgumentError);
  });

  it('createTokenizer refuses unknown pre-tokenizers by name, and broken vocabularies', () => {
    const base = {
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.tokens': ['a', 'b', 'ab'],
      'tokenizer.ggml.merges': ['a b'],
    };
    expect(createTokenizer(base).encode('abba')).toEqual([2, 1, 0]); // no pre -> llama.cpp's "default" rules
    expect(() => createTokenizer({ ...base, 'tokenizer.ggml.pre': 'no-such-rules' })).toThrow(/no-such-rules/);
    expect(() => createTokenizer({ ...base, 'tokenizer.ggml.pre': 'no-such-rules' })).toThrow(TokenizerError);
    expect(() => createTokenizer({ ...base, 'tokenizer.ggml.merges': undefined })).toThrow(TokenizerError);
    expect(() => createTokenizer({ ...base, 'tokenizer.ggml.tokens': [] })).toThrow(TokenizerError);
    expect(() => createTokenizer({ ...base, 'tokenizer.ggml.token_type': [1] })).toThrow(TokenizerError);
  });
});

describe('hand-made vocabularies', () => {
  /** A "gpt2" metadata record over the printable ASCII alphabet plus `extra` pieces (type 1 unless given). */
  function tiny(extra: [string, number][], merges: string[], more: Record<string, unknown> = {}): Tokenizer {
    const ascii = Array.from({ length: 94 }, (_, i) => String.fromCharCode(0x21 + i));
    return createTokenizer({
      'tokenizer.ggml.model': 'gpt2',
      'tokenizer.ggml.pre': 'gpt-2',
      'tokenizer.ggml.tokens': [...ascii, ...extra.map((e) => e[0])],
      'tokenizer.ggml.token_type': [...ascii.map(() => 1), ...extra.map((e) => e[1])],
      'tokenizer.ggml.merges': merges,
      ...more,
    });
  }
  const at = (ch: string): number => ch.charCodeAt(0) - 0x21;

  it('merges the lowest-ranked pair first and breaks rank ties leftmost first', () => {
    const tok = tiny([['ab', 1], ['bc', 1], ['abc', 1]], ['b c', 'a b', 'a bc']);
    expect(tok.encode('abc')).toEqual([96]); // b+c first (rank 0), then a+bc
    const other = tiny([['ab', 1], ['bc', 1]], ['a b', 'b c']);
    expect(other.encode('abc')).toEqual([94, at('c')]);
    expect(other.encode('bcbc')).toEqual([95, 95]);
  });

  it('never merges plain text into a control piece (llama.cpp would), but parses it in encodeWithSpecial', () => {
    const tok = tiny([['<a', 1], ['<a>', 3]], ['< a', '<a >']);
    expect(tok.encode('<a>')).toEqual([at('<'), at('a'), at('>')]);
    expect(tok.encodeWithSpecial('<a>')).toEqual([95]);
    expect(tok.decode([95])).toBe('');
  });

  it('matches user-defined pieces in plain text, longest first, and decodes them verbatim', () => {
    const tok = tiny([['xy', 4], ['xyz', 4], ['<ctl>', 3]], []);
    expect(tok.encode('axyzxy<ctl>')).toEqual([at('a'), 95, 94, at('<'), at('c'), at('t'), at('l'), at('>')]);
    expect(tok.encodeWithSpecial('axyzxy<ctl>')).toEqual([at('a'), 95, 94, 96]);
    expect(tok.decode([95, 94])).toBe('xyzxy');
  });

  it('reads add_bos_token, and llama.cpp\'s BOS defaults per rule set', () => {
    expect(tiny([], [], { 'tokenizer.ggml.pre': 'llama-bpe' }).addBos).toBe(true);
    const noBos = tiny([], [], { 'tokenizer.ggml.pre': 'llama-bpe', 'tokenizer.ggml.add_bos_token': false });
    expect(noBos.addBos).toBe(false);
    expect(tiny([], [], { 'tokenizer.ggml.pre': 'qwen2' }).addBos).toBe(false);
    expect(tiny([], [], { 'tokenizer.ggml.pre': 'qwen2' }).bosId).toBe(11);
    expect(tiny([], [], { 'tokenizer.ggml.pre': 'glm4' }).bosId).toBe(null);
    expect(() => tiny([], [], { 'tokenizer.ggml.add_bos_token': 1 })).toThrow(TokenizerError);
  });
});

describe.each(VOCABS)('%s: TokenDecoder', (name) => {
  it('holds back a character split over several pieces until its last byte arrives', () => {
    const { tok } = get(name);
    const ids = tok.encode('🦙');
    expect(ids.length).toBeGreaterThan(1); // no vocabulary here has the llama as one piece
    const { text, chunks } = stream(tok, ids);
    expect(text).toBe('🦙');
    expect(chunks.slice(0, -2).every((c) => c === '')).toBe(true);
  });

  it('streams the same text as decode() for every corpus string', () => {
    const { tok, metadata } = get(name);
    expectStreamsLikeDecode(tok, corpus(metadata));
  });
});
