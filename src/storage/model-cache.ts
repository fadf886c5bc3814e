// Downloaded model files on this device: fetched in chunks with HTTP Range requests into Cache Storage, with a
// manifest per file in IndexedDB (idb-keyval) that records which chunks are complete and each chunk's SHA-256.
// That gives: progress (bytes, rate, time left), cancel, resume after a reload (only missing chunks are fetched),
// an integrity check before use (verifyModel) that re-hashes every chunk against the digest recorded when it was
// written, drops the bad ones so the next download fetches only those again, then validates the GGUF header), and
// a ByteSource over the cache (CacheSource) so the engine reads just the bytes it asks for.
//
// Integrity choice: digests are computed when a chunk arrives (the server gives no content hash we could trust for
// Range slices). They catch storage damage and partial writes; a file that changes on the server between chunks is
// caught by its size and ETag, which every chunk response must repeat (If-Range style, checked here).
// Not here: deciding what model to run or the GPU; the embedded model is served by the service worker instead.

import { createStore, del, entries, get, set, type UseStore } from 'idb-keyval';
import { ModelFetchError } from '../model/errors';
import { openGguf } from '../model/gguf';
import type { ByteSource } from '../model/source';

export interface CachedModel {
  /** sha-256 of the URL (hex, 24 digits): the key of the manifest and the chunks */
  id: string;
  url: string;
  name: string;
  size: number;
  etag: string | null;
  chunkSize: number;
  /** SHA-256 (hex) of each complete chunk; null where the chunk is still missing */
  chunks: (string | null)[];
  complete: boolean;
  addedAt: number;
  completedAt: number | null;
}

export interface DownloadProgress {
  loaded: number;
  total: number;
  /** bytes per second over this download session */
  rate: number;
  /** seconds left at that rate (Infinity when unknown) */
  etaSeconds: number;
  /** bytes fetched from the network in this session */
  fetched: number;
}

export interface VerifyResult {
  ok: boolean;
  /** chunks whose bytes were missing or did not match their digest (now removed) */
  badChunks: number[];
  /** why the file cannot be used, when not ok */
  reason?: string;
}

const CACHE_NAME = 'flock-models-v1';
// Chunks: about 64 per file, between 64 KiB (small files still resume in pieces) and 16 MiB (a 1 GB file in 64
// requests; one chunk is held in memory while it streams in and while it is hashed).
const MIN_CHUNK = 64 * 1024;
const MAX_CHUNK = 16 * 1024 * 1024;

export function chunkSizeFor(size: number): number {
  const target = Math.ceil(size / 64);
  const pow2 = 2 ** Math.ceil(Math.log2(Math.max(1, target)));
  return Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, pow2));
}

let store: UseStore | undefined;
function db(): UseStore {
  store ??= createStore('flock-models', 'manifests');
  return store;
}

