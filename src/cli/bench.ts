// `flock bench`: prefill and decode speed of this engine against llama.cpp on the same GGUF in the same run —
// llama.cpp's CPU build, and its Vulkan build on the same Vulkan device Dawn uses — at one or more context lengths
// (decode after a prompt of each length), plus, per decode token, the GPU work we do: submissions, readbacks,
// dispatches, weight bytes read against the model's weight bytes, and the bandwidth that achieves.
// Prints a table and writes JSON. Numbers vary between runs on shared machines: each figure is a median of runs.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { FileSource } from '../model/source-file';
import { DEFAULT_DECODE_AHEAD, type GenerationResult } from '../engine/generate';
import { generateAll, LocalModel } from '../engine/local-model';
import { nodeDevice } from './dawn';
import { InvalidArgumentError } from '../model/errors';
import { encodeReadback, storageBuffer, submit, type FlockDevice, type GpuCounters } from '../gpu/device';
import { GpuProfiler, PROFILER_MAX_DISPATCHES, type KindTime } from '../gpu/profiler';
import { DEFAULT_MODEL } from './default-model';
import { median } from './bench-runs';

const run = promisify(execFile);

interface Speed {
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}


interface LlamaRun {
  backend: 'cpu' | 'vulkan';
  prompt: number;
  decode: number;
  threads: number;
  runs: number;
}

async function llamaCpp(model: string, r: LlamaRun): Promise<Speed | { error: string }> {
  // A bundled build (scripts/device-bundle.sh) has bench-llama.mjs beside this module: plain node runs that;
  // from the sources, tsx runs bench-llama.ts.
  const bundled = fileURLToPath(new URL('./bench-llama.mjs', import.meta.url));
  const args = existsSync(bundled) ? [bundled] : ['--import', 'tsx', fileURLToPath(new URL('./bench-llama.ts', import.meta.url))];
  const env = { ...process.env };
  // ggml's Vulkan backend skips CPU-type devices (SwiftShader) unless they are listed explicitly
  if (r.backend === 'vulkan') env.GGML_VK_VISIBLE_DEVICES ??= '0';
  try {
    const { stdout } = await run(process.execPath, [...args, model, r.backend, String(r.prompt), String(r.decode), String(r.threads), String(r.runs)], {
      env, timeout: 600_000, maxBuffer: 1 << 20,
    });
    const line = stdout.trim().split('\n').pop() ?? '';
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed === 'object' && parsed !== null && 'decodeTokensPerSecond' in parsed && 'prefillTokensPerSecond' in parsed) {
      return { prefillTokensPerSecond: Number(parsed.prefillTokensPerSecond), decodeTokensPerSecond: Number(parsed.decodeTokensPerSecond) };
    }
    return { error: `unexpected output: ${line.slice(0, 200)}` };
  } catch (e) {
    const stderr = String((e as { stderr?: unknown }).stderr ?? '');
    const why = stderr.split('\n').filter((l) => /error|not support|unsupported/i.test(l)).slice(0, 2).join(' / ');
    return { error: why || (e as Error).message.split('\n')[0] };
  }
}

/** A whole number >= min from a command-line value, or a named error. */
function wholeArg(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`--${name} expects a whole number >= ${min}, got "${v}"`);
  return n;
}

/** The prompt ids bench-llama.ts builds too: BOS then ordinary pieces. */
function benchPrompt(bos: number, vocab: number, n: number): number[] {
  return [bos, ...Array.from({ length: n - 1 }, (_, i) => 3 + ((i * 7) % Math.max(1, vocab - 3)))];
}

