// Flock wire protocol v1: the binary frames a client (Head) and Stage hosts exchange over a WebRTC data channel,
// their validation, and the splitting of large hidden-state tensors into frames. Little endian, DataView for fields,
// no JSON. It is not the transport (no channels, no backpressure), not per-link state (reassembler.ts puts chunked
// tensors back together, step-guard.ts checks a session's step order), not the session logic (when to open, retry
// or ban) and not the Stage: it only turns messages into bounded frames and hostile bytes into either a valid message
// or a ProtocolError.
//
// Frame = 20-byte header + body. Header: magic u8 0xF1 | version u8 | kind u8 | flags u8 | chunk index u16 |
// chunk count u16 | frame length u32 | session u32 | step u32. Tensors (forward/result) add 20 bytes of fields and
// then the payload at byte 40 (4-aligned, so an f32 payload is a zero-copy Float32Array view of the frame).

import type { Span } from '../engine/spans';
import { InvalidArgumentError } from '../model/errors';
import { EncodeError, ProtocolError, type ProtocolErrorCode } from './errors';
import { f16ArrayToF32, f32ArrayToF16 } from './f16';

export type { Span };

// ---------------------------------------------------------------------------------------------------------------
// Constants of the wire format.

export const PROTOCOL_VERSION = 2;
/** First byte of every frame. Not ASCII, so a stray text/JSON message ('{' = 0x7b) is rejected at byte 0. */
export const MAGIC = 0xf1;
export const HEADER_BYTES = 20;
/** Header + tensor fields; the payload starts here (a multiple of 4: f32 views need 4-byte alignment). */
export const TENSOR_PAYLOAD_OFFSET = 40;
/** Sender default: 64 KiB frames stay well under WebRTC's common 256 KiB maxMessageSize (and Firefox/Chrome mixes). */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;
/** The chunk count is a u16. */
export const MAX_CHUNKS = 0xffff;
export const MODEL_HASH_BYTES = 32;

/** Flag bit: this forward re-sends an already accepted step (recovery after a lost result); see StepGuard. */
export const FLAG_REPLAY = 0x01;

/** Kind byte per message kind. 0 is never valid (a zeroed buffer is not a message). */
export const KIND_CODE = {
  hello: 1,
  open: 2,
  opened: 3,
  error: 4,
  forward: 5,
  result: 6,
  close: 7,
  ping: 8,
  pong: 9,
} as const;

const DTYPE_CODE = { f32: 1, f16: 2 } as const;

/** Error codes a host sends in an `error` message; on the wire the u16 is the index in this list plus one. */
export const WIRE_ERROR_CODES = [
  'internal', // 1: a bug or GPU failure on the host
  'bad-request', // 2: the message was well formed but not acceptable (span not hosted, maxTokens too big…)
  'protocol', // 3: the host's decoder rejected a frame (ProtocolError)
  'busy', // 4: no free session slot now; retry later or elsewhere
  'no-session', // 5: the session id is not open on this host
  'kv-full', // 6: not enough free KV cache for the tokens asked for
  'bad-step', // 7: a step out of order (StepOrderError)
  'model-mismatch', // 8: the host serves another model (hash differs)
  'shutting-down', // 9: the host is leaving; move the session
] as const;
export type WireErrorCode = (typeof WIRE_ERROR_CODES)[number];

// Header field offsets.
const H_MAGIC = 0;
const H_VERSION = 1;
const H_KIND = 2;
const H_FLAGS = 3;
const H_INDEX = 4;
const H_COUNT = 6;
const H_LENGTH = 8;
const H_SESSION = 12;
const H_STEP = 16;

// Tensor field offsets (after the header).
const T_POS0 = 20;
const T_NTOKENS = 24;
const T_DIM = 28;
const T_DTYPE = 32; // then 3 bytes of zero padding (33..35)
const T_PAD = 33;
const T_CHUNK_ELEMS = 36;

// Body field offsets of the control messages (from the frame's start).
// hello: version u16 | peerIdLen u16 | span.start u32 | span.end u32 | maxSessions u32 | freeKvTokens u32 |
//        modelHash 32 bytes | peerId bytes
const HELLO_VERSION = 20;
const HELLO_ID_LEN = 22;
const HELLO_SPAN = 24;
const HELLO_MAX_SESSIONS = 32;
const HELLO_FREE_KV = 36;
const HELLO_HASH = 40;
const HELLO_ID = 72;
// open: span.start u32 | span.end u32 | maxTokens u32
const OPEN_SPAN = 20;
const OPEN_MAX_TOKENS = 28;
const OPEN_BYTES = 32;
// error: code u16 | messageLen u16 | message bytes
const ERROR_CODE = 20;
const ERROR_LEN = 22;
const ERROR_TEXT = 24;
// ping, pong: nonce u32 | time f64
const BEAT_NONCE = 20;
const BEAT_TIME = 24;
const BEAT_BYTES = 32;

// ---------------------------------------------------------------------------------------------------------------
// Messages.

export type Dtype = 'f32' | 'f16';

