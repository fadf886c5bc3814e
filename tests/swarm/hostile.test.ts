// A hostile peer against a real host (PeerServer, WebRTC over loopback, Dawn): malformed frames of every sort, a
// frame claiming gigabytes, a replayed step, a flood. Each is rejected, the sender is disconnected and banned, the
// host keeps serving an honest client's session with the reference output at the same time, and its memory stays
// bounded (its own buffered-bytes counter, and the process's heap). And the other way round: a host that answers with
// a result larger than the model allows is cut off by the client's limits (the model's, the same in the page:
// tests/e2e/swarm-client.test.ts) at its first frame, and the reply re-routes to an honest host; so is one streaming
// results nobody asked for. A host that never answers holds a generation no longer than its deadlines, and Stop ends
// a generation at once even while the client waits for a replacement.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drain, generateTokens } from '../../src/engine/generate';
import { encodeControl, encodeTensor, HEADER_BYTES, KIND_CODE, PROTOCOL_VERSION } from '../../src/swarm/protocol';
import { Identity } from '../../src/swarm/identity';
import { connectRaw, dial, openPeer, PeerLink } from '../../src/swarm/transport';
import type { LaunchedHost } from '../../src/cli/host';
import { ANNOUNCE_MS, FAST_LINK, referenceIds, Swarm } from './harness';
import { startRogueHost } from './rogue-host';

const DIM = 64; // stories260K

function forwardFrame(session: number, step: number, pos0: number, opts: { nTokens?: number; dim?: number; replay?: boolean } = {}): ArrayBuffer {
  const nTokens = opts.nTokens ?? 1;
  const dim = opts.dim ?? DIM;
  const payload = new Float32Array(nTokens * dim).fill(0.25);
  const frames = encodeTensor({ kind: 'forward', session, step, replay: opts.replay ?? false, pos0, nTokens, dim, dtype: 'f32', payload }, 1 << 20, { ...defaultLimits() });
  return frames[0];
}

function defaultLimits() {
  return { maxFrameBytes: 4 << 20, maxTokens: 4096, maxDim: 16384, maxMessageBytes: 64 << 20, maxLayers: 1024, maxContextTokens: 1 << 20, maxPeerIdBytes: 128, maxErrorMessageBytes: 1024 };
}

function openFrame(session: number, start = 0, end = 5, maxTokens = 64): ArrayBuffer {
  return encodeControl({ kind: 'open', session, span: { start, end }, maxTokens });
}

