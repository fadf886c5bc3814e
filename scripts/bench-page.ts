// The engine in the page beside the engine in Node, from one run: builds the engine test page (tests/e2e/engine-page),
// runs its benchmark in a Web Worker of headless Chromium (WebGPU there; SwiftShader on machines without a GPU), then
// the same benchmark (tests/e2e/engine-page/bench-core.ts) in this process through Dawn. Reports load time, the first
// reply after "ready" against a warm one, and prefill/decode speed with submissions and readbacks per decode token
// for each decode-ahead setting. Each `--compile` setting (pipelines compiled while loading, or at first use) gets
// a fresh Chromium, so no pipeline is cached from the one before; Node runs once, with the first setting (its one
// device per process keeps pipelines between runs). Chromium runs first, so Node's Dawn device is not open (and
// polling) meanwhile.
// Usage: node --import tsx scripts/bench-page.ts [--model PATH] [--contexts 64] [--tokens 64] [--runs 3]
//        [--decode-ahead 0,4] [--compile on,off] [--out bench-results/bench-page.json]

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { build } from 'vite';
import { nodeDevice } from '../src/cli/dawn';
import { FileSource } from '../src/model/source-file';
import { launchChromium, ROOT } from '../tests/e2e/browser';
import { benchEngine, type EngineBenchOptions, type EngineBenchResult } from '../tests/e2e/engine-page/bench-core';
import { startModelServer } from '../tests/e2e/model-server';
import { serveFolder } from '../tests/e2e/static-server';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(ROOT, 'public/models/stories260K.gguf') },
    contexts: { type: 'string', default: '64' },
    tokens: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    'decode-ahead': { type: 'string', default: '0,4' },
    compile: { type: 'string', default: 'on' },
    out: { type: 'string', default: 'bench-results/bench-page.json' },
  },
});
const list = (s: string) => s.split(',').map((x) => Number(x.trim()));
const compiles = values.compile!.split(',').map((c) => c.trim() === 'on');
const opts: EngineBenchOptions = {
  contexts: list(values.contexts!),
  tokens: Number(values.tokens),
  runs: Number(values.runs),
  aheads: list(values['decode-ahead']!),
  compilePipelines: compiles[0],
};

async function inChromium(opts: EngineBenchOptions): Promise<EngineBenchResult> {
  const outDir = await mkdtemp(path.join(os.tmpdir(), 'flock-bench-page-'));
  await build({ root: path.join(ROOT, 'tests/e2e/engine-page'), configFile: false, logLevel: 'warn', base: './', build: { outDir, emptyOutDir: true } });
  const page = await serveFolder(outDir);
  const model = await startModelServer(readFileSync(values.model!), path.basename(values.model!));
  const browser = await launchChromium();
  try {
    const tab = await browser.newPage();
    const errors: string[] = [];
    tab.on('pageerror', (e) => errors.push(e.message));
    await tab.goto(page.url);
    await tab.waitForSelector('body[data-ready="true"]');
    const r = await tab.evaluate(
      ([url, o]) => (window as unknown as { flockEngineTest: { bench(u: string, o: EngineBenchOptions): Promise<EngineBenchResult> } }).flockEngineTest.bench(url, o),
      [model.url, opts] as const,
    );
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    return r;
  } finally {
    await browser.close();
    await page.close();
    await model.close();
    await rm(outDir, { recursive: true, force: true });
  }
}

const pages: EngineBenchResult[] = [];
for (const compilePipelines of compiles) pages.push(await inChromium({ ...opts, compilePipelines }));
const source = new FileSource(values.model!);
const node = await benchEngine(await nodeDevice(), source, opts);
await source.close();

const f = (x: number, d = 1) => x.toFixed(d);
const lines = [
  `model ${path.basename(values.model!)}; page: ${pages[0].adapter} (Chromium, Web Worker); node: ${node.adapter} (Dawn)`,
  '',
  '| engine | context | decode ahead | prefill tok/s | decode tok/s | submits / token | readbacks / token | dispatches / token |',
  '|---|---:|---:|---:|---:|---:|---:|---:|',
];
const label = (name: string, r: EngineBenchResult) => `${name}${compiles.length > 1 ? ` (compile ${r.compilePipelines ? 'at load' : 'at use'})` : ''}`;
for (const [name, r] of [...pages.map((p) => [label('page', p), p] as const), [label('node', node), node] as const]) {
  for (const row of r.rows) {
    const p = row.perDecodeStep;
    lines.push(`| ${name} | ${row.context} | ${row.decodeAhead} | ${f(row.prefillTokensPerSecond)} | ${f(row.decodeTokensPerSecond)} | ` +
      `${f(p.submits, 3)} | ${f(p.readbacks, 3)} | ${f(p.dispatches, 0)} |`);
  }
}
lines.push('');
for (const [name, r] of [...pages.map((p) => ['page', p] as const), ['node', node] as const]) {
  lines.push(`${name}, pipelines ${r.compilePipelines ? `compiled while loading (${r.pipelines})` : 'compiled at first use'}: ` +
    `load ${f(r.loadMs, 0)} ms; first reply after ready: first token ${f(r.firstReply.firstTokenMs, 0)} ms ` +
    `(${f(r.firstReply.totalMs, 0)} ms in all); the same reply warm: ${f(r.warmReply.firstTokenMs, 0)} ms (${f(r.warmReply.totalMs, 0)} ms)`);
}
process.stdout.write(lines.join('\n') + '\n');
mkdirSync(path.dirname(values.out!), { recursive: true });
writeFileSync(values.out!, JSON.stringify({ date: new Date().toISOString(), model: path.basename(values.model!), options: opts, pages, node }, null, 2) + '\n');
process.stdout.write(`\nJSON written to ${values.out}\n`);
process.exit(0);
