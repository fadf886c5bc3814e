// The page side of scripts/bench-page.ts: the engine benchmark in a Web Worker (where the app runs the engine),
// on the worker's own WebGPU device, with the model fetched over HTTP as the app fetches it.

/// <reference lib="webworker" />
import { expose } from 'comlink';
import { requestFlockDevice } from '../../../src/gpu/device';
import { HttpSource } from '../../../src/model/source';
import { benchEngine, type EngineBenchOptions, type EngineBenchResult } from './bench-core';

const api = {
  async bench(modelUrl: string, opts: EngineBenchOptions): Promise<EngineBenchResult> {
    const dev = await requestFlockDevice(self.navigator.gpu);
    try {
      return await benchEngine(dev, new HttpSource(modelUrl), opts);
    } finally {
      dev.device.destroy();
    }
  },
};
export type BenchWorkerApi = typeof api;
expose(api);
