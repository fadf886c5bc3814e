// A test page that serves a span of a model's layers to a swarm from a browser tab, without the app around it: the
// page's WebGPU device, the model read from a URL with Range requests, the tab's own RTCPeerConnection and WebSocket.
// It joins the swarm (src/swarm/swarm-net.ts) and serves fixed layers with src/swarm/serve.ts, as `flock host --layers`
// does, minus the Node parts.
// Tests call `window.flockSwarmTest.host(...)` and `window.flockSwarmTest.stop()`.

import { requestFlockDevice } from '../../../src/gpu/device';
import { openGguf } from '../../../src/model/gguf';
import { HttpSource } from '../../../src/model/source';
import type { HostOptions } from '../../../src/swarm/stage-host';
import { serveSpan } from '../../../src/swarm/serve';
import { Identity } from '../../../src/swarm/identity';
import { publicSwarm } from '../../../src/swarm/swarm-config';
import { SwarmNet } from '../../../src/swarm/swarm-net';
import { parseSignalUrl, type LinkOptions } from '../../../src/swarm/transport';

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
  host?: Partial<Omit<HostOptions, 'peerId' | 'modelHash' | 'auth'>>;
  /** the public swarm's proof of work (tests/swarm/harness.ts TEST_POW_BITS) */
  powBits: number;
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
  let net: SwarmNet | undefined;
  try {
    const file = await openGguf(new HttpSource(a.modelUrl));
    const swarm = publicSwarm(a.swarm, a.powBits);
    net = await SwarmNet.join(parseSignalUrl(a.signal), swarm, await Identity.generate({ powBits: swarm.powBits }), { announceMs: a.announceMs, link: a.link });
    const n = net;
    const serving = await serveSpan({
      dev, file, net: n, layers: { start: a.start, end: a.end }, maxContext: a.maxContext, host: a.host, link: a.link,
    });
    stopCurrent = () => {
      serving.stop();
      n.stop();
      dev.device.destroy();
    };
    return { peerId: n.id, modelHash: serving.modelHash, span: serving.span, adapter: dev.adapterName };
  } catch (e) {
    net?.stop();
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
