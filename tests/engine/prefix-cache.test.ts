// The prefix cache (generate.ts PrefixCache): a chat's next turn starts with the conversation so far, and a local
// model keeps that conversation's KV cache, running only the new ids. Oracle: the same generation without a cache
// (itself equal to llama.cpp in llama-parity.test.ts) — the ids must be identical, and cachedTokens must be exactly
// the shared prefix (less the last input id, which always runs again to pick the first token). Through the chat API,
// the positions the model runs are counted at the Backend: a second request runs only what it does not share.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlockChatEngine } from '../../src/engine/chat';
import { drain, generateTokens, PrefixCache, type Backend } from '../../src/engine/generate';
import { LocalModel } from '../../src/engine/local-model';
import { FileSource } from '../../src/model/source-file';
import { STORIES, testDevice } from '../helpers/gpu';

let model: LocalModel;

beforeAll(async () => {
  model = await LocalModel.load(await testDevice(), new FileSource(STORIES), { maxContext: 256 });
});

afterAll(() => model?.destroy());

const greedy = (inputIds: number[], maxTokens: number, cache?: PrefixCache) =>
  drain(generateTokens(model, { inputIds, maxTokens, temperature: 0, ignoreEos: true, cache }));

// A kept sequence keeps the model busy (one sequence at a time), so each test runs its uncached oracle first.
describe('prefix cache', () => {
  it('a second turn that continues the first runs only its new ids, with the same output as without the cache', async () => {
    const tok = model.tokenizer;
    const turn1 = [tok.bosId!, ...tok.encode('Once upon a time, a little fox')];
    const fresh1 = await greedy(turn1, 12);
    const turn2 = [...turn1, ...fresh1.outputIds, ...tok.encode(' The fox was happy.')];
    const fresh2 = await greedy(turn2, 12);
    const other = [tok.bosId!, ...tok.encode('The dog ran')];
    const freshOther = await greedy(other, 8);

    const cache = new PrefixCache();
    const r1 = await greedy(turn1, 12, cache);
    expect(r1.outputIds).toEqual(fresh1.outputIds);
    expect(r1.cachedTokens).toBe(0);
    // the sequence holds the input and every output id but the last (never run)
    expect(cache.ids).toEqual([...turn1, ...r1.outputIds.slice(0, -1)]);

    const r2 = await greedy(turn2, 12, cache);
    expect(r2.outputIds).toEqual(fresh2.outputIds);
    expect(r2.cachedTokens).toBe(turn1.length + r1.outputIds.length - 1);

    // regenerate: the same input again reuses all of it but its last id
    const again = await greedy(turn2, 12, cache);
    expect(again.outputIds).toEqual(fresh2.outputIds);
    expect(again.cachedTokens).toBe(turn2.length - 1);

    // a different conversation shares only BOS
    const o1 = await greedy(other, 8, cache);
    expect(o1.outputIds).toEqual(freshOther.outputIds);
    expect(o1.cachedTokens).toBe(1);
    cache.clear();
    // the model is free again: a plain generation works
    expect((await greedy(other, 2)).outputIds).toEqual(freshOther.outputIds.slice(0, 2));
  });

  it('a turn longer than the kept sequence opened with starts over, same output', async () => {
    const input = [1, ...model.tokenizer.encode('Lily')];
    const fresh = await greedy(input, 16);
    const cache = new PrefixCache();
    await greedy(input, 4, cache);
    expect(cache.capacity).toBe(model.maxContext);
    cache.capacity = 8; // as if it had been opened small: the next turn cannot fit and must not reuse it
    const r = await greedy(input, 16, cache);
    expect(r.cachedTokens).toBe(0);
    expect(r.outputIds).toEqual(fresh.outputIds);
    cache.clear();
  });

  it('the chat API keeps the conversation cached between requests: the second runs only its new ids, same replies', async () => {
    const template = '{% for m in messages %}{{ m.content }}{% endfor %}';
    const first = [{ role: 'user' as const, content: 'Once upon a time' }];
    const plainRuns = counting(model);
    const plain = new FlockChatEngine(plainRuns.backend, { chatTemplate: template });
    const reply = (await plain.chat.completions.create({ messages: first, temperature: 0, max_tokens: 8 })).choices[0].message.content ?? '';
    const second = [...first, { role: 'assistant' as const, content: reply }, { role: 'user' as const, content: ' there was' }];
    const promptIds = plain.template.apply(second).ids;
    const before = plainRuns.positions();
    const want = await plain.chat.completions.create({ messages: second, temperature: 0, max_tokens: 8 });
    // 8 tokens without an end-of-generation id: the prompt, then 7 decode steps (the 8th token is never run)
    expect(want.choices[0].finish_reason).toBe('length');
    expect(plainRuns.positions() - before).toBe(promptIds.length + 7);

    const cache = new PrefixCache();
    const runs = counting(model);
    const engine = new FlockChatEngine(runs.backend, { cache, chatTemplate: template });
    const a = await engine.chat.completions.create({ messages: first, temperature: 0, max_tokens: 8 });
    expect(a.choices[0].message.content).toBe(reply);
    const kept = [...cache.ids];
    expect(kept.length).toBeGreaterThan(0);
    // the ids the second prompt shares with what the cache holds (its last id always runs again)
    let shared = 0;
    while (shared < kept.length && shared < promptIds.length - 1 && kept[shared] === promptIds[shared]) shared++;
    expect(shared).toBeGreaterThanOrEqual(plain.template.apply(first).ids.length - 1); // at least the first prompt
    const ran = runs.positions();
    const b = await engine.chat.completions.create({ messages: second, temperature: 0, max_tokens: 8 });
    expect(b.choices[0].message.content).toBe(want.choices[0].message.content);
    expect(b.choices[0].finish_reason).toBe('length');
    expect(runs.positions() - ran).toBe(promptIds.length - shared + 7);
    cache.clear();
  });
});

/**
 * The model as a Backend that counts the positions its sequences run (every id passed to step): the real model does
 * all the work, the count shows how much of a prompt ran again.
 */
function counting(m: LocalModel): { backend: Backend; positions: () => number } {
  let n = 0;
  const backend: Backend = {
    config: m.config, tokenizer: m.tokenizer, maxBatch: m.maxBatch, maxContext: m.maxContext,
    counters: () => m.counters(),
    begin(maxPos) {
      const seq = m.begin(maxPos);
      return {
        get length() {
          return seq.length;
        },
        step(ids, select) {
          n += ids.length;
          return seq.step(ids, select);
        },
        truncate: (length) => seq.truncate!(length),
        close: () => seq.close(),
      };
    },
  };
  return { backend, positions: () => n };
}
