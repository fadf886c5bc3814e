// End to end: past chats in headless Chromium with real IndexedDB. A reload shows the chat that was open (an empty
// new chat stays a new chat); a chat can be renamed and exported as valid JSON, and deleting it removes it for good.
// Markdown from the model is sanitized: a stored conversation crafted with <img onerror>, <script>, javascript: links
// and event handlers renders inert.

import { readFile } from 'node:fs/promises';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORT_FORMAT, importConversation } from '../../src/storage/conversations';
import { collectPageErrors, openReady, removeBuild, send, startApp, waitForReply, type App } from './browser';
import { putConversation } from './stored-chat';

let app: App;
beforeAll(async () => {
  app = await startApp();
});
afterAll(async () => {
  await app?.close();
  await removeBuild();
});

const chatTitles = (page: Page) => page.$$eval('#chat-list li .title', (els) => els.map((e) => e.textContent ?? ''));

describe('past chats', () => {
  it('survive a reload, can be renamed and exported as JSON, and delete removes them', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    await send(page, 'Lily had a red ball', { temperature: 0, maxTokens: 5 });
    const reply = await waitForReply(page);
    expect(reply.state).toBe('done');
    await page.waitForFunction(() => document.querySelectorAll('#chat-list li').length === 1);
    expect(await chatTitles(page)).toEqual(['Lily had a red ball']);

    await page.reload();
    await openReady(page, app.served.url);
    expect(await chatTitles(page)).toEqual(['Lily had a red ball']);
    // a reload shows the conversation that was open, and the list marks it as the current one
    await page.waitForSelector('#messages .msg.assistant');
    expect(await page.locator('#messages .msg').count()).toBe(2);
    expect(await page.textContent('#messages .msg.assistant .content')).toBe(reply.text);
    expect(await page.locator('#chat-list li.current .title').textContent()).toBe('Lily had a red ball');
    // a new chat left empty is where the user left too: a reload shows it empty, without adding to the list
    // clicked and reloaded in one task: what the page records must be done before the click handler returns
    await Promise.all([
      page.waitForEvent('load'),
      page.evaluate(() => {
        document.querySelector<HTMLButtonElement>('#new-chat')!.click();
        location.reload();
      }),
    ]);
    await openReady(page, app.served.url);
    expect(await page.locator('#messages .msg').count()).toBe(0);
    expect(await chatTitles(page)).toEqual(['Lily had a red ball']);
    await page.click('#chat-list li .title');
    await page.waitForSelector('#messages .msg.assistant');
    await page.reload();
    await openReady(page, app.served.url);
    await page.waitForSelector('#messages .msg.assistant'); // and the chat opened from the list is the one shown next time

    page.once('dialog', (d) => void d.accept('Red ball story'));
    await page.click('#chat-list li .rename');
    await page.waitForFunction(() => document.querySelector('#chat-list li .title')?.textContent === 'Red ball story');

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#chat-list li .export')]);
    const json = await readFile((await download.path())!, 'utf8');
    const parsed = JSON.parse(json) as { format: string };
    expect(parsed.format).toBe(EXPORT_FORMAT);
    const conv = importConversation(json);
    expect(conv.title).toBe('Red ball story');
    expect(conv.messages.map((m) => m.role)).toEqual(['user', 'assistant']);
    expect(conv.messages[0].content).toBe('Lily had a red ball');
    expect(conv.messages[1].finish).toBe('length');

    page.once('dialog', (d) => void d.accept());
    await page.click('#chat-list li .delete');
    await page.waitForFunction(() => document.querySelectorAll('#chat-list li').length === 0);
    expect(await page.locator('#messages .msg').count()).toBe(0);
    await page.reload();
    await openReady(page, app.served.url);
    expect(await chatTitles(page)).toEqual([]);
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('renders model markdown safely: no <img onerror>, scripts, javascript: links or handlers', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    await openReady(page, app.served.url);
    const evil =
      '**bold** and `code`\n\n<img src=x onerror="window.__pwned=1">\n\n<script>window.__pwned=2</script>\n\n' +
      '[click](javascript:window.__pwned=3) <a href="https://example.com/" onclick="window.__pwned=4">site</a>\n\n' +
      '<iframe src="javascript:parent.__pwned=5"></iframe><svg onload="window.__pwned=6"></svg>\n\n![pixel](https://example.com/t.png)';
    const now = Date.now();
    await putConversation(page, {
      id: 'crafted',
      title: 'Crafted',
      createdAt: now,
      updatedAt: now,
      model: 'stories260K',
      messages: [
        { role: 'user', content: 'say something' },
        { role: 'assistant', content: evil },
      ],
    });
    await page.reload();
    await openReady(page, app.served.url);
    await page.click('#chat-list li[data-id="crafted"] .title');
    await page.waitForSelector('#messages .msg.assistant strong');
    await page.waitForTimeout(300); // give any injected handler the chance to run
    const result = await page.evaluate(() => {
      const root = document.querySelector('#messages .msg.assistant .content')!;
      return {
        pwned: (window as unknown as { __pwned?: number }).__pwned,
        dangerous: root.querySelectorAll('img, script, iframe, svg, [onerror], [onclick], [onload]').length,
        jsLinks: [...root.querySelectorAll('a')].filter((a) => a.getAttribute('href')?.startsWith('javascript:')).length,
        links: [...root.querySelectorAll('a')].map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target })),
        bold: root.querySelector('strong')?.textContent,
        code: root.querySelector('code')?.textContent,
      };
    });
    expect(result.pwned).toBeUndefined();
    expect(result.dangerous).toBe(0);
    expect(result.jsLinks).toBe(0);
    expect(result.bold).toBe('bold');
    expect(result.code).toBe('code');
    expect(result.links).toContainEqual({ href: 'https://example.com/', rel: 'noopener noreferrer nofollow', target: '_blank' });
    await ctx.close();
  });
});
