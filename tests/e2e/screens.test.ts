// End to end in headless Chromium: the page on a phone (390×844, and 360 px wide) and a desktop (1280×860). With a conversation whose
// replies hold a long unbroken word, a wide code block and a table, nothing is wider than the viewport (no sideways
// scroll), every control is inside the viewport, on top (not covered) and, on the phone, at least 44 px tall; the
// conversation gets most of the phone's height; the chats open from the menu on the phone; Swarm mode with the device
// offline says it is offline, and switching back to Local clears that; a reload shows the conversation left open.
// Screenshots go to test-results/ (`npm run screenshots` writes them to docs/ when the README's pictures are refreshed).

import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectPageErrors, screenshotPath, openReady, removeBuild, startApp, type App } from './browser';
import { putConversation } from './stored-chat';

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 860 };

let app: App;
beforeAll(async () => {
  app = await startApp();
  });
afterAll(async () => {
  await app?.close();
  await removeBuild();
});

const LONG_WORD = 'Supercalifragilisticexpialidocious'.repeat(6);
const WIDE_CODE = `\`\`\`\n${'const x = [' + Array.from({ length: 40 }, (_, i) => i * 1000).join(', ') + '];'}\n\`\`\``;
const TABLE = `| a | b | c | d |\n|---|---|---|---|\n| ${'cell '.repeat(12)} | ${'cell '.repeat(12)} | x | y |`;

/** A stored chat with replies that try to be wide. */
async function seedChat(page: Page): Promise<void> {
  const now = Date.now();
  await putConversation(page, {
    id: 'wide', title: 'A wide chat', createdAt: now, updatedAt: now, model: 'stories260K',
    messages: [
      { role: 'user', content: `Tell me about ${LONG_WORD}` },
      { role: 'assistant', content: `Once upon a time ${LONG_WORD} went to the park.\n\n${WIDE_CODE}\n\n${TABLE}`, finish: 'length', stats: '40 tokens · 60 tokens/s' },
      { role: 'user', content: 'And then?' },
      { role: 'assistant', content: 'The end.', finish: 'stop' },
    ],
  });
}

interface Box {
  sel: string;
  x: number;
  y: number;
  w: number;
  h: number;
  onTop: boolean;
}

/** Each selector's first match: its box and whether it is the element at its own centre (nothing covers it). */
async function boxes(page: Page, sels: string[]): Promise<Box[]> {
  return page.evaluate((list) => list.map((sel) => {
    const el = document.querySelector<HTMLElement>(sel);
    if (!el) return { sel, x: NaN, y: NaN, w: 0, h: 0, onTop: false };
    const r = el.getBoundingClientRect();
    const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
    return { sel, x: r.x, y: r.y, w: r.width, h: r.height, onTop: hit !== null && (hit === el || el.contains(hit)) };
  }), sels);
}

/** Controls that lie outside the viewport, are covered, or (phone) are under 44 px tall. */
async function badControls(page: Page, sels: string[], minPx: number): Promise<string[]> {
  const vp = page.viewportSize()!;
  return (await boxes(page, sels))
    .filter((b) => !(b.w > 0 && b.x >= 0 && b.y >= 0 && b.x + b.w <= vp.width + 0.5 && b.y + b.h <= vp.height + 0.5 && b.onTop && b.h >= minPx))
    .map((b) => `${b.sel}: ${Math.round(b.x)},${Math.round(b.y)} ${Math.round(b.w)}×${Math.round(b.h)}${b.onTop ? '' : ' covered'}`);
}

/** How far the page scrolls sideways, and any element of the chat wider than the conversation. */
async function overflow(page: Page): Promise<{ scroll: number; wide: string[] }> {
  return page.evaluate(() => {
    const list = document.getElementById('messages')!.getBoundingClientRect();
    const wide = [...document.querySelectorAll<HTMLElement>('#messages .msg')]
      .filter((m) => m.getBoundingClientRect().right > list.right + 0.5)
      .map((m) => `${m.dataset.role}: ${Math.round(m.getBoundingClientRect().width)} px in ${Math.round(list.width)}`);
    return { scroll: document.documentElement.scrollWidth - window.innerWidth, wide };
  });
}

