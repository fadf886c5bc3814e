// Manifests (src/model/manifest.ts, manifest-check.ts) against an oracle that shares none of their code: Node's own
// SHA-256 (node:crypto) over byte ranges of the file's raw bytes. The pinned manifest of the embedded model must equal
// one computed from the file (so the pin cannot go stale); a copy whose header matches but one bit of one layer's
// weights differs is named tensor by tensor; a check fetches only the tensors it checks (a counting Range server);
// hashing while a loader reads needs no second read; malformed manifests get ManifestError. No GPU here.

import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readConfig } from '../../src/model/config';
import { InvalidArgumentError, ManifestError, ManifestMismatchError } from '../../src/model/errors';
import { openGguf, type GgufFile } from '../../src/model/gguf';
import {
  computeManifest, headerHashOf, manifestDigest, manifestFrom, MAX_MANIFEST_CHARS, MAX_MANIFEST_TENSORS, parseManifest, pinnedManifest,
  serializeManifest, tensorRange, verifyTensors, type Manifest,
} from '../../src/model/manifest';
import { checkWhileLoading } from '../../src/model/manifest-check';
import { HttpSource } from '../../src/model/source';
import { FileSource } from '../../src/model/source-file';
import { modelHashOf } from '../../src/swarm/records';
import { PINNED_MANIFESTS } from '../../src/model/pinned-manifests';
import { startModelServer } from '../e2e/model-server';
import { STORIES } from '../helpers/gpu';
import { writePerturbedCopy, writeRenamedCopy } from '../helpers/perturb-gguf';

const SHARED_STORIES = '../shared/models/stories260K.gguf';
const PERTURBED = 'blk.3.ffn_down.weight';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let tmp = '';
let raw: Uint8Array;
let file: GgufFile;
let perturbedPath = '';
let renamedPath = '';
const sources: FileSource[] = [];

async function open(p: string): Promise<GgufFile> {
  const s = new FileSource(p);
  sources.push(s);
  return openGguf(s);
}

/** The oracle: node:crypto over the file's bytes at each tensor's range. */
function oracleTensors(bytes: Uint8Array, f: GgufFile, names: Iterable<string> = f.tensors.keys()): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of names) {
    const { offset, length } = tensorRange(f, f.tensors.get(n)!);
    out.set(n, sha(bytes.subarray(offset, offset + length)));
  }
  return out;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'flock-manifest-'));
  raw = new Uint8Array(await readFile(STORIES));
  file = await open(STORIES);
  perturbedPath = path.join(tmp, 'stories-perturbed.gguf');
  renamedPath = path.join(tmp, 'stories-renamed.gguf');
  await writePerturbedCopy(STORIES, perturbedPath, PERTURBED);
  await writeRenamedCopy(STORIES, renamedPath);
});

