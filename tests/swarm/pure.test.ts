// Pure functions of the swarm, with tables: routing (cheapest tiling of [0, L) by peer spans), placement (the span
// the swarm covers least), peer records (validation of hostile JSON, merge by sequence, departures), discovery
// messages and rendezvous ids, and signalling URLs. No network, no GPU (signatures: records.test.ts).

import { describe, expect, it } from 'vitest';
import { decodeTable, rendezvousId } from '../../src/swarm/discovery';
import { privateSwarm, publicSwarm, rendezvousKey } from '../../src/swarm/swarm-config';
import { chooseSpan, coverage, shouldMove } from '../../src/swarm/placement';
import { parseRecord, type PeerRecord } from '../../src/swarm/records';
import { RecordTable } from '../../src/swarm/record-table';
import { findRoute, holdsSpan, overclaims, uncovered } from '../../src/swarm/routing';
import { parseSignalUrl } from '../../src/swarm/transport';
import { blame, isDeparture, type HopContext } from '../../src/swarm/route-opener';
import { HopTimeoutError, LinkAuthError, LinkDownError, ProtocolError, RemoteError } from '../../src/swarm/errors';

const HASH = 'ab'.repeat(32);
const NOW = 1_000_000;

/** A record for routing and table tests (signatures are records.test.ts's: here only the fields matter). */
function rec(id: string, start: number, end: number, throughput = 0, expiresAt = NOW + 10_000, seq = 1): PeerRecord {
  return { id, alg: 'ed25519', pub: 'A'.repeat(43), nonce: 0, seq, modelHash: HASH, span: { start, end }, throughput, freeKv: 1000, protocolVersion: 1, expiresAt, sig: 'A'.repeat(86) };
}

describe('findRoute', () => {
  const table: { name: string; records: PeerRecord[]; rtt?: Record<string, number>; exclude?: string[]; want: string[] | null }[] = [
    { name: 'one host covering everything', records: [rec('a', 0, 5)], want: ['a'] },
    { name: 'three hosts in a chain', records: [rec('c', 4, 5), rec('a', 0, 2), rec('b', 2, 4)], want: ['a', 'b', 'c'] },
    { name: 'fewer hops win when nothing is measured', records: [rec('a', 0, 2), rec('b', 2, 5), rec('w', 0, 5)], want: ['w'] },
    { name: 'a gap: no route', records: [rec('a', 0, 2), rec('c', 3, 5)], want: null },
    { name: 'overlapping spans that do not tile: no route', records: [rec('a', 0, 3), rec('b', 2, 5)], want: null },
    { name: 'measured latency beats hop count', records: [rec('a', 0, 2), rec('b', 2, 5), rec('w', 0, 5)], rtt: { a: 1, b: 1, w: 100 }, want: ['a', 'b'] },
    { name: 'ties go to the lower id', records: [rec('y', 0, 5), rec('x', 0, 5)], want: ['x'] },
    { name: 'excluded (banned) peers are skipped', records: [rec('x', 0, 5), rec('y', 0, 5)], exclude: ['x'], want: ['y'] },
    { name: 'excluding the only host of a span: no route', records: [rec('a', 0, 2), rec('b', 2, 5)], exclude: ['b'], want: null },
    { name: 'throughput counts: a slow host loses', records: [rec('s', 0, 5, 10), rec('f', 0, 5, 1000)], want: ['f'] },
  ];
  for (const t of table) {
    it(t.name, () => {
      const r = findRoute(t.records, 0, 5, { rttMs: t.rtt ? new Map(Object.entries(t.rtt)) : undefined, exclude: t.exclude ? new Set(t.exclude) : undefined });
      expect(r === null ? null : r.map((h) => h.peer)).toEqual(t.want);
    });
  }

  it('routes a sub-span (re-routing one failed hop)', () => {
    const records = [rec('a', 0, 2), rec('b', 2, 4), rec('c', 2, 3), rec('d', 3, 4), rec('e', 4, 5)];
    expect(findRoute(records, 2, 4, { exclude: new Set(['b']) })?.map((h) => h.peer)).toEqual(['c', 'd']);
    expect(findRoute(records, 2, 4)?.map((h) => h.peer)).toEqual(['b']);
  });

  it("cuts hosts' spans at the route's ends (a client running its own first and last layers), never inside", () => {
    const records = [rec('a', 0, 2), rec('b', 2, 4), rec('c', 4, 5)];
    expect(findRoute(records, 1, 4)?.map((h) => [h.peer, h.span.start, h.span.end])).toEqual([['a', 1, 2], ['b', 2, 4]]);
    expect(findRoute([rec('w', 0, 5)], 1, 4)?.map((h) => [h.peer, h.span.start, h.span.end])).toEqual([['w', 1, 4]]);
    // inside a route hosts still run whole spans: 0:3 then 2:5 do not chain into 1..4
    expect(findRoute([rec('a', 0, 3), rec('b', 2, 5)], 1, 4)).toBeNull();
    expect(holdsSpan({ start: 0, end: 2 }, { start: 1, end: 2 })).toBe(true);
    expect(holdsSpan({ start: 0, end: 2 }, { start: 1, end: 3 })).toBe(false);
    expect(holdsSpan({ start: 0, end: 2 }, { start: 1, end: 1 })).toBe(false);
  });

  it('uncovered names the first missing layers', () => {
    expect(uncovered([rec('a', 0, 2), rec('c', 4, 5)], 0, 5)).toEqual({ start: 2, end: 4 });
    expect(uncovered([rec('a', 0, 5)], 0, 5)).toBeNull();
    expect(uncovered([rec('a', 0, 5)], 0, 5, new Set(['a']))).toEqual({ start: 0, end: 5 });
  });
});

