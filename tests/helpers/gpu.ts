// The Dawn device shared by every GPU test in a process (one device per process: Dawn keeps a thread busy).
// WebGPU validation errors are collected so a test can assert that none happened.

import { nodeDevice } from '../../src/cli/dawn';
import type { FlockDevice } from '../../src/gpu/device';

const errors: string[] = [];
let hooked = false;

export async function testDevice(): Promise<FlockDevice> {
  const dev = await nodeDevice();
  if (!hooked) {
    hooked = true;
    dev.device.addEventListener('uncapturederror', (e) => errors.push((e as GPUUncapturedErrorEvent).error.message));
  }
  return dev;
}

/** WebGPU errors raised since the last call (and clears them). */
export function takeGpuErrors(): string[] {
  return errors.splice(0, errors.length);
}

export const STORIES = 'public/models/stories260K.gguf';
