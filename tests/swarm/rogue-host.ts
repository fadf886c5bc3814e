// Hostile hosts for tests. Each announces the whole model like an honest host (a record claiming to be very fast, so
// routing picks it first even beside honest hosts; hello; `opened`), then misbehaves on forwards:
// - 'oversize': answers the first forward with a result claiming far more tokens than the model's batch (4,096 x dim,
//   1 MiB for stories260K): well formed, within the protocol's generous DEFAULT_LIMITS, larger than any honest answer,
//   one 64 KiB frame every `frameEveryMs`. A client that checks frames against the model's limits hangs up after the
//   first; one that does not would take all seventeen into its reassembler.
// - 'unrequested': answers each forward with well-shaped results for the steps after it, which nobody asked for, one
//   every `frameEveryMs`: a client that only matched answers to requests would drop them forever while they cost it.
// - 'silent': opens sessions, keeps its link alive (heartbeats), never answers a forward: a client can only give up
//   on it by its own deadlines, and must still stop when asked.
// It counts the frames it got out and resolves `cutOff` when a client hung up after one. Not a test by itself.

import { readConfig } from '../../src/model/config';
import type { GgufFile } from '../../src/model/gguf';
import { DEFAULT_LIMITS, encodeTensor, PROTOCOL_VERSION } from '../../src/swarm/protocol';
import { modelHashOf } from '../../src/swarm/records';
import { Identity } from '../../src/swarm/identity';
import type { SwarmConfig } from '../../src/swarm/swarm-config';
import { SwarmNet } from '../../src/swarm/swarm-net';
import { PeerLink, type LinkOptions, type SignalConfig } from '../../src/swarm/transport';

export type RogueBehaviour = 'oversize' | 'unrequested' | 'silent';

export interface RogueHost {
  id: string;
  /** frames of misbehaviour sent before the client closed the link */
  framesSent(): number;
  /** frames in the oversized result ('oversize') */
  readonly framesTotal: number;
  /** forwards received */
  forwards(): number;
  /** performance.now() when the first forward arrived (NaN before) */
  firstForwardAt(): number;
  /** resolves once a client hung up on the misbehaviour */
  readonly cutOff: Promise<void>;
  stop(): void;
}

export async function startRogueHost(o: {
  file: GgufFile; signal: SignalConfig; swarm: SwarmConfig; link: Partial<LinkOptions>; announceMs: number;
  behaviour: RogueBehaviour; frameEveryMs?: number;
}): Promise<RogueHost> {
  const config = readConfig(o.file);
  const modelHash = await modelHashOf(o.file);
  const span = { start: 0, end: config.nLayers };
  const identity = await Identity.generate({ powBits: o.swarm.powBits });
  const net = await SwarmNet.join(o.signal, o.swarm, identity, { link: o.link, announceMs: o.announceMs });
  net.discovery.opts.self = () => ({ modelHash, span, throughput: 100_000, freeKv: 1 << 20, protocolVersion: PROTOCOL_VERSION });
  await net.discovery.round();
  const nTokens = 4096;
  const oversize = (session: number, step: number): ArrayBuffer[] =>
    encodeTensor({ kind: 'result', session, step, pos0: 0, nTokens, dim: config.dim, dtype: 'f32', payload: new Float32Array(nTokens * config.dim).fill(0.5) }, 64 * 1024, DEFAULT_LIMITS);
  const framesTotal = oversize(1, 0).length;
  let sent = 0;
  let forwards = 0;
  let firstAt = Number.NaN;
  let cut!: () => void;
  const cutOff = new Promise<void>((r) => (cut = r));
  const every = o.frameEveryMs ?? 150;
  net.peer.on('connection', (conn) => {
    if (conn.label !== 'flock') return;
    void PeerLink.open(conn, { ...o.link, limits: DEFAULT_LIMITS }, net.discovery.auth).then((link) => {
      void link.send({ kind: 'hello', protocolVersion: PROTOCOL_VERSION, peerId: net.id, modelHash, span, maxSessions: 64, freeKvTokens: 1 << 20 });
      link.onMessage((m) => {
        if (m.kind === 'open') void link.send({ kind: 'opened', session: m.session });
        if (m.kind !== 'forward') return;
        if (forwards++ === 0) firstAt = performance.now();
        if (o.behaviour === 'silent') return;
        void (async () => {
          const frames = o.behaviour === 'oversize'
            ? oversize(m.session, m.step)
            : Array.from({ length: 32 }, (_, i) => encodeTensor(
              { kind: 'result', session: m.session, step: m.step + 1 + i, pos0: m.pos0 + m.nTokens + i, nTokens: 1, dim: config.dim, dtype: 'f32', payload: new Float32Array(config.dim).fill(0.5) },
              64 * 1024, DEFAULT_LIMITS)[0]);
          for (const f of frames) {
            if (link.isDown) break;
            await link.sendFrames([f]).catch(() => {});
            if (!link.isDown) sent++;
            await new Promise((r) => setTimeout(r, every));
          }
        })();
      });
      void link.closed.then(() => {
        if (sent > 0) cut();
      });
    }, () => {});
  });
  return { id: net.id, framesSent: () => sent, framesTotal, forwards: () => forwards, firstForwardAt: () => firstAt, cutOff, stop: () => net.stop() };
}
