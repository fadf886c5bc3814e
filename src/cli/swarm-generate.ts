// `flock generate --swarm NAME --signal URL`: generation on this machine's Head (tokenizer, embeddings, output head,
// sampler: tokens never leave it) with the layers run by a swarm's hosts. launchClient is also what tests use.
// Not here: the generation loop (engine/generate.ts) or the client session logic (swarm/client.ts).

import type { Peer } from 'peerjs';
import { readConfig, type ModelConfig } from '../model/config';
import { openGguf, type GgufFile } from '../model/gguf';
import { openSource } from '../model/source-file';
import { createTokenizer } from '../model/tokenizer';
import type { FlockDevice } from '../gpu/device';
import { GpuHead } from '../gpu/head';
import { SwarmModel, type SwarmOptions } from '../swarm/client';
import { Discovery } from '../swarm/discovery';
import { SignalError } from '../swarm/errors';
import { modelHashOf, type PeerRecord } from '../swarm/records';
import { findRoute } from '../swarm/routing';
import { openPeer, type LinkOptions, type SignalConfig } from '../swarm/transport';
import { installNodeWebRtc } from './node-webrtc';

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
  installNodeWebRtc();
  const file = typeof o.model === 'string' ? await openGguf(openSource(o.model)) : o.model;
  const config = readConfig(file);
  const tokenizer = createTokenizer(file.metadata);
  const modelHash = await modelHashOf(file);
  const opened = await openPeer(o.signal, undefined);
  if (opened.kind !== 'open') throw new SignalError('The signalling server refused a fresh peer id.');
  const peer = opened.peer;
  const discovery = await Discovery.start(peer, { signal: o.signal, swarm: o.swarm, announceMs: o.announceMs, link: o.link });
  const head = await GpuHead.load(o.dev, file, config, { maxBatch: o.swarmOptions?.maxBatch ?? 64 });
  // The client sees only hosts of its own model and protocol version.
  const directory = {
    records: (): PeerRecord[] => discovery.recordsFor(modelHash),
    connect: (id: string) => discovery.connect(id),
  };
  const model = new SwarmModel(o.dev, config, tokenizer, head, directory, o.swarmOptions);
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
    },
  };
}
