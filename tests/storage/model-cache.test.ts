// Unit tests (Node) of the model cache's pure parts: chunk sizes and manifest validation. Downloads, resume and
// integrity checks run against real Cache Storage and IndexedDB in tests/e2e/models.test.ts.

import { describe, expect, it } from 'vitest';
import { chunkSizeFor, parseManifest, type CachedModel } from '../../src/storage/model-cache';

const HASH = 'a'.repeat(64);

describe('model cache', () => {
  it('splits files into about 64 chunks between 64 KiB and 16 MiB', () => {
    expect(chunkSizeFor(1_185_376)).toBe(64 * 1024);
    expect(chunkSizeFor(145e6)).toBe(4 * 1024 * 1024);
    expect(chunkSizeFor(1.32e9)).toBe(16 * 1024 * 1024);
    for (const size of [1, 1000, 1_185_376, 145e6, 676e6, 1.32e9, 8e9]) {
      const cs = chunkSizeFor(size);
      expect(Number.isInteger(Math.log2(cs))).toBe(true);
      expect(Math.ceil(size / cs)).toBeLessThanOrEqual(Math.max(64, Math.ceil(size / (16 * 1024 * 1024))));
    }
  });

  it('accepts a well-formed manifest and rejects damaged ones', () => {
    const m: CachedModel = {
      id: 'x', url: 'https://h/m.gguf', name: 'm.gguf', size: 200_000, etag: '"e"', chunkSize: 65536,
      chunks: [HASH, null, HASH, HASH], complete: false, addedAt: 1, completedAt: null,
    };
    expect(parseManifest(m)).toEqual(m);
    expect(parseManifest({ ...m, chunks: [HASH] })).toBeUndefined(); // wrong chunk count for the size
    expect(parseManifest({ ...m, chunks: [HASH, 'zz', HASH, HASH] })).toBeUndefined();
    expect(parseManifest({ ...m, size: -1 })).toBeUndefined();
    expect(parseManifest('nope')).toBeUndefined();
    // "complete" is believed only when every chunk has a digest
    expect(parseManifest({ ...m, complete: true })?.complete).toBe(false);
    expect(parseManifest({ ...m, chunks: [HASH, HASH, HASH, HASH], complete: true })?.complete).toBe(true);
  });
});
