// The page's side of the engine worker: a typed wrapper over comlink that turns callbacks into proxies and rebuilds
// named errors (reviveError), so `e instanceof ContextOverflowError` works on the main thread as in the worker.
// Not here: the worker's code (engine.worker.ts) or any DOM.

import { proxy, wrap, type Remote } from 'comlink';
import { reviveError } from '../model/errors';
import type { PeerRecord } from '../swarm/records';
import type {
  ChatRequest, ChatResult, DeviceInfo, EngineApi, LoadProgress, ModelInfo, ModelReport, ModelSpec, SwarmBridge, SwarmInfo, SwarmStatus, TokenEvent,
} from './protocol';

export type * from './protocol';

/**
 * The error as it would have been in the worker: a known Flock error class by name; otherwise an Error that keeps
 * the name (AbortError, OperationError…) so callers can still tell kinds apart.
 */
export function rebuildError(e: unknown): Error {
  if (!(e instanceof Error)) return new Error(String(e));
  const revived = reviveError(e.name, e.message);
  if (revived.name === e.name) return revived;
  const plain = new Error(e.message);
  plain.name = e.name;
  return plain;
}

async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw rebuildError(e);
  }
}

export class EngineClient {
  private readonly remote: Remote<EngineApi>;
  constructor(private readonly worker: Worker) {
    this.remote = wrap<EngineApi>(worker);
  }

  /** Start the module worker that ships with the app. */
  static start(): EngineClient {
    return new EngineClient(new Worker(new URL('./engine.worker.ts', import.meta.url), { type: 'module', name: 'flock-engine' }));
  }

  init(): Promise<DeviceInfo> {
    return call(() => this.remote.init());
  }

  load(spec: ModelSpec, onProgress: (p: LoadProgress) => void): Promise<ModelInfo> {
    return call(() => this.remote.load(spec, proxy(onProgress)));
  }

  chat(req: ChatRequest, onToken: (t: TokenEvent) => void): Promise<ChatResult> {
    return call(() => this.remote.chat(req, proxy(onToken)));
  }

  abort(): Promise<void> {
    return call(() => this.remote.abort());
  }

  inspect(spec: ModelSpec): Promise<ModelReport> {
    return call(() => this.remote.inspect(spec));
  }

  /** `bridge` must already be a comlink proxy (the worker calls it back for every link it needs). */
  joinSwarm(spec: ModelSpec, bridge: SwarmBridge, onProgress: (p: LoadProgress) => void): Promise<SwarmInfo> {
    return call(() => this.remote.joinSwarm(spec, bridge, proxy(onProgress)));
  }

  setSwarmRecords(records: PeerRecord[], rttMs: [string, number][]): Promise<void> {
    return call(() => this.remote.setSwarmRecords(records, rttMs));
  }

  swarmStatus(): Promise<SwarmStatus | null> {
    return call(() => this.remote.swarmStatus());
  }

  leaveSwarm(): Promise<void> {
    return call(() => this.remote.leaveSwarm());
  }

  terminate(): void {
    this.worker.terminate();
  }
}