describe('overclaims', () => {
  // [claimed tokens/s, measured ms per step through the host, ping round trip ms, marked]
  const table: [number, number, number, boolean][] = [
    [90_000, 5, 3, true], // 0.011 ms claimed: a slow ping does not excuse it
    [90_000, 5, 30, false], // the whole step is network: nothing left to judge the claim by
    [100, 12, 3, false], // 10 ms claimed, 9 ms of compute measured
    [100, 44, 3, true], // 41 ms of compute against 10 ms claimed: past the x4 margin
    [1_000, 4.5, 0.4, true],
    [1_000, 4.3, 0.4, false],
    [0, 1_000, 0, false], // no claim, nothing to mark
  ];
  it.each(table)('claim %d tok/s, measured %d ms with %d ms of round trip: marked %s', (tps, ms, rtt, want) => {
    expect(overclaims(rec('h', 0, 5, tps), ms, rtt)).toBe(want);
  });
});

describe('chooseSpan', () => {
  const table: { name: string; n: number; max: number; records: PeerRecord[]; want: [number, number] }[] = [
    { name: 'empty swarm: start at 0', n: 5, max: 2, records: [], want: [0, 2] },
    { name: 'the first layers are taken: take the next', n: 5, max: 2, records: [rec('a', 0, 2)], want: [2, 4] },
    { name: 'only the tail is missing: the window starts at the last boundary', n: 5, max: 2, records: [rec('a', 0, 2), rec('b', 2, 4)], want: [4, 5] },
    { name: 'a window ends at a boundary so routes can tile', n: 6, max: 3, records: [rec('a', 0, 2), rec('b', 4, 6)], want: [2, 4] },
    { name: 'three hosts of max 2 layers tile 5 layers', n: 5, max: 2, records: [rec('a', 0, 2)], want: [2, 4] },
    { name: 'maxLayers above the model: the whole model', n: 5, max: 9, records: [rec('a', 0, 5)], want: [0, 5] },
    { name: 'weakest layer by throughput', n: 4, max: 2, records: [rec('a', 0, 2, 100), rec('b', 2, 4, 5)], want: [2, 4] },
    { name: 'everything covered once: the least summed coverage', n: 6, max: 2, records: [rec('a', 0, 6), rec('b', 0, 3)], want: [3, 5] },
  ];
  for (const t of table) {
    it(t.name, () => {
      const s = chooseSpan(t.n, t.max, t.records);
      expect([s.start, s.end]).toEqual(t.want);
    });
  }
  it('coverage adds throughputs; an unmeasured host counts as the median measured one (1 when none is)', () => {
    expect(coverage(4, [rec('a', 0, 2), rec('b', 1, 4, 3)])).toEqual([3, 6, 3, 3]);
    expect(coverage(4, [rec('a', 0, 2), rec('b', 1, 4)])).toEqual([1, 2, 1, 1]);
  });
  it('within a range (the layers clients send to hosts), spans start at its start and stay inside it', () => {
    const range = { start: 1, end: 4 };
    expect(chooseSpan(5, 2, [], range)).toEqual({ start: 1, end: 3 });
    expect(chooseSpan(5, 2, [rec('a', 1, 3)], range)).toEqual({ start: 3, end: 4 });
    expect(chooseSpan(5, 9, [], range)).toEqual({ start: 1, end: 4 });
    // a host outside the range (0:5, started with --layers) counts for the layers inside it
    expect(chooseSpan(5, 2, [rec('a', 0, 5), rec('b', 1, 3)], range)).toEqual({ start: 3, end: 4 });
    expect(() => chooseSpan(5, 2, [], { start: 3, end: 3 })).toThrow(/not a part/);
    // moving compares the best span over its own length (a shorter window at the range's end)
    expect(shouldMove(5, { start: 1, end: 3 }, [rec('a', 1, 3), rec('b', 1, 3), rec('d', 1, 3), rec('c', 3, 4)], range)).toEqual({ start: 3, end: 4 });
    expect(shouldMove(5, { start: 1, end: 3 }, [rec('a', 1, 3), rec('c', 3, 4)], range)).toBeNull();
  });
  it('moves only when the best span is covered less than half as well', () => {
    expect(shouldMove(4, { start: 0, end: 2 }, [rec('a', 0, 2), rec('b', 0, 2), rec('c', 2, 4)])).toBeNull(); // 2 vs 1
    expect(shouldMove(4, { start: 0, end: 2 }, [rec('a', 0, 2), rec('b', 0, 2), rec('c', 0, 2)])).toEqual({ start: 2, end: 4 });
  });
});

