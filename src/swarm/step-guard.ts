// Step order per session on one link: a host accepts a session's forwards only in order, or marked as replays.
// Per-link state (StageHost keeps one per link). Not here: frames or their decoding (protocol.ts).

import { InvalidArgumentError } from '../model/errors';
import { StepOrderError } from './errors';

export type StepVerdict = 'next' | 'replay';

/**
 * Per session, accepts only step === last + 1, or an earlier step carrying the replay flag (recovery: the sender
 * lost a result and re-sends; the receiver rewinds, so the step after a replay of s is s + 1). Anything else throws
 * StepOrderError. A session starts with begin(session); its first forward is step 0.
 */
export class StepGuard {
  private readonly last = new Map<number, number>();

  constructor(readonly maxSessions = 1024) {
    if (!Number.isInteger(maxSessions) || maxSessions < 1) {
      throw new InvalidArgumentError(`maxSessions = ${maxSessions} must be an integer >= 1.`);
    }
  }

  begin(session: number): void {
    if (this.last.has(session)) throw new StepOrderError('session-exists', `Session ${session} is already open.`);
    if (this.last.size >= this.maxSessions) {
      throw new StepOrderError('too-many-sessions', `${this.last.size} sessions open (limit ${this.maxSessions}).`);
    }
    this.last.set(session, -1);
  }

  has(session: number): boolean {
    return this.last.has(session);
  }

  end(session: number): void {
    this.last.delete(session);
  }

  /** Accept (and record) `step` of `session`, or throw StepOrderError leaving the state unchanged. */
  check(session: number, step: number, replay: boolean): StepVerdict {
    const last = this.last.get(session);
    if (last === undefined) throw new StepOrderError('unknown-session', `Session ${session} was not begun (no open).`);
    if (step === last + 1) {
      this.last.set(session, step);
      return 'next';
    }
    if (step > last + 1) throw new StepOrderError('gap', `Session ${session} expected step ${last + 1}, got ${step}.`);
    if (!replay) {
      throw new StepOrderError(
        'unflagged-replay',
        `Session ${session} step ${step} was already accepted (last ${last}) and is not marked replay.`,
      );
    }
    this.last.set(session, step);
    return 'replay';
  }
}
