// Base64url (RFC 4648 §5, no padding) for keys and signatures inside JSON messages. Strict: anything that is not
// canonical base64url of the expected length is refused (null), so two spellings of one value cannot exist.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const INDEX = new Map([...ALPHABET].map((c, i) => [c, i]));

export function toBase64url(b: Uint8Array): string {
  let out = '';
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i] << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((b.length - i) * 8) / 6));
    for (let k = 0; k < chars; k++) out += ALPHABET[(n >> (18 - 6 * k)) & 63];
  }
  return out;
}

/** The bytes of a canonical base64url string, or null (wrong characters, impossible length, non-zero spare bits). */
export function fromBase64url(s: string, maxBytes = 1024): Uint8Array<ArrayBuffer> | null {
  if (typeof s !== 'string' || s.length % 4 === 1 || s.length > Math.ceil((maxBytes * 4) / 3)) return null;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (const c of s) {
    const v = INDEX.get(c);
    if (v === undefined) return null;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) return null; // spare bits must be zero
  return out;
}
