// Test helpers shared by the tokenizer and chat-template tests: loading vocab-only GGUF files (ours and llama.cpp's,
// through node-llama-cpp), reading llama.cpp's .inp/.out test vectors in ../shared/tokenizers, seeded random
// strings, and the comparisons with llama.cpp (ids, per-id text and end of generation, streaming) that each
// tokenizer test runs on its own vocabularies and corpus.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import { LlamaLogLevel, getLlama, type Llama, type LlamaModel, type Token } from 'node-llama-cpp';
import { describe, expect, it } from 'vitest';
import { TokenDecoder, type Tokenizer } from '../../src/model/tokenizer';
import { rng } from './rng';

/** llama.cpp's vocabularies and test vectors. Tests run from the project root; CI clones it next to ../shared. */
export const VOCAB_DIR = path.resolve(process.cwd(), '../shared/tokenizers');

/** One vocabulary loaded twice: by us, and by llama.cpp (vocab-only). */
export interface LoadedVocab<T extends Tokenizer = Tokenizer> {
  tok: T;
  model: LlamaModel;
  metadata: Record<string, unknown>;
}

/** llama.cpp's CPU build, never compiled: the prebuilt binary is all a vocab-only model needs. */
export function openLlama(): Promise<Llama> {
  return getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
}

/** The parsed header is a union of per-architecture types; the tokenizer takes a plain record. */
export async function readMetadata(file: string): Promise<Record<string, unknown>> {
  return Object.fromEntries(Object.entries((await gguf(file, { allowLocalFile: true })).metadata));
}

/**
 * A GGUF's vocabulary as `make` builds it and as llama.cpp loads it. llama.cpp logs "missing tensor
 * 'token_embd.weight'" for vocab-only files; the load still succeeds (the tests that use it prove it).
 */
export async function loadVocab<T extends Tokenizer>(
  llama: Llama,
  file: string,
  make: (metadata: Record<string, unknown>) => T,
): Promise<LoadedVocab<T>> {
  const metadata = await readMetadata(file);
  const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
  return { tok: make(metadata), model, metadata };
}

/** node-llama-cpp brands its ids as `Token`; ours are plain numbers with the same meaning (ids of the same file). */
export function asTokens(ids: readonly number[]): Token[] {
  return ids.map((id) => id as Token);
}

// ---------------------------------------------------------------------------------------------------------------
// Corpus building blocks.


/** `count` seeded random strings, each 1 to 24 fragments drawn from `parts`. */
export function randomStrings(parts: readonly string[], count: number, seed: number): string[] {
  const next = rng(seed);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = 1 + Math.floor(next() * 24);
    let s = '';
    for (let j = 0; j < n; j++) s += parts[Math.floor(next() * parts.length)];
    out.push(s);
  }
  return out;
}

