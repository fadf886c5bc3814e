// The swarm end to end: a real PeerServer, real WebRTC over loopback (node-datachannel), real WebGPU (Dawn on
// SwiftShader). Three hosts serve stories260K's 5 layers as 0:2, 2:4, 4:5 and a client decodes greedily through
// them; its ids must equal llama.cpp's (tests/fixtures/stories260K.greedy.json) with f32 frames and with f16 frames
// (rounding to f16 at every hop flips none of those 64 greedy steps; measured here, deterministic), and f16 halves
// the bytes both ways. Not here: failures (swarm-failover.test.ts), hostile peers (swarm-hostile.test.ts).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drain, generateTokens, PrefixCache } from '../../src/engine/generate';
import { DEFAULT_OWN_LAYERS } from '../../src/swarm/open-client';
import { referenceIds, Swarm } from './harness';

const N = 64;

describe('swarm: three hosts, one client', () => {
  let swarm: Swarm;
  let ref: number[];
  beforeAll(async () => {
    ref = await referenceIds();
    swarm = await Swarm.start('test-basic');
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 2, end: 4 });
    await swarm.host({ start: 4, end: 5 });
  });
  afterAll(async () => {
    await swarm?.stop();
  });

  it(`f32 frames: the first ${N} greedy ids equal llama.cpp's`, async () => {
    const c = await swarm.client();
    const t0 = performance.now();
    const res = await drain(generateTokens(c.model, { inputIds: [1], maxTokens: N, temperature: 0, ignoreEos: true }));
    const ms = performance.now() - t0;
    expect(res.outputIds).toEqual(ref.slice(0, N));
    expect(c.model.route.map((h) => [h.start, h.end])).toEqual([[0, 2], [2, 4], [4, 5]]);
    expect(c.model.reroutes).toEqual([]);
    console.log(`swarm f32: ${N} tokens in ${ms.toFixed(0)} ms (${(ms / N).toFixed(1)} ms/token), wire out ${c.model.wire.bytesOut} B, in ${c.model.wire.bytesIn} B`);
  });

  it("the client's own first and last layers (the default): hosts run layers 1..3 only, cut from their spans; llama.cpp's ids", async () => {
    const before = swarm.hosts.map((h) => h.host.stats().forwards);
    const c = await swarm.client({}, { own: DEFAULT_OWN_LAYERS });
    expect(c.model.remote).toEqual({ start: 1, end: 4 });
    const res = await drain(generateTokens(c.model, { inputIds: [1], maxTokens: 16, temperature: 0, ignoreEos: true }));
    expect(res.outputIds).toEqual(ref.slice(0, 16));
    // the host of 0:2 runs only layer 1 for this client, the host of 4:5 nothing: no host saw an embedding row or the last layer's input
    expect(c.model.route.map((h) => [h.start, h.end])).toEqual([[1, 2], [2, 4]]);
    const forwards = swarm.hosts.map((h, i) => h.host.stats().forwards - before[i]);
    expect(forwards).toEqual([16, 16, 0]);
  });
});

describe('swarm: a conversation across turns', () => {
  let swarm: Swarm;
  let ref: number[];
  beforeAll(async () => {
    ref = await referenceIds();
    swarm = await Swarm.start('test-turns');
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 2, end: 4 });
    await swarm.host({ start: 4, end: 5 });
  });
  afterAll(async () => {
    await swarm?.stop();
  });

  it("the second turn sends only its new tokens' hidden states (the sessions stay open on the hosts); llama.cpp's ids", async () => {
    const c = await swarm.client();
    const dim = c.config.dim;
    const hops = 3;
    const forward = (n: number) => n * dim * 4 + 40; // bytes of one f32 forward frame
    const cache = new PrefixCache();
    const turn = async (input: number[], maxTokens: number, withCache: PrefixCache | undefined) => {
      const out0 = c.model.wire.bytesOut;
      const tokens0 = swarm.hosts.map((h) => h.host.stats().tokens);
      const t0 = performance.now();
      const res = await drain(generateTokens(c.model, { inputIds: input, maxTokens, temperature: 0, ignoreEos: true, cache: withCache }));
      return {
        res, ms: performance.now() - t0, bytes: c.model.wire.bytesOut - out0,
        hostTokens: swarm.hosts.map((h, i) => h.host.stats().tokens - tokens0[i]),
      };
    };
    // turn 1: BOS and 10 ids, 8 generated
    const one = await turn([1, ...ref.slice(0, 10)], 8, cache);
    expect(one.res.outputIds).toEqual(ref.slice(10, 18));
    // turn 2: the whole conversation so far and 12 more ids (what a chat sends), 8 generated
    const input2 = [1, ...ref.slice(0, 30)];
    const two = await turn(input2, 8, cache);
    expect(two.res.outputIds).toEqual(ref.slice(30, 38));
    // the cache held the first 18 of its 31 positions (the last generated id of turn 1 was never run)
    expect(two.res.cachedTokens).toBe(18);
    const fresh = input2.length - 18;
    expect(two.bytes).toBe(hops * (forward(fresh) + 7 * forward(1)));
    expect(two.hostTokens).toEqual([fresh + 7, fresh + 7, fresh + 7]);
    // Regenerate: the same input again cuts the sessions back inside turn 2's prefill (the hosts rewind mid-step)
    const regen = await turn(input2, 8, cache);
    expect(regen.res.outputIds).toEqual(ref.slice(30, 38));
    expect(regen.res.cachedTokens).toBe(input2.length - 1);
    expect(regen.bytes).toBe(hops * 8 * forward(1));
    cache.clear();
    // the same turn without the cache sends the whole conversation again
    const again = await turn(input2, 8, undefined);
    expect(again.res.outputIds).toEqual(ref.slice(30, 38));
    expect(again.bytes).toBe(hops * (forward(input2.length) + 7 * forward(1)));
    console.log(`turn 2 of a swarm chat: ${two.bytes} B out in ${two.ms.toFixed(0)} ms with the sessions kept, ${again.bytes} B in ${again.ms.toFixed(0)} ms sending the whole conversation again`);
  });
});

