// The one way to open a swarm client: the model's Head (embedding, output norm and head, tokenizer) on this device,
// and a SwarmModel that runs the layers on the hosts a Directory offers, with link limits derived from the model.
// `flock generate --swarm` (Discovery on a Node peer), the engine worker in the page (records and links the page
// relays) and the tests all open their client here. A model with a pinned manifest has its Head's tensors checked
// against it while they load (ManifestMismatchError when they differ). Not here: where records and links come from
// (the Directory).

import { partBytes, partTensors, readConfig } from '../model/config';
import type { GgufFile } from '../model/gguf';
import { checkWhileLoading } from '../model/manifest-check';
import type { LoadProgress } from '../model/source';
import { createTokenizer } from '../model/tokenizer';
import type { FlockDevice } from '../gpu/device';
import { GpuHead } from '../gpu/head';
import { modelHashOf } from './records';
import { DEFAULT_SWARM_OPTIONS, SwarmModel, type Directory, type SwarmOptions } from './swarm-model';

export interface OpenClientOptions {
  dev: FlockDevice;
  /** the model's GGUF header: only the Head's tensors are read */
  file: GgufFile;
  directory: Directory;
  swarm?: Partial<SwarmOptions>;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

/** The part of a model a swarm client loads: no layers, the Head. */
export const HEAD_PART = { start: 0, end: 0, head: true } as const;

export async function openSwarmClient(o: OpenClientOptions): Promise<SwarmModel> {
  const config = readConfig(o.file);
  const tokenizer = createTokenizer(o.file.metadata);
  const modelHash = await modelHashOf(o.file);
  const maxBatch = o.swarm?.maxBatch ?? DEFAULT_SWARM_OPTIONS.maxBatch;
  const total = partBytes(o.file, config, HEAD_PART);
  const counter = { loaded: 0, onBytes: (loaded: number) => o.onProgress?.({ loaded, total }) };
  // the Head's tensors are checked against the model's pinned manifest as they load (manifest-check.ts)
  const check = await checkWhileLoading(o.file, partTensors(o.file, config, HEAD_PART).keys());
  const head = await GpuHead.load(o.dev, check.file, config, { maxBatch, counter, signal: o.signal });
  o.onProgress?.({ loaded: total, total });
  try {
    await check.finish(o.signal);
    return new SwarmModel(o.dev, o.file, config, tokenizer, modelHash, head, o.directory, { ...o.swarm, maxBatch });
  } catch (e) {
    head.destroy();
    throw e;
  }
}
