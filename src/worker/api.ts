// The shapes that cross the boundary between the page and the engine worker (structured-clone data only): the
// worker's API as comlink exposes it, the loaded model's description, chat events, and the messages on a relayed
// swarm link's port. Not here: behaviour; the worker is engine.worker.ts and the page's side is engine-client.ts.

import type { ChatCompletionRequestBase, FlockChunk, FlockCompletion } from '../engine/chat-api';
import type { MemoryLimits, MemoryNeed, MemoryProblem } from '../model/memory';
import type { WeightsStatus } from '../model/manifest-check';
import type { LoadProgress } from '../model/source';
import type { LinkDownReason } from '../swarm/errors';
import type { Limits, Span } from '../swarm/protocol';
import type { OwnLayers } from '../swarm/open-client';
import type { PeerRecord } from '../swarm/records';
import type { SwarmOptions } from '../swarm/swarm-model';
import type { ModelSpec } from '../storage/model-source';
import type { WireError } from './errors';

export type { ModelSpec, LoadProgress };

export interface DeviceInfo {
  adapterName: string;
  hasF16: boolean;
  /** the device's largest buffer and largest storage binding, bytes (the adapter's own limits, requested whole) */
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

/** How a model is loaded: the context the user chose (0: the model's own; never more than the model's own). */
export interface LoadRequest {
  context: number;
}

/** The memory this app may use for one model, and where that number comes from. */
export interface MemoryBudget {
  bytes: number;
  /** 'setting': the user's memory limit; 'declared': a share of the memory the browser says this device has */
  source: 'setting' | 'declared';
}

/** What a header check is asked: the context to judge at, the budget, and how much of the file is already here. */
export interface InspectRequest extends LoadRequest {
  /** null: no budget is known (the browser does not say how much memory the device has, and the user set none) */
  budget: MemoryBudget | null;
  /** bytes of this file already in the download cache: a download needs only the rest */
  cachedBytes: number;
}

/** The model the worker has loaded: the worker owns this, the page reads it. */
export interface LoadedModel {
  /** 'local': the whole model on this device; 'swarm': the Head here, the layers on the swarm's hosts */
  mode: 'local' | 'swarm';
  /** how it was loaded (Swarm and Contribute modes open the same model) */
  spec: ModelSpec;
  /** what the settings remember it by ('embedded', a cached model's id; '' for a picked file) */
  key: string;
  name: string;
  arch: string;
  nLayers: number;
  /** positions a conversation may hold (the context chosen, at most the model's own) */
  context: number;
  /** bytes of weights on this device */
  weightBytes: number;
  loadMs: number;
  /** bytes read from the source while loading */
  bytesRead: number;
  /** true when replies are built from the model's chat template; false: the text-continuation fallback */
  chatTemplate: boolean;
  /** sha256 of the GGUF header (records.ts modelHashOf): the hash hosts of this model announce */
  modelHash: string;
  /** swarm mode: the layers this device runs itself, before and after the hosts' (swarm/open-client.ts OwnLayers) */
  own?: { front: Span | null; back: Span | null };
  /** 'verified': the tensors loaded here matched the model's pinned manifest (all of them in Local mode, the Head's and own layers'
   *  in Swarm mode); 'unpinned': no manifest is pinned for this model */
  weights: WeightsStatus;
}

/**
 * Whether a GGUF file can run here, decided from its header alone: can this build run its architecture, tokenizer
 * and tensor types; how much memory it needs at the context asked for against this device's limits; whether its
 * download fits the free storage.
 *   'fits': it runs at the context asked for; 'shorter': only at `fitContext`; 'too-big': at no context;
 *   'cannot-run': this build does not run it (`reason`); 'no-space': the download does not fit the free storage.
 */
export type ModelVerdict = 'fits' | 'shorter' | 'too-big' | 'cannot-run' | 'no-space';

export interface ModelReport {
  verdict: ModelVerdict;
  runnable: boolean;
  /** why this build cannot run it, in words (verdict 'cannot-run') */
  reason: string;
  name: string;
  arch: string;
  tokenizer: string;
  tensorTypes: string[];
  /** the file's size in bytes */
  size: number;
  /** elements of every tensor */
  params: number;
  /** the model's own context (its metadata), 0 when unreadable */
  modelContext: number;
  /** bytes a download still needs */
  downloadBytes: number;
  /** storage this site may still use (navigator.storage.estimate()), null when the browser does not say */
  freeStorage: number | null;
  limits: MemoryLimits;
  budget: MemoryBudget | null;
  /** the context judged (the one asked for, at most the model's own) */
  context: number;
  /** memory needed at `context`; null when the model cannot run */
  memory: MemoryNeed | null;
  /** what does not fit at `context` */
  problems: MemoryProblem[];
  /** the longest context the picker offers that fits (0: none) */
  fitContext: number;
}

/** What a streamed reply sends to the page, in order on one channel: chunks, then its end or its error. */
export type ChatEvent =
  | { t: 'chunk'; chunk: FlockChunk }
  | { t: 'end' }
  | { t: 'error'; error: WireError };

/** Where the current swarm chat runs: the route's hops, their latest latency, the re-routes so far. */
export interface SwarmStatus {
  route: { peer: string; start: number; end: number; ms: number }[];
  reroutes: { step: number; from: string; to: string[]; start: number; end: number; reason: string; ms: number }[];
  wire: { bytesOut: number; bytesIn: number };
  /** hosts whose claimed speed is far beyond what was measured through them: routed as measured, marked here */
  overclaimed: string[];
  /** hosts that failed this tab's client lately, and how often (faded; swarm/reliability.ts): routed around, marked here */
  failures: Record<string, number>;
}

/** How a tab's swarm client behaves (swarm/swarm-model.ts SwarmOptions; the defaults suit most swarms). */
export type SwarmJoinOptions = Partial<Pick<SwarmOptions, 'dtype' | 'hopTimeoutMs' | 'recoverTimeoutMs' | 'maxContext'>> & {
  /** layers this device runs itself (default swarm/open-client.ts DEFAULT_OWN_LAYERS) */
  own?: OwnLayers;
};

/** The worker's API, as exposed through comlink (callbacks arrive as comlink proxies). */
export interface EngineApi {
  init(): Promise<DeviceInfo>;
  /** load `spec` whole onto this device; replaces whatever was loaded */
  load(spec: ModelSpec, key: string, onProgress: (p: LoadProgress) => void, request?: LoadRequest): Promise<LoadedModel>;
  /** load the Head of `spec` (embeddings, output head, tokenizer) and chat through the swarm's hosts from now on */
  joinSwarm(spec: ModelSpec, key: string, bridge: SwarmBridge, onProgress: (p: LoadProgress) => void, options?: SwarmJoinOptions): Promise<LoadedModel>;
  /** drop the swarm Head; chat needs a local model loaded again */
  leaveSwarm(): void;
  /**
   * Swarm mode under a new identity: the last conversation's sessions end (hosts free their caches), every link of
   * the old identity is hung up, and links are dialled through `bridge` from now on. The Head stays loaded.
   */
  rebindSwarm(bridge: SwarmBridge): Promise<void>;
  /** the model loaded now, or null */
  loaded(): LoadedModel | null;
  /**
   * Start a chat completion (the OpenAI request of engine/chat.ts). A request the engine refuses rejects here. A
   * streaming request resolves with null once it runs, and its chunks follow through `onEvent`; a non-streaming one
   * resolves with the whole completion.
   */
  createChat(request: ChatCompletionRequestBase, onEvent: (e: ChatEvent) => void): Promise<FlockCompletion | null>;
  /** end the reply being generated (it finishes with finish_reason 'abort'), or the load in progress */
  interrupt(): void;
  /** read only the header of `spec` and judge it (ModelReport); fetches no weight */
  inspect(spec: ModelSpec, request: InspectRequest): Promise<ModelReport>;
  /** the page's latest view of the swarm: live records of our model's hosts, heartbeat round trips by peer */
  setSwarmRecords(records: PeerRecord[], rttMs: [string, number][]): void;
  swarmStatus(): SwarmStatus | null;
}

// ---- the swarm: links relayed from the page ---------------------------------------------------------------------

/** The worker's end of a link the page relays (the page holds the PeerLink; the port carries its frames). */
export interface LinkPort {
  port: MessagePort;
  peer: string;
  /** largest frame the link may send (PeerLink.frameBytes) */
  frameBytes: number;
}

/** Page -> worker on a link's port: a frame from the host (checked against the link's limits), or the link's end
 *  (`detail`: the page's LinkDownError message without its reason prefix). */
export type PortToWorker =
  | { t: 'frame'; frame: ArrayBuffer }
  /** the page's PeerLink heard the peer (heartbeats are answered on the page): `silentMs` ago */
  | { t: 'alive'; silentMs: number }
  | { t: 'down'; reason: LinkDownReason; detail: string };

/** Worker -> page on a link's port: frames to send (encoded in the worker), or a request to hang up. */
export type PortToPage =
  | { t: 'frames'; frames: ArrayBuffer[] }
  | { t: 'close'; reason: LinkDownReason; detail: string };

/** The page's side of the swarm, called by the worker through comlink. */
export interface SwarmBridge {
  /** a link to `peer` from the page's PeerJS peer (dialled, or shared while it is up), checking frames under `limits` */
  connect(peer: string, limits: Limits): Promise<LinkPort>;
  /** whether `peer` is still on the signalling server (swarm/transport.ts probe) */
  probe(peer: string): Promise<'gone' | 'alive' | 'unknown'>;
}
