// The first exchange on every data channel (hidden-state links and rendezvous links alike): each end proves the key
// behind its peer id and binds it to this connection. Each sends one auth message, signed with its identity, over
// the transcript (its id, the id it thinks it talks to, its own DTLS certificate fingerprint and the one it sees for
// the other end, both read from the connection's SDP), and in a private swarm an HMAC of the same transcript with
// the swarm's membership key. The other end checks every part: the key is the one behind the id the connection
// claims, the work, the signature, the fingerprints crossed (a signalling server in the middle that terminated DTLS
// itself shows up as fingerprints that do not match what the other end signed), and membership. Messages that come
// after the auth, before the owner listens, are kept and handed over. Not here: what the link carries next.

import type { DataConnection } from 'peerjs';
import { fromBase64url, toBase64url } from './base64url';
import { LinkAuthError } from './errors';
import { keyIdOf, peerIdOf, powValid, verifySignature, type Identity, type PublicIdentity } from './identity';
import { membershipKey, type SwarmConfig } from './swarm-config';

/** First bytes of an auth message: not a protocol frame (those start 0xF1) and not JSON ('{'). */
const AUTH_MAGIC = [0xf2, 0x41, 0x55, 0x31]; // 0xF2 'A' 'U' '1'
const MAX_AUTH_BYTES = 2048;
const TAG = 'flock-auth-v1';

/** What a link knows of its other end once it is authenticated. */
export interface RemoteIdentity extends PublicIdentity {
  /** the key id (identity.ts peerIdOf): what bans and quotas are keyed by */
  keyId: string;
}

export interface AuthResult {
  remote: RemoteIdentity;
  /** what the other end sent after its auth, in order, before the owner was listening */
  early: unknown[];
}

/** The sha-256 fingerprint of a session description ('' when it has none). */
export function sdpFingerprint(sdp: string | undefined | null): string {
  const m = /a=fingerprint:sha-256 ([0-9A-Fa-f:]+)/.exec(sdp ?? '');
  return m ? m[1].toUpperCase() : '';
}

/** How often, and for how long at most, to look for a description the connection has not shown yet. */
const DESCRIPTION_POLL_MS = 10;
const DESCRIPTION_WAIT_MS = 3_000;

/** This connection's DTLS fingerprints as its descriptions show them now ('' for one not shown yet). */
function fingerprintsNow(conn: DataConnection): { local: string; remote: string } {
  const pc = conn.peerConnection;
  return { local: sdpFingerprint(pc?.localDescription?.sdp), remote: sdpFingerprint(pc?.remoteDescription?.sdp) };
}

/**
 * This connection's DTLS fingerprints: ours, and the one the other end's description names. A channel can open
 * before the page sees the description that opened it (Chromium under load: the answer's setRemoteDescription has
 * not resolved when the data channel's open event runs), so a missing one is waited for, DESCRIPTION_WAIT_MS at most;
 * still missing, it stays '' and the check fails.
 */
export async function connectionFingerprints(conn: DataConnection): Promise<{ local: string; remote: string }> {
  const until = performance.now() + DESCRIPTION_WAIT_MS;
  let fp = fingerprintsNow(conn);
  while ((fp.local === '' || fp.remote === '') && performance.now() < until && conn.peerConnection) {
    await new Promise((r) => setTimeout(r, DESCRIPTION_POLL_MS));
    fp = fingerprintsNow(conn);
  }
  return fp;
}

function transcript(swarm: SwarmConfig, from: string, to: string, fromFp: string, toFp: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(JSON.stringify([TAG, swarm.name, from, to, fromFp, toFp]));
}

async function encodeAuth(identity: Identity, swarm: SwarmConfig, from: string, to: string, fp: { local: string; remote: string }): Promise<ArrayBuffer> {
  const t = transcript(swarm, from, to, fp.local, fp.remote);
  const mk = await membershipKey(swarm);
  const body = {
    v: 1, from, to, alg: identity.alg, pub: toBase64url(identity.publicKey), nonce: identity.nonce,
    fp: fp.local, peerFp: fp.remote, sig: toBase64url(await identity.sign(t)),
    mac: mk ? toBase64url(new Uint8Array(await crypto.subtle.sign('HMAC', mk, t))) : undefined,
  };
  const json = new TextEncoder().encode(JSON.stringify(body));
  const out = new Uint8Array(AUTH_MAGIC.length + json.length);
  out.set(AUTH_MAGIC);
  out.set(json, AUTH_MAGIC.length);
  return out.buffer;
}

