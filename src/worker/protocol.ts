// The shapes that cross the boundary between the page and the engine worker (structured-clone data only).
// Not here: behaviour; the worker is engine.worker.ts and the page's side is client.ts.

import type { LinkDownReason } from '../swarm/errors';
import type { Limits, Msg } from '../swarm/protocol';
import type { PeerRecord } from '../swarm/records';

export type { ModelSpec } from '../storage/model-source';
import type { ModelSpec } from '../storage/model-source';

export interface DeviceInfo {
  adapterName: string;
  hasF16: boolean;
}

export interface ModelInfo {
  name: string;
  arch: string;
  nLayers: number;
  weightBytes: number;
  loadMs: number;
  /** bytes read from the source while loading */
  bytesRead: number;
  /** true when replies are built from the model's chat template; false: the last user message is continued */
  chatTemplate: boolean;
}

export interface LoadProgress {
  loaded: number;
  total: number;
  /** a local model's GPU pipelines compiled so far, of `pipelines` (they compile during loading, before "ready") */
  compiled?: number;
  pipelines?: number;
}

export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatRequest {
  messages: ChatTurn[];
  temperature: number;
  topP: number;
  maxTokens: number;
  seed: number;
}

export interface TokenEvent {
  /** the token id (-1 where the chat API gives text only) */
  id: number;
  text: string;
}

export interface ChatResult {
  text: string;
  /** token ids of the reply (empty where the chat API gives text only) */
  outputIds: number[];
  /** tokens in the reply */
  tokenCount: number;
  finishReason: 'length' | 'stop' | 'abort' | 'context';
  prefillMs: number;
  decodeTokensPerSecond: number;
}

/** What this build can do with a GGUF file, decided from its header alone. */
export interface ModelReport {
  runnable: boolean;
  /** why not, in words, when not runnable */
  reason: string;
  arch: string;
  tokenizer: string;
  tensorTypes: string[];
  size: number;
}

/** The worker's API, as exposed through comlink (callbacks arrive as comlink proxies). */
export interface EngineApi {
  init(): Promise<DeviceInfo>;
  load(spec: ModelSpec, onProgress: (p: LoadProgress) => void): Promise<ModelInfo>;
  chat(req: ChatRequest, onToken: (t: TokenEvent) => void): Promise<ChatResult>;
  /** abort the current load or generation (no-op when idle) */
  abort(): void;
  inspect(spec: ModelSpec): Promise<ModelReport>;
  /** load the Head of `spec` (embeddings, output head, tokenizer) and chat through the swarm's hosts from now on */
  joinSwarm(spec: ModelSpec, bridge: SwarmBridge, onProgress: (p: LoadProgress) => void): Promise<SwarmInfo>;
  /** the page's latest view of the swarm: live records of our model's hosts, heartbeat round trips by peer */
  setSwarmRecords(records: PeerRecord[], rttMs: [string, number][]): void;
  swarmStatus(): SwarmStatus | null;
  /** drop the swarm Head; chat needs a local model loaded again */
  leaveSwarm(): void;
}

// ---- the swarm: links relayed from the page ---------------------------------------------------------------------

/** What the page gives the worker for one link to a host (the page holds the PeerLink; the port relays it). */
export interface RelayedLink {
  port: MessagePort;
  peer: string;
  /** largest frame the link may send (PeerLink.frameBytes) */
  frameBytes: number;
  limits: Limits;
}

/** Page -> worker on a link's port: a decoded message from the host, or the link going down. */
export type PortToWorker =
  | { t: 'msg'; msg: Msg }
  | { t: 'down'; reason: LinkDownReason; detail: string };

/** Worker -> page on a link's port: frames to send (encoded in the worker), or a request to hang up. */
export type PortToPage =
  | { t: 'frames'; frames: ArrayBuffer[] }
  | { t: 'close'; reason: LinkDownReason; detail: string };

/** The page's side of the swarm, called by the worker through comlink. */
export interface SwarmBridge {
  /** a link to `peer` from the page's PeerJS peer (dialled, or shared while it is up) */
  connect(peer: string): Promise<RelayedLink>;
}

export interface SwarmInfo extends ModelInfo {
  /** sha256 of the GGUF header: hosts must announce this hash */
  modelHash: string;
}

/** Where the current swarm chat runs: the route's hops, their latest latency, the re-routes so far. */
export interface SwarmStatus {
  route: { peer: string; start: number; end: number; ms: number }[];
  reroutes: { step: number; from: string; to: string[]; start: number; end: number; reason: string; ms: number }[];
  wire: { bytesOut: number; bytesIn: number };
}
