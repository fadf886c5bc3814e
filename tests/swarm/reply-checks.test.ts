// What a reply says of its checks (SwarmModel.replyChecks, shown in the page's stats line): "checked" only when every
// hop's answers were compared with another host's, otherwise the layers nobody could check. Real PeerServer, WebRTC
// over loopback, Dawn; the ids are llama.cpp's each time.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drain, generateTokens } from '../../src/engine/generate';
import { mergeSpans } from '../../src/swarm/swarm-model';
import { referenceIds, Swarm } from './harness';

describe('which layers a reply had checked', () => {
  it('joins touching spans, in order', () => {
    expect(mergeSpans([{ start: 3, end: 4 }, { start: 1, end: 3 }, { start: 6, end: 8 }])).toEqual([{ start: 1, end: 4 }, { start: 6, end: 8 }]);
    expect(mergeSpans([])).toEqual([]);
  });

  let swarm: Swarm;
  let ref: number[];
  beforeAll(async () => {
    ref = await referenceIds();
    swarm = await Swarm.start('test-reply-checks');
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 2, end: 5 }); // alone on its layers, for now
  });
  afterAll(async () => {
    await swarm?.stop();
  });

  it('layers with one host are named unchecked; once a second host serves them, the reply is checked; checks off says so', async () => {
    const c = await swarm.client();
    await swarm.settle(3);
    const gen = async () => {
      const mark = c.model.checksMark();
      const res = await drain(generateTokens(c.model, { inputIds: [1], maxTokens: 16, temperature: 0, ignoreEos: true }));
      expect(res.outputIds).toEqual(ref.slice(0, 16));
      return c.model.replyChecks(mark);
    };
    const first = await gen();
    console.log(`one host for layers 2-4: ${JSON.stringify(first)}`);
    expect(first.state).toBe('unchecked');
    expect(first.unchecked).toEqual([{ start: 2, end: 5 }]);
    expect(first.checks).toBeGreaterThanOrEqual(1); // layers 0-1 were checked against their second host

    await swarm.host({ start: 2, end: 5 });
    await swarm.settle(4);
    const second = await gen();
    console.log(`two hosts for every layer: ${JSON.stringify(second)}`);
    expect(second).toMatchObject({ state: 'checked', unchecked: [] });
    expect(second.checks).toBeGreaterThanOrEqual(2); // each hop at least on its first step

    const off = await swarm.client({ checks: { rate: 0, atEnd: false, tolerance: 5e-3 } });
    const mark = off.model.checksMark();
    expect((await drain(generateTokens(off.model, { inputIds: [1], maxTokens: 8, temperature: 0, ignoreEos: true }))).outputIds).toEqual(ref.slice(0, 8));
    expect(off.model.replyChecks(mark)).toEqual({ state: 'off', checks: 0, unchecked: [] });
  }, 120_000);
});
