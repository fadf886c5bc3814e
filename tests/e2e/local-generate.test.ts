// End to end in headless Chromium (WebGPU on SwiftShader): the built page loads the embedded stories260K, generates
// greedily from BOS and matches llama.cpp's ids; Stop ends a long generation early; the service worker serves the
// model offline (Range requests included); without WebGPU the page says which browsers work and disables Generate.
// Oracle: tests/fixtures/stories260K.greedy.json (llama.cpp's 255 greedy ids from BOS on the same file).

import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenizer, type Tokenizer } from '../../src/model/tokenizer';
import { ROOT, collectPageErrors, removeBuild, serveApp, startApp, waitForState, type App } from './browser';

interface Reference {
  input_ids: number[];
  output_ids: number[];
  text: string;
}
const ref = JSON.parse(readFileSync(path.join(ROOT, 'tests/fixtures/stories260K.greedy.json'), 'utf8')) as Reference;
const MODEL = path.join(ROOT, 'public/models/stories260K.gguf');
const SCREENSHOT = path.join(ROOT, 'docs/screenshot-local.png');
const SCREENSHOT_NO_GPU = path.join(ROOT, 'docs/screenshot-no-webgpu.png');

let app: App;
let tokenizer: Tokenizer;

beforeAll(async () => {
  const t0 = performance.now();
  app = await startApp();
  const { metadata } = await gguf(MODEL, { allowLocalFile: true });
  tokenizer = createTokenizer(metadata as Record<string, unknown>);
  console.log(`build + preview + chromium: ${Math.round(performance.now() - t0)} ms`);
});

afterAll(async () => {
  await app?.close();
  await removeBuild();
});

async function readOutput(page: Page): Promise<{ ids: number[]; text: string; finish: string | undefined }> {
  return page.$eval('#output', (el) => ({
    ids: (el as HTMLElement).dataset.ids ? (el as HTMLElement).dataset.ids!.split(',').map(Number) : [],
    text: el.textContent ?? '',
    finish: (el as HTMLElement).dataset.finish,
  }));
}

async function openReady(page: Page, url: string): Promise<number> {
  const t0 = performance.now();
  await page.goto(url);
  const state = await waitForState(page, ['ready', 'error']);
  if (state === 'error') throw new Error(`page failed to start: ${await page.textContent('#message')}`);
  return performance.now() - t0;
}

async function generate(page: Page, opts: { prompt?: string; temperature: number; maxTokens: number }): Promise<void> {
  await page.fill('#prompt', opts.prompt ?? '');
  await page.fill('#temperature', String(opts.temperature));
  await page.fill('#max-tokens', String(opts.maxTokens));
  await page.click('#generate');
}

