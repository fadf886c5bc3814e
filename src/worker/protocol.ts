// The shapes that cross the boundary between the page and the engine worker (structured-clone data only).
// Not here: behaviour; the worker is engine.worker.ts and the page's side is client.ts.

/** Where a model's bytes come from. */
export type ModelSpec =
  | { kind: 'url'; url: string; name: string }
  /** a small file (the embedded model) fetched whole into memory: no Range requests, so any static host works */
  | { kind: 'whole'; url: string; name: string }
  | { kind: 'file'; file: File }
  | { kind: 'cached'; id: string };

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
}