export async function runBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', multiple: true },
      out: { type: 'string', default: 'bench-results/bench.json' },
      /** prompt length (one context); --contexts gives several */
      prompt: { type: 'string', default: '64' },
      /** comma-separated prompt lengths: decode is timed after a prompt of each length (e.g. 128,4096) */
      contexts: { type: 'string' },
      tokens: { type: 'string', default: '64' },
      'vulkan-tokens': { type: 'string', default: '16' },
      runs: { type: 'string', default: '3' },
      /** llama.cpp CPU threads (default 1: the right count on this project's 2-core machines) */
      'cpu-threads': { type: 'string', default: '1' },
      /** skip llama.cpp's CPU build above this context (a 4,096-token prompt on one CPU thread takes minutes) */
      'cpu-max-context': { type: 'string' },
      /** the GPU's memory bandwidth, GB/s: reports achieved decode bandwidth as a share of it */
      'peak-gbps': { type: 'string' },
      /** least vec4 steps per matvec thread (default: the device's choice, 16 on SwiftShader and 4 on GPUs) */
      'matvec-steps': { type: 'string' },
      /** time every dispatch of 16 decode steps with GPU timestamps and print GPU time by kernel */
      profile: { type: 'boolean', default: false },
      /** greedy steps queued per submission, comma-separated to compare (0: one step and one readback per token) */
      'decode-ahead': { type: 'string', default: String(DEFAULT_DECODE_AHEAD) },
      /** no warm-up generation before the timed runs (large models on SwiftShader, where one step takes minutes) */
      'no-warmup': { type: 'boolean', default: false },
    },
  });
  const models = values.model?.length ? values.model : [DEFAULT_MODEL];
  const contexts = (values.contexts ?? values.prompt!).split(',').map((c) => wholeArg('contexts', c.trim(), 1));
  const aheads = values['decode-ahead']!.split(',').map((a) => wholeArg('decode-ahead', a.trim(), 0));
  const decodeLen = wholeArg('tokens', values.tokens, 2);
  const runs = wholeArg('runs', values.runs, 1);
  const cpuThreads = wholeArg('cpu-threads', values['cpu-threads'], 1);
  const cpuMaxContext = values['cpu-max-context'] === undefined ? Infinity : wholeArg('cpu-max-context', values['cpu-max-context'], 0);
  const peakGBps = values['peak-gbps'] === undefined ? undefined : Number(values['peak-gbps']);
  const steps = values['matvec-steps'] === undefined ? undefined : wholeArg('matvec-steps', values['matvec-steps'], 1);
  const dev = await nodeDevice({ matvecSteps: steps, timestamps: values.profile });
  const rows: Record<string, unknown>[] = [];
  for (const path of models) {
    const t0 = performance.now();
    const source = new FileSource(path);
    const model = await LocalModel.load(dev, source, { maxContext: Math.max(...contexts) + decodeLen + 8 });
    const loadMs = performance.now() - t0;
    const { vocab } = model.config;
    const bos = model.tokenizer.bosId ?? 1;
    const fits = contexts.filter((c) => c + decodeLen < model.maxContext);
    for (const c of contexts) if (!fits.includes(c)) process.stdout.write(`${basename(path)}: context ${c} + ${decodeLen} exceeds the model's ${model.maxContext}; skipped\n`);
    // warm-up: a prefill long enough for the prefill kernels, then decode steps
    if (!values['no-warmup']) await generateAll(model, { inputIds: benchPrompt(bos, vocab, Math.min(8, fits[0] ?? 8)), maxTokens: 2, temperature: 0, ignoreEos: true });
    const ours = new Map<string, { speed: Speed; per: GpuCounters }>();
    for (const c of fits) {
      // runs of the decode-ahead settings alternate, so a shared machine's changing load falls on each alike
      const results = new Map<number, GenerationResult[]>(aheads.map((a) => [a, []]));
      for (let i = 0; i < runs; i++) {
        for (const decodeAhead of aheads) {
          const opts = { inputIds: benchPrompt(bos, vocab, c), maxTokens: decodeLen, temperature: 0, ignoreEos: true, decodeAhead };
          results.get(decodeAhead)!.push(await generateAll(model, opts));
        }
      }
      for (const [decodeAhead, rs] of results) {
        ours.set(`${c}:${decodeAhead}`, {
          speed: {
            prefillTokensPerSecond: median(rs.map((r) => r.timings.prefillTokensPerSecond)),
            decodeTokensPerSecond: median(rs.map((r) => r.timings.decodeTokensPerSecond)),
          },
          per: rs[0].perDecodeStep,
        });
      }
    }
    const syncMs = await roundTripMs(dev);
    const firstRun = ours.values().next().value;
    const profile = values.profile && firstRun ? await profileDecode(dev, model, bos, firstRun.per.dispatches) : undefined;
    const modelWeightBytes = model.weightBytes;
    model.destroy();
    await source.close();
    for (const c of fits) {
      const cpu = c <= cpuMaxContext
        ? await llamaCpp(path, { backend: 'cpu', prompt: c, decode: decodeLen, threads: cpuThreads, runs })
        : { error: `skipped above --cpu-max-context ${cpuMaxContext}` };
      const vulkan = await llamaCpp(path, { backend: 'vulkan', prompt: c, decode: Number(values['vulkan-tokens']), threads: cpuThreads, runs });
      const ratio = (a: Speed, b: Speed | { error: string }, k: keyof Speed) => ('error' in b ? null : a[k] / b[k]);
      for (const decodeAhead of aheads) {
        const { speed, per } = ours.get(`${c}:${decodeAhead}`)!;
        const gbps = (per.weightBytesRead * speed.decodeTokensPerSecond) / 1e9;
        rows.push({
          model: basename(path),
          device: dev.adapterName,
          matvecSteps: dev.matvecSteps,
          context: c,
          decodeAhead,
          promptTokens: c,
          decodeTokens: decodeLen,
          loadMs,
          flock: speed,
          llamaCpu: cpu,
          llamaVulkan: vulkan,
          ratios: {
            prefillVsCpu: ratio(speed, cpu, 'prefillTokensPerSecond'),
            decodeVsCpu: ratio(speed, cpu, 'decodeTokensPerSecond'),
            prefillVsVulkan: ratio(speed, vulkan, 'prefillTokensPerSecond'),
            decodeVsVulkan: ratio(speed, vulkan, 'decodeTokensPerSecond'),
          },
          ...(profile && c === fits[0] && decodeAhead === aheads[0] ? { gpuProfile: profile } : {}),
          perDecodeToken: {
            ms: 1000 / speed.decodeTokensPerSecond,
            syncRoundTripMs: syncMs,
            encodeMs: per.encodeMs,
            submits: per.submits,
            readbacks: per.readbacks,
            dispatches: per.dispatches,
            weightBytesRead: per.weightBytesRead,
            modelWeightBytes,
            readOverModel: per.weightBytesRead / modelWeightBytes,
            achievedGBps: gbps,
            ...(peakGBps ? { peakGBps, shareOfPeak: gbps / peakGBps } : {}),
          },
        });
      }
    }
  }
  printTable(rows);
  mkdirSync(dirname(values.out!), { recursive: true });
  writeFileSync(values.out!, JSON.stringify({ date: new Date().toISOString(), rows }, null, 2) + '\n');
  process.stdout.write(`\nJSON written to ${values.out}\n`);
}

