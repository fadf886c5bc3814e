// The generation loop going back (generate.ts): a sequence with checks (BackendSequence.checks) says positions from p
// on were wrong, and the loop runs again from p. Here the sequence is stories260K on this device (a LocalModel's own
// sequence) whose answers for positions [FROM, TO) are made wrong until its checks "find" them: the chosen id is
// changed (greedy) or the candidates' logits reversed (sampling). Oracle: the same generation on the plain LocalModel,
// same options and seed: the ids, the text and the finish must be identical (so the sampler's draws and the
// detokenizer were restored), the events must withdraw exactly the wrong tokens, and replaying the events must give
// the final reply. With checkedOnly nothing wrong is ever handed out. Through the chat API, the stream carries the
// correction and the deltas rebuild the reply. With a prefix cache, the sequence kept after a rollback holds the ids
// the cache says (the next turn, run on it, equals the plain model's next turn); Stop while a check or the run after a
// rollback waits ends the reply at once as aborted, and the sequence is not kept. The swarm's real checks are
// tests/swarm/checks.test.ts's.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlockChatEngine, type FlockChunk } from '../../src/engine/chat';
import { drain, generateTokens, PrefixCache, type Backend, type BackendSequence, type GenerateOptions, type GenerationEvent, type SequenceChecks, type StepSelect } from '../../src/engine/generate';
import { StepAbortedError } from '../../src/model/errors';
import { LocalModel } from '../../src/engine/local-model';
import { FileSource } from '../../src/model/source-file';
import type { Candidates } from '../../src/gpu/head';
import { STORIES, testDevice } from '../helpers/gpu';

/** positions whose answers are wrong until the checks find them */
const FROM = 6;
const TO = 10;

let model: LocalModel;
beforeAll(async () => {
  model = await LocalModel.load(await testDevice(), new FileSource(STORIES), { maxContext: 128 });
});
afterAll(() => model?.destroy());

/** When the wrong answers are found: after the step that runs position TO, or only at the end of the reply. */
type Detect = 'step' | 'end';

/**
 * Where a sequence waits until Stop (rejecting with StepAbortedError, as a swarm's does): the end-of-reply check, or
 * the step that runs again after the rollback.
 */
type Hang = 'none' | 'finish' | 'rerun';

/** Resolves never; rejects with StepAbortedError once `signal` aborts (a backend waiting on other machines). */
function untilStopped(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    const stop = () => reject(new StepAbortedError('The generation was stopped.'));
    if (signal?.aborted) stop();
    signal?.addEventListener('abort', stop, { once: true });
  });
}

/** A LocalModel whose sequences answer positions [from, to) wrong until their checks find it. */
class WrongForAWhile implements Backend {
  /** sequences closed so far */
  closed = 0;
  /** resolves when a sequence starts waiting (Hang) */
  waiting: Promise<void>;
  private startWaiting!: () => void;

  constructor(
    private readonly detect: Detect,
    private readonly from = FROM,
    private readonly to = TO,
    private readonly hang: Hang = 'none',
  ) {
    this.waiting = new Promise((r) => (this.startWaiting = r));
  }
  get config() {
    return model.config;
  }
  get tokenizer() {
    return model.tokenizer;
  }
  get maxBatch() {
    return model.maxBatch;
  }
  get maxContext() {
    return model.maxContext;
  }
  counters() {
    return model.counters();
  }
  begin(maxPos: number): BackendSequence {
    const inner = model.begin(maxPos);
    const vocab = model.config.vocab;
    const { detect, from, to, hang } = this;
    const self = this;
    let found = false;
    let voided: number | undefined;
    const find = (): void => {
      if (found || inner.length <= from) return;
      found = true;
      inner.truncate!(from);
      voided = from;
    };
    const checks: SequenceChecks = {
      get checkedLength() {
        return found ? inner.length : Math.min(inner.length, from);
      },
      takeVoided: () => {
        const v = voided;
        voided = undefined;
        return v;
      },
      checkAll: async () => find(),
      finish: async (signal) => {
        if (hang === 'finish') {
          self.startWaiting();
          await untilStopped(signal);
        }
        find();
      },
    };
    return {
      get length() {
        return inner.length;
      },
      checks,
      truncate: (length: number) => inner.truncate!(length),
      step: async (ids: number[], select?: StepSelect, signal?: AbortSignal): Promise<Candidates | undefined> => {
        if (hang === 'rerun' && found) {
          self.startWaiting();
          await untilStopped(signal);
        }
        const last = inner.length + ids.length - 1;
        const c = await inner.step(ids, select);
        if (c && !found && last >= from && last < to) {
          // a wrong answer: another id wins
          if (c.ids.length === 1) c.ids[0] = (c.ids[0] + 1) % vocab;
          else c.logits.reverse();
        }
        if (detect === 'step' && inner.length > to) find();
        return c;
      },
      close: () => {
        self.closed++;
        inner.close();
      },
    };
  }
}

