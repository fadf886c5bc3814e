// The page's half of a swarm link: the engine worker has no RTCPeerConnection, so the page dials hosts (Discovery on
// the page's PeerJS peer) and relays each PeerLink to the worker over a MessagePort: decoded messages and the link's
// end go to the worker; frames the worker encoded go to the data channel, in order, with the PeerLink's back-pressure.
// Not here: the worker's half (src/worker/port-link.ts), discovery itself (src/swarm/discovery.ts).

import { transfer } from 'comlink';
import type { PeerLink } from '../swarm/transport';
import type { PortToPage, PortToWorker, RelayedLink } from '../worker/protocol';

function parse(x: unknown): PortToPage | null {
  if (typeof x !== 'object' || x === null || !('t' in x)) return null;
  switch (x.t) {
    case 'frames':
      return 'frames' in x && Array.isArray(x.frames) && x.frames.every((f) => f instanceof ArrayBuffer) ? { t: 'frames', frames: x.frames } : null;
    case 'close':
      return { t: 'close', reason: 'closed', detail: 'detail' in x && typeof x.detail === 'string' ? x.detail : 'closed by the engine' };
    default:
      return null;
  }
}

/** Relay `link` over a fresh MessageChannel; returns the worker's end, marked for transfer through comlink. */
export function relayLink(link: PeerLink): RelayedLink {
  const { port1: page, port2: worker } = new MessageChannel();
  const post = (m: PortToWorker): void => page.postMessage(m);
  if (link.hello) post({ t: 'msg', msg: link.hello });
  link.onMessage = (msg) => post({ t: 'msg', msg });
  // a host frame that breaks the protocol: hang up (the worker sees the link go down and re-routes)
  link.onViolation = (e) => link.close('protocol', e.message);
  void link.closed.then((e) => {
    post({ t: 'down', reason: e.reason, detail: e.message });
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
  const relayed: RelayedLink = { port: worker, peer: link.peer, frameBytes: link.frameBytes, limits: link.opts.limits };
  return transfer(relayed, [worker]);
}
