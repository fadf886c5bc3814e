// Key and secret files for Node participants. A key file keeps a host's identity across restarts (`flock host
// --key-file PATH`: created with mode 600 on first use, refused when others may read it); a secret file holds a
// private swarm's secret (`--secret-file PATH`, written by `flock secret`), read from a file so it never shows in a
// process list. Both must be readable by their owner only. Not here: identities themselves (swarm/identity.ts).

import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { fromBase64url, toBase64url } from '../swarm/base64url';
import { IdentityError } from '../swarm/errors';
import { findNonce, Identity, type KeyAlg } from '../swarm/identity';
import { newSecret, SECRET_BYTES } from '../swarm/swarm-config';

/** Refuse a file that anyone but its owner may read or write (Unix permissions; other systems have none to check). */
function checkPrivate(path: string, what: string): void {
  const mode = statSync(path).mode & 0o777;
  if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
    throw new IdentityError('key-file', `${what} ${path} has mode ${mode.toString(8)}: others may read it. Run chmod 600 ${path}.`);
  }
}

interface KeyFileJson {
  v: 1;
  alg: KeyAlg;
  /** raw public key, base64url */
  pub: string;
  /** PKCS#8 private key, base64url */
  pkcs8: string;
  nonce: number;
  /** the proof-of-work bits the nonce was found for */
  powBits: number;
}

function parseKeyFile(text: string, path: string): KeyFileJson {
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch {
    throw new IdentityError('key-file', `${path} is not a Flock key file (not JSON).`);
  }
  if (typeof x !== 'object' || x === null) throw new IdentityError('key-file', `${path} is not a Flock key file.`);
  const get = (k: string): unknown => Object.getOwnPropertyDescriptor(x, k)?.value;
  const [v, alg, pub, pkcs8, nonce, powBits] = ['v', 'alg', 'pub', 'pkcs8', 'nonce', 'powBits'].map(get);
  if (v !== 1 || (alg !== 'ed25519' && alg !== 'p256') || typeof pub !== 'string' || typeof pkcs8 !== 'string' ||
    typeof nonce !== 'number' || !Number.isSafeInteger(nonce) || typeof powBits !== 'number' || !Number.isInteger(powBits)) {
    throw new IdentityError('key-file', `${path} is not a Flock key file (fields missing or of the wrong type).`);
  }
  return { v, alg, pub, pkcs8, nonce, powBits };
}

function algParams(alg: KeyAlg): Algorithm | EcKeyImportParams {
  return alg === 'ed25519' ? { name: 'Ed25519' } : { name: 'ECDSA', namedCurve: 'P-256' };
}

/**
 * The identity in `path`, or a new one written there (mode 600) when the file does not exist. An existing key whose
 * proof of work is below `powBits` gets a new nonce (same key, same id), written back.
 */
export async function loadOrCreateKey(path: string, powBits: number): Promise<Identity> {
  if (!existsSync(path)) {
    const id = await Identity.generate({ powBits, extractable: true });
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey('pkcs8', id.secretKey));
    const json: KeyFileJson = { v: 1, alg: id.alg, pub: toBase64url(id.publicKey), pkcs8: toBase64url(pkcs8), nonce: id.nonce, powBits };
    writeFileSync(path, JSON.stringify(json, null, 1) + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600); // the umask may have narrowed it further; never wider
    return id;
  }
  checkPrivate(path, 'The key file');
  const k = parseKeyFile(readFileSync(path, 'utf8'), path);
  const pub = fromBase64url(k.pub, 65);
  const pkcs8 = fromBase64url(k.pkcs8, 512);
  if (!pub || !pkcs8) throw new IdentityError('key-file', `${path} holds a malformed key.`);
  let priv: CryptoKey;
  try {
    priv = await crypto.subtle.importKey('pkcs8', pkcs8, algParams(k.alg), false, ['sign']);
  } catch {
    throw new IdentityError('key-file', `${path} holds a private key that does not import as ${k.alg}.`);
  }
  if (k.powBits >= powBits) return Identity.restore(k.alg, pub, k.nonce, priv);
  const fresh = await Identity.restore(k.alg, pub, 0, priv);
  const nonce = await findNonce(fresh.public, powBits);
  writeFileSync(path, JSON.stringify({ ...k, nonce, powBits }, null, 1) + '\n', { mode: 0o600 });
  return Identity.restore(k.alg, pub, nonce, priv);
}

/** A private swarm's secret from `path`: base64url text of exactly 32 bytes, in a file only its owner may read. */
export function readSecretFile(path: string): Uint8Array<ArrayBuffer> {
  if (!existsSync(path)) throw new IdentityError('key-file', `No secret file at ${path}; write one with \`flock secret ${path}\`.`);
  checkPrivate(path, 'The secret file');
  const text = readFileSync(path, 'utf8').trim();
  const bytes = fromBase64url(text, SECRET_BYTES);
  if (!bytes || bytes.length !== SECRET_BYTES) {
    throw new IdentityError('secret', `${path} does not hold a swarm secret (${SECRET_BYTES} bytes of base64url, as \`flock secret\` writes).`);
  }
  return bytes;
}

/** `flock secret [PATH]`: a new secret, printed, or written to PATH with mode 600. */
export function writeNewSecret(path?: string): string {
  const text = toBase64url(newSecret());
  if (path) {
    writeFileSync(path, text + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
  }
  return text;
}
