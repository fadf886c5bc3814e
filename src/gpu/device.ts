// The GPU device Flock computes on: requested with the limits our kernels need (the largest buffers and bindings the
// adapter allows), with counters of submissions, readbacks and dispatches that the benchmark reports.
// Works with any WebGPU implementation: `navigator.gpu` in a browser, Dawn's `webgpu` package in Node.

import { WebGpuUnavailableError } from '../model/errors';
import type { GpuProfiler } from './profiler';

export interface GpuCounters {
  submits: number;
  readbacks: number;
  dispatches: number;
  /** weight bytes bound to matrix kernels, times the number of times each kernel reads them */
  weightBytesRead: number;
  /** CPU time spent recording compute passes and submitting them, ms (the API calls' own cost) */
  encodeMs: number;
}

export interface FlockDevice {
  device: GPUDevice;
  /** largest single storage binding, in bytes */
  maxBinding: number;
  /** whether the adapter offers shader-f16 (kernels never require it) */
  hasF16: boolean;
  counters: GpuCounters;
  /** description of the adapter for reports */
  adapterName: string;
  /** while set, every dispatch is timed on the GPU (benchmarks: `flock bench --profile`) */
  profiler?: GpuProfiler;
  /** least vec4 steps per thread in matvec (kernels/matmul.ts matvecThreadsPerRow): 16 on a CPU adapter, 4 on a GPU */
  matvecSteps: number;
  lost: Promise<GPUDeviceLostInfo>;
}

export interface DeviceOptions {
  /** override the matvec split (benchmarks compare splits with it) */
  matvecSteps?: number;
  /** ask for 'timestamp-query' when the adapter has it (GpuProfiler) */
  timestamps?: boolean;
}

/** SwiftShader (Chromium's and Dawn's CPU Vulkan) or another fallback adapter: a CPU, not a GPU. */
export function isSoftwareAdapter(info: { vendor?: string; architecture?: string; description?: string } | undefined, fallback = false): boolean {
  const text = `${info?.vendor ?? ''} ${info?.architecture ?? ''} ${info?.description ?? ''}`.toLowerCase();
  return fallback || /swiftshader|llvmpipe|lavapipe|software/.test(text);
}

export async function requestFlockDevice(gpu: GPU | undefined, opts: DeviceOptions = {}): Promise<FlockDevice> {
  if (!gpu) {
    throw new WebGpuUnavailableError(
      'WebGPU is not available here. Use a recent Chrome, Edge or another browser with WebGPU enabled ' +
        '(on Linux, Chrome with --enable-unsafe-webgpu), or Node with the `webgpu` package.',
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new WebGpuUnavailableError('WebGPU is present but no GPU adapter is available (blocklisted GPU or driver).');
  }
  const lim = adapter.limits;
  const device = await adapter.requestDevice({
    label: 'flock',
    requiredFeatures: opts.timestamps && adapter.features.has('timestamp-query') ? ['timestamp-query'] : [],
    requiredLimits: {
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(lim.maxStorageBuffersPerShaderStage, 8),
      maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup,
    },
  });
  const info = adapter.info;
  return {
    device,
    maxBinding: Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize),
    hasF16: adapter.features.has('shader-f16'),
    counters: { submits: 0, readbacks: 0, dispatches: 0, weightBytesRead: 0, encodeMs: 0 },
    adapterName: [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ') || 'unknown adapter',
    matvecSteps: opts.matvecSteps ?? (isSoftwareAdapter(info, (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter) ? 16 : 4),
    lost: device.lost,
  };
}

export function resetCounters(dev: FlockDevice): void {
  dev.counters = { submits: 0, readbacks: 0, dispatches: 0, weightBytesRead: 0, encodeMs: 0 };
}

/** Create a storage buffer; sizes are rounded up to 16 bytes (vec4 reads may touch the tail). */
export function storageBuffer(dev: FlockDevice, label: string, bytes: number, extraUsage = 0): GPUBuffer {
  return dev.device.createBuffer({
    label,
    size: Math.max(16, Math.ceil(bytes / 16) * 16),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage,
  });
}

export function submit(dev: FlockDevice, enc: GPUCommandEncoder): void {
  const t0 = performance.now();
  dev.device.queue.submit([enc.finish()]);
  dev.counters.encodeMs += performance.now() - t0;
  dev.counters.submits++;
}

/** Copy `bytes` of `src` to a mappable buffer in `enc`; call the returned function after submitting to read it. */
export function encodeReadback(dev: FlockDevice, enc: GPUCommandEncoder, src: GPUBuffer, bytes: number, offset = 0): () => Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = dev.device.createBuffer({ label: `readback ${src.label}`, size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  enc.copyBufferToBuffer(src, offset, staging, 0, size);
  return async () => {
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    dev.counters.readbacks++;
    return out;
  };
}

/** Upload bytes into a new storage buffer (padded to a multiple of 4 bytes, as writeBuffer requires). */
export function uploadBuffer(dev: FlockDevice, label: string, data: ArrayBufferView): GPUBuffer {
  const buf = storageBuffer(dev, label, data.byteLength);
  writeBufferPadded(dev, buf, 0, data);
  return buf;
}

export function writeBufferPadded(dev: FlockDevice, buf: GPUBuffer, offset: number, data: ArrayBufferView): void {
  const u8 = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  const whole = u8.byteLength & ~3;
  if (whole > 0) dev.device.queue.writeBuffer(buf, offset, u8, 0, whole);
  if (whole < u8.byteLength) {
    const tail = new Uint8Array(4);
    tail.set(u8.subarray(whole));
    dev.device.queue.writeBuffer(buf, offset + whole, tail);
  }
}
