// A contributing host: serves the span of a model's layers that the swarm covers least, within a memory budget the
// contributor sets (weights plus a KV cache of maxContext positions per layer), on a participant that joined the
// swarm. Contribute mode in the page runs it on the tab's own WebGPU device; it is serve.ts with the budget turned
// into a number of layers and into the host's KV budget. Not here: the DOM (the page shows stats(); src/ui/keep-awake.ts
// holds the screen Wake Lock), opening the model file or the device (the caller's).

import { partBytes, readConfig } from '../model/config';
import { InvalidArgumentError } from '../model/errors';
import type { GgufFile } from '../model/gguf';
import type { WeightsStatus } from '../model/manifest-check';
import type { LoadProgress } from '../model/source';
import type { FlockDevice } from '../gpu/device';
import type { Span } from './protocol';
import { layerBytes, layerKvBytes, layersWithin, serveSpan, type ServingHost } from './serve';
import type { SwarmNet } from './swarm-net';

/** Positions each session may hold on a contributing host. 2048: a long chat with a small model; KV is counted in the budget. */
export const CONTRIBUTE_MAX_CONTEXT = 2048;

export interface ContributeStats {
  span: Span;
  nLayers: number;
  peerId: string;
  sessions: number;
  links: number;
  /** peer ids of the clients holding sessions here now */
  clients: string[];
  /** token positions run for others */
  tokens: number;
  uptimeMs: number;
  tokensPerSecond: number;
  /** bytes of this span's weights on the GPU */
  weightBytes: number;
  /** checked against the model's pinned manifest when loaded ('verified'), or no manifest is pinned ('unpinned') */
  weights: WeightsStatus;
}

export interface ContributeOptions {
  dev: FlockDevice;
  file: GgufFile;
  net: SwarmNet;
  /** GPU memory the host may use for weights and KV cache, bytes */
  budgetBytes: number;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

export class Contributor {
  private constructor(
    readonly net: SwarmNet,
    readonly serving: ServingHost,
    private readonly file: GgufFile,
  ) {}

  /** Work out how many layers fit the budget (refused with a named error when not one does), then serve them. */
  static async start(o: ContributeOptions): Promise<Contributor> {
    const config = readConfig(o.file);
    const maxContext = Math.min(CONTRIBUTE_MAX_CONTEXT, config.ctx);
    const maxLayers = layersWithin(o.file, config, o.budgetBytes, maxContext);
    if (maxLayers < 1) {
      const need = layerBytes(o.file, config, 0) + layerKvBytes(config, maxContext);
      throw new InvalidArgumentError(
        `One layer of this model needs ${(need / 1e6).toFixed(1)} MB (weights and cache); the memory limit is ${(o.budgetBytes / 1e6).toFixed(1)} MB. Raise the limit.`,
      );
    }
    const serving = await serveSpan({
      dev: o.dev, file: o.file, net: o.net, maxLayers, maxContext,
      // sessions may reserve the part of the budget the weights leave
      host: { kvBudgetBytes: Math.max(layerKvBytes(config, maxContext), o.budgetBytes - maxLayers * layerBytes(o.file, config, 0)) },
      onProgress: o.onProgress, signal: o.signal,
    });
    return new Contributor(o.net, serving, o.file);
  }

  get modelHash(): string {
    return this.serving.modelHash;
  }

  stats(): ContributeStats {
    const s = this.serving.host.stats();
    return {
      span: this.serving.span,
      nLayers: this.serving.config.nLayers,
      peerId: this.net.id,
      sessions: s.sessions,
      links: s.links,
      clients: s.clients,
      tokens: s.tokens,
      uptimeMs: Date.now() - this.serving.since,
      tokensPerSecond: this.serving.host.tokensPerSecond,
      weightBytes: partBytes(this.file, this.serving.config, { ...this.serving.span, head: false }),
      weights: this.serving.weights,
    };
  }

  /** Stop serving (the net, the device and the file stay the caller's). */
  stop(): void {
    this.serving.stop();
  }

  /** Leave on purpose: the sessions' clients and the rendezvous hear it first (serve.ts leave), then stop. */
  leave(): Promise<void> {
    return this.serving.leave();
  }
}
