// The GGUF header read (src/model/gguf-header.ts) against @huggingface/gguf reading the whole file: on the embedded
// model, fixtures of several types, and llama.cpp's vocabulary files (headers up to a 100k-token vocabulary), the
// bytes read are exactly the header the library finds (magic to the end of the last tensor info), no read reaches
// past it, and openGguf (on files with tensors) gives the same metadata and tensors as the library's own parse. Broken headers are named
// errors.

import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import { describe, expect, it } from 'vitest';
import { GgufFormatError } from '../../src/model/errors';
import { openGguf } from '../../src/model/gguf';
import { readGgufHeader } from '../../src/model/gguf-header';
import { GgmlType } from '../../src/model/quant';
import type { ByteSource } from '../../src/model/source';
import { buildLlamaFixture } from '../helpers/llama-fixture';
import { STORIES } from '../helpers/gpu';
import { VOCAB_DIR } from '../helpers/vocab-files';

/** A source over bytes that logs every read. */
class LoggedSource implements ByteSource {
  bytesFetched = 0;
  readonly reads: [start: number, end: number][] = [];
  constructor(
    private readonly bytes: Uint8Array,
    readonly name = 'test.gguf',
  ) {}
  async size(): Promise<number> {
    return this.bytes.length;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    this.reads.push([offset, offset + length]);
    const out = this.bytes.slice(offset, offset + length);
    this.bytesFetched += out.length;
    return out;
  }
}

/** The library's own view of a file, read whole from memory. */
async function libraryParse(bytes: Uint8Array) {
  const blob = new Blob([bytes as BlobPart]);
  return gguf('https://flock.invalid/x.gguf', {
    fetch: (async (_u: unknown, init?: RequestInit) => {
      const m = /bytes=(\d+)-(\d+)/.exec(new Headers(init?.headers).get('range') ?? '')!;
      const end = Math.min(Number(m[2]), bytes.length - 1);
      return new Response(await blob.slice(Number(m[1]), end + 1).arrayBuffer(), {
        status: 206, headers: { 'content-range': `bytes ${m[1]}-${end}/${bytes.length}` },
      });
    }) as typeof fetch,
  });
}

const FILES: [string, () => Uint8Array][] = [
  ['stories260K (F32, 512-token SentencePiece vocabulary)', () => new Uint8Array(readFileSync(STORIES))],
  ['a Q4_K/Q6_K fixture', () => buildLlamaFixture({ name: 'hdr-q4k', seed: 3, type: GgmlType.Q4_K, dim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, ffn: 512, vocab: 300, ctx: 64 })],
  ...readdirSync(VOCAB_DIR).filter((f) => f.endsWith('.gguf')).map((f): [string, () => Uint8Array] => [`llama.cpp's ${f}`, () => new Uint8Array(readFileSync(path.join(VOCAB_DIR, f)))]),
];

describe('reading a GGUF header and nothing after it', () => {
  for (const [label, load] of FILES) {
    it(label, async () => {
      const bytes = load();
      const lib = await libraryParse(bytes);
      const headerEnd = lib.tensorInfoByteRange[1];
      const src = new LoggedSource(bytes);
      const header = await readGgufHeader(src, bytes.length);
      expect(header.length).toBe(headerEnd);
      expect(Buffer.from(header).equals(Buffer.from(bytes.subarray(0, headerEnd)))).toBe(true);
      expect(Math.max(...src.reads.map((r) => r[1]))).toBe(headerEnd); // no read past the header
      expect(src.bytesFetched).toBe(headerEnd); // and none twice
      console.log(`${label}: header ${headerEnd} of ${bytes.length} bytes in ${src.reads.length} reads`);
      if (lib.tensorInfos.length === 0) return; // a vocabulary-only file: nothing for openGguf to open
      // openGguf on the same bytes: the library's metadata and tensors, read without a byte of tensor data
      const opened = new LoggedSource(bytes);
      const file = await openGguf(opened);
      expect(Math.max(...opened.reads.map((r) => r[1]))).toBe(headerEnd);
      expect(file.dataOffset).toBe(Number(lib.tensorDataOffset));
      expect(Object.keys(file.metadata).sort()).toEqual(Object.keys(lib.metadata).sort());
      expect(JSON.stringify(file.metadata, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))).toBe(
        JSON.stringify(Object.fromEntries(Object.entries(lib.metadata)), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)),
      );
      expect([...file.tensors.keys()]).toEqual(lib.tensorInfos.map((t) => t.name));
    });
  }

  it('a truncated header, a file that is not GGUF, and an unknown value type are GgufFormatErrors', async () => {
    const bytes = new Uint8Array(readFileSync(STORIES));
    const headerEnd = (await libraryParse(bytes)).tensorInfoByteRange[1];
    const cut = bytes.slice(0, headerEnd - 10);
    await expect(readGgufHeader(new LoggedSource(cut), cut.length)).rejects.toThrow(/truncated/);
    const notGguf = bytes.slice();
    notGguf[0] = 0x47 ^ 0xff;
    await expect(readGgufHeader(new LoggedSource(notGguf), notGguf.length)).rejects.toBeInstanceOf(GgufFormatError);
    // the first metadata value's type (after magic, version, counts, key length and key) set to 99
    const badType = bytes.slice();
    const dv = new DataView(badType.buffer);
    const keyLen = Number(dv.getBigUint64(24, true));
    dv.setUint32(32 + keyLen, 99, true);
    await expect(readGgufHeader(new LoggedSource(badType), badType.length)).rejects.toThrow(/unknown metadata value type 99/);
  });
});
