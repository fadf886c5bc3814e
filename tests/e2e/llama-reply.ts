// The oracle of the end-to-end chat tests: llama.cpp's greedy reply to a message typed into the app with the
// embedded model. stories260K has no chat template, so the app continues the last user message as plain text from
// BOS (src/worker/engine.worker.ts); llama.cpp decodes the same ids, and the reply ends where our engine ends one,
// before the first end-of-generation id. Not here: running llama.cpp (tests/helpers/llama-ref.ts).

import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import { createTokenizer, type Tokenizer } from '../../src/model/tokenizer';
import { llamaGreedy } from '../helpers/llama-ref';
import { ROOT } from './browser';

export const EMBEDDED_MODEL = path.join(ROOT, 'public/models/stories260K.gguf');

let tokenizer: Promise<Tokenizer> | undefined;

/** The embedded model's tokenizer, read from its GGUF. */
export function embeddedTokenizer(): Promise<Tokenizer> {
  tokenizer ??= gguf(EMBEDDED_MODEL, { allowLocalFile: true }).then(({ metadata }) => createTokenizer(metadata as Record<string, unknown>));
  return tokenizer;
}

/** llama.cpp's greedy ids after BOS + `prompt`, at most `maxTokens` of them, cut before the first end-of-generation id. */
export async function llamaReply(prompt: string, maxTokens: number): Promise<number[]> {
  const tok = await embeddedTokenizer();
  const ref = await llamaGreedy(EMBEDDED_MODEL, [tok.bosId!, ...tok.encode(prompt)], maxTokens);
  const end = ref.ids.findIndex((id) => tok.isEndOfGeneration(id));
  return end < 0 ? ref.ids : ref.ids.slice(0, end);
}
