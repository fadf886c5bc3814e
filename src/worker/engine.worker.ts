// The engine in a Web Worker, exposed with comlink: the WebGPU device, one loaded model, streaming generation and
// abort. The page stays responsive because GPU submission, tokenizing and weight uploads all happen here.
// Errors are thrown as-is: comlink carries `name` and `message`, and client.ts rebuilds the named class.
// Not here: the DOM, settings or conversations (the page owns those), downloads (src/storage/model-cache.ts).

/// <reference lib="webworker" />
import { expose } from 'comlink';
import { FlockChatEngine } from '../engine/chat';
import { LocalModel } from '../engine/local-model';
import { requestFlockDevice, type FlockDevice } from '../gpu/device';
import { InvalidArgumentError, ModelFetchError } from '../model/errors';
import { BlobSource, openWebSource, type ByteSource } from '../model/source';
import { CacheSource, getModel } from '../storage/model-cache';
import { inspectSource } from './inspect';
import type { ChatRequest, ChatResult, DeviceInfo, EngineApi, LoadProgress, ModelInfo, ModelSpec, TokenEvent } from './protocol';

let dev: FlockDevice | undefined;
let model: LocalModel | undefined;
let modelName = '';
/** the OpenAI-style chat API over `model`, when the model has a chat template; undefined: text continuation */
let chatEngine: FlockChatEngine | undefined;
/** the current load or generation; abort() ends it */
let running: AbortController | undefined;

async function sourceFor(spec: ModelSpec): Promise<ByteSource> {
  switch (spec.kind) {
    case 'url':
      return openWebSource(spec.url);
    case 'whole': {
      let res: Response;
      try {
        res = await fetch(spec.url);
      } catch (e) {
        throw new ModelFetchError(`Could not fetch ${spec.url}: ${(e as Error).message}. Check your network.`);
      }
      if (!res.ok) throw new ModelFetchError(`Fetching ${spec.url} failed with HTTP ${res.status} ${res.statusText}.`);
      return new BlobSource(await res.blob(), spec.name);
    }
    case 'file':
      return new BlobSource(spec.file);
    case 'cached': {
      const m = await getModel(spec.id);
      if (!m || !m.complete) throw new InvalidArgumentError('That model is not fully downloaded; finish its download first.');
      return new CacheSource(m);
    }
    default:
      throw new InvalidArgumentError(`unknown model source ${JSON.stringify(spec)}`);
  }
}

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
    let finish: ChatResult['finishReason'] = 'stop';
    let usage: { completion_tokens: number; extra?: { decode_tokens_per_s?: number; time_to_first_token_s?: number } } | undefined;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      const piece = c?.delta.content ?? '';
      if (piece) {
        text += piece;
        onToken({ id: -1, text: piece });
      }
      if (c?.finish_reason) finish = c.finish_reason === 'abort' ? 'abort' : c.finish_reason === 'length' ? 'length' : 'stop';
      if (chunk.usage) usage = chunk.usage;
    }
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
            onProgress({ loaded: p.loaded, total: p.total });
          }
        },
      });
      model?.destroy();
      model = next;
      modelName = nameOf(spec, source);
      const engine = new FlockChatEngine(next);
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
      const it = model.generate({
        prompt: promptFor(req),
        temperature: req.temperature,
        topP: req.topP,
        maxTokens: req.maxTokens,
        seed: req.seed,
        signal: ac.signal,
      });
      let r = await it.next();
      while (!r.done) {
        onToken({ id: r.value.id, text: r.value.text });
        r = await it.next();
      }
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
};

expose(api);
