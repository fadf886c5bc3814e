// The engine in a Web Worker, exposed with comlink: the WebGPU device, the one loaded model (a whole local model, or
// the Head of a swarm client whose layers run on hosts the page relays links to), and the chat API over it
// (FlockChatEngine, the same engine `flock chat` and API users run). The worker owns "which model is loaded"; the
// page asks. The page stays responsive because GPU submission, tokenizing and weight uploads all happen here.
// Errors cross with their class and fields (errors.ts). Not here: the DOM, settings or conversations (the page owns
// those), downloads (src/storage/model-cache.ts), discovery (the page's, src/swarm/discovery.ts).

/// <reference lib="webworker" />
import { expose } from 'comlink';
import type { ChatCompletionRequestBase, FlockChunk, FlockCompletion, FlockReplyExtra } from '../engine/chat-api';
import { FlockChatEngine } from '../engine/chat';
import { PrefixCache } from '../engine/generate';
import { LocalModel } from '../engine/local-model';
import { requestFlockDevice, type FlockDevice } from '../gpu/device';
import type { GpuStage } from '../gpu/stage';
import { InvalidArgumentError } from '../model/errors';
import { openGguf } from '../model/gguf';
import { checkWhileLoading, weightsStatusOf } from '../model/manifest-check';
import { DEFAULT_CONTEXT } from '../model/memory';
import type { ByteSource, LoadProgress } from '../model/source';
import { sourceFor } from '../storage/model-source';
import { openSwarmClient } from '../swarm/open-client';
import { modelHashOf } from '../swarm/records';
import type { SwarmModel } from '../swarm/swarm-model';
import type {
  ChatEvent, DeviceInfo, EngineApi, InspectRequest, LoadedModel, LoadRequest, ModelReport, ModelSpec, SwarmBridge, SwarmJoinOptions, SwarmStatus,
} from './api';
import { asError, installErrorTransfer, serializeError } from './errors';
import { inspectSource } from './inspect';
import { RelayedDirectory } from './swarm-directory';

/** Load progress crosses the worker boundary at most this often. 33 ms: ~30 updates a second, smooth for a bar. */
const PROGRESS_MS = 33;

/** What the worker holds while a model is loaded. */
interface Loaded {
  info: LoadedModel;
  backend: LocalModel | SwarmModel;
  chat: FlockChatEngine;
  /** the KV cache of the last reply: the next turn of the same conversation runs only its new tokens */
  cache?: PrefixCache;
  /** Swarm mode: the records and links the page relays */
  directory?: RelayedDirectory;
}

/** A context choice as LocalModel's maxContext: 0 (the model's own) is "as much as the model holds". */
function contextLimit(choice: number): number {
  return choice > 0 ? choice : Number.MAX_SAFE_INTEGER;
}

/** Storage this site may still use, from the browser's estimate; null when it gives none. */
async function freeStorage(): Promise<number | null> {
  const est = await self.navigator.storage?.estimate?.().catch(() => undefined);
  return est?.quota !== undefined ? Math.max(0, est.quota - (est.usage ?? 0)) : null;
}

function nameOf(spec: ModelSpec, source: ByteSource): string {
  return spec.kind === 'url' || spec.kind === 'whole' ? spec.name : source.name;
}

/** `onProgress`, called at most every PROGRESS_MS, and always for the last update. */
function throttled(onProgress: (p: LoadProgress) => void): (p: LoadProgress) => void {
  let last = -Infinity;
  return (p) => {
    const now = performance.now();
    if (now - last < PROGRESS_MS && p.loaded < p.total) return;
    last = now;
    onProgress({ loaded: p.loaded, total: p.total, compiled: p.compiled, pipelines: p.pipelines });
  };
}

class EngineWorker implements EngineApi {
  private dev: FlockDevice | undefined;
  private current: Loaded | null = null;
  /** the load in progress; interrupt() ends it */
  private loading: AbortController | null = null;

