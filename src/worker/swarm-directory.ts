// The swarm as the engine worker sees it: the records the page's discovery pushes (checked field by field: they
// crossed a thread boundary) and links to hosts that the page dials and relays (link-relay.ts -> port-link.ts),
// shared per host while they are up. The worker's SwarmModel routes over this exactly as a Node client routes over
// Discovery. Not here: discovery itself (the page runs it), routing.

import type { Link } from '../swarm/link';
import type { Limits } from '../swarm/protocol';
import { parseRecord, usableRecords, type PeerRecord } from '../swarm/records';
import type { Directory } from '../swarm/swarm-model';
import type { SwarmBridge } from './api';
import { PortLink } from './port-link';

export class RelayedDirectory implements Directory {
  private records: PeerRecord[] = [];
  private rtt = new Map<string, number>();
  private readonly links = new Map<string, Promise<PortLink>>();

  constructor(private bridge: SwarmBridge) {}

  /** The page's latest view: records of hosts, heartbeat round trips by peer. Malformed entries are dropped. */
  update(records: unknown, rttMs: unknown): void {
    const now = Date.now();
    const list = Array.isArray(records) ? records : [];
    this.records = list.map((r: unknown) => parseRecord(r, now)).filter((r): r is PeerRecord => r !== null);
    const rtt = new Map<string, number>();
    if (Array.isArray(rttMs)) {
      for (const e of rttMs) {
        if (Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'number' && Number.isFinite(e[1]) && e[1] >= 0) rtt.set(e[0], e[1]);
      }
    }
    this.rtt = rtt;
  }

  recordsFor(modelHash: string): PeerRecord[] {
    return usableRecords(this.records, modelHash, Date.now());
  }

  rttMs(): Map<string, number> {
    return this.rtt;
  }

  connect(peer: string, limits: Limits): Promise<Link> {
    let p = this.links.get(peer);
    if (!p) {
      p = this.bridge.connect(peer, limits).then((port) => new PortLink(port, limits));
      this.links.set(peer, p);
      const mine = p;
      const forget = (): void => {
        if (this.links.get(peer) === mine) this.links.delete(peer);
      };
      p.then((l) => void l.closed.then(forget), forget);
    }
    return p;
  }

  probe(peer: string): Promise<'gone' | 'alive' | 'unknown'> {
    return this.bridge.probe(peer);
  }

  /** Hang up every link (leaving the swarm). */
  close(reason = 'left the swarm'): void {
    for (const p of this.links.values()) void p.then((l) => l.close('closed', reason), () => {});
    this.links.clear();
  }

  /** Dial through `bridge` from now on (the page's new identity); every link of the old one is hung up. */
  rebind(bridge: SwarmBridge): void {
    this.close('a new identity');
    this.bridge = bridge;
  }
}
