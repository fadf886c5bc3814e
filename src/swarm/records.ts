// Peer records: what a host tells the swarm about itself (model hash, layer span, throughput, free KV, protocol
// version, expiry), signed by the host's own key (identity.ts) with a sequence number: anyone may pass a record on,
// nobody but its owner can make or change one, and a record replaces another of the same key only with a higher
// sequence (a replayed old record is ignored). Validation happens in two steps: parseRecord checks a record's fields
// (JSON from a peer: no casts) and caps what a host says about itself; verifyRecord checks the key behind the id,
// the proof of work and the signature. Tables of records are record-table.ts.
//
// Model hash: sha256 of the GGUF file's bytes [0, dataOffset) — magic, version, all metadata (tokenizer included)
// and every tensor's name, type, shape and offset. Two copies of a file hash the same, it costs one Range read of
// the header (which a host reads anyway), and any re-quantisation, re-ordering or metadata change gives a new hash.
// It does not cover the tensor bytes themselves: a file corrupted after its header hashes like the good one (hashing
// gigabytes of weights would make every host download the whole model, which spans exist to avoid). The tensors'
// bytes are what a pinned manifest covers (model/manifest.ts): a host checks its span's tensors against it.

import type { GgufFile } from '../model/gguf';
import { headerHashOf } from '../model/manifest';
import { fromBase64url, toBase64url } from './base64url';
import { checkPublicIdentity, keyIdOf, peerIdOf, powValid, verifySignature, type Identity, type KeyAlg, type PublicIdentity } from './identity';
import { PROTOCOL_VERSION, type Span } from './protocol';

/** What a host says about what it serves (the part it fills in; the rest is its identity and signature). */
export interface RecordFields {
  modelHash: string;
  span: Span;
  /** measured decode throughput of the span, tokens per second (0 = unknown) */
  throughput: number;
  /** free KV cache, in positions */
  freeKv: number;
  protocolVersion: number;
}

export interface PeerRecord extends RecordFields {
  /** the PeerJS id the host listens on: its key id (identity.ts peerIdOf), or that with a '-n' suffix */
  id: string;
  alg: KeyAlg;
  /** raw public key, base64url */
  pub: string;
  /** the identity's proof-of-work nonce */
  nonce: number;
  /** the owner's sequence number: strictly increasing per key (a millisecond clock that never goes back) */
  seq: number;
  /** ms since the epoch (Date.now()) after which the record is stale */
  expiresAt: number;
  /** the owner's signature of recordBytes, base64url */
  sig: string;
}

/** A host leaving on purpose, signed: records of its key up to `seq` are gone (record-table.ts). */
export interface Departure {
  id: string;
  alg: KeyAlg;
  pub: string;
  nonce: number;
  seq: number;
  sig: string;
}

/**
 * Records live this long unless refreshed. 10 s: hosts re-announce every 3 s, so two lost announcements are fine, and
 * a host that died without a word drops out of routing within 10 s.
 */
export const RECORD_TTL_MS = 10_000;
/** Longest peer id we accept (a key id of 33 characters and a short suffix; protocol.ts allows 128 in hello). */
const MAX_ID = 128;
/** A record's expiry may not be further ahead than this (a peer cannot pin itself in everyone's table). */
const MAX_TTL_MS = 5 * 60_000;
/** The most a host may claim, tokens per second: higher claims are refused. 100,000: above any span on any GPU. */
export const MAX_CLAIMED_THROUGHPUT = 100_000;
/** The most free KV positions a host may claim. 2^26: 64 M positions. */
export const MAX_CLAIMED_FREE_KV = 2 ** 26;

const HASH_RE = /^[0-9a-f]{64}$/;
const ID_RE = /^[A-Za-z0-9_-]{1,128}$/;
const RECORD_TAG = 'flock-record-v1';
const DEPARTURE_TAG = 'flock-departure-v1';

function isRecordObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function intIn(x: unknown, min: number, max: number): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max;
}

function parseKey(x: Record<string, unknown>): { id: string; alg: KeyAlg; pub: string; nonce: number; seq: number; sig: string } | null {
  const { id, alg, pub, nonce, seq, sig } = x;
  if (typeof id !== 'string' || id.length > MAX_ID || !ID_RE.test(id)) return null;
  if (alg !== 'ed25519' && alg !== 'p256') return null;
  if (typeof pub !== 'string' || typeof sig !== 'string' || !fromBase64url(pub, 65) || !fromBase64url(sig, 128)) return null;
  if (!intIn(nonce, 0, Number.MAX_SAFE_INTEGER) || !intIn(seq, 0, Number.MAX_SAFE_INTEGER)) return null;
  return { id, alg, pub, nonce, seq, sig };
}