function hex(buf: ArrayBuffer): string {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function sha256(bytes: Uint8Array): Promise<string> {
  return hex(await crypto.subtle.digest('SHA-256', bytes as BufferSource));
}

export async function modelIdForUrl(url: string): Promise<string> {
  return (await sha256(new TextEncoder().encode(url))).slice(0, 24);
}

/** The Cache Storage key of one chunk (never fetched: Cache Storage only needs an http(s) URL as a key). */
function chunkKey(id: string, i: number): string {
  return `https://flock.invalid/models/${id}/${i}`;
}

function chunkLength(m: Pick<CachedModel, 'size' | 'chunkSize'>, i: number): number {
  return Math.min(m.chunkSize, m.size - i * m.chunkSize);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Check a manifest read back from IndexedDB; undefined when it is damaged. */
export function parseManifest(v: unknown): CachedModel | undefined {
  if (!isRecord(v)) return undefined;
  const { id, url, name, size, etag, chunkSize, chunks, complete, addedAt, completedAt } = v;
  if (typeof id !== 'string' || typeof url !== 'string' || typeof name !== 'string') return undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) return undefined;
  if (typeof chunkSize !== 'number' || !Number.isSafeInteger(chunkSize) || chunkSize <= 0) return undefined;
  if (!Array.isArray(chunks) || chunks.length !== Math.ceil(size / chunkSize)) return undefined;
  if (!chunks.every((c) => c === null || (typeof c === 'string' && /^[0-9a-f]{64}$/.test(c)))) return undefined;
  return {
    id,
    url,
    name,
    size,
    etag: typeof etag === 'string' ? etag : null,
    chunkSize,
    chunks: chunks.map((c) => (typeof c === 'string' ? c : null)),
    complete: complete === true && chunks.every((c) => c !== null),
    addedAt: typeof addedAt === 'number' ? addedAt : 0,
    completedAt: typeof completedAt === 'number' ? completedAt : null,
  };
}

export async function listModels(): Promise<CachedModel[]> {
  const out: CachedModel[] = [];
  for (const [, v] of await entries(db())) {
    const m = parseManifest(v);
    if (m) out.push(m);
  }
  return out.sort((a, b) => b.addedAt - a.addedAt);
}

export async function getModel(id: string): Promise<CachedModel | undefined> {
  return parseManifest(await get(id, db()));
}

export function downloadedBytes(m: CachedModel): number {
  return m.chunks.reduce((a, c, i) => (c ? a + chunkLength(m, i) : a), 0);
}

export async function deleteModel(id: string): Promise<void> {
  const m = await getModel(id);
  const cache = await caches.open(CACHE_NAME);
  if (m) await Promise.all(m.chunks.map((_, i) => cache.delete(chunkKey(id, i))));
  await del(id, db());
}

interface RangeAnswer {
  res: Response;
  total: number;
  etag: string | null;
}

async function fetchRange(url: string, start: number, end: number, signal: AbortSignal | undefined, fetchImpl: typeof fetch): Promise<RangeAnswer> {
  let res: Response;
  try {
    res = await fetchImpl(url, { headers: { Range: `bytes=${start}-${end}` }, signal, cache: 'no-store' });
  } catch (e) {
    if (signal?.aborted) throw signal.reason ?? e;
    throw new ModelFetchError(`Could not fetch ${url}: ${(e as Error).message}. Check the URL and your network.`);
  }
  if (res.status !== 206) {
    await res.body?.cancel();
    throw new ModelFetchError(
      res.ok
        ? `${url} answered ${res.status} without honouring the Range request; Flock needs a server that supports Range requests.`
        : `Fetching ${url} failed with HTTP ${res.status} ${res.statusText}.`,
    );
  }
  const total = Number(res.headers.get('content-range')?.match(/\/\s*(\d+)\s*$/)?.[1] ?? Number.NaN);
  if (!Number.isSafeInteger(total) || total <= 0) {
    await res.body?.cancel();
    throw new ModelFetchError(`${url} gave no usable Content-Range total; cannot download it in pieces.`);
  }
  return { res, total, etag: res.headers.get('etag') };
}

export interface DownloadOptions {
  name?: string;
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  fetchImpl?: typeof fetch;
}

/**
 * Download `url` into the cache, or finish an earlier partial download of it (only missing chunks are fetched).
 * If the file on the server changed (size or ETag differ from the manifest), the old chunks are dropped and the
 * download starts over. Resolves with the complete manifest; rejects with the signal's reason when cancelled
 * (chunks finished so far stay for a later resume).
 */
export async function downloadModel(url: string, opts: DownloadOptions = {}): Promise<CachedModel> {
  const fetchImpl = opts.fetchImpl ?? globalThis.fetch.bind(globalThis);
  const id = await modelIdForUrl(url);
  const cache = await caches.open(CACHE_NAME);
  let m = await getModel(id);
  // one byte tells the size and ETag (and that Range works) before any chunk is chosen
  const probe = await fetchRange(url, 0, 0, opts.signal, fetchImpl);
  await probe.res.body?.cancel();
  if (m && (m.size !== probe.total || (m.etag !== null && probe.etag !== null && m.etag !== probe.etag))) {
    await deleteModel(id);
    m = undefined;
  }
  if (!m) {
    const chunkSize = chunkSizeFor(probe.total);
    m = {
      id,
      url,
      name: opts.name ?? decodeURIComponent(new URL(url).pathname.split('/').pop() || url),
      size: probe.total,
      etag: probe.etag,
      chunkSize,
      chunks: new Array<string | null>(Math.ceil(probe.total / chunkSize)).fill(null),
      complete: false,
      addedAt: Date.now(),
      completedAt: null,
    };
    await set(id, m, db());
  }
  const model = m;
  const t0 = performance.now();
  let fetched = 0;
  let done = downloadedBytes(model);
  const report = (inFlight: number) => {
    const secs = (performance.now() - t0) / 1000;
    const rate = secs > 0.05 ? fetched / secs : 0;
    const loaded = done + inFlight;
    opts.onProgress?.({ loaded, total: model.size, rate, etaSeconds: rate > 0 ? (model.size - loaded) / rate : Infinity, fetched });
  };
  report(0);
  for (let i = 0; i < model.chunks.length; i++) {
    if (model.chunks[i] !== null) continue;
    const start = i * model.chunkSize;
    const len = chunkLength(model, i);
    const { res, total, etag } = await fetchRange(url, start, start + len - 1, opts.signal, fetchImpl);
    if (total !== model.size || (model.etag !== null && etag !== null && etag !== model.etag)) {
      await res.body?.cancel();
      throw new ModelFetchError(`${url} changed on the server while downloading (size or ETag differ). Delete it and download again.`);
    }
    const bytes = new Uint8Array(len);
    let got = 0;
    const reader = res.body!.getReader();
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      if (got + r.value.byteLength > len) {
        await reader.cancel();
        throw new ModelFetchError(`${url} sent more bytes than asked for in chunk ${i}.`);
      }
      bytes.set(r.value, got);
      got += r.value.byteLength;
      fetched += r.value.byteLength;
      report(got);
    }
    if (got !== len) throw new ModelFetchError(`${url} ended early: chunk ${i} has ${got} of ${len} bytes. Try again to resume.`);
    const digest = await sha256(bytes);
    await cache.put(chunkKey(id, i), new Response(bytes as BlobPart, { headers: { 'content-type': 'application/octet-stream' } }));
    model.chunks[i] = digest;
    done += len;
    await set(id, model, db());
    report(0);
  }
  model.complete = true;
  model.completedAt = Date.now();
  await set(id, model, db());
  return model;
}

