// In-place edits of a GGUF file's tensor infos, for tests that need a broken file that the writer refuses to make
// (a tensor of a type we cannot run, a tensor whose bytes run past the end). Works on the bytes writeGguf produces.
// Not here: writing files (gguf-writer.ts) or reading them for real (src/model/gguf.ts).

/**
 * Where a tensor's info lies in the header: the name is stored as a u64 byte length then the UTF-8 bytes, followed
 * by n_dims (u32), n_dims dims (u64 each), the ggml type (u32) and the data offset (u64, relative to the data section).
 * Tensor names appear nowhere else in a fixture's header, so the first match of length + name is the info.
 */
export function tensorInfoAt(bytes: Uint8Array, name: string): { typeAt: number; offsetAt: number; dims: number[] } {
  const nameBytes = new TextEncoder().encode(name);
  const needle = new Uint8Array(8 + nameBytes.length);
  new DataView(needle.buffer).setBigUint64(0, BigInt(nameBytes.length), true);
  needle.set(nameBytes, 8);
  const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(Buffer.from(needle));
  if (at < 0) throw new Error(`tensor info for ${name} not found`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = at + needle.length;
  const nDims = dv.getUint32(p, true);
  p += 4;
  const dims: number[] = [];
  for (let i = 0; i < nDims; i++, p += 8) dims.push(Number(dv.getBigUint64(p, true)));
  return { typeAt: p, offsetAt: p + 4, dims };
}

/** Set a tensor's ggml type id in place. */
export function setTensorType(bytes: Uint8Array, name: string, type: number): void {
  const { typeAt } = tensorInfoAt(bytes, name);
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(typeAt, type, true);
}

/** Set a tensor's data offset (relative to the start of the data section) in place. */
export function setTensorOffset(bytes: Uint8Array, name: string, offset: number): void {
  const { offsetAt } = tensorInfoAt(bytes, name);
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setBigUint64(offsetAt, BigInt(offset), true);
}
