// This tab's identity as a host (Contribute mode), kept in IndexedDB so the tab keeps its peer id, and with it its
// standing with clients, across reloads. The private key is a non-extractable CryptoKey: IndexedDB stores it as it
// is, and no script can read its bytes out. A stored key whose proof of work is below what a swarm asks gets a new
// nonce (same key, same id). A client does not use this: it takes a fresh identity per chat.
// Not here: identities themselves (src/swarm/identity.ts).

import { createStore, get, set, type UseStore } from 'idb-keyval';
import { fromBase64url, toBase64url } from '../swarm/base64url';
import { findNonce, Identity } from '../swarm/identity';

let store: UseStore | undefined;
function db(): UseStore {
  store ??= createStore('flock-identity', 'keys');
  return store;
}

interface Stored {
  alg: 'ed25519' | 'p256';
  pub: string;
  nonce: number;
  powBits: number;
  privateKey: CryptoKey;
}

function isStored(x: unknown): x is Stored {
  if (typeof x !== 'object' || x === null) return false;
  const get = (k: string): unknown => Object.getOwnPropertyDescriptor(x, k)?.value;
  return (get('alg') === 'ed25519' || get('alg') === 'p256') && typeof get('pub') === 'string' && Number.isSafeInteger(get('nonce')) &&
    Number.isInteger(get('powBits')) && get('privateKey') instanceof CryptoKey;
}

/** The tab's host identity with at least `powBits` of work: the stored one, or a new one (stored). */
export async function hostIdentity(powBits: number): Promise<Identity> {
  const s: unknown = await get('host', db());
  if (isStored(s)) {
    const pub = fromBase64url(s.pub, 65);
    if (pub) {
      if (s.powBits >= powBits) return Identity.restore(s.alg, pub, s.nonce, s.privateKey);
      const nonce = await findNonce({ alg: s.alg, key: pub }, powBits);
      await set('host', { ...s, nonce, powBits }, db());
      return Identity.restore(s.alg, pub, nonce, s.privateKey);
    }
  }
  const id = await Identity.generate({ powBits });
  const fresh: Stored = { alg: id.alg, pub: toBase64url(id.publicKey), nonce: id.nonce, powBits, privateKey: id.secretKey };
  await set('host', fresh, db());
  return id;
}
