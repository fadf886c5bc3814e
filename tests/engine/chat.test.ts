// Tests for src/engine/chat.ts (the OpenAI-style chat API) and src/engine/chat-stop.ts.
// Oracles: the generation loop itself (generateTokens on the same prompt ids must give the same reply, ids and
// counts), llama.cpp's greedy ids for those prompt ids (tests/helpers/llama-ref.ts), the ids a Backend view of the
// model records running (the history a multi-turn prompt carries, the context arithmetic), and scripted backends
// whose every token is known in advance (stop ids, stop strings split across tokens, argument checks without a GPU).
// The real model is the embedded stories260K on the shared Dawn device (SwiftShader): it has no chat template, so
// the plain fallback format applies. Generations stay short: every decode step costs a submission on SwiftShader.

import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequestBase } from '@mlc-ai/web-llm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatRequestError, FlockChatEngine, UnsupportedChatFeatureError, type ChatBackend } from '../../src/engine/chat';
import { StopStringFilter } from '../../src/engine/chat-stop';
import { drain, generateTokens, type BackendSequence } from '../../src/engine/generate';
import { LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { ChatTemplate, ChatTemplateRenderError } from '../../src/model/chat-template';
import { ContextOverflowError } from '../../src/model/errors';
import { FileSource } from '../../src/model/source-file';
import { STORIES, takeGpuErrors, testDevice } from '../helpers/gpu';
import { llamaGreedy } from '../helpers/llama-ref';

const MESSAGES = [
  { role: 'system' as const, content: 'You tell short stories.' },
  { role: 'user' as const, content: 'Once upon a time there was a cat.' },
];
const STEPS = 10;
/** A conversation with history, and its rendering in the fallback format (chat-template.ts): written out here, so
 *  a template that lost a turn shows. */
const MULTI_TURN = [
  { role: 'user' as const, content: 'Hi.' },
  { role: 'assistant' as const, content: 'Hello.' },
  { role: 'user' as const, content: 'Go on.' },
];
const MULTI_TURN_TEXT = 'Hi.Hello.\nGo on.'; // the text-continuation fallback: messages in order, a later user message on a new line

let dev: FlockDevice;
let model: LocalModel;
let engine: FlockChatEngine;

beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
  model = await LocalModel.load(dev, new FileSource(STORIES), { maxContext: 256 });
  engine = new FlockChatEngine(model);
});

afterAll(() => {
  model?.destroy();
  expect(takeGpuErrors()).toEqual([]);
});

/** The non-streamed greedy reply to MESSAGES (STEPS tokens at most), made once and shared by the tests. */
let greedy: Promise<ChatCompletion> | undefined;
function greedyCompletion(): Promise<ChatCompletion> {
  greedy ??= engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: STEPS });
  return greedy;
}
async function greedyReply(): Promise<string> {
  return (await greedyCompletion()).choices[0].message.content ?? '';
}

async function collect(chunks: AsyncIterable<ChatCompletionChunk>): Promise<ChatCompletionChunk[]> {
  const out: ChatCompletionChunk[] = [];
  for await (const c of chunks) out.push(c);
  return out;
}

const deltas = (chunks: readonly ChatCompletionChunk[]): string[] =>
  chunks.flatMap((c) => (c.choices[0]?.delta.content ? [c.choices[0].delta.content] : []));

