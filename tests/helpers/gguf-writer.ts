// A GGUF v3 writer (little endian) for test fixtures: typed metadata in the order given, tensor infos, aligned data.
// It validates what it writes (value types and ranges, tensor shapes against byte sizes, alignment) so a broken
// fixture fails here with a clear message instead of inside llama.cpp or our reader.
// Not here: quantizing (see quantize.ts), model layouts (see llama-fixture.ts), big-endian files, or reading GGUF.
// Written from the GGUF format description (header, key/value section, tensor infos, padded data section).

/** GGUF value type ids, as stored before every metadata value and array item type. */
const VALUE_TYPE_ID = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

export type GgufNumberType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64';
export type GgufBigIntType = 'u64' | 'i64';
export type GgufScalarType = GgufNumberType | GgufBigIntType | 'bool' | 'string';

/** The items of an array value; arrays of arrays carry their own item type per element. */
export type GgufArray =
  | { itemType: GgufNumberType; value: readonly number[] }
  | { itemType: GgufBigIntType; value: readonly bigint[] }
  | { itemType: 'bool'; value: readonly boolean[] }
  | { itemType: 'string'; value: readonly string[] }
  | { itemType: 'array'; value: readonly GgufArray[] };

export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigIntType; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | ({ type: 'array' } & GgufArray);

export type GgufMetadata = ReadonlyArray<readonly [string, GgufValue]>;

export interface GgufTensor {
  name: string;
  /** ggml `ne` order: dims[0] is the contiguous row length (elements), dims[1] the number of rows, … */
  dims: readonly number[];
  /** ggml type id (0 F32, 1 F16, 2 Q4_0, 8 Q8_0, 12 Q4_K, …) */
  type: number;
  /** the tensor's bytes, exactly as many as its shape and type need */
  data: Uint8Array;
}

export interface GgufWriteInput {
  metadata: GgufMetadata;
  tensors: readonly GgufTensor[];
  /** data alignment in bytes; GGUF's default is 32. Written as `general.alignment` when not 32 and not given. */
  alignment?: number;
}

/**
 * Block layouts (elements per block, bytes per block) of the ggml types a fixture may hold, for validating sizes.
 * K-quants use 256-element super-blocks. Types missing here are refused rather than guessed.
 */
const GGML_BLOCKS: Record<number, { name: string; elems: number; bytes: number }> = {
  0: { name: 'F32', elems: 1, bytes: 4 },
  1: { name: 'F16', elems: 1, bytes: 2 },
  2: { name: 'Q4_0', elems: 32, bytes: 18 },
  3: { name: 'Q4_1', elems: 32, bytes: 20 },
  6: { name: 'Q5_0', elems: 32, bytes: 22 },
  7: { name: 'Q5_1', elems: 32, bytes: 24 },
  8: { name: 'Q8_0', elems: 32, bytes: 34 },
  9: { name: 'Q8_1', elems: 32, bytes: 36 },
  10: { name: 'Q2_K', elems: 256, bytes: 84 },
  11: { name: 'Q3_K', elems: 256, bytes: 110 },
  12: { name: 'Q4_K', elems: 256, bytes: 144 },
  13: { name: 'Q5_K', elems: 256, bytes: 176 },
  14: { name: 'Q6_K', elems: 256, bytes: 210 },
  15: { name: 'Q8_K', elems: 256, bytes: 292 },
  20: { name: 'IQ4_NL', elems: 32, bytes: 18 },
  23: { name: 'IQ4_XS', elems: 256, bytes: 136 },
  24: { name: 'I8', elems: 1, bytes: 1 },
  25: { name: 'I16', elems: 1, bytes: 2 },
  26: { name: 'I32', elems: 1, bytes: 4 },
  27: { name: 'I64', elems: 1, bytes: 8 },
  28: { name: 'F64', elems: 1, bytes: 8 },
  30: { name: 'BF16', elems: 1, bytes: 2 },
};

/** Bytes a tensor of this ggml type and shape takes; throws when the row length is not a whole number of blocks. */
export function ggmlTensorBytes(type: number, dims: readonly number[], name = 'tensor'): number {
  const block = GGML_BLOCKS[type];
  if (!block) throw new Error(`${name}: ggml type ${type} has no known block layout in gguf-writer.ts`);
  if (dims.length < 1 || dims.length > 4) {
    throw new Error(`${name}: ggml tensors have 1 to 4 dims, got ${dims.length}`);
  }
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 1) throw new Error(`${name}: dims must be positive integers, got [${dims}]`);
  }
  if (dims[0] % block.elems !== 0) {
    throw new Error(`${name}: row length ${dims[0]} is not a multiple of ${block.name}'s block of ${block.elems}`);
  }
  const rows = dims.slice(1).reduce((a, b) => a * b, 1);
  return (dims[0] / block.elems) * block.bytes * rows;
}

