// Reading a GGUF file from any ByteSource: the header (its bytes alone, gguf-header.ts) through @huggingface/gguf, then validation of every tensor's
// place in the file before anything is allocated, then reads of single tensors' bytes on demand.
// Not here: what the tensors mean (config.ts) or how they are computed with.

import { gguf, type GGUFParseOutput } from '@huggingface/gguf';
import { GgufFormatError, TensorBoundsError } from './errors';
import { readGgufHeader } from './gguf-header';
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

/**
 * Serve @huggingface/gguf's reads from the header bytes alone. The reader asks for 2 MB ranges; what lies past the
 * header is never read by its parse, so those bytes are zeros here instead of a fetch of the file's weights.
 */
class HeaderBytes {
  constructor(
    readonly bytes: Uint8Array,
    private readonly fileSize: number,
  ) {}

  fetch = async (_uri: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const range = new Headers(init?.headers).get('range') ?? '';
    const m = /bytes=(\d+)-(\d+)/.exec(range);
    if (!m) throw new GgufFormatError('internal: header reader asked for a range without Range header');
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), this.fileSize - 1);
    const out = new Uint8Array(Math.max(0, end - start + 1));
    if (start < this.bytes.length) out.set(this.bytes.subarray(start, Math.min(end + 1, this.bytes.length)));
    return new Response(out as BlobPart, { status: 206, headers: { 'content-range': `bytes ${start}-${end}/${this.fileSize}` } });
  };

  /** The bytes [offset, offset+length) if the header holds them all. */
  slice(offset: number, length: number): Uint8Array | undefined {
    return offset + length <= this.bytes.length ? this.bytes.subarray(offset, offset + length) : undefined;
  }
}

const headers = new WeakMap<GgufFile, HeaderBytes>();

/**
 * Parse and validate a GGUF header, reading the header's bytes and none after them (gguf-header.ts). Throws
 * GgufFormatError / TensorBoundsError; never allocates tensor memory.
 */
export async function openGguf(source: ByteSource, signal?: AbortSignal): Promise<GgufFile> {
  const fileSize = await source.size();
  if (fileSize < 24) {
    throw new GgufFormatError(`${source.name} is ${fileSize} bytes long: too short to be a GGUF file. Choose a complete .gguf model file.`);
  }
  const header = new HeaderBytes(await readGgufHeader(source, fileSize, signal), fileSize);
  let parsed: GGUFParseOutput;
  try {
    // The URI is never contacted: every byte comes from the header read above.
    parsed = await gguf('https://flock.invalid/model.gguf', { fetch: header.fetch as typeof fetch });
  } catch (e) {
    throw new GgufFormatError(`${source.name} is not a readable GGUF file (${(e as Error).message}). Download it again or choose another .gguf file.`);
  }
  if (parsed.tensorInfoByteRange[1] !== header.bytes.length) {
    throw new GgufFormatError(`${source.name}: its header ends at byte ${header.bytes.length}, but the parser read to ${parsed.tensorInfoByteRange[1]}: the file is corrupt.`);
  }
  const dataOffset = Number(parsed.tensorDataOffset);
  if (dataOffset > fileSize) {
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
  headers.set(file, header);
  return file;
}

/**
 * The same parsed file, read through `source` instead: a wrapper over the file's own source that serves the same
 * bytes (manifest-check.ts hashes tensors as they pass). Keeps the header bytes read at open.
 */
export function withSource(file: GgufFile, source: ByteSource): GgufFile {
  const copy: GgufFile = { ...file, source };
  const header = headers.get(file);
  if (header) headers.set(copy, header);
  return copy;
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

/** Read `length` bytes of the file at `offset` (from the header's bytes when they hold them). */
export async function readBytes(file: GgufFile, offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array> {
  const header = headers.get(file);
  const cached = header?.slice(offset, length);
  if (cached) return cached;
  if (header && offset < header.bytes.length) {
    // the header's part from memory, only the rest (the padding before the data, say) from the source
    const head = header.bytes.subarray(offset);
    const out = new Uint8Array(length);
    out.set(head);
    out.set(await readBytes(file, offset + head.length, length - head.length, signal), head.length);
    return out;
  }
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