/** A record from the wire, or null when any field is missing, mistyped or out of range. Signatures: verifyRecord. */
export function parseRecord(x: unknown, now: number, maxLayers = 1024): PeerRecord | null {
  if (!isRecordObject(x)) return null;
  const k = parseKey(x);
  if (!k) return null;
  const { modelHash, span, throughput, freeKv, protocolVersion, expiresAt } = x;
  if (typeof modelHash !== 'string' || !HASH_RE.test(modelHash)) return null;
  if (!isRecordObject(span)) return null;
  const { start, end } = span;
  if (!intIn(start, 0, maxLayers - 1) || !intIn(end, 1, maxLayers) || start >= end) return null;
  if (typeof throughput !== 'number' || !Number.isFinite(throughput) || throughput < 0 || throughput > MAX_CLAIMED_THROUGHPUT) return null;
  if (!intIn(freeKv, 0, MAX_CLAIMED_FREE_KV)) return null;
  if (!intIn(protocolVersion, 1, 0xffff)) return null;
  if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt) || expiresAt <= now) return null;
  return { ...k, modelHash, span: { start, end }, throughput, freeKv, protocolVersion, expiresAt: Math.min(expiresAt, now + MAX_TTL_MS) };
}

/** A departure from the wire, or null. */
export function parseDeparture(x: unknown): Departure | null {
  return isRecordObject(x) && x.gone === true ? parseKey(x) : null;
}

const enc = new TextEncoder();

/** The bytes a record's signature covers (every field but the signature, in a fixed order). */
export function recordBytes(r: Omit<PeerRecord, 'sig'>): Uint8Array<ArrayBuffer> {
  return enc.encode(JSON.stringify([RECORD_TAG, r.id, r.alg, r.pub, r.nonce, r.seq, r.modelHash, r.span.start, r.span.end, r.throughput, r.freeKv, r.protocolVersion, r.expiresAt]));
}

function departureBytes(d: Omit<Departure, 'sig'>): Uint8Array<ArrayBuffer> {
  return enc.encode(JSON.stringify([DEPARTURE_TAG, d.id, d.alg, d.pub, d.nonce, d.seq]));
}

/** A sequence number: the clock, or one more than the last one given, whichever is later (never goes back). */
let lastSeq = 0;
export function nextSeq(): number {
  lastSeq = Math.max(lastSeq + 1, Date.now());
  return lastSeq;
}

/** The owner signs its record: `id` is the PeerJS id it listens on (its key id, maybe with a suffix). */
export async function signRecord(identity: Identity, id: string, fields: RecordFields, expiresAt: number): Promise<PeerRecord> {
  const unsigned = { id, alg: identity.alg, pub: toBase64url(identity.publicKey), nonce: identity.nonce, seq: nextSeq(), ...fields, expiresAt };
  return { ...unsigned, sig: toBase64url(await identity.sign(recordBytes(unsigned))) };
}

/** The owner signs its departure. */
export async function signDeparture(identity: Identity, id: string): Promise<Departure> {
  const unsigned = { id, alg: identity.alg, pub: toBase64url(identity.publicKey), nonce: identity.nonce, seq: nextSeq() };
  return { ...unsigned, sig: toBase64url(await identity.sign(departureBytes(unsigned))) };
}

/** The public identity a record or departure names (null when its key cannot be decoded). */
export function publicOf(r: Pick<PeerRecord, 'alg' | 'pub' | 'nonce'>): PublicIdentity | null {
  const key = fromBase64url(r.pub, 65);
  if (!key) return null;
  const p: PublicIdentity = { alg: r.alg, key, nonce: r.nonce };
  try {
    checkPublicIdentity(p);
  } catch {
    return null;
  }
  return p;
}

/** Verdicts already reached, by what was signed and the signature (a table sees the same record every round). */
const verified = new Map<string, boolean>();
const MAX_VERIFIED = 16_384;
const dec = new TextDecoder();

async function verifySigned(r: { id: string; alg: KeyAlg; pub: string; nonce: number; sig: string }, bytes: Uint8Array<ArrayBuffer>, powBits: number): Promise<boolean> {
  const cacheKey = `${powBits}|${r.sig}|${dec.decode(bytes)}`;
  const hit = verified.get(cacheKey);
  if (hit !== undefined) return hit;
  const p = publicOf(r);
  const sig = fromBase64url(r.sig, 128);
  const ok = p !== null && sig !== null && keyIdOf(r.id) === (await peerIdOf(p)) && (await powValid(p, powBits)) && (await verifySignature(p, bytes, sig));
  if (verified.size >= MAX_VERIFIED) verified.clear();
  verified.set(cacheKey, ok);
  return ok;
}

/** Whether a record is its owner's: the id is its key's, the key carries `powBits` of work, the signature holds. */
export function verifyRecord(r: PeerRecord, powBits: number): Promise<boolean> {
  return verifySigned(r, recordBytes(r), powBits);
}

export function verifyDeparture(d: Departure, powBits: number): Promise<boolean> {
  return verifySigned(d, departureBytes(d), powBits);
}

/** Live records that serve `modelHash` with a protocol version we speak. */
export function usableRecords(records: Iterable<PeerRecord>, modelHash: string, now: number): PeerRecord[] {
  const out: PeerRecord[] = [];
  for (const r of records) if (r.modelHash === modelHash && r.protocolVersion === PROTOCOL_VERSION && r.expiresAt > now) out.push(r);
  return out;
}

/** sha256 of the GGUF header bytes [0, dataOffset), lowercase hex (see the header comment for why; model/manifest.ts
 *  headerHashOf computes it, and a pinned manifest adds the hash of every tensor's bytes). */
export function modelHashOf(file: GgufFile): Promise<string> {
  return headerHashOf(file);
}