/** A growing little-endian byte buffer. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    const at = this.length;
    if (at + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < at + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.length = at + n;
    return at;
  }

  // reserve() first: it may replace this.view, which `this.view.set…(this.reserve(n))` would read too early
  private at(n: number): [DataView, number] {
    const at = this.reserve(n);
    return [this.view, at];
  }
  u8(v: number) { const [d, o] = this.at(1); d.setUint8(o, v); }
  i8(v: number) { const [d, o] = this.at(1); d.setInt8(o, v); }
  u16(v: number) { const [d, o] = this.at(2); d.setUint16(o, v, true); }
  i16(v: number) { const [d, o] = this.at(2); d.setInt16(o, v, true); }
  u32(v: number) { const [d, o] = this.at(4); d.setUint32(o, v, true); }
  i32(v: number) { const [d, o] = this.at(4); d.setInt32(o, v, true); }
  f32(v: number) { const [d, o] = this.at(4); d.setFloat32(o, v, true); }
  f64(v: number) { const [d, o] = this.at(8); d.setFloat64(o, v, true); }
  u64(v: bigint) { const [d, o] = this.at(8); d.setBigUint64(o, v, true); }
  i64(v: bigint) { const [d, o] = this.at(8); d.setBigInt64(o, v, true); }
  bytes(b: Uint8Array) {
    const at = this.reserve(b.length); // first: reserve may replace this.buf
    this.buf.set(b, at);
  }
  /** GGUF string: u64 byte length, then UTF-8 bytes, no terminator. */
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(BigInt(b.length));
    this.bytes(b);
  }
  padTo(alignment: number) {
    const pad = (alignment - (this.length % alignment)) % alignment;
    this.reserve(pad); // fresh bytes are zero: the array only ever grows into zeroed memory
  }
  result(): Uint8Array { return this.buf.slice(0, this.length); }
}

const INT_RANGE: Record<'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32', [number, number]> = {
  u8: [0, 0xff],
  i8: [-0x80, 0x7f],
  u16: [0, 0xffff],
  i16: [-0x8000, 0x7fff],
  u32: [0, 0xffffffff],
  i32: [-0x80000000, 0x7fffffff],
};

function checkNumber(type: GgufNumberType, v: unknown, where: string): number {
  if (typeof v !== 'number') throw new Error(`${where}: ${type} value must be a number, got ${typeof v}`);
  if (type === 'f32' || type === 'f64') return v;
  const [lo, hi] = INT_RANGE[type];
  if (!Number.isInteger(v) || v < lo || v > hi) throw new Error(`${where}: ${v} is not a valid ${type}`);
  return v;
}

function checkBigInt(type: GgufBigIntType, v: unknown, where: string): bigint {
  if (typeof v !== 'bigint') throw new Error(`${where}: ${type} value must be a bigint, got ${typeof v}`);
  const ok = type === 'u64' ? v >= 0n && v < 1n << 64n : v >= -(1n << 63n) && v < 1n << 63n;
  if (!ok) throw new Error(`${where}: ${v} is not a valid ${type}`);
  return v;
}

/** Writes one value's payload (not its type id). */
function writeScalar(out: ByteSink, type: GgufScalarType, v: unknown, where: string): void {
  switch (type) {
    case 'u8': out.u8(checkNumber(type, v, where)); return;
    case 'i8': out.i8(checkNumber(type, v, where)); return;
    case 'u16': out.u16(checkNumber(type, v, where)); return;
    case 'i16': out.i16(checkNumber(type, v, where)); return;
    case 'u32': out.u32(checkNumber(type, v, where)); return;
    case 'i32': out.i32(checkNumber(type, v, where)); return;
    case 'f32': out.f32(checkNumber(type, v, where)); return;
    case 'f64': out.f64(checkNumber(type, v, where)); return;
    case 'u64': out.u64(checkBigInt(type, v, where)); return;
    case 'i64': out.i64(checkBigInt(type, v, where)); return;
    case 'bool':
      if (typeof v !== 'boolean') throw new Error(`${where}: bool value must be a boolean, got ${typeof v}`);
      out.u8(v ? 1 : 0); // GGUF bools are one byte, 0 or 1
      return;
    case 'string':
      if (typeof v !== 'string') throw new Error(`${where}: string value must be a string, got ${typeof v}`);
      out.str(v);
      return;
    default: {
      const never: never = type;
      throw new Error(`${where}: unknown GGUF value type ${String(never)}`);
    }
  }
}

/** Array payload: item type id (u32), count (u64), items. */
function writeArray(out: ByteSink, arr: GgufArray, where: string): void {
  if (!(arr.itemType in VALUE_TYPE_ID)) throw new Error(`${where}: unknown array item type ${String(arr.itemType)}`);
  if (!Array.isArray(arr.value)) throw new Error(`${where}: array value must be an array`);
  out.u32(VALUE_TYPE_ID[arr.itemType]);
  out.u64(BigInt(arr.value.length));
  if (arr.itemType === 'array') {
    arr.value.forEach((inner, i) => writeArray(out, inner, `${where}[${i}]`));
  } else {
    const t = arr.itemType;
    arr.value.forEach((v, i) => writeScalar(out, t, v, `${where}[${i}]`));
  }
}

