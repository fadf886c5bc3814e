// The one way to open a swarm client: the model's Head (embedding, output norm and head, tokenizer) and the client's
// own first and last layers on this device, and a SwarmModel that runs the layers between them on the hosts a
// Directory offers, with link limits derived from the model. Only the Head's and the own layers' tensors are read.
// `flock generate --swarm` (Discovery on a Node peer), the engine worker in the page (records and links the page
// relays) and the tests all open their client here. Not here: where records and links come from (the Directory).

import { partBytes, readConfig, type ModelConfig } from '../model/config';
import { InvalidArgumentError } from '../model/errors';
import type { GgufFile } from '../model/gguf';
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
import { DEFAULT_SWARM_OPTIONS, SwarmModel, type Directory, type SwarmOptions } from './swarm-model';

/**
 * Layers the client runs itself: the first `first` and the last `last`. With first >= 1 no host receives embedding
 * rows (which give back every token id by a nearest-row lookup), with last >= 1 none receives the last hidden states
 * (which give the next token's scores through the public output head). It raises the bar, no more: a host that knows
 * the weights can still invert a few layers (tests/swarm/inversion.test.ts measures both).
 */
export interface OwnLayers {
  first: number;
  last: number;
}

/**
 * 1 and 1: the least that keeps embedding rows and the last hidden states on this device. More layers cost their
 * download and their compute here and measured no gain against an attacker that inverts layers by search
 * (tests/swarm/inversion.test.ts: 100 % of tokens recovered through 1, 2 and 3 layers of stories260K).
 */
export const DEFAULT_OWN_LAYERS: OwnLayers = { first: 1, last: 1 };

export interface ClientSpans {
  /** layers run here before the hosts' (empty when first = 0) */
  front: Span | null;
  /** the hosts' layers */
  remote: Span;
  /** layers run here after the hosts' */
  back: Span | null;
}

/** Where a client's own layers and the swarm's meet; at least one layer must be left to the hosts. */
export function clientSpans(nLayers: number, own: OwnLayers): ClientSpans {
  const { first, last } = own;
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 0 || last < 0 || first + last >= nLayers) {
    throw new InvalidArgumentError(
      `This device can run the first and last layers itself (${first} and ${last} asked), but together fewer than the model's ${nLayers}: the swarm runs the rest.`,
    );
  }
  return {
    front: first > 0 ? { start: 0, end: first } : null,
    remote: { start: first, end: nLayers - last },
    back: last > 0 ? { start: nLayers - last, end: nLayers } : null,
  };
}

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
  let head: GpuHead | undefined;
  const stages: GpuStage[] = [];
  const X = storageBuffer(o.dev, 'swarm hidden', maxBatch * config.dim * 4);
  try {
    head = await GpuHead.load(o.dev, o.file, config, common);
    const loadStage = async (sp: Span | null) => {
      if (!sp) return undefined;
      const st = await GpuStage.load(o.dev, o.file, config, sp.start, sp.end, { ...common, maxContext });
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
