// A copy of a GGUF file with one tensor's bytes changed and the header left exactly as it was: what a damaged or
// altered model looks like to a host that hashes only the header. One bit of one byte in the middle of the tensor
// flips (the least a manifest must catch). Not here: other kinds of broken files (parity-gguf-edit.ts).

import { readFile, writeFile } from 'node:fs/promises';
import { openGguf } from '../../src/model/gguf';
import { tensorRange } from '../../src/model/manifest';
import { FileSource } from '../../src/model/source-file';

/** Write `from` to `to` with bit 0 of the middle byte of tensor `name` flipped; returns that byte's file offset. */
export async function writePerturbedCopy(from: string, to: string, name: string): Promise<number> {
  const source = new FileSource(from);
  try {
    const file = await openGguf(source);
    const t = file.tensors.get(name);
    if (!t) throw new Error(`${from} has no tensor ${name}`);
    const { offset, length } = tensorRange(file, t);
    const bytes = new Uint8Array(await readFile(from));
    const at = offset + (length >> 1);
    bytes[at] ^= 1;
    await writeFile(to, bytes);
    return at;
  } finally {
    await source.close();
  }
}

/**
 * Write `from` to `to` with the last letter of its `general.name` value changed (a -> b, else -> a): the same
 * weights under a header that hashes differently, so no manifest is pinned for it.
 */
export async function writeRenamedCopy(from: string, to: string): Promise<void> {
  const bytes = new Uint8Array(await readFile(from));
  const key = Buffer.from('general.name');
  const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(key);
  if (at < 0) throw new Error(`${from} has no general.name`);
  // key, then the value type (u32, 8 = string), the string's length (u64), its bytes
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lenAt = at + key.length + 4;
  if (dv.getUint32(at + key.length, true) !== 8) throw new Error('general.name is not a string');
  const len = Number(dv.getBigUint64(lenAt, true));
  if (len < 1) throw new Error('general.name is empty');
  const last = lenAt + 8 + len - 1;
  bytes[last] = bytes[last] === 0x61 ? 0x62 : 0x61;
  await writeFile(to, bytes);
}
