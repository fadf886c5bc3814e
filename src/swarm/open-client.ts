// The one way to open a swarm client: the model's Head (embedding, output norm and head, tokenizer) and the client's
// own first and last layers on this device, and a SwarmModel that runs the layers between them on the hosts a
// Directory offers, with link limits derived from the model. Only the Head's and the own layers' tensors are read.
// `flock generate --swarm` (Discovery on a Node peer), the engine worker in the page (records and links the page
// relays) and the tests all open their client here. A model with a pinned manifest has its Head's and own layers'
// tensors checked against it while they load (ManifestMismatchError when they differ). Not here: where records and links come from
// (the Directory).

import { partBytes, partTensors, readConfig, type ModelConfig } from '../model/config';
import type { GgufFile } from '../model/gguf';
import { checkWhileLoading } from '../model/manifest-check';
import { candidateCount, normalizeSampling } from '../model/sampler';
import type { LoadProgress } from '../model/source';
import { createTokenizer } from '../model/tokenizer';
import type { FlockDevice } from '../gpu/device';
import { storageBuffer } from '../gpu/device';
import { GpuHead } from '../gpu/head';
import { compilePipelines } from '../gpu/pipelines';
import { GpuStage } from '../gpu/stage';
import { modelHashOf } from './records';
import type { Span } from './protocol';
import { clientSpans, DEFAULT_OWN_LAYERS, type OwnLayers } from './own-layers';
import { DEFAULT_SWARM_OPTIONS, SwarmModel, type Directory, type SwarmOptions } from './swarm-model';

export { DEFAULT_OWN_LAYERS, type OwnLayers } from './own-layers';

export interface OpenClientOptions {
  dev: FlockDevice;
  /** the model's GGUF header: only the Head's and the own layers' tensors are read */
  file: GgufFile;
  directory: Directory;
  swarm?: Partial<SwarmOptions>;
  /** default DEFAULT_OWN_LAYERS */
  own?: OwnLayers;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

/** The part of a model a swarm client loads for its Head. */
export const HEAD_PART = { start: 0, end: 0, head: true } as const;

/** Weight bytes a swarm client downloads: the Head and its own layers. */
export function clientBytes(file: GgufFile, config: ModelConfig, own: OwnLayers): number {
  const s = clientSpans(config.nLayers, own);
  let total = partBytes(file, config, HEAD_PART);
  for (const sp of [s.front, s.back]) if (sp) total += partBytes(file, config, { ...sp, head: false });
  return total;
}

export async function openSwarmClient(o: OpenClientOptions): Promise<SwarmModel> {
  const config = readConfig(o.file);
  const own = o.own ?? DEFAULT_OWN_LAYERS;
  const spans = clientSpans(config.nLayers, own); // validates before anything loads
  const tokenizer = createTokenizer(o.file.metadata);
  const modelHash = await modelHashOf(o.file);
  const maxBatch = o.swarm?.maxBatch ?? DEFAULT_SWARM_OPTIONS.maxBatch;
  const maxContext = Math.min(o.swarm?.maxContext ?? DEFAULT_SWARM_OPTIONS.maxContext, config.ctx);
  const progress: Required<LoadProgress> = { loaded: 0, total: clientBytes(o.file, config, own), compiled: 0, pipelines: 0 };
  const report = () => o.onProgress?.({ ...progress });
  const counter = { loaded: 0, onBytes: (loaded: number) => { progress.loaded = loaded; report(); } };
  const common = { maxBatch, counter, signal: o.signal };
  // the tensors loaded here are checked against the model's pinned manifest as they load (manifest-check.ts)
  const parts = [HEAD_PART, ...[spans.front, spans.back].filter((sp) => sp !== null).map((sp) => ({ ...sp, head: false }))];
  const check = await checkWhileLoading(o.file, new Set(parts.flatMap((p) => [...partTensors(o.file, config, p).keys()])));
  let head: GpuHead | undefined;
  const stages: GpuStage[] = [];
  const X = storageBuffer(o.dev, 'swarm hidden', maxBatch * config.dim * 4);
  try {
    head = await GpuHead.load(o.dev, check.file, config, common);
    const loadStage = async (sp: Span | null) => {
      if (!sp) return undefined;
      const st = await GpuStage.load(o.dev, check.file, config, sp.start, sp.end, { ...common, maxContext });
      stages.push(st);
      return st;
    };
    const front = await loadStage(spans.front);
    const back = await loadStage(spans.back);
    // every pipeline this client runs compiles now, so the first reply costs what any reply does
    const variants = [...head.kernelVariants(X, [1, candidateCount(normalizeSampling({}), config.vocab)]), ...stages.flatMap((s) => s.kernelVariants(X))];
    await compilePipelines(o.dev, variants, (done, n) => {
      progress.compiled = done;
      progress.pipelines = n;
      report();
    });
    await check.finish(o.signal);
    progress.loaded = progress.total;
    report();
    return new SwarmModel(o.dev, o.file, config, tokenizer, modelHash, { head, front, back, X }, o.directory, { ...o.swarm, maxBatch });
  } catch (e) {
    head?.destroy();
    for (const s of stages) s.destroy();
    X.destroy();
    throw e;
  }
}
