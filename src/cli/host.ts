// `flock host`: serve a span of a model's layers to a swarm from Node (Dawn + node-datachannel). Loads only the span's
// tensors (an http(s) URL is read with Range requests), announces itself through discovery, and serves sessions with
// StageHost. launchHost is also what the tests use to run hosts in-process. Not here: the protocol or host logic.

import { parseArgs } from 'node:util';
import type { Peer } from 'peerjs';
import type { ModelConfig } from '../model/config';
import { FlockError, InvalidArgumentError } from '../model/errors';
import type { GgufFile } from '../model/gguf';
import type { FlockDevice } from '../gpu/device';
import { GpuStage } from '../gpu/stage';
import { Discovery } from '../swarm/discovery';
import { StageHost, type HostOptions } from '../swarm/host';
import { PROTOCOL_VERSION, type Span } from '../swarm/protocol';
import { chooseSpan, shouldMove } from '../swarm/placement';
import { parseSignalUrl, type LinkOptions, type SignalConfig } from '../swarm/transport';
import { joinSwarm } from './swarm-join';

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
  /** how often a host without --layers checks whether to move. 60 s: weights take a while to load */
  rebalanceMs?: number;
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
  /**
   * Move to a much less covered span when the swarm changed (placement.ts shouldMove), if this host chose its own
   * span and has no sessions. Runs every rebalanceMs; returns whether it moved.
   */
  rebalance(): Promise<boolean>;
  stop(): void;
}

export async function launchHost(o: LaunchHostOptions): Promise<LaunchedHost> {
  const { file, config, modelHash, peer, closeSource } = await joinSwarm(o.model, o.signal);
  let discovery: Discovery | undefined;
  try {
    discovery = await Discovery.start(peer, { signal: o.signal, swarm: o.swarm, announceMs: o.announceMs, link: o.link });
    let span = o.layers;
    if (!span) {
      // let the rendezvous' answers arrive (they follow our first announce within milliseconds; 1 s is plenty), then
      // take the least covered span
      const d0 = discovery;
      await d0.waitFor(() => d0.recordsFor(modelHash).length > 0, 1_000).catch(() => {});
      span = chooseSpan(config.nLayers, o.maxLayers ?? config.nLayers, discovery.recordsFor(modelHash));
    }
    if (!(span.start >= 0 && span.start < span.end && span.end <= config.nLayers)) {
      throw new InvalidArgumentError(`--layers ${span.start}:${span.end} is not inside this model's 0:${config.nLayers}.`);
    }
    const d = discovery;
    const serve = async (sp: Span): Promise<{ stage: GpuStage; host: StageHost }> => {
      const stage = await GpuStage.load(o.dev, file, config, sp.start, sp.end, { maxContext: o.maxContext });
      // Compile the decode (1 token) and prefill (tiled, > 4 tokens) pipelines now, before anyone is routed here: on a
      // software adapter a first compile takes seconds and would run into clients' hop timeouts.
      const warm = stage.createSession(8);
      await stage.forward(warm, new Float32Array(5 * config.dim));
      await stage.forward(warm, new Float32Array(config.dim));
      stage.closeSession(warm);
      const host = new StageHost(stage, { peerId: peer.id, modelHash, link: o.link, ...o.host });
      d.opts.self = () => ({
        id: peer.id, modelHash, span: sp, throughput: host.tokensPerSecond, freeKv: Math.min(host.freeKvTokens, 0xffffffff),
        protocolVersion: PROTOCOL_VERSION,
      });
      return { stage, host };
    };
    const first = await serve(span);
    let timer: ReturnType<typeof setInterval> | undefined;
    const launched: LaunchedHost = {
      peer, host: first.host, stage: first.stage, discovery: d, span, config, modelHash,
      rebalance: async () => {
        // Only a host that chose its own span moves, and only while it serves nobody (moving drops sessions).
        if (o.layers || launched.host.stats().sessions > 0) return false;
        const others = d.recordsFor(modelHash).filter((r) => r.id !== peer.id);
        const target = shouldMove(config.nLayers, launched.span, others);
        if (!target) return false;
        const next = await serve(target);
        const old = { host: launched.host, stage: launched.stage };
        Object.assign(launched, { host: next.host, stage: next.stage, span: target });
        old.host.stop();
        old.stage.destroy();
        await d.round();
        return true;
      },
      stop: () => {
        clearInterval(timer);
        d.stop();
        launched.host.stop();
        peer.destroy();
        launched.stage.destroy();
        closeSource();
      },
    };
    peer.on('connection', (conn) => {
      if (conn.label === 'flock') void launched.host.accept(conn);
      else conn.once('open', () => conn.close()); // not mid-negotiation: see StageHost.accept
    });
    if (!o.layers) timer = setInterval(() => void launched.rebalance().catch(() => {}), o.rebalanceMs ?? 60_000);
    await d.round();
    return launched;
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
