// PeerLink over real WebRTC on loopback (node-datachannel) with a real PeerServer, no GPU: sending waits on
// `bufferedamountlow` when the channel's buffer passes the high-water mark and every message still arrives in order;
// a peer that goes silent without closing is declared dead by the heartbeat within deadAfterMs plus one period.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Peer } from 'peerjs';
import { installNodeWebRtc } from '../../src/cli/node-webrtc';
import { startSignalServer, type SignalServer } from '../../src/cli/signal';
import type { Msg } from '../../src/swarm/protocol';
import { Identity } from '../../src/swarm/identity';
import { publicSwarm } from '../../src/swarm/swarm-config';
import { dial, openPeer, parseSignalUrl, PeerLink, type LinkAuth, type LinkOptions } from '../../src/swarm/transport';
import { TEST_POW_BITS } from './harness';

describe('PeerLink', () => {
  let server: SignalServer;
  const peers: Peer[] = [];
  let serverLinks: PeerLink[] = [];
  let a: Peer;
  let b: Peer;
  const bOpts: Partial<LinkOptions> = { heartbeatMs: 200, deadAfterMs: 1_000 };
  const SWARM = publicSwarm('test-transport', TEST_POW_BITS);
  const auths: LinkAuth[] = [];

  beforeAll(async () => {
    installNodeWebRtc();
    server = await startSignalServer(0);
    const signal = parseSignalUrl(server.url);
    for (let i = 0; i < 2; i++) {
      const identity = await Identity.generate({ powBits: SWARM.powBits });
      const r = await openPeer(signal, identity.id);
      if (r.kind !== 'open') throw new Error('no peer');
      peers.push(r.peer);
      auths.push({ identity, swarm: SWARM });
    }
    [a, b] = peers;
    // an attempt dial() gave up on and retried never opens here: it times out, which is expected, not a failure
    b.on('connection', (conn) => void PeerLink.open(conn, bOpts, auths[1]).then((l) => serverLinks.push(l), () => {}));
  });
  afterAll(async () => {
    for (const p of peers) p.destroy();
    await server?.close();
  });

  it('waits for the buffer to drain and delivers 8 MiB of tensors in order', async () => {
    serverLinks = [];
    // no heartbeat from this side during this test: its pings would count in framesOut
    const link = await dial(a, b.id, { highWaterBytes: 256 * 1024, heartbeatMs: 60_000, deadAfterMs: 120_000 }, auths[0]);
    while (serverLinks.length === 0) await new Promise((r) => setTimeout(r, 10));
    const got: number[] = [];
    serverLinks[0].onMessage((m: Msg) => {
      if (m.kind === 'forward') got.push(m.payload[0]);
    });
    const N = 128; // 128 x 64 KiB = 8 MiB, each message 2 frames under the 64 KiB frame size
    const t0 = performance.now();
    for (let i = 0; i < N; i++) {
      const payload = new Float32Array(16384).fill(i);
      void link.send({ kind: 'forward', session: 1, step: i, replay: false, pos0: i, nTokens: 1, dim: 16384, dtype: 'f32', payload });
    }
    while (got.length < N && performance.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 10));
    const ms = performance.now() - t0;
    console.log(`8 MiB in ${ms.toFixed(0)} ms (${((8 / ms) * 1000).toFixed(0)} MiB/s), ${link.counters.drains} waits on bufferedamountlow, ${link.counters.framesOut} frames`);
    expect(got).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(link.counters.drains).toBeGreaterThan(0);
    // two frames per message, plus one pong per ping the other side sent (its heartbeat runs every 200 ms)
    expect(link.counters.framesOut).toBeGreaterThanOrEqual(2 * N);
    expect(link.counters.framesOut - 2 * N).toBeLessThanOrEqual(serverLinks[0].counters.framesOut);
    link.close();
  });

  it('declares a silent peer dead by heartbeat, though its channel stays open', async () => {
    serverLinks = [];
    const link = await dial(a, b.id, { heartbeatMs: 200, deadAfterMs: 1_000 }, auths[0]);
    while (serverLinks.length === 0) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 500)); // alive: pings answered
    expect(link.isDown).toBe(false);
    const t0 = performance.now();
    serverLinks[0].mute(); // b stops answering and pinging; nothing closes
    const down = await link.closed;
    const ms = performance.now() - t0;
    console.log(`silent peer declared dead after ${ms.toFixed(0)} ms (${down.message})`);
    expect(down.reason).toBe('heartbeat');
    expect(ms).toBeGreaterThan(700);
    expect(ms).toBeLessThan(1_000 + 2 * 200 + 300);
  });
});
