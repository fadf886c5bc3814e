// Named errors of the swarm wire protocol: one class per failure, each with a `code` a caller can switch on and a
// literal `name` (minifiers rename classes; the name is what crosses a worker or peer boundary).
// ProtocolError is a peer's fault (drop the frame, consider banning the peer); EncodeError is ours (we tried to send
// something the protocol cannot carry); ReassemblyError is a resource bound (an honest but busy peer can hit it);
// StepOrderError is a session's steps arriving out of order. This file holds errors (and their reason lists) only.

import { FlockError } from '../model/errors';

/** Why a frame (a peer's, or one we were about to build) breaks protocol v1. */
export type ProtocolErrorCode =
  | 'bad-magic' // first byte is not the Flock magic: not a Flock frame at all
  | 'bad-version' // a protocol version this build does not speak
  | 'unknown-kind' // kind byte names no message
  | 'truncated' // fewer bytes than the header or the fields promise
  | 'size-mismatch' // more bytes than promised, or a payload whose length disagrees with nTokens * dim
  | 'too-large' // a frame, tensor or string above the agreed limits
  | 'non-finite' // NaN or Infinity in a payload or a time
  | 'bad-field' // a field outside its range: span start >= end, zero tokens, unknown flag, non-zero padding…
  | 'bad-utf8' // a string that is not valid UTF-8
  | 'bad-chunk'; // chunk index >= count, a count that does not match the sizes, chunks that disagree

/** A peer sent a frame that breaks the protocol. Drop the frame; a peer that keeps doing this should be banned. */
export class ProtocolError extends FlockError {
  override name = 'ProtocolError';

  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** We tried to encode a message the protocol cannot carry (bad field, NaN in our own payload, f16 overflow). */
export class EncodeError extends FlockError {
  override name = 'EncodeError';

  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export type ReassemblyErrorCode = 'too-many-partials' | 'buffer-full';

/** A chunked message would exceed the Reassembler's bounds; the chunk was dropped. Slow the peer down or retry. */
export class ReassemblyError extends FlockError {
  override name = 'ReassemblyError';

