// A test page that serves a span of a model's layers to a swarm from a browser tab, without the app around it: the
// page's WebGPU device, the model read from a URL with Range requests, the tab's own RTCPeerConnection and WebSocket.
// It starts the host the way src/cli/host.ts launchHost does (Discovery, GpuStage warmed up, StageHost, the peer's
// 'flock' connections handed to the host), minus the Node parts (polyfills, file sources, self-placement).
// Tests call `window.flockSwarmTest.host(...)` and `window.flockSwarmTest.stop()`.

import type { DataConnection } from 'peerjs';
import { requestFlockDevice } from '../../../src/gpu/device';
import { GpuStage } from '../../../src/gpu/stage';
import { readConfig } from '../../../src/model/config';
import { openGguf } from '../../../src/model/gguf';
import { HttpSource } from '../../../src/model/source';
import { Discovery } from '../../../src/swarm/discovery';
import { StageHost, type HostOptions } from '../../../src/swarm/host';
import { PROTOCOL_VERSION } from '../../../src/swarm/protocol';
import { modelHashOf } from '../../../src/swarm/records';
import { openPeer, parseSignalUrl, type LinkOptions } from '../../../src/swarm/transport';

export interface HostArgs {
  modelUrl: string;
  swarm: string;
  /** ws://host:port/path of the PeerServer */
  signal: string;
  start: number;
  end: number;
  maxContext?: number;
  announceMs?: number;
  link?: Partial<LinkOptions>;
  host?: Partial<Omit<HostOptions, 'peerId' | 'modelHash'>>;
}

export interface HostInfo {
  peerId: string;
  modelHash: string;
  span: { start: number; end: number };
  adapter: string;
}

let stopCurrent: (() => void) | undefined;

async function host(a: HostArgs): Promise<HostInfo> {
  if (stopCurrent) throw new Error('this page already hosts');
  const dev = await requestFlockDevice(navigator.gpu);
  const file = await openGguf(new HttpSource(a.modelUrl));
  const config = readConfig(file);
  const modelHash = await modelHashOf(file);
  const signal = parseSignalUrl(a.signal);
  const opened = await openPeer(signal, undefined);
  if (opened.kind !== 'open') throw new Error('The signalling server refused a fresh peer id.');
  const peer = opened.peer;
  let discovery: Discovery | undefined;
  try {
    discovery = await Discovery.start(peer, { signal, swarm: a.swarm, announceMs: a.announceMs, link: a.link });
    const span = { start: a.start, end: a.end };
    if (!(span.start >= 0 && span.start < span.end && span.end <= config.nLayers)) {
      throw new Error(`layers ${span.start}:${span.end} are not inside this model's 0:${config.nLayers}`);
    }
    const stage = await GpuStage.load(dev, file, config, span.start, span.end, { maxContext: a.maxContext });
    // compile the prefill and decode pipelines before anyone is routed here (as launchHost does)
    const warm = stage.createSession(8);
    await stage.forward(warm, new Float32Array(5 * config.dim));
    await stage.forward(warm, new Float32Array(config.dim));
    stage.closeSession(warm);
    const h = new StageHost(stage, { peerId: peer.id, modelHash, link: a.link, ...a.host });
    discovery.opts.self = () => ({
      id: peer.id, modelHash, span, throughput: h.tokensPerSecond, freeKv: Math.min(h.freeKvTokens, 0xffffffff),
      protocolVersion: PROTOCOL_VERSION,
    });
    peer.on('connection', (conn: DataConnection) => {
      if (conn.label === 'flock') void h.accept(conn);
      else conn.once('open', () => conn.close());
    });
    const d = discovery;
    stopCurrent = () => {
      d.stop();
      h.stop();
      peer.destroy();
      stage.destroy();
      dev.device.destroy();
    };
    await d.round();
    return { peerId: peer.id, modelHash, span, adapter: dev.adapterName };
  } catch (e) {
    discovery?.stop();
    peer.destroy();
    dev.device.destroy();
    throw e;
  }
}

function stop(): void {
  stopCurrent?.();
  stopCurrent = undefined;
}

Object.assign(window, { flockSwarmTest: { host, stop } });
document.body.dataset.ready = 'true';