/** Hostile payloads, each sent by a fresh peer (the previous one is banned). */
const ATTACKS: { name: string; frames: () => (ArrayBuffer | string)[] }[] = [
  { name: 'a text message', frames: () => ['{"kind":"forward"}'] },
  { name: 'a short frame (10 bytes)', frames: () => [new ArrayBuffer(10)] },
  {
    name: 'an unknown kind byte (77)',
    frames: () => {
      const b = new ArrayBuffer(HEADER_BYTES);
      const v = new DataView(b);
      v.setUint8(0, 0xf1); v.setUint8(1, PROTOCOL_VERSION); v.setUint8(2, 77); v.setUint16(6, 1, true); v.setUint32(8, HEADER_BYTES, true);
      return [b];
    },
  },
  {
    name: 'a forward whose payload is shorter than its header says',
    frames: () => [openFrame(1), forwardFrame(1, 0, 0).slice(0, 40 + 100)],
  },
  {
    name: 'NaN in a payload',
    frames: () => {
      const f = forwardFrame(1, 0, 0);
      new Float32Array(f, 40, DIM)[7] = Number.NaN;
      return [openFrame(1), f];
    },
  },
  {
    name: 'a frame claiming 4 GB',
    frames: () => {
      const f = forwardFrame(1, 0, 0);
      new DataView(f).setUint32(8, 0xffffffff, true); // frame length
      return [openFrame(1), f];
    },
  },
  {
    name: 'a tensor claiming 1M tokens x 16384 dims (chunk 0 of many)',
    frames: () => {
      const f = forwardFrame(1, 0, 0);
      const v = new DataView(f);
      v.setUint32(24, 1 << 20, true); // nTokens
      v.setUint32(28, 16384, true); // dim
      v.setUint16(6, 0xffff, true); // chunk count
      return [openFrame(1), f];
    },
  },
  { name: 'the wrong hidden size (dim 128)', frames: () => [openFrame(1), forwardFrame(1, 0, 0, { dim: 128 })] },
  { name: 'too many tokens for the host (65)', frames: () => [openFrame(1), forwardFrame(1, 0, 0, { nTokens: 65 })] },
  { name: 'a replayed step without the replay flag', frames: () => [openFrame(1), forwardFrame(1, 0, 0), forwardFrame(1, 1, 1), forwardFrame(1, 1, 2)] },
  { name: 'a step gap (0 then 5)', frames: () => [openFrame(1), forwardFrame(1, 0, 0), forwardFrame(1, 5, 1)] },
  { name: 'a result sent to a host', frames: () => [encodeTensor({ kind: 'forward', session: 1, step: 0, replay: false, pos0: 0, nTokens: 1, dim: DIM, dtype: 'f32', payload: new Float32Array(DIM) })[0]].map((f) => { new DataView(f).setUint8(2, KIND_CODE.result); return f; }) },
  {
    name: 'first chunks of 3 chunked forwards that never complete',
    frames: () => {
      const first = (step: number): ArrayBuffer => encodeTensor({ kind: 'forward', session: 1, step, replay: false, pos0: 0, nTokens: 64, dim: DIM, dtype: 'f32', payload: new Float32Array(64 * DIM) }, 4096)[0];
      return [openFrame(1), first(0), first(1), first(2)];
    },
  },
  { name: 'a flood of 20,000 pings', frames: () => Array.from({ length: 20_000 }, (_, i) => encodeControl({ kind: 'ping', nonce: i, time: i })) },
  { name: 'a flood of 5,000 forwards for an unopened session', frames: () => Array.from({ length: 5_000 }, (_, i) => forwardFrame(9, i, i)) },
];

