// The page's side of the engine worker. It is a ChatEngine (engine/chat-api.ts) like FlockChatEngine: the page
// chats through `chat.completions.create({stream: true, …})` and `interruptGenerate()` exactly as `flock chat` and
// API users do in-thread, and the chunks it yields are the worker's, unchanged. Beside that: loading models, joining
// a swarm, and asking the worker (which owns it) what is loaded. Named errors come back as their own classes with
// their fields (errors.ts). Not here: the worker's code (engine.worker.ts) or any DOM.

import { proxy, wrap, type Remote } from 'comlink';
import type {
  ChatCompletionRequestBase, ChatEngine, FlockChunk, FlockCompletion, FlockCompletions,
} from '../engine/chat-api';
import type { PeerRecord } from '../swarm/records';
import type {
  ChatEvent, DeviceInfo, EngineApi, InspectRequest, LoadedModel, LoadProgress, LoadRequest, ModelReport, ModelSpec, SwarmBridge, SwarmJoinOptions,
  SwarmStatus,
} from './api';
import { installErrorTransfer, reviveError } from './errors';

export type * from './api';

/** Chunks pushed by the worker, read as an async iterable; ends at 'end', throws the revived error at 'error'. */
class ChunkQueue implements AsyncIterableIterator<FlockChunk> {
  private readonly items: ChatEvent[] = [];
  private wake: (() => void) | null = null;
  private done = false;

  constructor(private readonly onEarlyReturn: () => void) {}

  push(e: ChatEvent): void {
    this.items.push(e);
    this.wake?.();
    this.wake = null;
  }

  async next(): Promise<IteratorResult<FlockChunk>> {
    for (;;) {
      if (this.done) return { done: true, value: undefined };
      const e = this.items.shift();
      if (e) {
        switch (e.t) {
          case 'chunk':
            return { done: false, value: e.chunk };
          case 'end':
            this.done = true;
            return { done: true, value: undefined };
          case 'error':
            this.done = true;
            throw reviveError(e.error);
          default: {
            const never: never = e;
            void never;
            continue;
          }
        }
      }
      await new Promise<void>((r) => (this.wake = r));
    }
  }

  /** A reader that stops early ends the reply (as FlockChatEngine's stream does). */
  async return(): Promise<IteratorResult<FlockChunk>> {
    if (!this.done) this.onEarlyReturn();
    this.done = true;
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<FlockChunk> {
    return this;
  }
}

export class EngineClient implements ChatEngine {
  readonly chat: { readonly completions: FlockCompletions };
  private readonly remote: Remote<EngineApi>;

  constructor(private readonly worker: Worker) {
    installErrorTransfer();
    this.remote = wrap<EngineApi>(worker);
    const create = (request: ChatCompletionRequestBase) => this.create(request);
    // The overloads are checked at the call site; one implementation serves all three (as in FlockChatEngine).
    this.chat = { completions: { create: create as FlockCompletions['create'] } };
  }

  /** Start the module worker that ships with the app. */
  static start(): EngineClient {
    return new EngineClient(new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module', name: 'flock-engine' }));
  }

  private async create(request: ChatCompletionRequestBase): Promise<AsyncIterable<FlockChunk> | FlockCompletion> {
    if (request.stream !== true) {
      const whole = await this.remote.createChat(request, proxy(() => {}));
      if (!whole) throw new TypeError('The engine streamed a reply that was asked for whole.');
      return whole;
    }
    const queue = new ChunkQueue(() => this.interruptGenerate());
    await this.remote.createChat(request, proxy((e: ChatEvent) => queue.push(e)));
    return queue;
  }

  interruptGenerate(): void {
    void this.remote.interrupt();
  }

  init(): Promise<DeviceInfo> {
    return this.remote.init();
  }

  load(spec: ModelSpec, key: string, onProgress: (p: LoadProgress) => void, request?: LoadRequest): Promise<LoadedModel> {
    return this.remote.load(spec, key, proxy(onProgress), request);
  }

  /** `bridge` must already be a comlink proxy (the worker calls it back for every link it needs). */
  joinSwarm(spec: ModelSpec, key: string, bridge: SwarmBridge, onProgress: (p: LoadProgress) => void, options: SwarmJoinOptions = {}): Promise<LoadedModel> {
    return this.remote.joinSwarm(spec, key, bridge, proxy(onProgress), options);
  }

  leaveSwarm(): Promise<void> {
    return this.remote.leaveSwarm();
  }

  /** Swarm mode under a new identity (EngineApi.rebindSwarm); `bridge` must already be a comlink proxy. */
  rebindSwarm(bridge: SwarmBridge): Promise<void> {
    return this.remote.rebindSwarm(bridge);
  }

  /** The model the worker has loaded now (the worker owns this), or null. */
  loaded(): Promise<LoadedModel | null> {
    return this.remote.loaded();
  }

  /** Stop a load in progress (and any reply). */
  interrupt(): Promise<void> {
    return this.remote.interrupt();
  }

  /** Read only the header of `spec` and judge whether it runs here (no weight is fetched). */
  inspect(spec: ModelSpec, request: InspectRequest): Promise<ModelReport> {
    return this.remote.inspect(spec, request);
  }

  setSwarmRecords(records: PeerRecord[], rttMs: [string, number][]): Promise<void> {
    return this.remote.setSwarmRecords(records, rttMs);
  }

  swarmStatus(): Promise<SwarmStatus | null> {
    return this.remote.swarmStatus();
  }

  terminate(): void {
    this.worker.terminate();
  }
}
