// The generation loop going back (generate.ts): a sequence with checks (BackendSequence.checks) says positions from p
// on were wrong, and the loop runs again from p. Here the sequence is stories260K on this device (a LocalModel's own
// sequence) whose answers for positions [FROM, TO) are made wrong until its checks "find" them: the chosen id is
// changed (greedy) or the candidates' logits reversed (sampling). Oracle: the same generation on the plain LocalModel,
// same options and seed: the ids, the text and the finish must be identical (so the sampler's draws and the
// detokenizer were restored), the events must withdraw exactly the wrong tokens, and replaying the events must give
// the final reply. With checkedOnly nothing wrong is ever handed out. Through the chat API, the stream carries the
// correction and the deltas rebuild the reply. The swarm's real checks are tests/swarm/checks.test.ts's.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlockChatEngine, type FlockChunk } from '../../src/engine/chat';
import { drain, generateTokens, type Backend, type BackendSequence, type GenerateOptions, type GenerationEvent, type SequenceChecks, type StepSelect } from '../../src/engine/generate';
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

/** A LocalModel whose sequences answer positions [from, to) wrong until their checks find it. */
class WrongForAWhile implements Backend {
  constructor(
    private readonly detect: Detect,
    private readonly from = FROM,
    private readonly to = TO,
  ) {}
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
    const { detect, from, to } = this;
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
      finish: async () => find(),
    };
    return {
      get length() {
        return inner.length;
      },
      checks,
      step: async (ids: number[], select?: StepSelect): Promise<Candidates | undefined> => {
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
      close: () => inner.close(),
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