describe('hostile peers', () => {
  let swarm: Swarm;
  let host: LaunchedHost;
  let ref: number[];
  beforeAll(async () => {
    ref = await referenceIds();
    swarm = await Swarm.start('test-hostile');
    host = await swarm.host({ start: 0, end: 5 });
  });
  afterAll(async () => {
    await swarm?.stop();
  });

  it('every attack is rejected and banned while an honest client gets the reference output; memory stays bounded', async () => {
    const honest = await swarm.client();
    const generation = drain(generateTokens(honest.model, { inputIds: [1], maxTokens: 48, temperature: 0, ignoreEos: true }));
    const heap0 = process.memoryUsage().heapUsed;
    const rows: string[] = [];
    /** One attack from a fresh identity: whether the host counted it, how the link ended, and the peer (to check the ban). */
    const attempt = async (attack: (typeof ATTACKS)[number]) => {
      const identity = await Identity.generate({ powBits: swarm.config.powBits });
      const opened = await openPeer(swarm.signal, identity.id);
      if (opened.kind !== 'open') throw new Error('no peer');
      const peer = opened.peer;
      const auth = { identity, swarm: swarm.config };
      const link = await dial(peer, host.peer.id, { ...FAST_LINK, framesPerSecond: 1e9, burstFrames: 1e9 }, auth);
      link.onMessage(() => {}); // the host's answers are read (and ignored): an unread link hangs up on its own
      const v0 = host.host.stats().violations;
      const t0 = performance.now();
      for (const f of attack.frames()) {
        if (link.isDown) break;
        if (typeof f === 'string') link.conn.send(f);
        else await link.sendFrames([f]).catch(() => {});
      }
      const down = await Promise.race([link.closed, new Promise<null>((r) => setTimeout(() => r(null), 5_000))]);
      await new Promise((r) => setTimeout(r, 20)); // the host counts before it hangs up; let its bookkeeping settle
      return { peer, auth, down, ms: performance.now() - t0, counted: host.host.stats().violations - v0 };
    };
    for (const attack of ATTACKS) {
      let r = await attempt(attack);
      // Rarely (about 1 run in 10 of the whole suite) the attacker's own channel drops before its frames reach the
      // host; that is no test of the host, so the attack is repeated once from another fresh peer.
      if (r.counted === 0 && r.down && r.ms < 50) {
        console.log(`${attack.name}: the attacker's channel dropped after ${r.ms.toFixed(0)} ms (${r.down.message}); repeating`);
        r.peer.destroy();
        r = await attempt(attack);
      }
      const { peer, auth, down, ms, counted } = r;
      rows.push(`${attack.name}: ${down ? `hung up in ${ms.toFixed(0)} ms` : 'NOT closed'}, violations +${counted}`);
      expect(down, attack.name).not.toBeNull();
      expect(counted, attack.name).toBeGreaterThan(0);
      expect(host.host.isBanned(peer.id), attack.name).toBe(true); // by its key
      // a banned peer that reconnects is refused at once
      const again = connectRaw(peer, host.peer.id);
      const refused = await PeerLink.open(again, { ...FAST_LINK, openTimeoutMs: 3_000 }, auth).then(
        (l) => Promise.race([l.closed.then(() => true), new Promise<boolean>((res) => setTimeout(() => res(false), 3_000))]),
        () => true,
      );
      expect(refused, `${attack.name}: reconnect refused`).toBe(true);
      peer.destroy();
    }
    const res = await generation;
    global.gc?.();
    const heap1 = process.memoryUsage().heapUsed;
    const maxBuffered = host.host.stats().peakBufferedBytes;
    console.log(rows.join('\n'));
    console.log(`host buffered bytes peak ${maxBuffered} B; sessions left ${host.host.stats().sessions}; heap ${(heap0 / 2 ** 20).toFixed(1)} -> ${(heap1 / 2 ** 20).toFixed(1)} MiB`);
    expect(res.outputIds).toEqual(ref.slice(0, 48));
    expect(maxBuffered).toBeGreaterThan(0); // the chunk attack did reserve something…
    expect(maxBuffered).toBeLessThanOrEqual(2 * 64 * DIM * 4); // …within the bound: 2 x maxBatch x dim x 4 B = 32 KiB
    expect(host.host.stats().sessions).toBeLessThanOrEqual(1); // only the honest session may be left
    expect(heap1 - heap0).toBeLessThan(64 * 2 ** 20);
  });
});

describe('a host that answers with more than the model allows', () => {
  it('is cut off by the client after its first frame, before the client buffers it, and the reply re-routes', async () => {
    const swarm = await Swarm.start('test-oversize');
    try {
      const ref = await referenceIds();
      const liar = await startRogueHost({ file: swarm.file, signal: swarm.signal, swarm: swarm.config, link: swarm.link, announceMs: ANNOUNCE_MS, behaviour: 'oversize' });
      const client = await swarm.client({ recoverTimeoutMs: 20_000 });
      const generation = drain(generateTokens(client.model, { inputIds: [1], maxTokens: 24, temperature: 0, ignoreEos: true }));
      await liar.cutOff;
      // an honest host for the same layers comes online once the liar is cut off
      await swarm.host({ start: 0, end: 5 });
      const res = await generation;
      console.log(`oversized result: ${liar.framesSent()} of ${liar.framesTotal} frames sent before the client hung up; reroutes ${JSON.stringify(client.model.reroutes.map((r) => r.reason))}`);
      expect(res.outputIds).toEqual(ref.slice(0, 24));
      expect(liar.framesSent()).toBe(1); // the first frame already names a tensor larger than the model's limits
      expect(liar.framesTotal).toBe(17); // 1 MiB in frames of 64 KiB less the 40-byte header
      expect(client.model.reroutes).toHaveLength(1);
      expect(client.model.reroutes[0].from).toBe(liar.id);
      expect(client.model.reroutes[0].reason).toMatch(/protocol.*too-large/);
      expect(client.model.banned().has(liar.id)).toBe(true);
      liar.stop();
    } finally {
      await swarm.stop();
    }
  });
});

