// What checking weights against a manifest costs (src/model/manifest.ts, manifest-check.ts):
//   1. SHA-256 throughput of WebCrypto in Node and (--page) in headless Chromium, on 16 MiB buffers (the upload piece);
//   2. computing a whole file's manifest in Node (reading tensor by tensor, then hashing), against reading alone;
//   3. (--host) what the check adds to loading a span onto the GPU, the part of a host's start it changes: GpuStage.load
//      from the file against the same load through checkWhileLoading plus finish() (against the file's own manifest:
//      the bench models are not pinned), runs alternating, medians.
// Files: stories260K and whichever bench models exist in bench-results/models/ (scripts/bench-model.ts 190m|1b).
// Usage: node --import tsx scripts/bench-manifest.ts [--page] [--host] [--runs 5] [--models A.gguf,B.gguf]
//        [--host-layers 2]   (layers of each model loaded in --host; stories260K loads all 5)

import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readConfig } from '../src/model/config';
import { openGguf, readBytes, type GgufFile } from '../src/model/gguf';
import { computeManifest, tensorRange } from '../src/model/manifest';
import { checkWhileLoading } from '../src/model/manifest-check';
import { FileSource } from '../src/model/source-file';

const { values } = parseArgs({
  options: {
    page: { type: 'boolean', default: false },
    host: { type: 'boolean', default: false },
    runs: { type: 'string', default: '5' },
    models: { type: 'string' },
    'host-layers': { type: 'string', default: '2' },
  },
});
const runs = Number(values.runs);
const models = values.models?.split(',') ?? [
  'public/models/stories260K.gguf',
  'bench-results/models/bench-llama-q4_k_m-190m.gguf',
  'bench-results/models/bench-llama-3.2-1b-q4_k_m.gguf',
].filter((p) => existsSync(p));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const MB = 1e6;
const PIECE = 16 << 20;

/** WebCrypto SHA-256 over `total` bytes in 16 MiB buffers, MB/s. */
async function digestRate(total: number): Promise<number> {
  const buf = new Uint8Array(16 << 20);
  for (let i = 0; i < buf.length; i += 4096) buf[i] = i & 255;
  await crypto.subtle.digest('SHA-256', buf);
  const t0 = performance.now();
  for (let done = 0; done < total; done += buf.length) await crypto.subtle.digest('SHA-256', buf);
  return total / 1e6 / ((performance.now() - t0) / 1000);
}

/** digestRate as plain JavaScript for the page (a transpiled function's text may call helpers the page lacks). */
const PAGE_DIGEST_RATE = `async (total) => {
  const buf = new Uint8Array(16 << 20);
  for (let i = 0; i < buf.length; i += 4096) buf[i] = i & 255;
  await crypto.subtle.digest('SHA-256', buf);
  const t0 = performance.now();
  for (let done = 0; done < total; done += buf.length) await crypto.subtle.digest('SHA-256', buf);
  return total / 1e6 / ((performance.now() - t0) / 1000);
}`;

async function inChromium(total: number): Promise<number> {
  const { launchChromium } = await import('../tests/e2e/browser');
  const { serveFolder } = await import('../tests/e2e/static-server');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'flock-bench-manifest-'));
  await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>sha-256</title>');
  const site = await serveFolder(dir);
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(site.url); // http://127.0.0.1: a secure context, as WebCrypto's subtle needs
    const rates: number[] = [];
    for (let r = 0; r < runs; r++) rates.push(Number(await page.evaluate(`(${PAGE_DIGEST_RATE})(${total})`)));
    return median(rates);
  } finally {
    await browser.close();
    await site.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Read every tensor of the file once, as computeManifest does, without hashing: ms. */
async function readAll(file: GgufFile): Promise<number> {
  const t0 = performance.now();
  for (const t of file.tensors.values()) {
    const { offset, length } = tensorRange(file, t);
    await readBytes(file, offset, length);
  }
  return performance.now() - t0;
}

async function manifests(): Promise<void> {
  for (const m of models) {
    const source = new FileSource(m);
    const file = await openGguf(source);
    const bytes = file.fileSize - file.dataOffset;
    const hashMs: number[] = [];
    const readMs: number[] = [];
    for (let r = 0; r < runs; r++) {
      readMs.push(await readAll(file));
      const t0 = performance.now();
      await computeManifest(file);
      hashMs.push(performance.now() - t0);
    }
    const h = median(hashMs);
    const rd = median(readMs);
    console.log(
      `${path.basename(m)}: ${(bytes / MB).toFixed(1)} MB of tensors (${file.tensors.size}): manifest ${h.toFixed(1)} ms ` +
        `(${(bytes / MB / (h / 1000)).toFixed(0)} MB/s with reads; reading alone ${rd.toFixed(1)} ms, so hashing ` +
        `${(bytes / MB / ((h - rd) / 1000)).toFixed(0)} MB/s)`,
    );
    await source.close();
  }
}

async function hostLoads(): Promise<void> {
  const { nodeDevice } = await import('../src/cli/dawn');
  const { GpuStage } = await import('../src/gpu/stage');
  const { partBytes, partTensors } = await import('../src/model/config');
  const dev = await nodeDevice();
  for (const m of models) {
    const source = new FileSource(m);
    const file = await openGguf(source);
    const cfg = readConfig(file);
    const end = m.includes('stories260K') ? cfg.nLayers : Math.min(cfg.nLayers, Number(values['host-layers']));
    const span = { start: 0, end, head: false };
    const names = [...partTensors(file, cfg, span).keys()];
    const manifest = await computeManifest(file); // the bench models are not pinned: check against their own
    const plain: number[] = [];
    const checked: number[] = [];
    let status = '';
    for (let r = 0; r < runs + 1; r++) {
      let t0 = performance.now();
      (await GpuStage.load(dev, file, cfg, 0, end, { maxContext: 64 })).destroy();
      if (r > 0) plain.push(performance.now() - t0); // the first pair warms the file cache and the device
      t0 = performance.now();
      const check = await checkWhileLoading(file, names, { manifest });
      const stage = await GpuStage.load(dev, check.file, cfg, 0, end, { maxContext: 64 });
      status = await check.finish();
      stage.destroy();
      if (r > 0) checked.push(performance.now() - t0);
    }
    const [p, c] = [median(plain), median(checked)];
    const mb = partBytes(file, cfg, span) / MB;
    console.log(
      `${path.basename(m)} layers 0:${end} (${mb.toFixed(1)} MB): GpuStage.load ${p.toFixed(1)} ms, with the check ${c.toFixed(1)} ms ` +
        `(${status}): +${(c - p).toFixed(1)} ms, ${((c - p) / mb * 1000).toFixed(0)} ms per GB`,
    );
    await source.close();
  }
  dev.device.destroy();
}

const total = 512 << 20;
const nodeRates: number[] = [];
for (let r = 0; r < runs; r++) nodeRates.push(await digestRate(total));
console.log(`WebCrypto SHA-256, ${total / PIECE} x 16 MiB, median of ${runs}: Node ${median(nodeRates).toFixed(0)} MB/s`);
if (values.page) console.log(`WebCrypto SHA-256 in headless Chromium (page), same buffers: ${(await inChromium(total)).toFixed(0)} MB/s`);
await manifests();
if (values.host) await hostLoads();
process.exit(0);
