// The Dawn device shared by every GPU test in a process (one device per process: Dawn keeps a thread busy).
// WebGPU validation errors are collected so a test can assert that none happened.

import { afterAll, expect } from 'vitest';
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

/** Assert no WebGPU validation error happened since the last check (GPU tests end with this). */
export function expectNoGpuErrors(): void {
  expect(takeGpuErrors()).toEqual([]);
}

/**
 * The largest error each check measured, in the unit its tolerance uses, printed under `label` after the file's tests
 * (for the record). Returns the function that records one measurement.
 */
export function recordErrors(label: string): (key: string, value: number) => void {
  const measured: Record<string, number> = {};
  afterAll(() => {
    console.log(`${label}: largest measured errors\n` + Object.entries(measured).map(([k, v]) => `  ${k}: ${v.toExponential(2)}`).join('\n'));
  });
  return (key, value) => {
    measured[key] = Math.max(measured[key] ?? 0, value);
  };
}

export const STORIES = 'public/models/stories260K.gguf';
