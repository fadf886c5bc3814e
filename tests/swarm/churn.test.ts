// A swarm that churns, with hosts as separate `flock host` processes (src/cli/churn.ts) on a real PeerServer and
// real WebRTC, two hosts per span of stories260K, and a client in this process:
// - one host in turn killed (SIGKILL, no goodbye) every 5 s and a replacement for its span started 1 s later, during
//   a 480-token greedy generation: the ids equal llama.cpp's, and every re-route is reported;
// - a client that starts while hosts are dying gets a route and the reference ids;
// - a host that leaves on purpose (SIGTERM) costs the client no wait beyond replaying that hop.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Churn } from '../../src/cli/churn';
import { launchClient, type LaunchedClient } from '../../src/cli/swarm-generate';
import { cleanupNodeWebRtc, installNodeWebRtc } from '../../src/cli/node-webrtc';
import { startSignalServer, type SignalServer } from '../../src/cli/signal';
import { drain, generateTokens } from '../../src/engine/generate';
import type { FlockDevice } from '../../src/gpu/device';
import { parseSignalUrl } from '../../src/swarm/transport';
import { STORIES, testDevice } from '../helpers/gpu';
import { llamaGreedy } from '../helpers/llama-ref';
import { publicSwarm } from '../../src/swarm/swarm-config';
import { TEST_POW_BITS } from './harness';

const SPANS = [{ start: 0, end: 3 }, { start: 3, end: 5 }];
const TOKENS = 480;
/**
 * The client's links: the default heartbeat (a ping a second, dead after 5 s). A killed host is found faster than
 * that by asking the signalling server (swarm-model.ts watch); a slow one on a loaded 2-core machine is not cut off.
 */
const LINK = { openTimeoutMs: 5_000 };
/** hosts announce this often (the client's records follow within a round trip of a change: rendezvous push) */
const ANNOUNCE_MS = 500;

let server: SignalServer;
let dev: FlockDevice;
let reference: number[];
const clients: LaunchedClient[] = [];
const churns: Churn[] = [];

beforeAll(async () => {
  installNodeWebRtc();
  server = await startSignalServer(0);
  dev = await testDevice();
  reference = (await llamaGreedy(STORIES, [1], TOKENS)).ids;
});

afterAll(async () => {
  for (const c of clients) c.stop();
  for (const c of churns) await c.stop();
  await server?.close();
  try {
    cleanupNodeWebRtc();
  } catch {
    // libdatachannel may time out while channels close; the test process exits anyway
  }
});

function churn(swarm: string, how: 'SIGKILL' | 'SIGTERM', killEveryMs: number): Churn {
  const c = new Churn({ model: STORIES, swarm, powBits: TEST_POW_BITS, signal: server.url, spans: SPANS, perSpan: 2, killEveryMs, replaceAfterMs: 1_000, how, announceMs: ANNOUNCE_MS, maxContext: 512 });
  churns.push(c);
  return c;
}

async function client(swarm: string): Promise<LaunchedClient> {
  const c = await launchClient({
    dev, model: STORIES, swarm: publicSwarm(swarm, TEST_POW_BITS), signal: parseSignalUrl(server.url), announceMs: ANNOUNCE_MS, link: LINK,
    swarmOptions: { maxContext: 512, hopTimeoutMs: 5_000, recoverTimeoutMs: 20_000 }, waitForRouteMs: 30_000,
  });
  clients.push(c);
  return c;
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, p50: s[Math.floor(s.length / 2)], p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))], max: s[s.length - 1] };
};

describe('a swarm that churns', () => {
  it(`a host killed every 5 s, replaced 1 s later: ${TOKENS} greedy ids equal llama.cpp's`, { timeout: 600_000 }, async () => {
    const ch = churn('churn-kill', 'SIGKILL', 5_000);
    await ch.start();
    const c = await client('churn-kill');
    ch.run();
    const t0 = performance.now();
    const res = await drain(generateTokens(c.model, { inputIds: [1], maxTokens: TOKENS, temperature: 0, ignoreEos: true })).catch((e: unknown) => {
      console.log(JSON.stringify({ failedAfterMs: Math.round(performance.now() - t0), events: ch.events, reroutes: c.model.reroutes }));
      throw e;
    });
    const ms = performance.now() - t0;
    await ch.stop();
    const reroutes = c.model.reroutes;
    console.log(JSON.stringify({ tokens: res.outputIds.length, ms: Math.round(ms), kills: ch.events.filter((e) => e.kind === 'kill').length, rerouteMs: stats(reroutes.map((r) => r.ms)), reroutes }));
    expect(res.outputIds).toEqual(reference);
    expect(ch.events.filter((e) => e.kind === 'kill').length).toBeGreaterThanOrEqual(2);
    expect(reroutes.length).toBeGreaterThanOrEqual(1);
    for (const r of reroutes) expect(r.to.length).toBeGreaterThan(0);
  });

  it('a client that starts while hosts are dying gets a route and the reference ids', { timeout: 300_000 }, async () => {
    const ch = churn('churn-start', 'SIGKILL', 5_000);
    await ch.start();
    ch.run();
    await new Promise((r) => setTimeout(r, 5_500)); // one host is dead, its replacement not yet up
    const c = await client('churn-start');
    const res = await drain(generateTokens(c.model, { inputIds: [1], maxTokens: 64, temperature: 0, ignoreEos: true }));
    await ch.stop();
    console.log(JSON.stringify({ kills: ch.events.filter((e) => e.kind === 'kill').length, reroutes: c.model.reroutes.map((r) => ({ ms: Math.round(r.ms), reason: r.reason })) }));
    expect(res.outputIds).toEqual(reference.slice(0, 64));
  });

  it('a host that leaves on purpose (SIGTERM) costs no wait beyond replaying its hop', { timeout: 300_000 }, async () => {
    const ch = churn('churn-term', 'SIGTERM', 0);
    await ch.start();
    const c = await client('churn-term');
    const it = generateTokens(c.model, { inputIds: [1], maxTokens: 96, temperature: 0, ignoreEos: true });
    const ids: number[] = [];
    let exitMs = 0;
    let r = await it.next();
    while (!r.done) {
      if (r.value.kind === 'rollback') throw new Error(`honest hosts, yet a rollback: ${JSON.stringify(r.value)}`);
      ids.push(r.value.id);
      if (ids.length === 32) {
        // the host on the route's first hop leaves on purpose, between two steps
        const t = performance.now();
        const victim = ch.hosts.find((h) => h.id === c.model.route[0].peer)!;
        ch.hosts.splice(ch.hosts.indexOf(victim), 1);
        victim.child.kill('SIGTERM');
        await new Promise((res) => victim.child.once('exit', res));
        exitMs = performance.now() - t;
      }
      r = await it.next();
    }
    await ch.stop();
    const res = r.value;
    const reroute = c.model.reroutes[0];
    console.log(`SIGTERM: the host exited in ${exitMs.toFixed(0)} ms; re-route ${JSON.stringify(reroute)}`);
    expect(res.outputIds).toEqual(reference.slice(0, 96));
    expect(c.model.reroutes).toHaveLength(1);
    // the client heard the host leave: no heartbeat or timeout wait, only reopening the span and replaying its 32
    // steps, which cost what 32 hops of a decode step cost (a step here runs two hops)
    expect(reroute.reason).toMatch(/leaving/);
    const stepMs = res.timings.decodeMs / (res.outputIds.length - 1);
    expect(reroute.ms).toBeLessThan(32 * stepMs + 500);
  });
});