/**
 * GPU time per decode step by kernel kind, from timestamp queries (null fields when the adapter has none). Times up
 * to 16 steps, every one of them decode-shaped (a one-token prompt, then one token per step), as many as the
 * profiler's query set holds at `dispatchesPerStep` (an 8B model has ~290 dispatches a step).
 */
async function profileDecode(dev: FlockDevice, model: LocalModel, bos: number, dispatchesPerStep: number): Promise<{ kinds: KindTime[]; gpuUsPerStep: number; steps: number } | { error: string }> {
  if (!dev.device.features.has('timestamp-query')) return { error: 'this adapter offers no timestamp-query' };
  const steps = Math.max(1, Math.min(16, Math.floor(PROFILER_MAX_DISPATCHES / Math.ceil(dispatchesPerStep + 1))));
  const profiler = new GpuProfiler(dev);
  dev.profiler = profiler;
  try {
    await generateAll(model, { inputIds: [bos], maxTokens: steps, temperature: 0, ignoreEos: true });
  } finally {
    dev.profiler = undefined;
  }
  if (profiler.dropped > 0) return { error: `${profiler.dropped} dispatches did not fit the profiler's query set` };
  const kinds = (await profiler.read()).map((k) => ({ ...k, dispatches: k.dispatches / steps, us: k.us / steps }));
  profiler.destroy();
  return { kinds, gpuUsPerStep: kinds.reduce((s, k) => s + k.us, 0), steps };
}

/**
 * Median time of an empty round trip on `dev`: submit a 16-byte copy and map it back. Every decode step pays at least
 * this (one submission, one readback), so it splits a step into the device's fixed cost and our own work.
 */