describe('the page in Chromium with WebGPU', () => {
  it('loads the embedded model and generates llama.cpp\'s greedy ids from BOS', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    const loadMs = await openReady(page, app.served.url);
    expect(await page.textContent('#load-bytes')).toMatch(/MB \/ .*MB/);
    expect(await page.isEnabled('#generate')).toBe(true);

    const t0 = performance.now();
    await generate(page, { temperature: 0, maxTokens: 40 });
    expect(await waitForState(page, ['done', 'error'])).toBe('done');
    const genMs = performance.now() - t0;

    const out = await readOutput(page);
    const want = ref.output_ids.slice(0, 40);
    expect(out.ids).toEqual(want);
    expect(out.text).toBe(tokenizer.decode(want));
    expect(ref.text.startsWith(out.text)).toBe(true);
    expect(out.finish).toBe('length');
    const stats = await page.textContent('#stats');
    console.log(`page load to ready: ${Math.round(loadMs)} ms; 40 tokens: ${Math.round(genMs)} ms; stats: ${stats}`);

    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('Stop ends a long generation early, keeping what was generated', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    await generate(page, { temperature: 0, maxTokens: 200 });
    await waitForState(page, ['generating']);
    expect(await page.isEnabled('#stop')).toBe(true);
    expect(await page.isDisabled('#generate')).toBe(true);
    // let a few tokens stream in, then stop
    await page.waitForFunction(() => (document.getElementById('output')?.dataset.ids ?? '').split(',').length >= 5);
    const t0 = performance.now();
    await page.click('#stop');
    expect(await waitForState(page, ['done', 'error'])).toBe('done');
    const stopMs = performance.now() - t0;

    const out = await readOutput(page);
    expect(out.finish).toBe('abort');
    expect(out.ids.length).toBeGreaterThanOrEqual(5);
    expect(out.ids.length).toBeLessThan(200);
    expect(out.ids).toEqual(ref.output_ids.slice(0, out.ids.length));
    expect(out.text).toBe(tokenizer.decode(out.ids));
    expect(await page.isEnabled('#generate')).toBe(true);
    expect(await page.isDisabled('#stop')).toBe(true);
    console.log(`stopped after ${out.ids.length} tokens, ${Math.round(stopMs)} ms after the click`);
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('works offline from the service worker, model Range requests included', async () => {
    // its own server (its own origin, so its own service worker) that the test can shut down
    const served = await serveApp(app.outDir);
    const ctx = await app.newContext();
    try {
      const page = await ctx.newPage();
      const errors = collectPageErrors(page);
      await openReady(page, served.url);
      // `ready` resolves once the worker is active, i.e. after it precached everything, the model included
      await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
      await served.close();
      await expect(fetch(served.url)).rejects.toThrow(); // the server is really gone
      const t0 = performance.now();
      await openReady(page, served.url);
      const offlineLoadMs = performance.now() - t0;
      expect(await page.evaluate(() => navigator.serviceWorker.controller !== null)).toBe(true);
      await generate(page, { temperature: 0, maxTokens: 8 });
      expect(await waitForState(page, ['done', 'error'])).toBe('done');
      expect((await readOutput(page)).ids).toEqual(ref.output_ids.slice(0, 8));
      console.log(`offline reload to ready: ${Math.round(offlineLoadMs)} ms`);
      expect(errors).toEqual([]);
    } finally {
      await ctx.close();
      await served.close();
    }
  });

  it('shows a bad setting as a named error and stays usable', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    await openReady(page, app.served.url);
    await generate(page, { temperature: -1, maxTokens: 4 });
    expect(await waitForState(page, ['done', 'error'])).toBe('error');
    // class names survive minification (vite.config.ts keepNames), so the message names the error class
    expect(await page.getAttribute('#message', 'data-error')).toBe('InvalidArgumentError');
    expect(await page.textContent('#message')).toMatch(/temperature/);
    expect(await page.isEnabled('#generate')).toBe(true);
    await generate(page, { temperature: 0, maxTokens: 3 });
    expect(await waitForState(page, ['done', 'error'])).toBe('done');
    expect(await page.isHidden('#message')).toBe(true);
    expect((await readOutput(page)).ids).toEqual(ref.output_ids.slice(0, 3));
    await ctx.close();
  });
});

describe('the page without WebGPU', () => {
  const cases: [string, string, RegExp][] = [
    ['navigator.gpu is missing', 'delete Navigator.prototype.gpu;', /does not offer WebGPU/],
    [
      'requestAdapter() finds no adapter',
      'Object.defineProperty(GPU.prototype, "requestAdapter", { value: async () => null });',
      /no GPU adapter/,
    ],
  ];
  it.each(cases)('%s: says which browsers work and disables Generate', async (name, script, lead) => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    await page.addInitScript({ content: script });
    await page.goto(app.served.url);
    expect(await waitForState(page, ['ready', 'error'])).toBe('error');
    const message = (await page.textContent('#message')) ?? '';
    expect(await page.isVisible('#message')).toBe(true);
    expect(message).toMatch(lead);
    expect(message).toMatch(/Chrome/);
    expect(message).toMatch(/Safari/);
    expect(message).toMatch(/enable-unsafe-webgpu/);
    expect(await page.getAttribute('#message', 'data-error')).toBe('WebGpuUnavailableError');
    expect(await page.isDisabled('#generate')).toBe(true);
    expect(await page.isDisabled('#stop')).toBe(true);
    if (name === cases[0][0]) {
      await mkdir(path.dirname(SCREENSHOT_NO_GPU), { recursive: true });
      await page.screenshot({ path: SCREENSHOT_NO_GPU, fullPage: true });
    }
    await ctx.close();
  });
});
