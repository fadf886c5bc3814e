// A test page for the engine's browser build, without the app around it: loads a model from a URL with the page's
// WebGPU device and runs greedy decoding from given ids. Tests call `window.flockEngineTest.greedy(...)`;
// scripts/bench-page.ts calls `bench(...)`, which runs the engine benchmark in a Web Worker (bench-worker.ts).

import { wrap } from 'comlink';
import { generateAll, LocalModel } from '../../../src/engine/local-model';
import { requestFlockDevice } from '../../../src/gpu/device';
import { HttpSource } from '../../../src/model/source';
import type { EngineBenchOptions, EngineBenchResult } from './bench-core';
import type { BenchWorkerApi } from './bench-worker';

async function greedy(modelUrl: string, inputIds: number[], maxTokens: number, stages: number): Promise<{ ids: number[]; adapter: string }> {
  const dev = await requestFlockDevice(navigator.gpu);
  const model = await LocalModel.load(dev, new HttpSource(modelUrl), { stages, maxContext: inputIds.length + maxTokens + 1 });
  try {
    const r = await generateAll(model, { inputIds, maxTokens, temperature: 0, ignoreEos: true });
    return { ids: r.outputIds, adapter: dev.adapterName };
  } finally {
    model.destroy();
    dev.device.destroy();
  }
}

async function bench(modelUrl: string, opts: EngineBenchOptions): Promise<EngineBenchResult> {
  const worker = new Worker(new URL('./bench-worker.ts', import.meta.url), { type: 'module' });
  try {
    return await wrap<BenchWorkerApi>(worker).bench(modelUrl, opts);
  } finally {
    worker.terminate();
  }
}

Object.assign(window, { flockEngineTest: { greedy, bench } });
document.body.dataset.ready = 'true';
