// `flock host`: serve a span of a model's layers to a swarm from Node (Dawn + node-datachannel). Loads only the span's
// tensors (an http(s) URL is read with Range requests), joins the swarm (swarm-net.ts) and serves sessions through
// swarm/serve.ts, the code Contribute mode in the page runs too. launchHost is also what the tests use to run hosts
// in-process. Not here: the protocol or host logic.

import { parseArgs } from 'node:util';
import type { Peer } from 'peerjs';
import type { ModelConfig } from '../model/config';
import { FlockError } from '../model/errors';
import type { GgufFile } from '../model/gguf';
import type { WeightsStatus } from '../model/manifest-check';
import type { GpuStage } from '../gpu/stage';
import type { Discovery } from '../swarm/discovery';
import type { StageHost } from '../swarm/stage-host';
import type { Span } from '../swarm/protocol';
import { serveSpan, type ServeOptions } from '../swarm/serve';
import { parseSignalUrl, type SignalConfig } from '../swarm/transport';
import { loadOrCreateKey } from './key-file';
import { openNodeModel } from './node-model';
import { swarmFromFlags } from './swarm-flags';
import { SwarmNet } from '../swarm/swarm-net';
import { Identity } from '../swarm/identity';
import type { SwarmConfig } from '../swarm/swarm-config';

/** What serveSpan takes, minus what launchHost opens itself (the file, the peer, discovery). */
export interface LaunchHostOptions extends Pick<ServeOptions, 'dev' | 'layers' | 'maxLayers' | 'maxContext' | 'rebalanceMs' | 'host' | 'link'> {
  /** an opened GGUF file (its header), or a path/URL */
  model: GgufFile | string;
  swarm: SwarmConfig;
  signal: SignalConfig;
  /** who this host is (a key file's identity); default: a new one, with the swarm's proof of work */
  identity?: Identity;
  announceMs?: number;
  epochMs?: number;
}

export interface LaunchedHost {
  peer: Peer;
  readonly host: StageHost;
  readonly stage: GpuStage;
  discovery: Discovery;
  readonly span: Span;
  config: ModelConfig;
  modelHash: string;
  /** whether the span's weights matched the model's pinned manifest ('verified') or none is pinned ('unpinned') */
  readonly weights: WeightsStatus;
  /**
   * Move to a much less covered span when the swarm changed (placement.ts shouldMove), if this host chose its own
   * span and has no sessions. Runs every rebalanceMs; returns whether it moved.
   */
  rebalance(): Promise<boolean>;
  /** stop at once (as a crash would look to clients, minus the process dying) */
  stop(): void;
  /** leave on purpose: clients and the rendezvous hear it first, then everything stops */
  leave(): Promise<void>;
}

export async function launchHost(o: LaunchHostOptions): Promise<LaunchedHost> {
  const { file, close } = await openNodeModel(o.model);
  let net: SwarmNet | undefined;
  try {
    const identity = o.identity ?? (await Identity.generate({ powBits: o.swarm.powBits }));
    net = await SwarmNet.join(o.signal, o.swarm, identity, { announceMs: o.announceMs, link: o.link, epochMs: o.epochMs });
    const n = net;
    const serving = await serveSpan({
      dev: o.dev, file, net: n, layers: o.layers, maxLayers: o.maxLayers, maxContext: o.maxContext,
      rebalanceMs: o.rebalanceMs, host: o.host, link: o.link,
    });
    const launched: LaunchedHost = {
      peer: n.peer, discovery: n.discovery, config: serving.config, modelHash: serving.modelHash,
      get host() {
        return serving.host;
      },
      get stage() {
        return serving.stage;
      },
      get span() {
        return serving.span;
      },
      get weights() {
        return serving.weights;
      },
      rebalance: () => serving.rebalance(),
      stop: () => {
        serving.stop();
        n.stop();
        close();
      },
      leave: async () => {
        await serving.leave();
        n.stop();
        close();
      },
    };
    return launched;
  } catch (e) {
    net?.stop();
    close();
    throw e;
  }
}

/** Parse START:END (half open, like a Stage: 2:4 serves layers 2 and 3). */
export function parseLayers(v: string): Span {
  const m = /^(\d+):(\d+)$/.exec(v);
  if (!m || Number(m[1]) >= Number(m[2])) throw new FlockError(`--layers expects START:END with START < END, got "${v}"`);
  return { start: Number(m[1]), end: Number(m[2]) };
}

export async function runHost(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      swarm: { type: 'string' },
      signal: { type: 'string' },
      layers: { type: 'string' },
      'max-layers': { type: 'string' },
      'max-context': { type: 'string' },
      'announce-ms': { type: 'string' },
      'key-file': { type: 'string' },
      'secret-file': { type: 'string' },
      'pow-bits': { type: 'string' },
    },
  });
  if (!values.model || !values.swarm || !values.signal) {
    throw new FlockError('flock host needs --model PATH|URL --swarm NAME --signal URL [--layers START:END] [--max-layers N] [--max-context N] [--announce-ms MS] [--key-file PATH] [--secret-file PATH] [--pow-bits N]');
  }
  const swarm = swarmFromFlags(values.swarm, values['secret-file'], values['pow-bits']);
  // a key file keeps this host's identity (and so its id, and its standing with clients) across restarts
  const identity = values['key-file'] ? await loadOrCreateKey(values['key-file'], swarm.powBits) : undefined;
  const announceMs = values['announce-ms'] === undefined ? undefined : Number(values['announce-ms']);
  if (announceMs !== undefined && !(Number.isInteger(announceMs) && announceMs >= 50)) throw new FlockError(`--announce-ms expects a whole number >= 50, got "${values['announce-ms']}"`);
  const { nodeDevice } = await import('./dawn');
  const dev = await nodeDevice();
  const h = await launchHost({
    dev,
    model: values.model,
    swarm,
    identity,
    signal: parseSignalUrl(values.signal),
    layers: values.layers ? parseLayers(values.layers) : undefined,
    maxLayers: values['max-layers'] ? Number(values['max-layers']) : undefined,
    maxContext: values['max-context'] ? Number(values['max-context']) : undefined,
    announceMs,
  });
  process.stderr.write(`flock host ${h.peer.id}: layers ${h.span.start}:${h.span.end} of ${h.config.nLayers}, model ${h.modelHash.slice(0, 12)}…, ${swarm.secret ? 'private' : 'public'} swarm "${swarm.name}"\n`);
  process.stderr.write(h.weights === 'verified'
    ? 'weights: verified (the span\'s tensors match the manifest pinned for this model)\n'
    : 'weights: unpinned (no manifest is pinned for this model: its tensors were not checked)\n');
  // SIGINT / SIGTERM: leave on purpose, so clients re-route at once and the swarm forgets this host
  await new Promise<void>((resolve) => {
    const quit = (): void => void h.leave().finally(resolve);
    process.once('SIGINT', quit);
    process.once('SIGTERM', quit);
  });
}
