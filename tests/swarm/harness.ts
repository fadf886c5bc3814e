// A swarm in one process for tests: a real PeerServer on 127.0.0.1 (random port), hosts and clients as separate PeerJS
// peers talking real WebRTC over loopback (node-datachannel), every Stage and Head on the one shared Dawn device.
// Short heartbeats and timeouts so failures are detected in about a second. Not a test by itself.

import { readFile } from 'node:fs/promises';
import { launchHost, type LaunchedHost, type LaunchHostOptions } from '../../src/cli/host';
import { cleanupNodeWebRtc, installNodeWebRtc } from '../../src/cli/node-webrtc';
import { startSignalServer, type SignalServer } from '../../src/cli/signal';
import { launchClient, type LaunchClientOptions, type LaunchedClient } from '../../src/cli/swarm-generate';
import type { FlockDevice } from '../../src/gpu/device';
import { openGguf, type GgufFile } from '../../src/model/gguf';
import { openSource } from '../../src/model/source-file';
import type { SwarmOptions } from '../../src/swarm/swarm-model';
import type { HostOptions } from '../../src/swarm/stage-host';
import type { Span } from '../../src/swarm/protocol';
import { publicSwarm, type SwarmConfig } from '../../src/swarm/swarm-config';
import { parseSignalUrl, type LinkOptions, type SignalConfig } from '../../src/swarm/transport';
import { STORIES, testDevice } from '../helpers/gpu';

/** Heartbeat every 250 ms, dead after 2 s of silence: failures show within ~2.5 s instead of 5. */
export const FAST_LINK: Partial<LinkOptions> = { heartbeatMs: 250, deadAfterMs: 2_000, openTimeoutMs: 3_000 };
/** Records re-announced every 300 ms. */
export const ANNOUNCE_MS = 300;
/**
 * The proof of work the tests' public swarms ask of identities: 8 bits (256 hashes, milliseconds), so each of the
 * dozens of hosts and clients the tests start does not pay the real swarm's 17 bits (~1.3 s here). The cost of the
 * real setting, and its refusal of identities without it, are tests/swarm/trust.test.ts's.
 */
export const TEST_POW_BITS = 8;

/** A client that leaves every layer to the hosts (the product's default runs the first and the last itself). */
export const NO_OWN_LAYERS = { first: 0, last: 0 } as const;

export async function referenceIds(): Promise<number[]> {
  const json: unknown = JSON.parse(await readFile('tests/fixtures/stories260K.greedy.json', 'utf8'));
  if (typeof json !== 'object' || json === null || !('output_ids' in json) || !Array.isArray(json.output_ids)) throw new Error('bad fixture');
  return json.output_ids.map(Number);
}

export class Swarm {
  readonly hosts: LaunchedHost[] = [];
  readonly clients: LaunchedClient[] = [];
  private constructor(
    readonly server: SignalServer,
    readonly signal: SignalConfig,
    readonly dev: FlockDevice,
    readonly file: GgufFile,
    readonly config: SwarmConfig,
    readonly link: Partial<LinkOptions>,
  ) {}

  get name(): string {
    return this.config.name;
  }

  /**
   * A swarm named `name` (public, with the tests' proof of work, unless `config` says otherwise); `link` adds to
   * FAST_LINK for every host and client (e.g. small frames).
   */
  static async start(name: string, link: Partial<LinkOptions> = {}, config?: SwarmConfig): Promise<Swarm> {
    installNodeWebRtc();
    const server = await startSignalServer(0);
    const dev = await testDevice();
    const file = await openGguf(openSource(STORIES));
    return new Swarm(server, parseSignalUrl(server.url), dev, file, config ?? publicSwarm(name, TEST_POW_BITS), { ...FAST_LINK, ...link });
  }

  /** A host in this swarm (or, with `as`, in another one on the same signalling server: an outsider). */
  async host(layers: Span | undefined, maxLayers?: number, host: Partial<HostOptions> = {}, as: Partial<LaunchHostOptions> = {}): Promise<LaunchedHost> {
    const h = await launchHost({
      dev: this.dev, model: this.file, swarm: this.config, signal: this.signal, layers, maxLayers, maxContext: 256,
      announceMs: ANNOUNCE_MS, link: this.link, host: { banMs: 60_000, ...host }, ...as,
    });
    this.hosts.push(h);
    return h;
  }

  /**
   * A client in this swarm (or, with `as`, in another one: an outsider, a client with known peers…). It runs no layers
   * of its own unless `as.own` says so: these tests are about the hosts, and their routes cover every layer.
   */
  async client(opts: Partial<SwarmOptions> = {}, as: Partial<LaunchClientOptions> = {}): Promise<LaunchedClient> {
    const c = await launchClient({
      dev: this.dev, model: this.file, swarm: this.config, signal: this.signal, announceMs: ANNOUNCE_MS, link: this.link, own: NO_OWN_LAYERS,
      swarmOptions: { maxContext: 256, hopTimeoutMs: 5_000, recoverTimeoutMs: 4_000, ...opts }, waitForRouteMs: 15_000, ...as,
    });
    this.clients.push(c);
    return c;
  }

  /** Wait until every client sees `n` host records. */
  async settle(n: number): Promise<void> {
    for (const c of this.clients) await c.discovery.waitFor((r) => r.filter((x) => x.modelHash === c.modelHash).length >= n, 15_000);
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.stop();
    for (const h of this.hosts) h.stop();
    await new Promise((r) => setTimeout(r, 200));
    await this.server.close();
    // libdatachannel's cleanup() can time out while channels are still closing; the test process exits anyway.
    try {
      cleanupNodeWebRtc();
    } catch {
      // nothing more to release
    }
  }
}
