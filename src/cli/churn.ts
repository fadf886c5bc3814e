// Churn for benchmarks and tests: hosts as separate `flock host` processes (each its own Dawn device and WebRTC
// stack, as on separate machines), a fixed number per span, and a driver that kills one host in turn every
// killEveryMs (SIGKILL: a crash, no goodbye; or SIGTERM: leaving on purpose) and starts a replacement for its span
// replaceAfterMs later; a host is killed only while another serves its span (a replacement takes seconds to start).
// `npm run bench:swarm -- --churn` (bench-churn.ts) and tests/swarm/churn.test.ts use it.
// Not here: the client, or any assertion.

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FlockError } from '../model/errors';
import type { Span } from '../swarm/protocol';

const FLOCK = fileURLToPath(new URL('../../bin/flock.mjs', import.meta.url));

export interface HostProcess {
  id: string;
  span: Span;
  child: ChildProcess;
  /** performance.now() when it started serving */
  readyAt: number;
}

export interface HostSpawnOptions {
  model: string;
  swarm: string;
  /** ws:// URL of the PeerServer */
  signal: string;
  announceMs?: number;
  maxContext?: number;
  /** the public swarm's proof of work (every participant must agree) */
  powBits?: number;
  /** give up on a host that has not printed its id after this long. 60 s: Dawn and tsx start-up on a busy machine */
  readyTimeoutMs?: number;
}

/** Start `flock host --layers span` and wait for its first line (`flock host ID: layers …`). */
export function spawnHost(o: HostSpawnOptions, span: Span): Promise<HostProcess> {
  const args = [FLOCK, 'host', '--model', o.model, '--swarm', o.swarm, '--signal', o.signal, '--layers', `${span.start}:${span.end}`];
  if (o.announceMs) args.push('--announce-ms', String(o.announceMs));
  if (o.maxContext) args.push('--max-context', String(o.maxContext));
  if (o.powBits !== undefined) args.push('--pow-bits', String(o.powBits));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  return new Promise<HostProcess>((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new FlockError(`flock host ${span.start}:${span.end} did not start within ${o.readyTimeoutMs ?? 60_000} ms: ${err}`));
    }, o.readyTimeoutMs ?? 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString('utf8');
      const m = /flock host (\S+): layers/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ id: m[1], span, child, readyAt: performance.now() });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new FlockError(`flock host ${span.start}:${span.end} exited (${code}) before it served: ${err}`));
    });
  });
}

export interface ChurnOptions extends HostSpawnOptions {
  spans: Span[];
  /** hosts per span */
  perSpan: number;
  /** one host is stopped this often, in turn (0: never) */
  killEveryMs: number;
  /** its replacement starts this long after */
  replaceAfterMs: number;
  /** SIGKILL: the process dies without a word; SIGTERM: it leaves on purpose */
  how: 'SIGKILL' | 'SIGTERM';
}

export interface ChurnEvent {
  /** ms since the churn started */
  at: number;
  kind: 'kill' | 'start';
  id: string;
  span: Span;
}

export class Churn {
  readonly hosts: HostProcess[] = [];
  readonly events: ChurnEvent[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly pending = new Set<Promise<unknown>>();
  private t0 = performance.now();
  private stopped = false;

  constructor(readonly o: ChurnOptions) {}

  /** Start perSpan hosts for every span, and wait until all serve. */
  async start(): Promise<void> {
    const started = await Promise.all(this.o.spans.flatMap((s) => Array.from({ length: this.o.perSpan }, () => spawnHost(this.o, s))));
    this.hosts.push(...started);
    this.t0 = performance.now();
  }

  /** Begin killing and replacing hosts. */
  run(): void {
    if (this.o.killEveryMs <= 0) return;
    this.timer = setInterval(() => this.killOne(), this.o.killEveryMs);
  }

  /**
   * Stop the host that has served longest among those whose span has another serving host (so every span keeps a
   * live, ready host, as the churn we measure assumes), and start a replacement for its span later. Skips this turn
   * when no span has two.
   */
  killOne(): HostProcess | undefined {
    const covered = (h: HostProcess) => this.hosts.some((o) => o !== h && o.span.start === h.span.start && o.span.end === h.span.end);
    const victim = [...this.hosts].filter(covered).sort((a, b) => a.readyAt - b.readyAt)[0];
    if (!victim || this.stopped) return undefined;
    this.hosts.splice(this.hosts.indexOf(victim), 1);
    victim.child.kill(this.o.how);
    this.events.push({ at: performance.now() - this.t0, kind: 'kill', id: victim.id, span: victim.span });
    const replace = new Promise((r) => setTimeout(r, this.o.replaceAfterMs))
      .then(() => (this.stopped ? undefined : spawnHost(this.o, victim.span)))
      .then((h) => {
        if (!h) return;
        if (this.stopped) {
          h.child.kill('SIGKILL');
          return;
        }
        this.hosts.push(h);
        this.events.push({ at: performance.now() - this.t0, kind: 'start', id: h.id, span: h.span });
      })
      .catch(() => {}); // a replacement that failed to start is one host fewer; the next kill goes on
    this.pending.add(replace);
    void replace.finally(() => this.pending.delete(replace));
    return victim;
  }

  /** Stop churning and every host (SIGKILL), waiting for replacements in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await Promise.all(this.pending);
    for (const h of this.hosts) h.child.kill('SIGKILL');
    await Promise.all(this.hosts.map((h) => new Promise((r) => (h.child.exitCode !== null ? r(null) : h.child.once('exit', r)))));
    this.hosts.length = 0;
  }
}
