// Peer records: what a host tells the swarm about itself (id, model hash, layer span, throughput, free KV, protocol
// version, expiry), their validation when they arrive from another peer (JSON over the discovery channel, checked
// field by field: no casts), and the model hash; tables of them are record-table.ts. Pure data and functions, no
// I/O except the hash's header read.
//
// Model hash: sha256 of the GGUF file's bytes [0, dataOffset) — magic, version, all metadata (tokenizer included)
// and every tensor's name, type, shape and offset. Two copies of a file hash the same, it costs one Range read of
// the header (which a host reads anyway), and any re-quantisation, re-ordering or metadata change gives a new hash.
// It does not cover the tensor bytes themselves: a file corrupted after its header hashes like the good one (hashing
// gigabytes of weights would make every host download the whole model, which spans exist to avoid).

import { readBytes, type GgufFile } from '../model/gguf';
import { PROTOCOL_VERSION, type Span } from './protocol';

export interface PeerRecord {
  /** PeerJS id of the host */
  id: string;
  /** sha256 of the GGUF header, 64 lowercase hex digits */
  modelHash: string;
  span: Span;
  /** measured decode throughput of the span, tokens per second (0 = unknown) */
  throughput: number;
  /** free KV cache, in positions */
  freeKv: number;
  protocolVersion: number;
  /** ms since the epoch (Date.now()) after which the record is stale */
  expiresAt: number;
}

/**
 * Records live this long unless refreshed. 10 s: hosts re-announce every 3 s, so two lost announcements are fine, and
 * a host that died without a word drops out of routing within 10 s.
 */
export const RECORD_TTL_MS = 10_000;
/** Longest peer id we accept (PeerJS ids are short; protocol.ts allows 128 bytes in hello). */
const MAX_ID = 128;
/** A record's expiry may not be further ahead than this (a peer cannot pin itself in everyone's table). */
const MAX_TTL_MS = 5 * 60_000;

const HASH_RE = /^[0-9a-f]{64}$/;
const ID_RE = /^[A-Za-z0-9_-]{1,128}$/;

function isRecordObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function intIn(x: unknown, min: number, max: number): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max;
}

/** A record from the wire, or null when any field is missing, mistyped or out of range. */
export function parseRecord(x: unknown, now: number, maxLayers = 1024): PeerRecord | null {
  if (!isRecordObject(x)) return null;
  const { id, modelHash, span, throughput, freeKv, protocolVersion, expiresAt } = x;
  if (typeof id !== 'string' || id.length > MAX_ID || !ID_RE.test(id)) return null;
  if (typeof modelHash !== 'string' || !HASH_RE.test(modelHash)) return null;
  if (!isRecordObject(span)) return null;
  const { start, end } = span;
  if (!intIn(start, 0, maxLayers - 1) || !intIn(end, 1, maxLayers) || start >= end) return null;
  if (typeof throughput !== 'number' || !Number.isFinite(throughput) || throughput < 0 || throughput > 1e9) return null;
  if (!intIn(freeKv, 0, 0xffffffff)) return null;
  if (!intIn(protocolVersion, 1, 0xffff)) return null;
  if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt) || expiresAt <= now) return null;
  return { id, modelHash, span: { start, end }, throughput, freeKv, protocolVersion, expiresAt: Math.min(expiresAt, now + MAX_TTL_MS) };
}

/** Live records that serve `modelHash` with a protocol version we speak. */
export function usableRecords(records: Iterable<PeerRecord>, modelHash: string, now: number): PeerRecord[] {
  const out: PeerRecord[] = [];
  for (const r of records) if (r.modelHash === modelHash && r.protocolVersion === PROTOCOL_VERSION && r.expiresAt > now) out.push(r);
  return out;
}

/** sha256 of the GGUF header bytes [0, dataOffset), lowercase hex (see the header comment for why). */
export async function modelHashOf(file: GgufFile): Promise<string> {
  const header = await readBytes(file, 0, file.dataOffset);
  const copy = new Uint8Array(header); // digest wants an ArrayBuffer-backed view it owns
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', copy));
  let hex = '';
  for (const b of digest) hex += b.toString(16).padStart(2, '0');
  return hex;
}