/** The vocabulary pieces `keep` chooses by text and raw type, typed as text alone and inside other text. */
export function specialPieceStrings(
  metadata: Record<string, unknown>,
  keep: (text: string, type: unknown) => boolean,
): string[] {
  const tokens = metadata['tokenizer.ggml.tokens'];
  const types = metadata['tokenizer.ggml.token_type'];
  if (!Array.isArray(tokens) || !Array.isArray(types)) throw new Error('vocab metadata is not arrays');
  const out: string[] = [];
  tokens.forEach((t, i) => {
    if (typeof t === 'string' && keep(t, types[i])) out.push(t, `x${t}y`, ` ${t} `, `${t}\n${t}`);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// llama.cpp's test vectors.

export interface Vector {
  text: string;
  ids: number[];
}

/**
 * The vectors of `file` (a GGUF in VOCAB_DIR): the .inp file holds strings each followed by
 * "\n__ggml_vocab_test__\n", the .out file one line of ids per string.
 */
export function readVectors(file: string): Vector[] {
  const base = path.join(VOCAB_DIR, file);
  const texts = readFileSync(`${base}.inp`, 'utf8').split('\n__ggml_vocab_test__\n');
  // Every string ends with the marker, so the split leaves one empty string after the last.
  expect(texts.pop()).toBe('');
  const lines = readFileSync(`${base}.out`, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  expect(lines.length).toBe(texts.length);
  return texts.map((text, i) => ({
    text,
    ids: lines[i]
      .trim()
      .split(/ +/)
      .filter((s) => s !== '')
      .map(Number),
  }));
}

/** encode() reproduces every line of the .out file from the .inp file (46 strings for every vocabulary there). */
export function expectTestVectors(tok: Tokenizer, file: string): void {
  const vectors = readVectors(file);
  expect(vectors.length).toBe(46);
  const mismatches = vectors
    .map((v, i) => ({ i, text: v.text, want: v.ids, got: tok.encode(v.text) }))
    .filter((m) => JSON.stringify(m.got) !== JSON.stringify(m.want));
  expect(mismatches).toEqual([]);
}

/** The test of every named vocabulary against its vectors; `tok` gives our tokenizer for a name once loaded. */
export function describeTestVectors(names: readonly string[], tok: (name: string) => Tokenizer): void {
  describe.each(names)('%s: llama.cpp test vectors', (name) => {
    it('reproduces every line of the .out file from the .inp file', () => {
      expectTestVectors(tok(name), name);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Comparisons with llama.cpp on the same vocabulary.

/** encodeMismatches is empty on a corpus of more than 400 texts. */
export function expectEncodesLikeLlama(
  { tok, model }: LoadedVocab,
  texts: readonly string[],
  show: (s: string) => string,
): void {
  expect(texts.length).toBeGreaterThan(400);
  expect(encodeMismatches(tok, model, texts, show)).toEqual([]);
}

/**
 * Where encode() differs from model.tokenize(s, false) or encodeWithSpecial() from model.tokenize(s, true);
 * `show` shortens the text in the report.
 */
export function encodeMismatches(
  tok: Tokenizer,
  model: LlamaModel,
  texts: readonly string[],
  show: (s: string) => string,
): unknown[] {
  const mismatches: unknown[] = [];
  for (const s of texts) {
    const plain = tok.encode(s);
    const want = model.tokenize(s, false);
    if (JSON.stringify(plain) !== JSON.stringify(want)) {
      mismatches.push({ s: show(s), mode: 'plain', want, got: plain });
    }
    const special = tok.encodeWithSpecial(s);
    const wantSpecial = model.tokenize(s, true);
    if (JSON.stringify(special) !== JSON.stringify(wantSpecial)) {
      mismatches.push({ s: show(s), mode: 'special', want: wantSpecial, got: special });
    }
  }
  return mismatches;
}

/**
 * Every id, twice in a row (so it is decoded first and not first), against model.detokenize(), and every id's
 * end-of-generation flag against model.isEogToken(). `decode` is our text as llama.cpp would print it.
 */
export function expectEveryIdLikeLlama(
  tok: Tokenizer,
  model: LlamaModel,
  decode: (ids: readonly number[]) => string,
): void {
  const mismatches: unknown[] = [];
  for (let id = 0; id < tok.vocabSize; id++) {
    const want = model.detokenize(asTokens([id, id]), false);
    const got = decode([id, id]);
    if (got !== want) mismatches.push({ id, want, got });
    const [token] = asTokens([id]);
    if (tok.isEndOfGeneration(id) !== model.isEogToken(token)) mismatches.push({ id, eog: model.isEogToken(token) });
  }
  expect(mismatches).toEqual([]);
}

/** Plain text never yields an unknown (2) or control (3) id, nor one that ends a generation. */
export function expectNoSpecialIds(
  tok: Tokenizer,
  metadata: Record<string, unknown>,
  texts: readonly string[],
  show: (s: string) => string,
): void {
  const types = metadata['tokenizer.ggml.token_type'];
  if (!Array.isArray(types)) throw new Error('token_type is not an array');
  for (const s of texts) {
    for (const id of tok.encode(s)) {
      const special = types[id] === 2 || types[id] === 3 || tok.isEndOfGeneration(id);
      if (special) throw new Error(`encode(${show(s)}) produced special id ${id}`);
    }
  }
}

/** A long text (100,000 characters) encodes without an accidental quadratic step. */
export function expectFastEncode(tok: Tokenizer, text: string): void {
  const t0 = performance.now();
  const ids = tok.encode(text);
  const ms = performance.now() - t0;
  expect(ids.length).toBeGreaterThan(10_000);
  // About 0.1 s measured here; the bound only catches an accidental quadratic step.
  expect(ms).toBeLessThan(5_000);
}

// ---------------------------------------------------------------------------------------------------------------
// Streaming.

/** `ids` pushed one at a time through a TokenDecoder: the whole text, and each push's chunk plus the flush. */
export function stream(tok: Tokenizer, ids: readonly number[]): { text: string; chunks: string[] } {
  const dec = new TokenDecoder(tok);
  const chunks = ids.map((id) => dec.push(id));
  chunks.push(dec.flush());
  return { text: chunks.join(''), chunks };
}

/** Streaming gives the same text as decode() for the ids of every text, plain and with special parsing. */
export function expectStreamsLikeDecode(tok: Tokenizer, texts: readonly string[]): void {
  for (const s of texts) {
    for (const ids of [tok.encode(s), tok.encodeWithSpecial(s)]) expect(stream(tok, ids).text).toBe(tok.decode(ids));
  }
}