/** Handshake: who the peer is, which model and layers it serves, and its spare capacity. Session and step are 0. */
export interface HelloMsg {
  kind: 'hello';
  /** Highest protocol version the sender speaks (the frame itself is always sent as version 1). */
  protocolVersion: number;
  /** The sender's peer id, 1..limits.maxPeerIdBytes bytes of UTF-8. */
  peerId: string;
  /** sha256 of the model file, 64 lowercase hex digits (32 bytes on the wire). */
  modelHash: string;
  span: Span;
  maxSessions: number;
  freeKvTokens: number;
}

/** Client -> host: open `session` for layers `span`, with room for `maxTokens` positions of KV cache. */
export interface OpenMsg {
  kind: 'open';
  session: number;
  span: Span;
  maxTokens: number;
}

/** Host -> client: the session is open. */
export interface OpenedMsg {
  kind: 'opened';
  session: number;
}

/** Host -> client: a request failed. `step` is the forward step it concerns, or 0. */
export interface ErrorMsg {
  kind: 'error';
  session: number;
  step: number;
  code: WireErrorCode;
  /** Human-readable detail, at most limits.maxErrorMessageBytes of UTF-8. */
  message: string;
}

/** What every frame of a forward or result carries about its tensor: X [nTokens, dim] at pos0 .. pos0 + nTokens - 1. */
export interface TensorFields {
  session: number;
  step: number;
  pos0: number;
  nTokens: number;
  dim: number;
  /** How the payload travels: f32 is bit exact; f16 halves the bytes (round to nearest even). */
  dtype: Dtype;
}

/** Client -> host: hidden states X [nTokens, dim] at positions pos0 .. pos0 + nTokens - 1. */
export interface ForwardMsg extends TensorFields {
  kind: 'forward';
  /**
   * Rewinds the session to pos0 (at most its end) before running: a re-sent step (recovery), or the first step after
   * the client cut its conversation back (a next turn that shares a prefix with the last).
   */
  replay: boolean;
  /** X: [nTokens, dim], row major. Decoded single-frame f32 payloads view the frame's buffer (no copy). */
  payload: Float32Array;
}

/** Host -> client: hidden states after the span's layers, same shape and positions as the forward of that step. */
export interface ResultMsg extends TensorFields {
  kind: 'result';
  payload: Float32Array;
}

/** Client -> host: free the session and its KV cache. */
export interface CloseMsg {
  kind: 'close';
  session: number;
}

/** Heartbeat; the receiver answers a ping with a pong carrying the same nonce and time. */
export interface PingMsg {
  kind: 'ping';
  nonce: number;
  /** Sender's clock in ms (performance.now() or Date.now()), finite. */
  time: number;
}

export interface PongMsg {
  kind: 'pong';
  nonce: number;
  time: number;
}

export type Msg = HelloMsg | OpenMsg | OpenedMsg | ErrorMsg | ForwardMsg | ResultMsg | CloseMsg | PingMsg | PongMsg;
export type TensorMsg = ForwardMsg | ResultMsg;
export type ControlMsg = Exclude<Msg, TensorMsg>;

/**
 * One frame of a tensor message split over several frames; give it to a Reassembler. Every chunk repeats the
 * message's fields. Chunk i holds elements [i * chunkElems, min((i + 1) * chunkElems, nTokens * dim)).
 */
export interface TensorChunk extends TensorFields {
  kind: 'chunk';
  of: 'forward' | 'result';
  replay: boolean;
  index: number;
  count: number;
  chunkElems: number;
  /** This chunk's payload bytes, a view of the frame (already checked: right length, all finite). */
  raw: Uint8Array;
}

export type Decoded = Msg | TensorChunk;

// ---------------------------------------------------------------------------------------------------------------
// Limits.

/** What a receiver accepts. Sizes are checked against these before anything is allocated. */
export interface Limits {
  /** Largest frame accepted, bytes. 256 KiB: the maxMessageSize most WebRTC stacks offer. */
  maxFrameBytes: number;
  /** Most tokens in one forward/result (a prefill chunk). */
  maxTokens: number;
  /** Largest hidden size (Llama-3 70B: 8192; 16384 leaves room). */
  maxDim: number;
  /** Largest tensor message once reassembled, counted as f32 bytes (nTokens * dim * 4). */
  maxMessageBytes: number;
  /** Span ends must be <= this (no model has more layers). */
  maxLayers: number;
  /** open.maxTokens and pos0 + nTokens must be <= this. */
  maxContextTokens: number;
  /** hello.peerId, UTF-8 bytes. */
  maxPeerIdBytes: number;
  /** error.message, UTF-8 bytes. */
  maxErrorMessageBytes: number;
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxFrameBytes: 256 * 1024,
  maxTokens: 4096,
  maxDim: 16384,
  maxMessageBytes: 64 * 1024 * 1024, // e.g. 4096 tokens x 4096 dim x 4 bytes
  maxLayers: 1024,
  maxContextTokens: 1 << 20,
  maxPeerIdBytes: 128,
  maxErrorMessageBytes: 1024,
});

