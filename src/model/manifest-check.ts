// Checking tensors against a model's pinned manifest while they load, without reading them twice: a ByteSource over
// the file's own that passes every read through and hashes the bytes of the tensors being checked on the way (a
// tensor read in pieces — 16 MiB upload pieces, phi3's fused Q/K/V read as three row ranges — is put together first,
// as WebCrypto hashes only whole buffers, so at most one tensor per piece in flight is held). finish() reads any
// checked tensor the load did not read whole, compares, and throws ManifestMismatchError naming the tensors that
// differ. A model with no pinned manifest passes through untouched and finishes as 'unpinned'.
// Used by a host for its span (src/swarm/serve.ts), a swarm client for its Head (src/swarm/open-client.ts) and
// Local mode for the whole file (the engine worker). Not here: the manifest itself (manifest.ts).

import { InvalidArgumentError, ManifestMismatchError, ModelFetchError } from './errors';
import { readBytes, withSource, type GgufFile } from './gguf';
import { differingTensors, headerHashOf, mismatchError, pinnedManifest, sha256Hex, tensorRange, type Manifest } from './manifest';
import type { ByteSource } from './source';

/** What a load established about its weights: checked against the pinned manifest, or no manifest is pinned. */
export type WeightsStatus = 'verified' | 'unpinned';

export interface WeightsCheck {
  /** the manifest checked against (undefined: none pinned, nothing is checked; the header is still served from memory) */
  readonly manifest: Manifest | undefined;
  /** load from this: the file's source, with the checked tensors hashed as they are read */
  readonly source: ByteSource;
  /** the opened file over `source` (for loaders that take a GgufFile) */
  readonly file: GgufFile;
  /** bytes finish() had to read again because the load did not read them (0 when the load read every checked tensor) */
  readonly reread: number;
  /** 'verified' when every checked tensor matches, 'unpinned' without a manifest; ManifestMismatchError otherwise */
  finish(signal?: AbortSignal): Promise<WeightsStatus>;
}

/** One tensor being checked: its place in the file, its bytes gathered so far, the hash once all of them came. */
interface Pending {
  name: string;
  start: number;
  end: number;
  /** the tensor's bytes while it arrives in pieces */
  buf?: Uint8Array;
  /** ranges of the tensor received, relative to `start`, sorted and merged */
  got: [number, number][];
  digest?: Promise<string>;
}

/** Add [lo, hi) to sorted, merged ranges. */
function addRange(ranges: [number, number][], lo: number, hi: number): [number, number][] {
  const out: [number, number][] = [];
  let cur: [number, number] = [lo, hi];
  for (const r of ranges) {
    if (r[1] < cur[0]) out.push(r);
    else if (r[0] > cur[1]) {
      out.push(cur);
      cur = r;
    } else cur = [Math.min(r[0], cur[0]), Math.max(r[1], cur[1])];
  }
  out.push(cur);
  return out.sort((a, b) => a[0] - b[0]);
}

class HashingSource implements ByteSource {
  reread = 0;
  constructor(
    private readonly inner: ByteSource,
    /** bytes [0, header.length) of the file, served from memory (a loader that opens the file again reads them) */
    private readonly header: Uint8Array,
    /** sorted by start; tensors that overlap (no sound file has any) may be missed here and are read in rest() */
    readonly pending: Pending[],
  ) {}

  get name(): string {
    return this.inner.name;
  }
  get bytesFetched(): number {
    return this.inner.bytesFetched;
  }
  size(): Promise<number> {
    return this.inner.size();
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (offset + length <= this.header.length) return this.header.slice(offset, offset + length);
    const bytes = await this.inner.read(offset, length, signal);
    this.observe(offset, bytes);
    return bytes;
  }

