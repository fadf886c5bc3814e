// A link to a swarm host as the engine worker sees it: Web Workers have no RTCPeerConnection, so the page holds the
// real PeerLink (src/ui/swarm-relay.ts) and relays it over a MessagePort. The worker encodes frames itself (sizes and
// limits come with the port), the page hands them to the data channel in order and posts back every decoded message
// and the link's end. The client session (swarm/client.ts) cannot tell this from a PeerLink.
// Not here: heartbeats, back-pressure and frame validation (the page's PeerLink does those).

import { LinkDownError, type LinkDownReason } from '../swarm/errors';
import { encode, type HelloMsg, type Limits, type Msg } from '../swarm/protocol';
import type { HopLink } from '../swarm/client';
import type { PortToPage, PortToWorker, RelayedLink } from './protocol';

const REASONS: readonly LinkDownReason[] = ['closed', 'heartbeat', 'send-timeout', 'protocol', 'flood', 'open-timeout', 'banned'];

/** Check a message from the page's side of a port (no casts on what crossed a thread boundary). */
export function parsePortMessage(x: unknown): PortToWorker | null {
  if (typeof x !== 'object' || x === null || !('t' in x)) return null;
  switch (x.t) {
    case 'msg':
      return 'msg' in x && typeof x.msg === 'object' && x.msg !== null && 'kind' in x.msg && typeof x.msg.kind === 'string'
        ? { t: 'msg', msg: x.msg as Msg } // decoded and validated by the page's PeerLink (protocol.ts decodeFrame)
        : null;
    case 'down': {
      const reason = 'reason' in x ? REASONS.find((r) => r === x.reason) : undefined;
      const detail = 'detail' in x && typeof x.detail === 'string' ? x.detail : '';
      return reason ? { t: 'down', reason, detail } : null;
    }
    default:
      return null;
  }
}

export class PortLink implements HopLink {
  readonly peer: string;
  readonly frameBytes: number;
  readonly opts: { limits: Limits };
  readonly closed: Promise<LinkDownError>;
  onMessage: (msg: Msg) => void = () => {};
  onViolation: HopLink['onViolation'] = () => {};
  private hello: HelloMsg | null = null;
  private down: LinkDownError | null = null;
  private resolveClosed!: (e: LinkDownError) => void;

  constructor(private readonly relayed: RelayedLink) {
    this.peer = relayed.peer;
    this.frameBytes = relayed.frameBytes;
    this.opts = { limits: relayed.limits };
    this.closed = new Promise((r) => (this.resolveClosed = r));
    relayed.port.onmessage = (ev: MessageEvent<unknown>) => this.receive(ev.data);
    relayed.port.start();
  }

  get isDown(): boolean {
    return this.down !== null;
  }

  send(msg: Msg): Promise<void> {
    return this.sendFrames(encode(msg, this.frameBytes, this.opts.limits));
  }

  /** Hand frames to the page (transferred, not copied). A link that is down refuses, as a PeerLink does. */
  sendFrames(frames: ArrayBuffer[]): Promise<void> {
    if (this.down) return Promise.reject(this.down);
    const out: PortToPage = { t: 'frames', frames };
    this.relayed.port.postMessage(out, frames);
    return Promise.resolve();
  }

  async waitHello(timeoutMs: number): Promise<HelloMsg | null> {
    const t0 = performance.now();
    while (!this.hello && !this.down && performance.now() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 5));
    return this.hello;
  }

  close(reason: LinkDownReason = 'closed', detail = 'closed by us'): void {
    if (this.down) return;
    const out: PortToPage = { t: 'close', reason, detail };
    this.relayed.port.postMessage(out);
    this.die(reason, detail);
  }

  private die(reason: LinkDownReason, detail: string): void {
    if (this.down) return;
    this.down = new LinkDownError(reason, this.peer, `link to ${this.peer}: ${detail}`);
    this.relayed.port.close();
    this.resolveClosed(this.down);
  }

  private receive(data: unknown): void {
    if (this.down) return;
    const m = parsePortMessage(data);
    if (!m) return this.die('protocol', 'the page relayed a malformed message');
    switch (m.t) {
      case 'msg':
        if (m.msg.kind === 'hello') this.hello = m.msg;
        this.onMessage(m.msg);
        return;
      case 'down':
        return this.die(m.reason, m.detail);
      default: {
        const never: never = m;
        void never;
      }
    }
  }
}