describe('swarm: f16 frames and two clients at once', () => {
  let swarm: Swarm;
  let ref: number[];
  beforeAll(async () => {
    ref = await referenceIds();
    swarm = await Swarm.start('test-f16-two');
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 2, end: 4 });
    await swarm.host({ start: 4, end: 5 });
  });
  afterAll(async () => {
    await swarm?.stop();
  });

  it("f16 frames: half the bytes on the wire each way, and llama.cpp's 64 greedy ids", async () => {
    const c = await swarm.client({ dtype: 'f16' });
    const res = await drain(generateTokens(c.model, { inputIds: [1], maxTokens: N, temperature: 0, ignoreEos: true }));
    // f16 rounding (relative 2^-11) flips none of these 64 steps: the run is deterministic, so all must agree
    expect(res.outputIds).toEqual(ref.slice(0, N));
    // 64 positions x (dim 64 x 2 bytes + 40-byte header) x 3 hops, out and back
    const wire = N * (64 * 2 + 40) * 3;
    expect(c.model.wire.bytesOut).toBe(wire);
    expect(c.model.wire.bytesIn).toBe(wire);

    console.log(`swarm f16: ${N}/${N} ids equal the reference; wire out ${c.model.wire.bytesOut} B, in ${c.model.wire.bytesIn} B`);
  });

  it('two clients through the same hosts at once each get the reference output', async () => {
    const [a, b] = [await swarm.client(), await swarm.client()];
    const t0 = performance.now();
    const [ra, rb] = await Promise.all([
      drain(generateTokens(a.model, { inputIds: [1], maxTokens: 40, temperature: 0, ignoreEos: true })),
      drain(generateTokens(b.model, { inputIds: [1], maxTokens: 40, temperature: 0, ignoreEos: true })),
    ]);
    console.log(`two clients: 2 x 40 tokens in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(ra.outputIds).toEqual(ref.slice(0, 40));
    expect(rb.outputIds).toEqual(ref.slice(0, 40));
    // every host saw sessions from both clients, and freed them when the sequences closed
    for (const h of swarm.hosts) expect(h.host.stats().forwards).toBeGreaterThanOrEqual(2 * 40);
    await new Promise((r) => setTimeout(r, 300));
    for (const h of swarm.hosts) expect(h.host.stats()).toMatchObject({ sessions: 0, kvBytesReserved: 0 });
  });
});

describe('swarm: hosts choose their own spans', () => {
  let swarm: Swarm;
  afterAll(async () => {
    await swarm?.stop();
  });

  it("three hosts started without --layers (max 2 layers each) tile the layers clients send (1..3); 1 KiB frames; the reference ids", async () => {
    const ref = await referenceIds();
    // 1 KiB frames: a 21-token prefill (21 x 64 x 4 B = 5,376 B) travels as 6 frames each way and is reassembled
    swarm = await Swarm.start('test-placement', { maxFrameBytes: 1024 });
    const spans = [];
    for (let i = 0; i < 3; i++) {
      const h = await swarm.host(undefined, 2);
      spans.push([h.span.start, h.span.end]);
    }
    // layers 0 and 4 run on every client with the default own layers: hosts choosing their own span leave them out
    expect(spans).toEqual([[1, 3], [3, 4], [1, 3]]);
    const c = await swarm.client({ hopTimeoutMs: 15_000 }, { own: DEFAULT_OWN_LAYERS }); // the client's own first prefill compiles too
    const res = await drain(generateTokens(c.model, { inputIds: [1, ...ref.slice(0, 20)], maxTokens: 16, temperature: 0, ignoreEos: true }));
    expect(res.outputIds).toEqual(ref.slice(20, 36));
    const link = await c.discovery.connect(c.model.route[0].peer);
    expect(link.frameBytes).toBe(1024);
    expect(link.counters.framesIn).toBeGreaterThan(16 + 6); // 6 result frames for the prefill, 1 per decode step, pings
  });

  it('a self-placed host moves when its span becomes much better covered than another', async () => {
    const y = swarm.hosts[0]; // chose [1, 3), as did hosts[2]
    expect(await y.rebalance()).toBe(false); // layer 3 has one host, layers 1..2 one besides y: nothing to gain
    for (let i = 0; i < 3; i++) await swarm.host({ start: 1, end: 3 }); // [1, 3) now has 4 other hosts, [3, 4) one
    await y.discovery.waitFor((r) => r.filter((x) => x.span.start === 1 && x.span.end === 3).length >= 5, 10_000);
    expect(await y.rebalance()).toBe(true);
    expect(y.span).toEqual({ start: 3, end: 4 });
    expect(y.host.span).toEqual({ start: 3, end: 4 });
    expect(y.discovery.records().find((r) => r.id === y.peer.id)?.span).toEqual({ start: 3, end: 4 });
  });
});
