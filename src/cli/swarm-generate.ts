// `flock generate --swarm NAME --signal URL`: generation on this machine's Head (tokenizer, embeddings, output head,
// sampler: tokens never leave it) with the layers run by a swarm's hosts. launchClient is also what tests use.
// Not here: the generation loop (engine/generate.ts) or the client session logic (swarm/client.ts).

import type { Peer } from 'peerjs';
import type { ModelConfig } from '../model/config';
import type { GgufFile } from '../model/gguf';
import { createTokenizer } from '../model/tokenizer';
import type { FlockDevice } from '../gpu/device';
import { GpuHead } from '../gpu/head';
import { SwarmModel, type SwarmOptions } from '../swarm/client';
import { Discovery } from '../swarm/discovery';
import { makeLimits } from '../swarm/protocol';
import type { PeerRecord } from '../swarm/records';
import { findRoute } from '../swarm/routing';
import { parseSignalUrl, type LinkOptions, type SignalConfig } from '../swarm/transport';
import { generateTokens } from '../engine/generate';
import { generateOptionsFrom, num, printGeneration, type SamplingArgs } from './generate-output';
import { FlockError } from '../model/errors';
import { joinSwarm } from './swarm-join';

export interface LaunchClientOptions {
  dev: FlockDevice;
  model: GgufFile | string;
  swarm: string;
  signal: SignalConfig;
  swarmOptions?: Partial<SwarmOptions>;
  link?: Partial<LinkOptions>;
  announceMs?: number;
  /** wait until the records cover every layer (ms); 0 = do not wait */
  waitForRouteMs?: number;
}

export interface LaunchedClient {
  peer: Peer;
  discovery: Discovery;
  model: SwarmModel;
  config: ModelConfig;
  modelHash: string;
  stop(): void;
}

export async function launchClient(o: LaunchClientOptions): Promise<LaunchedClient> {
  const { file, config, modelHash, peer, closeSource } = await joinSwarm(o.model, o.signal);
  const tokenizer = createTokenizer(file.metadata);
  // Limits from our model, not the protocol's generous defaults: a result is at most maxBatch x dim, so a host
  // claiming more is cut off before we reserve anything for it.
  const maxBatch = o.swarmOptions?.maxBatch ?? 64;
  const limits = makeLimits({ maxDim: config.dim, maxTokens: maxBatch, maxMessageBytes: maxBatch * config.dim * 4, maxLayers: config.nLayers });
  const link = { ...o.link, limits: o.link?.limits ?? limits };
  const discovery = await Discovery.start(peer, { signal: o.signal, swarm: o.swarm, announceMs: o.announceMs, link });
  const head = await GpuHead.load(o.dev, file, config, { maxBatch });
  // The client sees only hosts of its own model and protocol version.
  const directory = {
    records: (): PeerRecord[] => discovery.recordsFor(modelHash),
    connect: (id: string) => discovery.connect(id),
    rttMs: () => discovery.rttMs(),
  };
  const model = new SwarmModel(o.dev, config, tokenizer, head, directory, { modelHash, ...o.swarmOptions });
  if (o.waitForRouteMs) {
    await discovery.waitFor(() => findRoute(directory.records(), 0, config.nLayers) !== null, o.waitForRouteMs);
  }
  return {
    peer, discovery, model, config, modelHash,
    stop: () => {
      discovery.stop();
      peer.destroy();
      model.destroy();
      head.destroy();
        closeSource();
    },
  };
}

/** The options `flock generate` parsed (all strings, as parseArgs gives them). */
export interface SwarmGenerateArgs extends SamplingArgs {
  model?: string;
  'max-context'?: string;
  json?: boolean;
  swarm?: string;
  signal?: string;
  dtype?: string;
}

/** `flock generate --swarm NAME --signal URL …`: like the local generate, plus `route` and `reroutes` in --json. */
export async function runSwarmGenerate(values: SwarmGenerateArgs): Promise<void> {
  if (!values.swarm || !values.signal) throw new FlockError('A swarm generation needs both --swarm NAME and --signal URL.');
  const dtype = values.dtype ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f16') throw new FlockError(`--dtype expects f32 or f16, got "${dtype}"`);
  const { nodeDevice } = await import('./dawn');
  const { DEFAULT_MODEL } = await import('./default-model');
  const dev = await nodeDevice();
  const t0 = performance.now();
  const c = await launchClient({
    dev,
    model: values.model ?? DEFAULT_MODEL,
    swarm: values.swarm,
    signal: parseSignalUrl(values.signal),
    swarmOptions: { dtype, maxContext: num(values['max-context'], 'max-context') },
    waitForRouteMs: 20_000,
  });
  const loadMs = performance.now() - t0;
  try {
    await printGeneration(generateTokens(c.model, generateOptionsFrom(values)), {
      json: values.json ?? false,
      loadMs,
      device: dev.adapterName,
      extra: () => ({
        route: c.model.route,
        reroutes: c.model.reroutes.map((x) => ({ step: x.step, span: x.span, from: x.from, to: x.to, reason: x.reason, ms: x.ms })),
        wire_bytes: c.model.wire,
      }),
    });
  } finally {
    c.stop();
  }
}
