// Reading a GGUF file from any ByteSource: the header through @huggingface/gguf, then validation of every tensor's
// place in the file before anything is allocated, then reads of single tensors' bytes on demand.
// Not here: what the tensors mean (config.ts) or how they are computed with.

import { gguf, type GGUFParseOutput } from '@huggingface/gguf';
import { GgufFormatError, TensorBoundsError } from './errors';
import type { ByteSource } from './source';

export type Metadata = Record<string, unknown>;

export interface TensorEntry {
  name: string;
  /** ggml order: dims[0] is the contiguous (row) length */
  dims: number[];
  /** GGML type id (see quant.ts) */
  type: number;
  /** absolute byte offset in the file */
  offset: number;
  /** element count */
  nElems: number;
}

export interface GgufFile {
  source: ByteSource;
  metadata: Metadata;
  tensors: Map<string, TensorEntry>;
  fileSize: number;
  /** bytes from the start of the file to the first tensor's data */
  dataOffset: number;
}

// A header parse reads the file in chunks of this size (the @huggingface/gguf reader asks for 2 MB ranges); we keep
// those chunks so tensor reads that fall inside them are not fetched twice.
const MAGIC = 0x46554747; // "GGUF" little endian

/** Serve the reader's Range requests from a ByteSource, keeping what was fetched. */
class HeaderCache {
  readonly chunks: { offset: number; bytes: Uint8Array }[] = [];
  constructor(
    private readonly source: ByteSource,
    private readonly fileSize: number,
  ) {}

  fetch = async (_uri: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const range = new Headers(init?.headers).get('range') ?? '';
    const m = /bytes=(\d+)-(\d+)/.exec(range);
    if (!m) throw new GgufFormatError('internal: header reader asked for a range without Range header');
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), this.fileSize - 1);
    if (start >= this.fileSize) {
      throw new GgufFormatError(
        `${this.source.name} ends (at ${this.fileSize} bytes) inside its GGUF header: the file is truncated. Download it again.`,
      );
    }
    const bytes = await this.source.read(start, end - start + 1);
    if (start === 0 && (bytes.length < 4 || new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true) !== MAGIC)) {
      throw new GgufFormatError(`${this.source.name} is not a GGUF file (its first bytes are not "GGUF"). Choose a .gguf model file.`);
    }
    this.chunks.push({ offset: start, bytes });
    return new Response(bytes as BlobPart, {
      status: 206,
      headers: { 'content-range': `bytes ${start}-${end}/${this.fileSize}` },
    });
  };

  /** The bytes [offset, offset+length) if one cached chunk holds them all. */
  slice(offset: number, length: number): Uint8Array | undefined {
    for (const c of this.chunks) {
      if (offset >= c.offset && offset + length <= c.offset + c.bytes.length) {
        return c.bytes.subarray(offset - c.offset, offset - c.offset + length);
      }
    }
    return undefined;
  }
}

const caches = new WeakMap<GgufFile, HeaderCache>();

/** Parse and validate a GGUF header. Throws GgufFormatError / TensorBoundsError; never allocates tensor memory. */
export async function openGguf(source: ByteSource): Promise<GgufFile> {
  const fileSize = await source.size();
  if (fileSize < 24) {
    throw new GgufFormatError(`${source.name} is ${fileSize} bytes long: too short to be a GGUF file. Choose a complete .gguf model file.`);
  }
  const cache = new HeaderCache(source, fileSize);
  let parsed: GGUFParseOutput;
  try {
    // The URI is never contacted: every byte goes through cache.fetch, which reads the ByteSource.
    parsed = await gguf('https://flock.invalid/model.gguf', { fetch: cache.fetch as typeof fetch });
  } catch (e) {
    if (e instanceof GgufFormatError) throw e;
    throw new GgufFormatError(`${source.name} is not a readable GGUF file (${(e as Error).message}). Download it again or choose another .gguf file.`);
  }
  const dataOffset = Number(parsed.tensorDataOffset);
  if (parsed.tensorInfoByteRange[1] > fileSize || dataOffset > fileSize) {
    throw new GgufFormatError(`${source.name} ends inside its GGUF header: the file is truncated. Download it again.`);
  }
  const tensors = new Map<string, TensorEntry>();
  for (const t of parsed.tensorInfos) {
    const dims = t.shape.map(Number);
    const nElems = dims.reduce((a, b) => a * b, 1);
    if (dims.some((d) => !Number.isSafeInteger(d) || d <= 0)) {
      throw new GgufFormatError(`Tensor ${t.name} in ${source.name} has an invalid shape [${dims.join(', ')}].`);
    }
    const offset = dataOffset + Number(t.offset);
    if (tensors.has(t.name)) throw new GgufFormatError(`Tensor ${t.name} appears twice in ${source.name}.`);
    tensors.set(t.name, { name: t.name, dims, type: t.dtype, offset, nElems });
    if (offset > fileSize) {
      throw new TensorBoundsError(
        `Tensor ${t.name} starts at byte ${offset}, past the end of ${source.name} (${fileSize} bytes): the file is truncated or corrupt. Download it again.`,
      );
    }
  }
  const file: GgufFile = { source, metadata: Object.fromEntries(Object.entries(parsed.metadata)) as Metadata, tensors, fileSize, dataOffset };
  caches.set(file, cache);
  return file;
}

/** Check that `byteLength` bytes of a tensor fit in the file (called once the type's block size is known). */
export function checkTensorBounds(file: GgufFile, t: TensorEntry, byteLength: number): void {
  if (t.offset + byteLength > file.fileSize) {
    throw new TensorBoundsError(
      `Tensor ${t.name} needs bytes ${t.offset}..${t.offset + byteLength} but ${file.source.name} is only ` +
        `${file.fileSize} bytes long: the file is truncated or corrupt. Download it again.`,
    );
  }
}

/** Read `length` bytes of the file at `offset`, from the header cache when the parse already fetched them. */
export async function readBytes(file: GgufFile, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
  const cached = caches.get(file)?.slice(offset, length);
  if (cached) return cached;
  const bytes = await file.source.read(offset, length, signal);
  if (bytes.length !== length) {
    throw new TensorBoundsError(`${file.source.name}: wanted ${length} bytes at ${offset}, got ${bytes.length}: the file is truncated. Download it again.`);
  }
  return bytes;
}

export function metaNumber(meta: Metadata, key: string): number | undefined {
  const v = meta[key];
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

export function metaString(meta: Metadata, key: string): string | undefined {
  const v = meta[key];
  return typeof v === 'string' ? v : undefined;
}
