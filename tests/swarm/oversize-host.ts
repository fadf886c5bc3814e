// A hostile host for tests: it announces the whole model like an honest host (hello, `opened`), then answers the
// first forward with a result claiming far more tokens than the model's batch (4,096 x dim, 1 MiB for stories260K):
// well formed, within the protocol's generous DEFAULT_LIMITS, but larger than any honest answer. It sends that
// result one 64 KiB frame every `frameEveryMs`, and counts how many frames it got out before the client hung up. A
// client that checks frames against the model's limits hangs up after the first; one that does not would take all
// seventeen into its reassembler. Not a test by itself.

import { readConfig } from '../../src/model/config';
import type { GgufFile } from '../../src/model/gguf';
import { DEFAULT_LIMITS, encodeTensor, PROTOCOL_VERSION } from '../../src/swarm/protocol';
import { modelHashOf } from '../../src/swarm/records';
import { Identity } from '../../src/swarm/identity';
import type { SwarmConfig } from '../../src/swarm/swarm-config';
import { SwarmNet } from '../../src/swarm/swarm-net';
import { PeerLink, type LinkOptions, type SignalConfig } from '../../src/swarm/transport';

export interface OversizeHost {
  id: string;
  /** frames of the oversized result sent before the client closed the link */
  framesSent(): number;
  /** frames in the oversized result */
  readonly framesTotal: number;
  /** resolves once a client hung up on the oversized result */
  readonly cutOff: Promise<void>;
  stop(): void;
}

export async function startOversizeHost(o: {
  file: GgufFile; signal: SignalConfig; swarm: SwarmConfig; link: Partial<LinkOptions>; announceMs: number; frameEveryMs?: number;
}): Promise<OversizeHost> {
  const config = readConfig(o.file);
  const modelHash = await modelHashOf(o.file);
  const span = { start: 0, end: config.nLayers };
  const identity = await Identity.generate({ powBits: o.swarm.powBits });
  const net = await SwarmNet.join(o.signal, o.swarm, identity, { link: o.link, announceMs: o.announceMs });
  // claims to be fast, so routing would pick it first even beside honest hosts
  net.discovery.opts.self = () => ({ modelHash, span, throughput: 100_000, freeKv: 1 << 20, protocolVersion: PROTOCOL_VERSION });
  await net.discovery.round();
  const nTokens = 4096;
  const frames = (session: number, step: number): ArrayBuffer[] =>
    encodeTensor({ kind: 'result', session, step, pos0: 0, nTokens, dim: config.dim, dtype: 'f32', payload: new Float32Array(nTokens * config.dim).fill(0.5) }, 64 * 1024, DEFAULT_LIMITS);
  const framesTotal = frames(1, 0).length;
  let sent = 0;
  let cut!: () => void;
  const cutOff = new Promise<void>((r) => (cut = r));
  net.peer.on('connection', (conn) => {
    if (conn.label !== 'flock') return;
    void PeerLink.open(conn, { ...o.link, limits: DEFAULT_LIMITS }, net.discovery.auth).then((link) => {
      void link.send({ kind: 'hello', protocolVersion: PROTOCOL_VERSION, peerId: net.id, modelHash, span, maxSessions: 64, freeKvTokens: 1 << 20 });
      link.onMessage((m) => {
        if (m.kind === 'open') void link.send({ kind: 'opened', session: m.session });
        if (m.kind !== 'forward') return;
        void (async () => {
          for (const f of frames(m.session, m.step)) {
            if (link.isDown) break;
            await link.sendFrames([f]).catch(() => {});
            if (!link.isDown) sent++;
            await new Promise((r) => setTimeout(r, o.frameEveryMs ?? 150));
          }
        })();
      });
      void link.closed.then(() => {
        if (sent > 0) cut();
      });
    }, () => {});
  });
  return { id: net.id, framesSent: () => sent, framesTotal, cutOff, stop: () => net.stop() };
}