describe('FlockChatEngine on stories260K (fallback template)', () => {
  it('the reply is what generateTokens and llama.cpp give for the same prompt ids', async () => {
    const prompt = engine.template.apply(MESSAGES);
    expect(engine.template.isFallback).toBe(true);
    expect(prompt.text).toBe('Once upon a time there was a cat.'); // the fallback continues the user's text
    const direct = await drain(generateTokens(model, { inputIds: prompt.ids, maxTokens: STEPS, temperature: 0 }));
    const reply = await greedyCompletion();

    expect(reply.object).toBe('chat.completion');
    expect(reply.model).toBe('llama'); // general.name of stories260K
    expect(reply.choices).toHaveLength(1);
    expect(reply.choices[0].message).toEqual({ role: 'assistant', content: direct.text });
    expect(reply.usage?.prompt_tokens).toBe(prompt.ids.length);
    expect(reply.usage?.completion_tokens).toBe(direct.outputIds.length);
    expect(reply.usage?.total_tokens).toBe(prompt.ids.length + direct.outputIds.length);
    expect(reply.usage?.extra.decode_tokens_per_s).toBeGreaterThan(0);
    expect(reply.usage?.extra.time_to_first_token_s).toBeGreaterThan(0);

    // llama.cpp on the same file and ids: greedy continues past an end-of-generation id, we stop there.
    const ref = await llamaGreedy(STORIES, prompt.ids, STEPS);
    const n = direct.outputIds.length;
    expect(direct.outputIds).toEqual(ref.ids.slice(0, n));
    if (direct.finishReason === 'stop') {
      expect(model.tokenizer.isEndOfGeneration(ref.ids[n])).toBe(true);
      expect(reply.choices[0].finish_reason).toBe('stop');
    } else {
      expect(n).toBe(STEPS);
      expect(reply.choices[0].finish_reason).toBe('length');
    }
    expect(reply.choices[0].message.content).toBe(model.tokenizer.decode(ref.ids.slice(0, n)));
  });

  it('streaming gives the same text at temperature 0; deltas, finish chunk and usage as WebLLM sends them', async () => {
    const whole = await greedyCompletion();
    const chunks = await collect(
      await engine.chat.completions.create({
        messages: MESSAGES, temperature: 0, max_tokens: STEPS, stream: true, stream_options: { include_usage: true },
      }),
    );
    const text = deltas(chunks).join('');
    expect(text).toBe(whole.choices[0].message.content);
    expect(text.length).toBeGreaterThan(0);
    for (const c of chunks) {
      expect(c.object).toBe('chat.completion.chunk');
      expect(c.id).toBe(chunks[0].id);
    }
    // Deltas have no finish_reason; then one chunk with it (and usage); then WebLLM's usage-only chunk.
    const usageOnly = chunks[chunks.length - 1];
    const final = chunks[chunks.length - 2];
    expect(usageOnly.choices).toEqual([]);
    expect(final.choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
    expect(final.choices[0].delta).toEqual({});
    for (const c of chunks.slice(0, -2)) expect(c.choices[0].finish_reason).toBeNull();
    for (const u of [final.usage, usageOnly.usage]) {
      expect(u?.prompt_tokens).toBe(whole.usage?.prompt_tokens);
      expect(u?.completion_tokens).toBe(whole.usage?.completion_tokens);
      expect(u?.total_tokens).toBe(whole.usage?.total_tokens);
    }
    // Without include_usage there is no usage-only chunk, but the finish chunk still carries usage.
    const plain = await collect(await engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: 3, stream: true }));
    expect(plain[plain.length - 1].choices[0].finish_reason).not.toBeNull();
    expect(plain[plain.length - 1].usage?.completion_tokens).toBeLessThanOrEqual(3);
  });

  it('max_tokens ends the reply with finish_reason "length"', async () => {
    const prompt = engine.template.apply(MESSAGES);
    const direct = await drain(generateTokens(model, { inputIds: prompt.ids, maxTokens: 4, temperature: 0 }));
    expect(direct.finishReason).toBe('length'); // stories260K does not end a story in 4 tokens
    const reply = await engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: 4 });
    expect(reply.choices[0].finish_reason).toBe('length');
    expect(reply.usage?.completion_tokens).toBe(4);
    expect(reply.choices[0].message.content).toBe(direct.text);
  });

  it('a stop string ends the reply before it, streamed or not', async () => {
    const full = await greedyReply();
    // A stop string from the middle of the greedy reply, three characters long so it likely spans two tokens.
    const at = Math.floor(full.length / 2);
    const stop = full.slice(at, at + 3);
    const cut = full.indexOf(stop);
    const reply = await engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: STEPS, stop });
    expect(reply.choices[0].message.content).toBe(full.slice(0, cut));
    expect(reply.choices[0].finish_reason).toBe('stop');
    const chunks = await collect(await engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: STEPS, stop: [stop, 'zzzz'], stream: true }));
    expect(deltas(chunks).join('')).toBe(full.slice(0, cut));
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('stop');
    // Generation stopped at the token that completed the stop string, not at max_tokens.
    expect(reply.usage?.completion_tokens).toBeLessThan(STEPS);
  });

  it('interruptGenerate stops a stream with finish_reason "abort"', async () => {
    const chunks: ChatCompletionChunk[] = [];
    const stream = await engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: 200, stream: true });
    for await (const c of stream) {
      chunks.push(c);
      if (chunks.length === 2) engine.interruptGenerate();
    }
    const last = chunks[chunks.length - 1];
    expect(last.choices[0].finish_reason).toBe('abort');
    expect(last.usage?.completion_tokens).toBeLessThan(5);
    // The engine is free again afterwards.
    const after = await engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: 2 });
    expect(after.usage?.completion_tokens).toBe(2);
  });

  it('a consumer that stops reading a stream frees the model for the next request', async () => {
    const stream = await engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: 200, stream: true });
    for await (const c of stream) {
      if (c.choices[0]?.delta.content) break;
    }
    const after = await engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: 2 });
    expect(after.usage?.completion_tokens).toBe(2);
  });

  it('requests made at the same time run one after the other', async () => {
    const [a, b] = await Promise.all([
      engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: 3 }),
      engine.chat.completions.create({ messages: MESSAGES, temperature: 0, max_tokens: 3 }),
    ]);
    expect(a.choices[0].message.content).toBe(b.choices[0].message.content);
  });

  it('multi-turn: the rendered history reaches the model, and without max_tokens the reply fills the context', async () => {
    const promptIds = [model.tokenizer.bosId!, ...model.tokenizer.encode(MULTI_TURN_TEXT)];
    // A Backend view of the same model whose context leaves room for 5 tokens (the engine works on any Backend),
    // recording the positions each sequence opened with and every id it ran.
    const room = 5;
    const maxContext = promptIds.length + room;
    const opened: number[] = [];
    const ran: number[] = [];
    const small: ChatBackend = {
      config: model.config, tokenizer: model.tokenizer, maxBatch: model.maxBatch, maxContext,
      counters: () => model.counters(),
      begin(maxPos) {
        opened.push(maxPos);
        const seq = model.begin(maxPos);
        return {
          get length() {
            return seq.length;
          },
          step(ids, select) {
            ran.push(...ids);
            return seq.step(ids, select);
          },
          close: () => seq.close(),
        };
      },
    };
    // llama.cpp on the same ids: no end-of-generation id and no stop string in those 5 steps (measured), so the
    // reply never ends by itself and must be all 5 of its tokens, up to the end of the context
    const ref = await llamaGreedy(STORIES, promptIds, room);
    expect(ref.ids.some((id) => model.tokenizer.isEndOfGeneration(id))).toBe(false);
    const want = model.tokenizer.decode(ref.ids);
    const e = new FlockChatEngine(small);
    const reply = await e.chat.completions.create({ messages: MULTI_TURN, temperature: 0 });
    // the model ran the whole rendered conversation, then each reply token but the last (which is never run)
    expect(opened).toEqual([maxContext]);
    expect(ran).toEqual([...promptIds, ...ref.ids.slice(0, room - 1)]);
    expect(reply.choices[0].message.content).toBe(want);
    expect(reply.choices[0].finish_reason).toBe('length');
    expect(reply.usage).toMatchObject({ prompt_tokens: promptIds.length, completion_tokens: room, total_tokens: maxContext });
    // a prompt that does not fit is refused by create() itself, before any stream exists
    const long = [{ role: 'user' as const, content: 'word '.repeat(maxContext) }];
    await expect(e.chat.completions.create({ messages: long, stream: true })).rejects.toThrow(ContextOverflowError);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Scripted backends: every token known in advance, no GPU.

/** A backend over the stories260K vocabulary that "generates" `script`, one id per step. */
function scripted(script: readonly number[]): ChatBackend {
  return {
    config: model.config,
    tokenizer: model.tokenizer,
    maxBatch: 64,
    maxContext: 256,
    counters: () => ({ submits: 0, readbacks: 0, dispatches: 0, weightBytesRead: 0, encodeMs: 0 }),
    begin(): BackendSequence {
      let length = 0;
      let k = 0;
      return {
        get length() {
          return length;
        },
        async step(ids, select) {
          length += ids.length;
          if (!select) return undefined;
          const next = script[Math.min(k++, script.length - 1)];
          return { ids: Uint32Array.of(next), logits: Float32Array.of(0) };
        },
        close() {},
      };
    },
  };
}

describe('stop conditions on a scripted backend', () => {
  const tok = () => model.tokenizer;

  it('a stop string split across tokens is held back and cut', async () => {
    const ids = tok().encode('The cat sat on the mat. The end.');
    const e = new FlockChatEngine(scripted(ids));
    const chunks = await collect(await e.chat.completions.create({ messages: MESSAGES, stream: true, max_tokens: ids.length, stop: 'on the m' }));
    const parts = deltas(chunks);
    expect(parts.join('')).toBe('The cat sat ');
    for (const p of parts) expect(p).not.toContain('on');
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('stop');
  });

  it("the template's end-of-turn token ends the reply even when the tokenizer does not flag it", async () => {
    // A template whose turns end with <s> (id 1): not an end-of-generation id for this vocabulary.
    const template = "{% for m in messages %}{{ m['content'] }}<s>{% endfor %}";
    expect(new ChatTemplate(template, tok()).stopIds).toEqual(new Set([1]));
    expect(tok().isEndOfGeneration(1)).toBe(false);
    const words = tok().encode('Hello there');
    const e = new FlockChatEngine(scripted([...words, 1, ...words]), { chatTemplate: template });
    const reply = await e.chat.completions.create({ messages: MESSAGES, max_tokens: 20 });
    expect(reply.choices[0].message.content).toBe('Hello there');
    expect(reply.choices[0].finish_reason).toBe('stop');
    expect(reply.usage?.completion_tokens).toBe(words.length);
  });

  it('an end-of-generation id (EOS) ends the reply with "stop"; the text is the tokenizer\'s decoding of the ids before it', async () => {
    // The reply stops inside a character: "✓" is three byte tokens and only two come before EOS, so the text ends in
    // the U+FFFD the decoder flushes at the end. The script goes on after EOS; none of that may show.
    const words = tok().encode('Bye, café ✓').slice(0, -1);
    const want = tok().decode(words);
    expect(want).toBe('Bye, café \uFFFD');
    const script = [...words, tok().eosId!, ...tok().encode(' and more')];
    const e = new FlockChatEngine(scripted(script));
    const reply = await e.chat.completions.create({ messages: MESSAGES, max_tokens: 20, seed: 7, temperature: 0.5 });
    expect(reply.choices[0].message.content).toBe(want);
    expect(reply.choices[0].finish_reason).toBe('stop');
    expect(reply.usage?.completion_tokens).toBe(words.length);
    const chunks = await collect(await new FlockChatEngine(scripted(script)).chat.completions.create({ messages: MESSAGES, max_tokens: 20, stream: true }));
    expect(deltas(chunks).join('')).toBe(want);
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('stop');
    expect(chunks[chunks.length - 1].usage?.completion_tokens).toBe(words.length);
  });

  it('text typed as "</s>" by the user stays text in the prompt', () => {
    const e = new FlockChatEngine(scripted([]));
    const p = e.template.apply([{ role: 'user', content: 'a</s>b' }]);
    expect(p.ids).not.toContain(tok().eosId);
  });
});

describe('StopStringFilter', () => {
  it('holds back a possible start of a stop string and releases it when it is not one', () => {
    const f = new StopStringFilter(['\nUser:']);
    expect(f.push('Hello\nUs')).toEqual({ text: 'Hello', stopped: false });
    expect(f.push('ually')).toEqual({ text: '\nUsually', stopped: false });
    expect(f.push(' fine\n')).toEqual({ text: ' fine', stopped: false });
    expect(f.flush()).toBe('\n');
  });

  it('cuts at the earliest of several stop strings', () => {
    const f = new StopStringFilter(['bc', 'abcd']);
    expect(f.push('xab')).toEqual({ text: 'x', stopped: false });
    // "ab" was held back (it may start "abcd"); the buffer "abcd" holds both, "abcd" first.
    expect(f.push('cd')).toEqual({ text: '', stopped: true });
    expect(f.push('more')).toEqual({ text: '', stopped: true });
    expect(f.flush()).toBe('');
  });
});

describe('request validation (named errors, raised by create itself)', () => {
  const bad: [string, ChatCompletionRequestBase, new (m: string) => Error][] = [
    ['no messages', { messages: [] }, ChatRequestError],
    ['an unknown role', { messages: [{ role: 'bot', content: 'x' } as never] }, ChatRequestError],
    ['a system message after the first', { messages: [{ role: 'user', content: 'a' }, { role: 'system', content: 'b' }, { role: 'user', content: 'c' }] }, ChatRequestError],
    ['a last message that is not from the user', { messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] }, ChatRequestError],
    ['content that is not text', { messages: [{ role: 'user', content: 42 } as never] }, ChatRequestError],
    ['temperature out of range', { messages: MESSAGES, temperature: -1 }, ChatRequestError],
    ['top_p out of range', { messages: MESSAGES, top_p: 0 }, ChatRequestError],
    ['max_tokens 0', { messages: MESSAGES, max_tokens: 0 }, ChatRequestError],
    ['a fractional seed', { messages: MESSAGES, seed: 1.5 }, ChatRequestError],
    ['an empty stop string', { messages: MESSAGES, stop: [''] }, ChatRequestError],
    ['n = 2', { messages: MESSAGES, n: 2 }, UnsupportedChatFeatureError],
    ['tools', { messages: MESSAGES, tools: [{ type: 'function', function: { name: 'f' } }] }, UnsupportedChatFeatureError],
    ['logprobs', { messages: MESSAGES, logprobs: true }, UnsupportedChatFeatureError],
    ['JSON mode', { messages: MESSAGES, response_format: { type: 'json_object' } }, UnsupportedChatFeatureError],
    ['presence_penalty', { messages: MESSAGES, presence_penalty: 0.5 }, UnsupportedChatFeatureError],
    ['a tool message', { messages: [{ role: 'tool', content: 'r', tool_call_id: 't' }, { role: 'user', content: 'x' }] }, UnsupportedChatFeatureError],
    ['an image', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:,' } }] }] }, UnsupportedChatFeatureError],
  ];

  it.each(bad)('%s', async (_, request, ErrorClass) => {
    const e = new FlockChatEngine(scripted([2]));
    await expect(e.chat.completions.create(request)).rejects.toThrow(ErrorClass);
    await expect(e.chat.completions.create({ ...request, stream: true })).rejects.toThrow(ErrorClass);
  });

  it('errors keep their names (they cross worker boundaries by name)', async () => {
    const e = new FlockChatEngine(scripted([2]));
    await expect(e.chat.completions.create({ messages: [] })).rejects.toMatchObject({ name: 'ChatRequestError' });
    await expect(e.chat.completions.create({ messages: MESSAGES, n: 3 })).rejects.toMatchObject({ name: 'UnsupportedChatFeatureError' });
  });

  it('accepts what WebLLM apps send: text parts, null assistant content, n = 1, zero penalties, a model name', async () => {
    const e = new FlockChatEngine(scripted([...model.tokenizer.encode('ok'), 2]));
    const reply = await e.chat.completions.create({
      model: 'Llama-3.2-1B-Instruct-q4f16_1-MLC',
      n: 1,
      frequency_penalty: 0,
      presence_penalty: 0,
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
        { role: 'assistant', content: null },
        { role: 'user', content: 'Again' },
      ],
    });
    expect(reply.choices[0].message.content).toBe('ok');
  });

  it('a template that refuses the conversation rejects create() with ChatTemplateRenderError', async () => {
    const e = new FlockChatEngine(scripted([2]), { chatTemplate: "{{ raise_exception('no system messages') if messages[0]['role'] == 'system' else 'x' }}" });
    await expect(e.chat.completions.create({ messages: MESSAGES })).rejects.toThrow(ChatTemplateRenderError);
  });
});
