// The app's Swarm and Contribute modes end to end in headless Chromium (WebGPU on SwiftShader, each tab's own
// RTCPeerConnection, a real PeerServer from `flock signal` on 127.0.0.1): three tabs in Contribute mode pick their
// spans by placement under a memory limit, one chat tab in Swarm mode replies at temperature 0, and its reply must
// equal llama.cpp's greedy reply to the same message (tests/e2e/llama-reply.ts), as the same tab's local reply must.
// Then a fourth contributor comes online as a spare (it takes the span covered least) and the tab serving that span
// on the route is closed mid-reply (it says goodbye first): the reply must still be llama.cpp's, with one re-route,
// to the spare, shown in the swarm picture. Then churn: three times over, a tab serving a hop is closed mid-reply and
// the same browser profile opens the app again and contributes (its stored key: the same host back); every reply,
// each in a new chat under a new identity, must be llama.cpp's. With the signalling server gone, a new chat's identity
// cannot join: the page names the SignalError and keeps the message (nothing goes out under the last chat's key); with
// "A new identity for each chat" off, the same chat goes on over the links already open, and the panel says the
// server is out of reach, with no exception on the page.

import { createServer, type AddressInfo } from 'node:net';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSignalServer, type SignalServer } from '../../src/cli/signal';
import type { Tokenizer } from '../../src/model/tokenizer';
import { collectPageErrors, openReady, removeBuild, screenshotPath, send, startApp, waitForReply, type App } from './browser';
import { embeddedTokenizer, llamaReply } from './llama-reply';

const PROMPT = 'Once upon a time, a little fox';
const MAX_TOKENS = 60;
/** MB: two of stories260K's layers fit (0.18 MB of weights + 0.52 MB of KV cache for 2048 positions each), three do not */
const MEMORY_MB = 1.5;
const SWARM = 'e2e-app-swarm';

let app: App;
let signal: SignalServer;
const contexts: BrowserContext[] = [];
let chat: Page;
let chatErrors: string[] = [];
let tokenizer: Tokenizer;
/** llama.cpp's greedy reply to PROMPT (MAX_TOKENS ids at most, cut before an end-of-generation id): the oracle */
let want: number[];
const contributors: { page: Page; span: string; peer: string; errors: string[]; ctx: BrowserContext }[] = [];

async function useSwarmSettings(page: Page, mode: 'swarm' | 'contribute', net: { signal?: string; ice?: string } = {}): Promise<void> {
  await page.click(`.modes .mode[data-mode="${mode}"]`);
  await page.evaluate(() => {
    const d = document.querySelector('.net-settings');
    if (d instanceof HTMLDetailsElement) d.open = true;
  });
  const set = async (sel: string, v: string) => {
    await page.fill(sel, v);
    await page.dispatchEvent(sel, 'change');
  };
  await set('#signal-url', net.signal ?? signal.url);
  await set('#ice-servers', net.ice ?? '');
  await set('#swarm-name', SWARM);
  if (mode === 'contribute') await set('#memory-mb', String(MEMORY_MB));
}

/** A Contribute tab, serving once it returns; in a new browser profile, or in `ctx` (a tab opened again there). */
async function contribute(reopen?: BrowserContext): Promise<(typeof contributors)[number]> {
  const ctx = reopen ?? (await app.newContext());
  if (!reopen) contexts.push(ctx);
  const page = await ctx.newPage();
  const errors = collectPageErrors(page);
  await openReady(page, app.served.url);
  await useSwarmSettings(page, 'contribute');
  await page.click('#swarm-join');
  await page.waitForFunction(() => {
    const s = document.getElementById('contribute-stats')?.dataset.span;
    return s || !document.getElementById('message')?.hidden;
  }, undefined, { timeout: 60_000, polling: 100 });
  const msg = await page.$eval('#message', (el) => ((el as HTMLElement).hidden ? '' : el.textContent ?? ''));
  if (msg) throw new Error(`contributing failed: ${msg}`);
  const { span, peer, weights } = await page.$eval('#contribute-stats', (el) => {
    const d = (el as HTMLElement).dataset;
    return { span: d.span ?? '', peer: d.peer ?? '', weights: d.weights ?? '' };
  });
  // the embedded model is pinned: each contributor checked its span's tensors before announcing it
  expect(weights).toBe('verified');
  const c = { page, span, peer, errors, ctx };
  contributors.push(c);
  return c;
}

/** Fold the sampling settings and the signalling settings away (for screenshots of the picture). */
async function closeSettings(page: Page): Promise<void> {
  await page.evaluate(() => {
    for (const d of document.querySelectorAll('details')) d.open = false;
  });
}

