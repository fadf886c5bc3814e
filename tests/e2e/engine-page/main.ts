// A test page for the engine's browser build, without the app around it. `greedy` loads a model from a URL with the
// page's WebGPU device and runs greedy decoding from given ids. `swarmChat` is the page's swarm client as the app
// runs it, minus the DOM: the real engine worker (src/worker/engine-client.ts), the page's peer and discovery
// (src/swarm/swarm-net.ts), links relayed to the worker (src/worker/link-relay.ts), a chat streamed through the chat
// API; it returns the ids, how the reply ended, or the error exactly as the page received it. scripts/bench-page.ts
// calls `bench(...)`, which runs the engine benchmark in a Web Worker (bench-worker.ts).
// Tests call `window.flockEngineTest.greedy(...)` and `window.flockEngineTest.swarmChat(...)`.

import { proxy, wrap } from 'comlink';
import { generateAll, LocalModel } from '../../../src/engine/local-model';
import { requestFlockDevice } from '../../../src/gpu/device';
import { HttpSource } from '../../../src/model/source';
import { NoRouteError } from '../../../src/swarm/errors';
import { findRoute } from '../../../src/swarm/routing';
import { Identity } from '../../../src/swarm/identity';
import { publicSwarm } from '../../../src/swarm/swarm-config';
import { SwarmNet } from '../../../src/swarm/swarm-net';
import { parseSignalUrl, type LinkOptions } from '../../../src/swarm/transport';
import { EngineClient, type LoadedModel, type SwarmStatus } from '../../../src/worker/engine-client';
import { relayBridge } from '../../../src/worker/link-relay';
import type { EngineBenchOptions, EngineBenchResult } from './bench-core';
import type { BenchWorkerApi } from './bench-worker';

/** Greedy ids, the adapter, and the layer span of each Stage the model ran on. */
async function greedy(
  modelUrl: string, inputIds: number[], maxTokens: number, stages: number,
): Promise<{ ids: number[]; adapter: string; spans: number[][] }> {
  const dev = await requestFlockDevice(navigator.gpu);
  const model = await LocalModel.load(dev, new HttpSource(modelUrl), { stages, maxContext: inputIds.length + maxTokens + 1 });
  try {
    const r = await generateAll(model, { inputIds, maxTokens, temperature: 0, ignoreEos: true });
    return { ids: r.outputIds, adapter: dev.adapterName, spans: model.stages.map((st) => [st.start, st.end]) };
  } finally {
    model.destroy();
    dev.device.destroy();
  }
}

export interface SwarmChatArgs {
  modelUrl: string;
  signal: string;
  swarm: string;
  prompt: string;
  maxTokens: number;
  recoverTimeoutMs: number;
  hopTimeoutMs: number;
  link: Partial<LinkOptions>;
  announceMs: number;
  /** the public swarm's proof of work (tests/swarm/harness.ts TEST_POW_BITS) */
  powBits: number;
}

export interface SwarmChatResult {
  /** ids streamed in the chunks, in order */
  ids: number[];
  finish: string | null;
  outputIds: number[] | null;
  /** the error the stream threw, as the page sees it */
  error: { name: string; message: string; isNoRouteError: boolean; ids: number[] | null; missing: { start: number; end: number } | null } | null;
  status: SwarmStatus | null;
}

/** How many ids the running swarmChat has streamed so far (tests poll it to act mid-reply). */
let streamed = 0;

async function swarmChat(a: SwarmChatArgs): Promise<SwarmChatResult> {
  const engine = EngineClient.start();
  // as the app's swarm panel does: a fresh identity for this chat
  const swarm = publicSwarm(a.swarm, a.powBits);
  const net = await SwarmNet.join(parseSignalUrl(a.signal), swarm, await Identity.generate({ powBits: swarm.powBits }), { link: a.link, announceMs: a.announceMs });
  let head: LoadedModel | undefined;
  // the app's swarm panel pushes the swarm's records to the worker the same way (every 500 ms there)
  const push = setInterval(() => {
    if (head) void engine.setSwarmRecords(net.records(head.modelHash), [...net.rttMs()]);
  }, 100);
  try {
    await engine.init();
    const h = await engine.joinSwarm({ kind: 'url', url: a.modelUrl, name: 'stories260K' }, '', proxy(relayBridge(net.discovery)), () => {}, {
      recoverTimeoutMs: a.recoverTimeoutMs, hopTimeoutMs: a.hopTimeoutMs,
    });
    head = h;
    // wait until the records cover every layer, as the app's swarm picture does before the user sends
    await net.discovery.waitFor((r) => findRoute(r.filter((x) => x.modelHash === h.modelHash), 0, h.nLayers) !== null, 20_000);
    await engine.setSwarmRecords(net.records(h.modelHash), [...net.rttMs()]);
    const out: SwarmChatResult = { ids: [], finish: null, outputIds: null, error: null, status: null };
    streamed = 0;
    try {
      const stream = await engine.chat.completions.create({
        messages: [{ role: 'user', content: a.prompt }], stream: true, temperature: 0, max_tokens: a.maxTokens,
      });
      for await (const c of stream) {
        out.ids.push(...c.flock.ids);
        streamed = out.ids.length;
        if (c.flock.reply) {
          out.finish = c.flock.reply.finish;
          out.outputIds = c.flock.reply.outputIds;
        }
      }
    } catch (e) {
      out.error = {
        name: e instanceof Error ? e.name : typeof e,
        message: e instanceof Error ? e.message : String(e),
        isNoRouteError: e instanceof NoRouteError,
        ids: e instanceof NoRouteError ? e.ids : null,
        missing: e instanceof NoRouteError ? e.missing : null,
      };
    }
    out.status = await engine.swarmStatus();
    return out;
  } finally {
    clearInterval(push);
    net.stop();
    engine.terminate();
  }
}

async function bench(modelUrl: string, opts: EngineBenchOptions): Promise<EngineBenchResult> {
  const worker = new Worker(new URL('./bench-worker.ts', import.meta.url), { type: 'module' });
  try {
    return await wrap<BenchWorkerApi>(worker).bench(modelUrl, opts);
  } finally {
    worker.terminate();
  }
}

Object.assign(window, { flockEngineTest: { greedy, swarmChat, streamed: () => streamed, bench } });
document.body.dataset.ready = 'true';
