// Bans with a doubling backoff: the first ban of a peer lasts firstMs, each further one twice the last, at most
// maxMs; an offender is forgotten once it has kept quiet for four times its last ban. Keyed by whatever identifies a
// peer (its id today). Hosts ban peers that break the protocol, clients ban hosts that fail them.
// Not here: deciding who deserves a ban.

import { InvalidArgumentError } from '../model/errors';

export class BanList {
  private readonly bans = new Map<string, { until: number; ms: number }>();

  constructor(
    readonly firstMs: number,
    readonly maxMs: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(firstMs > 0 && maxMs >= firstMs)) throw new InvalidArgumentError(`Ban times ${firstMs} ms / ${maxMs} ms must be 0 < first <= max.`);
  }

  /** Ban `key` (again); returns how long this ban lasts, ms. */
  ban(key: string): number {
    const prev = this.bans.get(key);
    const ms = prev ? Math.min(prev.ms * 2, this.maxMs) : this.firstMs;
    this.bans.set(key, { until: this.now() + ms, ms });
    return ms;
  }

  isBanned(key: string): boolean {
    const b = this.bans.get(key);
    return b !== undefined && b.until > this.now();
  }

  /** Keys banned now. */
  banned(): Set<string> {
    const t = this.now();
    return new Set([...this.bans].filter(([, b]) => b.until > t).map(([k]) => k));
  }

  /** Forget offenders that kept quiet for four times their last ban (a timer calls this). */
  forgetOld(): void {
    const t = this.now();
    for (const [k, b] of this.bans) if (b.until + b.ms * 4 < t) this.bans.delete(k);
  }
}
