// The page's half of a swarm link: the engine worker has no RTCPeerConnection, so the page dials hosts (Discovery on
// the page's PeerJS peer) and relays each PeerLink to the worker over a MessagePort. The PeerLink checks every frame
// against the limits the worker asked for (the model's, protocol.ts modelLimits) and hands it on by transfer; the
// worker decodes it again under the same limits (port-link.ts). Frames the worker encoded go to the data channel in
// order, with the PeerLink's back-pressure. A frame that breaks the limits ends the link here, before the worker
// buffers anything of it. Not here: the worker's half (port-link.ts), discovery itself (src/swarm/discovery.ts).

import { transfer } from 'comlink';
import type { Discovery } from '../swarm/discovery';
import { LINK_DOWN_REASONS } from '../swarm/errors';
import type { Limits } from '../swarm/protocol';
import type { PeerLink } from '../swarm/transport';
import { type LinkPort, type PortToPage, type PortToWorker, type SwarmBridge } from './api';

function parse(x: unknown): PortToPage | null {
  if (typeof x !== 'object' || x === null || !('t' in x)) return null;
  switch (x.t) {
    case 'frames':
      return 'frames' in x && Array.isArray(x.frames) && x.frames.every((f) => f instanceof ArrayBuffer) ? { t: 'frames', frames: x.frames } : null;
    case 'close': {
      const reason = 'reason' in x ? LINK_DOWN_REASONS.find((r) => r === x.reason) : undefined;
      return { t: 'close', reason: reason ?? 'closed', detail: 'detail' in x && typeof x.detail === 'string' ? x.detail : 'closed by the engine' };
    }
    default:
      return null;
  }
}

/** Relay `link` over a fresh MessageChannel; returns the worker's end, marked for transfer through comlink. */
export function relayLink(link: PeerLink): LinkPort {
  const { port1: page, port2: worker } = new MessageChannel();
  const post = (m: PortToWorker, moved: Transferable[] = []): void => page.postMessage(m, moved);
  // a host frame that breaks the protocol: hang up (the worker sees the link go down and re-routes)
  link.onViolation((e) => link.close('protocol', e.message));
  link.relayFrames((frame) => post({ t: 'frame', frame }, [frame]));
  // heartbeats are answered here; tell the worker the peer is still heard (it asks after a host gone quiet)
  const alive = setInterval(() => post({ t: 'alive', silentMs: link.silentMs }), link.opts.heartbeatMs);
  void link.closed.then((e) => {
    clearInterval(alive);
    // the error's message without the reason in front, which the worker's LinkDownError adds again
    const prefix = `${e.reason}: `;
    post({ t: 'down', reason: e.reason, detail: e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message });
    page.close();
  });
  let chain: Promise<void> = Promise.resolve();
  page.onmessage = (ev: MessageEvent<unknown>) => {
    const m = parse(ev.data);
    if (!m) return link.close('protocol', 'the engine sent a malformed relay message');
    if (m.t === 'close') return link.close(m.reason, m.detail);
    chain = chain.then(() => link.sendFrames(m.frames)).catch(() => {}); // a failed send ends the link: 'down' follows
  };
  page.start();
  const relayed: LinkPort = { port: worker, peer: link.peer, frameBytes: link.frameBytes };
  return transfer(relayed, [worker]);
}

/** What the engine worker calls to reach a host: dial (or share) a PeerLink under the worker's limits and relay it. */
export function relayBridge(discovery: Discovery): SwarmBridge {
  return {
    connect: async (peer: string, limits: Limits) => relayLink(await discovery.connect(peer, limits)),
    probe: (peer: string) => discovery.probe(peer),
  };
}
