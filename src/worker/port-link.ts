// A link to a swarm host as the engine worker sees it: Web Workers have no RTCPeerConnection, so the page holds the
// real PeerLink (link-relay.ts) and relays it over a MessagePort. Frames cross the port by transfer, both ways: the
// worker encodes what it sends, and decodes what the host sent (message-decoder.ts) under the same limits it
// encodes with and the page checked them against. The client session (swarm/swarm-model.ts) cannot tell this from
// a PeerLink. Not here: heartbeats, rate limits and back-pressure (the page's PeerLink does those).

import { LINK_DOWN_REASONS, LinkDownError, ProtocolError, ReassemblyError, type LinkDownReason } from '../swarm/errors';
import { HelloSlot, Listeners, type Link } from '../swarm/link';
import { MessageDecoder } from '../swarm/message-decoder';
import { encode, type HelloMsg, type Limits, type Msg } from '../swarm/protocol';
import { type LinkPort, type PortToPage, type PortToWorker } from './api';

/** Check a message from the page's side of a port (no casts on what crossed a thread boundary). */
export function parsePortMessage(x: unknown): PortToWorker | null {
  if (typeof x !== 'object' || x === null || !('t' in x)) return null;
  switch (x.t) {
    case 'frame':
      return 'frame' in x && x.frame instanceof ArrayBuffer ? { t: 'frame', frame: x.frame } : null;
    case 'alive':
      return 'silentMs' in x && typeof x.silentMs === 'number' && Number.isFinite(x.silentMs) && x.silentMs >= 0 ? { t: 'alive', silentMs: x.silentMs } : null;
    case 'down': {
      const reason = 'reason' in x ? LINK_DOWN_REASONS.find((r) => r === x.reason) : undefined;
      const detail = 'detail' in x && typeof x.detail === 'string' ? x.detail : '';
      return reason ? { t: 'down', reason, detail } : null;
    }
    default:
      return null;
  }
}

export class PortLink implements Link {
  readonly peer: string;
  readonly frameBytes: number;
  readonly closed: Promise<LinkDownError>;
  private readonly decoder: MessageDecoder;
  private readonly messages = new Listeners<Msg>();
  private readonly violations = new Listeners<ProtocolError | ReassemblyError>();
  private readonly helloSlot = new HelloSlot();
  /** when the peer was last heard, by the page's account */
  private heardAt = performance.now();
  private down: LinkDownError | null = null;
  private resolveClosed!: (e: LinkDownError) => void;

  constructor(
    private readonly relayed: LinkPort,
    readonly limits: Limits,
  ) {
    this.peer = relayed.peer;
    this.frameBytes = relayed.frameBytes;
    this.decoder = new MessageDecoder(limits);
    this.closed = new Promise((r) => (this.resolveClosed = r));
    relayed.port.onmessage = (ev: MessageEvent<unknown>) => this.receive(ev.data);
    relayed.port.start();
  }

  get isDown(): boolean {
    return this.down !== null;
  }

  get silentMs(): number {
    return performance.now() - this.heardAt;
  }

  onMessage(listener: (msg: Msg) => void): () => void {
    return this.messages.add(listener);
  }

  onViolation(listener: (e: ProtocolError | ReassemblyError) => void): () => void {
    return this.violations.add(listener);
  }

  send(msg: Msg): Promise<void> {
    return this.sendFrames(encode(msg, this.frameBytes, this.limits));
  }

  /** Hand frames to the page (transferred, not copied). A link that is down refuses, as a PeerLink does. */
  sendFrames(frames: ArrayBuffer[]): Promise<void> {
    if (this.down) return Promise.reject(this.down);
    const out: PortToPage = { t: 'frames', frames };
    this.relayed.port.postMessage(out, frames);
    return Promise.resolve();
  }

  waitHello(timeoutMs: number): Promise<HelloMsg | null> {
    return this.helloSlot.wait(timeoutMs, this.closed);
  }

  close(reason: LinkDownReason = 'closed', detail = 'closed by us'): void {
    if (this.down) return;
    const out: PortToPage = { t: 'close', reason, detail };
    this.relayed.port.postMessage(out);
    this.die(reason, `link to ${this.peer}: ${detail}`);
  }

  /** The link is down; `message` says why (LinkDownError prefixes the reason). */
  private die(reason: LinkDownReason, message: string): void {
    if (this.down) return;
    this.down = new LinkDownError(reason, this.peer, message);
    this.relayed.port.close();
    this.resolveClosed(this.down);
    this.messages.clear();
    this.violations.clear();
  }

  private receive(data: unknown): void {
    if (this.down) return;
    const m = parsePortMessage(data);
    if (!m) return this.die('protocol', `link to ${this.peer}: the page relayed a malformed message`);
    switch (m.t) {
      case 'alive':
        this.heardAt = Math.max(this.heardAt, performance.now() - m.silentMs);
        return;
      case 'frame': {
        this.heardAt = performance.now();
        let msg: Msg | null;
        try {
          msg = this.decoder.push(m.frame);
        } catch (e) {
          if (e instanceof ProtocolError || e instanceof ReassemblyError) return this.violations.emit(e);
          throw e;
        }
        if (!msg) return;
        if (msg.kind === 'hello') this.helloSlot.set(msg);
        return this.messages.emit(msg);
      }
      case 'down':
        return this.die(m.reason, m.detail); // the page's PeerLink worded it already
      default: {
        const never: never = m;
        void never;
      }
    }
  }
}
