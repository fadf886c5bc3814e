// A test page for the engine's browser build, without the app around it: loads a model from a URL with the page's
// WebGPU device and runs greedy decoding from given ids. Tests call `window.flockEngineTest.greedy(...)`.

import { generateAll, LocalModel } from '../../../src/engine/local-model';
import { requestFlockDevice } from '../../../src/gpu/device';
import { HttpSource } from '../../../src/model/source';

/** Greedy ids, the adapter, and the layer span of each Stage the model ran on. */
async function greedy(
  modelUrl: string, inputIds: number[], maxTokens: number, stages: number,
): Promise<{ ids: number[]; adapter: string; spans: number[][] }> {
  const dev = await requestFlockDevice(navigator.gpu);
  const model = await LocalModel.load(dev, new HttpSource(modelUrl), { stages, maxContext: inputIds.length + maxTokens + 1 });
  try {
    const r = await generateAll(model, { inputIds, maxTokens, temperature: 0, ignoreEos: true });
    return { ids: r.outputIds, adapter: dev.adapterName, spans: model.stages.map((st) => [st.start, st.end]) };
  } finally {
    model.destroy();
    dev.device.destroy();
  }
}

Object.assign(window, { flockEngineTest: { greedy } });
document.body.dataset.ready = 'true';
