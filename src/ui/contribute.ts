// Contribute mode: this tab serves a span of the chosen model's layers to its swarm. It opens the model (only the
// header, then only the span's tensors are read), works out how many layers fit the memory limit the user set,
// joins the swarm, lets placement pick the least covered span and serves it with the tab's own WebGPU device
// (swarm/serve.ts, the same code as `flock host`). A screen Wake Lock keeps the tab awake where the browser allows.
// The host runs on the page's thread because the tab's RTCPeerConnection lives there; its work there is routing
// frames, the layers themselves run on the GPU. Not here: the DOM (main.ts shows stats()).

import { requestFlockDevice, type FlockDevice } from '../gpu/device';
import { readConfig, type ModelConfig } from '../model/config';
import { InvalidArgumentError } from '../model/errors';
import { openGguf } from '../model/gguf';
import { sourceFor, type ModelSpec } from '../storage/model-source';
import type { NetSettings } from '../storage/settings';
import { modelHashOf } from '../swarm/records';
import { layerBytes, layerKvBytes, layersWithin, serveSpan, type ServingHost } from '../swarm/serve';
import type { Span } from '../swarm/protocol';
import { SwarmNet } from './swarm-net';

/** Positions each session may hold on this host. 2048: a long chat with a small model; KV is counted in the limit. */
export const CONTRIBUTE_MAX_CONTEXT = 2048;

export interface ContributeStats {
  span: Span;
  nLayers: number;
  peerId: string;
  sessions: number;
  links: number;
  /** token positions run for others */
  tokens: number;
  uptimeMs: number;
  tokensPerSecond: number;
  /** bytes of this span's weights on the GPU */
  weightBytes: number;
  wakeLock: WakeLockState;
}

export type WakeLockState = 'held' | 'unsupported' | 'refused' | 'released';

/** Keep the screen (and so the tab) awake while serving; taken again when the tab becomes visible (browsers drop it). */
class KeepAwake {
  state: WakeLockState = 'released';
  private lock: WakeLockSentinel | null = null;
  private stopped = false;
  private readonly onVisible = (): void => {
    if (document.visibilityState === 'visible' && !this.stopped) void this.take();
  };

  async start(): Promise<void> {
    document.addEventListener('visibilitychange', this.onVisible);
    await this.take();
  }

  private async take(): Promise<void> {
    if (!('wakeLock' in navigator)) {
      this.state = 'unsupported';
      return;
    }
    try {
      this.lock = await navigator.wakeLock.request('screen');
      this.state = 'held';
      this.lock.addEventListener('release', () => {
        if (!this.stopped) this.state = 'released';
      });
    } catch {
      this.state = 'refused'; // hidden tab, battery saver, or a permissions policy: serving goes on regardless
    }
  }

  stop(): void {
    this.stopped = true;
    document.removeEventListener('visibilitychange', this.onVisible);
    void this.lock?.release().catch(() => {});
    this.state = 'released';
  }
}

export interface ContributeOptions {
  spec: ModelSpec;
  net: NetSettings;
  onProgress?: (p: { loaded: number; total: number }) => void;
  signal?: AbortSignal;
}

export class Contributor {
  private constructor(
    readonly net: SwarmNet,
    readonly serving: ServingHost,
    readonly config: ModelConfig,
    readonly modelHash: string,
    private readonly dev: FlockDevice,
    private readonly awake: KeepAwake,
    private readonly weightBytesOf: (s: Span) => number,
  ) {}

  static async start(o: ContributeOptions): Promise<Contributor> {
    const source = await sourceFor(o.spec);
    const file = await openGguf(source);
    const config = readConfig(file);
    const maxContext = Math.min(CONTRIBUTE_MAX_CONTEXT, config.ctx);
    const budget = o.net.memoryMb * 1e6;
    const maxLayers = layersWithin(file, config, budget, maxContext);
    if (maxLayers < 1) {
      const need = layerBytes(file, config, 0) + layerKvBytes(config, maxContext);
      throw new InvalidArgumentError(
        `One layer of this model needs ${(need / 1e6).toFixed(1)} MB (weights and cache); the memory limit is ${o.net.memoryMb} MB. Raise the limit.`,
      );
    }
    const modelHash = await modelHashOf(file);
    const dev = await requestFlockDevice(navigator.gpu);
    let net: SwarmNet | undefined;
    try {
      net = await SwarmNet.join(o.net);
      const serving = await serveSpan({
        dev, file, config, modelHash, peer: net.peer, discovery: net.discovery, maxLayers, maxContext,
        // sessions may reserve the part of the limit the weights leave
        host: { kvBudgetBytes: Math.max(layerKvBytes(config, maxContext), budget - maxLayers * layerBytes(file, config, 0)) },
        onProgress: o.onProgress, signal: o.signal,
      });
      const awake = new KeepAwake();
      await awake.start();
      const weightBytesOf = (s: Span): number => {
        let sum = 0;
        for (let l = s.start; l < s.end; l++) sum += layerBytes(file, config, l);
        return sum;
      };
      return new Contributor(net, serving, config, modelHash, dev, awake, weightBytesOf);
    } catch (e) {
      net?.stop();
      dev.device.destroy();
      throw e;
    }
  }

  stats(): ContributeStats {
    const s = this.serving.host.stats();
    return {
      span: this.serving.span,
      nLayers: this.config.nLayers,
      peerId: this.net.id,
      sessions: s.sessions,
      links: s.links,
      tokens: s.tokens,
      uptimeMs: Date.now() - this.serving.since,
      tokensPerSecond: this.serving.host.tokensPerSecond,
      weightBytes: this.weightBytesOf(this.serving.span),
      wakeLock: this.awake.state,
    };
  }

  stop(): void {
    this.awake.stop();
    this.serving.stop();
    this.net.stop();
    this.dev.device.destroy();
  }
}
