// `flock bench`: prefill and decode speed of this engine against llama.cpp on the same GGUF in the same run —
// llama.cpp's CPU build, and its Vulkan build on the same Vulkan device Dawn uses — plus, per decode token, the GPU
// work we do: submissions, readbacks, dispatches, and weight bytes read against the model's weight bytes.
// Prints a table and writes JSON. Numbers vary between runs on shared machines: each figure is a median of runs.

import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { FileSource } from '../model/source-file';
import { generateAll, LocalModel } from '../engine/local-model';
import { nodeDevice } from './dawn';
import { InvalidArgumentError } from '../model/errors';
import { encodeReadback, storageBuffer, submit, type FlockDevice } from '../gpu/device';
import { GpuProfiler, type KindTime } from '../gpu/profiler';
import { DEFAULT_MODEL } from './default-model';

const run = promisify(execFile);

interface Speed {
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function llamaCpp(model: string, backend: 'cpu' | 'vulkan', prompt: number, decode: number): Promise<Speed | { error: string }> {
  // A bundled build (scripts/device-bundle.sh) has bench-llama.mjs beside this module: plain node runs that;
  // from the sources, tsx runs bench-llama.ts.
  const bundled = fileURLToPath(new URL('./bench-llama.mjs', import.meta.url));
  const args = existsSync(bundled) ? [bundled] : ['--import', 'tsx', fileURLToPath(new URL('./bench-llama.ts', import.meta.url))];
  const env = { ...process.env };
  // ggml's Vulkan backend skips CPU-type devices (SwiftShader) unless they are listed explicitly
  if (backend === 'vulkan') env.GGML_VK_VISIBLE_DEVICES ??= '0';
  try {
    const { stdout } = await run(process.execPath, [...args, model, backend, String(prompt), String(decode)], {
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

export async function runBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', multiple: true },
      out: { type: 'string', default: 'bench-results/bench.json' },
      prompt: { type: 'string', default: '64' },
      tokens: { type: 'string', default: '64' },
      'vulkan-tokens': { type: 'string', default: '16' },
      runs: { type: 'string', default: '3' },
      /** least vec4 steps per matvec thread (default: the device's choice, 16 on SwiftShader and 4 on GPUs) */
      'matvec-steps': { type: 'string' },
      /** time every dispatch of 16 decode steps with GPU timestamps and print GPU time by kernel */
      profile: { type: 'boolean', default: false },
    },
  });
  const models = values.model?.length ? values.model : [DEFAULT_MODEL];
  const promptLen = Number(values.prompt);
  const decodeLen = Number(values.tokens);
  const runs = Number(values.runs);
  const steps = values['matvec-steps'] === undefined ? undefined : Number(values['matvec-steps']);
  if (steps !== undefined && !(Number.isInteger(steps) && steps >= 1)) throw new InvalidArgumentError(`--matvec-steps expects a whole number >= 1, got "${values['matvec-steps']}"`);
  const dev = await nodeDevice({ matvecSteps: steps, timestamps: values.profile });
  const rows: Record<string, unknown>[] = [];
  for (const path of models) {
    const model = await LocalModel.load(dev, new FileSource(path), { maxContext: promptLen + decodeLen + 8 });
    const vocab = model.config.vocab;
    const bos = model.tokenizer.bosId ?? 1;
    // the same prompt ids bench-llama.ts builds: BOS then ordinary pieces
    const inputIds = [bos, ...Array.from({ length: promptLen - 1 }, (_, i) => 3 + ((i * 7) % Math.max(1, vocab - 3)))];
    const opts = { inputIds, maxTokens: decodeLen, temperature: 0, ignoreEos: true };
    await generateAll(model, opts); // warm-up: compiles every pipeline
    const results = [];
    for (let i = 0; i < runs; i++) results.push(await generateAll(model, opts));
    const ours: Speed = {
      prefillTokensPerSecond: median(results.map((r) => r.timings.prefillTokensPerSecond)),
      decodeTokensPerSecond: median(results.map((r) => r.timings.decodeTokensPerSecond)),
    };
    const per = results[0].perDecodeStep;
    const syncMs = await roundTripMs(dev);
    const profile = values.profile ? await profileDecode(dev, model, bos) : undefined;
    const modelWeightBytes = model.weightBytes;
    model.destroy();
    const cpu = await llamaCpp(path, 'cpu', promptLen, decodeLen);
    const vulkan = await llamaCpp(path, 'vulkan', promptLen, Number(values['vulkan-tokens']));
    const ratio = (a: Speed, b: Speed | { error: string }, k: keyof Speed) => ('error' in b ? null : a[k] / b[k]);
    rows.push({
      model: basename(path),
      device: dev.adapterName,
      matvecSteps: dev.matvecSteps,
      promptTokens: promptLen,
      decodeTokens: decodeLen,
      flock: ours,
      llamaCpu: cpu,
      llamaVulkan: vulkan,
      ratios: {
        prefillVsCpu: ratio(ours, cpu, 'prefillTokensPerSecond'),
        decodeVsCpu: ratio(ours, cpu, 'decodeTokensPerSecond'),
        prefillVsVulkan: ratio(ours, vulkan, 'prefillTokensPerSecond'),
        decodeVsVulkan: ratio(ours, vulkan, 'decodeTokensPerSecond'),
      },
      ...(profile ? { gpuProfile: profile } : {}),
      perDecodeToken: {
        ms: 1000 / ours.decodeTokensPerSecond,
        syncRoundTripMs: syncMs,
        encodeMs: per.encodeMs,
        submits: per.submits,
        readbacks: per.readbacks,
        dispatches: per.dispatches,
        weightBytesRead: per.weightBytesRead,
        modelWeightBytes,
        readOverModel: per.weightBytesRead / modelWeightBytes,
      },
    });
  }
  printTable(rows);
  mkdirSync(dirname(values.out!), { recursive: true });
  writeFileSync(values.out!, JSON.stringify({ date: new Date().toISOString(), rows }, null, 2) + '\n');
  process.stdout.write(`\nJSON written to ${values.out}\n`);
}

/** Decode steps the profile times (every one of them decode-shaped: a one-token prompt, then one token per step). */
const PROFILE_STEPS = 16;

/** GPU time per decode step by kernel kind, from timestamp queries (null fields when the adapter has none). */
async function profileDecode(dev: FlockDevice, model: LocalModel, bos: number): Promise<{ kinds: KindTime[]; gpuUsPerStep: number } | { error: string }> {
  if (!dev.device.features.has('timestamp-query')) return { error: 'this adapter offers no timestamp-query' };
  const profiler = new GpuProfiler(dev);
  dev.profiler = profiler;
  try {
    await generateAll(model, { inputIds: [bos], maxTokens: PROFILE_STEPS, temperature: 0, ignoreEos: true });
  } finally {
    dev.profiler = undefined;
  }
  const kinds = (await profiler.read()).map((k) => ({ ...k, dispatches: k.dispatches / PROFILE_STEPS, us: k.us / PROFILE_STEPS }));
  profiler.destroy();
  return { kinds, gpuUsPerStep: kinds.reduce((s, k) => s + k.us, 0) };
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
  if (typeof x === 'number') return x.toFixed(digits);
  if (x && typeof x === 'object' && 'error' in x) return 'n/a';
  return String(x);
}

function printTable(rows: Record<string, unknown>[]): void {
  const lines = [
    '| model | engine | prefill tok/s | decode tok/s |',
    '|---|---|---|---|',
  ];
  const notes: string[] = [];
  for (const r of rows) {
    const get = (k: string) => r[k] as Speed | { error: string };
    for (const [name, key] of [['Flock (WebGPU/Dawn)', 'flock'], ['llama.cpp CPU (1 thread)', 'llamaCpu'], ['llama.cpp Vulkan', 'llamaVulkan']] as const) {
      const s = get(key);
      lines.push(`| ${r.model} | ${name} | ${'error' in s ? 'n/a' : fmt(s.prefillTokensPerSecond)} | ${'error' in s ? 'n/a' : fmt(s.decodeTokensPerSecond)} |`);
      if ('error' in s) notes.push(`${name}: ${s.error}`);
    }
    const ra = r.ratios as Record<string, number | null>;
    const p = r.perDecodeToken as Record<string, number>;
    lines.push('');
    lines.push(`ratios (Flock / llama.cpp): prefill vs CPU ${fmt(ra.prefillVsCpu, 3)}, decode vs CPU ${fmt(ra.decodeVsCpu, 3)}, ` +
      `prefill vs Vulkan ${fmt(ra.prefillVsVulkan, 3)}, decode vs Vulkan ${fmt(ra.decodeVsVulkan, 3)}`);
    lines.push(`per decode token: ${fmt(p.submits, 0)} submission, ${fmt(p.readbacks, 0)} readback, ${fmt(p.dispatches, 0)} dispatches, ` +
      `${fmt(p.weightBytesRead / 1e6, 3)} MB of weights read of ${fmt(p.modelWeightBytes / 1e6, 3)} MB (${fmt(p.readOverModel, 2)}x)`);
    lines.push(`decode step ${fmt(p.ms, 2)} ms: ${fmt(p.syncRoundTripMs, 2)} ms is the device's floor (an empty submit + readback round trip), ` +
      `${fmt(p.encodeMs, 2)} ms recording and submitting the passes on the CPU`);
    const prof = r.gpuProfile as { kinds: KindTime[]; gpuUsPerStep: number } | { error: string } | undefined;
    if (prof && 'error' in prof) lines.push(`GPU profile: ${prof.error}`);
    else if (prof) {
      lines.push(`GPU time per decode step: ${fmt(prof.gpuUsPerStep, 0)} µs in all, by kernel: ` +
        prof.kinds.map((k) => `${k.kind} ${fmt(k.us, 0)} µs (${fmt(k.dispatches, 0)}x)`).join(', '));
    }
    lines.push(`device: ${r.device} (matvec: at least ${r.matvecSteps} vec4 steps per thread)`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  if (notes.length) process.stdout.write('\n' + notes.join('\n') + '\n');
}