function bytesOf(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

/** Check the other end's auth message; resolves with its identity or throws LinkAuthError. */
async function checkAuth(data: unknown, conn: DataConnection, myId: string, swarm: SwarmConfig, fp: { local: string; remote: string }, bindId: boolean): Promise<RemoteIdentity> {
  const peer = conn.peer;
  const fail = (code: ConstructorParameters<typeof LinkAuthError>[0], why: string): never => {
    throw new LinkAuthError(code, peer, `${peer}: ${why}`);
  };
  const b = bytesOf(data);
  if (!b || b.length > MAX_AUTH_BYTES || b.length < AUTH_MAGIC.length || AUTH_MAGIC.some((x, i) => b[i] !== x)) {
    return fail('no-auth', 'the first message on the link is not an authentication');
  }
  let x: unknown;
  try {
    x = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(AUTH_MAGIC.length)));
  } catch {
    return fail('no-auth', 'the authentication is not readable');
  }
  if (typeof x !== 'object' || x === null) return fail('no-auth', 'the authentication is not an object');
  const msg = x;
  const field = (k: string): unknown => Object.getOwnPropertyDescriptor(msg, k)?.value;
  const [from, to, alg, pub, nonce, theirFp, peerFp, sig, mac] = ['from', 'to', 'alg', 'pub', 'nonce', 'fp', 'peerFp', 'sig', 'mac'].map(field);
  if (from !== peer || to !== myId) return fail('wrong-key', `the authentication is from ${String(from)} to ${String(to)}, not from ${peer} to ${myId}`);
  if (alg !== 'ed25519' && alg !== 'p256') return fail('bad-key', `unknown key type ${JSON.stringify(alg)}`);
  const key = typeof pub === 'string' ? fromBase64url(pub, 65) : null;
  const signature = typeof sig === 'string' ? fromBase64url(sig, 128) : null;
  if (!key || !signature || typeof nonce !== 'number' || !Number.isSafeInteger(nonce) || nonce < 0) return fail('bad-key', 'a malformed key, nonce or signature');
  const p: PublicIdentity = { alg: alg === 'ed25519' ? 'ed25519' : 'p256', key, nonce };
  const keyId = await peerIdOf(p).catch(() => '');
  if (bindId && keyIdOf(peer) !== keyId) return fail('wrong-key', 'its key is not the one behind its peer id');
  if (!(await powValid(p, swarm.powBits))) return fail('pow', `its identity does not carry the ${swarm.powBits} bits of work this swarm asks`);
  if (typeof theirFp !== 'string' || typeof peerFp !== 'string') return fail('fingerprint', 'no DTLS fingerprints');
  const t = transcript(swarm, peer, myId, theirFp, peerFp);
  if (!(await verifySignature(p, t, signature))) return fail('bad-signature', 'its signature does not verify');
  // the certificate it signed as its own must be the one this connection shows us, and the other way round
  if (theirFp !== fp.remote || peerFp !== fp.local || fp.local === '' || fp.remote === '') {
    const short = (f: string): string => (f ? f.slice(0, 11) : 'none');
    return fail('fingerprint', `the DTLS fingerprints it signed are not this connection's: someone is in the middle (it signed ${short(theirFp)} as its own and ${short(peerFp)} as ours; this connection shows ${short(fp.remote)} and ${short(fp.local)})`);
  }
  const mk = await membershipKey(swarm);
  if (mk) {
    const m = typeof mac === 'string' ? fromBase64url(mac, 32) : null;
    if (!m || !(await crypto.subtle.verify('HMAC', mk, m, t))) return fail('not-member', 'it does not prove this private swarm\'s secret');
  }
  return { ...p, keyId };
}

/**
 * Authenticate an open connection both ways: send ours, check theirs (within timeoutMs). Throws LinkAuthError;
 * the caller closes the connection then. `bindId` false: the other end's id is not a key's (a rendezvous id), so
 * it proves its key, the fingerprints and membership, but not that the id is its key's.
 */
export async function authenticate(conn: DataConnection, identity: Identity, myId: string, swarm: SwarmConfig, timeoutMs: number, opts: { bindId?: boolean } = {}): Promise<AuthResult> {
  const early: unknown[] = [];
  let first: ((d: unknown) => void) | null = null;
  const onData = (d: unknown): void => {
    if (first) {
      const f = first;
      first = null;
      f(d);
    } else {
      early.push(d);
    }
  };
  conn.on('data', onData);
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const theirs = new Promise<unknown>((resolve, reject) => {
      first = resolve;
      timer = setTimeout(() => reject(new LinkAuthError('no-auth', conn.peer, `${conn.peer} did not authenticate within ${timeoutMs} ms`)), timeoutMs);
      conn.once('close', () => reject(new LinkAuthError('no-auth', conn.peer, `${conn.peer} closed the link before authenticating`)));
    });
    theirs.catch(() => {}); // awaited below; a rejection before that point must not count as unhandled
    try {
      const fp = await connectionFingerprints(conn);
      conn.send(await encodeAuth(identity, swarm, myId, conn.peer, fp));
      const remote = await checkAuth(await theirs, conn, myId, swarm, fp, opts.bindId ?? true);
      return { remote, early };
    } finally {
      clearTimeout(timer);
    }
  } finally {
    conn.off('data', onData);
  }
}
