// Identities: every participant of a swarm has a signing key pair (WebCrypto: Ed25519 where the runtime has it,
// ECDSA P-256 otherwise), and its peer id is derived from the public key, so an id cannot be claimed by anyone
// without the key behind it. In a public swarm an identity also carries a small proof of work (a nonce that makes a
// hash of the key start with `bits` zero bits), so a fresh key per attack costs something. Records are signed with
// it (records.ts), links prove it (link-auth.ts), bans and quotas are keyed by it (stage-host.ts).
// Not here: storing keys (src/storage/identity-store.ts for a tab, src/cli/key-file.ts for Node).

import { InvalidArgumentError } from '../model/errors';
import { IdentityError } from './errors';

export type KeyAlg = 'ed25519' | 'p256';

/** What others see of an identity: the algorithm, the raw public key, the proof-of-work nonce. */
export interface PublicIdentity {
  alg: KeyAlg;
  /** raw public key: 32 bytes (Ed25519) or 65 (uncompressed P-256) */
  key: Uint8Array;
  /** proof of work: sha256(POW_TAG | alg | key | nonce as u64) starts with the swarm's number of zero bits */
  nonce: number;
}

/**
 * Zero bits a public swarm asks of an identity's proof of work. 17: about 130,000 hashes, measured at ~1.3 s on this
 * project's 2-core machine (WebCrypto in Node, batched) and less on a laptop; private swarms ask none (membership is
 * the secret).
 */
export const PUBLIC_POW_BITS = 17;

const POW_TAG = 'flock-id-v1';
const ID_TAG = 'flock-peer-v1';
/** Hex digits of the key hash that make a peer id: 32 = 128 bits, far beyond finding a key for someone's id. */
const ID_HEX = 32;
const KEY_BYTES: Record<KeyAlg, number> = { ed25519: 32, p256: 65 };

const enc = new TextEncoder();

function algParams(alg: KeyAlg): { gen: EcKeyGenParams | Algorithm; sign: EcdsaParams | Algorithm; imp: EcKeyImportParams | Algorithm } {
  return alg === 'ed25519'
    ? { gen: { name: 'Ed25519' }, sign: { name: 'Ed25519' }, imp: { name: 'Ed25519' } }
    : { gen: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' }, imp: { name: 'ECDSA', namedCurve: 'P-256' } };
}

function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', data));
}

/** Check an identity's shape (before any crypto): a known algorithm and a key of its size. */
export function checkPublicIdentity(p: PublicIdentity): void {
  if (p.alg !== 'ed25519' && p.alg !== 'p256') throw new IdentityError('bad-key', `Unknown key type ${JSON.stringify(p.alg)}; Flock uses ed25519 or p256.`);
  if (!(p.key instanceof Uint8Array) || p.key.length !== KEY_BYTES[p.alg]) {
    throw new IdentityError('bad-key', `A ${p.alg} public key has ${KEY_BYTES[p.alg]} bytes, not ${p.key?.length}.`);
  }
  if (!Number.isSafeInteger(p.nonce) || p.nonce < 0) throw new IdentityError('bad-key', `Proof-of-work nonce ${p.nonce} is not a whole number >= 0.`);
}

/** The peer id of a public key: 'f' + the first 32 hex digits of sha256(tag | alg | key). */
export async function peerIdOf(p: Pick<PublicIdentity, 'alg' | 'key'>): Promise<string> {
  return `f${hex(await sha256(concat(enc.encode(`${ID_TAG}|${p.alg}|`), p.key))).slice(0, ID_HEX)}`;
}

/** The key id behind a PeerJS id: the id itself, or what comes before a '-n' suffix (taken ids get one). */
export function keyIdOf(peerId: string): string {
  const dash = peerId.indexOf('-');
  return dash < 0 ? peerId : peerId.slice(0, dash);
}

function powInput(p: Pick<PublicIdentity, 'alg' | 'key'>, nonce: number): Uint8Array<ArrayBuffer> {
  const n = new Uint8Array(8);
  new DataView(n.buffer).setBigUint64(0, BigInt(nonce), true);
  return concat(enc.encode(`${POW_TAG}|${p.alg}|`), p.key, n);
}

