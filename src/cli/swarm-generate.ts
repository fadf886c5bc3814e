// `flock generate --swarm NAME --signal URL`: generation with the Head (tokenizer, embeddings, output head, sampler)
// on this machine and the layers run by a swarm's hosts. launchClient (a Node peer, discovery, and the client that
// swarm/open-client.ts opens) is also what tests and bench-swarm use.
// Not here: the generation loop (engine/generate.ts) or the client session logic (swarm/swarm-model.ts).

import type { Peer } from 'peerjs';
import type { ModelConfig } from '../model/config';
import type { GgufFile } from '../model/gguf';
import type { FlockDevice } from '../gpu/device';
import type { SwarmModel, SwarmOptions } from '../swarm/swarm-model';
import type { Discovery } from '../swarm/discovery';
import { SwarmNet } from '../swarm/swarm-net';
import { Identity } from '../swarm/identity';
import type { SwarmConfig } from '../swarm/swarm-config';
import { openSwarmClient, type OwnLayers } from '../swarm/open-client';
import { findRoute } from '../swarm/routing';
import { parseSignalUrl, type LinkOptions, type SignalConfig } from '../swarm/transport';
import { generateTokens } from '../engine/generate';
import { generateOptionsFrom, num, printGeneration, type SamplingArgs } from './generate-output';
import { FlockError } from '../model/errors';
import { openNodeModel } from './node-model';
import { ownLayersFromFlag, swarmFromFlags } from './swarm-flags';

export interface LaunchClientOptions {
  dev: FlockDevice;
  model: GgufFile | string;
  swarm: SwarmConfig;
  signal: SignalConfig;
  /** who this client is; default: a new identity (a client is not linkable from one run to the next) */
  identity?: Identity;
  epochMs?: number;
  knownPeers?: string[];
  swarmOptions?: Partial<SwarmOptions>;
  /** layers the client runs itself (open-client.ts); default DEFAULT_OWN_LAYERS */
  own?: OwnLayers;
  link?: Partial<LinkOptions>;
  announceMs?: number;
  /** wait until the records cover the hosts' layers (ms); 0 = do not wait */
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

/** A swarm client in Node: the model file, a peer and discovery (swarm-net.ts), and the client (open-client.ts). */
export async function launchClient(o: LaunchClientOptions): Promise<LaunchedClient> {
  const { file, close } = await openNodeModel(o.model);
  let net: SwarmNet | undefined;
  try {
    const identity = o.identity ?? (await Identity.generate({ powBits: o.swarm.powBits }));
    net = await SwarmNet.join(o.signal, o.swarm, identity, { announceMs: o.announceMs, link: o.link, epochMs: o.epochMs, knownPeers: o.knownPeers });
    const n = net;
    const model = await openSwarmClient({ dev: o.dev, file, directory: n.discovery, swarm: o.swarmOptions, own: o.own });
    if (o.waitForRouteMs) {
      const { start, end } = model.remote;
      await n.discovery.waitFor(() => findRoute(n.records(model.modelHash), start, end) !== null, o.waitForRouteMs);
    }
    return {
      peer: n.peer, discovery: n.discovery, model, config: model.config, modelHash: model.modelHash,
      stop: () => {
        n.stop();
        model.destroy();
        close();
      },
    };
  } catch (e) {
    net?.stop();
    close();
    throw e;
  }
}

/** The options `flock generate` parsed (all strings, as parseArgs gives them). */
export interface SwarmGenerateArgs extends SamplingArgs {
  model?: string;
  'max-context'?: string;
  json?: boolean;
  swarm?: string;
  signal?: string;
  dtype?: string;
  'secret-file'?: string;
  'pow-bits'?: string;
  'own-layers'?: string;
}

/**
 * `flock generate --swarm NAME --signal URL …`: like the local generate, plus `own_layers`, `route`, `reroutes` and
 * `verification` (what checks of the hosts found: checks, mismatches, banned, rollbacks, …; swarm/hop-check.ts) in --json.
 */
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
    swarm: swarmFromFlags(values.swarm, values['secret-file'], values['pow-bits']),
    signal: parseSignalUrl(values.signal),
    swarmOptions: { dtype, maxContext: num(values['max-context'], 'max-context') },
    own: ownLayersFromFlag(values['own-layers']),
    waitForRouteMs: 20_000,
  });
  const loadMs = performance.now() - t0;
  try {
    await printGeneration(generateTokens(c.model, generateOptionsFrom(values)), {
      json: values.json ?? false,
      loadMs,
      device: dev.adapterName,
      extra: () => ({
        // layers this machine ran itself, and the hosts' (open-client.ts OwnLayers)
        own_layers: { front: c.model.front ? [c.model.front.start, c.model.front.end] : null, back: c.model.back ? [c.model.back.start, c.model.back.end] : null },
        route: c.model.route,
        reroutes: c.model.reroutes.map((x) => ({ step: x.step, span: x.span, from: x.from, to: x.to, reason: x.reason, ms: x.ms })),
        wire_bytes: c.model.wire,
        overclaimed: c.model.overclaimed(),
        verification: c.model.verification,
        // hosts that failed this client, and how often (faded: swarm/reliability.ts); routing prices them by it
        host_failures: Object.fromEntries(c.model.reliability.failureCounts()),
      }),
    });
  } finally {
    c.stop();
  }
}
