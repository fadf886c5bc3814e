// The bytes of a GGUF file's header (magic, counts, metadata, tensor infos), read from a ByteSource without ever
// reading past the header's end: the model picker decides from the header whether a file can run before one byte of
// its weights crosses the network. The header's length is not stored anywhere, so this walks it, and each read asks
// only for bytes the walk has proved are header: what it needs next plus the least that the items not yet read can
// take (a string at least its 8-byte length, a tensor info at least 24 bytes…). A 6 MB header (a 150k-token
// vocabulary) takes a few dozen reads; a small one takes a handful.
// Not here: decoding the values (gguf.ts hands these bytes to @huggingface/gguf) or anything after the header.

import { GgufFormatError } from './errors';
import type { ByteSource } from './source';

const MAGIC = 0x46554747; // "GGUF" little endian

/** GGUF metadata value types (gguf_type in llama.cpp's gguf.h) and their sizes when fixed. */
const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const TYPE_STRING = 8;
const TYPE_ARRAY = 9;

/** A walk's state: how far it has read, what it holds, and how many items of each kind it has not started yet. */
class Walk {
  private buf: Uint8Array;
  private have = 0;
  pos = 0;
  /** bytes of a count or length: 8 since GGUF v2, 4 in v1 */
  lenBytes = 8;
  kvLeft = 0;
  tensorsLeft = 0;
  /** arrays being read, innermost last: elements not started yet, and each one's least size */
  readonly arrays: { left: number; least: number }[] = [];
  /** the header is at least this long: the counts' preamble, 16 bytes in v1 and 24 since (set once the version is known) */
  floor = 16;

  constructor(
    private readonly source: ByteSource,
    private readonly fileSize: number,
    private readonly signal?: AbortSignal,
  ) {
    this.buf = new Uint8Array(4096);
  }

  /** The least bytes that the items not started yet take: the header ends at least this far after `pos`. */
  private restLeast(): number {
    const kv = this.lenBytes + 4 + 1; // key length, a key (may be empty), type, the smallest value
    const tensor = this.lenBytes + 4 + 4 + 8; // name length, n_dims, type, offset (a name and dims may be empty)
    let sum = this.kvLeft * kv + this.tensorsLeft * tensor;
    for (const a of this.arrays) sum += a.left * a.least;
    return sum;
  }

  /** Make bytes [pos, pos + n) readable, fetching up to what is provably header (never past the file). */
  async need(n: number): Promise<void> {
    const want = this.pos + n;
    if (want <= this.have) return;
    if (want > this.fileSize) {
      throw new GgufFormatError(`${this.source.name} ends (at ${this.fileSize} bytes) inside its GGUF header: the file is truncated. Download it again.`);
    }
    const end = Math.min(this.fileSize, Math.max(want + this.restLeast(), this.floor));
    this.signal?.throwIfAborted();
    const bytes = await this.source.read(this.have, end - this.have, this.signal);
    if (bytes.length !== end - this.have) {
      throw new GgufFormatError(`${this.source.name}: wanted header bytes ${this.have}..${end}, got ${bytes.length}: the file is truncated.`);
    }
    if (end > this.buf.length) {
      const grown = new Uint8Array(Math.max(end, this.buf.length * 2));
      grown.set(this.buf.subarray(0, this.have));
      this.buf = grown;
    }
    this.buf.set(bytes, this.have);
    this.have = end;
  }

  private view(): DataView {
    return new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  async u32(): Promise<number> {
    await this.need(4);
    const v = this.view().getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A count or a length (u64 since v2, u32 in v1); a value past 2^53 is a broken header. */
  async len(): Promise<number> {
    if (this.lenBytes === 4) return this.u32();
    await this.need(8);
    const v = this.view().getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufFormatError(`${this.source.name} has a length of ${v} in its header: the file is corrupt.`);
    return Number(v);
  }

  async skip(n: number): Promise<void> {
    await this.need(n);
    this.pos += n;
  }

  async string(): Promise<void> {
    await this.skip(await this.len());
  }

  /** The least bytes one value of `type` takes (an array: its element type and count). */
  least(type: number): number {
    if (type === TYPE_STRING) return this.lenBytes;
    if (type === TYPE_ARRAY) return 4 + this.lenBytes;
    const size = SCALAR_BYTES[type];
    if (size === undefined) throw new GgufFormatError(`${this.source.name} has an unknown metadata value type ${type}: the file is corrupt or newer than this reader.`);
    return size;
  }

  async value(type: number): Promise<void> {
    if (type === TYPE_STRING) return this.string();
    if (type !== TYPE_ARRAY) return this.skip(this.least(type));
    const elem = await this.u32();
    const count = await this.len();
    const least = this.least(elem);
    if (elem !== TYPE_STRING && elem !== TYPE_ARRAY) return this.skip(count * least); // fixed-size elements: one read
    const a = { left: count, least };
    this.arrays.push(a);
    while (a.left > 0) {
      a.left--;
      await this.value(elem);
    }
    this.arrays.pop();
  }

  bytes(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

/**
 * The header of the GGUF file in `source` (`fileSize` bytes long): every byte from the magic to the end of the last
 * tensor info, and no byte after it. GgufFormatError when the bytes are not a GGUF header.
 */
export async function readGgufHeader(source: ByteSource, fileSize: number, signal?: AbortSignal): Promise<Uint8Array> {
  const w = new Walk(source, fileSize, signal);
  if ((await w.u32()) !== MAGIC) {
    throw new GgufFormatError(`${source.name} is not a GGUF file (its first bytes are not "GGUF"). Choose a .gguf model file.`);
  }
  const version = await w.u32();
  if (version < 1 || version > 3) {
    throw new GgufFormatError(`${source.name} is GGUF version ${version}; Flock reads versions 1 to 3 (little-endian).`);
  }
  w.lenBytes = version === 1 ? 4 : 8;
  w.floor = version === 1 ? 16 : 24;
  const nTensors = await w.len();
  const nKv = await w.len();
  w.tensorsLeft = nTensors;
  w.kvLeft = nKv;
  for (let i = 0; i < nKv; i++) {
    w.kvLeft--;
    await w.string(); // key
    await w.value(await w.u32());
  }
  for (let i = 0; i < nTensors; i++) {
    w.tensorsLeft--;
    await w.string(); // name
    const nDims = await w.u32();
    if (nDims > 8) throw new GgufFormatError(`${source.name}: a tensor with ${nDims} dimensions; the file is corrupt.`);
    await w.skip(nDims * w.lenBytes + 4 + 8); // dims, type, offset
  }
  return w.bytes();
}