/** A TCP port nothing listens on: bound by us, then released. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const norm = (s: string) => s.replace(/\s+/g, ' ').trim();

beforeAll(async () => {
  app = await startApp();
  signal = await startSignalServer(0);
  const ctx = await app.newContext();
  contexts.push(ctx);
  chat = await ctx.newPage();
  chatErrors = collectPageErrors(chat);
  await openReady(chat, app.served.url);
  tokenizer = await embeddedTokenizer();
  want = await llamaReply(PROMPT, MAX_TOKENS);
  expect(want.length).toBeGreaterThan(10);
  // the same tab's local reply agrees with llama.cpp before any swarm is involved
  await send(chat, PROMPT, { temperature: 0, maxTokens: MAX_TOKENS });
  const local = await waitForReply(chat);
  expect(local.state).toBe('done');
  expect(local.ids).toEqual(want);
  // Local mode checked the embedded model's every tensor against its pinned manifest, and says so
  const status = await chat.$eval('#model-status', (el) => ({ weights: (el as HTMLElement).dataset.weights, text: el.textContent ?? '' }));
  expect(status.weights).toBe('verified');
  expect(status.text).toContain('weights checked against the pinned manifest');
});

/** What the chat tab shows, for a failed test's log: its state, message, swarm line, route and last reply. */
async function chatState(): Promise<string> {
  return chat.evaluate(() => {
    const d = (id: string) => document.getElementById(id) as HTMLElement | null;
    const last = [...document.querySelectorAll<HTMLElement>('#messages .msg.assistant')].at(-1);
    const hops = [...document.querySelectorAll<HTMLElement>('#swarm-map li.hop')].map((li) => `${li.dataset.peer?.slice(0, 8)}:${li.dataset.ms}`);
    return JSON.stringify({
      app: d('app')?.dataset.state,
      message: d('message')?.hidden ? '' : d('message')?.textContent,
      swarm: d('swarm-status')?.textContent,
      rows: document.querySelectorAll('#swarm-map .swarm-row').length,
      reroutes: d('swarm-map')?.dataset.reroutes,
      hops,
      reply: last ? { state: last.dataset.state, ids: (last.dataset.ids ?? '').split(',').filter(Boolean).length } : null,
    });
  }).catch((e: unknown) => `(chat tab unreadable: ${String(e)})`);
}

afterEach(async (ctx) => {
  if (ctx.task.result?.state !== 'fail') return;
  const tabs = contributors.map((c) => `${c.peer.slice(0, 8)} ${c.span}${c.page.isClosed() ? ' (closed)' : ''}`);
  console.log(`after the failure: chat ${await chatState()}; contributors ${tabs.join(', ')}`);
});

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await app?.close();
  await signal?.close();
  await removeBuild();
});

