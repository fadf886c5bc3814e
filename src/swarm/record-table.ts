// A participant's table of peer records: merged from announcements and gossip (a record with a later expiry replaces
// an older one), bounded (when full, the record that expires soonest makes room, so a flood cannot lock honest
// refreshes out), and with departures: a host that leaves on purpose says so, and its record is dropped everywhere
// the departure reaches, with a tombstone so that older copies still travelling in gossip do not bring it back.
// Pure data, no I/O. Not here: the discovery messages that carry records (discovery.ts), record validation
// (records.ts).

import { InvalidArgumentError } from '../model/errors';
import type { PeerRecord } from './records';

/** A departure: `id` left, and any record of it that expires by `until` is older than the departure. */
export interface Departure {
  id: string;
  until: number;
}

export class RecordTable {
  private readonly byId = new Map<string, PeerRecord>();
  private readonly gone = new Map<string, number>();

  constructor(readonly maxRecords: number) {
    if (!Number.isInteger(maxRecords) || maxRecords < 1) throw new InvalidArgumentError(`maxRecords = ${maxRecords} must be an integer >= 1.`);
  }

  get size(): number {
    return this.byId.size;
  }

  /** Add fresh records (a later expiry wins); returns whether the table changed beyond expiries moving forward. */
  merge(incoming: readonly PeerRecord[], now: number): boolean {
    this.sweep(now);
    let changed = false;
    for (const r of incoming) {
      if (r.expiresAt <= now) continue;
      const departed = this.gone.get(r.id);
      if (departed !== undefined) {
        if (r.expiresAt <= departed) continue; // an old copy from before the departure
        this.gone.delete(r.id); // announced again after it left: back
      }
      const old = this.byId.get(r.id);
      if (old && old.expiresAt >= r.expiresAt) continue;
      if (!old && this.byId.size >= this.maxRecords && !this.evictBefore(r.expiresAt)) continue;
      if (!old || old.span.start !== r.span.start || old.span.end !== r.span.end || old.modelHash !== r.modelHash) changed = true;
      this.byId.set(r.id, r);
    }
    return changed;
  }

  /** `id` left (its own word): drop its record and keep it out until its last record would have expired. */
  depart(id: string, now: number): Departure {
    const until = Math.max(this.byId.get(id)?.expiresAt ?? now, now);
    this.byId.delete(id);
    this.gone.set(id, Math.max(this.gone.get(id) ?? 0, until));
    return { id, until };
  }

  /** Departures heard from others (a rendezvous passes on what the leaving host told it). */
  applyDepartures(list: readonly Departure[], now: number): void {
    for (const d of list) {
      if (d.until <= now) continue;
      const r = this.byId.get(d.id);
      if (r && r.expiresAt > d.until) continue; // we hold a newer record than the departure
      this.byId.delete(d.id);
      this.gone.set(d.id, Math.max(this.gone.get(d.id) ?? 0, d.until));
    }
  }

  /** Live records. */
  list(now: number): PeerRecord[] {
    this.sweep(now);
    return [...this.byId.values()];
  }

  /** Departures still worth passing on. */
  departures(now: number): Departure[] {
    this.sweep(now);
    return [...this.gone].map(([id, until]) => ({ id, until }));
  }

  private sweep(now: number): void {
    for (const [id, r] of this.byId) if (r.expiresAt <= now) this.byId.delete(id);
    for (const [id, until] of this.gone) if (until <= now) this.gone.delete(id);
  }

  /** Make room by dropping the record that expires soonest, if it expires before `expiresAt`. */
  private evictBefore(expiresAt: number): boolean {
    let victim: PeerRecord | undefined;
    for (const r of this.byId.values()) if (!victim || r.expiresAt < victim.expiresAt) victim = r;
    if (!victim || victim.expiresAt >= expiresAt) return false;
    this.byId.delete(victim.id);
    return true;
  }
}
