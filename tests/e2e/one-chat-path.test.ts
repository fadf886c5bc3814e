// One chat path: the page (the engine worker's chat API) and `flock chat` (the same chat engine in Node) give the same
// reply to the same message at temperature 0, for the embedded model (no chat template: the text-continuation
// fallback both use) and for a copy of it with a chat template; and a reply that fills the context window ends with
// "the context is full" in the page (the 'context' finish crosses the worker boundary) and in the terminal.
// Oracle for the ids: llama.cpp on the same file and prompt ids.

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChatTemplate } from '../../src/model/chat-template';
import { openGguf } from '../../src/model/gguf';
import { openSource } from '../../src/model/source-file';
import { createTokenizer, type Tokenizer } from '../../src/model/tokenizer';
import { llamaGreedy } from '../helpers/llama-ref';
import { collectPageErrors, openReady, removeBuild, ROOT, send, startApp, waitForReply, type App } from './browser';
import { withChatTemplate, withContextLength } from './gguf-template';

const MODEL = path.join(ROOT, 'public/models/stories260K.gguf');
const MESSAGE = 'Once upon a time, a little fox';
const SYSTEM = 'You are a helpful assistant.'; // the page's default system prompt
const TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

let app: App;
let tmp: string;
let templated: string;
let tok: Tokenizer;
let metadata: Record<string, unknown>;

/** `flock chat` with `message` on stdin: the reply as printed, and the mark it ended with. */
async function cliChat(args: string[], message: string): Promise<{ text: string; mark: string }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/flock.mjs'), 'chat', ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
  child.stdin.end(`${message}\n`);
  const code = await new Promise<number | null>((r) => child.on('close', r));
  if (code !== 0) throw new Error(`flock chat exited with ${code}: ${err}`);
  const echo = `> ${message}\n`;
  const reply = out.slice(out.indexOf(echo) + echo.length);
  const m = /( \[[^\]]+\])?\n$/.exec(reply);
  if (!m) throw new Error(`unexpected flock chat output: ${JSON.stringify(out)}`);
  return { text: reply.slice(0, m.index), mark: m[1]?.trim() ?? '' };
}

const norm = (s: string) => s.replace(/\s+/g, ' ').trim();

async function pageReply(page: Page, message: string, maxTokens: number) {
  await send(page, message, { temperature: 0, maxTokens });
  return waitForReply(page, 180_000);
}

beforeAll(async () => {
  app = await startApp();
  tmp = await mkdtemp(path.join(os.tmpdir(), 'flock-one-path-'));
  templated = path.join(tmp, 'stories-chat.gguf');
  await writeFile(templated, withChatTemplate(new Uint8Array(await readFile(MODEL)), TEMPLATE));
  const file = await openGguf(openSource(MODEL));
  metadata = file.metadata;
  tok = createTokenizer(metadata);
});