async function run(backend: Backend, opts: Omit<GenerateOptions, 'inputIds'>) {
  const events: GenerationEvent[] = [];
  const it = generateTokens(backend, { inputIds: [1], ...opts });
  for (;;) {
    const r = await it.next();
    if (r.done) return { res: r.value, events };
    events.push(r.value);
  }
}

/** The reply the events build: tokens appended, a rollback cutting back to its `keep` (and text to its text). */
function replay(events: GenerationEvent[]): { ids: number[]; text: string } {
  const ids: number[] = [];
  let text = '';
  for (const e of events) {
    if (e.kind === 'token') {
      ids.push(e.id);
      text += e.text;
    } else {
      ids.length = e.keep;
      text = e.text;
    }
  }
  return { ids, text };
}

const CASES: { name: string; opts: Omit<GenerateOptions, 'inputIds'> }[] = [
  { name: 'greedy', opts: { maxTokens: 16, temperature: 0, ignoreEos: true } },
  { name: 'seeded sampling', opts: { maxTokens: 16, temperature: 0.9, topK: 40, seed: 1234, ignoreEos: true } },
];

describe('rollback', () => {
  for (const { name, opts } of CASES) {
    for (const detect of ['step', 'end'] as const) {
      it(`${name}, found ${detect === 'step' ? 'after the step at position TO' : 'only at the end of the reply'}: the reply equals the run without wrong answers`, async () => {
        const oracle = await drain(generateTokens(model, { inputIds: [1], ...opts }));
        const { res, events } = await run(new WrongForAWhile(detect), opts);
        expect(res.outputIds).toEqual(oracle.outputIds);
        expect(res.text).toBe(oracle.text);
        expect(res.finishReason).toBe(oracle.finishReason);
        // one rollback, to the token chosen from position FROM - 1's answer (the last right one): keep FROM tokens
        const rb = events.filter((e) => e.kind === 'rollback');
        expect(rb).toHaveLength(1);
        expect(rb[0]).toMatchObject({ keep: FROM, position: FROM });
        if (rb[0].kind === 'rollback') {
          expect(rb[0].withdrawn.length).toBeGreaterThan(0);
          expect(rb[0].withdrawn).not.toEqual(oracle.outputIds.slice(FROM, FROM + rb[0].withdrawn.length));
          expect(rb[0].text).toBe(model.tokenizer.decode(oracle.outputIds.slice(0, FROM)));
        }
        expect(res.rollbacks).toEqual([{ keep: FROM, withdrawn: rb[0].kind === 'rollback' ? rb[0].withdrawn : [] }]);
        const rebuilt = replay(events);
        expect(rebuilt.ids).toEqual(oracle.outputIds);
        expect(oracle.text.startsWith(rebuilt.text)).toBe(true); // the loop's final text adds the detokenizer's tail
      });
    }
  }

  it('checkedOnly: nothing wrong is handed out, so nothing is withdrawn; the same reply', async () => {
    const opts = CASES[1].opts;
    const oracle = await drain(generateTokens(model, { inputIds: [1], ...opts }));
    const { res, events } = await run(new WrongForAWhile('step'), { ...opts, checkedOnly: true });
    expect(events.filter((e) => e.kind === 'rollback')).toEqual([]);
    expect(replay(events).ids).toEqual(oracle.outputIds);
    expect(res.outputIds).toEqual(oracle.outputIds);
    expect(res.rollbacks).toHaveLength(1); // it went back once, before handing anything wrong out
  });

  it('a prefix cache keeps the rolled-back sequence with the ids it holds: the next turn on it equals the plain model', async () => {
    const opts = CASES[0].opts;
    // the oracles first: the cache keeps the model busy with its sequence
    const plainFirst = await drain(generateTokens(model, { inputIds: [1], ...opts }));
    const next = [1, ...plainFirst.outputIds, 13, 42]; // the next turn: the conversation so far and a few more ids
    const plainSecond = await drain(generateTokens(model, { ...opts, inputIds: next }));
    const cache = new PrefixCache();
    try {
      const backend = new WrongForAWhile('end');
      const first = (await run(backend, { ...opts, cache })).res;
      expect(first.outputIds).toEqual(plainFirst.outputIds);
      expect(first.rollbacks).toHaveLength(1);
      // the kept sequence holds exactly the positions whose ids the cache lists (every id but the last ran)
      expect(cache.seq).toBeDefined();
      expect(cache.seq!.length).toBe(cache.ids.length);
      expect(cache.ids).toEqual([1, ...first.outputIds].slice(0, first.outputIds.length));
      // the next turn runs on the kept sequence, only its new ids
      const second = await drain(generateTokens(backend, { ...opts, inputIds: next, cache }));
      expect(second.cachedTokens).toBe(first.outputIds.length);
      expect(second.outputIds).toEqual(plainSecond.outputIds);
      expect(second.rollbacks).toEqual([]);
    } finally {
      cache.clear();
    }
  });

  for (const hang of ['finish', 'rerun'] as const) {
    it(`Stop while ${hang === 'finish' ? 'the end-of-reply check' : 'the run after a rollback'} waits: the reply ends at once as aborted and its sequence is not kept`, async () => {
      const opts = CASES[0].opts;
      const oracle = await drain(generateTokens(model, { inputIds: [1], ...opts }));
      const cache = new PrefixCache();
      const backend = new WrongForAWhile(hang === 'finish' ? 'end' : 'step', FROM, TO, hang);
      const stop = new AbortController();
      const generation = run(backend, { ...opts, cache, signal: stop.signal });
      await backend.waiting;
      const t0 = performance.now();
      stop.abort();
      const { res, events } = await generation;
      const ms = performance.now() - t0;
      expect(ms).toBeLessThan(500);
      expect(res.finishReason).toBe('abort');
      expect(cache.seq).toBeUndefined();
      expect(backend.closed).toBe(1);
      // the reply is what was handed out and stands
      expect(res.outputIds).toEqual(replay(events).ids);
      if (hang === 'rerun') {
        // it went back to FROM and stopped there: the plain model's first tokens
        expect(res.outputIds).toEqual(oracle.outputIds.slice(0, FROM));
      } else {
        // stopped before the end-of-reply check could find the wrong answers: every token stands, unchecked
        expect(res.outputIds).toHaveLength(opts.maxTokens);
        expect(res.rollbacks).toEqual([]);
      }
    }, 30_000);
  }

  it('the chat stream carries the correction, and its deltas cut at keepChars rebuild the corrected reply', async () => {
    const oracle = new FlockChatEngine(model);
    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
    const want = await oracle.chat.completions.create({ messages, temperature: 0, max_tokens: 16 });
    // wrong answers at the prompt's end + 4 .. + 8: tokens 5..8 of the reply come out wrong at first
    const prompt = want.usage!.prompt_tokens;
    const engine = new FlockChatEngine(new WrongForAWhile('step', prompt + 4, prompt + 8));
    const chunks: FlockChunk[] = [];
    for await (const c of await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 16, stream: true })) chunks.push(c);
    let text = '';
    const corrections = [];
    for (const c of chunks) {
      if (c.flock.correction) {
        corrections.push(c.flock.correction);
        expect(c.flock.correction.keepChars).toBeLessThanOrEqual(text.length);
        text = text.slice(0, c.flock.correction.keepChars);
      }
      text += c.choices[0]?.delta.content ?? '';
    }
    expect(corrections).toHaveLength(1);
    expect(corrections[0].at).toBe(5);
    expect(corrections[0].withdrawn.length).toBeGreaterThan(0);
    expect(text).toBe(want.choices[0].message.content);
    const last = chunks.find((c) => c.flock.reply)!;
    expect(last.flock.reply!.outputIds).toEqual(want.flock.outputIds);
    expect(last.flock.reply!.corrections).toEqual(corrections);
  });
});