describe('a host that streams results nobody asked for', () => {
  it('is cut off at the first unrequested result, banned, and the reply re-routes to an honest host', async () => {
    const swarm = await Swarm.start('test-unrequested');
    try {
      const ref = await referenceIds();
      const liar = await startRogueHost({ file: swarm.file, signal: swarm.signal, swarm: swarm.config, link: swarm.link, announceMs: ANNOUNCE_MS, behaviour: 'unrequested' });
      const client = await swarm.client({ recoverTimeoutMs: 20_000 });
      const generation = drain(generateTokens(client.model, { inputIds: [1], maxTokens: 16, temperature: 0, ignoreEos: true }));
      await liar.cutOff;
      await swarm.host({ start: 0, end: 5 });
      const res = await generation;
      expect(res.outputIds).toEqual(ref.slice(0, 16));
      expect(liar.framesSent()).toBe(1);
      expect(client.model.reroutes).toHaveLength(1);
      expect(client.model.reroutes[0].from).toBe(liar.id);
      expect(client.model.reroutes[0].reason).toMatch(/protocol.*unrequested/);
      expect(client.model.banned().has(liar.id)).toBe(true);
      liar.stop();
    } finally {
      await swarm.stop();
    }
  });
});

describe('a host that never answers', () => {
  let swarm: Swarm;
  beforeAll(async () => {
    swarm = await Swarm.start('test-silent');
  });
  afterAll(async () => {
    await swarm?.stop();
  });

  it('cannot keep a generation past its deadlines: hop timeout, then one recovery deadline, then NoRouteError', async () => {
    const liar = await startRogueHost({ file: swarm.file, signal: swarm.signal, swarm: swarm.config, link: swarm.link, announceMs: ANNOUNCE_MS, behaviour: 'silent' });
    try {
      const hopTimeoutMs = 1_500;
      const recoverTimeoutMs = 2_000;
      const client = await swarm.client({ hopTimeoutMs, recoverTimeoutMs });
      const err = await drain(generateTokens(client.model, { inputIds: [1], maxTokens: 8, temperature: 0 })).catch((e: unknown) => e);
      const ms = performance.now() - liar.firstForwardAt(); // from the forward the host never answered
      console.log(`silent host: NoRouteError ${ms.toFixed(0)} ms after the unanswered forward (hop timeout ${hopTimeoutMs} + recovery ${recoverTimeoutMs})`);
      expect((err as Error).name).toBe('NoRouteError');
      expect(liar.forwards()).toBeGreaterThanOrEqual(1);
      expect(ms).toBeGreaterThanOrEqual(hopTimeoutMs + recoverTimeoutMs - 50);
      expect(ms).toBeLessThan(hopTimeoutMs + recoverTimeoutMs + 1_000);
    } finally {
      liar.stop();
    }
  });

  it('Stop while the client waits for a replacement returns within a second, the reply kept so far', async () => {
    const ref = await referenceIds();
    const honest = await swarm.host({ start: 0, end: 5 });
    const hopTimeoutMs = 1_000;
    const client = await swarm.client({ hopTimeoutMs, recoverTimeoutMs: 30_000 });
    const stop = new AbortController();
    const out: number[] = [];
    const generation = (async () => {
      const gen = generateTokens(client.model, { inputIds: [1], maxTokens: 200, temperature: 0, ignoreEos: true, signal: stop.signal });
      for (;;) {
        const r = await gen.next();
        if (r.done) return r.value;
        if (r.value.kind === 'rollback') throw new Error(`honest hosts, yet a rollback: ${JSON.stringify(r.value)}`);
        out.push(r.value.id);
        // a few tokens in, the only host goes away: the client waits for a replacement that never comes
        if (out.length === 4) honest.stop();
      }
    })();
    while (out.length < 4) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, hopTimeoutMs + 1_000)); // the hop failed; recovery is waiting
    const t0 = performance.now();
    stop.abort();
    const res = await generation;
    const ms = performance.now() - t0;
    console.log(`Stop during recovery: returned after ${ms.toFixed(0)} ms with ${res.outputIds.length} tokens`);
    expect(ms).toBeLessThan(1_000);
    expect(res.finishReason).toBe('abort');
    expect(res.outputIds).toEqual(ref.slice(0, res.outputIds.length));
    expect(res.outputIds.length).toBeGreaterThanOrEqual(4);
  });
});