  async init(): Promise<DeviceInfo> {
    this.dev ??= await requestFlockDevice(self.navigator.gpu);
    const lim = this.dev.device.limits;
    return { adapterName: this.dev.adapterName, hasF16: this.dev.hasF16, maxBufferSize: lim.maxBufferSize, maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize };
  }

  loaded(): LoadedModel | null {
    return this.current?.info ?? null;
  }

  async load(spec: ModelSpec, key: string, onProgress: (p: LoadProgress) => void, request: LoadRequest = { context: DEFAULT_CONTEXT }): Promise<LoadedModel> {
    return this.loadWith(async (dev, signal) => {
      const source = await sourceFor(spec);
      const t0 = performance.now();
      // A model with a pinned manifest has every tensor checked as it loads (manifest-check.ts), or is refused. On
      // every load, not only the first after a download: the hashes ride on the load's own reads and cost ~2 ms for
      // the embedded model, ~1.5 s per GB on a 2-core machine (scripts/bench-manifest.ts), and URLs and picked files
      // never pass through the download cache.
      const file = await openGguf(source, signal);
      const check = await checkWhileLoading(file, file.tensors.keys());
      const model = await LocalModel.load(dev, check.source, { signal, onProgress: throttled(onProgress), maxContext: contextLimit(request.context) });
      const weights = await check.finish(signal).catch((e: unknown) => {
        model.destroy();
        throw e;
      });
      const cache = new PrefixCache();
      const chat = new FlockChatEngine(model, { cache });
      const info: LoadedModel = {
        mode: 'local', spec, key, name: nameOf(spec, source), arch: model.config.arch, nLayers: model.config.nLayers, context: model.maxContext,
        weightBytes: model.weightBytes, loadMs: performance.now() - t0, bytesRead: source.bytesFetched,
        chatTemplate: !chat.template.isFallback, modelHash: await modelHashOf(model.file), weights,
      };
      return { info, backend: model, chat, cache };
    });
  }

  async joinSwarm(spec: ModelSpec, key: string, bridge: SwarmBridge, onProgress: (p: LoadProgress) => void, options: SwarmJoinOptions = {}): Promise<LoadedModel> {
    return this.loadWith(async (dev, signal) => {
      const t0 = performance.now();
      const source = await sourceFor(spec);
      const file = await openGguf(source);
      const directory = new RelayedDirectory(bridge);
      const swarm = { dtype: options.dtype, hopTimeoutMs: options.hopTimeoutMs, recoverTimeoutMs: options.recoverTimeoutMs, maxContext: options.maxContext };
      const model = await openSwarmClient({ dev, file, directory, swarm, own: options.own, signal, onProgress: throttled(onProgress) });
      // the conversation's sessions stay open on the hosts between turns: each turn sends only its new tokens
      const cache = new PrefixCache();
      const chat = new FlockChatEngine(model, { cache });
      const span = (st: GpuStage | undefined) => (st ? { start: st.start, end: st.end } : null);
      const info: LoadedModel = {
        mode: 'swarm', spec, key, name: nameOf(spec, source), arch: model.config.arch, nLayers: model.config.nLayers, context: model.maxContext,
        weightBytes: model.head.weightBytes + (model.front?.weightBytes ?? 0) + (model.back?.weightBytes ?? 0),
        loadMs: performance.now() - t0, bytesRead: source.bytesFetched,
        chatTemplate: !chat.template.isFallback, modelHash: model.modelHash, weights: weightsStatusOf(model.modelHash), own: { front: span(model.front), back: span(model.back) },
      };
      return { info, backend: model, chat, cache, directory };
    });
  }

  leaveSwarm(): void {
    if (this.current?.info.mode === 'swarm') void this.drop();
  }