afterAll(async () => {
  for (const s of sources) await s.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('the manifest of a file', () => {
  it('hashes the header and every tensor as stored, as node:crypto does', async () => {
    const m = await computeManifest(file);
    expect(m.headerHash).toBe(sha(raw.subarray(0, file.dataOffset)));
    expect(m.headerHash).toBe(await modelHashOf(file)); // the hash the swarm announces
    expect(m.tensors.size).toBe(48);
    expect(new Map([...m.tensors].sort())).toEqual(new Map([...oracleTensors(raw, file)].sort()));
    // the data section is covered: every byte after the header belongs to a tensor or to alignment padding
    const covered = [...file.tensors.values()].reduce((a, t) => a + tensorRange(file, t).length, 0);
    expect(file.fileSize - file.dataOffset - covered).toBeLessThan(32 * file.tensors.size);
  });

  it('the pinned manifest of the embedded model is the one computed from the file (both copies)', async () => {
    const computed = await computeManifest(file);
    const pinned = pinnedManifest(computed.headerHash);
    expect(pinned).toBeDefined();
    expect(serializeManifest(pinned!)).toBe(serializeManifest(computed));
    expect(serializeManifest(await computeManifest(await open(SHARED_STORIES)))).toBe(serializeManifest(computed));
    const entry = PINNED_MANIFESTS.find((p) => p.manifest.headerHash === computed.headerHash)!;
    expect(entry.bytes).toBe(raw.byteLength);
  });

  it('serializes canonically: tensors sorted, any insertion order, round trip, digest of the text', async () => {
    const m = await computeManifest(file);
    const reversed: Manifest = { ...m, tensors: new Map([...m.tensors].reverse()) };
    const text = serializeManifest(m);
    expect(serializeManifest(reversed)).toBe(text);
    expect(serializeManifest(parseManifest(text))).toBe(text);
    const names = Object.keys((JSON.parse(text) as { tensors: Record<string, string> }).tensors);
    expect(names).toEqual([...names].sort());
    expect(await manifestDigest(reversed)).toBe(sha(new TextEncoder().encode(text)));
    expect(text).not.toMatch(/\s/);
  });
});

describe('checking tensors against a manifest', () => {
  it('names exactly the tensor whose bytes changed, in a copy whose header is the same', async () => {
    const bad = await open(perturbedPath);
    expect(await headerHashOf(bad)).toBe(await headerHashOf(file));
    const pinned = pinnedManifest(await headerHashOf(file))!;
    expect(await verifyTensors(bad, bad.tensors.keys(), pinned)).toEqual([PERTURBED]);
    expect(await verifyTensors(file, file.tensors.keys(), pinned)).toEqual([]);
    // a span without layer 3 matches; the Head matches
    const cfg = readConfig(bad);
    const layer = (l: number) => [...bad.tensors.keys()].filter((n) => n.startsWith(`blk.${l}.`));
    expect(await verifyTensors(bad, [...layer(0), ...layer(1), ...layer(2)], pinned)).toEqual([]);
    expect(await verifyTensors(bad, ['token_embd.weight', 'output_norm.weight', 'output.weight'], pinned)).toEqual([]);
    expect(await verifyTensors(bad, layer(3), pinned)).toEqual([PERTURBED]);
    expect(cfg.nLayers).toBe(5);
  });

  it('refuses a file whose header is not the manifest\'s, and a tensor the file lacks', async () => {
    const renamed = await open(renamedPath);
    const pinned = pinnedManifest(await headerHashOf(file))!;
    expect(pinnedManifest(await headerHashOf(renamed))).toBeUndefined();
    await expect(verifyTensors(renamed, ['output.weight'], pinned)).rejects.toBeInstanceOf(ManifestMismatchError);
    await expect(verifyTensors(file, ['blk.9.attn_q.weight'], pinned)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('fetches only the checked tensors over Range requests', async () => {
    const server = await startModelServer(raw, 'stories260K.gguf');
    try {
      const remote = await openGguf(new HttpSource(server.url));
      const names = [...remote.tensors.keys()].filter((n) => n.startsWith('blk.2.'));
      const pinned = pinnedManifest(await headerHashOf(remote))!; // the header (read at open) and its padding
      const before = server.bytesSent();
      expect(await verifyTensors(remote, names, pinned)).toEqual([]);
      const want = names.reduce((a, n) => a + tensorRange(remote, remote.tensors.get(n)!).length, 0);
      expect(server.bytesSent() - before).toBe(want);
      expect(want).toBeLessThan((raw.byteLength - remote.dataOffset) / 4);
    } finally {
      await server.close();
    }
  });
});

describe('checking while loading (manifest-check.ts)', () => {
  /** Read tensors through the check's source the way uploads do: in pieces, some overlapping, out of order. */
  async function loadLike(f: GgufFile, names: string[], piece: number): Promise<void> {
    for (const n of [...names].reverse()) {
      const { offset, length } = tensorRange(f, f.tensors.get(n)!);
      for (let o = 0; o < length; o += piece) await f.source.read(offset + o, Math.min(piece + 8, length - o));
    }
  }

  it('hashes tensors as a loader reads them, with no second read, and refuses a changed tensor by name', async () => {
    const names = [...file.tensors.keys()].filter((n) => n.startsWith('blk.3.') || n.startsWith('blk.4.'));
    const good = await checkWhileLoading(file, names);
    await loadLike(good.file, names, 4096);
    expect(await good.finish()).toBe('verified');
    expect(good.reread).toBe(0);

    const bad = await open(perturbedPath);
    const check = await checkWhileLoading(bad, names);
    const before = bad.source.bytesFetched;
    await loadLike(check.file, names, 1000);
    const err = await check.finish().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestMismatchError);
    expect((err as ManifestMismatchError).tensors).toEqual([PERTURBED]);
    expect((err as Error).message).toContain(PERTURBED);
    expect(check.reread).toBe(0);
    // the pieces overlap by 8 bytes: what was fetched is what the loader asked for, nothing more
    expect(bad.source.bytesFetched - before).toBeGreaterThan(0);
  });

  it('reads what the load skipped; serves the header from memory; an unpinned file passes as unpinned', async () => {
    const names = ['blk.0.ffn_up.weight', 'blk.0.ffn_norm.weight'];
    const check = await checkWhileLoading(file, names);
    const reopened = await openGguf(check.source); // a loader that opens the file again (LocalModel does)
    expect(reopened.dataOffset).toBe(file.dataOffset);
    const up = tensorRange(file, file.tensors.get(names[0])!);
    await check.source.read(up.offset, 100); // only a part of one tensor
    expect(await check.finish()).toBe('verified');
    expect(check.reread).toBe(up.length + tensorRange(file, file.tensors.get(names[1])!).length);

    const renamed = await open(renamedPath);
    const unpinned = await checkWhileLoading(renamed, renamed.tensors.keys());
    expect(unpinned.manifest).toBeUndefined();
    expect(await unpinned.finish()).toBe('unpinned');
  });

  it('a manifest given for another header is refused before loading', async () => {
    const renamed = await open(renamedPath);
    const pinned = pinnedManifest(await headerHashOf(file))!;
    await expect(checkWhileLoading(renamed, ['output.weight'], { manifest: pinned })).rejects.toBeInstanceOf(ManifestMismatchError);
  });
});

describe('malformed manifests', () => {
  const H = 'a'.repeat(64);
  const ok = { version: 1, headerHash: H, tensors: { 'blk.0.attn_q.weight': 'b'.repeat(64) } };
  it('accepts a well-formed one', () => {
    expect(manifestFrom(ok).tensors.get('blk.0.attn_q.weight')).toBe('b'.repeat(64));
  });
  const bad: [string, unknown][] = [
    ['not an object', [ok]],
    ['null', null],
    ['another version', { ...ok, version: 2 }],
    ['a missing version', { headerHash: H, tensors: ok.tensors }],
    ['an extra field', { ...ok, signature: 'x' }],
    ['a short header hash', { ...ok, headerHash: 'a'.repeat(63) }],
    ['an upper-case header hash', { ...ok, headerHash: 'A'.repeat(64) }],
    ['a non-hex header hash', { ...ok, headerHash: 'g'.repeat(64) }],
    ['tensors as an array', { ...ok, tensors: [['blk.0.attn_q.weight', 'b'.repeat(64)]] }],
    ['no tensors', { ...ok, tensors: {} }],
    ['a tensor hash too long', { ...ok, tensors: { t: 'b'.repeat(65) } }],
    ['a tensor hash that is a number', { ...ok, tensors: { t: 5 } }],
    ['an empty tensor name', { ...ok, tensors: { '': 'b'.repeat(64) } }],
    ['a tensor name too long', { ...ok, tensors: { ['x'.repeat(257)]: 'b'.repeat(64) } }],
    ['too many tensors', { ...ok, tensors: Object.fromEntries(Array.from({ length: MAX_MANIFEST_TENSORS + 1 }, (_, i) => [`t${i}`, 'b'.repeat(64)])) }],
  ];
  it.each(bad)('refuses %s with ManifestError', (_, x) => {
    expect(() => manifestFrom(x)).toThrow(ManifestError);
  });
  it('refuses text that is not JSON, or longer than any manifest, before parsing', () => {
    expect(() => parseManifest('{"version":1,')).toThrow(ManifestError);
    expect(() => parseManifest(' '.repeat(MAX_MANIFEST_CHARS + 1))).toThrow(/longer than any real one/);
  });
});
