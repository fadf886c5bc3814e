// A test page that serves a span of a model's layers to a swarm from a browser tab, without the app around it: the
// page's WebGPU device, the model read from a URL with Range requests, the tab's own RTCPeerConnection and WebSocket.
// It starts the host with src/swarm/serve.ts on fixed layers, as `flock host --layers` does, minus the Node parts.
// Tests call `window.flockSwarmTest.host(...)` and `window.flockSwarmTest.stop()`.

import { requestFlockDevice } from '../../../src/gpu/device';
import { readConfig } from '../../../src/model/config';
import { openGguf } from '../../../src/model/gguf';
import { HttpSource } from '../../../src/model/source';
import { Discovery } from '../../../src/swarm/discovery';
import type { HostOptions } from '../../../src/swarm/host';
import { modelHashOf } from '../../../src/swarm/records';
import { serveSpan } from '../../../src/swarm/serve';
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
    const d = discovery;
    const serving = await serveSpan({
      dev, file, config, modelHash, peer, discovery: d, layers: { start: a.start, end: a.end }, maxContext: a.maxContext,
      host: a.host, link: a.link,
    });
    stopCurrent = () => {
      serving.stop();
      d.stop();
      peer.destroy();
      dev.device.destroy();
    };
    return { peerId: peer.id, modelHash, span: serving.span, adapter: dev.adapterName };
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
