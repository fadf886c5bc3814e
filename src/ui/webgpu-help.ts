// What the page says when there is no usable WebGPU: which browsers and settings work. Text only, no DOM.

import { WebGpuUnavailableError } from '../model/errors';

export const WEBGPU_HELP =
  'Flock runs the model on your GPU through WebGPU, so it needs a browser with WebGPU turned on:\n' +
  '• Chrome or Edge 113 or newer on Windows, macOS or ChromeOS (Chrome 121+ on Android)\n' +
  '• Safari 26 or newer on macOS, iOS and iPadOS\n' +
  '• Firefox 141 or newer on Windows\n' +
  '• On Linux, Chrome with chrome://flags/#enable-unsafe-webgpu (and #enable-vulkan) enabled\n\n' +
  'Hardware acceleration must be on (Chrome: Settings → System → “Use graphics acceleration when available”), ' +
  'and the page must be opened over https or from localhost.';

/**
 * The message to show for an error that stopped the page from starting. `hasGpuApi` says whether navigator.gpu
 * exists: without it we say so plainly (the engine's message also speaks to Node users, who never see this page).
 */
export function startupMessage(e: unknown, hasGpuApi: boolean): string {
  if (e instanceof WebGpuUnavailableError) {
    const lead = hasGpuApi ? e.message : 'This browser does not offer WebGPU (navigator.gpu is missing).';
    return `${lead}\n\n${WEBGPU_HELP}`;
  }
  return `Could not start the model: ${describeError(e)}`;
}

export function describeError(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The error's class name (FlockError subclasses set it), shown to tests as data-error on the message. */
export function errorName(e: unknown): string {
  return e instanceof Error ? e.name : 'Error';
}
