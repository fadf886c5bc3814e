// Identities and signed records with real WebCrypto keys, the attacker's side included: a peer id follows from its key;
// a record verifies only when its owner signed exactly it, its id is its key's and its key carries the swarm's proof
// of work; a forged record for an honest host's id (other span, other hash, higher throughput, longer expiry) is
// refused, and so is every tampering; an old record replayed loses to the newer one; departures are signed too.
// Also what a public identity costs (the proof of work), measured.

import { describe, expect, it } from 'vitest';
import { fromBase64url, toBase64url } from '../../src/swarm/base64url';
import { findNonce, Identity, keyIdOf, peerIdOf, powValid, preferredAlg, PUBLIC_POW_BITS } from '../../src/swarm/identity';
import { RecordTable } from '../../src/swarm/record-table';
import { parseRecord, signDeparture, signRecord, verifyDeparture, verifyRecord, type PeerRecord, type RecordFields } from '../../src/swarm/records';

const FIELDS: RecordFields = { modelHash: 'ab'.repeat(32), span: { start: 0, end: 2 }, throughput: 40, freeKv: 4096, protocolVersion: 1 };
const BITS = 8;

describe('identities', () => {
  it('Node 20 signs with Ed25519; ids come from keys; keys of both algorithms sign and verify', async () => {
    expect(await preferredAlg()).toBe('ed25519');
    for (const alg of ['ed25519', 'p256'] as const) {
      const id = await Identity.generate({ powBits: BITS, alg });
      expect(id.publicKey.length).toBe(alg === 'ed25519' ? 32 : 65);
      expect(id.id).toBe(await peerIdOf(id.public));
      expect(id.id).toMatch(/^f[0-9a-f]{32}$/);
      expect(keyIdOf(`${id.id}-2`)).toBe(id.id);
      expect(await powValid(id.public, BITS)).toBe(true);
      const r = await signRecord(id, id.id, FIELDS, Date.now() + 10_000);
      expect(await verifyRecord(r, BITS)).toBe(true);
    }
  });

  it(`a public identity's proof of work (${PUBLIC_POW_BITS} bits) is measured, and checked`, async () => {
    const id = await Identity.generate({ powBits: 0 });
    const runs: number[] = [];
    let nonce = 0;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      nonce = await findNonce({ alg: id.alg, key: crypto.getRandomValues(new Uint8Array(32)) }, PUBLIC_POW_BITS);
      runs.push(performance.now() - t0);
    }
    const median = [...runs].sort((a, b) => a - b)[1];
    console.log(`a public identity (${PUBLIC_POW_BITS} bits of work): ${runs.map((x) => x.toFixed(0)).join(', ')} ms (median ${median.toFixed(0)} ms)`);
    const proved = await findNonce(id.public, PUBLIC_POW_BITS);
    expect(await powValid({ ...id.public, nonce: proved }, PUBLIC_POW_BITS)).toBe(true);
    // nonce 0 almost never proves 17 bits; find one that does not, and it is refused
    let weak = 0;
    while (await powValid({ ...id.public, nonce: weak }, PUBLIC_POW_BITS)) weak++;
    expect(await powValid({ ...id.public, nonce: weak }, PUBLIC_POW_BITS)).toBe(false);
    void nonce;
  });
});

describe('signed records', () => {
  it('a forged record for an honest host\'s id is refused; so is every change to a signed one', async () => {
    const honest = await Identity.generate({ powBits: BITS });
    const mallory = await Identity.generate({ powBits: BITS });
    const real = await signRecord(honest, honest.id, FIELDS, Date.now() + 10_000);
    expect(await verifyRecord(real, BITS)).toBe(true);
    // Mallory signs, with her own key, a record in the honest host's name: other span, other hash, more speed, 5 min
    const forged = await signRecord(mallory, honest.id, { ...FIELDS, span: { start: 2, end: 4 }, modelHash: 'cd'.repeat(32), throughput: 99_000 }, Date.now() + 300_000);
    expect(await verifyRecord(forged, BITS)).toBe(false);
    // or she copies the honest key into it (its signature is then hers, not the key's)
    expect(await verifyRecord({ ...forged, pub: real.pub, alg: real.alg, nonce: real.nonce }, BITS)).toBe(false);
    // every field of a real record is covered by its signature
    const tampered: PeerRecord[] = [
      { ...real, span: { start: 0, end: 3 } }, { ...real, modelHash: 'cd'.repeat(32) }, { ...real, throughput: 99_000 },
      { ...real, freeKv: 1 }, { ...real, expiresAt: real.expiresAt + 60_000 }, { ...real, seq: real.seq + 1 },
      { ...real, id: mallory.id },
    ];
    for (const t of tampered) expect(await verifyRecord(t, BITS)).toBe(false);
    // a malformed signature, a key of the wrong type, a key of the wrong size
    expect(await verifyRecord({ ...real, sig: toBase64url(new Uint8Array(64)) }, BITS)).toBe(false);
    expect(parseRecord({ ...real, alg: 'rsa' }, Date.now())).toBeNull();
    expect(await verifyRecord({ ...real, alg: 'p256' }, BITS)).toBe(false);
    expect(await verifyRecord({ ...real, pub: toBase64url(new Uint8Array(31)) }, BITS)).toBe(false);
    // a swarm that asks more work than the key carries refuses the record
    expect(await verifyRecord(real, 24)).toBe(false);
    // the honest record survives a round trip through JSON and the parser
    const back = parseRecord(JSON.parse(JSON.stringify(real)), Date.now());
    expect(back).not.toBeNull();
    expect(await verifyRecord(back!, BITS)).toBe(true);
    expect(fromBase64url(real.sig)?.length).toBe(64);
  });

  it('a replayed old record loses to the newer one; a signed departure removes the key until it announces again', async () => {
    const host = await Identity.generate({ powBits: BITS });
    const now = Date.now();
    const old = await signRecord(host, host.id, FIELDS, now + 300_000);
    const fresh = await signRecord(host, host.id, { ...FIELDS, span: { start: 2, end: 4 } }, now + 10_000);
    expect(fresh.seq).toBeGreaterThan(old.seq);
    const t = new RecordTable(100);
    t.merge([fresh], now);
    t.merge([old], now); // replayed: longer expiry, older sequence
    expect(t.list(now)[0].span).toEqual({ start: 2, end: 4 });
    const d = await signDeparture(host, host.id);
    expect(await verifyDeparture(d, BITS)).toBe(true);
    expect(await verifyDeparture({ ...d, seq: d.seq + 1 }, BITS)).toBe(false);
    const other = await Identity.generate({ powBits: BITS });
    expect(await verifyDeparture(await signDeparture(other, host.id), BITS)).toBe(false); // nobody else can make a host leave
    t.depart(d, now);
    expect(t.list(now)).toEqual([]);
    t.merge([fresh], now); // an old copy from before the departure
    expect(t.list(now)).toEqual([]);
    const back = await signRecord(host, host.id, FIELDS, now + 10_000);
    t.merge([back], now);
    expect(t.list(now).map((r) => r.id)).toEqual([host.id]);
  });
});