/** DEFAULT_LIMITS with some replaced, each checked to be a positive integer in range (throws InvalidArgumentError). */
export function makeLimits(over: Partial<Limits> = {}): Limits {
  const l: Limits = { ...DEFAULT_LIMITS, ...over };
  const check = (name: keyof Limits, min: number, max: number): void => {
    const x = l[name];
    if (!Number.isInteger(x) || x < min || x > max) {
      throw new InvalidArgumentError(`Limit ${name} = ${x} must be an integer in [${min}, ${max}].`);
    }
  };
  check('maxFrameBytes', TENSOR_PAYLOAD_OFFSET + 4, 0xffffffff);
  check('maxTokens', 1, 0xffffffff);
  check('maxDim', 1, 0xffffffff);
  check('maxMessageBytes', 4, 2 ** 32); // keeps nTokens * dim * 4 comparisons exact enough and arrays allocatable
  check('maxLayers', 1, 0xffffffff);
  check('maxContextTokens', 1, 0xffffffff);
  check('maxPeerIdBytes', 1, 0xffff);
  check('maxErrorMessageBytes', 0, 0xffff);
  return l;
}

/** What a link needs to know of the model whose hidden states it carries. */
export interface ModelShape {
  /** hidden size */
  dim: number;
  nLayers: number;
  /** most tokens in one forward (a prefill chunk) */
  maxBatch: number;
  /** most positions a session holds */
  maxContext: number;
}

/**
 * The limits of a link that carries this model's hidden states, the same for a host and a client and for encoding
 * and decoding: a tensor is at most maxBatch x dim, so a peer claiming more is refused by the decoder before anything
 * is reserved for it (with DEFAULT_LIMITS, one 256 KiB frame could make a receiver reserve a 64 MiB tensor).
 */