function leadingZeroBits(h: Uint8Array): number {
  let bits = 0;
  for (const b of h) {
    if (b === 0) {
      bits += 8;
      continue;
    }
    return bits + Math.clz32(b) - 24;
  }
  return bits;
}

/** Whether the identity's nonce proves `bits` of work. */
export async function powValid(p: PublicIdentity, bits: number): Promise<boolean> {
  if (bits <= 0) return true;
  return leadingZeroBits(await sha256(powInput(p, p.nonce))) >= bits;
}

/** Find a nonce that proves `bits` of work for the key (hashes in batches: WebCrypto's digest is asynchronous). */
export async function findNonce(p: Pick<PublicIdentity, 'alg' | 'key'>, bits: number, signal?: AbortSignal): Promise<number> {
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new InvalidArgumentError(`Proof-of-work bits ${bits} must be in [0, 32].`);
  if (bits === 0) return 0;
  const BATCH = 256;
  for (let base = 0; ; base += BATCH) {
    signal?.throwIfAborted();
    const hashes = await Promise.all(Array.from({ length: BATCH }, (_, i) => sha256(powInput(p, base + i))));
    const hit = hashes.findIndex((h) => leadingZeroBits(h) >= bits);
    if (hit >= 0) return base + hit;
  }
}

/** The algorithm this runtime signs with: Ed25519 when WebCrypto has it, else ECDSA P-256. */
let preferred: Promise<KeyAlg> | undefined;
export function preferredAlg(): Promise<KeyAlg> {
  preferred ??= crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']).then(
    () => 'ed25519' as const,
    () => 'p256' as const,
  );
  return preferred;
}

/** A participant's identity: its key pair, its proof of work and its peer id. */
export class Identity {
  private constructor(
    readonly alg: KeyAlg,
    readonly publicKey: Uint8Array,
    readonly nonce: number,
    readonly id: string,
    private readonly privateKey: CryptoKey,
  ) {}

  /** A new key pair with `powBits` of work (0 for private swarms). The private key is not extractable unless asked. */
  static async generate(opts: { powBits: number; extractable?: boolean; alg?: KeyAlg; signal?: AbortSignal }): Promise<Identity> {
    const alg = opts.alg ?? (await preferredAlg());
    const pair = (await crypto.subtle.generateKey(algParams(alg).gen, opts.extractable ?? false, ['sign', 'verify'])) as CryptoKeyPair;
    const key = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
    const nonce = await findNonce({ alg, key }, opts.powBits, opts.signal);
    return new Identity(alg, key, nonce, await peerIdOf({ alg, key }), pair.privateKey);
  }

  /** An identity from a stored private key (a CryptoKey kept in IndexedDB, or one imported from a key file). */
  static async restore(alg: KeyAlg, publicKey: Uint8Array, nonce: number, privateKey: CryptoKey): Promise<Identity> {
    checkPublicIdentity({ alg, key: publicKey, nonce });
    return new Identity(alg, publicKey, nonce, await peerIdOf({ alg, key: publicKey }), privateKey);
  }

  get public(): PublicIdentity {
    return { alg: this.alg, key: this.publicKey, nonce: this.nonce };
  }

  /** The private key, for storage (a tab keeps the CryptoKey itself; a key file exports it when extractable). */
  get secretKey(): CryptoKey {
    return this.privateKey;
  }

  async sign(data: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.sign(algParams(this.alg).sign, this.privateKey, data));
  }
}

/** Whether `sig` is `p`'s signature of `data` (false for any malformed input: never throws on a peer's bytes). */
export async function verifySignature(p: PublicIdentity, data: Uint8Array<ArrayBuffer>, sig: Uint8Array<ArrayBuffer>): Promise<boolean> {
  try {
    checkPublicIdentity(p);
    const params = algParams(p.alg);
    const key = await crypto.subtle.importKey('raw', new Uint8Array(p.key), params.imp, false, ['verify']);
    return await crypto.subtle.verify(params.sign, key, sig, data);
  } catch {
    return false;
  }
}
