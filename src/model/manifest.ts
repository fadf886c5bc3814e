// Manifests of GGUF files: the header's hash (what the swarm knows a model by, records.ts modelHashOf) plus, for every
// tensor, the SHA-256 of its bytes exactly as stored in the file. A header hash alone names a layout (metadata,
// tensor names, types, shapes, offsets); the manifest also says which bytes belong in it, so a copy whose header is
// right but whose weights differ (a damaged file, or one altered on purpose) is caught tensor by tensor. Tensors are
// read one at a time through the file's ByteSource (Range requests for URLs), so a host checks only its span.
// Here: the type, its canonical serialization and digest, validation of manifests from outside, computing one from a
// file, checking named tensors against one, and the lookup of the manifests pinned in the app (pinned-manifests.ts).
// Not here: hashing tensors while they load (manifest-check.ts), deciding what to do on a mismatch (the callers').

import { InvalidArgumentError, ManifestError, ManifestMismatchError } from './errors';
import { checkTensorBounds, readBytes, type GgufFile, type TensorEntry } from './gguf';
import { PINNED_MANIFESTS } from './pinned-manifests';
import { blockFormat, byteSize } from './quant';

export const MANIFEST_VERSION = 1;

export interface Manifest {
  version: typeof MANIFEST_VERSION;
  /** sha256 of the file's bytes [0, dataOffset), lowercase hex: the model hash hosts announce */
  headerHash: string;
  /** tensor name -> sha256 of its bytes as stored, lowercase hex; every tensor of the file */
  tensors: ReadonlyMap<string, string>;
}

/**
 * Most tensors a manifest may list. 65,536: Llama-3.1-405B has 1,138 tensors and mixture-of-experts files that store
 * experts as separate tensors a few thousand; far above any real file, low enough to bound what a parse allocates.
 */
export const MAX_MANIFEST_TENSORS = 65_536;
/** Longest tensor name, in UTF-16 code units. 256: four times llama.cpp's GGML_MAX_NAME (64 bytes with its NUL). */
export const MAX_TENSOR_NAME = 256;
/** Longest manifest text accepted (checked before parsing): every tensor at the longest name with its quotes, colon,
 *  quoted hash and comma (72 more), plus the envelope. About 21 M characters. */
export const MAX_MANIFEST_CHARS = MAX_MANIFEST_TENSORS * (MAX_TENSOR_NAME + 72) + 256;

const HEX64 = /^[0-9a-f]{64}$/;

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  let hex = '';
  for (const b of bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes)) hex += b.toString(16).padStart(2, '0');
  return hex;
}

/** SHA-256 of `bytes`, lowercase hex. WebCrypto copies the bytes when called, so the caller may reuse them at once. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return toHex(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
}

const headerHashes = new WeakMap<GgufFile, Promise<string>>();

/**
 * sha256 of the GGUF file's bytes [0, dataOffset), lowercase hex: magic, version, all metadata (tokenizer included),
 * every tensor's name, type, shape and offset, and the padding up to the data. Computed once per opened file.
 */
export function headerHashOf(file: GgufFile): Promise<string> {
  let h = headerHashes.get(file);
  if (!h) {
    h = readBytes(file, 0, file.dataOffset).then(sha256Hex);
    headerHashes.set(file, h);
  }
  return h;
}

/** Where tensor `t`'s bytes lie in the file: [offset, offset + length). UnsupportedTensorTypeError for a type we do not know. */
export function tensorRange(file: GgufFile, t: TensorEntry): { offset: number; length: number } {
  const length = byteSize(blockFormat(t.type, t.name), t.nElems);
  checkTensorBounds(file, t, length);
  return { offset: t.offset, length };
}

/** sha256 of one tensor's bytes, read in one piece from the file's source. */
export async function tensorHash(file: GgufFile, t: TensorEntry, signal?: AbortSignal): Promise<string> {
  const { offset, length } = tensorRange(file, t);
  return sha256Hex(await readBytes(file, offset, length, signal));
}

/**
 * The canonical text of a manifest: JSON with the fields in a fixed order and tensors sorted by name (UTF-16 code
 * unit order), no spaces. Two manifests of the same file serialize to the same string, wherever they were computed.
 */
export function serializeManifest(m: Manifest): string {
  const names = [...m.tensors.keys()].sort();
  const tensors = names.map((n) => `${JSON.stringify(n)}:${JSON.stringify(m.tensors.get(n))}`).join(',');
  return `{"version":${m.version},"headerHash":${JSON.stringify(m.headerHash)},"tensors":{${tensors}}}`;
}

