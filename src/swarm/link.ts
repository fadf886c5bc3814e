// A link to one peer as the swarm code sees it: a stream of validated protocol messages, frames to send under the
// link's size limits, and an end. Two things implement it: PeerLink (a WebRTC data channel on this thread,
// transport.ts) and PortLink (a PeerLink on the page, relayed to the engine worker over a MessagePort,
// src/worker/port-link.ts). Messages go to every listener, in the order they were added; a listener is removed by
// calling what `onMessage` returned, never replaced by a later one. Not here: how frames are carried.

import type { LinkDownError, LinkDownReason, ProtocolError, ReassemblyError } from './errors';
import type { HelloMsg, Limits, Msg } from './protocol';

export interface Link {
  /** the peer's id */
  readonly peer: string;
  readonly isDown: boolean;
  /** resolves (never rejects) with the reason once the link is down, for whatever cause */
  readonly closed: Promise<LinkDownError>;
  /** ms since anything (a frame, a ping, a pong) was last heard from the peer */
  readonly silentMs: number;
  /** largest frame this link sends */
  readonly frameBytes: number;
  /** what this link accepts from the peer and encodes for it (the same limits both ways) */
  readonly limits: Limits;
  /** encode and send a message; resolves once every frame is handed on */
  send(msg: Msg): Promise<void>;
  /** send frames already encoded, in order */
  sendFrames(frames: ArrayBuffer[]): Promise<void>;
  /** the peer's hello, waiting up to timeoutMs (null when none came) */
  waitHello(timeoutMs: number): Promise<HelloMsg | null>;
  /** hang up (idempotent) */
  close(reason?: LinkDownReason, detail?: string): void;
  /** every message from the peer but pings and pongs; returns the function that stops listening */
  onMessage(listener: (msg: Msg) => void): () => void;
  /** every frame of the peer's that broke the protocol; returns the function that stops listening */
  onViolation(listener: (e: ProtocolError | ReassemblyError) => void): () => void;
}

/** A list of listeners: each added one is called, in order, until it is removed. A throwing listener stops none. */
export class Listeners<T> {
  private readonly list = new Set<(x: T) => void>();

  add(fn: (x: T) => void): () => void {
    // wrapped so the same function added twice is two listeners, each removed by its own handle
    const entry = (x: T): void => fn(x);
    this.list.add(entry);
    return () => void this.list.delete(entry);
  }

  emit(x: T): void {
    for (const fn of [...this.list]) {
      try {
        fn(x);
      } catch (e) {
        queueMicrotask(() => {
          throw e; // reported as uncaught, like an event listener's error, without stopping the other listeners
        });
      }
    }
  }

  clear(): void {
    this.list.clear();
  }
}

/** A peer's hello: kept when it arrives (it may come before anyone asks) and waited for by whoever needs it. */
export class HelloSlot {
  value: HelloMsg | null = null;
  private readonly waiters = new Set<() => void>();

  set(hello: HelloMsg): void {
    this.value = hello;
    for (const w of [...this.waiters]) w();
  }

  /** The hello, waiting up to timeoutMs or until `closed` settles; null when none came. */
  async wait(timeoutMs: number, closed: Promise<unknown>): Promise<HelloMsg | null> {
    if (this.value) return this.value;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.add(done);
      void closed.then(done);
    });
    return this.value;
  }
}
