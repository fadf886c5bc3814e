// `flock host`: serve a span of a model's layers to a swarm from Node (Dawn + node-datachannel). Loads only the span's
// tensors (an http(s) URL is read with Range requests), announces itself through discovery, and serves sessions with
// StageHost. launchHost is also what the tests use to run hosts in-process. Not here: the protocol or host logic.

import { parseArgs } from 'node:util';
import type { Peer } from 'peerjs';
import { readConfig, type ModelConfig } from '../model/config';
import { FlockError, InvalidArgumentError } from '../model/errors';
import { openGguf, type GgufFile } from '../model/gguf';
import { openSource } from '../model/source-file';
import type { FlockDevice } from '../gpu/device';
import { GpuStage } from '../gpu/stage';
import { Discovery } from '../swarm/discovery';
import { StageHost, type HostOptions } from '../swarm/host';
import { PROTOCOL_VERSION, type Span } from '../swarm/protocol';
import { modelHashOf } from '../swarm/records';
import { chooseSpan } from '../swarm/placement';
import { openPeer, parseSignalUrl, type LinkOptions, type SignalConfig } from '../swarm/transport';
import { SignalError } from '../swarm/errors';
import { installNodeWebRtc } from './node-webrtc';

export interface LaunchHostOptions {
  dev: FlockDevice;
  /** an opened GGUF file (its header), or a path/URL */
  model: GgufFile | string;
  swarm: string;
  signal: SignalConfig;
  /** layers to serve; without it, the span the swarm covers least (placement.ts) of maxLayers layers */
  layers?: Span;
  maxLayers?: number;
  maxContext?: number;
  announceMs?: number;
  host?: Partial<Omit<HostOptions, 'peerId' | 'modelHash'>>;
  link?: Partial<LinkOptions>;
}

export interface LaunchedHost {
  peer: Peer;
  host: StageHost;
  stage: GpuStage;
  discovery: Discovery;
  span: Span;
  config: ModelConfig;
  modelHash: string;
  stop(): void;
}

export async function launchHost(o: LaunchHostOptions): Promise<LaunchedHost> {
  installNodeWebRtc();
  const file = typeof o.model === 'string' ? await openGguf(openSource(o.model)) : o.model;
  const config = readConfig(file);
  const modelHash = await modelHashOf(file);
  const opened = await openPeer(o.signal, undefined);
  if (opened.kind !== 'open') throw new SignalError('The signalling server refused a fresh peer id.');
  const peer = opened.peer;
  let discovery: Discovery | undefined;
  try {
    discovery = await Discovery.start(peer, { signal: o.signal, swarm: o.swarm, announceMs: o.announceMs, link: o.link });
    let span = o.layers;
    if (!span) {
      // let one more round of gossip arrive, then take the least covered span
      await discovery.round();
      span = chooseSpan(config.nLayers, o.maxLayers ?? config.nLayers, discovery.recordsFor(modelHash));
    }
    if (!(span.start >= 0 && span.start < span.end && span.end <= config.nLayers)) {
      throw new InvalidArgumentError(`--layers ${span.start}:${span.end} is not inside this model's 0:${config.nLayers}.`);
    }
    const stage = await GpuStage.load(o.dev, file, config, span.start, span.end, { maxContext: o.maxContext });
    const host = new StageHost(stage, { peerId: peer.id, modelHash, link: o.link, ...o.host });
    peer.on('connection', (conn) => {
      if (conn.label === 'flock') void host.accept(conn);
      else conn.close();
    });
    const s = span;
    discovery.opts.self = () => ({
      id: peer.id, modelHash, span: s, throughput: host.tokensPerSecond, freeKv: Math.min(host.freeKvTokens, 0xffffffff),
      protocolVersion: PROTOCOL_VERSION,
    });
    await discovery.round();
    const d = discovery;
    return {
      peer, host, stage, discovery: d, span, config, modelHash,
      stop: () => {
        d.stop();
        host.stop();
        peer.destroy();
        stage.destroy();
      },
    };
  } catch (e) {
    discovery?.stop();
    peer.destroy();
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
    },
  });
  if (!values.model || !values.swarm || !values.signal) {
    throw new FlockError('flock host needs --model PATH|URL --swarm NAME --signal URL [--layers START:END] [--max-layers N]');
  }
  const { nodeDevice } = await import('./dawn');
  const dev = await nodeDevice();
  const h = await launchHost({
    dev,
    model: values.model,
    swarm: values.swarm,
    signal: parseSignalUrl(values.signal),
    layers: values.layers ? parseLayers(values.layers) : undefined,
    maxLayers: values['max-layers'] ? Number(values['max-layers']) : undefined,
    maxContext: values['max-context'] ? Number(values['max-context']) : undefined,
  });
  process.stderr.write(`flock host ${h.peer.id}: layers ${h.span.start}:${h.span.end} of ${h.config.nLayers}, model ${h.modelHash.slice(0, 12)}…, swarm "${values.swarm}"\n`);
  await new Promise<void>((resolve) => {
    const quit = (): void => {
      h.stop();
      resolve();
    };
    process.once('SIGINT', quit);
    process.once('SIGTERM', quit);
  });
}
