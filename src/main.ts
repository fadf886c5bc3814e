// The page: requests the WebGPU device, loads the embedded model with a progress bar, and runs generations that
// stream into the output token by token (Stop aborts through an AbortController).
// Everything runs on this device. Not here: the chat UI, the swarm, storage (later); Node-only modules (src/cli,
// src/model/source-file.ts) must never be imported from the page.

import './ui/style.css';
import { LocalModel, type GenerationResult } from './engine/local-model';
import { requestFlockDevice } from './gpu/device';
import { openWebSource } from './model/source';
import { formatBytes, formatRate } from './ui/format';
import { PageView } from './ui/view';
import { describeError, errorName, startupMessage } from './ui/webgpu-help';

// Relative to the page, so the app works from any base path (vite `base: './'`).
const MODEL_URL = './models/stories260K.gguf';

const FINISH_TEXT: Record<GenerationResult['finishReason'], string> = {
  length: 'reached max tokens',
  stop: 'the model ended the story',
  abort: 'stopped',
  context: 'the context is full',
};

async function start(view: PageView): Promise<LocalModel> {
  view.setState('loading');
  view.setModelStatus('requesting the GPU…');
  const dev = await requestFlockDevice(navigator.gpu);
  view.setDevice(`GPU: ${dev.adapterName}${dev.hasF16 ? ' (shader-f16)' : ''}`);
  void dev.lost.then((info) => {
    if (info.reason !== 'destroyed') view.failStartup(`The GPU device was lost (${info.message || info.reason}). Reload the page.`, 'DeviceLost');
  });
  view.setModelStatus('loading…');
  const t0 = performance.now();
  const model = await LocalModel.load(dev, openWebSource(MODEL_URL), {
    onProgress: (p) => view.showProgress(p.loaded, p.total),
  });
  const ms = performance.now() - t0;
  view.setModelStatus(`ready (${formatBytes(model.weightBytes)} of weights, loaded in ${Math.round(ms)} ms)`);
  return model;
}

function wireGenerate(view: PageView, model: LocalModel): void {
  let running: AbortController | undefined;

  view.stopButton.addEventListener('click', () => running?.abort());

  view.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (running) return;
    const ac = new AbortController();
    running = ac;
    void generate(ac.signal).finally(() => {
      running = undefined;
    });
  });

  async function generate(signal: AbortSignal): Promise<void> {
    const { prompt, temperature, maxTokens } = view.readInputs();
    view.clearMessage();
    view.startOutput();
    view.setState('generating');
    try {
      const seed = crypto.getRandomValues(new Uint32Array(1))[0];
      // an empty prompt starts from BOS alone (LocalModel.generate does that for an empty encoding)
      const it = model.generate({ prompt, temperature, maxTokens, seed, signal });
      let r = await it.next();
      while (!r.done) {
        view.appendToken(r.value.id, r.value.text);
        r = await it.next();
      }
      const res = r.value;
      const t = res.timings;
      view.finishOutput(
        res.text,
        res.finishReason,
        `${res.outputIds.length} tokens · ${formatRate(t.decodeTokensPerSecond)} tokens/s · ` +
          `first token after ${Math.round(t.prefillMs)} ms · ${FINISH_TEXT[res.finishReason]}` +
          (temperature > 0 ? ` · seed ${seed}` : ''),
      );
      view.setState('done');
    } catch (e) {
      console.error(e);
      view.showMessage(describeError(e), errorName(e));
      view.setState('error');
    }
  }
}

async function main(): Promise<void> {
  const view = new PageView(document);
  let model: LocalModel;
  try {
    model = await start(view);
  } catch (e) {
    console.error(e);
    view.failStartup(startupMessage(e, 'gpu' in navigator && navigator.gpu !== undefined), errorName(e));
    return;
  }
  wireGenerate(view, model);
  view.setState('ready');
}

void main();