describe('peer records', () => {
  const good = rec('f0123456789abcdef0123456789abcdef', 0, 2, 12.5, NOW + 1000, 7);
  const bad: [string, unknown][] = [
    ['null', null],
    ['an array', [good]],
    ['a missing id', { ...good, id: undefined }],
    ['an id with spaces', { ...good, id: 'a b' }],
    ['a 200-character id', { ...good, id: 'x'.repeat(200) }],
    ['a short hash', { ...good, modelHash: 'abc' }],
    ['an upper-case hash', { ...good, modelHash: 'AB'.repeat(32) }],
    ['a reversed span', { ...good, span: { start: 2, end: 1 } }],
    ['a fractional span', { ...good, span: { start: 0.5, end: 2 } }],
    ['a span past maxLayers', { ...good, span: { start: 0, end: 5000 } }],
    ['a string span', { ...good, span: '0:2' }],
    ['NaN throughput', { ...good, throughput: Number.NaN }],
    ['negative free KV', { ...good, freeKv: -1 }],
    ['protocol version 0', { ...good, protocolVersion: 0 }],
    ['a claimed throughput above 100,000 tokens/s', { ...good, throughput: 1e9 }],
    ['free KV above 2^26 positions', { ...good, freeKv: 2 ** 30 }],
    ['an unknown key type', { ...good, alg: 'rsa' }],
    ['a public key that is not base64url', { ...good, pub: 'not base64!' }],
    ['a signature that is not base64url', { ...good, sig: '***' }],
    ['a fractional sequence', { ...good, seq: 1.5 }],
    ['a negative nonce', { ...good, nonce: -1 }],
    ['an expired record', { ...good, expiresAt: NOW - 1 }],
    ['an Infinity expiry', { ...good, expiresAt: Number.POSITIVE_INFINITY }],
  ];
  for (const [name, x] of bad) it(`rejects ${name}`, () => expect(parseRecord(x, NOW)).toBeNull());

  it('accepts a good record and caps its lifetime at 5 minutes', () => {
    expect(parseRecord(good, NOW)).toEqual(good);
    expect(parseRecord({ ...good, expiresAt: NOW + 1e9 }, NOW)?.expiresAt).toBe(NOW + 5 * 60_000);
  });

  it('the record table keeps the higher sequence: a replayed old record changes nothing', () => {
    const t = new RecordTable(100);
    expect(t.merge([rec('a', 0, 1, 0, NOW + 100, 5), rec('b', 0, 1, 0, NOW + 100, 5)], NOW)).toBe(true);
    expect(t.merge([rec('a', 0, 2, 0, NOW + 5_000, 4)], NOW)).toBe(false); // older news (a lower sequence), later expiry: ignored
    expect(t.list(NOW).find((r) => r.id === 'a')?.span.end).toBe(1);
    expect(t.merge([rec('a', 0, 1, 0, NOW + 150, 6)], NOW)).toBe(false); // a refresh: the same news
    expect(t.merge([rec('a', 0, 3, 0, NOW + 500, 7)], NOW + 200)).toBe(true); // b expired by now
    expect(t.list(NOW + 200).map((r) => r.id)).toEqual(['a']);
    expect(t.list(NOW + 200)[0].span.end).toBe(3);
  });

  it('a full table makes room by dropping the stalest record (signed longest ago); a flood cannot lock a refresh out', () => {
    const t = new RecordTable(3);
    t.merge([rec('a', 0, 1, 0, NOW + 100, 10), rec('b', 0, 1, 0, NOW + 300, 30), rec('c', 0, 1, 0, NOW + 200, 20)], NOW);
    t.merge([rec('d', 0, 1, 0, NOW + 100, 40)], NOW); // a, the stalest, makes room
    expect(t.list(NOW).map((r) => r.id).sort()).toEqual(['b', 'c', 'd']);
    t.merge([rec('e', 0, 1, 0, NOW + 9_000, 5)], NOW); // staler than all of them: not taken, however long it lives
    expect(t.list(NOW).map((r) => r.id).sort()).toEqual(['b', 'c', 'd']);
    t.merge([rec('c', 0, 1, 0, NOW + 900, 21)], NOW); // a refresh of a known record always gets in
    expect(t.list(NOW).find((r) => r.id === 'c')?.expiresAt).toBe(NOW + 900);
  });

  it('a departure drops the record and keeps older copies out, but not a later announcement', () => {
    const t = new RecordTable(100);
    t.merge([rec('a', 0, 1, 0, NOW + 100, 3), rec('b', 0, 1, 0, NOW + 100)], NOW);
    const d = { id: 'a', alg: 'ed25519' as const, pub: 'A'.repeat(43), nonce: 0, seq: 4, sig: '' };
    expect(t.depart(d, NOW + 10)).toBe(true);
    expect(t.list(NOW + 10).map((r) => r.id)).toEqual(['b']);
    t.merge([rec('a', 0, 1, 0, NOW + 100, 3)], NOW + 20); // an old copy still in gossip
    expect(t.list(NOW + 20).map((r) => r.id)).toEqual(['b']);
    // another table hears the departure from a rendezvous
    const u = new RecordTable(100);
    u.merge([rec('a', 0, 1, 0, NOW + 100, 3)], NOW);
    for (const x of t.departures(NOW + 30)) u.depart(x, NOW + 30);
    expect(u.list(NOW + 30)).toEqual([]);
    // back again: a record with a higher sequence than the departure is taken
    t.merge([rec('a', 0, 1, 0, NOW + 5_000, 5)], NOW + 40);
    expect(t.list(NOW + 40).map((r) => r.id).sort()).toEqual(['a', 'b']);
  });

  it('discovery messages: garbage yields nothing, good records and departures parse', () => {
    const enc = (x: unknown): ArrayBuffer => new TextEncoder().encode(JSON.stringify(x)).buffer;
    const none = { records: [], gone: [] };
    expect(decodeTable('text', NOW)).toEqual(none);
    expect(decodeTable(new Uint8Array([0xff, 0xfe]).buffer, NOW)).toEqual(none);
    expect(decodeTable(enc({ records: 'x' }), NOW)).toEqual(none);
    expect(decodeTable(new ArrayBuffer(70_000), NOW)).toEqual(none);
    expect(decodeTable(enc({ v: 2, records: [good, { bad: 1 }] }), NOW)).toEqual({ records: [good], gone: [] });
    const d = { id: 'a', alg: 'ed25519', pub: 'A'.repeat(43), nonce: 0, seq: 4, sig: 'A'.repeat(86) };
    const gone = [{ ...d, gone: true }, { ...d, id: 'b c', gone: true }, { ...d, seq: -1, gone: true }, d];
    expect(decodeTable(enc({ v: 2, records: [], gone }), NOW).gone).toEqual([d]);
  });

  it('rendezvous ids are stable, short, per swarm and per epoch; a private swarm\'s come from its secret', async () => {
    const k = await rendezvousKey(publicSwarm('stories'));
    expect(k).toMatch(/^[0-9a-f]{16}$/);
    expect(await rendezvousKey(publicSwarm('stories'))).toBe(k);
    expect(await rendezvousKey(publicSwarm('other'))).not.toBe(k);
    expect(rendezvousId(k, 2950, 2)).toBe(`flock-${k}-2950-rv-2`);
    const secret = new Uint8Array(32).fill(7);
    const p = await rendezvousKey(privateSwarm('stories', secret));
    expect(p).toMatch(/^[0-9a-f]{16}$/);
    expect(p).not.toBe(k); // not the public swarm of that name: outsiders cannot compute it
    expect(await rendezvousKey(privateSwarm('stories', new Uint8Array(32).fill(8)))).not.toBe(p);
  });
});