  async rebindSwarm(bridge: SwarmBridge): Promise<void> {
    const cur = this.current;
    if (!cur?.directory) throw new InvalidArgumentError('Not in a swarm: there is no identity to change.');
    await cur.chat.resetChat(); // the sessions of the last conversation: a new identity must not hold them
    cur.directory.rebind(bridge);
  }

  async createChat(request: ChatCompletionRequestBase, onEvent: (e: ChatEvent) => void): Promise<FlockCompletion | null> {
    const cur = this.current;
    if (!cur) throw new InvalidArgumentError('No model is loaded yet.');
    if (request.stream !== true) return cur.chat.chat.completions.create({ ...request, stream: false });
    // a swarm reply says what the checks found for it: measured from here, added to its last chunk
    const swarm = cur.info.mode === 'swarm' && 'route' in cur.backend ? cur.backend : undefined;
    const mark = swarm?.checksMark();
    const stream = await cur.chat.chat.completions.create({ ...request, stream: true });
    void this.pump(stream, onEvent, swarm && mark ? (reply) => (reply.checks = swarm.replyChecks(mark)) : undefined);
    return null;
  }

  interrupt(): void {
    this.loading?.abort();
    this.current?.chat.interruptGenerate();
  }

  async inspect(spec: ModelSpec, request: InspectRequest): Promise<ModelReport> {
    const dev = this.dev;
    if (!dev) throw new InvalidArgumentError('init() must run before a model is inspected.');
    const lim = dev.device.limits;
    return inspectSource(await sourceFor(spec), request, {
      maxBufferSize: lim.maxBufferSize, maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize, freeStorage: await freeStorage(),
    });
  }

  setSwarmRecords(records: unknown, rttMs: unknown): void {
    this.current?.directory?.update(records, rttMs);
  }

  swarmStatus(): SwarmStatus | null {
    const cur = this.current;
    if (!cur || cur.info.mode !== 'swarm' || !('route' in cur.backend)) return null;
    const m = cur.backend;
    return {
      route: m.route.map((r) => ({ peer: r.peer, start: r.start, end: r.end, ms: r.ms })),
      reroutes: m.reroutes.map((r) => ({ step: r.step, from: r.from, to: r.to, start: r.span.start, end: r.span.end, reason: r.reason, ms: r.ms })),
      wire: { ...m.wire },
      overclaimed: m.overclaimed(),
      failures: Object.fromEntries(m.reliability.failureCounts()),
    };
  }

  /** Send a stream's chunks to the page in order, then its end or its error, on the one callback. */
  private async pump(stream: AsyncIterable<FlockChunk>, onEvent: (e: ChatEvent) => void, onReply?: (reply: FlockReplyExtra) => void): Promise<void> {
    try {
      for await (const chunk of stream) {
        if (chunk.flock.reply) onReply?.(chunk.flock.reply);
        onEvent({ t: 'chunk', chunk });
      }
      onEvent({ t: 'end' });
    } catch (e) {
      onEvent({ t: 'error', error: serializeError(asError(e)) });
    }
  }

  /** Load a replacement for the current model; the current one stays until the new one is ready. */
  private async loadWith(open: (dev: FlockDevice, signal: AbortSignal) => Promise<Loaded>): Promise<LoadedModel> {
    const dev = this.dev;
    if (!dev) throw new InvalidArgumentError('init() must run before a model is loaded.');
    this.loading?.abort();
    const ac = new AbortController();
    this.loading = ac;
    try {
      const next = await open(dev, ac.signal);
      await this.drop();
      this.current = next;
      return next.info;
    } finally {
      if (this.loading === ac) this.loading = null;
    }
  }

  /** Release the current model: its reply (interrupted), its cache, its links, its GPU memory. */
  private async drop(): Promise<void> {
    const cur = this.current;
    if (!cur) return;
    this.current = null;
    await cur.chat.unload(); // ends its reply, frees its cache and the model
    cur.directory?.close();
  }
}

installErrorTransfer();
expose(new EngineWorker());
