// The page's swarm client in headless Chromium, as the app runs it: the real engine worker, the page's PeerJS peer and
// discovery, links relayed to the worker (tests/e2e/engine-page `swarmChat`), Node hosts on a real PeerServer.
// - A host that answers with a result larger than the model allows is cut off by the page at its first frame, before
//   anything of it is buffered (the same limits as the Node client: tests/swarm/hostile.test.ts), and the chat
//   re-routes to an honest host: the ids equal llama.cpp's.
// - A NoRouteError thrown in the worker when the only host leaves mid-reply reaches the page as a NoRouteError, with
//   the conversation's ids (BOS, then llama.cpp's greedy continuation as far as it got) and the missing layers.
// The prompt is empty: the text-continuation fallback gives BOS alone, whose greedy continuation is the reference
// in tests/fixtures/stories260K.greedy.json.

import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOUNCE_MS, referenceIds, Swarm } from '../swarm/harness';
import { startRogueHost } from '../swarm/rogue-host';
import type { SwarmChatArgs, SwarmChatResult } from './engine-page/main';
import { launchChromium, ROOT } from './browser';
import { startModelServer, type ModelServer } from './model-server';
import { serveFolder } from './static-server';

let outDir: string;
let page: { url: string; close(): Promise<void> };
let model: ModelServer;
let browser: Browser;

beforeAll(async () => {
  outDir = await mkdtemp(path.join(os.tmpdir(), 'flock-client-page-'));
  await build({
    root: path.join(ROOT, 'tests/e2e/engine-page'),
    configFile: false,
    logLevel: 'warn',
    base: './',
    build: { outDir, emptyOutDir: true },
    worker: { format: 'es' },
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

async function openTab(errors: string[]): Promise<Page> {
  const tab = await browser.newPage();
  tab.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  await tab.goto(page.url);
  await tab.waitForSelector('body[data-ready="true"]');
  return tab;
}

function swarmChat(tab: Page, args: SwarmChatArgs): Promise<SwarmChatResult> {
  return tab.evaluate((a) => (window as unknown as { flockEngineTest: { swarmChat(a: SwarmChatArgs): Promise<SwarmChatResult> } }).flockEngineTest.swarmChat(a), args);
}

describe('the page\'s swarm client', () => {
  it('cuts off a host that sends more than the model allows at its first frame, and re-routes', async () => {
    const swarm = await Swarm.start('e2e-oversize');
    const errors: string[] = [];
    try {
      const ref = await referenceIds();
      const liar = await startRogueHost({ file: swarm.file, signal: swarm.signal, swarm: swarm.config, link: swarm.link, announceMs: ANNOUNCE_MS, behaviour: 'oversize' });
      const tab = await openTab(errors);
      const chat = swarmChat(tab, {
        modelUrl: model.url, signal: swarm.server.url, swarm: swarm.name, prompt: '', maxTokens: 24,
        recoverTimeoutMs: 30_000, hopTimeoutMs: 10_000, link: swarm.link, announceMs: ANNOUNCE_MS, powBits: swarm.config.powBits,
      });
      await liar.cutOff;
      await swarm.host({ start: 0, end: 5 }); // an honest host for the same layers comes online
      const r = await chat;
      console.log(`page: ${liar.framesSent()} of ${liar.framesTotal} oversized frames sent before the page hung up; reroutes ${JSON.stringify(r.status?.reroutes.map((x) => x.reason))}`);
      expect(r.error).toBeNull();
      expect(r.ids).toEqual(ref.slice(0, r.ids.length));
      expect(r.ids.length).toBe(24);
      expect(liar.framesSent()).toBe(1);
      expect(r.status?.reroutes).toHaveLength(1);
      expect(r.status?.reroutes[0].from).toBe(liar.id);
      expect(r.status?.reroutes[0].reason).toMatch(/protocol.*too-large/);
      expect(errors).toEqual([]);
      liar.stop();
      await tab.close();
    } finally {
      await swarm.stop();
    }
  });

  it('a NoRouteError thrown in the worker arrives as a NoRouteError with the conversation\'s ids', async () => {
    const swarm = await Swarm.start('e2e-noroute');
    const errors: string[] = [];
    try {
      const ref = await referenceIds();
      const host = await swarm.host({ start: 0, end: 5 });
      const tab = await openTab(errors);
      const chat = swarmChat(tab, {
        modelUrl: model.url, signal: swarm.server.url, swarm: swarm.name, prompt: '', maxTokens: 200,
        recoverTimeoutMs: 1_500, hopTimeoutMs: 5_000, link: swarm.link, announceMs: ANNOUNCE_MS, powBits: swarm.config.powBits,
      });
      // let a few tokens stream, then take the only host away
      await tab.waitForFunction(() => (window as unknown as { flockEngineTest: { streamed(): number } }).flockEngineTest.streamed() >= 5, undefined, { timeout: 60_000, polling: 20 });
      host.stop();
      const r = await chat;
      console.log(`NoRouteError after ${r.ids.length} streamed ids: ${r.error?.message}`);
      expect(r.error?.name).toBe('NoRouteError');
      expect(r.error?.isNoRouteError).toBe(true);
      expect(r.error?.missing).toEqual({ start: 1, end: 4 }); // the layers between the page's own first and last
      // the conversation so far: the prompt (BOS alone), then what was generated, the step that failed included
      const ids = r.error?.ids ?? [];
      expect(ids[0]).toBe(1);
      const generated = ids.slice(1);
      expect(generated).toEqual(ref.slice(0, generated.length));
      expect(generated.slice(0, r.ids.length)).toEqual(r.ids);
      expect(r.ids.length).toBeGreaterThanOrEqual(5);
      expect(errors).toEqual([]);
      await tab.close();
    } finally {
      await swarm.stop();
    }
  });
});
