// A Stage loaded over http fetches only its own layers: a multi-megabyte Llama is served from 127.0.0.1 by a server
// that honours Range and counts every body byte it sends; a GpuStage for layers [a, b) loaded through HttpSource
// makes the server send no more than the header parse's reads plus the exact byte sizes of those layers' tensors, and
// it computes bit for bit what the same Stage loaded from the file computes. A BlobSource load of the same bytes
// works the same way.
// Not here: what a Stage computes (tests/gpu) or failing sources (tests/engine/bad-input.test.ts).

import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FlockDevice } from '../../src/gpu/device';
import { GpuStage } from '../../src/gpu/stage';
import { LAYER_TENSORS, readConfig, type ModelConfig } from '../../src/model/config';
import { openGguf, type GgufFile } from '../../src/model/gguf';
import { blockFormat, byteSize, GgmlType } from '../../src/model/quant';
import { BlobSource, HttpSource } from '../../src/model/source';
import { FileSource } from '../../src/model/source-file';
import { takeGpuErrors, testDevice } from '../helpers/gpu';
import { buildLlamaFixture, FixtureRng, type LlamaFixtureSpec } from '../helpers/llama-fixture';

/** 8 layers of F32 at dim 256: 2.6 MB of weights per layer, 21.6 MB in all (logits need not be peaked here). */
const SPEC: LlamaFixtureSpec = {
  name: 'http-range-f32', seed: 5, type: GgmlType.F32,
  dim: 256, nLayers: 8, nHeads: 4, nKvHeads: 2, ffn: 512, vocab: 300, ctx: 64,
};
/** The layer span under test: in the middle, far beyond the header parse's first 2 MB read. */
const A = 3;
const B = 6;

let dev: FlockDevice;
let bytes: Uint8Array;
let tmp = '';
let filePath = '';
let server: Server;
let url = '';
/** body bytes the server has sent, and the Range requests it answered */
let sent = 0;
const ranges: Array<[number, number]> = [];

beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
  bytes = buildLlamaFixture(SPEC);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'flock-http-range-'));
  filePath = path.join(tmp, `${SPEC.name}.gguf`);
  await writeFile(filePath, bytes);

  server = createServer((req, res) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(400).end('this test server answers Range requests only');
      return;
    }
    const start = Number(m[1]);
    const end = Math.min(m[2] === '' ? bytes.length - 1 : Number(m[2]), bytes.length - 1);
    if (start >= bytes.length || end < start) {
      res.writeHead(416, { 'content-range': `bytes */${bytes.length}` }).end();
      return;
    }
    const body = bytes.subarray(start, end + 1);
    sent += body.length;
    ranges.push([start, end + 1]);
    res.writeHead(206, {
      'content-type': 'application/octet-stream',
      'content-length': body.length,
      'content-range': `bytes ${start}-${end}/${bytes.length}`,
    });
    res.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${SPEC.name}.gguf`;
});

afterAll(async () => {
  server?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Exact bytes of every tensor of layers [a, b), as the file's tensor infos give them. */
function layerBytes(file: GgufFile, a: number, b: number): number {
  let sum = 0;
  for (let l = a; l < b; l++) {
    for (const t of LAYER_TENSORS) {
      const e = file.tensors.get(`blk.${l}.${t}.weight`)!;
      sum += byteSize(blockFormat(e.type), e.nElems);
    }
  }
  return sum;
}

/** Hidden states through a Stage: a 3-token prefill at positions 0..2, then one more token at position 3. */
async function run(stage: GpuStage, cfg: ModelConfig): Promise<Float32Array[]> {
  const rng = new FixtureRng(42);
  const hidden = (n: number) => Float32Array.from({ length: n * cfg.dim }, () => rng.normal());
  const s = stage.createSession(8);
  try {
    return [await stage.forward(s, hidden(3)), await stage.forward(s, hidden(1))];
  } finally {
    stage.closeSession(s);
  }
}

describe('a Stage over http Range requests', () => {
  it(`layers [${A}, ${B}) fetch only the header's reads plus those layers' tensors, and compute as from the file`, async () => {
    expect(bytes.length).toBeGreaterThan(16 * 1024 * 1024);
    const source = new HttpSource(url);
    const file = await openGguf(source);
    const cfg = readConfig(file);
    expect(cfg.nLayers).toBe(SPEC.nLayers);
    const headerSent = sent; // the size probe and the header parse's chunk(s)
    const headerRanges = ranges.length;
    expect(headerSent).toBeLessThan(file.tensors.get(`blk.${A}.attn_norm.weight`)!.offset);

    const want = layerBytes(file, A, B);
    const stage = await GpuStage.load(dev, file, cfg, A, B);
    try {
      // nothing beyond the header's reads and the span's own tensors; and here (the span starts well past the
      // header's cached 2 MB) every one of those tensor bytes crosses the wire exactly once
      expect(sent).toBeLessThanOrEqual(headerSent + want);
      expect(sent - headerSent).toBe(want);
      expect(source.bytesFetched).toBe(sent);
      // every tensor read lies inside the span's bytes: from the first tensor of layer A to the end of layer B-1
      const first = Math.min(...LAYER_TENSORS.map((t) => file.tensors.get(`blk.${A}.${t}.weight`)!.offset));
      const last = Math.max(...LAYER_TENSORS.map((t) => {
        const e = file.tensors.get(`blk.${B - 1}.${t}.weight`)!;
        return e.offset + byteSize(blockFormat(e.type), e.nElems);
      }));
      for (const [s, e] of ranges.slice(headerRanges)) {
        expect(s).toBeGreaterThanOrEqual(first);
        expect(e).toBeLessThanOrEqual(last);
      }

      const fromFileSource = new FileSource(filePath);
      const fromFile = await GpuStage.load(dev, await openGguf(fromFileSource), cfg, A, B);
      try {
        const [httpOut, fileOut] = [await run(stage, cfg), await run(fromFile, cfg)];
        expect(httpOut[0].length).toBe(3 * cfg.dim);
        expect(httpOut[0].every(Number.isFinite)).toBe(true);
        expect(httpOut).toEqual(fileOut); // same bytes, same kernels: bit for bit
      } finally {
        fromFile.destroy();
        await fromFileSource.close();
      }
    } finally {
      stage.destroy();
    }
    expect(takeGpuErrors()).toEqual([]);
  });

  it('a BlobSource of the same bytes loads the span, reads no more, and computes the same', async () => {
    const source = new BlobSource(new Blob([bytes as BlobPart]), `${SPEC.name}.gguf`);
    const file = await openGguf(source);
    const cfg = readConfig(file);
    const headerRead = source.bytesFetched;
    const stage = await GpuStage.load(dev, file, cfg, A, B);
    const fromFileSource = new FileSource(filePath);
    const fromFile = await GpuStage.load(dev, await openGguf(fromFileSource), cfg, A, B);
    try {
      expect(source.bytesFetched - headerRead).toBe(layerBytes(file, A, B));
      expect(await run(stage, cfg)).toEqual(await run(fromFile, cfg));
    } finally {
      stage.destroy();
      fromFile.destroy();
      await fromFileSource.close();
    }
    expect(takeGpuErrors()).toEqual([]);
  });
});
