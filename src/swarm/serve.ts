// Serving a span from a participant that joined a swarm (swarm-net.ts): choose the span (placement.ts) unless one is
// given, load only its tensors onto the GPU, compile its pipelines, announce it through discovery and hand the peer's
// 'flock' connections to a StageHost; move to a much less covered span when the swarm changes. The one place a span
// is served: in Node (`flock host`, src/cli/host.ts), in a browser tab (Contribute mode, contributor.ts) and on the
// tests' host page. A span of a model with a pinned manifest (model/manifest.ts) is checked while it loads: a tensor
// whose bytes differ refuses the span with ManifestMismatchError before anything is announced; a model without one
// is served as 'unpinned'. Everything here is plain WebGPU and PeerJS. Not here: joining the swarm or opening the
// model file (the caller's), the protocol or the host logic (stage-host.ts).

import type { DataConnection } from 'peerjs';
import { partBytes, partTensors, readConfig, type ModelConfig } from '../model/config';
import { InvalidArgumentError } from '../model/errors';
import type { GgufFile } from '../model/gguf';
import { checkWhileLoading, type WeightsStatus } from '../model/manifest-check';
import { layerKvBytes } from '../model/memory';
import type { FlockDevice } from '../gpu/device';
import { GpuStage } from '../gpu/stage';
import { StageHost, type HostOptions } from './stage-host';
import { chooseSpan, shouldMove } from './placement';
import { hostedLayers } from './own-layers';
import { MAX_CLAIMED_FREE_KV, MAX_CLAIMED_THROUGHPUT, modelHashOf } from './records';
import type { SwarmNet } from './swarm-net';
import { PROTOCOL_VERSION, type Span } from './protocol';
import type { LinkOptions } from './transport';

export interface ServeOptions {
  dev: FlockDevice;
  /** the model's GGUF header: only the span's tensors are read */
  file: GgufFile;
  /** the swarm as this participant joined it: clients connect to its peer, its discovery announces the span */
  net: SwarmNet;
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
  config: ModelConfig;
  /** records.ts modelHashOf: what the span is announced under */
  modelHash: string;
  /**
   * 'verified': the span's tensors matched the manifest pinned for modelHash when they loaded; 'unpinned': no manifest
   * is pinned for this model, so its weights were not checked
   */
  weights: WeightsStatus;
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
  /** leave on purpose: tell the sessions' clients and the rendezvous first (they re-route at once), then stop */
  leave(): Promise<void>;
}

/** Weight bytes of layer `l` as stored in the file (what a host downloads and uploads for it). */
export function layerBytes(file: GgufFile, config: ModelConfig, l: number): number {
  return partBytes(file, config, { start: l, end: l + 1, head: false });
}

/** KV cache bytes one layer needs for `maxContext` positions (model/memory.ts: the one formula everybody uses). */
export { layerKvBytes };

/** How many layers fit in `budgetBytes` of GPU memory, weights plus one session's KV cache (0 when none does). */
export function layersWithin(file: GgufFile, config: ModelConfig, budgetBytes: number, maxContext: number): number {
  let widest = 0;
  for (let l = 0; l < config.nLayers; l++) widest = Math.max(widest, layerBytes(file, config, l));
  const perLayer = widest + layerKvBytes(config, maxContext);
  return Math.min(config.nLayers, Math.floor(budgetBytes / perLayer));
}

export async function serveSpan(o: ServeOptions): Promise<ServingHost> {
  const { discovery: d, peer } = o.net;
  const selfId = o.net.id; // peer.id is null while the signalling server is out of reach
  const config = readConfig(o.file);
  const modelHash = await modelHashOf(o.file);
  let span = o.layers;
  if (!span) {
    // let the rendezvous' answers arrive (they follow our first announce within milliseconds; 1 s is plenty), then
    // take the least covered span
    await d.waitFor(() => d.recordsFor(modelHash).length > 0, 1_000).catch(() => {});
    span = chooseSpan(config.nLayers, o.maxLayers ?? config.nLayers, d.recordsFor(modelHash), hostedLayers(config.nLayers));
  }
  if (!(span.start >= 0 && span.start < span.end && span.end <= config.nLayers)) {
    throw new InvalidArgumentError(`Layers ${span.start}:${span.end} are not inside this model's 0:${config.nLayers}.`);
  }
  const load = async (sp: Span): Promise<{ stage: GpuStage; host: StageHost; weights: WeightsStatus }> => {
    const total = partBytes(o.file, config, { ...sp, head: false });
    const counter = { loaded: 0, onBytes: (loaded: number) => o.onProgress?.({ loaded, total }) };
    // the span's tensors are hashed as they load (no second read) and checked before anything is announced
    const check = await checkWhileLoading(o.file, partTensors(o.file, config, { ...sp, head: false }).keys());
    const stage = await GpuStage.load(o.dev, check.file, config, sp.start, sp.end, { maxContext: o.maxContext, signal: o.signal, counter });
    let weights: WeightsStatus;
    try {
      weights = await check.finish(o.signal);
    } catch (e) {
      stage.destroy();
      throw e;
    }
    // Compile the decode (1 token) and prefill (tiled, > 4 tokens) pipelines now, before anyone is routed here: on a
    // software adapter a first compile takes seconds and would run into clients' hop timeouts.
    const warm = stage.createSession(8);
    await stage.forward(warm, new Float32Array(5 * config.dim));
    await stage.forward(warm, new Float32Array(config.dim));
    stage.closeSession(warm);
    const host = new StageHost(stage, { peerId: selfId, modelHash, link: o.link, auth: d.auth, ...o.host });
    d.opts.self = () => ({
      modelHash, span: sp, throughput: Math.min(host.tokensPerSecond, MAX_CLAIMED_THROUGHPUT),
      freeKv: Math.min(host.freeKvTokens, MAX_CLAIMED_FREE_KV), protocolVersion: PROTOCOL_VERSION,
    });
    return { stage, host, weights };
  };
  const first = await load(span);
  let timer: ReturnType<typeof setInterval> | undefined;
  let stopped = false;
  const onConnection = (conn: DataConnection): void => {
    if (conn.label === 'flock') void serving.host.accept(conn);
    else if (conn.label === 'flock-rv') d.answer(conn); // hosts answer discovery too (discovery.ts gossip)
    else conn.once('open', () => conn.close()); // not mid-negotiation: see StageHost.accept
  };
  const serving: ServingHost = {
    config, modelHash, weights: first.weights,
    host: first.host, stage: first.stage, span, since: Date.now(),
    rebalance: async () => {
      // Only a host that chose its own span moves, and only while it serves nobody (moving drops sessions).
      if (stopped || o.layers || serving.host.stats().sessions > 0) return false;
      const others = d.recordsFor(modelHash).filter((r) => r.id !== selfId);
      const target = shouldMove(config.nLayers, serving.span, others, hostedLayers(config.nLayers));
      if (!target) return false;
      const next = await load(target);
      const old = { host: serving.host, stage: serving.stage };
      Object.assign(serving, { host: next.host, stage: next.stage, span: target, since: Date.now(), weights: next.weights });
      old.host.stop();
      old.stage.destroy();
      await d.round();
      return true;
    },
    leave: async () => {
      if (stopped) return;
      serving.host.stop(); // tells every client it is leaving
      await d.leave();
      serving.stop();
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
