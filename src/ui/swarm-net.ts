// This tab's presence in a swarm: a PeerJS peer on the signalling server from the settings and discovery of the
// swarm's hosts by name. Swarm mode uses it to reach hosts for the engine worker (bridge()); Contribute mode serves a
// span on the same peer (src/ui/contribute.ts). Not here: what the hosts run or how routes are chosen.

import { SignalError } from '../swarm/errors';
import { Discovery } from '../swarm/discovery';
import type { PeerRecord } from '../swarm/records';
import { openPeer, parseSignalUrl, type LinkOptions, type SignalConfig } from '../swarm/transport';
import { parseIceServers, type NetSettings } from '../storage/settings';
import type { SwarmBridge } from '../worker/protocol';
import type { Peer } from 'peerjs';
import { relayLink } from './swarm-relay';

/** Signalling config from the settings (named errors for a bad URL or ICE line, before anything connects). */
export function signalConfigOf(s: NetSettings): SignalConfig {
  return parseSignalUrl(s.signalUrl, parseIceServers(s.iceServers));
}

export class SwarmNet {
  private constructor(
    readonly peer: Peer,
    readonly discovery: Discovery,
    readonly swarm: string,
  ) {}

  static async join(settings: NetSettings, link: Partial<LinkOptions> = {}): Promise<SwarmNet> {
    const signal = signalConfigOf(settings);
    const opened = await openPeer(signal, undefined);
    if (opened.kind !== 'open') throw new SignalError('The signalling server refused a fresh peer id; try again.');
    try {
      const discovery = await Discovery.start(opened.peer, { signal, swarm: settings.swarm, link });
      return new SwarmNet(opened.peer, discovery, settings.swarm);
    } catch (e) {
      opened.peer.destroy();
      throw e;
    }
  }

  get id(): string {
    return this.peer.id;
  }

  /** live records of hosts serving `modelHash` (this tab's own included when it contributes) */
  records(modelHash: string): PeerRecord[] {
    return this.discovery.recordsFor(modelHash);
  }

  /** every live record in the swarm, any model */
  allRecords(): PeerRecord[] {
    return this.discovery.records();
  }

  rttMs(): Map<string, number> {
    return this.discovery.rttMs();
  }

  /** What the engine worker calls to reach a host: dial (or share) a PeerLink and relay it over a port. */
  bridge(): SwarmBridge {
    return { connect: async (peer: string) => relayLink(await this.discovery.connect(peer)) };
  }

  stop(): void {
    this.discovery.stop();
    this.peer.destroy();
  }
}
