// Bad input raises the named error for its failure, with a message that tells the user what to do, and leaves the
// process (and its one GPU device) fit to go on: truncated files, wrong magic, a tensor whose bytes run past the end,
// an unknown architecture, a tensor type without a kernel (caught before any tensor byte is fetched), a prompt longer
// than the context, a missing file, and an http server that ignores Range. The last test generates normally with
// stories260K in the same process, and no WebGPU error happened along the way.

import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateAll, LocalModel } from '../../src/engine/local-model';
import type { FlockDevice } from '../../src/gpu/device';
import { openGguf } from '../../src/model/gguf';
import { GgmlType } from '../../src/model/quant';
import { BlobSource, HttpSource, type ByteSource } from '../../src/model/source';
import { FileSource } from '../../src/model/source-file';
import { writeGguf } from '../helpers/gguf-writer';
import { STORIES, takeGpuErrors, testDevice } from '../helpers/gpu';
import { buildLlamaFixture, type LlamaFixtureSpec } from '../helpers/llama-fixture';
import { setTensorOffset, setTensorType, tensorInfoAt } from '../helpers/parity-gguf-edit';

let dev: FlockDevice;
let tmp = '';
let stories: Uint8Array;
let storiesDataOffset = 0;
const sources: FileSource[] = [];

