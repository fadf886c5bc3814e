// The hostile signalling server (mitm-signal.ts) really sits in the middle, against real PeerJS peers and real WebRTC
// on loopback (node-datachannel), no GPU. Honest, it relays like the stock PeerServer: peers get ids, connect, and
// each end's remote DTLS fingerprint is the other end's local one; an offer to an absent id expires; a held id is
// refused. Intercepting, it answers the offer itself and dials the target as the offerer: both victims still connect
// under each other's ids and every message arrives intact both ways, yet the attacker read all of them, and each
// victim's remote fingerprint is the attacker's certificate, not the other victim's: without a defence it reads every
// message. Then the defence (src/swarm/link-auth.ts): Flock's links through it are refused on both ends with
// LinkAuthError('fingerprint'), and no hidden state ever crosses; through the honest server the same link opens.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataConnection, Peer } from 'peerjs';
import { connectRaw, dial, openPeer, parseSignalUrl, PeerLink, type LinkAuth, type SignalConfig } from '../../src/swarm/transport';
import { LinkAuthError, LinkDownError } from '../../src/swarm/errors';
import { Identity } from '../../src/swarm/identity';
import { publicSwarm } from '../../src/swarm/swarm-config';
import { TEST_POW_BITS } from './harness';
import { fingerprints } from '../helpers/fingerprints';
import { MitmSignalServer } from './mitm-signal';

/** The swarm these tests' links are in (a public one with the tests' proof of work). */
const SWARM = publicSwarm('mitm', TEST_POW_BITS);

let server: MitmSignalServer;
let signal: SignalConfig;
const peers: Peer[] = [];
/** connections each peer accepted, by peer id, in arrival order */
const accepted = new Map<string, DataConnection[]>();

async function newPeer(): Promise<Peer> {
  const r = await openPeer(signal, undefined); // a server-assigned id: GET /peerjs/id
  if (r.kind !== 'open') throw new Error('the server refused a fresh id');
  peers.push(r.peer);
  accepted.set(r.peer.id, []);
  r.peer.on('connection', (c) => accepted.get(r.peer.id)?.push(c));
  return r.peer;
}

/** A peer whose id is a fresh identity's, and how its links authenticate. */
async function identityPeer(): Promise<{ peer: Peer; auth: LinkAuth }> {
  const identity = await Identity.generate({ powBits: SWARM.powBits });
  const r = await openPeer(signal, identity.id);
  if (r.kind !== 'open') throw new Error('the server refused the id');
  peers.push(r.peer);
  return { peer: r.peer, auth: { identity, swarm: SWARM } };
}

