// The engine in a Web Worker, exposed with comlink: the WebGPU device, one loaded model, streaming generation and
// abort. The page stays responsive because GPU submission, tokenizing and weight uploads all happen here.
// Errors are thrown as-is: comlink carries `name` and `message`, and client.ts rebuilds the named class.
// Not here: the DOM, settings or conversations (the page owns those), downloads (src/storage/model-cache.ts).

/// <reference lib="webworker" />
import { expose } from 'comlink';
import { FlockChatEngine } from '../engine/chat';
import { generateTokens, PrefixCache } from '../engine/generate';
import { LocalModel } from '../engine/local-model';
import { requestFlockDevice, type FlockDevice } from '../gpu/device';
import { GpuHead } from '../gpu/head';
import { partTensors, readConfig } from '../model/config';
import { blockFormat, byteSize } from '../model/quant';
import { InvalidArgumentError } from '../model/errors';
import { openGguf } from '../model/gguf';
import type { ByteSource } from '../model/source';
import { createTokenizer } from '../model/tokenizer';
import { sourceFor } from '../storage/model-source';
import { SwarmModel } from '../swarm/client';
import { modelHashOf, type PeerRecord } from '../swarm/records';
import { inspectSource } from './inspect';
import { PortLink } from './port-link';
import type {
  ChatRequest, ChatResult, DeviceInfo, EngineApi, LoadProgress, ModelInfo, ModelSpec, SwarmBridge, SwarmInfo, SwarmStatus, TokenEvent,
} from './protocol';

/** Most tokens per swarm step (the Head's batch; hosts accept 64). */
const SWARM_MAX_BATCH = 64;

let dev: FlockDevice | undefined;
/** what chat() runs on: a whole local model, or a Head whose layers run on the swarm's hosts */
let model: LocalModel | SwarmModel | undefined;
let modelName = '';
/** the swarm's view, pushed by the page (which holds discovery) */
let swarmRecords: PeerRecord[] = [];
let swarmRtt = new Map<string, number>();
/** links the worker holds, by peer, while they are up (one port per PeerLink on the page) */
const portLinks = new Map<string, Promise<PortLink>>();
/** the KV cache of the last reply: the next turn of the same conversation runs only its new tokens (local models) */
const cache = new PrefixCache();
/** the OpenAI-style chat API over `model`, when the model has a chat template; undefined: text continuation */
let chatEngine: FlockChatEngine | undefined;
/** the current load or generation; abort() ends it */
let running: AbortController | undefined;

function nameOf(spec: ModelSpec, source: ByteSource): string {
  return spec.kind === 'url' || spec.kind === 'whole' ? spec.name : source.name;
}

/**
 * The prompt of a model without a chat template: the last user message, continued as plain text. Such models
 * (stories260K) are text models; dressing their input as "User: … Assistant:" only makes them worse.
 */
function promptFor(req: ChatRequest): string {
  for (let i = req.messages.length - 1; i >= 0; i--) if (req.messages[i].role === 'user') return req.messages[i].content;
  return '';
}