async function roundTripMs(dev: FlockDevice, n = 50): Promise<number> {
  const src = storageBuffer(dev, 'bench round trip', 16);
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const enc = dev.device.createCommandEncoder({ label: 'bench round trip' });
    const read = encodeReadback(dev, enc, src, 16);
    submit(dev, enc);
    await read();
    xs.push(performance.now() - t0);
  }
  src.destroy();
  return median(xs);
}

function fmt(x: unknown, digits = 1): string {
  // small figures (a 1B model on SwiftShader decodes at ~0.01 tok/s) keep three significant digits
  if (typeof x === 'number') return x !== 0 && Math.abs(x) < 1 && digits > 0 ? x.toPrecision(3) : x.toFixed(digits);
  if (x && typeof x === 'object' && 'error' in x) return 'n/a';
  return String(x);
}

function printTable(rows: Record<string, unknown>[]): void {
  const lines = [
    '| model | context | decode ahead | engine | prefill tok/s | decode tok/s |',
    '|---|---:|---:|---|---:|---:|',
  ];
  const notes = new Set<string>();
  const details: string[] = [];
  for (const r of rows) {
    const get = (k: string) => r[k] as Speed | { error: string };
    for (const [name, key] of [['Flock (WebGPU/Dawn)', 'flock'], ['llama.cpp CPU', 'llamaCpu'], ['llama.cpp Vulkan', 'llamaVulkan']] as const) {
      const s = get(key);
      if (key !== 'flock' && r.decodeAhead !== rows.find((q) => q.model === r.model && q.context === r.context)?.decodeAhead) continue;
      lines.push(`| ${r.model} | ${r.context} | ${key === 'flock' ? r.decodeAhead : ''} | ${name} | ${'error' in s ? 'n/a' : fmt(s.prefillTokensPerSecond)} | ${'error' in s ? 'n/a' : fmt(s.decodeTokensPerSecond)} |`);
      if ('error' in s) notes.add(`${name}: ${s.error}`);
    }
    const ra = r.ratios as Record<string, number | null>;
    const p = r.perDecodeToken as Record<string, number>;
    details.push('');
    details.push(`${r.model} at ${r.context} tokens of context, ${r.decodeAhead} decode steps ahead:`);
    details.push(`ratios (Flock / llama.cpp): prefill vs CPU ${fmt(ra.prefillVsCpu, 3)}, decode vs CPU ${fmt(ra.decodeVsCpu, 3)}, ` +
      `prefill vs Vulkan ${fmt(ra.prefillVsVulkan, 3)}, decode vs Vulkan ${fmt(ra.decodeVsVulkan, 3)}`);
    details.push(`per decode token: ${fmt(p.submits, 2)} submissions, ${fmt(p.readbacks, 2)} readbacks, ${fmt(p.dispatches, 0)} dispatches, ` +
      `${fmt(p.weightBytesRead / 1e6, 3)} MB of weights read of ${fmt(p.modelWeightBytes / 1e6, 3)} MB (${fmt(p.readOverModel, 2)}x), ` +
      `${fmt(p.achievedGBps, 1)} GB/s${p.shareOfPeak ? ` (${fmt(100 * p.shareOfPeak, 0)} % of ${p.peakGBps} GB/s)` : ''}`);
    details.push(`decode step ${fmt(p.ms, 2)} ms: ${fmt(p.syncRoundTripMs, 2)} ms is the device's floor (an empty submit + readback round trip), ` +
      `${fmt(p.encodeMs, 2)} ms recording and submitting the passes on the CPU`);
    const prof = r.gpuProfile as { kinds: KindTime[]; gpuUsPerStep: number } | { error: string } | undefined;
    if (prof && 'error' in prof) details.push(`GPU profile: ${prof.error}`);
    else if (prof) {
      details.push(`GPU time per decode step: ${fmt(prof.gpuUsPerStep, 0)} µs in all, by kernel: ` +
        prof.kinds.map((k) => `${k.kind} ${fmt(k.us, 0)} µs (${fmt(k.dispatches, 0)}x)`).join(', '));
    }
    details.push(`device: ${r.device} (matvec: at least ${r.matvecSteps} vec4 steps per thread)`);
  }
  process.stdout.write([...lines, ...details].join('\n') + '\n');
  if (notes.size) process.stdout.write('\n' + [...notes].join('\n') + '\n');
}