export function modelLimits(m: ModelShape): Limits {
  return makeLimits({
    maxDim: m.dim,
    maxTokens: m.maxBatch,
    maxMessageBytes: m.maxBatch * m.dim * 4,
    maxContextTokens: m.maxContext,
    maxLayers: m.nLayers,
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Shared helpers.

// Typed-array views use the platform's byte order; the wire is little endian. Every WebGPU platform is.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
if (!LITTLE_ENDIAN) throw new InvalidArgumentError('Flock\'s wire protocol needs a little-endian platform.');

// ignoreBOM: keep a leading U+FEFF as a character, so decode(encode(s)) === s.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

const HEX: string[] = [];
for (let i = 0; i < 256; i++) HEX.push(i.toString(16).padStart(2, '0'));
const HASH_RE = /^[0-9a-f]{64}$/;

/** Bytes per value on the wire. */
export function dtypeWidth(dtype: Dtype): number {
  return dtype === 'f32' ? 4 : 2;
}

function writeHeader(
  v: DataView,
  kind: number,
  flags: number,
  index: number,
  count: number,
  session: number,
  step: number,
): void {
  v.setUint8(H_MAGIC, MAGIC);
  v.setUint8(H_VERSION, PROTOCOL_VERSION);
  v.setUint8(H_KIND, kind);
  v.setUint8(H_FLAGS, flags);
  v.setUint16(H_INDEX, index, true);
  v.setUint16(H_COUNT, count, true);
  v.setUint32(H_LENGTH, v.byteLength, true);
  v.setUint32(H_SESSION, session, true);
  v.setUint32(H_STEP, step, true);
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding. Every encoder validates its message first and throws EncodeError: we never send what we would reject.

function u32(name: string, x: number): void {
  if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) {
    throw new EncodeError('bad-field', `${name} = ${x} is not a u32 integer.`);
  }
}

function checkSpan(name: string, s: Span, limits: Limits): void {
  u32(`${name}.start`, s.start);
  u32(`${name}.end`, s.end);
  if (s.start >= s.end || s.end > limits.maxLayers) {
    throw new EncodeError('bad-field', `${name} [${s.start}, ${s.end}) must have start < end <= ${limits.maxLayers}.`);
  }
}

function encodeString(name: string, s: string, maxBytes: number, minBytes: number): Uint8Array {
  if (typeof s !== 'string') throw new EncodeError('bad-field', `${name} is not a string.`);
  // UTF-8 takes at least one byte per UTF-16 unit: refuse absurd strings before encoding them.
  if (s.length > maxBytes) throw new EncodeError('too-large', `${name} has more than ${maxBytes} bytes of UTF-8.`);
  const b = utf8Encoder.encode(s);
  if (b.length > maxBytes) {
    throw new EncodeError('too-large', `${name} has ${b.length} bytes of UTF-8; at most ${maxBytes}.`);
  }
  if (b.length < minBytes) throw new EncodeError('bad-field', `${name} is empty.`);
  return b;
}

function encodeHello(m: HelloMsg, limits: Limits): ArrayBuffer {
  if (!Number.isInteger(m.protocolVersion) || m.protocolVersion < 1 || m.protocolVersion > 0xffff) {
    throw new EncodeError('bad-field', `hello.protocolVersion = ${m.protocolVersion} must be in [1, 65535].`);
  }
  if (typeof m.modelHash !== 'string' || !HASH_RE.test(m.modelHash)) {
    throw new EncodeError('bad-field', 'hello.modelHash must be 64 lowercase hex digits (a sha256).');
  }
  checkSpan('hello.span', m.span, limits);
  u32('hello.maxSessions', m.maxSessions);
  u32('hello.freeKvTokens', m.freeKvTokens);
  const id = encodeString('hello.peerId', m.peerId, limits.maxPeerIdBytes, 1);
  const buf = new ArrayBuffer(HELLO_ID + id.length);
  const v = new DataView(buf);
  writeHeader(v, KIND_CODE.hello, 0, 0, 1, 0, 0);
  v.setUint16(HELLO_VERSION, m.protocolVersion, true);
  v.setUint16(HELLO_ID_LEN, id.length, true);
  v.setUint32(HELLO_SPAN, m.span.start, true);
  v.setUint32(HELLO_SPAN + 4, m.span.end, true);
  v.setUint32(HELLO_MAX_SESSIONS, m.maxSessions, true);
  v.setUint32(HELLO_FREE_KV, m.freeKvTokens, true);
  const bytes = new Uint8Array(buf);
  for (let i = 0; i < MODEL_HASH_BYTES; i++) bytes[HELLO_HASH + i] = parseInt(m.modelHash.slice(2 * i, 2 * i + 2), 16);
  bytes.set(id, HELLO_ID);
  return buf;
}

function encodeOpen(m: OpenMsg, limits: Limits): ArrayBuffer {
  u32('open.session', m.session);
  checkSpan('open.span', m.span, limits);
  u32('open.maxTokens', m.maxTokens);
  if (m.maxTokens < 1 || m.maxTokens > limits.maxContextTokens) {
    throw new EncodeError('bad-field', `open.maxTokens = ${m.maxTokens} must be in [1, ${limits.maxContextTokens}].`);
  }
  const buf = new ArrayBuffer(OPEN_BYTES);
  const v = new DataView(buf);
  writeHeader(v, KIND_CODE.open, 0, 0, 1, m.session, 0);
  v.setUint32(OPEN_SPAN, m.span.start, true);
  v.setUint32(OPEN_SPAN + 4, m.span.end, true);
  v.setUint32(OPEN_MAX_TOKENS, m.maxTokens, true);
  return buf;
}

function encodeBare(kind: number, session: number, what: string): ArrayBuffer {
  u32(`${what}.session`, session);
  const buf = new ArrayBuffer(HEADER_BYTES);
  writeHeader(new DataView(buf), kind, 0, 0, 1, session, 0);
  return buf;
}

function encodeError(m: ErrorMsg, limits: Limits): ArrayBuffer {
  u32('error.session', m.session);
  u32('error.step', m.step);
  const code = WIRE_ERROR_CODES.indexOf(m.code) + 1;
  if (code === 0) {
    throw new EncodeError('bad-field', `error.code '${m.code}' is not one of ${WIRE_ERROR_CODES.join(', ')}.`);
  }
  const text = encodeString('error.message', m.message, limits.maxErrorMessageBytes, 0);
  const buf = new ArrayBuffer(ERROR_TEXT + text.length);
  const v = new DataView(buf);
  writeHeader(v, KIND_CODE.error, 0, 0, 1, m.session, m.step);
  v.setUint16(ERROR_CODE, code, true);
  v.setUint16(ERROR_LEN, text.length, true);
  new Uint8Array(buf).set(text, ERROR_TEXT);
  return buf;
}

function encodeHeartbeat(m: PingMsg | PongMsg): ArrayBuffer {
  u32(`${m.kind}.nonce`, m.nonce);
  if (typeof m.time !== 'number' || !Number.isFinite(m.time)) {
    throw new EncodeError('non-finite', `${m.kind}.time = ${m.time} must be a finite number.`);
  }
  const buf = new ArrayBuffer(BEAT_BYTES);
  const v = new DataView(buf);
  writeHeader(v, KIND_CODE[m.kind], 0, 0, 1, 0, 0);
  v.setUint32(BEAT_NONCE, m.nonce, true);
  v.setFloat64(BEAT_TIME, m.time, true);
  return buf;
}

/** Encode a message that always fits one frame (everything but forward/result). */
export function encodeControl(msg: ControlMsg, limits: Limits = DEFAULT_LIMITS): ArrayBuffer {
  switch (msg.kind) {
    case 'hello':
      return encodeHello(msg, limits);
    case 'open':
      return encodeOpen(msg, limits);
    case 'opened':
      return encodeBare(KIND_CODE.opened, msg.session, 'opened');
    case 'error':
      return encodeError(msg, limits);
    case 'close':
      return encodeBare(KIND_CODE.close, msg.session, 'close');
    case 'ping':
    case 'pong':
      return encodeHeartbeat(msg);
    default: {
      const never: never = msg;
      void never;
      throw new EncodeError('unknown-kind', 'Cannot encode a message of unknown kind.');
    }
  }
}

/**
 * What is wrong with a tensor's shape under `limits`, or null: the one check both sides make (the encoder so that
 * we never send what a receiver would reject, the decoder before it allocates anything).
 */
function tensorShapeProblem(what: string, nTokens: number, dim: number, pos0: number, limits: Limits): { code: ProtocolErrorCode; message: string } | null {
  if (nTokens < 1 || dim < 1) return { code: 'bad-field', message: `${what} has nTokens ${nTokens}, dim ${dim}; both must be >= 1.` };
  if (nTokens > limits.maxTokens) return { code: 'too-large', message: `${what}.nTokens ${nTokens} > ${limits.maxTokens}.` };
  if (dim > limits.maxDim) return { code: 'too-large', message: `${what}.dim ${dim} > ${limits.maxDim}.` };
  const bytes = nTokens * dim * 4;
  if (bytes > limits.maxMessageBytes) return { code: 'too-large', message: `${what} of ${bytes} bytes exceeds maxMessageBytes ${limits.maxMessageBytes}.` };
  if (pos0 + nTokens > limits.maxContextTokens) {
    return { code: 'bad-field', message: `${what} positions end at ${pos0 + nTokens} > ${limits.maxContextTokens}.` };
  }
  return null;
}

/** Encode a forward or a result into frames of at most maxFrameBytes each (one frame when it fits). */
export function encodeTensor(m: TensorMsg, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES, limits: Limits = DEFAULT_LIMITS): ArrayBuffer[] {
  const what = m.kind;
  u32(`${what}.session`, m.session);
  u32(`${what}.step`, m.step);
  u32(`${what}.pos0`, m.pos0);
  if (!Number.isInteger(m.nTokens) || !Number.isInteger(m.dim)) throw new EncodeError('bad-field', `${what}.nTokens and dim must be integers.`);
  const problem = tensorShapeProblem(what, m.nTokens, m.dim, m.pos0, limits);
  if (problem) throw new EncodeError(problem.code, problem.message);
  const total = m.nTokens * m.dim;
  if (m.dtype !== 'f32' && m.dtype !== 'f16') {
    throw new EncodeError('bad-field', `${what}.dtype must be 'f32' or 'f16'.`);
  }
  if (!(m.payload instanceof Float32Array) || m.payload.length !== total) {
    throw new EncodeError(
      'size-mismatch',
      `${what}.payload must be a Float32Array of nTokens * dim = ${total} values.`,
    );
  }
  const minFrame = TENSOR_PAYLOAD_OFFSET + 4;
  if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < minFrame || maxFrameBytes > limits.maxFrameBytes) {
    throw new EncodeError(
      'bad-field',
      `maxFrameBytes = ${maxFrameBytes} must be in [${minFrame}, ${limits.maxFrameBytes}].`,
    );
  }
  const width = dtypeWidth(m.dtype);
  const perFrame = Math.floor((maxFrameBytes - TENSOR_PAYLOAD_OFFSET) / width);
  const chunkElems = Math.min(perFrame, total);
  const count = Math.ceil(total / chunkElems);
  if (count > MAX_CHUNKS) {
    throw new EncodeError(
      'too-large',
      `${what} needs ${count} frames of ${maxFrameBytes} bytes; at most ${MAX_CHUNKS}.`,
    );
  }
  const flags = m.kind === 'forward' && m.replay ? FLAG_REPLAY : 0;
  const payload = m.payload;
  if (m.dtype === 'f32') {
    // Refuse NaN/Inf before building any frame (the receiver would reject the message anyway).
    for (let i = 0; i < total; i++) {
      if (!Number.isFinite(payload[i])) {
        throw new EncodeError('non-finite', `${what}.payload[${i}] = ${payload[i]}: hidden states must be finite.`);
      }
    }
  }
  const frames: ArrayBuffer[] = [];
  for (let index = 0; index < count; index++) {
    const off = index * chunkElems;
    const elems = Math.min(chunkElems, total - off);
    const buf = new ArrayBuffer(TENSOR_PAYLOAD_OFFSET + elems * width);
    const v = new DataView(buf);
    writeHeader(v, KIND_CODE[m.kind], flags, index, count, m.session, m.step);
    v.setUint32(T_POS0, m.pos0, true);
    v.setUint32(T_NTOKENS, m.nTokens, true);
    v.setUint32(T_DIM, m.dim, true);
    v.setUint8(T_DTYPE, DTYPE_CODE[m.dtype]);
    v.setUint32(T_CHUNK_ELEMS, chunkElems, true);
    const src = payload.subarray(off, off + elems);
    if (m.dtype === 'f32') {
      new Float32Array(buf, TENSOR_PAYLOAD_OFFSET, elems).set(src);
    } else {
      const bad = f32ArrayToF16(src, new Uint16Array(buf, TENSOR_PAYLOAD_OFFSET, elems));
      if (bad >= 0) {
        throw new EncodeError(
          'non-finite',
          `${what}.payload[${off + bad}] = ${payload[off + bad]} is not finite in f16 ` +
            '(|x| >= 65520 overflows); send f32.',
        );
      }
    }
    frames.push(buf);
  }
  return frames;
}


/** Encode any message into the frames to send, in order. */
export function encode(
  msg: Msg,
  maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES,
  limits: Limits = DEFAULT_LIMITS,
): ArrayBuffer[] {
  switch (msg.kind) {
    case 'forward':
    case 'result':
      return encodeTensor(msg, maxFrameBytes, limits);
    case 'hello':
    case 'open':
    case 'opened':
    case 'error':
    case 'close':
    case 'ping':
    case 'pong': {
      const frame = encodeControl(msg, limits);
      if (frame.byteLength > maxFrameBytes) {
        throw new EncodeError('too-large', `${msg.kind} frame of ${frame.byteLength} bytes exceeds ${maxFrameBytes}.`);
      }
      return [frame];
    }
    default: {
      const never: never = msg;
      void never;
      throw new EncodeError('unknown-kind', 'Cannot encode a message of unknown kind.');
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding. Order: header size, magic, version, claimed and actual length against the limit and each other, then
// the kind's fields, sizes before any allocation, payload contents last.

interface Header {
  flags: number;
  index: number;
  count: number;
  session: number;
  step: number;
}

/** Fixed-size bodies: the frame must be exactly `expected` bytes. */
function expectLength(n: number, expected: number, what: string): void {
  if (n < expected) throw new ProtocolError('truncated', `${what} frame has ${n} bytes; needs ${expected}.`);
  if (n > expected) throw new ProtocolError('size-mismatch', `${what} frame has ${n} bytes; expected ${expected}.`);
}

/** Single-frame kinds: no flags, chunk 0 of 1, and session/step zero where the kind has none. */
function expectPlain(h: Header, what: string, hasSession: boolean, hasStep: boolean): void {
  if (h.flags !== 0) {
    throw new ProtocolError('bad-field', `${what} has flags 0x${h.flags.toString(16)}; none are defined.`);
  }
  if (h.index !== 0 || h.count !== 1) {
    throw new ProtocolError('bad-chunk', `${what} is chunk ${h.index} of ${h.count}; it must be 0 of 1.`);
  }
  if (!hasSession && h.session !== 0) {
    throw new ProtocolError('bad-field', `${what} has session ${h.session}; must be 0.`);
  }
  if (!hasStep && h.step !== 0) throw new ProtocolError('bad-field', `${what} has step ${h.step}; must be 0.`);
}

function decodeSpan(v: DataView, at: number, limits: Limits, what: string): Span {
  const start = v.getUint32(at, true);
  const end = v.getUint32(at + 4, true);
  if (start >= end) throw new ProtocolError('bad-field', `${what} span [${start}, ${end}) is empty or reversed.`);
  if (end > limits.maxLayers) {
    throw new ProtocolError('too-large', `${what} span ends at ${end} > ${limits.maxLayers}.`);
  }
  return { start, end };
}

function decodeString(buf: ArrayBuffer, at: number, len: number, what: string): string {
  try {
    return utf8Decoder.decode(new Uint8Array(buf, at, len));
  } catch {
    throw new ProtocolError('bad-utf8', `${what} is not valid UTF-8.`);
  }
}

function decodeHello(v: DataView, buf: ArrayBuffer, h: Header, limits: Limits): HelloMsg {
  expectPlain(h, 'hello', false, false);
  const n = buf.byteLength;
  if (n < HELLO_ID) throw new ProtocolError('truncated', `hello frame has ${n} bytes; needs at least ${HELLO_ID}.`);
  const protocolVersion = v.getUint16(HELLO_VERSION, true);
  const idLen = v.getUint16(HELLO_ID_LEN, true);
  if (protocolVersion < 1) throw new ProtocolError('bad-field', 'hello.protocolVersion is 0.');
  if (idLen < 1) throw new ProtocolError('bad-field', 'hello.peerId is empty.');
  if (idLen > limits.maxPeerIdBytes) {
    throw new ProtocolError('too-large', `hello.peerId of ${idLen} bytes exceeds ${limits.maxPeerIdBytes}.`);
  }
  expectLength(n, HELLO_ID + idLen, 'hello');
  const span = decodeSpan(v, HELLO_SPAN, limits, 'hello');
  const maxSessions = v.getUint32(HELLO_MAX_SESSIONS, true);
  const freeKvTokens = v.getUint32(HELLO_FREE_KV, true);
  let modelHash = '';
  for (let i = 0; i < MODEL_HASH_BYTES; i++) modelHash += HEX[v.getUint8(HELLO_HASH + i)];
  const peerId = decodeString(buf, HELLO_ID, idLen, 'hello.peerId');
  return { kind: 'hello', protocolVersion, peerId, modelHash, span, maxSessions, freeKvTokens };
}

function decodeOpen(v: DataView, h: Header, limits: Limits): OpenMsg {
  expectPlain(h, 'open', true, false);
  expectLength(v.byteLength, OPEN_BYTES, 'open');
  const span = decodeSpan(v, OPEN_SPAN, limits, 'open');
  const maxTokens = v.getUint32(OPEN_MAX_TOKENS, true);
  if (maxTokens < 1) throw new ProtocolError('bad-field', 'open.maxTokens is 0.');
  if (maxTokens > limits.maxContextTokens) {
    throw new ProtocolError('too-large', `open.maxTokens ${maxTokens} exceeds ${limits.maxContextTokens}.`);
  }
  return { kind: 'open', session: h.session, span, maxTokens };
}

function decodeError(v: DataView, buf: ArrayBuffer, h: Header, limits: Limits): ErrorMsg {
  expectPlain(h, 'error', true, true);
  const n = buf.byteLength;
  if (n < ERROR_TEXT) throw new ProtocolError('truncated', `error frame has ${n} bytes; needs at least ${ERROR_TEXT}.`);
  const codeNum = v.getUint16(ERROR_CODE, true);
  const len = v.getUint16(ERROR_LEN, true);
  if (codeNum < 1 || codeNum > WIRE_ERROR_CODES.length) {
    throw new ProtocolError('bad-field', `error.code ${codeNum} is not in [1, ${WIRE_ERROR_CODES.length}].`);
  }
  if (len > limits.maxErrorMessageBytes) {
    throw new ProtocolError('too-large', `error.message of ${len} bytes exceeds ${limits.maxErrorMessageBytes}.`);
  }
  expectLength(n, ERROR_TEXT + len, 'error');
  const message = decodeString(buf, ERROR_TEXT, len, 'error.message');
  return { kind: 'error', session: h.session, step: h.step, code: WIRE_ERROR_CODES[codeNum - 1], message };
}

function decodeHeartbeat(kind: 'ping' | 'pong', v: DataView, h: Header): PingMsg | PongMsg {
  expectPlain(h, kind, false, false);
  expectLength(v.byteLength, BEAT_BYTES, kind);
  const nonce = v.getUint32(BEAT_NONCE, true);
  const time = v.getFloat64(BEAT_TIME, true);
  if (!Number.isFinite(time)) throw new ProtocolError('non-finite', `${kind}.time is ${time}.`);
  return { kind, nonce, time };
}

function decodeTensor(
  of: 'forward' | 'result',
  v: DataView,
  buf: ArrayBuffer,
  h: Header,
  limits: Limits,
): ForwardMsg | ResultMsg | TensorChunk {
  const n = buf.byteLength;
  const allowedFlags = of === 'forward' ? FLAG_REPLAY : 0;
  if ((h.flags & ~allowedFlags) !== 0) {
    throw new ProtocolError('bad-field', `${of} has unknown flags 0x${h.flags.toString(16)}.`);
  }
  if (n < TENSOR_PAYLOAD_OFFSET) {
    throw new ProtocolError('truncated', `${of} frame has ${n} bytes; its fields need ${TENSOR_PAYLOAD_OFFSET}.`);
  }
  const pos0 = v.getUint32(T_POS0, true);
  const nTokens = v.getUint32(T_NTOKENS, true);
  const dim = v.getUint32(T_DIM, true);
  const dtypeCode = v.getUint8(T_DTYPE);
  const chunkElems = v.getUint32(T_CHUNK_ELEMS, true);
  let dtype: Dtype;
  switch (dtypeCode) {
    case DTYPE_CODE.f32:
      dtype = 'f32';
      break;
    case DTYPE_CODE.f16:
      dtype = 'f16';
      break;
    default:
      throw new ProtocolError('bad-field', `${of}.dtype code ${dtypeCode} is neither 1 (f32) nor 2 (f16).`);
  }
  if (v.getUint8(T_PAD) !== 0 || v.getUint16(T_PAD + 1, true) !== 0) {
    throw new ProtocolError('bad-field', `${of} padding bytes 33..35 must be zero.`);
  }
  const problem = tensorShapeProblem(of, nTokens, dim, pos0, limits);
  if (problem) throw new ProtocolError(problem.code, problem.message);
  const total = nTokens * dim; // <= 2^64, exact enough: compared against limits of at most 2^32
  // Chunking: every chunk but the last has chunkElems elements, so the count is determined by the sizes.
  if (chunkElems === 0 || chunkElems > total) {
    throw new ProtocolError('bad-chunk', `${of}.chunkElems ${chunkElems} must be in [1, ${total}].`);
  }
  const expectedCount = Math.ceil(total / chunkElems);
  if (h.count !== expectedCount) {
    throw new ProtocolError(
      'bad-chunk',
      `${of} claims ${h.count} chunks; ${total} values in chunks of ${chunkElems} need ${expectedCount}.`,
    );
  }
  if (h.index >= h.count) throw new ProtocolError('bad-chunk', `${of} chunk index ${h.index} >= count ${h.count}.`);
  const elems = h.index < h.count - 1 ? chunkElems : total - (h.count - 1) * chunkElems;
  const width = dtypeWidth(dtype);
  const bytes = elems * width;
  const have = n - TENSOR_PAYLOAD_OFFSET;
  if (have < bytes) {
    throw new ProtocolError('truncated', `${of} payload has ${have} bytes; the header promises ${bytes}.`);
  }
  if (have > bytes) {
    throw new ProtocolError('size-mismatch', `${of} payload has ${have} bytes; the header promises ${bytes}.`);
  }
  // Sizes agree with the frame: from here on nothing allocated exceeds twice the frame (f16 widened to f32).
  if (dtype === 'f32') {
    const view = new Float32Array(buf, TENSOR_PAYLOAD_OFFSET, elems);
    for (let i = 0; i < elems; i++) {
      if (!Number.isFinite(view[i])) throw new ProtocolError('non-finite', `${of} payload value ${i} is ${view[i]}.`);
    }
    if (h.count === 1) return tensorMsg(of, h, pos0, nTokens, dim, dtype, view);
  } else {
    const halves = new Uint16Array(buf, TENSOR_PAYLOAD_OFFSET, elems);
    for (let i = 0; i < elems; i++) {
      if ((halves[i] & 0x7c00) === 0x7c00) {
        throw new ProtocolError('non-finite', `${of} f16 payload value ${i} is Inf or NaN.`);
      }
    }
    if (h.count === 1) {
      const out = new Float32Array(elems);
      f16ArrayToF32(halves, out);
      return tensorMsg(of, h, pos0, nTokens, dim, dtype, out);
    }
  }
  return {
    kind: 'chunk',
    of,
    session: h.session,
    step: h.step,
    replay: (h.flags & FLAG_REPLAY) !== 0,
    pos0,
    nTokens,
    dim,
    dtype,
    index: h.index,
    count: h.count,
    chunkElems,
    raw: new Uint8Array(buf, TENSOR_PAYLOAD_OFFSET, bytes),
  };
}

/** A whole forward or result from its fields (decodeFrame and the Reassembler build them the same way). */
export function tensorMsg(
  of: 'forward' | 'result',
  h: { session: number; step: number; flags: number },
  pos0: number,
  nTokens: number,
  dim: number,
  dtype: Dtype,
  payload: Float32Array,
): ForwardMsg | ResultMsg {
  const { session, step } = h;
  return of === 'forward'
    ? { kind: 'forward', session, step, replay: (h.flags & FLAG_REPLAY) !== 0, pos0, nTokens, dim, dtype, payload }
    : { kind: 'result', session, step, pos0, nTokens, dim, dtype, payload };
}

/**
 * Decode and validate one frame. Returns a message, or a TensorChunk for a Reassembler when a tensor spans several
 * frames. Throws ProtocolError for anything else; allocates nothing before the sizes agree with the frame, and at
 * most twice the frame's size after (f16 payloads widened to f32). A single-frame f32 payload views `buf`: do not
 * reuse the buffer while the message is in use.
 */
export function decodeFrame(buf: ArrayBuffer, limits: Limits = DEFAULT_LIMITS): Decoded {
  if (!(buf instanceof ArrayBuffer)) throw new ProtocolError('bad-field', 'A frame must be an ArrayBuffer.');
  const n = buf.byteLength;
  if (n < HEADER_BYTES) {
    throw new ProtocolError('truncated', `Frame of ${n} bytes is shorter than the ${HEADER_BYTES}-byte header.`);
  }
  const v = new DataView(buf);
  const magic = v.getUint8(H_MAGIC);
  if (magic !== MAGIC) {
    throw new ProtocolError('bad-magic', `First byte 0x${magic.toString(16)} is not 0xf1: not a Flock frame.`);
  }
  const version = v.getUint8(H_VERSION);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      'bad-version',
      `Protocol version ${version}; this build speaks ${PROTOCOL_VERSION}. Update Flock.`,
    );
  }
  const length = v.getUint32(H_LENGTH, true);
  if (length > limits.maxFrameBytes || n > limits.maxFrameBytes) {
    throw new ProtocolError(
      'too-large',
      `Frame of ${Math.max(length, n)} bytes exceeds maxFrameBytes ${limits.maxFrameBytes}.`,
    );
  }
  if (length > n) throw new ProtocolError('truncated', `Frame has ${n} bytes; its header says ${length}.`);
  if (length < n) throw new ProtocolError('size-mismatch', `Frame has ${n} bytes; its header says ${length}.`);
  const h: Header = {
    flags: v.getUint8(H_FLAGS),
    index: v.getUint16(H_INDEX, true),
    count: v.getUint16(H_COUNT, true),
    session: v.getUint32(H_SESSION, true),
    step: v.getUint32(H_STEP, true),
  };
  const kind = v.getUint8(H_KIND);
  switch (kind) {
    case KIND_CODE.hello:
      return decodeHello(v, buf, h, limits);
    case KIND_CODE.open:
      return decodeOpen(v, h, limits);
    case KIND_CODE.opened:
      expectPlain(h, 'opened', true, false);
      expectLength(n, HEADER_BYTES, 'opened');
      return { kind: 'opened', session: h.session };
    case KIND_CODE.error:
      return decodeError(v, buf, h, limits);
    case KIND_CODE.forward:
      return decodeTensor('forward', v, buf, h, limits);
    case KIND_CODE.result:
      return decodeTensor('result', v, buf, h, limits);
    case KIND_CODE.close:
      expectPlain(h, 'close', true, false);
      expectLength(n, HEADER_BYTES, 'close');
      return { kind: 'close', session: h.session };
    case KIND_CODE.ping:
      return decodeHeartbeat('ping', v, h);
    case KIND_CODE.pong:
      return decodeHeartbeat('pong', v, h);
    default:
      throw new ProtocolError('unknown-kind', `Kind byte ${kind} names no message of protocol ${PROTOCOL_VERSION}.`);
  }
}
