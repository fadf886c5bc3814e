// A participant's presence in a swarm: a PeerJS peer on the signalling server and discovery of the swarm's records
// by name. Every participant starts here: a Node host or client (src/cli), a tab in Swarm mode (its discovery is the
// directory the engine worker's client routes over, through src/worker/link-relay.ts) and a tab in Contribute mode
// (serve.ts serves a span on the same peer). Not here: what is served or how routes are chosen.

import type { Peer } from 'peerjs';
import { Discovery, type DiscoveryOptions } from './discovery';
import { SignalError } from './errors';
import type { PeerRecord } from './records';
import { openPeer, type SignalConfig } from './transport';

export class SwarmNet {
  private constructor(
    readonly peer: Peer,
    readonly discovery: Discovery,
    readonly swarm: string,
  ) {}

  /** A fresh peer (server-assigned id) and discovery of `swarm`; SignalError when the server cannot be used. */
  static async join(signal: SignalConfig, swarm: string, opts: Partial<Pick<DiscoveryOptions, 'link' | 'announceMs'>> = {}): Promise<SwarmNet> {
    const opened = await openPeer(signal, undefined);
    if (opened.kind !== 'open') throw new SignalError('refused', 'The signalling server refused a fresh peer id; try again.');
    try {
      const discovery = await Discovery.start(opened.peer, { signal, swarm, ...opts });
      return new SwarmNet(opened.peer, discovery, swarm);
    } catch (e) {
      opened.peer.destroy();
      throw e;
    }
  }

  get id(): string {
    return this.peer.id;
  }

  /** live records of hosts serving `modelHash` (this participant's own included when it hosts) */
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

  stop(): void {
    this.discovery.stop();
    this.peer.destroy();
  }
}