/** A reply through the OpenAI-style API (src/engine/chat.ts): the model's chat template, its end-of-turn tokens. */
async function chatWithTemplate(engine: FlockChatEngine, req: ChatRequest, signal: AbortSignal, onToken: (t: TokenEvent) => void): Promise<ChatResult> {
  const onAbort = () => engine.interruptGenerate();
  signal.addEventListener('abort', onAbort);
  try {
    const stream = await engine.chat.completions.create({
      messages: req.messages,
      stream: true,
      temperature: req.temperature,
      top_p: req.topP,
      max_tokens: req.maxTokens,
      seed: req.seed,
    });
    let text = '';
    // token events travel on the callback's own port: the last must reach the page before the result does
    let delivered: unknown;
    let finish: ChatResult['finishReason'] = 'stop';
    let usage: { completion_tokens: number; extra?: { decode_tokens_per_s?: number; time_to_first_token_s?: number } } | undefined;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      const piece = c?.delta.content ?? '';
      if (piece) {
        text += piece;
        delivered = onToken({ id: -1, text: piece });
      }
      if (c?.finish_reason) finish = c.finish_reason === 'abort' ? 'abort' : c.finish_reason === 'length' ? 'length' : 'stop';
      if (chunk.usage) usage = chunk.usage;
    }
    await delivered;
    return {
      text,
      outputIds: [],
      tokenCount: usage?.completion_tokens ?? 0,
      finishReason: finish,
      prefillMs: (usage?.extra?.time_to_first_token_s ?? 0) * 1000,
      decodeTokensPerSecond: usage?.extra?.decode_tokens_per_s ?? 0,
    };
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

const api: EngineApi = {
  async init(): Promise<DeviceInfo> {
    dev ??= await requestFlockDevice(self.navigator.gpu);
    return { adapterName: dev.adapterName, hasF16: dev.hasF16 };
  },

  async load(spec: ModelSpec, onProgress: (p: LoadProgress) => void): Promise<ModelInfo> {
    if (!dev) throw new InvalidArgumentError('init() must run before load().');
    running?.abort();
    const ac = new AbortController();
    running = ac;
    try {
      const source = await sourceFor(spec);
      const t0 = performance.now();
      let last = 0;
      const next = await LocalModel.load(dev, source, {
        signal: ac.signal,
        onProgress: (p) => {
          // at most ~30 messages a second across the worker boundary
          const now = performance.now();
          if (now - last > 33 || p.loaded >= p.total) {
            last = now;
            onProgress({ loaded: p.loaded, total: p.total, compiled: p.compiled, pipelines: p.pipelines });
          }
        },
      });
      dropModel();
      model = next;
      modelName = nameOf(spec, source);
      const engine = new FlockChatEngine(next, { cache });
      chatEngine = engine.template.isFallback ? undefined : engine;
      return {
        name: modelName,
        arch: next.config.arch,
        nLayers: next.config.nLayers,
        weightBytes: next.weightBytes,
        loadMs: performance.now() - t0,
        bytesRead: source.bytesFetched,
        chatTemplate: chatEngine !== undefined,
      };
    } finally {
      if (running === ac) running = undefined;
    }
  },

  async chat(req: ChatRequest, onToken: (t: TokenEvent) => void): Promise<ChatResult> {
    if (!model) throw new InvalidArgumentError('No model is loaded yet.');
    if (running) throw new InvalidArgumentError('The model is busy; stop the current reply first.');
    const ac = new AbortController();
    running = ac;
    try {
      if (chatEngine) return await chatWithTemplate(chatEngine, req, ac.signal, onToken);
      const it = generateTokens(model, {
        prompt: promptFor(req),
        temperature: req.temperature,
        topP: req.topP,
        maxTokens: req.maxTokens,
        seed: req.seed,
        signal: ac.signal,
        cache: model instanceof LocalModel ? cache : undefined,
      });
      let r = await it.next();
      // token events travel on the callback's own port: the last must reach the page before the result does
      let delivered: unknown;
      while (!r.done) {
        delivered = onToken({ id: r.value.id, text: r.value.text });
        r = await it.next();
      }
      await delivered;
      const res = r.value;
      return {
        text: res.text,
        outputIds: res.outputIds,
        tokenCount: res.outputIds.length,
        finishReason: res.finishReason,
        prefillMs: res.timings.prefillMs,
        decodeTokensPerSecond: res.timings.decodeTokensPerSecond,
      };
    } finally {
      if (running === ac) running = undefined;
    }
  },

  abort(): void {
    running?.abort();
  },

  async inspect(spec: ModelSpec) {
    return inspectSource(await sourceFor(spec));
  },

  async joinSwarm(spec: ModelSpec, bridge: SwarmBridge, onProgress: (p: LoadProgress) => void): Promise<SwarmInfo> {
    if (!dev) throw new InvalidArgumentError('init() must run before joinSwarm().');
    running?.abort();
    const ac = new AbortController();
    running = ac;
    try {
      const t0 = performance.now();
      const source = await sourceFor(spec);
      const file = await openGguf(source);
      const config = readConfig(file);
      const tokenizer = createTokenizer(file.metadata);
      const modelHash = await modelHashOf(file);
      let last = 0;
      const counter = {
        loaded: 0,
        onBytes: (loaded: number): void => {
          const now = performance.now();
          if (now - last > 33) {
            last = now;
            onProgress({ loaded, total: headBytes });
          }
        },
      };
      let headBytes = 0;
      for (const t of partTensors(file, config, { start: 0, end: 0, head: true }).values()) headBytes += byteSize(blockFormat(t.type, t.name), t.nElems);
      const head = await GpuHead.load(dev, file, config, { maxBatch: SWARM_MAX_BATCH, counter, signal: ac.signal });
      dropModel();
      swarmRecords = [];
      swarmRtt = new Map();
      const directory = {
        records: () => swarmRecords,
        rttMs: () => swarmRtt,
        connect: (peer: string) => connectVia(bridge, peer),
      };
      const next = new SwarmModel(dev, config, tokenizer, head, directory, { modelHash, maxBatch: SWARM_MAX_BATCH });
      model = Object.assign(next, { file });
      modelName = nameOf(spec, source);
      const engine = new FlockChatEngine(model);
      chatEngine = engine.template.isFallback ? undefined : engine;
      onProgress({ loaded: headBytes, total: headBytes });
      return {
        name: modelName,
        arch: config.arch,
        nLayers: config.nLayers,
        weightBytes: head.weightBytes,
        loadMs: performance.now() - t0,
        bytesRead: source.bytesFetched,
        chatTemplate: chatEngine !== undefined,
        modelHash,
      };
    } finally {
      if (running === ac) running = undefined;
    }
  },

  setSwarmRecords(records: PeerRecord[], rttMs: [string, number][]): void {
    swarmRecords = records;
    swarmRtt = new Map(rttMs);
  },

  swarmStatus(): SwarmStatus | null {
    if (!(model instanceof SwarmModel)) return null;
    return {
      route: model.route.map((r) => ({ peer: r.peer, start: r.start, end: r.end, ms: r.ms })),
      reroutes: model.reroutes.map((r) => ({ step: r.step, from: r.from, to: r.to, start: r.span.start, end: r.span.end, reason: r.reason, ms: r.ms })),
      wire: { ...model.wire },
    };
  },

  leaveSwarm(): void {
    if (model instanceof SwarmModel) {
      running?.abort();
      dropModel();
    }
  },
};

/** Release the current model (local or swarm Head) and every relayed link. */
function dropModel(): void {
  cache.clear(); // it holds a sequence of this model
  if (model instanceof SwarmModel) {
    model.head.destroy();
    for (const p of portLinks.values()) void p.then((l) => l.close('closed', 'left the swarm'), () => {});
    portLinks.clear();
  }
  model?.destroy();
  model = undefined;
  chatEngine = undefined;
}

/** A link to `peer`, relayed by the page; shared while it is up, as Discovery.connect shares PeerLinks. */
function connectVia(bridge: SwarmBridge, peer: string): Promise<PortLink> {
  let p = portLinks.get(peer);
  if (!p) {
    p = bridge.connect(peer).then((relayed) => new PortLink(relayed));
    portLinks.set(peer, p);
    const mine = p;
    p.then(
      (l) => void l.closed.then(() => portLinks.get(peer) === mine && portLinks.delete(peer)),
      () => portLinks.get(peer) === mine && portLinks.delete(peer),
    );
  }
  return p;
}

expose(api);
