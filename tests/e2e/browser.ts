// Headless Chromium for the end-to-end tests: build the page once per test process (vite's build API, into a
// temporary folder so a developer's dist/ is left alone), serve it with vite's preview server on 127.0.0.1 and a
// free port (WebGPU needs a secure context: http://127.0.0.1 is one), and launch Debian's chromium through
// playwright-core (its own browser download cannot work here).
// WebGPU there runs on SwiftShader, the CPU Vulkan driver chromium ships: about 0.4 ms per dispatch, so tests keep
// generations short.

import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM_PATH = process.env.FLOCK_CHROMIUM ?? '/usr/bin/chromium';
/** Where tests put screenshots: test-results/, or docs/ when `npm run screenshots` refreshes the README's pictures. */
export const SHOT_DIR = path.join(ROOT, process.env.FLOCK_SHOT_DIR ?? 'test-results');

/**
 * Flags for headless Chromium here. `--enable-unsafe-webgpu` is the one that gives a WebGPU adapter (SwiftShader)
 * on Linux; `--enable-unsafe-swiftshader` keeps the software adapter allowed should Chromium gate it separately
 * (as it does for WebGL). `--no-sandbox` because tests run as root; the rest stop background traffic and first-run
 * work. Checked with chromium 156: without `--enable-unsafe-webgpu`, requestAdapter() returns null; with it, the
 * adapter is `google / swiftshader` with or without --headless=new, --use-angle=swiftshader or
 * --enable-features=Vulkan --use-vulkan=swiftshader, so those are left out.
 */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--enable-unsafe-swiftshader',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

let built: Promise<string> | undefined;

/** Build the app once per process into a temporary folder; returns that folder. */
export function buildApp(): Promise<string> {
  built ??= (async () => {
    const outDir = await mkdtemp(path.join(os.tmpdir(), 'flock-e2e-'));
    await build({
      root: ROOT,
      configFile: path.join(ROOT, 'vite.config.ts'),
      logLevel: 'warn',
      build: { outDir, emptyOutDir: true },
    });
    return outDir;
  })();
  return built;
}

export interface Served {
  url: string;
  close(): Promise<void>;
}

/** Serve a built app with vite's preview server (it answers Range requests) on 127.0.0.1 and a free port. */
export async function serveApp(outDir: string): Promise<Served> {
  const server: PreviewServer = await preview({
    root: ROOT,
    configFile: path.join(ROOT, 'vite.config.ts'),
    logLevel: 'warn',
    build: { outDir },
    preview: { host: '127.0.0.1', port: 0, strictPort: true, open: false },
  });
  const url = server.resolvedUrls?.local[0];
  if (!url) throw new Error('vite preview did not report a URL');
  // close() waits for idle keep-alive connections (the engine worker holds some) unless they are cut first
  const http = server.httpServer as unknown as { closeAllConnections?: () => void };
  return {
    url,
    close: async () => {
      http.closeAllConnections?.();
      await server.close();
    },
  };
}

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
}

/** Page console errors and uncaught exceptions, collected so a test can show them when it fails. */
export function collectPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}

/** Wait until the page (`#app`, data-state: loading, ready, generating, error) reports one of `states`. */
export async function waitForState(page: Page, states: string[], timeout = 60_000): Promise<string> {
  const handle = await page.waitForFunction(
    (want) => {
      const s = document.getElementById('app')?.dataset.state;
      return s !== undefined && want.includes(s) ? s : false;
    },
    states,
    { timeout, polling: 50 },
  );
  return (await handle.jsonValue()) as string;
}

export interface Reply {
  ids: number[];
  text: string;
  finish: string | undefined;
  state: string | undefined;
}

/** The last assistant message: its token ids, rendered text, finish reason and state. */
export async function lastReply(page: Page): Promise<Reply> {
  return page.evaluate(() => {
    const all = document.querySelectorAll<HTMLElement>('#messages .msg.assistant');
    const el = all[all.length - 1];
    if (!el) return { ids: [], text: '', finish: undefined, state: undefined };
    const ids = el.dataset.ids ? el.dataset.ids.split(',').map(Number) : [];
    return { ids, text: el.querySelector('.content')?.textContent ?? '', finish: el.dataset.finish, state: el.dataset.state };
  });
}

/** Wait until the last reply is done (or failed) and the page is ready again. */
export async function waitForReply(page: Page, timeout = 90_000): Promise<Reply> {
  await page.waitForFunction(
    () => {
      const all = document.querySelectorAll<HTMLElement>('#messages .msg.assistant');
      const s = all[all.length - 1]?.dataset.state;
      return (s === 'done' || s === 'error') && document.getElementById('app')?.dataset.state !== 'generating';
    },
    undefined,
    { timeout, polling: 50 },
  );
  return lastReply(page);
}

/** Open the page and wait for the model to be ready; throws with the page's message when it fails. */
export async function openReady(page: Page, url: string): Promise<number> {
  const t0 = performance.now();
  await page.goto(url);
  await page.waitForFunction(() => {
    const s = document.getElementById('app')?.dataset.state;
    const send = document.getElementById('send');
    return s === 'error' || (s === 'ready' && send instanceof HTMLButtonElement && !send.disabled) || !document.getElementById('message')?.hidden;
  }, undefined, { timeout: 60_000, polling: 50 });
  const msg = await page.$eval('#message', (el) => ((el as HTMLElement).hidden ? '' : el.textContent ?? ''));
  if (msg) throw new Error(`page failed to start: ${msg}`);
  return performance.now() - t0;
}

/** Set sampling in the settings panel, type a message and send it. */
export async function send(page: Page, text: string, opts: { temperature?: number; maxTokens?: number; seed?: number } = {}): Promise<void> {
  await page.evaluate(() => {
    const d = document.getElementById('settings');
    if (d instanceof HTMLDetailsElement) d.open = true;
  });
  if (opts.temperature !== undefined) await page.fill('#temperature', String(opts.temperature));
  if (opts.maxTokens !== undefined) await page.fill('#max-tokens', String(opts.maxTokens));
  if (opts.seed !== undefined) await page.fill('#seed', String(opts.seed));
  await page.fill('#prompt', text);
  await page.click('#send');
}

export interface App {
  browser: Browser;
  served: Served;
  outDir: string;
  newContext(): Promise<BrowserContext>;
  close(): Promise<void>;
}

/** Build (once), serve and launch: what a test file's beforeAll needs. */
export async function startApp(): Promise<App> {
  const outDir = await buildApp();
  const served = await serveApp(outDir);
  const browser = await launchChromium();
  return {
    browser,
    served,
    outDir,
    newContext: () => browser.newContext({ viewport: { width: 1100, height: 760 } }),
    async close() {
      await browser.close();
      await served.close();
    },
  };
}

/** Remove the build folder (call once, after every server using it has closed). */
export async function removeBuild(): Promise<void> {
  if (!built) return;
  const dir = await built;
  built = undefined;
  await rm(dir, { recursive: true, force: true });
}