beforeAll(async () => {
  dev = await testDevice();
  takeGpuErrors();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'flock-bad-input-'));
  stories = new Uint8Array(await readFile(STORIES));
  storiesDataOffset = (await openGguf(new BlobSource(new Blob([stories as BlobPart])))).dataOffset;
});
afterAll(async () => {
  for (const s of sources) await s.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Write bytes to a file in the test's temporary folder and open a FileSource on it. */
async function fileWith(name: string, bytes: Uint8Array): Promise<FileSource> {
  const p = path.join(tmp, name);
  await writeFile(p, bytes);
  const s = new FileSource(p);
  sources.push(s);
  return s;
}

/**
 * Load a model from `source`, expect it to fail with the error named `name`, and return the error. Checks that the
 * message gives the advice `advice` matches and (unless `namesSource` is false: errors about one tensor name the
 * tensor instead) names the file or URL, so the user knows which one is bad.
 */
async function expectLoadError(source: ByteSource, name: string, advice: RegExp, namesSource = true): Promise<Error> {
  const err = await LocalModel.load(dev, source).then(
    () => { throw new Error(`loading ${source.name} should have failed with ${name}`); },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  const e = err as Error;
  expect(e.name, e.message).toBe(name);
  if (namesSource) expect(e.message).toContain(source.name);
  // the advice must not come from the file's own name; soft, so a loop over several cuts checks every message
  const text = e.message.split(source.name).join('<source>');
  expect.soft(text, `the message should tell the user what to do (${advice})`).toMatch(advice);
  return e;
}

/** Advice a user can act on when a file is damaged: fetch it again. */
const REDOWNLOAD = /download it again/i;

describe('damaged files', () => {
  it('a file cut inside its GGUF header: GgufFormatError', async () => {
    for (const cut of [64, 5000, storiesDataOffset - 200]) {
      const src = await fileWith(`cut-header-${cut}.gguf`, stories.subarray(0, cut));
      const e = await expectLoadError(src, 'GgufFormatError', REDOWNLOAD);
      expect(e.message).toMatch(/truncated/);
    }
  });

  it('a file cut inside its tensor data: TensorBoundsError', async () => {
    // in the middle: tensors start past the end (caught while reading the header); 100 bytes short: the last
    // tensor starts inside the file and runs past it (caught when the Stage validates its tensors)
    for (const cut of [Math.floor(stories.length / 2), stories.length - 100]) {
      const src = await fileWith(`cut-data-${cut}.gguf`, stories.subarray(0, cut));
      const e = await expectLoadError(src, 'TensorBoundsError', REDOWNLOAD);
      expect(e.message).toMatch(/truncated/);
    }
  });

  it('wrong magic: GgufFormatError', async () => {
    const bytes = stories.slice();
    bytes.set(new TextEncoder().encode('GGML'), 0);
    const src = await fileWith('wrong-magic.gguf', bytes);
    await expectLoadError(src, 'GgufFormatError', /(choose|pick|select|use|open) .*gguf/i);
  });

  it('a tensor whose bytes run past the end of a complete file: TensorBoundsError', async () => {
    // A whole file as writeGguf makes it, then output.weight's offset moved so its data starts 32 bytes before the
    // end of the file: nothing is missing, the header is wrong.
    const bytes = buildLlamaFixture(SMALL);
    const dataOffset = (await openGguf(new BlobSource(new Blob([bytes as BlobPart])))).dataOffset;
    setTensorOffset(bytes, 'output.weight', bytes.length - dataOffset - 32);
    const src = await fileWith('past-end.gguf', bytes);
    const e = await expectLoadError(src, 'TensorBoundsError', REDOWNLOAD);
    expect(e.message).toContain('output.weight');
  });
});

/** A small F32 Llama (all of it fits in the header parse's first 2 MB read). */
const SMALL: LlamaFixtureSpec = {
  name: 'bad-input-small', seed: 1, type: GgmlType.F32,
  dim: 32, nLayers: 1, nHeads: 2, nKvHeads: 2, ffn: 64, vocab: 300, ctx: 64,
};

describe('models Flock cannot run', () => {
  it('an unknown architecture ("gpt2"): UnsupportedArchitectureError', async () => {
    const bytes = writeGguf({
      metadata: [
        ['general.architecture', { type: 'string', value: 'gpt2' }],
        ['gpt2.context_length', { type: 'u32', value: 64 }],
        ['gpt2.embedding_length', { type: 'u32', value: 8 }],
        ['gpt2.block_count', { type: 'u32', value: 1 }],
      ],
      tensors: [{ name: 'token_embd.weight', dims: [8, 4], type: GgmlType.F32, data: new Uint8Array(8 * 4 * 4) }],
    });
    const src = await fileWith('gpt2.gguf', bytes);
    const e = await expectLoadError(src, 'UnsupportedArchitectureError', /Flock runs llama/);
    expect(e.message).toContain('"gpt2"');
  });

  // A file over 2 MB, so the header parse (2 MB chunks through @huggingface/gguf) does not read all of it and a tensor
  // read would show in bytesFetched. Every 2-D weight is F32 but the last layer's ffn_down, relabelled IQ2_XXS (66 bytes
  // per 256 elements, so its bounds still hold): a loader that validated part by part would fetch the Head's
  // output.weight (beyond the first 2 MB) before reaching it.
  const BIG: LlamaFixtureSpec = {
    name: 'bad-input-bf16', seed: 1, type: GgmlType.F32,
    dim: 128, nLayers: 2, nHeads: 4, nKvHeads: 4, ffn: 256, vocab: 1600, ctx: 64,
  };
  // types Flock has no kernel for (the K-quants, the legacy 32-element types, IQ4_NL and IQ4_XS now have one)
  const IQ2_XXS = 16;
  const IQ3_S = 21;

  it('an IQ2_XXS weight: UnsupportedTensorTypeError, before any tensor byte is fetched', async () => {
    const bytes = buildLlamaFixture(BIG);
    expect(bytes.length).toBeGreaterThan(2 * 1024 * 1024 + 512 * 1024);
    setTensorType(bytes, 'blk.1.ffn_down.weight', IQ2_XXS);
    const headerOnly = await fileWith('iq2xxs-header.gguf', bytes);
    await openGguf(headerOnly);
    const headerBytes = headerOnly.bytesFetched; // what parsing the header alone reads
    expect(headerBytes).toBeLessThan(bytes.length);

    const src = await fileWith('iq2xxs.gguf', bytes);
    const e = await expectLoadError(src, 'UnsupportedTensorTypeError', /Use a GGUF file quantized to/, false);
    expect(e.message).toContain('blk.1.ffn_down.weight');
    expect(e.message).toContain('IQ2_XXS');
    expect(src.bytesFetched, 'bytes fetched beyond the header parse').toBe(headerBytes);
  });

  it('an IQ3_S weight: UnsupportedTensorTypeError', async () => {
    // IQ3_S blocks are 256 elements of 110 bytes: ffn_down's rows (ffn = 256 long) are one block, 0.43 bytes per
    // element against F32's 4, so the relabelled tensor stays inside the file.
    const bytes = buildLlamaFixture(BIG);
    expect(tensorInfoAt(bytes, 'blk.0.ffn_down.weight').dims).toEqual([256, 128]);
    setTensorType(bytes, 'blk.0.ffn_down.weight', IQ3_S);
    const src = await fileWith('iq3s.gguf', bytes);
    const e = await expectLoadError(src, 'UnsupportedTensorTypeError', /Use a GGUF file quantized to/, false);
    expect(e.message).toContain('IQ3_S');
  });
});

describe('sources that cannot be read', () => {
  it('a file that does not exist: ModelFetchError', async () => {
    const src = new FileSource(path.join(tmp, 'no-such-model.gguf'));
    await expectLoadError(src, 'ModelFetchError', /no such file|does not exist|not found|check the path/i);
  });

  let server: Server | undefined;
  afterAll(() => server?.close());

  it('an http server that ignores Range: ModelFetchError, no silent full download', async () => {
    let requests = 0;
    let rangeHeaders = 0;
    server = createServer((req, res) => {
      requests++;
      if (req.headers.range) rangeHeaders++;
      // answers every request with the whole file and 200, as a server without Range support does
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': stories.length });
      res.end(stories);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const src = new HttpSource(`http://127.0.0.1:${port}/stories260K.gguf`);
    await expectLoadError(src, 'ModelFetchError', /needs a server that supports Range requests/);
    expect(requests).toBe(1);
    expect(rangeHeaders).toBe(1);
    expect(src.bytesFetched).toBe(0);
  });
});

describe('prompts that do not fit', () => {
  it('a 200-token prompt with a 64-position context: ContextOverflowError; the model still generates after', async () => {
    const src = new FileSource(STORIES);
    sources.push(src);
    const model = await LocalModel.load(dev, src, { maxContext: 64 });
    try {
      let prompt = 'Once upon a time there was a little girl named Lily.';
      while (model.encodePrompt(prompt).length < 200) prompt += ' She liked to play in the park with her dog.';
      const ids = model.encodePrompt(prompt).slice(0, 200);
      for (const input of [{ prompt }, { inputIds: ids }]) {
        const err = await generateAll(model, { ...input, maxTokens: 4, temperature: 0 }).then(
          () => new Error('generation should have failed'),
          (e: Error) => e,
        );
        expect(err.name, err.message).toBe('ContextOverflowError');
        expect(err.message).toContain('64');
        expect(err.message).toMatch(/Shorten the prompt/);
      }
      // the same model goes on: a prompt that fits generates as usual
      const ok = await generateAll(model, { inputIds: [1], maxTokens: 4, temperature: 0 });
      expect(ok.outputIds).toEqual(STORIES_GREEDY.slice(0, 4));
    } finally {
      model.destroy();
    }
  });
});

/** stories260K's greedy ids from [BOS], recorded from llama.cpp (tests/fixtures/stories260K.greedy.json). */
let STORIES_GREEDY: number[] = [];
beforeAll(async () => {
  const json = JSON.parse(await readFile('tests/fixtures/stories260K.greedy.json', 'utf8')) as { output_ids: number[] };
  STORIES_GREEDY = json.output_ids;
});

describe('after all of the above', () => {
  it('a normal stories260K generation works in the same process, and no WebGPU error happened', async () => {
    const src = new FileSource(STORIES);
    sources.push(src);
    const model = await LocalModel.load(dev, src);
    try {
      const r = await generateAll(model, { inputIds: [1], maxTokens: 16, temperature: 0 });
      expect(r.outputIds).toEqual(STORIES_GREEDY.slice(0, 16));
      expect(r.finishReason).toBe('length');
    } finally {
      model.destroy();
    }
    expect(takeGpuErrors()).toEqual([]);
  });
});