/** sha256 of the canonical serialization, lowercase hex: one string that names the whole manifest. */
export function manifestDigest(m: Manifest): Promise<string> {
  return sha256Hex(new TextEncoder().encode(serializeManifest(m)));
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** A manifest from parsed JSON (a file, a peer, the pinned table): every field checked, or ManifestError. */
export function manifestFrom(x: unknown): Manifest {
  if (!isPlainObject(x)) throw new ManifestError('A manifest must be a JSON object with version, headerHash and tensors.');
  const extra = Object.keys(x).filter((k) => k !== 'version' && k !== 'headerHash' && k !== 'tensors');
  if (extra.length > 0) throw new ManifestError(`A manifest has only version, headerHash and tensors; this one also has ${extra.slice(0, 3).join(', ')}.`);
  if (x.version !== MANIFEST_VERSION) throw new ManifestError(`Manifest version ${JSON.stringify(x.version)} is not one this build reads (${MANIFEST_VERSION}).`);
  if (typeof x.headerHash !== 'string' || !HEX64.test(x.headerHash)) {
    throw new ManifestError('A manifest\'s headerHash must be 64 lowercase hex digits (a SHA-256).');
  }
  const t = x.tensors;
  if (!isPlainObject(t)) throw new ManifestError('A manifest\'s tensors must be an object of tensor name to SHA-256.');
  const names = Object.keys(t);
  if (names.length === 0 || names.length > MAX_MANIFEST_TENSORS) {
    throw new ManifestError(`A manifest lists ${names.length} tensors; it must list between 1 and ${MAX_MANIFEST_TENSORS}.`);
  }
  const tensors = new Map<string, string>();
  for (const name of names) {
    if (name.length === 0 || name.length > MAX_TENSOR_NAME) {
      throw new ManifestError(`A manifest's tensor name must be 1 to ${MAX_TENSOR_NAME} characters long; one is ${name.length}.`);
    }
    const hash = t[name];
    if (typeof hash !== 'string' || !HEX64.test(hash)) {
      throw new ManifestError(`The manifest's hash of ${name.slice(0, 80)} must be 64 lowercase hex digits (a SHA-256).`);
    }
    tensors.set(name, hash);
  }
  return { version: MANIFEST_VERSION, headerHash: x.headerHash, tensors };
}

/** A manifest from its JSON text (the size is checked before parsing), or ManifestError. */
export function parseManifest(text: string): Manifest {
  if (text.length > MAX_MANIFEST_CHARS) throw new ManifestError(`A manifest of ${text.length} characters is longer than any real one (${MAX_MANIFEST_CHARS}).`);
  let x: unknown;
  try {
    x = JSON.parse(text);
  } catch (e) {
    throw new ManifestError(`A manifest is not JSON: ${(e as Error).message}`);
  }
  return manifestFrom(x);
}

/** The manifest of a whole file: its header hash and every tensor's hash, reading one tensor at a time. */
export async function computeManifest(
  file: GgufFile, opts: { signal?: AbortSignal; onTensor?: (done: number, total: number) => void } = {},
): Promise<Manifest> {
  const tensors = new Map<string, string>();
  let done = 0;
  for (const t of file.tensors.values()) {
    opts.signal?.throwIfAborted();
    tensors.set(t.name, await tensorHash(file, t, opts.signal));
    opts.onTensor?.(++done, file.tensors.size);
  }
  return { version: MANIFEST_VERSION, headerHash: await headerHashOf(file), tensors };
}

/** The names among `digests` whose hash is not the manifest's (a name the manifest lacks differs too), in order. */
export function differingTensors(manifest: Manifest, digests: Iterable<readonly [string, string]>): string[] {
  const out: string[] = [];
  for (const [name, hash] of digests) if (manifest.tensors.get(name) !== hash) out.push(name);
  return out;
}

/** The error for tensors of `fileName` that do not match: names the first few, carries them all. */
export function mismatchError(fileName: string, names: readonly string[]): ManifestMismatchError {
  const shown = names.slice(0, 6).join(', ') + (names.length > 6 ? `, and ${names.length - 6} more` : '');
  return new ManifestMismatchError(
    `${names.length} tensor${names.length === 1 ? '' : 's'} of ${fileName} ${names.length === 1 ? 'does' : 'do'} not match the model's pinned ` +
      `manifest (${shown}): the file is damaged or altered. Download it again from where the model is published.`,
    [...names],
  );
}

/**
 * Check the tensors `names` of `file` against `manifest`, reading each once through the file's source (Range requests
 * for a URL: only these tensors' bytes are fetched). Returns the names whose bytes differ (empty: all match).
 * ManifestMismatchError when the file's header is not the manifest's; InvalidArgumentError for a name the file lacks.
 * The swarm client can check tensors it downloads itself with this.
 */
export async function verifyTensors(file: GgufFile, names: Iterable<string>, manifest: Manifest, signal?: AbortSignal): Promise<string[]> {
  const entries: TensorEntry[] = [];
  for (const name of names) {
    const t = file.tensors.get(name);
    if (!t) throw new InvalidArgumentError(`${file.source.name} has no tensor ${name} to check.`);
    tensorRange(file, t); // every range is checked before any is read
    entries.push(t);
  }
  if ((await headerHashOf(file)) !== manifest.headerHash) {
    throw new ManifestMismatchError(`${file.source.name} is not the file this manifest describes: its header hashes differently.`);
  }
  const digests: [string, string][] = [];
  for (const t of entries) digests.push([t.name, await tensorHash(file, t, signal)]);
  return differingTensors(manifest, digests);
}

let pinned: Map<string, Manifest> | undefined;

/** The manifest the app ships for the model whose header hashes to `headerHash` (pinned-manifests.ts), if any. */
export function pinnedManifest(headerHash: string): Manifest | undefined {
  if (!pinned) {
    pinned = new Map();
    for (const p of PINNED_MANIFESTS) {
      const m = manifestFrom(p.manifest);
      pinned.set(m.headerHash, m);
    }
  }
  return pinned.get(headerHash);
}
