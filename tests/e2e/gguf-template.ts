// Test helper: a copy of a GGUF file with `tokenizer.chat_template` added, so a template-less model (stories260K)
// can exercise the chat-template path. The new key goes right after the header's counts; its encoded size is padded
// (inside a Jinja comment) to a multiple of 32 bytes, so the data section stays aligned and tensor offsets, which
// are relative to it, stay valid. Not a general GGUF editor.

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