/** Wait until the chats' drawer has slid fully in (open) or out. */
async function drawerSettled(page: Page, open: boolean): Promise<void> {
  await page.waitForFunction((o) => {
    const r = document.getElementById('sidebar')!.getBoundingClientRect();
    return o ? r.left === 0 : r.right <= 0;
  }, open, { polling: 50 });
}

const CHAT_CONTROLS = ['#open-models', '.modes .mode[data-mode="local"]', '.modes .mode[data-mode="swarm"]', '.modes .mode[data-mode="contribute"]',
  '#prompt', '#send', '#stop', '#regenerate', '#settings summary'];

describe('screens', () => {
  it('a phone (390×844): the chat first, nothing wider than the screen, every control reachable and 44 px tall', async () => {
    const ctx = await app.browser.newContext({ viewport: PHONE, hasTouch: true, isMobile: true, deviceScaleFactor: 1 });
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    await seedChat(page);
    await page.reload();
    await openReady(page, app.served.url);
    await page.click('#menu-toggle');
    await page.click('#chat-list li[data-id="wide"] .title');
    await page.waitForSelector('#messages .msg.assistant');
    await drawerSettled(page, false);
    await page.screenshot({ path: await screenshotPath('screen-390x844.png') });
    expect(await overflow(page)).toEqual({ scroll: 0, wide: [] });
    expect(await badControls(page, ['#menu-toggle', ...CHAT_CONTROLS], 44)).toEqual([]);
    const [prompt, messages] = await boxes(page, ['#prompt', '#messages']);
    expect(prompt.w).toBeGreaterThan(PHONE.width * 0.85); // the message box has the width of the screen
    expect(messages.h).toBeGreaterThan(PHONE.height * 0.5); // and the conversation most of its height
    // the placeholder fits on one line
    expect(await page.$eval('#prompt', (t) => (t as HTMLTextAreaElement).placeholder.length * 8 < t.clientWidth * 2)).toBe(true);
    // the model's status has a line of its own, ends in an ellipsis when it is longer, and is whole in the title
    const status = await page.$eval('#model-status', (el) => ({ overflow: getComputedStyle(el).textOverflow, text: el.textContent ?? '', title: el.parentElement!.title }));
    expect(status.overflow).toBe('ellipsis');
    expect(status.text).toMatch(/^ready · 2048 tokens of context/);
    expect(status.title).toContain(status.text);

    // the narrowest phones (360 px) too
    await page.setViewportSize({ width: 360, height: 740 });
    expect(await overflow(page)).toEqual({ scroll: 0, wide: [] });
    expect(await badControls(page, ['#menu-toggle', ...CHAT_CONTROLS], 44)).toEqual([]);
    expect(await page.$$eval('.modes .mode', (bs) => bs.filter((b) => b.scrollWidth > b.clientWidth).length)).toBe(0); // labels not cut
    await page.setViewportSize(PHONE);

    // the chats are behind the menu
    expect(await badControls(page, ['#new-chat'], 0)).not.toEqual([]);
    await page.click('#menu-toggle');
    await drawerSettled(page, true);
    expect(await badControls(page, ['#new-chat', '#chat-list li .title', '#chat-list li .rename', '#chat-list li .delete', '#menu-close'], 44)).toEqual([]);
    await page.screenshot({ path: await screenshotPath('screen-390x844-menu.png') });
    await page.click('#chat-list li .title'); // choosing a chat closes the drawer
    await drawerSettled(page, false);

    // the model picker fits the screen too
    await page.click('#open-models');
    await page.waitForSelector('#model-list li');
    await page.screenshot({ path: await screenshotPath('screen-390x844-models.png') });
    const dialogOverflow = await page.$eval('#models', (d) => ({
      by: d.scrollWidth - d.clientWidth,
      what: [...d.querySelectorAll('*')].filter((e) => e.getBoundingClientRect().right > d.getBoundingClientRect().right - 1).map((e) => `${e.tagName}#${e.id}.${e.className}`),
    }));
    expect(dialogOverflow).toEqual({ by: 0, what: [] });
    expect(await badControls(page, ['#models-close', '#context', '#memory-limit', '#model-list li[data-key="embedded"] .name', '#model-list li:nth-child(2) button.download'], 44)).toEqual([]);
    await page.click('#models-close');

    // Swarm mode: its panel opens (its controls inside the screen), and folds away behind its button
    await page.click('.modes .mode[data-mode="swarm"]');
    await page.waitForSelector('#swarm-panel[data-open]');
    expect(await overflow(page)).toEqual({ scroll: 0, wide: [] });
    expect(await badControls(page, ['#swarm-name', '#swarm-join', '#identity-row', '#panel-toggle', '#prompt', '#send'], 44)).toEqual([]);
    await page.screenshot({ path: await screenshotPath('screen-390x844-swarm.png') });
    await page.click('#panel-toggle');
    expect(await page.isHidden('#swarm-panel')).toBe(true);
    await page.click('.modes .mode[data-mode="local"]');
    expect(await page.isHidden('#panel-toggle')).toBe(true);
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('a desktop (1280×860): sidebar, chat and controls side by side, nothing wider than the window', async () => {
    const ctx = await app.browser.newContext({ viewport: DESKTOP });
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    await seedChat(page);
    await page.reload();
    await openReady(page, app.served.url);
    await page.click('#chat-list li[data-id="wide"] .title');
    await page.waitForSelector('#messages .msg.assistant');
    await page.reload(); // the chat left open is the one a reload shows
    await openReady(page, app.served.url);
    await page.waitForSelector('#messages .msg.assistant');
    expect(await overflow(page)).toEqual({ scroll: 0, wide: [] });
    expect(await badControls(page, ['#new-chat', '#chat-list li .title', ...CHAT_CONTROLS], 0)).toEqual([]);
    expect(await page.isHidden('#menu-toggle')).toBe(true);
    await page.screenshot({ path: await screenshotPath('screen-1280x860.png') });
    await page.click('.modes .mode[data-mode="contribute"]');
    expect(await badControls(page, ['#swarm-name', '#swarm-join', '#memory-mb', '#prompt', '#send'], 0)).toEqual([]);
    expect(await overflow(page)).toEqual({ scroll: 0, wide: [] });
    await page.screenshot({ path: await screenshotPath('screen-1280x860-contribute.png') });
    expect(errors).toEqual([]);
    await ctx.close();
  });
});

describe('errors that name their cause', () => {
  it('offline, Swarm says the device is offline; back in Local mode the message is gone, and it clears when online', async () => {
    const ctx = await app.browser.newContext({ viewport: PHONE, hasTouch: true, isMobile: true });
    const page = await ctx.newPage();
    await openReady(page, app.served.url);
    // the public signalling server, as in a production build (this test build defaults to a local one)
    await page.click('.modes .mode[data-mode="swarm"]');
    await page.evaluate(() => {
      (document.querySelector('.net-settings') as HTMLDetailsElement).open = true;
    });
    await page.fill('#signal-url', 'wss://0.peerjs.com/');
    await page.dispatchEvent('#signal-url', 'change');
    await ctx.setOffline(true);
    await page.click('#swarm-join');
    await page.waitForSelector('#message:not([hidden])');
    const shown = await page.$eval('#message', (el) => ({ name: (el as HTMLElement).dataset.error, text: el.textContent ?? '' }));
    expect(shown.name, shown.text).toBe('SignalError');
    expect(shown.text).toMatch(/^This device is offline, so it cannot reach the signalling server wss:\/\/0\.peerjs\.com:443\//);
    expect(await page.$eval('#swarm-join', (b) => b.textContent)).toBe('Join swarm');
    await page.screenshot({ path: await screenshotPath('screen-390x844-offline.png') });
    expect(await badControls(page, ['#prompt', '#send', '#panel-toggle'], 44)).toEqual([]); // the chat is still at hand
    expect(await overflow(page)).toEqual({ scroll: 0, wide: [] });
    await page.click('.modes .mode[data-mode="local"]');
    expect(await page.isHidden('#message')).toBe(true);
    // the same in Contribute mode; this time coming back online clears it
    await page.click('.modes .mode[data-mode="contribute"]');
    await page.click('#swarm-join');
    await page.waitForSelector('#message:not([hidden])');
    expect(await page.textContent('#message')).toMatch(/offline/);
    await ctx.setOffline(false);
    await page.waitForSelector('#message', { state: 'hidden' });
    await ctx.close();
  });
});
