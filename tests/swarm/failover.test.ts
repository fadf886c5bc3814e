// Failure recovery end to end (real PeerServer, WebRTC over loopback, Dawn): a middle host killed after the 20th
// token with a spare online (ids unchanged, none lost or repeated, the re-route reported), killed with no spare
// (NoRouteError within the client's recover timeout, conversation kept), and a host that freezes without closing
// (caught by the heartbeat / hop timeout, routed around, same ids).

import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { drain, generateTokens } from '../../src/engine/generate';
import { NoRouteError } from '../../src/swarm/errors';
import type { LaunchedHost } from '../../src/cli/host';
import type { LaunchedClient } from '../../src/cli/swarm-generate';
import { referenceIds, Swarm } from './harness';

const N = 40;
const KILL_AFTER = 20;

/** Generate N greedy tokens, calling `fault` after the KILL_AFTER-th token. */
async function runWithFault(c: LaunchedClient, fault: () => void): Promise<number[]> {
  const it = generateTokens(c.model, { inputIds: [1], maxTokens: N, temperature: 0, ignoreEos: true });
  const ids: number[] = [];
  for (;;) {
    const r = await it.next();
    if (r.done) {
      expect(r.value.outputIds).toEqual(ids);
      return ids;
    }
    if (r.value.kind === 'rollback') throw new Error(`honest hosts, yet a rollback: ${JSON.stringify(r.value)}`);
    ids.push(r.value.id);
    if (ids.length === KILL_AFTER) fault();
  }
}

function middle(swarm: Swarm, c: LaunchedClient): LaunchedHost {
  const peer = c.model.route[1].peer;
  const h = swarm.hosts.find((x) => x.peer.id === peer);
  if (!h) throw new Error('middle host not found');
  return h;
}

describe('swarm failover', () => {
  let ref: number[];
  let swarm: Swarm | undefined;
  beforeAll(async () => {
    ref = await referenceIds();
  });
  afterEach(async () => {
    await swarm?.stop();
    swarm = undefined;
  });

  it('the middle host leaves after token 20, a spare takes over: same ids, one re-route reported', async () => {
    swarm = await Swarm.start('test-kill-spare');
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 2, end: 4 });
    await swarm.host({ start: 2, end: 4 }); // the spare
    await swarm.host({ start: 4, end: 5 });
    const c = await swarm.client();
    await swarm.settle(4);
    let victim = '';
    const s = swarm;
    const t0 = performance.now();
    const ids = await runWithFault(c, () => {
      const h = middle(s, c);
      victim = h.peer.id;
      h.stop();
    });
    console.log(`kill with spare: ${N} tokens in ${(performance.now() - t0).toFixed(0)} ms; reroutes ${JSON.stringify(c.model.reroutes)}`);
    expect(ids).toEqual(ref.slice(0, N));
    expect(c.model.reroutes).toHaveLength(1);
    const rr = c.model.reroutes[0];
    expect(rr.from).toBe(victim);
    expect(rr.span).toEqual({ start: 2, end: 4 });
    expect(rr.to).toHaveLength(1);
    expect(rr.to[0]).not.toBe(victim);
    expect(rr.step).toBe(KILL_AFTER); // step 0 = BOS prefill; the 20th token is fed at step 20
    expect(c.model.route[1].peer).toBe(rr.to[0]);
  });

  it('the middle host leaves with no spare: NoRouteError within the recover timeout, conversation kept', async () => {
    swarm = await Swarm.start('test-kill-nospare');
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 2, end: 4 });
    await swarm.host({ start: 4, end: 5 });
    const recoverTimeoutMs = 3_000;
    const c = await swarm.client({ recoverTimeoutMs });
    const s = swarm;
    let killedAt = 0;
    const err = await runWithFault(c, () => {
      middle(s, c).stop();
      killedAt = performance.now();
    }).catch((e: unknown) => e);
    const ms = performance.now() - killedAt;
    console.log(`kill without spare: ${err instanceof Error ? err.name : String(err)} after ${ms.toFixed(0)} ms`);
    expect(err).toBeInstanceOf(NoRouteError);
    if (!(err instanceof NoRouteError)) return;
    expect(err.missing).toEqual({ start: 2, end: 4 });
    // BOS + the 20 generated tokens fed so far
    expect(err.ids).toEqual([1, ...ref.slice(0, KILL_AFTER)]);
    // detection (a closed channel: immediate; else the 2 s heartbeat) + the recover timeout, with margin
    expect(ms).toBeLessThan(2_000 + recoverTimeoutMs + 3_000);
  });

  it('a host that stops answering without closing is detected and routed around: same ids', async () => {
    swarm = await Swarm.start('test-freeze');
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 2, end: 4 });
    await swarm.host({ start: 2, end: 4 });
    await swarm.host({ start: 4, end: 5 });
    const c = await swarm.client();
    await swarm.settle(4);
    const s = swarm;
    let frozeAt = 0;
    const ids = await runWithFault(c, () => {
      middle(s, c).host.freeze();
      frozeAt = performance.now();
    });
    console.log(`freeze: reroutes ${JSON.stringify(c.model.reroutes)}; ${(performance.now() - frozeAt).toFixed(0)} ms from freeze to the end`);
    expect(ids).toEqual(ref.slice(0, N));
    expect(c.model.reroutes).toHaveLength(1);
    expect(c.model.reroutes[0].reason).toMatch(/heartbeat|did not answer/);
  });

  it('a session the host expired while the reader paused is reopened on the same host by replay: same ids', async () => {
    swarm = await Swarm.start('test-idle');
    await swarm.host({ start: 0, end: 2 });
    const mid = await swarm.host({ start: 2, end: 4 }, undefined, { idleMs: 1_500 });
    await swarm.host({ start: 4, end: 5 });
    const c = await swarm.client();
    // warm up first: the first steps compile pipelines, which on SwiftShader can take longer than the idle timeout
    await drain(generateTokens(c.model, { inputIds: [1], maxTokens: 4, temperature: 0, ignoreEos: true }));
    const it = generateTokens(c.model, { inputIds: [1], maxTokens: 24, temperature: 0, ignoreEos: true });
    const ids: number[] = [];
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      if (r.value.kind === 'rollback') throw new Error(`honest hosts, yet a rollback: ${JSON.stringify(r.value)}`);
      ids.push(r.value.id);
      if (ids.length === 10) {
        await new Promise((res) => setTimeout(res, 3_500)); // the reader pauses; the middle session expires
        expect(mid.host.stats().sessions).toBe(0);
      }
    }
    console.log(`idle expiry: reroutes ${JSON.stringify(c.model.reroutes)}`);
    expect(ids).toEqual(ref.slice(0, 24));
    expect(c.model.reroutes).toHaveLength(1);
    expect(c.model.reroutes[0].reason).toMatch(/no-session/);
    expect(c.model.reroutes[0].to).toEqual([mid.peer.id]); // not banned: the same host, rebuilt by replay
  });
});
