// What the model picker says about a GGUF file before fetching its weights: the facts of its header (architecture,
// tensor types, parameters, bytes to download), the memory it needs at the chosen context against this device's
// limits and the memory budget, and the verdict in one sentence. Also the budget itself: the user's memory limit, or
// a share of the memory the browser declares. Text and one DOM builder; the judging is the engine worker's
// (worker/inspect.ts), the numbers model/memory.ts's.

import { MIN_CONTEXT, type MemoryProblem } from '../model/memory';
import type { MemoryBudget, ModelReport } from '../worker/api';
import { h } from './dom';
import { formatBytes } from './format';

/** Share of the declared device memory a model may use when the user set no limit: the rest is the browser's, the
 *  system's and other apps'. Half: a 4 GB phone gets 2 GB, which holds the catalog's models at a 2048 context. */
export const DECLARED_SHARE = 0.5;

/** The memory budget from the user's limit (MB) or the browser's declared memory (GB, navigator.deviceMemory). */
export function memoryBudget(settingMb: number | null, declaredGb: number | undefined): MemoryBudget | null {
  if (settingMb !== null) return { bytes: Math.round(settingMb * 1e6), source: 'setting' };
  if (declaredGb === undefined || !(declaredGb > 0)) return null;
  return { bytes: Math.round(declaredGb * 2 ** 30 * DECLARED_SHARE), source: 'declared' };
}

/** Where the budget comes from, in words. */
export function budgetText(b: MemoryBudget | null, declaredGb: number | undefined): string {
  if (!b) return 'no memory limit (this browser does not say how much memory the device has; set one if models fail to load)';
  if (b.source === 'setting') return `${formatBytes(b.bytes)} (your memory limit)`;
  return `${formatBytes(b.bytes)} (half of the ${declaredGb ?? '?'} GB this browser says the device has)`;
}

/** 134515008 -> "135M", 1235814400 -> "1.24B" */
export function formatParams(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e8 ? 0 : 1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)}K`;
  return String(n);
}

export function problemText(p: MemoryProblem): string {
  switch (p.kind) {
    case 'budget':
      return `it needs ${formatBytes(p.need)} of memory and the limit is ${formatBytes(p.budget)}`;
    case 'buffer': {
      const what = { 'kv-cache': "one layer's KV cache", 'rope-table': 'the RoPE table', 'weight-row': 'one row of a weight matrix' }[p.what];
      return `${what} needs a ${formatBytes(p.bytes)} buffer and this GPU allows ${formatBytes(p.limit)} (${p.limitName})`;
    }
    default: {
      const never: never = p;
      throw new Error(`unknown memory problem ${JSON.stringify(never)}`);
    }
  }
}

/** The verdict in one sentence. */
export function verdictText(r: ModelReport): string {
  const problems = r.problems.map(problemText).join('; ');
  switch (r.verdict) {
    case 'fits':
      return `Runs here with ${r.context} tokens of context.`;
    case 'shorter':
      return `Too big for this device with ${r.context} tokens of context (${problems}); it fits with ${r.fitContext}.`;
    case 'too-big':
      return `Too big for this device: ${problems}${r.context > MIN_CONTEXT ? `, and no shorter context (down to ${Math.min(MIN_CONTEXT, r.modelContext)}) fits` : ''}.`;
    case 'cannot-run':
      return `This build cannot run it: ${r.reason}`;
    case 'no-space':
      return `Not enough storage: the download needs ${formatBytes(r.downloadBytes)} and this site may use ${formatBytes(r.freeStorage ?? 0)} more. Delete downloaded models you no longer use, or ask for more storage.`;
    default: {
      const never: never = r.verdict;
      throw new Error(`unknown verdict ${String(never)}`);
    }
  }
}

/** The header's facts as term/value pairs. */
export function reportFacts(r: ModelReport, declaredGb: number | undefined, downloadWord: string): [string, string][] {
  const facts: [string, string][] = [
    ['Architecture', `${r.arch}, ${r.tokenizer} tokenizer${r.modelContext ? `, ${r.modelContext} tokens of context` : ''}`],
    ['Tensor types', r.tensorTypes.join(', ')],
    ['Parameters', formatParams(r.params)],
    ['Download', r.downloadBytes > 0 ? `${formatBytes(r.downloadBytes)}${r.downloadBytes < r.size ? ` of ${formatBytes(r.size)}` : ''}` : downloadWord],
  ];
  const m = r.memory;
  if (m) {
    facts.push([`Memory at ${m.context} tokens`, `${formatBytes(m.total)}: ${formatBytes(m.weights)} weights + ${formatBytes(m.kvCache)} KV cache + ${formatBytes(m.work)} working buffers`]);
  }
  facts.push(['This device', `buffers up to ${formatBytes(r.limits.maxBufferSize)}, bindings up to ${formatBytes(r.limits.maxStorageBufferBindingSize)}; memory limit ${budgetText(r.budget, declaredGb)}`]);
  if (r.freeStorage !== null) facts.push(['Free storage', formatBytes(r.freeStorage)]);
  return facts;
}

/** The report as a small definition list. */
export function reportEl(r: ModelReport, declaredGb: number | undefined, downloadWord: string): HTMLElement {
  const dl = h('dl', { class: 'report small', 'data-verdict': r.verdict });
  for (const [k, v] of reportFacts(r, declaredGb, downloadWord)) dl.append(h('dt', {}, k), h('dd', {}, v));
  return dl;
}
