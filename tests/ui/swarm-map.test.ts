// Unit tests (Node) of the swarm picture's data and the swarm settings: per-layer host counts and gaps (tables), the
// ICE server field, stored network settings read back field by field, and how many layers fit a memory limit
// (against stories260K's own tensor sizes).

import { describe, expect, it } from 'vitest';
import { gaps, hostCounts, hostMarks } from '../../src/ui/swarm-map';
import { defaultNetSettings, parseIceServers, parseNetSettings, PUBLIC_SIGNAL_URL } from '../../src/storage/settings';
import { InvalidArgumentError } from '../../src/model/errors';
import { openGguf } from '../../src/model/gguf';
import { openSource } from '../../src/model/source-file';
import { readConfig } from '../../src/model/config';
import { layerBytes, layerKvBytes, layersWithin } from '../../src/swarm/serve';
import { STORIES } from '../helpers/gpu';

const rec = (start: number, end: number) => ({ span: { start, end } });

describe('swarm picture data', () => {
  it.each([
    { spans: [], counts: [0, 0, 0, 0, 0], holes: [[0, 5]] },
    { spans: [[0, 2], [2, 4], [4, 5]], counts: [1, 1, 1, 1, 1], holes: [] },
    { spans: [[0, 2], [0, 2], [3, 5]], counts: [2, 2, 0, 1, 1], holes: [[2, 3]] },
    { spans: [[1, 2], [3, 4]], counts: [0, 1, 0, 1, 0], holes: [[0, 1], [2, 3], [4, 5]] },
    { spans: [[-1, 9]], counts: [1, 1, 1, 1, 1], holes: [] },
  ])('$spans -> $counts', ({ spans, counts, holes }) => {
    const c = hostCounts(5, spans.map(([a, b]) => rec(a, b)));
    expect(c).toEqual(counts);
    expect(gaps(c).map((g) => [g.start, g.end])).toEqual(holes);
  });
});

describe('how the picture marks a host', () => {
  const status = { route: [], reroutes: [], wire: { bytesOut: 0, bytesIn: 0 }, overclaimed: ['fast-talker'], failures: { dropper: 2, both: 1 } };
  it.each([
    { peer: 'steady', text: '', failures: 0, overclaims: false },
    { peer: 'dropper', text: 'failed this tab 2×', failures: 2, overclaims: false },
    { peer: 'fast-talker', text: 'slower than it claims', failures: 0, overclaims: true },
  ])('$peer: "$text"', ({ peer, text, failures, overclaims }) => {
    const m = hostMarks(peer, status);
    expect(m).toMatchObject({ text, failures, overclaims });
    expect(m.title === '').toBe(text === '');
  });
  it('says both, and why routes avoid it', () => {
    const m = hostMarks('both', { ...status, overclaimed: ['both'] });
    expect(m.text).toBe('failed this tab 1× · slower than it claims');
    expect(m.title).toContain('1 time (');
    expect(m.title).toContain('routes prefer steadier hosts');
    expect(m.title).toContain('routed as measured');
    expect(hostMarks('x', null).text).toBe('');
  });
});

describe('swarm settings', () => {
  it('parses ICE servers and names a bad line', () => {
    expect(parseIceServers('')).toEqual([]);
    expect(parseIceServers(' stun:stun.example.org:3478 \n\nturn:turn.example.org:3478 alice s3cret')).toEqual([
      { urls: 'stun:stun.example.org:3478' },
      { urls: 'turn:turn.example.org:3478', username: 'alice', credential: 's3cret' },
    ]);
    expect(() => parseIceServers('stun:a:1\nhttp://nope')).toThrow(InvalidArgumentError);
    expect(() => parseIceServers('stun:a:1\nhttp://nope')).toThrow(/line 2/);
    expect(() => parseIceServers('turn:a:1 onlyuser')).toThrow(InvalidArgumentError);
  });

  it('reads stored network settings back field by field, defaults for the rest', () => {
    const prod = defaultNetSettings(false);
    expect(prod.signalUrl).toBe(PUBLIC_SIGNAL_URL);
    expect(defaultNetSettings(true).signalUrl).toBe('ws://127.0.0.1:9000/');
    expect(parseNetSettings(undefined, prod)).toEqual(prod);
    expect(parseNetSettings({ signalUrl: 'ws://h:1/', swarm: '  ', memoryMb: -3, iceServers: 7 }, prod)).toEqual({
      ...prod, signalUrl: 'ws://h:1/',
    });
    expect(parseNetSettings({ memoryMb: 1.5, swarm: 'mine' }, prod)).toEqual({ ...prod, memoryMb: 1.5, swarm: 'mine' });
    // a new identity per chat unless the user turned it off; anything but a boolean is the default
    expect(prod.identityPerChat).toBe(true);
    expect(parseNetSettings({ identityPerChat: false }, prod).identityPerChat).toBe(false);
    expect(parseNetSettings({ identityPerChat: 'no' }, prod).identityPerChat).toBe(true);
  });
});

describe('memory limit -> layers', () => {
  it("counts stories260K's layer weights and KV cache", async () => {
    const file = await openGguf(openSource(STORIES));
    const cfg = readConfig(file);
    // dim 64, ffn 172, 4 KV heads of 8: f32 weights of one layer, and K+V of 2048 positions
    const weights = 4 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 172 + 2 * 64);
    expect(layerBytes(file, cfg, 0)).toBe(weights);
    expect(layerKvBytes(cfg, 2048)).toBe(2 * 4 * 8 * 4 * 2048);
    const per = weights + layerKvBytes(cfg, 2048);
    expect(layersWithin(file, cfg, 2 * per - 1, 2048)).toBe(1);
    expect(layersWithin(file, cfg, 2 * per, 2048)).toBe(2);
    expect(layersWithin(file, cfg, 0.5 * per, 2048)).toBe(0);
    expect(layersWithin(file, cfg, 1e12, 2048)).toBe(cfg.nLayers);
  });
});
