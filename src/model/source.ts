// Where model bytes come from: a random-access byte source over an http(s) URL (Range requests) or a Blob/File.
// Every source counts the bytes it actually fetched, so tests and the UI can prove that a Stage downloads only what
// it needs. The Node file source lives in source-file.ts so browser bundles never see `node:fs`.

import { ModelFetchError } from './errors';

/** How much of a model is loaded (its bytes onto the GPU, or into memory), for progress bars. */
export interface LoadProgress {
  /** weight bytes read and uploaded so far, of `total` */
  loaded: number;
  total: number;
  /** GPU pipelines compiled so far, of `pipelines` known so far (they compile while later weights upload) */
  compiled?: number;
  pipelines?: number;
}

export interface ByteSource {
  /** A short human-readable name (URL, file name) used in error messages. */
  readonly name: string;
  /** Total size in bytes. */
  size(): Promise<number>;
  /** Exactly `length` bytes at `offset` (fewer only at the end of the source). */
  read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /** Bytes fetched so far from the underlying storage or network. */
  readonly bytesFetched: number;
}

export class BlobSource implements ByteSource {
  bytesFetched = 0;
  constructor(
    private readonly blob: Blob,
    readonly name = blob instanceof File ? blob.name : 'blob',
  ) {}
  async size(): Promise<number> {
    return this.blob.size;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    const bytes = new Uint8Array(await this.blob.slice(offset, offset + length).arrayBuffer());
    this.bytesFetched += bytes.byteLength;
    return bytes;
  }
}

/** Range requests against an http(s) URL. A server that ignores Range gets a named error, not a silent full download. */
export class HttpSource implements ByteSource {
  bytesFetched = 0;
  private total: number | undefined;
  constructor(
    readonly url: string,
    private readonly fetchImpl: typeof fetch = globalThis.fetch.bind(globalThis),
  ) {}
  get name(): string {
    return this.url;
  }

  async size(): Promise<number> {
    if (this.total === undefined) await this.read(0, 1);
    return this.total as number;
  }

  async read(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (length <= 0) return new Uint8Array(0);
    let res: Response;
    try {
      // no-store: model bytes bypass the browser's HTTP cache (Flock keeps downloads in its own cache, and a cached
      // slice makes the browser revalidate it with an extra request before each overlapping read)
      res = await this.fetchImpl(this.url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` }, signal, cache: 'no-store' });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw new ModelFetchError(`Could not fetch ${this.url}: ${(e as Error).message}. Check the URL and your network.`);
    }
    if (res.status === 416) {
      await res.body?.cancel();
      this.total ??= offset;
      return new Uint8Array(0);
    }
    if (res.status !== 206) {
      await res.body?.cancel();
      throw new ModelFetchError(
        res.ok
          ? `${this.url} answered ${res.status} without honouring the Range request; Flock needs a server that supports Range requests.`
          : `Fetching ${this.url} failed with HTTP ${res.status} ${res.statusText}.`,
      );
    }
    const encoding = res.headers.get('content-encoding');
    if (encoding && encoding !== 'identity') {
      // a compressed 206 body's byte offsets are not the file's: the server would hand us the wrong bytes
      await res.body?.cancel();
      throw new ModelFetchError(`${this.url} answered a Range request with a ${encoding}-encoded body; serve .gguf files without compression.`);
    }
    const range = res.headers.get('content-range')?.match(/bytes\s+(\d+)-(\d+)\/(\d+|\*)/);
    if (range && range[3] !== '*') this.total = Number(range[3]);
    const bytes = new Uint8Array(await res.arrayBuffer());
    this.bytesFetched += bytes.byteLength;
    const expected = range ? Number(range[2]) - Number(range[1]) + 1 : length;
    if ((range && Number(range[1]) !== offset) || bytes.byteLength !== expected) {
      throw new ModelFetchError(
        `${this.url} answered bytes ${range?.[1] ?? '?'}-${range?.[2] ?? '?'} (${bytes.byteLength} bytes) to a request for ${offset}-${offset + length - 1}.`,
      );
    }
    return bytes;
  }
}

/** Open a URL or a Blob; Node file paths go through `openFileSource` in source-file.ts. */
export function openWebSource(spec: string | Blob): ByteSource {
  if (typeof spec !== 'string') return new BlobSource(spec);
  if (/^https?:\/\//i.test(spec) || spec.startsWith('/') || spec.startsWith('.')) {
    return new HttpSource(new URL(spec, globalThis.location?.href ?? 'http://localhost/').href);
  }
  throw new ModelFetchError(`"${spec}" is not an http(s) URL.`);
}