afterAll(async () => {
  await app?.close();
  await removeBuild();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

describe('the page and flock chat are one chat path', () => {
  it('the embedded model (no template): the same reply, and llama.cpp\'s ids', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    const inPage = await pageReply(page, MESSAGE, 40);
    const inCli = await cliChat(['--temperature', '0', '--max-tokens', '40'], MESSAGE);
    // oracle: the fallback renders the message alone after BOS; llama.cpp greedy on those ids
    const prompt = ChatTemplate.fromMetadata(metadata, tok).apply([{ role: 'system', content: SYSTEM }, { role: 'user', content: MESSAGE }]);
    expect(prompt.text).toBe(MESSAGE);
    const ref = await llamaGreedy(MODEL, prompt.ids, 40);
    const end = ref.ids.findIndex((id) => tok.isEndOfGeneration(id));
    console.log(`page: ${JSON.stringify(inPage.text)} (${inPage.finish}); flock chat: ${JSON.stringify(inCli.text)} ${inCli.mark}`);
    expect(inPage.ids).toEqual(end < 0 ? ref.ids : ref.ids.slice(0, end));
    expect(norm(inCli.text)).toBe(norm(inPage.text));
    expect(norm(inPage.text)).toBe(norm(tok.decode(inPage.ids)));
    expect(inPage.finish === 'length' ? '[max tokens]' : '').toBe(inCli.mark);
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('a model with a chat template: the same reply', async () => {
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    await page.click('#open-models');
    await page.setInputFiles('#model-file', { name: 'stories-chat.gguf', mimeType: 'application/octet-stream', buffer: await readFile(templated) });
    await page.waitForFunction(() => document.getElementById('model-name')?.textContent === 'stories-chat.gguf' && document.getElementById('app')?.dataset.state === 'ready', undefined, { timeout: 60_000 });
    await page.click('#models-close');
    const inPage = await pageReply(page, 'Tell me a story', 12);
    const inCli = await cliChat(['--model', templated, '--system', SYSTEM, '--temperature', '0', '--max-tokens', '12'], 'Tell me a story');
    const rendered = `system: ${SYSTEM}\nuser: Tell me a story\nassistant:`;
    const ref = await llamaGreedy(MODEL, [tok.bosId!, ...tok.encode(rendered)], 12);
    const end = ref.ids.findIndex((id) => tok.isEndOfGeneration(id));
    console.log(`page: ${JSON.stringify(inPage.text)}; flock chat: ${JSON.stringify(inCli.text)} ${inCli.mark}`);
    expect(inPage.ids).toEqual(end < 0 ? ref.ids : ref.ids.slice(0, end));
    expect(norm(inCli.text)).toBe(norm(inPage.text));
    expect(errors).toEqual([]);
    await ctx.close();
  });

  it('a reply that fills the context ends with "the context is full", in the page and in the terminal', async () => {
    // stories260K with a 160-position context (so the prompt stays short on SwiftShader), and a prompt a few tokens
    // short of it
    const short = path.join(tmp, 'stories-ctx160.gguf');
    await writeFile(short, withContextLength(new Uint8Array(await readFile(MODEL)), 'llama', 160));
    const sentence = 'The cat sat on the mat and looked at the sun. ';
    let text = '';
    while (1 + tok.encode(text + sentence).length <= 154) text += sentence;
    text = text.trim();
    const ids = [tok.bosId!, ...tok.encode(text)];
    // the positions left hold `room` more tokens, and the last of them still gives the logits of one more
    const room = 160 - ids.length;
    const ref = await llamaGreedy(MODEL, ids, room + 1);
    expect(ref.ids.some((id) => tok.isEndOfGeneration(id))).toBe(false); // the context, not EOS, ends this reply
    const ctx = await app.newContext();
    const page = await ctx.newPage();
    const errors = collectPageErrors(page);
    await openReady(page, app.served.url);
    await page.click('#open-models');
    await page.setInputFiles('#model-file', { name: 'stories-ctx160.gguf', mimeType: 'application/octet-stream', buffer: await readFile(short) });
    await page.waitForFunction(() => document.getElementById('model-name')?.textContent === 'stories-ctx160.gguf' && document.getElementById('app')?.dataset.state === 'ready', undefined, { timeout: 60_000 });
    await page.click('#models-close');
    const inPage = await pageReply(page, text, 200);
    expect(inPage.finish).toBe('context');
    expect(inPage.ids).toEqual(ref.ids);
    expect(await page.textContent('#messages .msg.assistant .stats')).toMatch(/the context is full/);
    const inCli = await cliChat(['--model', short, '--temperature', '0', '--max-tokens', '200'], text);
    expect(inCli.mark).toBe('[the context is full]');
    expect(norm(inCli.text)).toBe(norm(inPage.text));
    console.log(`prompt of ${ids.length} tokens; ${room} more filled the context: ${JSON.stringify(inPage.text)}`);
    expect(errors).toEqual([]);
    await ctx.close();
  });
});
