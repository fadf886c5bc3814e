// Hosts that lie, for tests of checked hops (src/swarm/witness.ts). A lying host serves its span through the real
// StageHost and GpuStage (hello, sessions, step order, frames: all well formed) but changes what its layers return:
//   (a) 'noise': every answer off by 10 % of its row's largest magnitude, finite;
//   (b) 'scale': one layer's output times a factor (1.05), the span's later layers run on it;
//   (c) 'after': another lie, only from a session's forward `step` on (honest before: trusted first);
//   (d) 'unchecked': another lie, only on what it guesses no one checks: never on a session's first forward (always
//       checked) and never on forwards of several positions (a prefill, or a witness or replay catching up), only on
//       single decode steps after the first;
//   (e) a file whose header is the honest file's (same model hash) but one layer's weights differ: tamperedCopy, served
//       by an otherwise honest host.
// Tests put it on the route by starting it before any honest host of its span; the honest ones join once the route
// is open. `delayMs` slows every answer (a route that stays on it long enough for them to join). Built here (not through serve.ts) so no flag of the real `flock host` can make a
// host lie. Not a test by itself.

import { copyFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { readConfig, type ModelConfig } from '../../src/model/config';
import type { GgufFile } from '../../src/model/gguf';
import { GgmlType } from '../../src/model/quant';
import type { FlockDevice } from '../../src/gpu/device';
import { GpuStage, type StageSession } from '../../src/gpu/stage';
import { Identity } from '../../src/swarm/identity';
import { PROTOCOL_VERSION, type Span } from '../../src/swarm/protocol';
import { MAX_CLAIMED_FREE_KV, modelHashOf } from '../../src/swarm/records';
import { StageHost, type HostStage } from '../../src/swarm/stage-host';
import { SwarmNet } from '../../src/swarm/swarm-net';
import type { SignalConfig } from '../../src/swarm/transport';
import type { LinkOptions } from '../../src/swarm/transport';
import type { SwarmConfig } from '../../src/swarm/swarm-config';

export type Lie =
  | { kind: 'noise' }
  | { kind: 'scale'; layer: number; factor: number }
  | { kind: 'after'; step: number; lie: Lie }
  | { kind: 'unchecked'; lie: Lie }
  | { kind: 'none' };

/**
 * A GpuStage for [start, end) whose forward lies as `lie` says; 'scale' runs the span as two stages around the layer
 * (a session over part of the span runs the parts of it each stage holds; one that leaves the layer out is honest).
 */
class LyingStage implements HostStage {
  readonly start: number;
  readonly end: number;
  readonly cfg: ModelConfig;
  readonly maxBatch: number;
  readonly maxContext: number;
  readonly kvBytesPerPosition: number;
  /** forwards that returned a lie */
  lies = 0;
  /** per session handed out (its part on `first`, or on `rest` when it starts past `first`): its part on `rest` */
  private readonly after = new Map<StageSession, StageSession>();
  /** sessions that run on `rest` only */
  private readonly restOnly = new Set<StageSession>();
  private readonly forwards = new Map<StageSession, number>();

  constructor(
    private readonly first: GpuStage,
    /** the span's layers after the scaled one, when 'scale' splits it */
    private readonly rest: GpuStage | undefined,
    private readonly lie: Lie,
    private readonly delayMs: number,
  ) {
    this.start = first.start;
    this.end = rest?.end ?? first.end;
    this.cfg = first.cfg;
    this.maxBatch = first.maxBatch;
    this.maxContext = first.maxContext;
    this.kvBytesPerPosition = first.kvBytesPerPosition + (rest?.kvBytesPerPosition ?? 0);
  }

  static async load(dev: FlockDevice, file: GgufFile, span: Span, lie: Lie, maxContext: number, delayMs = 0): Promise<LyingStage> {
    const cfg = readConfig(file);
    const scale = innermost(lie);
    const cut = scale.kind === 'scale' ? scale.layer + 1 : span.end;
    const first = await GpuStage.load(dev, file, cfg, span.start, cut, { maxContext });
    const rest = cut < span.end ? await GpuStage.load(dev, file, cfg, cut, span.end, { maxContext }) : undefined;
    return new LyingStage(first, rest, lie, delayMs);
  }

  holds(span: Span): boolean {
    return Number.isInteger(span.start) && Number.isInteger(span.end) && span.start >= this.start && span.end <= this.end && span.start < span.end;
  }

  kvBytesPerPositionOf(span: Span): number {
    return 2 * (span.end - span.start) * this.cfg.nKvHeads * this.cfg.headDim * 4;
  }

  createSession(maxPos?: number, span: Span = { start: this.start, end: this.end }): StageSession {
    const cut = this.first.end;
    if (span.start >= cut) {
      const s = this.rest!.createSession(maxPos, span);
      this.restOnly.add(s);
      this.forwards.set(s, 0);
      return s;
    }
    const s = this.first.createSession(maxPos, { start: span.start, end: Math.min(span.end, cut) });
    if (this.rest && span.end > cut) this.after.set(s, this.rest.createSession(maxPos, { start: cut, end: span.end }));
    this.forwards.set(s, 0);
    return s;
  }

  closeSession(s: StageSession): void {
    if (this.restOnly.delete(s)) this.rest!.closeSession(s);
    else this.first.closeSession(s);
    const r = this.after.get(s);
    if (r) this.rest!.closeSession(r);
    this.after.delete(s);
    this.forwards.delete(s);
  }

  truncate(s: StageSession, length: number): void {
    if (this.restOnly.has(s)) this.rest!.truncate(s, length);
    else this.first.truncate(s, length);
    const r = this.after.get(s);
    if (r) this.rest!.truncate(r, length);
  }

  async forward(s: StageSession, hidden: Float32Array): Promise<Float32Array> {
    const step = this.forwards.get(s) ?? 0;
    this.forwards.set(s, step + 1);
    const lying = liesNow(this.lie, step, hidden.length / this.cfg.dim);
    const inner = innermost(this.lie);
    let lied = false;
    let y: Float32Array;
    if (this.restOnly.has(s)) {
      y = await this.rest!.forward(s, hidden); // the scaled layer is not in this session's part
    } else {
      y = await this.first.forward(s, hidden);
      // the session's part on `first` ends with the scaled layer exactly when it runs all of `first`
      if (lying && inner.kind === 'scale' && s.span.end === this.first.end) {
        y = y.map((v) => v * inner.factor);
        lied = true;
      }
      const r = this.after.get(s);
      if (r) y = await this.rest!.forward(r, y);
    }
    if (lying && inner.kind === 'noise') {
      y = noisy(y, this.cfg.dim);
      lied = true;
    }
    if (lied) this.lies++;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    return y;
  }

  destroy(): void {
    this.first.destroy();
    this.rest?.destroy();
  }
}

function innermost(l: Lie): Lie {
  return l.kind === 'after' || l.kind === 'unchecked' ? innermost(l.lie) : l;
}

/** Whether forward `step` (0 = a session's first) of `nTokens` positions gets the lie. */
function liesNow(l: Lie, step: number, nTokens: number): boolean {
  switch (l.kind) {
    case 'none':
      return false;
    case 'noise':
    case 'scale':
      return true;
    case 'after':
      return step >= l.step && liesNow(l.lie, step, nTokens);
    case 'unchecked':
      return step > 0 && nTokens === 1 && liesNow(l.lie, step, nTokens);
    default: {
      const never: never = l;
      throw new Error(`unknown lie ${JSON.stringify(never)}`);
    }
  }
}

/** Every value moved by up to 10 % of its row's largest magnitude, by a fixed pattern: wrong, finite, plausible. */
function noisy(y: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(y.length);
  for (let r = 0; r < y.length / dim; r++) {
    let mag = 0;
    for (let j = 0; j < dim; j++) mag = Math.max(mag, Math.abs(y[r * dim + j]));
    for (let j = 0; j < dim; j++) out[r * dim + j] = y[r * dim + j] + 0.1 * mag * Math.sin(1 + 7 * j);
  }
  return out;
}

export interface LyingHost {
  id: string;
  host: StageHost;
  /** forwards it answered with a lie so far */
  lies(): number;
  stop(): void;
}

/** Where a host joins: the tests' Swarm (harness.ts) is one, a benchmark's own swarm another. */
export interface SwarmPlace {
  dev: FlockDevice;
  /** the model's header (a lying host serves this file unless given another) */
  file: GgufFile;
  signal: SignalConfig;
  config: SwarmConfig;
  link: Partial<LinkOptions>;
}

/** A host in `swarm` serving `span` of `file` (default: the swarm's own), lying as `lie` says. */
export async function startLyingHost(swarm: SwarmPlace, span: Span, lie: Lie, o: { file?: GgufFile; delayMs?: number; announceMs?: number } = {}): Promise<LyingHost> {
  const file = o.file ?? swarm.file;
  const modelHash = await modelHashOf(file);
  const identity = await Identity.generate({ powBits: swarm.config.powBits });
  // announced every 300 ms, as the tests' hosts are (harness.ts ANNOUNCE_MS)
  const net = await SwarmNet.join(swarm.signal, swarm.config, identity, { link: swarm.link, announceMs: o.announceMs ?? 300 });
  const stage = await LyingStage.load(swarm.dev, file, span, lie, 256, o.delayMs);
  // compile the decode and prefill pipelines before anyone is routed here (as serve.ts does)
  const warm = stage.createSession(8);
  await stage.forward(warm, new Float32Array(5 * stage.cfg.dim));
  await stage.forward(warm, new Float32Array(stage.cfg.dim));
  stage.closeSession(warm);
  stage.lies = 0;
  const d = net.discovery;
  const host = new StageHost(stage, { peerId: net.peer.id, modelHash, link: swarm.link, auth: d.auth, banMs: 60_000 });
  d.opts.self = () => ({ modelHash, span, throughput: 0, freeKv: Math.min(host.freeKvTokens, MAX_CLAIMED_FREE_KV), protocolVersion: PROTOCOL_VERSION });
  net.peer.on('connection', (conn) => {
    if (conn.label === 'flock') void host.accept(conn);
    else if (conn.label === 'flock-rv') d.answer(conn);
    else conn.once('open', () => conn.close());
  });
  await d.round();
  return {
    id: net.id,
    host,
    lies: () => stage.lies,
    stop: () => {
      host.stop();
      net.stop();
      stage.destroy();
    },
  };
}

/**
 * A copy of `path` at `to` whose header is byte for byte the original's (so its model hash is too) and whose tensor
 * `name` (F32) has every weight times `factor`: a host serving it runs other weights under the same name.
 */
export function tamperedCopy(path: string, to: string, file: GgufFile, name: string, factor: number): void {
  const t = file.tensors.get(name);
  if (!t || t.type !== GgmlType.F32) throw new Error(`${name}: an F32 tensor of the file is needed`);
  copyFileSync(path, to);
  const fd = openSync(to, 'r+');
  try {
    const bytes = Buffer.alloc(t.nElems * 4);
    readSync(fd, bytes, 0, bytes.length, t.offset);
    const w = new Float32Array(bytes.buffer, bytes.byteOffset, t.nElems);
    for (let i = 0; i < w.length; i++) w[i] *= factor;
    writeSync(fd, bytes, 0, bytes.length, t.offset);
  } finally {
    closeSync(fd);
  }
}
