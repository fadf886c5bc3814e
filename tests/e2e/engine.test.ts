// The engine's browser build in headless Chromium (WebGPU on SwiftShader): stories260K greedy from BOS alone gives
// llama.cpp's reference ids (../shared/models/stories260K.greedy.json, copied to tests/fixtures), as one Stage and as
// five chained Stages (the page reports the layer span of each Stage it ran). The page is a bare test page
// (tests/e2e/engine-page) built with Vite, so this checks the engine itself; the app's own tests drive the chat UI.

import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, ROOT } from './browser';
import { startModelServer, type ModelServer } from './model-server';
import { serveFolder } from './static-server';

const REFERENCE: number[] = JSON.parse(readFileSync(path.join(ROOT, 'tests/fixtures/stories260K.greedy.json'), 'utf8')).output_ids;
const TOKENS = 48;

let outDir: string;
let page: { url: string; close(): Promise<void> };
let model: ModelServer;
let browser: Browser;

beforeAll(async () => {
  outDir = await mkdtemp(path.join(os.tmpdir(), 'flock-engine-page-'));
  await build({
    root: path.join(ROOT, 'tests/e2e/engine-page'),
    configFile: false,
    logLevel: 'warn',
    base: './',
    build: { outDir, emptyOutDir: true },
  });
  page = await serveFolder(outDir);
  model = await startModelServer(readFileSync(path.join(ROOT, 'public/models/stories260K.gguf')), 'stories260K.gguf');
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await page?.close();
  await model?.close();
  if (outDir) await rm(outDir, { recursive: true, force: true });
});

describe('engine in Chromium', () => {
  const cases: [number, number[][]][] = [
    [1, [[0, 5]]],
    [5, [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]]],
  ];
  it.each(cases)('stories260K greedy from BOS, %i stage(s): the first 48 ids equal llama.cpp', async (stages, spans) => {
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on('pageerror', (e) => errors.push(e.message));
    await tab.goto(page.url);
    await tab.waitForSelector('body[data-ready="true"]');
    const r = await tab.evaluate(
      ([url, n, k]) => (window as unknown as { flockEngineTest: { greedy(u: string, ids: number[], n: number, k: number): Promise<{ ids: number[]; adapter: string; spans: number[][] }> } })
        .flockEngineTest.greedy(url, [1], n, k),
      [`${model.url}`, TOKENS, stages] as const,
    );
    expect(r.spans).toEqual(spans);
    expect(r.ids).toEqual(REFERENCE.slice(0, TOKENS));
    expect(errors).toEqual([]);
    await tab.close();
  });
});