function writeValue(out: ByteSink, v: GgufValue, where: string): void {
  if (!(v.type in VALUE_TYPE_ID)) throw new Error(`${where}: unknown GGUF value type ${String(v.type)}`);
  out.u32(VALUE_TYPE_ID[v.type]);
  if (v.type === 'array') writeArray(out, v, where);
  else writeScalar(out, v.type, v.value, where);
}

/** A tensor's entry in the header: what `ggufHeader` needs without the data. */
export type GgufTensorInfo = Omit<GgufTensor, 'data'>;

export interface GgufHeader {
  /** magic, metadata, tensor infos, and the padding up to the data section */
  bytes: Uint8Array;
  /** each tensor's offset in the data section, in the order given (multiples of `alignment`) */
  offsets: number[];
  alignment: number;
  /** bytes of the data section: the last tensor's offset plus its size */
  dataBytes: number;
}

/**
 * The header of a GGUF v3 file: everything before the data section. Writers of files larger than memory (the
 * benchmark's models) write this, then each tensor's bytes at its offset, padding between them with zeros.
 */
export function ggufHeader(metadata: GgufMetadata, tensors: readonly GgufTensorInfo[], alignment?: number): GgufHeader {
  // Alignment: the metadata's `general.alignment` (a u32) wins; the argument must agree with it when both are given.
  const keys = new Set<string>();
  for (const [key] of metadata) {
    if (keys.has(key)) throw new Error(`metadata key ${key} appears twice`);
    keys.add(key);
  }
  const alignEntry = metadata.find(([k]) => k === 'general.alignment');
  let align = alignment ?? 32;
  const kvs: Array<readonly [string, GgufValue]> = [...metadata];
  if (alignEntry) {
    const v = alignEntry[1];
    if (v.type !== 'u32') throw new Error(`general.alignment must be a u32, got ${v.type}`);
    if (alignment !== undefined && alignment !== v.value) {
      throw new Error(`alignment ${alignment} disagrees with general.alignment ${v.value}`);
    }
    align = v.value;
  } else if (align !== 32) {
    kvs.push(['general.alignment', { type: 'u32', value: align }]); // readers assume 32 unless told
  }
  // llama.cpp requires a power of two; GGUF requires a multiple of 8.
  if (!Number.isInteger(align) || align < 8 || (align & (align - 1)) !== 0) {
    throw new Error(`alignment must be a power of two >= 8, got ${align}`);
  }

  // Tensor offsets are relative to the start of the data section; every one a multiple of the alignment.
  const names = new Set<string>();
  const offsets: number[] = [];
  let dataSize = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`tensor ${t.name} appears twice`);
    names.add(t.name);
    if (new TextEncoder().encode(t.name).length > 63) {
      throw new Error(`tensor name ${t.name} is longer than ggml's 63-byte limit`);
    }
    dataSize += (align - (dataSize % align)) % align;
    offsets.push(dataSize);
    dataSize += ggmlTensorBytes(t.type, t.dims, t.name);
  }

  const out = new ByteSink();
  // Header: magic "GGUF", version 3, tensor count (u64), metadata key/value count (u64).
  out.bytes(new TextEncoder().encode('GGUF'));
  out.u32(3);
  out.u64(BigInt(tensors.length));
  out.u64(BigInt(kvs.length));
  for (const [key, value] of kvs) {
    out.str(key);
    writeValue(out, value, `metadata ${key}`);
  }
  // Tensor infos: name, n_dims (u32), dims (u64 each, ne order), type (u32), offset (u64).
  tensors.forEach((t, i) => {
    out.str(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(BigInt(d));
    out.u32(t.type);
    out.u64(BigInt(offsets[i]));
  });
  // The data section starts aligned in the file.
  out.padTo(align);
  return { bytes: out.result(), offsets, alignment: align, dataBytes: dataSize };
}

/** Serialize a GGUF v3 file. Tensor data follows the header in the order given, each start aligned. */
export function writeGguf({ metadata, tensors, alignment }: GgufWriteInput): Uint8Array {
  for (const t of tensors) {
    const want = ggmlTensorBytes(t.type, t.dims, t.name);
    if (t.data.length !== want) {
      throw new Error(`${t.name}: ${t.data.length} bytes of data, but [${t.dims}] of type ${t.type} needs ${want}`);
    }
  }
  const header = ggufHeader(metadata, tensors, alignment);
  const out = new Uint8Array(header.bytes.length + header.dataBytes); // zeroed: the padding between tensors
  out.set(header.bytes);
  tensors.forEach((t, i) => out.set(t.data, header.bytes.length + header.offsets[i]));
  return out;
}