  constructor(
    readonly code: ReassemblyErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export type StepOrderErrorCode =
  | 'unknown-session' // check() before begin(), or after end()
  | 'session-exists' // begin() twice
  | 'too-many-sessions' // begin() past the guard's maxSessions
  | 'gap' // a step beyond last + 1
  | 'unflagged-replay'; // a step <= last without the replay flag

/** A session's step is not the next one (a gap, or a replay without the replay flag), or the session is unknown. */
export class StepOrderError extends FlockError {
  override name = 'StepOrderError';

  constructor(
    readonly code: StepOrderErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors of the transport, the host and the client session (above the wire format).

/** Why a link ended. */
export const LINK_DOWN_REASONS = [
  'closed', // the data channel or the peer closed
  'heartbeat', // nothing heard from the peer within the heartbeat deadline (a stalled or frozen peer)
  'send-timeout', // the channel's buffer did not drain within the send timeout
  'protocol', // the peer broke the protocol (we hung up)
  'flood', // the peer sent frames faster than the link's rate limit
  'open-timeout', // the data channel never opened
  'unavailable', // the signalling server says the peer is not connected to it (gone, or never there)
  'leaving', // the peer said it is leaving (a host stopping on purpose)
  'banned', // we refuse this peer for a while
] as const;
export type LinkDownReason = (typeof LINK_DOWN_REASONS)[number];

/** A link to a peer is down; whatever was in flight on it is lost. Find another peer. */
export class LinkDownError extends FlockError {
  override name = 'LinkDownError';

  constructor(
    readonly reason: LinkDownReason,
    readonly peer: string,
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}

/** A host answered a request with an `error` message (its wire code says why). */
export class RemoteError extends FlockError {
  override name = 'RemoteError';

  constructor(
    readonly code: import('./protocol').WireErrorCode,
    readonly peer: string,
    message: string,
  ) {
    super(`${code} from ${peer}: ${message}`);
  }
}

/**
 * A host answered a checked step differently from two other hosts for the same layers and the same input (a witness
 * and a third opinion agreeing with each other within the tolerance): it runs other weights, or lies. Its key is
 * banned and generation goes back to the last position its answers were checked at (witness.ts).
 */
export class HopMismatchError extends FlockError {
  override name = 'HopMismatchError';

  constructor(
    readonly peer: string,
    /** the first position whose answer was wrong */
    readonly position: number,
    message: string,
  ) {
    super(message);
  }
}

/** A hop did not answer within its deadline. */
export class HopTimeoutError extends FlockError {
  override name = 'HopTimeoutError';
}

/**
 * No peer serves some span of the model (or every one that does is banned or failing). The conversation so far is
 * kept in `ids` (prompt and generated tokens) so the caller can resume once peers come back.
 */
export class NoRouteError extends FlockError {
  override name = 'NoRouteError';

  constructor(
    message: string,
    /** the layers nobody could serve, [start, end) */
    readonly missing: { start: number; end: number },
    /** token ids of the conversation so far (input + generated) */
    readonly ids: number[] = [],
  ) {
    super(message);
  }
}

/**
 * Why joining a swarm failed, as the user can act on it: 'offline' (this device has no network), 'unreachable' (no
 * answer from the signalling server: a wrong address, a server that is down, a network that blocks it), 'refused'
 * (the server answered and said no), 'config' (a bad address, found before anything connected), 'timeout' (the
 * swarm did not show what was waited for in time).
 */
export const SIGNAL_ERROR_CODES = ['offline', 'unreachable', 'refused', 'config', 'timeout'] as const;
export type SignalErrorCode = (typeof SIGNAL_ERROR_CODES)[number];

/** The signalling server could not be used (its `code` says why). */
export class SignalError extends FlockError {
  override name = 'SignalError';

  constructor(
    readonly code: SignalErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export type IdentityErrorCode =
  | 'bad-key' // a key of an unknown type or the wrong size, or a malformed proof of work
  | 'bad-signature' // a signature that does not verify, or is not a signature at all
  | 'wrong-key' // signed by a key that is not the one behind the peer id it claims
  | 'pow' // the identity does not carry the proof of work this swarm asks for
  | 'key-file' // a key or secret file that cannot be used (missing, malformed, readable by others)
  | 'secret' // a swarm secret or invite link that cannot be used (wrong length, malformed, too long)
  | 'not-member'; // the peer does not prove the private swarm's secret

/** An identity, a signature, a key file or a swarm secret that cannot be trusted or used; `code` says which. */
export class IdentityError extends FlockError {
  override name = 'IdentityError';

  constructor(
    readonly code: IdentityErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/**
 * A link whose other end did not prove who it is: no authentication first, a bad signature, a key that does not
 * match the peer id, DTLS fingerprints that do not match what it signed (someone in the middle), or no proof of the
 * private swarm's secret. The link is closed; `peer` is the id it claimed.
 */
export class LinkAuthError extends FlockError {
  override name = 'LinkAuthError';

  constructor(
    readonly code: IdentityErrorCode | 'fingerprint' | 'no-auth',
    readonly peer: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** Every error class of the swarm by its literal name (the worker boundary's registry, src/worker/errors.ts). */
/** A witness (witness.ts) could not answer: its link went down, timed out or refused. The check waits for another. */
export class WitnessUnavailableError extends FlockError {
  override name = 'WitnessUnavailableError';
}

export const SWARM_ERRORS = {
  ProtocolError,
  EncodeError,
  ReassemblyError,
  StepOrderError,
  LinkDownError,
  RemoteError,
  HopTimeoutError,
  NoRouteError,
  SignalError,
  IdentityError,
  LinkAuthError,
  HopMismatchError,
  WitnessUnavailableError,
} as const;
