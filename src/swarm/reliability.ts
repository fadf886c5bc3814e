// What this client has seen of each host it routed through: how many positions it served and how often it failed
// (dropped a session, went quiet, left, was banned). Routing prices a hop by what a failure through it is expected to
// cost per token: REROUTE_MS x failures / (positions served + PRIOR_POSITIONS). A host that keeps taking sessions and
// dropping them, and announces itself again at once (a crash loop, or an attacker costing every client a re-route),
// loses to steadier hosts of its span while there are any, and is still used when it is the only one. A host that
// served long before it failed pays little. Both counts fade (half-life HALF_LIFE_MS), so a host that was unlucky, or
// mended, comes back. Kept by peer id, which is derived from the host's key (identity.ts). Not here: bans (a host
// that misbehaved is left out altogether, route-opener.ts) and the routing itself (routing.ts).

/** What a failure costs a conversation: a re-route and its replay. 2 s: above the median re-route under churn (README). */
export const REROUTE_MS = 2_000;
/** Positions a host is credited with before it served any: one failure before then costs ~57 ms per token. */
export const PRIOR_POSITIONS = 32;
/** Failures and positions fade by half this often. 10 min: a chat's length; long enough to outlast a crash loop. */
export const HALF_LIFE_MS = 10 * 60_000;
/** Hosts remembered at most; the least used are forgotten first (a flood of one-shot ids costs bounded memory). */
const MAX_PEERS = 4096;

interface Seen {
  failures: number;
  positions: number;
  at: number;
}

export class Reliability {
  private readonly seen = new Map<string, Seen>();

  constructor(
    private readonly halfLifeMs = HALF_LIFE_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** `peer` served `positions` positions (a forward's result came back well formed). */
  served(peer: string, positions: number): void {
    this.entry(peer).positions += positions;
  }

  /** `peer` failed a session or an attempt to open one. */
  failed(peer: string): void {
    this.entry(peer).failures += 1;
  }

  /** Failures of `peer` now (faded), for reports. */
  failures(peer: string): number {
    const s = this.seen.get(peer);
    return s ? this.faded(s).failures : 0;
  }

  /** Failures by peer now (faded; those above 0.5, rounded), for the swarm picture. */
  failureCounts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [peer, s] of this.seen) {
      const n = Math.round(this.faded(s).failures);
      if (n > 0) out.set(peer, n);
    }
    return out;
  }

  /** Expected cost per token of routing through each peer that failed, ms (routing.ts RouteOptions.penaltyMs). */
  penaltyMs(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [peer, s] of this.seen) {
      const f = this.faded(s);
      if (f.failures > 0.01) out.set(peer, (REROUTE_MS * f.failures) / (f.positions + PRIOR_POSITIONS));
    }
    return out;
  }

  private faded(s: Seen): Seen {
    const t = this.now();
    const k = 0.5 ** (Math.max(0, t - s.at) / this.halfLifeMs);
    s.failures *= k;
    s.positions *= k;
    s.at = t;
    return s;
  }

  private entry(peer: string): Seen {
    let s = this.seen.get(peer);
    if (s) {
      this.seen.delete(peer); // re-inserted: the map's order is least recently used first
      this.faded(s);
    } else {
      s = { failures: 0, positions: 0, at: this.now() };
      if (this.seen.size >= MAX_PEERS) this.seen.delete(this.seen.keys().next().value!);
    }
    this.seen.set(peer, s);
    return s;
  }
}
