// End to end in headless Chromium (WebGPU on SwiftShader), the chat page with the engine in a worker:
// a greedy reply to a typed message equals llama.cpp's greedy continuation of the same ids and the page stays
// responsive meanwhile; Stop keeps a prefix; Regenerate repeats a greedy reply; a bad setting is a named error;
// the service worker serves app and model offline; without WebGPU the page says which browsers work.
// Oracle: llama.cpp (tests/helpers/llama-ref.ts) greedy on public/models/stories260K.gguf from BOS + the prompt.

import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { gguf } from '@huggingface/gguf';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenizer, type Tokenizer } from '../../src/model/tokenizer';
import { llamaGreedy } from '../helpers/llama-ref';
import { ROOT, SHOT_DIR, collectPageErrors, openReady, removeBuild, send, serveApp, startApp, waitForReply, waitForState, type App } from './browser';

const MODEL = path.join(ROOT, 'public/models/stories260K.gguf');
const SCREENSHOT = path.join(SHOT_DIR, 'screenshot-chat.png');
const SCREENSHOT_NO_GPU = path.join(SHOT_DIR, 'screenshot-no-webgpu.png');
const PROMPT = 'Once upon a time, a little fox';

let app: App;
let tokenizer: Tokenizer;
/** llama.cpp's greedy ids after BOS + PROMPT, cut at the first end-of-generation id (our engine stops there) */
let want: number[];

beforeAll(async () => {
  const t0 = performance.now();
  app = await startApp();
  const { metadata } = await gguf(MODEL, { allowLocalFile: true });
  tokenizer = createTokenizer(metadata as Record<string, unknown>);
  const input = [tokenizer.bosId!, ...tokenizer.encode(PROMPT)];
  const ref = await llamaGreedy(MODEL, input, 200);
  const end = ref.ids.findIndex((id) => tokenizer.isEndOfGeneration(id));
  want = end < 0 ? ref.ids : ref.ids.slice(0, end);
  console.log(`build + preview + chromium + oracle: ${Math.round(performance.now() - t0)} ms; oracle has ${want.length} ids`);
});

afterAll(async () => {
  await app?.close();
  await removeBuild();
});

/** Longest gap between 16 ms timer ticks on the page's main thread since the last reset. */
async function startLagProbe(page: Page): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __maxLag: number; __lagTimer?: number };
    w.__maxLag = 0;
    let last = performance.now();
    w.__lagTimer = window.setInterval(() => {
      const now = performance.now();
      w.__maxLag = Math.max(w.__maxLag, now - last);
      last = now;
    }, 16);
  });
}
const maxLag = (page: Page) => page.evaluate(() => (window as unknown as { __maxLag: number }).__maxLag);
const norm = (s: string) => s.replace(/\s+/g, ' ').trim();

describe('chat in Chromium with WebGPU', () => {
  it("streams a greedy reply equal to llama.cpp's continuation, with the page responsive", async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    const loadMs = await openReady(page, app.served.url);
    expect(await page.textContent('#where-words-go')).toMatch(/nothing leaves this device/);
    const n = Math.min(24, want.length);
    await startLagProbe(page);
    const t0 = performance.now();
    await send(page, PROMPT, { temperature: 0, maxTokens: n });
    await waitForState(page, ['generating']);
    // streaming: a partial reply is on screen before the end
    await page.waitForFunction(() => {
      const el = document.querySelector<HTMLElement>('#messages .msg.assistant');
      return el?.dataset.state === 'generating' && (el.dataset.ids ?? '').split(',').filter(Boolean).length >= 3;
    });
    // typing into the composer works while the worker generates
    await page.fill('#prompt', 'typing while it thinks');
    const out = await waitForReply(page);
    const genMs = performance.now() - t0;
    expect(out.state).toBe('done');
    expect(out.ids).toEqual(want.slice(0, n));
    expect(norm(out.text)).toBe(norm(tokenizer.decode(want.slice(0, n))));
    expect(out.finish).toBe(n < want.length ? 'length' : 'stop');
    const lag = await maxLag(page);
    console.log(`page load to ready: ${Math.round(loadMs)} ms; ${n} tokens: ${Math.round(genMs)} ms; longest main-thread gap while generating: ${Math.round(lag)} ms`);
    expect(lag).toBeLessThan(250);
    await page.fill('#prompt', '');
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('Stop ends a long reply early, keeping its prefix; Regenerate repeats a greedy reply', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    await send(page, PROMPT, { temperature: 0, maxTokens: 200 });
    await waitForState(page, ['generating']);
    expect(await page.isEnabled('#stop')).toBe(true);
    expect(await page.isDisabled('#send')).toBe(true);
    await page.waitForFunction(() => (document.querySelector<HTMLElement>('#messages .msg.assistant')?.dataset.ids ?? '').split(',').length >= 5);
    const t0 = performance.now();
    await page.click('#stop');
    const out = await waitForReply(page);
    const stopMs = performance.now() - t0;
    expect(out.finish).toBe('abort');
    expect(out.ids.length).toBeGreaterThanOrEqual(5);
    expect(out.ids.length).toBeLessThan(Math.min(200, want.length));
    expect(out.ids).toEqual(want.slice(0, out.ids.length));
    console.log(`stopped after ${out.ids.length} tokens, ${Math.round(stopMs)} ms after the click`);

    await page.fill('#max-tokens', '6');
    await page.click('#regenerate');
    await waitForState(page, ['generating']);
    const again = await waitForReply(page);
    expect(again.ids).toEqual(want.slice(0, 6));
    expect(await page.locator('#messages .msg.assistant').count()).toBe(1);
    expect(await page.locator('#messages .msg.user').count()).toBe(1);

    await page.click('#new-chat');
    expect(await page.locator('#messages .msg').count()).toBe(0);
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('shows a bad setting as a named error and stays usable', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    await openReady(page, app.served.url);
    await page.click('#settings summary');
    await send(page, 'Hi', { temperature: -1, maxTokens: 4 });
    await page.waitForSelector('#message:not([hidden])');
    // the chat API refuses the request by name, and the class survives the worker boundary (src/worker/errors.ts)
    expect(await page.getAttribute('#message', 'data-error')).toBe('ChatRequestError');
    expect(await page.textContent('#message')).toMatch(/temperature/);
    await waitForState(page, ['ready']);
    await page.fill('#temperature', '0');
    await page.click('#regenerate');
    const out = await waitForReply(page);
    expect(out.state).toBe('done');
    expect(await page.isHidden('#message')).toBe(true);
    await ctx.close();
  });

  it('works offline from the service worker (app, engine worker and model)', async () => {
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
      await send(page, PROMPT, { temperature: 0, maxTokens: 8 });
      expect((await waitForReply(page)).ids).toEqual(want.slice(0, 8));
      console.log(`offline reload to ready: ${Math.round(offlineLoadMs)} ms`);
      expect(errors).toEqual([]);
    } finally {
      await ctx.close();
      await served.close();
    }
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
  it.each(cases)('%s: says which browsers work and disables Send', async (name, script, lead) => {
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
    expect(await page.isDisabled('#send')).toBe(true);
    expect(await page.isDisabled('#stop')).toBe(true);
    if (name === cases[0][0]) {
      await mkdir(path.dirname(SCREENSHOT_NO_GPU), { recursive: true });
      await page.screenshot({ path: SCREENSHOT_NO_GPU });
    }
    await ctx.close();
  });
});