/** The connection `to` accepted for `out` (same connection id), once both are open; null if not within `ms`. */
async function acceptedOpen(to: Peer, out: DataConnection, ms: number): Promise<DataConnection | null> {
  const t0 = performance.now();
  for (;;) {
    const inc = accepted.get(to.id)?.find((c) => c.connectionId === out.connectionId);
    if (inc?.open && out.open) return inc;
    if (performance.now() - t0 > ms) return null;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * `from` dials `to` the way Flock's transport does; both ends once open. Up to 4 tries of 3 s, like transport.ts
 * dial(): on loopback a DTLS handshake can fail when the answerer's first flight reaches the offerer before the answer
 * (and its fingerprint) does; PeerJS reports nothing and the channel never opens.
 */
async function connect(from: Peer, to: Peer): Promise<{ out: DataConnection; inc: DataConnection; tries: number }> {
  for (let tries = 1; tries <= 4; tries++) {
    const out = connectRaw(from, to.id);
    const inc = await acceptedOpen(to, out, 3_000);
    if (inc) return { out, inc, tries };
    if (out.open) out.close();
    else out.once('open', () => out.close());
  }
  throw new Error(`${from.id} could not connect to ${to.id} in 4 tries`);
}

/** n messages, different sizes (1 B to 64 KiB) and bytes per sender, and one text message in the middle. */
function messages(seed: number, n: number): (Uint8Array | string)[] {
  const sizes = [1, 7, 100, 1_000, 4_096, 16_384, 65_536];
  return Array.from({ length: n }, (_, i) =>
    i === n >> 1 ? `text ${seed}/${i}` : Uint8Array.from({ length: sizes[i % sizes.length] }, (_, j) => (seed * 131 + i * 31 + j) & 255),
  );
}

/** Send `msgs` on `from` and wait until `to` has them all (or 10 s); returns what `to` read, as bytes or text. */
async function exchange(from: DataConnection, to: DataConnection, msgs: (Uint8Array | string)[]): Promise<(Uint8Array | string)[]> {
  const got: (Uint8Array | string)[] = [];
  const onData = (d: unknown): void => {
    got.push(typeof d === 'string' ? d : d instanceof ArrayBuffer ? new Uint8Array(d) : new Uint8Array(0));
  };
  to.on('data', onData);
  for (const m of msgs) from.send(m);
  const t0 = performance.now();
  while (got.length < msgs.length && performance.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
  to.off('data', onData);
  return got;
}

beforeAll(async () => {
  server = await MitmSignalServer.start();
  signal = parseSignalUrl(server.url);
});

afterAll(async () => {
  for (const p of peers) p.destroy();
  await server?.close();
});

describe('mitm-signal, honest', () => {
  it('relays by dst: the two ends see each other\'s DTLS certificate', async () => {
    const [a, b] = [await newPeer(), await newPeer()];
    const { out, inc } = await connect(a, b);
    expect(inc.peer).toBe(a.id);
    const ab = messages(1, 14);
    const ba = messages(2, 14);
    expect(await exchange(out, inc, ab)).toEqual(ab);
    expect(await exchange(inc, out, ba)).toEqual(ba);
    const fa = fingerprints(out);
    const fb = fingerprints(inc);
    console.log(`honest: A local ${fa.local.slice(0, 23)}… = B remote ${fb.remote.slice(0, 23)}…; B local ${fb.local.slice(0, 23)}… = A remote ${fa.remote.slice(0, 23)}…`);
    expect(fa.remote).toBe(fb.local);
    expect(fb.remote).toBe(fa.local);
    expect(fa.local).not.toBe(fb.local);
    expect(server.sessions).toHaveLength(0);
    expect(server.counters.diverted).toBe(0);
    expect(server.counters.relayed).toBeGreaterThan(2); // an offer, an answer, candidates
    out.close();
  });


  it('a channel that opens before its remote description shows (Chromium under load) still authenticates; one that never shows it is refused', async () => {
    const [a, b] = [await identityPeer(), await identityPeer()];
    const refusals: unknown[] = [];
    b.peer.on('connection', (c) => void PeerLink.open(c, { openTimeoutMs: 5_000 }, b.auth).then((l) => l.close(), (e: unknown) => refusals.push(e)));
    /** a's link to b, its remote description hidden from the page for `hideMs` from the moment the channel opens */
    const openHiding = async (hideMs: number): Promise<PeerLink> => {
      for (let tries = 1; ; tries++) {
        const out = connectRaw(a.peer, b.peer.id);
        out.once('open', () => {
          // runs before PeerLink.open's own open listener: authentication starts with the description hidden
          const pc = out.peerConnection as unknown as Record<string, unknown>;
          const own = Object.getOwnPropertyDescriptor(pc, 'remoteDescription');
          Object.defineProperty(pc, 'remoteDescription', { get: () => null, configurable: true });
          setTimeout(() => {
            if (own) Object.defineProperty(pc, 'remoteDescription', own);
            else delete pc.remoteDescription;
          }, hideMs);
        });
        try {
          return await PeerLink.open(out, { openTimeoutMs: 3_000 }, a.auth);
        } catch (e) {
          // on loopback a DTLS handshake can stall (see connect above): try a fresh connection
          if (tries >= 4 || !(e instanceof LinkDownError) || e.reason !== 'open-timeout') throw e;
        }
      }
    };
    // shown 300 ms after the channel opened: the fingerprints are waited for, and both ends prove who they are
    const link = await openHiding(300);
    expect(link.remote.keyId).toBe(b.auth.identity.id);
    link.close();
    // never shown within the wait: refused as a fingerprint mismatch (an unreadable connection is never trusted)
    const err = await openHiding(10_000).then(() => null, (e: unknown) => e);
    expect(err instanceof LinkAuthError && err.code).toBe('fingerprint');
    expect(err instanceof Error && err.message).toContain('this connection shows none');
    // and the host refused it too: what a signed as our certificate was not one this connection shows
    const t0 = performance.now();
    const authRefusals = (): unknown[] => refusals.filter((e) => e instanceof LinkAuthError); // not a stalled attempt's open-timeout
    while (authRefusals().length === 0 && performance.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 10));
    console.log(`the host refused: ${refusals.map(String).join('; ')}`);
    expect(authRefusals().map((e) => e instanceof LinkAuthError && e.code)).toEqual(['fingerprint']);
  });

  it('answers an offer to an absent id with EXPIRE, and refuses an id that is held', async () => {
    const [a] = [await newPeer()];
    const t0 = performance.now();
    const auth = { identity: await Identity.generate({ powBits: SWARM.powBits }), swarm: SWARM };
    const err = await dial(a, 'nobody-here', { openTimeoutMs: 5_000 }, auth, 1).then(() => null, (e: unknown) => e);
    const ms = performance.now() - t0;
    console.log(`offer to an absent id: ${err instanceof Error ? err.message : String(err)} after ${ms.toFixed(0)} ms`);
    expect(err).toBeInstanceOf(LinkDownError);
    expect(err instanceof LinkDownError && err.reason).toBe('unavailable');
    expect(ms).toBeLessThan(2_000); // expireMs 500 plus one sweep, not the 5 s open timeout
    expect(await openPeer(signal, a.id)).toEqual({ kind: 'taken' });
  });
});

describe('mitm-signal, intercepting', () => {
  it('sits between a chosen pair: both connect and talk, the attacker reads everything, fingerprints are its own', async () => {
    const [a, b] = [await newPeer(), await newPeer()];
    server.intercept([{ kind: 'pair', a: a.id, b: b.id }]);
    const { out, inc, tries } = await connect(a, b);
    const session = await server.waitForSession((s) => s.connectionId === out.connectionId);
    await session.open();
    // each victim sees the other's id, the same connection id and label
    expect(out.peer).toBe(b.id);
    expect(inc.peer).toBe(a.id);
    expect(inc.connectionId).toBe(out.connectionId);
    expect(inc.label).toBe('flock');
    expect(inc.serialization).toBe('raw');

    const ab = messages(3, 21);
    const ba = messages(4, 21);
    expect(await exchange(out, inc, ab)).toEqual(ab);
    expect(await exchange(inc, out, ba)).toEqual(ba);
    expect(session.relayed('to-target')).toEqual(ab);
    expect(session.relayed('to-offerer')).toEqual(ba);
    const bytes = session.seen.reduce((n, r) => n + (typeof r.data === 'string' ? r.data.length : r.data.byteLength), 0);

    const fa = fingerprints(out);
    const fb = fingerprints(inc);
    const front = fingerprints(session.front!);
    const back = fingerprints(session.back!);
    console.log(
      `mitm: relayed ${session.relayed('to-target').length} A->B and ${session.relayed('to-offerer').length} B->A messages (${bytes} bytes), ` +
        `${server.counters.diverted} signalling messages diverted, ${tries} tries to connect; A remote ${fa.remote.slice(0, 23)}… (attacker front ${front.local.slice(0, 23)}…) ` +
        `vs B local ${fb.local.slice(0, 23)}…; B remote ${fb.remote.slice(0, 23)}… (attacker back ${back.local.slice(0, 23)}…) vs A local ${fa.local.slice(0, 23)}…`,
    );
    // what each victim would sign: its remote fingerprint is not the other victim's certificate...
    expect(fa.remote).not.toBe(fb.local);
    expect(fb.remote).not.toBe(fa.local);
    // ...it is the attacker's, one certificate per side, and the attacker sees the victims' real ones
    expect(fa.remote).toBe(front.local);
    expect(fb.remote).toBe(back.local);
    expect(front.remote).toBe(fa.local);
    expect(back.remote).toBe(fb.local);
    out.close();
  });

  it('takes every offer to a chosen target and no other', async () => {
    const [a, b, c] = [await newPeer(), await newPeer(), await newPeer()];
    server.intercept([{ kind: 'target', id: b.id }]);
    const before = server.sessions.length;
    const toB = await connect(c, b);
    const toA = await connect(c, a);
    const taken = server.sessions.slice(before);
    expect(taken.length).toBe(toB.tries); // each try to reach b (a failed one too), none to reach a
    expect(taken.every((s) => s.offerer === c.id && s.target === b.id)).toBe(true);
    expect(taken.at(-1)?.connectionId).toBe(toB.out.connectionId);
    expect(fingerprints(toB.out).remote).not.toBe(fingerprints(toB.inc).local);
    expect(fingerprints(toA.out).remote).toBe(fingerprints(toA.inc).local);
    toB.out.close();
    toA.out.close();
  });

  it('a Flock link through it is refused on both ends (the fingerprints its ends signed are not the ones they see)', async () => {
    const [a, b] = [await identityPeer(), await identityPeer()];
    // b serves links the way a host does: it accepts and authenticates every 'flock' connection
    const refusals: unknown[] = [];
    b.peer.on('connection', (c) => void PeerLink.open(c, { openTimeoutMs: 5_000 }, b.auth).then((l) => l.close(), (e: unknown) => refusals.push(e)));
    server.intercept([{ kind: 'all' }]);
    const err = await dial(a.peer, b.peer.id, { heartbeatMs: 100, openTimeoutMs: 5_000 }, a.auth, 4).then(() => null, (e: unknown) => e);
    const t0 = performance.now();
    while (refusals.length === 0 && performance.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 10));
    console.log(`through the attacker: ${err instanceof Error ? err.message : String(err)}; the host: ${refusals[0] instanceof Error ? refusals[0].message : String(refusals[0])}`);
    expect(err).toBeInstanceOf(LinkAuthError);
    expect(err instanceof LinkAuthError && err.code).toBe('fingerprint');
    expect(refusals[0]).toBeInstanceOf(LinkAuthError);
    expect(refusals[0] instanceof LinkAuthError && refusals[0].code).toBe('fingerprint');
    // all the attacker saw were the two authentications: no protocol frame (no hello, no hidden state) crossed
    const session = await server.waitForSession((x) => x.offerer === a.peer.id);
    const frames = [...session.relayed('to-target'), ...session.relayed('to-offerer')].filter((f) => typeof f !== 'string' && f[0] === 0xf1);
    expect(frames).toEqual([]);
    // the same two, through the honest server: the link opens and carries a forward
    server.intercept([]);
    const ok = await dial(a.peer, b.peer.id, { openTimeoutMs: 5_000 }, a.auth, 4);
    expect(ok.remote.keyId).toBe(b.auth.identity.id);
    ok.close();
  });
});