describe('the app in Swarm and Contribute modes', () => {
  it("three contributing tabs and a chat tab in Swarm mode: the reply is llama.cpp's", async () => {
    const t0 = performance.now();
    for (let i = 0; i < 3; i++) await contribute();
    // two layers fit each; the chat runs layers 0 and 4 itself (its own first and last), so hosts serve 1..3
    expect(contributors.map((c) => c.span)).toEqual(['1:3', '3:4', '1:3']);
    const upMs = performance.now() - t0;

    await chat.click('#new-chat');
    await useSwarmSettings(chat, 'swarm');
    await chat.click('#swarm-join');
    await chat.waitForSelector('#swarm-map[data-coverage="full"]', { timeout: 30_000 });
    await chat.waitForSelector('#app[data-state="ready"]');
    expect(await chat.$$eval('#swarm-map .swarm-row', (rows) => rows.map((r) => (r as HTMLElement).dataset.span).sort())).toEqual(['1:3', '1:3', '3:4']);
    expect(await chat.$$eval('#swarm-map .swarm-strip .cell', (cells) => cells.map((c) => c.textContent))).toEqual(['you', '2', '2', '1', 'you']);
    // the Head's tensors were checked; a pinned model's swarm line has no unpinned warning
    expect(await chat.$eval('#model-status', (el) => (el as HTMLElement).dataset.weights)).toBe('verified');
    expect(await chat.$eval('#swarm-status', (el) => el.textContent ?? '')).not.toContain('not pinned');

    const t1 = performance.now();
    await send(chat, PROMPT, { temperature: 0, maxTokens: MAX_TOKENS });
    const swarm = await waitForReply(chat, 120_000);
    const replyMs = performance.now() - t1;
    expect(swarm.state).toBe('done');
    expect(swarm.ids).toEqual(want);
    expect(norm(swarm.text)).toBe(norm(tokenizer.decode(want)));
    // layers 1..2 have two hosts, so each was checked against the other; layer 3 has one: the reply says so
    const stats = await chat.$eval('#messages .msg.assistant:last-of-type .stats', (el) => el.textContent ?? '');
    expect(stats).toContain('not checked: layer 3 had no second host to compare with');

    // the picture shows the route: two hops (layers 1..2, 3), each with a measured latency, in layer order
    await chat.waitForFunction(() => document.querySelectorAll('#swarm-map li.hop[data-ms]:not([data-ms=""])').length === 2, undefined, { timeout: 5_000 });
    const hops = await chat.$$eval('#swarm-map li.hop', (lis) => lis.map((li) => ({ peer: (li as HTMLElement).dataset.peer, ms: Number((li as HTMLElement).dataset.ms) })));
    expect(hops.map((h) => contributors.find((c) => c.peer === h.peer)?.span)).toEqual(['1:3', '3:4']);
    expect(hops.every((h) => h.ms > 0)).toBe(true);
    await closeSettings(chat);
    await chat.screenshot({ path: await screenshotPath('screenshot-swarm.png') });
    // the contributors on the route served the tokens
    await contributors[1].page.waitForFunction(() => Number(document.getElementById('contribute-stats')?.dataset.tokens) > 0, undefined, { timeout: 5_000 });
    await closeSettings(contributors[1].page);
    await contributors[1].page.screenshot({ path: await screenshotPath('screenshot-contribute.png') });
    console.log(`3 contributors up in ${upMs.toFixed(0)} ms; swarm reply of ${swarm.ids.length} tokens in ${replyMs.toFixed(0)} ms; hops ${hops.map((h) => h.ms.toFixed(1)).join(' / ')} ms`);
    expect(chatErrors).toEqual([]);
    for (const c of contributors) expect(c.errors).toEqual([]);
  });

  it("closing the tab that serves a hop mid-reply, with a spare for its span online, still gives llama.cpp's reply", async () => {
    // the spare takes the span the swarm covers least, weighted by each host's measured speed: any of the three
    const t0 = performance.now();
    const step = (what: string) => console.log(`spare ${((performance.now() - t0) / 1000).toFixed(1)} s: ${what}`);
    const spare = await contribute();
    step(`spare ${spare.peer.slice(0, 8)} on ${spare.span}`);
    const hop = ['1:3', '3:4'].indexOf(spare.span);
    expect(hop).toBeGreaterThanOrEqual(0);
    await chat.waitForFunction(() => document.querySelectorAll('#swarm-map .swarm-row').length === 4, undefined, { timeout: 30_000 });

    await chat.click('#new-chat');
    await send(chat, PROMPT, { temperature: 0, maxTokens: MAX_TOKENS });
    // wait for the route and a few streamed tokens, then close the tab serving the spare's span
    const first = await chat.waitForFunction((i) => {
      const shown = document.getElementById('message');
      if (shown && !shown.hidden) return `failed: ${shown.textContent}`; // the reply failed: say why at once
      const el = document.querySelector<HTMLElement>(`#swarm-map li.hop[data-hop="${i}"]`);
      const all = document.querySelectorAll<HTMLElement>('#messages .msg.assistant');
      const ids = all[all.length - 1]?.dataset.ids ?? '';
      return el?.dataset.peer && ids.split(',').length >= 5 ? el.dataset.peer : false;
    }, hop, { timeout: 60_000, polling: 20 });
    const victimPeer = (await first.jsonValue()) as string;
    expect(victimPeer).not.toMatch(/^failed: /);
    const victim = contributors.find((c) => c.peer === victimPeer);
    expect(victim?.span).toBe(spare.span);
    const streamedBefore = (await chat.$$eval('#messages .msg.assistant', (els) => (els.at(-1) as HTMLElement).dataset.ids ?? '')).split(',').length;
    step(`closing ${victimPeer.slice(0, 8)} after ${streamedBefore} tokens`);
    const t1 = performance.now();
    await victim!.page.close();
    const reply = await waitForReply(chat, 120_000);
    const ms = performance.now() - t1;
    expect(reply.state).toBe('done');
    expect(reply.ids).toEqual(want);
    expect(streamedBefore).toBeLessThan(want.length); // the tab closed mid-reply
    await chat.waitForSelector('#swarm-map[data-reroutes="1"]', { timeout: 5_000 });
    const now = await chat.$eval(`#swarm-map li.hop[data-hop="${hop}"]`, (li) => (li as HTMLElement).dataset.peer);
    // another live host of the span took the hop: the spare, or (when this chat's new route had chosen the spare) a
    // tab that chose the same span before it
    const others = contributors.filter((c) => c.span === spare.span && c.peer !== victimPeer).map((c) => c.peer);
    expect(others.length).toBeGreaterThan(0);
    expect(others).toContain(now);
    console.log(`closed ${victimPeer} after ${streamedBefore} tokens; the reply finished ${ms.toFixed(0)} ms later with one re-route`);
    expect(chatErrors).toEqual([]);
  }, 240_000); // a contributor tab to open (about 15 s on two cores) before the reply

  it("tabs serving hops closed mid-reply and opened again, one after another: every reply is llama.cpp's", async () => {
    const live = () => contributors.filter((c) => !c.page.isClosed());
    const rounds: string[] = [];
    const t0 = performance.now();
    const step = (what: string) => console.log(`churn ${((performance.now() - t0) / 1000).toFixed(1)} s: ${what}`);
    for (let round = 0; round < 3; round++) {
      step(`round ${round}: ${live().length} live tabs`);
      await chat.waitForFunction((n) => document.querySelectorAll('#swarm-map .swarm-row').length === n, live().length, { timeout: 30_000 });
      await chat.click('#new-chat');
      await send(chat, PROMPT, { temperature: 0, maxTokens: MAX_TOKENS });
      // half the reply streamed (the picture, refreshed every 500 ms, shows this reply's route by then): close the tab
      // on the route whose span another live tab also serves
      const route = await chat.waitForFunction((half) => {
        const shown = document.getElementById('message');
        if (shown && !shown.hidden) return [`failed: ${shown.textContent}`]; // the reply failed: say why at once
        const hops = [...document.querySelectorAll<HTMLElement>('#swarm-map li.hop')].map((li) => li.dataset.peer ?? '');
        const all = document.querySelectorAll<HTMLElement>('#messages .msg.assistant');
        const ids = all[all.length - 1]?.dataset.ids ?? '';
        return hops.length === 2 && hops.every(Boolean) && ids.split(',').length >= half ? hops : false;
      }, Math.floor(want.length / 2), { timeout: 60_000, polling: 20 });
      const hops = (await route.jsonValue()) as string[];
      expect(hops[0]).not.toMatch(/^failed: /);
      const victim = live().find((c) => hops.includes(c.peer) && live().some((o) => o !== c && o.span === c.span));
      expect(victim, `a hop of ${JSON.stringify(hops)} whose span another tab serves`).toBeDefined();
      const streamed = (await chat.$$eval('#messages .msg.assistant', (els) => (els.at(-1) as HTMLElement).dataset.ids ?? '')).split(',').length;
      step(`closing ${victim!.peer.slice(0, 8)} (${victim!.span}) after ${streamed} tokens`);
      await victim!.page.close();
      const reply = await waitForReply(chat, 120_000);
      step(`reply ${reply.state}`);
      expect(reply.state).toBe('done');
      expect(reply.ids).toEqual(want);
      expect(streamed).toBeLessThan(want.length); // the tab closed mid-reply
      // the reply went on past the closed tab by a re-route (the picture shows this reply's re-routes)
      await chat.waitForFunction(() => Number((document.getElementById('swarm-map') as HTMLElement).dataset.reroutes ?? '0') >= 1, undefined, { timeout: 5_000 });
      const reroutes = Number(await chat.$eval('#swarm-map', (el) => (el as HTMLElement).dataset.reroutes ?? '0'));
      // the same profile opens the app again and contributes: its host key, kept in IndexedDB, comes back with it
      const back = await contribute(victim!.ctx);
      step(`back on ${back.span}`);
      expect(back.peer.startsWith(victim!.peer)).toBe(true);
      // the chat remembers that this host dropped its reply: the picture marks the host's row when it shows again
      const marked = await chat.waitForFunction((peer) => {
        const row = document.querySelector<HTMLElement>(`#swarm-map .swarm-row[data-peer^="${peer}"]`);
        return row?.dataset.failures ? { failures: Number(row.dataset.failures), text: row.querySelector('.mark')?.textContent ?? '' } : false;
      }, victim!.peer, { timeout: 30_000, polling: 100 });
      const mark = (await marked.jsonValue()) as { failures: number; text: string };
      expect(mark.failures).toBeGreaterThanOrEqual(1);
      expect(mark.text).toContain('failed this tab');
      if (round === 0) await chat.screenshot({ path: await screenshotPath('screenshot-swarm-failed-host.png') });
      rounds.push(`closed ${victim!.peer.slice(0, 8)} (${victim!.span}) after ${streamed} tokens: ${reroutes} re-route(s); back on ${back.span}`);
    }
    console.log(`churn in the page: ${rounds.join('; ')}`);
    expect(chatErrors).toEqual([]);
    for (const c of live()) expect(c.errors).toEqual([]);
  }, 300_000); // three rounds, each with a tab opened again (about 15 s each on two cores)

  it('with the signalling server gone, a new chat\'s identity cannot join: a named error, the message kept; with the setting off the chat goes on', async () => {
    await signal.close(); // the links already open are peer to peer and stay up
    await chat.click('#new-chat');
    await chat.waitForSelector('#message:not([hidden])', { timeout: 30_000 }); // the new identity, made ahead, could not join
    await send(chat, PROMPT, { temperature: 0, maxTokens: MAX_TOKENS });
    // the reply fails before anything is generated: its message goes, the chat's error stays
    await chat.waitForSelector('#message[data-scope="chat"]:not([hidden])', { timeout: 60_000 });
    await chat.waitForSelector('#app[data-state="ready"]');
    expect(await chat.$$eval('#messages .msg.assistant', (els) => els.length)).toBe(0);
    const shownNow = await chat.$eval('#message', (el) => ({ name: (el as HTMLElement).dataset.error, text: el.textContent ?? '' }));
    expect(shownNow.name).toBe('SignalError');
    expect(shownNow.text).toContain('new identity could not join; the message is kept');
    // the message is kept, and nothing went out under the last chat's identity
    expect(await chat.$$eval('#messages .msg.user', (els) => els.map((e) => e.textContent ?? ''))).toEqual([expect.stringContaining(PROMPT)]);
    await chat.evaluate(() => {
      const box = document.getElementById('identity-per-chat') as HTMLInputElement;
      box.checked = false;
      box.dispatchEvent(new Event('change'));
    });
    await chat.click('#regenerate');
    const reply = await waitForReply(chat, 120_000);
    expect(reply.state).toBe('done');
    expect(reply.ids).toEqual(want);
    // the panel says the server is out of reach (and still shows this tab's id, which PeerJS forgets meanwhile)
    expect(await chat.$eval('#swarm-status', (el) => el.textContent ?? '')).toContain('signalling server out of reach');
    // what the page logged: the named error it showed, and the browser's refused connections; no exception
    expect(chatErrors.filter((e) => !/SignalError|WebSocket|ERR_CONNECTION_REFUSED/.test(e))).toEqual([]);
  });

  it('a signalling server that is not there, or a bad ICE line, is a named error and the tab keeps chatting locally', async () => {
    const ctx = await app.newContext();
    contexts.push(ctx);
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    const failure = async () => {
      await page.waitForSelector('#message:not([hidden])', { timeout: 30_000 });
      return page.$eval('#message', (el) => ({ name: (el as HTMLElement).dataset.error, text: el.textContent ?? '' }));
    };
    // a closed port on this machine (bound and released just now): PeerJS reports a network error at once
    const closed = await freePort();
    await useSwarmSettings(page, 'swarm', { signal: `ws://127.0.0.1:${closed}/` });
    await page.click('#swarm-join');
    const e1 = await failure();
    expect(e1.name).toBe('SignalError');
    // nothing listens there: the message says so (not "offline", not "refused")
    expect(e1.text).toMatch(new RegExp(`^No answer from the signalling server ws://127\\.0\\.0\\.1:${closed}/ `));
    expect(await page.$eval('#swarm-join', (b) => b.textContent)).toBe('Join swarm');
    // an ICE line that is neither stun: nor turn: is refused before anything connects, naming the line
    await page.evaluate(() => document.getElementById('message')!.setAttribute('hidden', ''));
    await useSwarmSettings(page, 'contribute', { ice: 'stun:stun.example.org:3478\nhttps://turn.example.org' });
    await page.click('#swarm-join');
    const e2 = await failure();
    expect(e2.name).toBe('InvalidArgumentError');
    expect(e2.text).toContain('line 2');
    // nothing was lost: back in Local mode the same tab still replies
    await page.click('.modes .mode[data-mode="local"]');
    await send(page, PROMPT, { temperature: 0, maxTokens: MAX_TOKENS });
    const r = await waitForReply(page);
    expect(r.ids).toEqual(want);
    // the page logs what it shows (console.error of the named errors) and the browser logs the refused WebSocket
    expect(errors.filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket|SignalError|InvalidArgumentError/.test(e))).toEqual([]);
  });
});
