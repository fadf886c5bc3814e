// Test helpers: a copy of a GGUF file with `tokenizer.chat_template` added, so a template-less model (stories260K)
// can exercise the chat-template path. The new key goes right after the header's counts; its encoded size is padded
// (inside a Jinja comment) to a multiple of 32 bytes, so the data section stays aligned and tensor offsets, which
// are relative to it, stay valid; and a copy with a shorter context window. Not a general GGUF editor.

export function withChatTemplate(src: Uint8Array, template: string): Uint8Array {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  if (dv.getUint32(0, true) !== 0x46554747) throw new Error('not a GGUF file');
  const enc = new TextEncoder();
  const key = enc.encode('tokenizer.chat_template');
  const fixed = 8 + key.length + 4 + 8; // key length, key, value type, value length
  let value = enc.encode(template);
  const pad = (32 - ((fixed + value.length) % 32)) % 32;
  if (pad > 0) value = enc.encode(`${template}{#${' '.repeat(Math.max(0, pad - 4))}#}`);
  while ((fixed + value.length) % 32 !== 0) value = enc.encode(new TextDecoder().decode(value).replace('{#', '{# '));
  const kv = new Uint8Array(fixed + value.length);
  const kdv = new DataView(kv.buffer);
  kdv.setBigUint64(0, BigInt(key.length), true);
  kv.set(key, 8);
  kdv.setUint32(8 + key.length, 8, true); // GGUF_TYPE_STRING
  kdv.setBigUint64(12 + key.length, BigInt(value.length), true);
  kv.set(value, fixed);
  const headerEnd = 24; // magic, version, n_tensors (u64), n_kv (u64)
  const out = new Uint8Array(src.byteLength + kv.length);
  out.set(src.subarray(0, headerEnd), 0);
  out.set(kv, headerEnd);
  out.set(src.subarray(headerEnd), headerEnd + kv.length);
  const odv = new DataView(out.buffer);
  odv.setBigUint64(16, dv.getBigUint64(16, true) + 1n, true);
  return out;
}

/** A copy of a GGUF file whose `<arch>.context_length` (a u32) is `n`, edited in place (sizes and offsets unchanged). */
export function withContextLength(src: Uint8Array, arch: string, n: number): Uint8Array {
  const out = new Uint8Array(src);
  const key = new TextEncoder().encode(`${arch}.context_length`);
  const needle = new Uint8Array(8 + key.length);
  new DataView(needle.buffer).setBigUint64(0, BigInt(key.length), true);
  needle.set(key, 8);
  const at = Buffer.from(out.buffer, out.byteOffset, out.byteLength).indexOf(Buffer.from(needle));
  if (at < 0) throw new Error(`${arch}.context_length not found`);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const typeAt = at + needle.length;
  if (dv.getUint32(typeAt, true) !== 4) throw new Error(`${arch}.context_length is not a u32`); // GGUF_TYPE_UINT32
  dv.setUint32(typeAt + 4, n, true);
  return out;
}