/**
 * Check a cached model before use: every chunk present, of the right length and with its recorded SHA-256, then
 * the GGUF header and every tensor's bounds. Bad chunks are deleted and marked missing, so downloadModel fetches
 * only those again.
 */
export async function verifyModel(id: string, onProgress?: (checked: number, total: number) => void): Promise<VerifyResult> {
  const m = await getModel(id);
  if (!m) return { ok: false, badChunks: [], reason: 'This model is not in the cache.' };
  const cache = await caches.open(CACHE_NAME);
  const bad: number[] = [];
  let checked = 0;
  for (let i = 0; i < m.chunks.length; i++) {
    const want = m.chunks[i];
    const res = want ? await cache.match(chunkKey(id, i)) : undefined;
    const bytes = res ? new Uint8Array(await res.arrayBuffer()) : undefined;
    if (!want || !bytes || bytes.byteLength !== chunkLength(m, i) || (await sha256(bytes)) !== want) {
      bad.push(i);
      m.chunks[i] = null;
      await cache.delete(chunkKey(id, i));
    }
    checked += chunkLength(m, i);
    onProgress?.(checked, m.size);
  }
  if (bad.length > 0) {
    m.complete = false;
    m.completedAt = null;
    await set(id, m, db());
    return { ok: false, badChunks: bad, reason: `${bad.length} of ${m.chunks.length} pieces are missing or damaged.` };
  }
  try {
    await openGguf(new CacheSource(m));
  } catch (e) {
    return { ok: false, badChunks: [], reason: (e as Error).message };
  }
  return { ok: true, badChunks: [] };
}

/** Random access to a complete cached model; keeps the last two chunks it read in memory. */
export class CacheSource implements ByteSource {
  bytesFetched = 0;
  private cache: Promise<Cache> | undefined;
  private recent: { i: number; bytes: Uint8Array }[] = [];
  constructor(private readonly model: CachedModel) {}
  get name(): string {
    return this.model.name;
  }
  async size(): Promise<number> {
    return this.model.size;
  }

  private async chunk(i: number): Promise<Uint8Array> {
    const hit = this.recent.find((c) => c.i === i);
    if (hit) return hit.bytes;
    this.cache ??= caches.open(CACHE_NAME);
    const res = await (await this.cache).match(chunkKey(this.model.id, i));
    if (!res) throw new ModelFetchError(`${this.model.name}: piece ${i} is missing from the cache. Download the model again.`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.byteLength !== chunkLength(this.model, i)) {
      throw new ModelFetchError(`${this.model.name}: piece ${i} in the cache has the wrong size. Download the model again.`);
    }
    this.bytesFetched += bytes.byteLength;
    this.recent = [{ i, bytes }, ...this.recent].slice(0, 2);
    return bytes;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const end = Math.min(this.model.size, offset + Math.max(0, length));
    if (offset >= end) return new Uint8Array(0);
    const out = new Uint8Array(end - offset);
    const cs = this.model.chunkSize;
    for (let pos = offset; pos < end; ) {
      const i = Math.floor(pos / cs);
      const bytes = await this.chunk(i);
      const from = pos - i * cs;
      const n = Math.min(bytes.byteLength - from, end - pos);
      out.set(bytes.subarray(from, from + n), pos - offset);
      pos += n;
    }
    return out;
  }
}

export interface StorageInfo {
  usage: number;
  quota: number;
  persisted: boolean;
}

export async function storageInfo(): Promise<StorageInfo> {
  const est = (await navigator.storage?.estimate?.()) ?? {};
  const persisted = (await navigator.storage?.persisted?.()) ?? false;
  return { usage: est.usage ?? 0, quota: est.quota ?? 0, persisted };
}

/** Ask the browser to keep this site's storage under pressure; true when granted. */
export async function requestPersistentStorage(): Promise<boolean> {
  return (await navigator.storage?.persist?.()) ?? false;
}
