// The client's side of a link to a host: requests waiting for their answer (a session's `opened`, a step's `result`),
// matched by session and step, failed by the host's `error`, by a deadline, or by the link going down. An answer to
// nothing asked (not waited for, nor given up on) cuts the link: a host streaming results nobody requested would
// otherwise cost the client bandwidth and decoding for as long as it liked. One per link, shared by every session on
// it. Not here: what the answers mean (swarm-model.ts).

import { HopTimeoutError, LinkDownError, RemoteError } from './errors';
import type { Link } from './link';
import type { Msg } from './protocol';

/** Per-link bookkeeping of requests waiting for an answer. */
interface Pending {
  resolve: (m: Msg) => void;
  reject: (e: Error) => void;
}

/** Requests given up on whose late answers are still forgiven (the latest ones; older late answers are cut off). */
const FORGIVEN = 64;

export class LinkRequests {
  readonly waiting = new Map<string, Pending>();
  /** keys of requests given up on (timed out), oldest first: one late answer each is dropped quietly */
  private readonly gaveUp = new Set<string>();
  constructor(readonly link: Link) {
    link.onMessage((m) => this.dispatch(m));
    // A host frame we cannot decode means the host is broken: treat like a dead link.
    link.onViolation((e) => link.close('protocol', e.message));
    void link.closed.then((e) => {
      for (const p of this.waiting.values()) p.reject(e);
      this.waiting.clear();
    });
  }

  private dispatch(m: Msg): void {
    switch (m.kind) {
      case 'opened':
        return this.settle(`open:${m.session}`, m);
      case 'result':
        return this.settle(`fwd:${m.session}:${m.step}`, m);
      case 'error': {
        const err = new RemoteError(m.code, this.link.peer, m.message);
        if (m.session === 0) {
          for (const p of this.waiting.values()) p.reject(err);
          this.waiting.clear();
          // a host that says it is leaving is gone for every session on the link, waiting or not
          if (m.code === 'shutting-down') this.link.close('leaving', `${this.link.peer} is leaving: ${m.message}`);
          return;
        }
        for (const key of [`open:${m.session}`, `fwd:${m.session}:${m.step}`]) {
          const p = this.waiting.get(key);
          if (p) {
            this.waiting.delete(key);
            p.reject(err);
          }
        }
        return;
      }
      case 'hello':
      case 'close':
      case 'ping':
      case 'pong':
        return; // hello: the directory already knows the record; close/ping/pong: nothing to do
      case 'open':
      case 'forward':
        return this.link.close('protocol', `a host sent '${m.kind}'`);
      default: {
        const never: never = m;
        void never;
      }
    }
  }

  private settle(key: string, m: Msg): void {
    const p = this.waiting.get(key);
    if (p) {
      this.waiting.delete(key);
      p.resolve(m);
    } else if (this.gaveUp.has(key)) {
      this.gaveUp.delete(key); // a late answer to a request we gave up on
    } else {
      this.link.close('protocol', `an unrequested '${m.kind}' (${key})`);
    }
  }

  /** Stop waiting for `key`: its answer, should it still come, is dropped quietly. */
  forget(key: string): void {
    const p = this.waiting.get(key);
    if (!p) return;
    this.waiting.delete(key);
    this.gaveUp.add(key);
    if (this.gaveUp.size > FORGIVEN) this.gaveUp.delete(this.gaveUp.values().next().value!);
  }

  /** Wait for the answer `key`, failing after timeoutMs. */
  wait(key: string, timeoutMs: number): Promise<Msg> {
    if (this.link.isDown) return Promise.reject(new LinkDownError('closed', this.link.peer, 'link is down'));
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.forget(key);
        reject(new HopTimeoutError(`${this.link.peer} did not answer ${key} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(key, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }
}

const requestsOf = new WeakMap<Link, LinkRequests>();
/** The one LinkRequests of `link` (created on first use; every session on the link shares it). */
export function requests(link: Link): LinkRequests {
  let r = requestsOf.get(link);
  if (!r) requestsOf.set(link, (r = new LinkRequests(link)));
  return r;
}