describe('parseSignalUrl', () => {
  const table: [string, { host: string; port: number; path: string; secure: boolean }][] = [
    ['ws://127.0.0.1:9000/', { host: '127.0.0.1', port: 9000, path: '/', secure: false }],
    ['wss://peers.example.org/flock', { host: 'peers.example.org', port: 443, path: '/flock', secure: true }],
    ['http://localhost:9000', { host: 'localhost', port: 9000, path: '/', secure: false }],
  ];
  for (const [url, want] of table) it(url, () => expect(parseSignalUrl(url)).toMatchObject(want));
  it('rejects other schemes and non-URLs', () => {
    expect(() => parseSignalUrl('ftp://x')).toThrow(/ws:\/\//);
    expect(() => parseSignalUrl('not a url')).toThrow(/not a URL/);
  });
});

describe('how a failed host counts (route-opener.ts isDeparture: left out until it announces again, or banned)', () => {
  it('gone, full, closing as it opened, or a path whose fingerprints do not cross: left out; a bad key or protocol: banned', () => {
    const gone = [
      new LinkDownError('closed', 'p', 'x'), new LinkDownError('unavailable', 'p', 'x'), new LinkDownError('leaving', 'p', 'x'),
      new RemoteError('shutting-down', 'p', 'x'), new RemoteError('busy', 'p', 'x'),
      new LinkAuthError('no-auth', 'p', 'closed the link before authenticating'), new LinkAuthError('fingerprint', 'p', 'x'),
    ];
    const banned = [
      new LinkAuthError('wrong-key', 'p', 'x'), new LinkAuthError('bad-signature', 'p', 'x'), new LinkAuthError('pow', 'p', 'x'),
      new LinkAuthError('not-member', 'p', 'x'), new LinkDownError('protocol', 'p', 'x'), new ProtocolError('bad-field', 'x'), new HopTimeoutError('no answer in 5000 ms'),
    ];
    expect(gone.map(isDeparture)).toEqual(gone.map(() => true));
    expect(banned.map(isDeparture)).toEqual(banned.map(() => false));
  });

  it('remembered as a failure: a ban, a session dropped; not: a host full, unreachable, or one that expired an idle session', () => {
    const calls: string[] = [];
    const ctx = {
      ban: (p: string) => calls.push(`ban ${p}`),
      markGone: (p: string, failure: boolean) => calls.push(`gone ${p}${failure ? ' failure' : ''}`),
    } as unknown as HopContext;
    blame(ctx, 'a', new LinkDownError('closed', 'a', 'x')); // a session's link dropped
    blame(ctx, 'b', new LinkDownError('unavailable', 'b', 'x'), false); // could not be reached
    blame(ctx, 'c', new LinkAuthError('fingerprint', 'c', 'x'), false); // a path in the middle
    blame(ctx, 'd', new RemoteError('kv-full', 'd', 'x')); // full
    blame(ctx, 'e', new RemoteError('no-session', 'e', 'x')); // expired an idle session
    blame(ctx, 'f', new HopTimeoutError('no answer'));
    blame(ctx, 'g', new RemoteError('shutting-down', 'g', 'x')); // left mid-reply
    expect(calls).toEqual(['gone a failure', 'gone b', 'gone c', 'gone d', 'ban f', 'gone g failure']);
  });
});
