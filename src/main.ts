// The page's entry point: register the service worker, check WebGPU on this thread (what the page sees decides the
// No-WebGPU page), start the engine worker, and hand over to the app (src/ui/app.ts), which loads the model to start
// with (the one used last if it is still cached, else the embedded stories260K). Not here: Node-only modules must
// never be imported here.

import './ui/style.css';
import { WebGpuUnavailableError } from './model/errors';
import { loadSettings } from './storage/settings';
import { App } from './ui/app';
import { byId } from './ui/dom';
import { Layout } from './ui/layout';
import { ModelStatus } from './ui/model-status';
import { Notice } from './ui/notice';
import { registerServiceWorker } from './ui/update';
import { errorName, startupMessage } from './ui/webgpu-help';
import { EngineClient } from './worker/engine-client';

/** What this thread sees decides: without navigator.gpu or an adapter here, the worker is not even started. */
async function checkWebGpu(): Promise<void> {
  if (!('gpu' in navigator) || !navigator.gpu) throw new WebGpuUnavailableError('navigator.gpu is missing');
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new WebGpuUnavailableError('WebGPU is present but no GPU adapter is available (blocklisted GPU or driver).');
}

/** Nothing can run here: say why, and keep the page as it is (nothing to send with). */
function showBroken(e: unknown): void {
  console.error(e);
  new ModelStatus().notLoaded('not available');
  byId('prompt', HTMLTextAreaElement).disabled = true;
  new Notice().show(startupMessage(e, 'gpu' in navigator && navigator.gpu !== undefined), errorName(e));
  byId('app', HTMLElement).dataset.state = 'error';
}

async function main(): Promise<void> {
  registerServiceWorker();
  new Layout();
  const settings = await loadSettings();
  const status = new ModelStatus();
  status.say('requesting the GPU…');
  let engine: EngineClient | undefined;
  try {
    await checkWebGpu();
    engine = EngineClient.start();
    const dev = await engine.init();
    status.gpu(`GPU: ${dev.adapterName}${dev.hasF16 ? ' (shader-f16)' : ''} · the engine runs in a background worker`);
  } catch (e) {
    engine?.terminate();
    showBroken(e);
    return;
  }
  await new App(engine, settings).start(settings.model);
}

void main();
