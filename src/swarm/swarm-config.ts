// Which swarm a participant is in, and what follows from it. A public swarm is a name: anyone who knows it can find
// its rendezvous ids and join, so identities must carry a proof of work (identity.ts). A private swarm is a name and
// a 32-byte secret: its rendezvous ids and a link key are derived from the secret (HKDF-SHA-256), so outsiders can
// neither find its rendezvous nor open a link that members accept (link-auth.ts); no proof of work is needed.
// Invite links carry the secret in the URL fragment, which browsers never send to a server.
// Not here: reading secret files (src/cli/key-file.ts).

import { fromBase64url, toBase64url } from './base64url';
import { IdentityError } from './errors';
import { PUBLIC_POW_BITS } from './identity';

export const SECRET_BYTES = 32;
/** Longest invite link accepted: a name of up to 64 characters, the secret and the app's address fit easily. */
const MAX_INVITE_CHARS = 2048;
const MAX_NAME = 64;

export interface SwarmConfig {
  name: string;
  /** the private swarm's secret, or null for a public swarm */
  secret: Uint8Array<ArrayBuffer> | null;
  /** proof-of-work bits an identity needs here (0 in private swarms) */
  powBits: number;
}

function checkName(name: string): string {
  const n = name.trim();
  if (n.length === 0 || n.length > MAX_NAME) throw new IdentityError('secret', `A swarm name has 1 to ${MAX_NAME} characters.`);
  return n;
}

export function publicSwarm(name: string, powBits = PUBLIC_POW_BITS): SwarmConfig {
  return { name: checkName(name), secret: null, powBits };
}

export function privateSwarm(name: string, secret: Uint8Array): SwarmConfig {
  if (!(secret instanceof Uint8Array) || secret.length !== SECRET_BYTES) {
    throw new IdentityError('secret', `A swarm secret is ${SECRET_BYTES} bytes, not ${secret?.length}.`);
  }
  return { name: checkName(name), secret: new Uint8Array(secret), powBits: 0 };
}

/** A new random secret. */
export function newSecret(): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(SECRET_BYTES));
}

async function hkdf(secret: Uint8Array<ArrayBuffer>, info: string, bytes: number): Promise<Uint8Array> {
  const base = await crypto.subtle.importKey('raw', secret, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: new TextEncoder().encode(info) }, base, bytes * 8);
  return new Uint8Array(bits);
}

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/**
 * The 16 hex digits rendezvous ids are made from: of sha256(name) for a public swarm (ids reveal nothing but the
 * name's hash), of HKDF(secret, name) for a private one (nobody without the secret can compute them).
 */
export async function rendezvousKey(cfg: SwarmConfig): Promise<string> {
  if (cfg.secret) return hex(await hkdf(cfg.secret, `flock-rv|${cfg.name}`, 8));
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(cfg.name))).subarray(0, 8));
}

/** The HMAC key members prove on every link and rendezvous exchange (null for a public swarm). */
export async function membershipKey(cfg: SwarmConfig): Promise<CryptoKey | null> {
  if (!cfg.secret) return null;
  const raw = await hkdf(cfg.secret, `flock-link|${cfg.name}`, 32);
  return crypto.subtle.importKey('raw', new Uint8Array(raw), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
}

/** An invite link: the app's address with `#swarm=NAME&secret=BASE64URL` (the fragment never reaches a server). */
export function inviteLink(appUrl: string, cfg: SwarmConfig): string {
  if (!cfg.secret) throw new IdentityError('secret', 'A public swarm needs no invite: its name is enough.');
  const u = new URL(appUrl);
  u.hash = `swarm=${encodeURIComponent(cfg.name)}&secret=${toBase64url(cfg.secret)}`;
  return u.href;
}

/** The private swarm an invite link names, or null when the link has no invite in it; IdentityError when malformed. */
export function parseInvite(link: string): SwarmConfig | null {
  if (typeof link !== 'string' || link.length > MAX_INVITE_CHARS) throw new IdentityError('secret', `An invite link has at most ${MAX_INVITE_CHARS} characters.`);
  const at = link.indexOf('#');
  if (at < 0) return null;
  const params = new URLSearchParams(link.slice(at + 1));
  const name = params.get('swarm');
  const secret = params.get('secret');
  if (name === null && secret === null) return null;
  if (name === null || secret === null) throw new IdentityError('secret', 'An invite link names both the swarm and its secret.');
  const bytes = fromBase64url(secret, SECRET_BYTES);
  if (!bytes || bytes.length !== SECRET_BYTES) throw new IdentityError('secret', `The invite's secret is not ${SECRET_BYTES} bytes of base64url.`);
  return privateSwarm(name, bytes);
}
