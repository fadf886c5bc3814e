// WebGPU in Node through Dawn (the `webgpu` package). One device per process: Dawn keeps a polling thread busy
// while a device is open. Without a GPU driver, Dawn can use SwiftShader (a CPU Vulkan driver that Debian's
// chromium package ships); we point the Vulkan loader at it only when no other Vulkan driver is installed.

import { existsSync, readdirSync } from 'node:fs';
import { requestFlockDevice, type DeviceOptions, type FlockDevice } from '../gpu/device';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

function hasGpuDevice(): boolean {
  if (existsSync('/dev/nvidia0')) return true;
  return existsSync('/dev/dri') && readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
}

let devicePromise: Promise<FlockDevice> | undefined;
// Dawn's instance must outlive its devices: if the GC collected it, the process would abort. Keep it here forever.
let instance: GPU | undefined;

/** The process's device; `opts` apply to the first call only (the device is shared after that). */
export function nodeDevice(opts: DeviceOptions = {}): Promise<FlockDevice> {
  devicePromise ??= (async () => {
    if (!process.env.VK_ICD_FILENAMES && !hasGpuDevice() && existsSync(SWIFTSHADER_ICD)) {
      process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
    }
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    instance = create([]);
    return requestFlockDevice(instance, opts);
  })();
  return devicePromise;
}
