// End to end: the update prompt. A page controlled by the service worker learns that a new version was deployed
// (a changed sw.js), shows "A new version of Flock is ready", and only when the user clicks does the new worker
// take over and the page reload once. Served by a plain static server so the deployment can change under the page.
// Each deployed sw.js gets a few lines that answer a version question, so the test can ask the worker in control
// which one it is.

import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectPageErrors, openReady, removeBuild, startApp, type App } from './browser';
import { serveFolder } from './static-server';

let app: App;
let dir: string;
beforeAll(async () => {
  app = await startApp();
  dir = await mkdtemp(path.join(os.tmpdir(), 'flock-deploy-'));
  await cp(app.outDir, dir, { recursive: true });
});
afterAll(async () => {
  await app?.close();
  await removeBuild();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Lines added to a deployed sw.js: the worker answers a 'flock-test-version' message with `version`. */
const versionProbe = (version: string) =>
  `\nself.addEventListener('message', (e) => { if (e.data === 'flock-test-version') e.source.postMessage('${version}'); });\n`;

/** Ask the worker controlling the page which deployment it came from. */
function controllerVersion(page: Page): Promise<string> {
  return page.evaluate(() => new Promise<string>((resolve) => {
    const sw = navigator.serviceWorker;
    if (!sw.controller) return resolve('no controller');
    sw.addEventListener('message', (e) => resolve(String(e.data)), { once: true });
    sw.controller.postMessage('flock-test-version');
    setTimeout(() => resolve('no answer'), 5_000);
  }));
}

describe('service worker updates', () => {
  it('prompts when a new version is ready and reloads into it on request', async () => {
    const sw = path.join(dir, 'sw.js');
    const built = await readFile(sw, 'utf8');
    await writeFile(sw, built + versionProbe('v1'));
    const site = await serveFolder(dir);
    const ctx = await app.newContext();
    try {
      const page = await ctx.newPage();
      const errors = collectPageErrors(page);
      await openReady(page, site.url);
      await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
      await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
      expect(await page.isHidden('#update-banner')).toBe(true);
      expect(await controllerVersion(page)).toBe('v1');

      // deploy a new version: any byte change to sw.js makes the browser install it next to the old one
      await writeFile(sw, built + versionProbe('v2'));
      await page.evaluate(() => navigator.serviceWorker.getRegistration().then((r) => r?.update()));
      await page.waitForSelector('#update-banner:not([hidden])', { timeout: 30_000 });
      // the old worker keeps control until the user agrees: a reply in progress is never cut off
      expect(await page.evaluate(() => navigator.serviceWorker.getRegistration().then((r) => r?.waiting !== null))).toBe(true);
      expect(await controllerVersion(page)).toBe('v1');

      await page.evaluate(() => ((window as unknown as { __before: boolean }).__before = true));
      await Promise.all([page.waitForEvent('load'), page.click('#update-reload')]);
      await openReady(page, site.url);
      expect(await page.evaluate(() => (window as unknown as { __before?: boolean }).__before)).toBeUndefined();
      expect(await page.evaluate(() => navigator.serviceWorker.getRegistration().then((r) => r?.waiting === null && r?.active !== null))).toBe(true);
      // the page reloaded into the new version: the worker in control, and the registration's active one, is v2
      expect(await controllerVersion(page)).toBe('v2');
      expect(await page.evaluate(() => navigator.serviceWorker.getRegistration().then((r) => r?.active === navigator.serviceWorker.controller))).toBe(true);
      expect(await page.isHidden('#update-banner')).toBe(true);
      expect(errors).toEqual([]);
    } finally {
      await ctx.close();
      await site.close();
    }
  });
});
