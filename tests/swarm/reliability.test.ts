// Reputation from what a client saw (reliability.ts): routing prices a host by its failures. The attacker: a host
// that serves the whole model in one hop (the cheapest route), takes every session, drops it after a few steps and
// announces itself again at once, costing every conversation a re-route. Real PeerServer, WebRTC over loopback, Dawn.

import { afterEach, describe, expect, it } from 'vitest';
import { drain, generateTokens } from '../../src/engine/generate';
import { PRIOR_POSITIONS, REROUTE_MS, Reliability } from '../../src/swarm/reliability';
import type { PeerRecord } from '../../src/swarm/records';
import { findRoute } from '../../src/swarm/routing';
import { referenceIds, Swarm } from './harness';

const rec = (id: string, start: number, end: number): PeerRecord =>
  ({ id, span: { start, end }, throughput: 0, expiresAt: 0 }) as unknown as PeerRecord;

describe('what a client remembers of failed hosts (reliability.ts)', () => {
  it('prices a failure by the positions the host served, and lets it fade by half each half-life', () => {
    let t = 0;
    const r = new Reliability(1_000, () => t);
    r.served('steady', 1_000);
    r.failed('steady');
    r.failed('flaky');
    const p = r.penaltyMs();
    expect(p.get('flaky')).toBeCloseTo(REROUTE_MS / PRIOR_POSITIONS, 6);
    expect(p.get('steady')).toBeCloseTo(REROUTE_MS / (1_000 + PRIOR_POSITIONS), 6);
    expect(p.has('never-failed')).toBe(false);
    t = 1_000; // one half-life: half the failures and half the positions
    expect(r.failures('flaky')).toBeCloseTo(0.5, 6);
    expect(r.penaltyMs().get('steady')).toBeCloseTo((REROUTE_MS * 0.5) / (500 + PRIOR_POSITIONS), 6);
    t = 20_000; // long forgotten
    expect(r.penaltyMs().size).toBe(0);
  });

  it('a host that failed loses to a steadier route while there is one, and is still used when it is the only one', () => {
    const r = new Reliability();
    const records = [rec('a-whole', 0, 4), rec('b-first', 0, 2), rec('c-second', 2, 4)];
    // one hop beats two when nothing failed
    expect(findRoute(records, 0, 4)?.map((h) => h.peer)).toEqual(['a-whole']);
    r.failed('a-whole');
    expect(findRoute(records, 0, 4, { penaltyMs: r.penaltyMs() })?.map((h) => h.peer)).toEqual(['b-first', 'c-second']);
    // alone, it is still a route
    expect(findRoute([records[0]], 0, 4, { penaltyMs: r.penaltyMs() })?.map((h) => h.peer)).toEqual(['a-whole']);
  });
});

describe('a host that drops every session and announces again', () => {
  let swarm: Swarm | undefined;
  afterEach(async () => {
    await swarm?.stop();
    swarm = undefined;
  });

  it('costs a client one re-route, not one per conversation: later routes go around it, and the ids are llama.cpp\'s', async () => {
    const ref = await referenceIds();
    swarm = await Swarm.start('test-flaky');
    // steady hosts in two hops; the flaky one serves all five layers in one, so it is the cheaper route by a hop
    await swarm.host({ start: 0, end: 2 });
    await swarm.host({ start: 2, end: 5 });
    const flaky = await swarm.host({ start: 0, end: 5 });
    // checks off: a witness for either steady span could only be the flaky host, whose sessions this test counts
    const c = await swarm.client({ checks: { rate: 0, atEnd: false, tolerance: 5e-3 } });
    await swarm.settle(3);
    const flakyId = flaky.peer.id;

    // the attacker: once a session of its has run 3 forwards, hang up every link (it keeps announcing itself)
    let hangUps = 0;
    let mark = 0;
    const watcher = setInterval(() => {
      const s = flaky.host.stats();
      if (s.sessions > 0 && s.forwards >= mark + 3) {
        flaky.host.hangUp();
        hangUps++;
        mark = s.forwards;
      }
    }, 2);
    try {
      const firstHops: string[][] = [];
      for (let conv = 0; conv < 6; conv++) {
        // wait until the client has the flaky host's fresh record (not left out as gone): only its failures can keep it off
        const t0 = performance.now();
        while (c.model.excluded(c.model.recordsFor(c.modelHash)).has(flakyId) || !c.model.recordsFor(c.modelHash).some((r) => r.id === flakyId)) {
          if (performance.now() - t0 > 10_000) throw new Error('the flaky host never announced itself again');
          await new Promise((r) => setTimeout(r, 50));
        }
        const it = generateTokens(c.model, { inputIds: [1], maxTokens: 16, temperature: 0, ignoreEos: true });
        const out = await drain(it);
        expect(out.outputIds).toEqual(ref.slice(0, 16));
        const rr = c.model.reroutes;
        firstHops.push(rr.length > 0 ? [rr[0].from] : c.model.route.map((h) => h.peer));
      }
      const penalty = c.model.penaltyMs().get(flakyId) ?? 0;
      console.log(`flaky host: ${hangUps} hang-up(s) over 6 conversations; first hop(s) ${JSON.stringify(firstHops.map((h) => h.map((p) => p.slice(0, 6))))}; its price now ${penalty.toFixed(1)} ms/token`);
      // the first conversation went through it (one hop is the cheapest route) and lost it mid-reply
      expect(firstHops[0]).toEqual([flakyId]);
      expect(hangUps).toBe(1);
      // the others were routed around it from the start, though its record was live
      for (const hops of firstHops.slice(1)) expect(hops).not.toContain(flakyId);
      expect(penalty).toBeGreaterThan(0);
    } finally {
      clearInterval(watcher);
    }
  }, 120_000);
});
