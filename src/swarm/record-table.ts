// A participant's table of peer records, one per key: merged from announcements and gossip (a record replaces
// another of the same key only with a higher sequence number, so a replayed old record changes nothing), bounded
// (when full, the stalest record makes room: a flood cannot lock honest hosts out, who re-sign every round), and with
// departures: a host that leaves on purpose signs a departure, its record is dropped everywhere the departure
// reaches, and records of that key up to the departure's sequence stay out. Records and departures here are already
// verified (records.ts verifyRecord): this is pure bookkeeping, no I/O. Not here: the messages that carry them
// (discovery.ts).

import { InvalidArgumentError } from '../model/errors';
import { keyIdOf } from './identity';
import type { Departure, PeerRecord } from './records';

/** How long a departure is kept and passed on. 5 min: longer than any record it could meet (records.ts MAX_TTL_MS). */
const DEPARTURE_MS = 5 * 60_000;

export class RecordTable {
  private readonly byKey = new Map<string, PeerRecord>();
  private readonly gone = new Map<string, { d: Departure; until: number }>();

  constructor(readonly maxRecords: number) {
    if (!Number.isInteger(maxRecords) || maxRecords < 1) throw new InvalidArgumentError(`maxRecords = ${maxRecords} must be an integer >= 1.`);
  }

  get size(): number {
    return this.byKey.size;
  }

  /** Add verified records (a higher sequence wins); returns whether the table changed beyond refreshes. */
  merge(incoming: readonly PeerRecord[], now: number): boolean {
    this.sweep(now);
    let changed = false;
    for (const r of incoming) {
      if (r.expiresAt <= now) continue;
      const key = keyIdOf(r.id);
      const departed = this.gone.get(key);
      if (departed) {
        if (r.seq <= departed.d.seq) continue; // from before the departure
        this.gone.delete(key); // announced again after it left: back
      }
      const old = this.byKey.get(key);
      if (old && old.seq >= r.seq) continue;
      if (!old && this.byKey.size >= this.maxRecords && !this.evictStalerThan(r.seq)) continue;
      if (!old || old.id !== r.id || old.span.start !== r.span.start || old.span.end !== r.span.end || old.modelHash !== r.modelHash) changed = true;
      this.byKey.set(key, r);
    }
    return changed;
  }

  /** A verified departure: drop its key's record if it is not newer; returns whether anything changed. */
  depart(d: Departure, now: number): boolean {
    const key = keyIdOf(d.id);
    const have = this.gone.get(key);
    if (have && have.d.seq >= d.seq) return false;
    this.gone.set(key, { d, until: now + DEPARTURE_MS });
    const r = this.byKey.get(key);
    if (r && r.seq <= d.seq) {
      this.byKey.delete(key);
      return true;
    }
    return !have;
  }

  /** Live records. */
  list(now: number): PeerRecord[] {
    this.sweep(now);
    return [...this.byKey.values()];
  }

  /** Departures still worth passing on. */
  departures(now: number): Departure[] {
    this.sweep(now);
    return [...this.gone.values()].map((g) => g.d);
  }

  private sweep(now: number): void {
    for (const [k, r] of this.byKey) if (r.expiresAt <= now) this.byKey.delete(k);
    for (const [k, g] of this.gone) if (g.until <= now) this.gone.delete(k);
  }

  /**
   * Make room by dropping the stalest record (the one its owner signed longest ago), if it is staler than `seq`. Honest
   * hosts re-sign every round, so a flood must keep re-signing every record it placed to keep them in.
   */
  private evictStalerThan(seq: number): boolean {
    let victim: [string, PeerRecord] | undefined;
    for (const e of this.byKey) if (!victim || e[1].seq < victim[1].seq) victim = e;
    if (!victim || victim[1].seq >= seq) return false;
    this.byKey.delete(victim[0]);
    return true;
  }
}
