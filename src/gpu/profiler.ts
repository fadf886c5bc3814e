// GPU time per kind of dispatch, from timestamp queries: while a profiler is attached to a device, encodeOps gives
// every dispatch its own compute pass with a timestamp at its start and end, tagged with the op's kind ("matvec q4_k",
// "attention", …). Separate passes add a little scheduling between dispatches, but each dispatch's own duration is
// what the GPU spent on it. For benchmarks only (`flock bench --profile`): needs the adapter's 'timestamp-query'.

import type { FlockDevice } from './device';

/** WebGPU's largest query set. Two timestamps per dispatch. */
const MAX_QUERIES = 4096;
/** Dispatches one profiler times before its next read(). */
export const PROFILER_MAX_DISPATCHES = MAX_QUERIES / 2;

export interface KindTime {
  kind: string;
  dispatches: number;
  /** GPU time, µs */
  us: number;
}

export class GpuProfiler {
  private readonly querySet: GPUQuerySet;
  private readonly resolve: GPUBuffer;
  private readonly kinds: string[] = [];
  /** dispatches that found the query set full (not timed) */
  dropped = 0;

  constructor(private readonly dev: FlockDevice) {
    this.querySet = dev.device.createQuerySet({ label: 'profiler', type: 'timestamp', count: MAX_QUERIES });
    this.resolve = dev.device.createBuffer({
      label: 'profiler resolve', size: MAX_QUERIES * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
  }

  /** Timestamp writes for the next dispatch of `kind`, or undefined when the query set is full. */
  slot(kind: string): GPUComputePassTimestampWrites | undefined {
    const i = this.kinds.length;
    if (2 * i + 2 > MAX_QUERIES) {
      this.dropped++;
      return undefined;
    }
    this.kinds.push(kind);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Read every recorded dispatch's time back (after its submission) and start over. Sorted by total time. */
  async read(): Promise<KindTime[]> {
    const n = this.kinds.length;
    if (n === 0) return [];
    const enc = this.dev.device.createCommandEncoder({ label: 'profiler read' });
    enc.resolveQuerySet(this.querySet, 0, 2 * n, this.resolve, 0);
    const staging = this.dev.device.createBuffer({ label: 'profiler staging', size: 16 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    enc.copyBufferToBuffer(this.resolve, 0, staging, 0, 16 * n);
    this.dev.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    const by = new Map<string, KindTime>();
    for (let i = 0; i < n; i++) {
      const ns = t[2 * i + 1] > t[2 * i] ? Number(t[2 * i + 1] - t[2 * i]) : 0;
      const k = by.get(this.kinds[i]) ?? { kind: this.kinds[i], dispatches: 0, us: 0 };
      k.dispatches++;
      k.us += ns / 1000;
      by.set(k.kind, k);
    }
    this.kinds.length = 0;
    return [...by.values()].sort((a, b) => b.us - a.us);
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolve.destroy();
  }
}
