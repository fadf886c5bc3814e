// The DTLS certificate fingerprints of a PeerJS DataConnection, read from the `a=fingerprint:sha-256` lines of its
// RTCPeerConnection's local and remote SDP (node-datachannel's polyfill and browsers both carry them there). Tests
// use it to see whose certificate each end of a WebRTC link really talked to. Not a defence by itself.

import type { DataConnection } from 'peerjs';

export class FingerprintError extends Error {
  override name = 'FingerprintError';
}

/** The sha-256 fingerprint in `sdp` as upper-case hex pairs joined by ':', or null when there is none. */
export function sdpFingerprint(sdp: string): string | null {
  const m = /^a=fingerprint:sha-256 ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31})\s*$/m.exec(sdp);
  return m ? m[1].toUpperCase() : null;
}

/** Local and remote fingerprints of an open connection; throws FingerprintError when either SDP lacks one. */
export function fingerprints(conn: DataConnection): { local: string; remote: string } {
  const pc = conn.peerConnection;
  if (!pc) throw new FingerprintError(`connection to ${conn.peer} has no RTCPeerConnection (closed, or not started)`);
  const local = sdpFingerprint(pc.localDescription?.sdp ?? '');
  const remote = sdpFingerprint(pc.remoteDescription?.sdp ?? '');
  if (local === null || remote === null) {
    throw new FingerprintError(`connection to ${conn.peer}: no a=fingerprint:sha-256 line in its ${local === null ? 'local' : 'remote'} SDP`);
  }
  return { local, remote };
}