  /** Hash what `bytes` (at `offset`) hold of the tensors being checked. */
  private observe(offset: number, bytes: Uint8Array): void {
    const end = offset + bytes.length;
    // the first tensor that ends after `offset` (binary search: a 70B model checks ~700 tensors per span)
    let lo = 0;
    let hi = this.pending.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.pending[mid].end <= offset) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.pending.length && this.pending[i].start < end; i++) {
      const p = this.pending[i];
      if (p.digest) continue; // already whole: a second read of it changes nothing
      const a = Math.max(offset, p.start);
      const b = Math.min(end, p.end);
      if (a === p.start && b === p.end) {
        this.hash(p, bytes.subarray(a - offset, b - offset)); // one read held the whole tensor
        continue;
      }
      p.buf ??= new Uint8Array(p.end - p.start);
      p.buf.set(bytes.subarray(a - offset, b - offset), a - p.start);
      p.got = addRange(p.got, a - p.start, b - p.start);
      if (p.got.length === 1 && p.got[0][0] === 0 && p.got[0][1] === p.end - p.start) this.hash(p, p.buf);
    }
  }

  private hash(p: Pending, bytes: Uint8Array): void {
    p.digest = sha256Hex(bytes); // WebCrypto copies the bytes now: the caller keeps using them, the piece buffer goes
    p.digest.catch(() => {}); // awaited in finish(); a load that stops early must not leave it unhandled
    p.buf = undefined;
    p.got = [];
  }

  /** Hash every checked tensor the load did not read whole, reading it now. */
  async rest(signal?: AbortSignal): Promise<void> {
    for (const p of this.pending) {
      if (p.digest) continue;
      signal?.throwIfAborted();
      const bytes = await this.inner.read(p.start, p.end - p.start, signal);
      if (bytes.length !== p.end - p.start) {
        throw new ModelFetchError(`${this.inner.name}: wanted ${p.end - p.start} bytes of ${p.name}, got ${bytes.length}: the file is truncated.`);
      }
      this.reread += bytes.length;
      this.hash(p, bytes);
    }
  }
}

/**
 * What a load of a model whose header hashes to `headerHash` established about its weights once its checked tensors
 * loaded without a ManifestMismatchError: 'verified' when a manifest is pinned for it, else 'unpinned'.
 */
export function weightsStatusOf(headerHash: string): WeightsStatus {
  return pinnedManifest(headerHash) ? 'verified' : 'unpinned';
}

/**
 * Prepare to check the tensors `names` of `file` while they load: against `manifest`, or by default the manifest
 * pinned for the file's header hash. Without one, loading goes on as it would and finish() says 'unpinned'.
 * InvalidArgumentError for a name the file lacks; ManifestMismatchError when the header is not the manifest's.
 */
export async function checkWhileLoading(file: GgufFile, names: Iterable<string>, opts: { manifest?: Manifest } = {}): Promise<WeightsCheck> {
  const headerHash = await headerHashOf(file);
  const manifest = opts.manifest ?? pinnedManifest(headerHash);
  const header = await readBytes(file, 0, file.dataOffset);
  if (!manifest) {
    // nothing to check; the header is still served from memory to a loader that opens the file again
    const source = new HashingSource(file.source, header, []);
    return { manifest, source, file: withSource(file, source), reread: 0, finish: async () => 'unpinned' };
  }
  if (manifest.headerHash !== headerHash) {
    throw new ManifestMismatchError(`${file.source.name} is not the file this manifest describes: its header hashes differently.`);
  }
  const pending: Pending[] = [];
  for (const name of new Set(names)) {
    const t = file.tensors.get(name);
    if (!t) throw new InvalidArgumentError(`${file.source.name} has no tensor ${name} to check.`);
    const { offset, length } = tensorRange(file, t);
    pending.push({ name, start: offset, end: offset + length, got: [] });
  }
  pending.sort((a, b) => a.start - b.start);
  const source = new HashingSource(file.source, header, pending);
  return {
    manifest, source, file: withSource(file, source),
    get reread() {
      return source.reread;
    },
    finish: async (signal) => {
      await source.rest(signal);
      const digests: [string, string][] = [];
      for (const p of pending) digests.push([p.name, await p.digest!]);
      const bad = differingTensors(manifest, digests);
      if (bad.length > 0) throw mismatchError(file.source.name, bad);
      return 'verified';
    },
  };
}
