// Serving a span from an already joined peer: choose the span (placement.ts) unless one is given, load only its
// tensors onto the GPU, compile its pipelines, announce it through discovery and hand the peer's 'flock' connections
// to a StageHost; move to a much less covered span when the swarm changes. The same code runs in Node (`flock host`,
// src/cli/host.ts) and in a browser tab (Contribute mode, src/ui/contribute.ts): everything here is plain WebGPU and
// PeerJS. Not here: opening the peer or the model file (the caller's), the protocol or the host logic (host.ts).

import type { DataConnection, Peer } from 'peerjs';
import { partTensors, type ModelConfig } from '../model/config';
import { InvalidArgumentError } from '../model/errors';
import type { GgufFile } from '../model/gguf';
import { blockFormat, byteSize } from '../model/quant';
import type { FlockDevice } from '../gpu/device';
import { GpuStage } from '../gpu/stage';
import type { Discovery } from './discovery';
import { StageHost, type HostOptions } from './host';
import { chooseSpan, shouldMove } from './placement';
import { PROTOCOL_VERSION, type Span } from './protocol';
import type { LinkOptions } from './transport';

export interface ServeOptions {
  dev: FlockDevice;
  file: GgufFile;
  config: ModelConfig;
  modelHash: string;
  /** our main peer (clients connect to it) */
  peer: Peer;
  discovery: Discovery;
  /** layers to serve; without it, the span the swarm covers least (placement.ts) of maxLayers layers */
  layers?: Span;
  maxLayers?: number;
  maxContext?: number;
  /** how often a host without `layers` checks whether to move. 60 s: weights take a while to load */
  rebalanceMs?: number;
  host?: Partial<Omit<HostOptions, 'peerId' | 'modelHash'>>;
  link?: Partial<LinkOptions>;
  /** weight bytes loaded so far of the span being loaded */
  onProgress?: (p: { loaded: number; total: number }) => void;
  signal?: AbortSignal;
}

export interface ServingHost {
  host: StageHost;
  stage: GpuStage;
  span: Span;
  /** ms since the epoch when this span started serving */
  since: number;
  /**
   * Move to a much less covered span when the swarm changed (placement.ts shouldMove), if this host chose its own
   * span and has no sessions. Runs every rebalanceMs; returns whether it moved.
   */
  rebalance(): Promise<boolean>;
  /** stop serving (the peer, discovery and file stay the caller's) */
  stop(): void;
}

/** Weight bytes of layer `l` as stored in the file (what a host downloads and uploads for it). */
export function layerBytes(file: GgufFile, config: ModelConfig, l: number): number {
  let sum = 0;
  for (const t of partTensors(file, config, { start: l, end: l + 1, head: false }).values()) {
    if (t.name === 'rope_freqs.weight') continue;
    sum += byteSize(blockFormat(t.type, t.name), t.nElems);
  }
  return sum;
}

/** KV cache bytes one layer needs for `maxContext` positions (f32 K and V, as GpuStage keeps them). */
export function layerKvBytes(config: ModelConfig, maxContext: number): number {
  return 2 * config.nKvHeads * config.headDim * 4 * maxContext;
}

/** How many layers fit in `budgetBytes` of GPU memory, weights plus one session's KV cache (0 when none does). */
export function layersWithin(file: GgufFile, config: ModelConfig, budgetBytes: number, maxContext: number): number {
  let widest = 0;
  for (let l = 0; l < config.nLayers; l++) widest = Math.max(widest, layerBytes(file, config, l));
  const perLayer = widest + layerKvBytes(config, maxContext);
  return Math.min(config.nLayers, Math.floor(budgetBytes / perLayer));
}

export async function serveSpan(o: ServeOptions): Promise<ServingHost> {
  const { discovery: d, config, peer } = o;
  let span = o.layers;
  if (!span) {
    // let the rendezvous' answers arrive (they follow our first announce within milliseconds; 1 s is plenty), then
    // take the least covered span
    await d.waitFor(() => d.recordsFor(o.modelHash).length > 0, 1_000).catch(() => {});
    span = chooseSpan(config.nLayers, o.maxLayers ?? config.nLayers, d.recordsFor(o.modelHash));
  }
  if (!(span.start >= 0 && span.start < span.end && span.end <= config.nLayers)) {
    throw new InvalidArgumentError(`Layers ${span.start}:${span.end} are not inside this model's 0:${config.nLayers}.`);
  }
  const load = async (sp: Span): Promise<{ stage: GpuStage; host: StageHost }> => {
    let total = 0;
    for (let l = sp.start; l < sp.end; l++) total += layerBytes(o.file, config, l);
    const counter = { loaded: 0, onBytes: (loaded: number) => o.onProgress?.({ loaded, total }) };
    const stage = await GpuStage.load(o.dev, o.file, config, sp.start, sp.end, { maxContext: o.maxContext, signal: o.signal, counter });
    // Compile the decode (1 token) and prefill (tiled, > 4 tokens) pipelines now, before anyone is routed here: on a
    // software adapter a first compile takes seconds and would run into clients' hop timeouts.
    const warm = stage.createSession(8);
    await stage.forward(warm, new Float32Array(5 * config.dim));
    await stage.forward(warm, new Float32Array(config.dim));
    stage.closeSession(warm);
    const host = new StageHost(stage, { peerId: peer.id, modelHash: o.modelHash, link: o.link, ...o.host });
    d.opts.self = () => ({
      id: peer.id, modelHash: o.modelHash, span: sp, throughput: host.tokensPerSecond,
      freeKv: Math.min(host.freeKvTokens, 0xffffffff), protocolVersion: PROTOCOL_VERSION,
    });
    return { stage, host };
  };
  const first = await load(span);
  let timer: ReturnType<typeof setInterval> | undefined;
  let stopped = false;
  const onConnection = (conn: DataConnection): void => {
    if (conn.label === 'flock') void serving.host.accept(conn);
    else conn.once('open', () => conn.close()); // not mid-negotiation: see StageHost.accept
  };
  const serving: ServingHost = {
    host: first.host, stage: first.stage, span, since: Date.now(),
    rebalance: async () => {
      // Only a host that chose its own span moves, and only while it serves nobody (moving drops sessions).
      if (stopped || o.layers || serving.host.stats().sessions > 0) return false;
      const others = d.recordsFor(o.modelHash).filter((r) => r.id !== peer.id);
      const target = shouldMove(config.nLayers, serving.span, others);
      if (!target) return false;
      const next = await load(target);
      const old = { host: serving.host, stage: serving.stage };
      Object.assign(serving, { host: next.host, stage: next.stage, span: target, since: Date.now() });
      old.host.stop();
      old.stage.destroy();
      await d.round();
      return true;
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      peer.off('connection', onConnection);
      d.opts.self = undefined;
      serving.host.stop();
      serving.stage.destroy();
    },
  };
  peer.on('connection', onConnection);
  if (!o.layers) timer = setInterval(() => void serving.rebalance().catch(() => {}), o.rebalanceMs ?? 60_000);
  await d.round();
  return serving;
}
