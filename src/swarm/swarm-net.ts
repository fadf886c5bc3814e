// A participant's presence in a swarm: a PeerJS peer on the signalling server and discovery of the swarm's records
// by name. Every participant starts here: a Node host or client (src/cli), a tab in Swarm mode (its discovery is the
// directory the engine worker's client routes over, through src/worker/link-relay.ts) and a tab in Contribute mode
// (serve.ts serves a span on the same peer). Not here: what is served or how routes are chosen.

import type { Peer } from 'peerjs';
import { Discovery, type DiscoveryOptions } from './discovery';
import { SignalError } from './errors';
import type { PeerRecord } from './records';
import type { Identity } from './identity';
import type { SwarmConfig } from './swarm-config';
import { openPeer, type PeerOpenResult, type SignalConfig } from './transport';

/** Ids tried for one key: the bare key id, then key-1 … key-7 (someone squatting the bare id on the server). */
const MAX_SUFFIX = 8;

export class SwarmNet {
  /** the id the signalling server gave us (PeerJS's peer.id is null while the server is out of reach) */
  private readonly openedId: string;

  private constructor(
    readonly peer: Peer,
    readonly discovery: Discovery,
    readonly config: SwarmConfig,
  ) {
    this.openedId = peer.id;
  }

  /**
   * A peer whose id is `identity`'s (with a '-n' suffix when someone holds the bare id: an id is only a name on the
   * signalling server, and links prove the key, link-auth.ts), and discovery of `swarm`. SignalError when the server
   * cannot be used.
   */
  static async join(
    signal: SignalConfig, swarm: SwarmConfig, identity: Identity,
    opts: Partial<Pick<DiscoveryOptions, 'link' | 'announceMs' | 'epochMs' | 'knownPeers'>> = {},
  ): Promise<SwarmNet> {
    let opened: PeerOpenResult = { kind: 'taken' };
    for (let n = 0; n < MAX_SUFFIX && opened.kind === 'taken'; n++) opened = await openPeer(signal, n === 0 ? identity.id : `${identity.id}-${n}`);
    if (opened.kind !== 'open') throw new SignalError('refused', `The signalling server holds every id of this key (${identity.id}…); try again later.`);
    try {
      const discovery = await Discovery.start(opened.peer, { signal, swarm, identity, ...opts });
      return new SwarmNet(opened.peer, discovery, swarm);
    } catch (e) {
      opened.peer.destroy();
      throw e;
    }
  }

  /** The swarm's name (what the page shows). */
  get swarm(): string {
    return this.config.name;
  }

  get id(): string {
    return this.peer.id ?? this.openedId;
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
