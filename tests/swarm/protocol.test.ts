// Tests for src/swarm/protocol.ts and src/swarm/f16.ts: the f16 conversion against an oracle written here from the
// IEEE 754 definition (Node 20 has no DataView.getFloat16 / Math.f16round), round trips of every message kind,
// splitting tensors into frames around the size boundary and putting them back, a table of hostile frames (one or
// more per ProtocolError code), 10,000 fuzzed frames, 4 GB size claims, Reassembler bounds and StepGuard order.
// The frame offsets are written out here from the layout table, independently of the module's constants.
// Not tested here: the transport (data channels, backpressure) or what a host does with a message.

import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../src/model/errors';
import {
  EncodeError,
  ProtocolError,
  type ProtocolErrorCode,
  ReassemblyError,
  StepOrderError,
  type StepOrderErrorCode,
} from '../../src/swarm/errors';
import { f16ArrayToF32, f16ToF32, f32ArrayToF16, f32BitsToF16, f32ToF16 } from '../../src/swarm/f16';
import {
  type ControlMsg,
  DEFAULT_LIMITS,
  PROTOCOL_VERSION,
  type Decoded,
  type Dtype,
  type ForwardMsg,
  type Limits,
  type Msg,
  type ResultMsg,
  type TensorChunk,
  WIRE_ERROR_CODES,
  decodeFrame,
  encode,
  encodeControl,
  encodeTensor,
  makeLimits,
} from '../../src/swarm/protocol';
import { Reassembler } from '../../src/swarm/reassembler';
import { StepGuard } from '../../src/swarm/step-guard';
import { rng } from '../helpers/rng';

// ---------------------------------------------------------------------------------------------------------------
// Helpers: f32 bit access and the f16 oracle (the seeded PRNG is helpers/rng.ts).

const f32 = new Float32Array(1);
const u32v = new Uint32Array(f32.buffer);
function bitsOf(x: number): number {
  f32[0] = x;
  return u32v[0];
}
function fromBits(b: number): number {
  u32v[0] = b >>> 0;
  return f32[0];
}
/** Next f32 towards +Inf / -Inf, for positive finite x. */
const nextUp = (x: number): number => fromBits(bitsOf(x) + 1);
const nextDown = (x: number): number => fromBits(bitsOf(x) - 1);

/** The value of half bits straight from IEEE 754: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m for e = 0. */
function halfOracle(h: number): number {
  const s = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  if (e === 0) return s * Math.pow(2, -14) * (m / 1024);
  return s * Math.pow(2, e - 15) * (1 + m / 1024);
}

/** Value used for rounding decisions: 0x7c00 stands for 2^16, the next step after 65504 had the format no Inf. */
function magnitude(h: number): number {
  return h === 0x7c00 ? 65536 : halfOracle(h);
}

/** Round |x| (a finite f32 value) to nearest half by searching the monotone table of non-negative halves. */
function nearestHalfOracle(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65536) return sign | 0x7c00;
  // Largest h in [0, 0x7bff] with value(h) <= a.
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (halfOracle(mid) <= a) lo = mid;
    else hi = mid - 1;
  }
  const dLo = a - magnitude(lo); // exact in f64: both are short binary fractions within 2^17
  const dHi = magnitude(lo + 1) - a;
  if (dLo < dHi) return sign | lo;
  if (dHi < dLo) return sign | (lo + 1);
  return sign | ((lo & 1) === 0 ? lo : lo + 1); // tie: even mantissa
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/** The f16 rounding of every value, as the receiver should see it. */
function viaF16(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = halfOracle(nearestHalfOracle(x[i]));
  return out;
}

function randomPayload(n: number, seed: number, scale = 4): Float32Array {
  const r = rng(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (r() * 2 - 1) * scale;
  return x;
}

function expectProtocolError(fn: () => unknown, code: ProtocolErrorCode): void {
  let caught: unknown = null;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof ProtocolError)) throw new Error(`expected ProtocolError ${code}, got ${String(caught)}`);
  expect(caught.code).toBe(code);
  expect(caught.name).toBe('ProtocolError');
}

function expectEncodeError(fn: () => unknown, code: ProtocolErrorCode): void {
  let caught: unknown = null;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!(caught instanceof EncodeError)) throw new Error(`expected EncodeError ${code}, got ${String(caught)}`);
  expect(caught.code).toBe(code);
}

function single(frames: ArrayBuffer[]): ArrayBuffer {
  expect(frames.length).toBe(1);
  return frames[0];
}

function decodeMsg(buf: ArrayBuffer, limits: Limits = DEFAULT_LIMITS): Msg {
  const d = decodeFrame(buf, limits);
  if (d.kind === 'chunk') throw new Error('expected a whole message, got a chunk');
  return d;
}

function decodeChunk(buf: ArrayBuffer, limits: Limits = DEFAULT_LIMITS): TensorChunk {
  const d = decodeFrame(buf, limits);
  if (d.kind !== 'chunk') throw new Error(`expected a chunk, got ${d.kind}`);
  return d;
}

/** Decode frames (in the given order) through a Reassembler; returns the one message they make. */
function reassemble(frames: ArrayBuffer[], limits: Limits = DEFAULT_LIMITS): Msg {
  const r = new Reassembler({ maxBufferedBytes: 2 ** 32 });
  let out: Msg | null = null;
  for (const f of frames) {
    const d = decodeFrame(f, limits);
    if (d.kind === 'chunk') {
      const m = r.push(d);
      if (m !== null) {
        expect(out).toBeNull();
        out = m;
      }
    } else {
      expect(out).toBeNull();
      out = d;
    }
  }
  if (out === null) throw new Error('frames did not complete a message');
  expect(r.pending).toBe(0);
  expect(r.bufferedBytes).toBe(0);
  return out;
}

function shuffled<T>(xs: readonly T[], seed: number): T[] {
  const r = rng(seed);
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Copy a frame, edit it, and (unless told) set the header's length field to the new size. */
function patch(frame: ArrayBuffer, edit: (v: DataView, b: Uint8Array) => void, fixLength = true): ArrayBuffer {
  const copy = frame.slice(0);
  edit(new DataView(copy), new Uint8Array(copy));
  if (fixLength) new DataView(copy).setUint32(8, copy.byteLength, true);
  return copy;
}

/** Copy a frame into a buffer of `len` bytes (cut or zero-extended). */
function resize(frame: ArrayBuffer, len: number, fixLength = true): ArrayBuffer {
  const copy = new ArrayBuffer(len);
  new Uint8Array(copy).set(new Uint8Array(frame, 0, Math.min(len, frame.byteLength)));
  if (fixLength && len >= 12) new DataView(copy).setUint32(8, len, true);
  return copy;
}

// ---------------------------------------------------------------------------------------------------------------
// Sample messages.

const HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const hello: ControlMsg = {
  kind: 'hello',
  protocolVersion: 1,
  peerId: 'flock-peer-42',
  modelHash: HASH,
  span: { start: 4, end: 12 },
  maxSessions: 16,
  freeKvTokens: 65536,
};
const open: ControlMsg = { kind: 'open', session: 0xdeadbeef, span: { start: 0, end: 32 }, maxTokens: 2048 };
const opened: ControlMsg = { kind: 'opened', session: 7 };
const errorMsg: ControlMsg = { kind: 'error', session: 7, step: 12, code: 'kv-full', message: 'KV cache full: 12 tokens left' };
const close: ControlMsg = { kind: 'close', session: 0xffffffff };
const ping: ControlMsg = { kind: 'ping', nonce: 123456789, time: 1712345678901.25 };
const pong: ControlMsg = { kind: 'pong', nonce: 0, time: -0.5 };

function forward(nTokens: number, dim: number, dtype: Dtype, seed = 1, over: Partial<ForwardMsg> = {}): ForwardMsg {
  return {
    kind: 'forward',
    session: 3,
    step: 5,
    replay: false,
    pos0: 17,
    nTokens,
    dim,
    dtype,
    payload: randomPayload(nTokens * dim, seed),
    ...over,
  };
}

function result(nTokens: number, dim: number, dtype: Dtype, seed = 2): ResultMsg {
  return { kind: 'result', session: 9, step: 0, pos0: 0, nTokens, dim, dtype, payload: randomPayload(nTokens * dim, seed) };
}

// ---------------------------------------------------------------------------------------------------------------

describe('f16 conversion (all 65,536 halves against the IEEE 754 definition)', () => {
  it('f16ToF32 gives the exact value of every half, signed zeros and NaNs included', () => {
    for (let h = 0; h < 65536; h++) {
      const want = halfOracle(h);
      const got = f16ToF32(h);
      if (!Object.is(got, want)) throw new Error(`half 0x${h.toString(16)}: got ${got}, want ${want}`);
      // Every half is exact in f32: the table-based array path must hold the same value.
      if (!Number.isNaN(want)) expect(Math.fround(want)).toBe(want);
    }
  });

  it('f16ArrayToF32 (the lookup table) agrees for every half', () => {
    const src = new Uint16Array(65536);
    for (let h = 0; h < 65536; h++) src[h] = h;
    const dst = new Float32Array(65536 + 3);
    f16ArrayToF32(src, dst, 3);
    for (let h = 0; h < 65536; h++) {
      if (!Object.is(dst[h + 3], halfOracle(h))) throw new Error(`table at 0x${h.toString(16)}`);
    }
  });

  it('every half survives f32 -> f16 unchanged; NaN halves stay NaN', () => {
    for (let h = 0; h < 65536; h++) {
      const x = halfOracle(h);
      const back = f32ToF16(x);
      if (Number.isNaN(x)) {
        // A JS NaN has no reliable sign bit, so the sign is checked on raw f32 bits below.
        expect((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0).toBe(true);
      } else if (back !== h) {
        throw new Error(`0x${h.toString(16)} -> ${x} -> 0x${back.toString(16)}`);
      }
    }
  });

  it('rounds to nearest, ties to even, at every midpoint between neighbouring halves (both signs)', () => {
    let checked = 0;
    for (let h = 0; h <= 0x7bff; h++) {
      const lo = magnitude(h);
      const hi = magnitude(h + 1); // h + 1 = 0x7c00 acts as 65536
      const mid = (lo + hi) / 2;
      expect(Math.fround(mid)).toBe(mid); // 12 significant bits: exact in f32
      const even = (h & 1) === 0 ? h : h + 1;
      for (const sign of [0, 0x8000]) {
        const s = sign ? -1 : 1;
        if (f32ToF16(s * mid) !== (sign | even)) throw new Error(`midpoint after 0x${h.toString(16)}`);
        if (f32ToF16(s * nextDown(mid)) !== (sign | h)) throw new Error(`below midpoint after 0x${h.toString(16)}`);
        if (f32ToF16(s * nextUp(mid)) !== (sign | (h + 1))) throw new Error(`above midpoint after 0x${h.toString(16)}`);
        checked += 3;
      }
    }
    expect(checked).toBe(0x7c00 * 6);
    // The named edges: 65520 is the midpoint 65504 | 65536 and goes to Inf (even); 2^-25 goes to 0 (even).
    expect(f32ToF16(65519.99)).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00);
    expect(f32ToF16(2 ** -25)).toBe(0);
    expect(f32ToF16(nextUp(2 ** -25))).toBe(1);
    expect(f32ToF16(1e-45)).toBe(0); // smallest f32 subnormal
    expect(f32ToF16(-1e-45)).toBe(0x8000);
    expect(f32ToF16(3.4e38)).toBe(0x7c00);
    expect(f32ToF16(Infinity)).toBe(0x7c00);
    expect(f32ToF16(-Infinity)).toBe(0xfc00);
    expect(f32BitsToF16(0x7fc00000)).toBe(0x7e00); // quiet NaN
    expect(f32BitsToF16(0xffc00000)).toBe(0xfe00); // negative quiet NaN keeps its sign
    expect(f32BitsToF16(0x7f800001)).toBe(0x7e00); // signalling NaN with low payload bits stays a NaN, not Inf
  });

  it('matches the nearest-half search on 200,000 random f32 bit patterns', () => {
    const r = rng(7);
    for (let i = 0; i < 200_000; i++) {
      // Half of them with exponents in and around the half range, where rounding matters.
      const b =
        i % 2 === 0
          ? Math.floor(r() * 2 ** 32)
          : ((r() < 0.5 ? 0x80000000 : 0) | ((95 + Math.floor(r() * 50)) << 23) | Math.floor(r() * 2 ** 23)) >>> 0;
      const x = fromBits(b);
      const got = f32BitsToF16(b);
      if (Number.isNaN(x)) {
        expect(got & 0x7c00).toBe(0x7c00);
        expect(got & 0x3ff).not.toBe(0);
        continue;
      }
      const want = nearestHalfOracle(x);
      if (got !== want) throw new Error(`f32 0x${b.toString(16)} (${x}): got 0x${got.toString(16)}, want 0x${want.toString(16)}`);
    }
  });

  it('f32ArrayToF16 reports the first value that is not finite in f16', () => {
    const dst = new Uint16Array(4);
    expect(f32ArrayToF16(new Float32Array([1, -2, 0.5, 65504]), dst)).toBe(-1);
    expect([...dst]).toEqual([0x3c00, 0xc000, 0x3800, 0x7bff]);
    expect(f32ArrayToF16(new Float32Array([1, 70000, NaN, 2]), dst)).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('round trips', () => {
  it.each([hello, open, opened, errorMsg, close, ping, pong])('$kind', (msg) => {
    const frame = single(encode(msg));
    expect(decodeMsg(frame)).toEqual(msg);
    expect(encodeControl(msg)).toEqual(frame);
  });

  it('hello with a non-ASCII peer id (BOM, emoji, accents) and the largest one allowed', () => {
    for (const peerId of ['\uFEFFbom-first', 'pær-🦜-Ωmega', 'x'.repeat(DEFAULT_LIMITS.maxPeerIdBytes), '🦜'.repeat(32)]) {
      const msg = { ...hello, peerId };
      expect(decodeMsg(single(encode(msg)))).toEqual(msg);
    }
  });

  it('error with every wire code, an empty message and the longest message allowed', () => {
    for (const code of WIRE_ERROR_CODES) {
      for (const message of ['', 'é'.repeat(DEFAULT_LIMITS.maxErrorMessageBytes / 2)]) {
        const msg: ControlMsg = { kind: 'error', session: 1, step: 2, code, message };
        expect(decodeMsg(single(encode(msg)))).toEqual(msg);
      }
    }
  });

  it('ping/pong keep the exact f64 time and every u32 nonce edge', () => {
    for (const time of [0, -0, Number.MIN_VALUE, Number.MAX_VALUE, -1e300, 0.1]) {
      for (const nonce of [0, 1, 0x7fffffff, 0xffffffff]) {
        const d = decodeMsg(single(encode({ kind: 'ping', nonce, time })));
        expect(d).toEqual({ kind: 'ping', nonce, time });
        if (d.kind === 'ping') expect(Object.is(d.time, time)).toBe(true);
      }
    }
  });

  it('forward and result in f32 are bit exact (signed zero, f32 subnormals, extremes) and view the frame', () => {
    const special = new Float32Array([0, -0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38, 1 / 3, -65520]);
    for (const msg of [
      forward(1, 9, 'f32', 1, { payload: special }),
      forward(3, 64, 'f32', 2, { replay: true, session: 0xffffffff, step: 0xffffffff }),
      { ...result(5, 32, 'f32'), pos0: 100 },
    ]) {
      const frame = single(encode(msg));
      const d = decodeMsg(frame);
      if (d.kind !== 'forward' && d.kind !== 'result') throw new Error(d.kind);
      const { payload, ...rest } = d;
      const { payload: want, ...wantRest } = msg;
      expect(rest).toEqual(wantRest);
      expect(bitsEqual(payload, want)).toBe(true);
      expect(payload.buffer).toBe(frame); // zero copy
      expect(payload.byteOffset).toBe(40);
    }
  });

  it('f16 forward/result equal the oracle rounding of each value and take half the payload bytes', () => {
    const msg = forward(4, 50, 'f16', 3);
    msg.payload[0] = 65504;
    msg.payload[1] = -6.1e-5; // near the smallest normal
    msg.payload[2] = 3e-8; // subnormal in f16
    msg.payload[3] = -0;
    const f16frame = single(encode(msg));
    const f32frame = single(encode({ ...msg, dtype: 'f32' }));
    expect(f16frame.byteLength - 40).toBe((f32frame.byteLength - 40) / 2);
    const d = decodeMsg(f16frame);
    if (d.kind !== 'forward') throw new Error(d.kind);
    expect(d.dtype).toBe('f16');
    expect(bitsEqual(d.payload, viaF16(msg.payload))).toBe(true);
    const r = result(2, 33, 'f16');
    const dr = decodeMsg(single(encode(r)));
    if (dr.kind !== 'result') throw new Error(dr.kind);
    expect(bitsEqual(dr.payload, viaF16(r.payload))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('splitting tensors across frames', () => {
  const wide = makeLimits({ maxDim: 1 << 20 }); // nTokens = 1, dim = any count: lets the tests pick exact sizes

  for (const dtype of ['f32', 'f16'] as const) {
    const width = dtype === 'f32' ? 4 : 2;
    for (const maxFrame of [44, 45, 47, 100, 1001, 64 * 1024, 256 * 1024]) {
      const per = Math.floor((maxFrame - 40) / width);
      it(`${dtype}, frames of at most ${maxFrame} bytes (${per} values each): sizes around the boundary`, () => {
        const totals = [...new Set([1, per - 1, per, per + 1, 2 * per - 1, 2 * per, 2 * per + 1, 3 * per + 2])].filter(
          (t) => t >= 1,
        );
        for (const total of totals) {
          const msg = forward(1, total, dtype, total);
          const frames = encodeTensor(msg, maxFrame, wide);
          expect(frames.length).toBe(Math.ceil(total / per));
          frames.forEach((f, i) => {
            expect(f.byteLength).toBeLessThanOrEqual(maxFrame);
            const last = i === frames.length - 1;
            expect(f.byteLength).toBe(40 + width * (last ? total - per * (frames.length - 1) : per));
          });
          const back = reassemble(shuffled(frames, total), wide);
          if (back.kind !== 'forward') throw new Error(back.kind);
          expect(back.nTokens).toBe(1);
          expect(back.dim).toBe(total);
          expect(bitsEqual(back.payload, dtype === 'f32' ? msg.payload : viaF16(msg.payload))).toBe(true);
        }
      });
    }
  }

  it('a 512 x 4096 prefill: 129 frames of 64 KiB (f32) or 65 (f16), reassembled in any order', () => {
    for (const dtype of ['f32', 'f16'] as const) {
      const msg = { ...result(512, 4096, dtype, 11), step: 4 };
      const frames = encodeTensor(msg);
      expect(frames.length).toBe(dtype === 'f32' ? 129 : 65);
      for (const f of frames) expect(f.byteLength).toBeLessThanOrEqual(64 * 1024);
      const back = reassemble(shuffled(frames, 5));
      if (back.kind !== 'result') throw new Error(back.kind);
      expect({ ...back, payload: null }).toEqual({ ...msg, payload: null });
      expect(bitsEqual(back.payload, dtype === 'f32' ? msg.payload : viaF16(msg.payload))).toBe(true);
    }
  });

  it('the replay flag travels on every chunk', () => {
    const frames = encodeTensor(forward(4, 100, 'f32', 1, { replay: true }), 400);
    expect(frames.length).toBeGreaterThan(1);
    for (const f of frames) expect(decodeChunk(f).replay).toBe(true);
    const back = reassemble(frames);
    expect(back.kind === 'forward' && back.replay).toBe(true);
  });

  it('refuses to encode what it could not send or the receiver would reject', () => {
    expectEncodeError(() => encodeTensor(forward(2, 4, 'f32', 1, { payload: new Float32Array(7) })), 'size-mismatch');
    const nan = forward(2, 4, 'f32');
    nan.payload[5] = NaN;
    expectEncodeError(() => encodeTensor(nan), 'non-finite');
    const big = forward(2, 4, 'f16');
    big.payload[3] = 65520; // rounds to Inf in f16
    expectEncodeError(() => encodeTensor(big), 'non-finite');
    big.payload[3] = 65519;
    expect(encodeTensor(big)).toHaveLength(1);
    expectEncodeError(() => encodeTensor(forward(4097, 1, 'f32')), 'too-large');
    expectEncodeError(() => encodeTensor(forward(1, 16385, 'f32')), 'too-large');
    expectEncodeError(() => encodeTensor(forward(1, 8, 'f32'), 43), 'bad-field');
    expectEncodeError(() => encodeTensor(forward(1, 8, 'f32'), 512 * 1024), 'bad-field');
    // 65,536 values in frames of one value each need more chunks than the u16 count holds.
    expectEncodeError(() => encodeTensor(forward(16, 4096, 'f32'), 44), 'too-large');
    expectEncodeError(() => encodeTensor(forward(1, 8, 'f32', 1, { session: -1 })), 'bad-field');
    expectEncodeError(() => encodeTensor(forward(1, 8, 'f32', 1, { step: 2 ** 32 })), 'bad-field');
    expectEncodeError(() => encode({ ...hello, modelHash: HASH.toUpperCase() }), 'bad-field');
    expectEncodeError(() => encode({ ...hello, span: { start: 3, end: 3 } }), 'bad-field');
    expectEncodeError(() => encode({ ...hello, peerId: '' }), 'bad-field');
    expectEncodeError(() => encode({ ...hello, peerId: 'é'.repeat(65) }), 'too-large');
    expectEncodeError(() => encode({ ...open, maxTokens: 0 }), 'bad-field');
    expectEncodeError(() => encode({ kind: 'ping', nonce: 1, time: NaN }), 'non-finite');
    expectEncodeError(() => encode(hello, 60), 'too-large');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Hostile frames. Offsets from the layout table: header 0 magic, 1 version, 2 kind, 3 flags, 4 index u16,
// 6 count u16, 8 length u32, 12 session u32, 16 step u32; tensor 20 pos0, 24 nTokens, 28 dim, 32 dtype,
// 33..35 zero, 36 chunkElems, 40 payload; hello 20 version u16, 22 idLen u16, 24 start, 28 end, 32 maxSessions,
// 36 freeKv, 40 hash, 72 peerId; open 20 start, 24 end, 28 maxTokens; error 20 code u16, 22 len u16, 24 text;
// ping/pong 20 nonce, 24 time f64.

const F = {
  hello: () => single(encode(hello)),
  open: () => single(encode(open)),
  opened: () => single(encode(opened)),
  error: () => single(encode(errorMsg)),
  close: () => single(encode(close)),
  ping: () => single(encode(ping)),
  fwd: () => single(encode(forward(2, 4, 'f32'))), // 8 values, 72 bytes
  fwd16: () => single(encode(forward(2, 4, 'f16'))), // 8 halves, 56 bytes
  res: () => single(encode(result(2, 4, 'f32'))),
  chunk: (i: number) => encodeTensor(forward(4, 32, 'f32'), 200)[i], // chunkElems 40, 4 chunks (40, 40, 40, 8)
};

interface Hostile {
  name: string;
  frame: () => ArrayBuffer;
  code: ProtocolErrorCode;
  limits?: Limits;
}

const hostile: Hostile[] = [
  // bad-magic
  { name: 'JSON text', frame: () => new TextEncoder().encode('{"kind":"hello","peerId":"x","more":1}').slice().buffer, code: 'bad-magic' },
  { name: 'magic byte changed', frame: () => patch(F.ping(), (v) => v.setUint8(0, 0xf2)), code: 'bad-magic' },
  { name: 'all zero header', frame: () => new ArrayBuffer(20), code: 'bad-magic' },
  // bad-version
  { name: `version ${PROTOCOL_VERSION + 1}`, frame: () => patch(F.ping(), (v) => v.setUint8(1, PROTOCOL_VERSION + 1)), code: 'bad-version' },
  { name: 'version 0', frame: () => patch(F.fwd(), (v) => v.setUint8(1, 0)), code: 'bad-version' },
  // unknown-kind
  { name: 'kind 0', frame: () => patch(F.close(), (v) => v.setUint8(2, 0)), code: 'unknown-kind' },
  { name: 'kind 10', frame: () => patch(F.close(), (v) => v.setUint8(2, 10)), code: 'unknown-kind' },
  { name: 'kind 255', frame: () => patch(F.close(), (v) => v.setUint8(2, 255)), code: 'unknown-kind' },
  // truncated
  { name: 'empty frame', frame: () => new ArrayBuffer(0), code: 'truncated' },
  { name: 'shorter than the header', frame: () => F.ping().slice(0, 19), code: 'truncated' },
  { name: 'cut short, length field says more', frame: () => resize(F.ping(), 28, false), code: 'truncated' },
  { name: 'ping body cut (length consistent)', frame: () => resize(F.ping(), 28), code: 'truncated' },
  { name: 'open body cut', frame: () => resize(F.open(), 24), code: 'truncated' },
  { name: 'forward without its fields', frame: () => resize(F.fwd(), 36), code: 'truncated' },
  {
    name: 'forward claims twice the tokens',
    frame: () => patch(F.fwd(), (v) => (v.setUint32(24, 4, true), v.setUint32(36, 16, true))),
    code: 'truncated',
  },
  { name: 'hello cut before its fixed fields end', frame: () => resize(F.hello(), 60), code: 'truncated' },
  { name: 'hello peerId length past the end', frame: () => patch(F.hello(), (v) => v.setUint16(22, 20, true)), code: 'truncated' },
  { name: 'error text length past the end', frame: () => patch(F.error(), (v) => v.setUint16(22, 200, true)), code: 'truncated' },
  // size-mismatch
  { name: 'length field smaller than the frame', frame: () => patch(F.ping(), (v) => v.setUint32(8, 20, true), false), code: 'size-mismatch' },
  { name: 'extra bytes after a ping', frame: () => resize(F.ping(), 36), code: 'size-mismatch' },
  { name: 'extra bytes after close', frame: () => resize(F.close(), 24), code: 'size-mismatch' },
  { name: 'forward payload longer than nTokens*dim', frame: () => resize(F.fwd(), 76), code: 'size-mismatch' },
  { name: 'f16 payload sent with an f32 length', frame: () => patch(F.fwd(), (v) => v.setUint8(32, 2)), code: 'size-mismatch' },
  { name: 'hello peerId shorter than the frame', frame: () => patch(F.hello(), (v) => v.setUint16(22, 3, true)), code: 'size-mismatch' },
  { name: 'last chunk with a full-size payload', frame: () => resize(F.chunk(3), 200), code: 'size-mismatch' },
  // too-large
  { name: 'length field claims 4 GB', frame: () => patch(F.ping(), (v) => v.setUint32(8, 0xffffffff, true), false), code: 'too-large' },
  { name: 'frame above maxFrameBytes', frame: () => single(encode(forward(2, 4, 'f32'))), code: 'too-large', limits: makeLimits({ maxFrameBytes: 64 }) },
  { name: 'nTokens above maxTokens', frame: () => patch(F.fwd(), (v) => v.setUint32(24, 4097, true)), code: 'too-large' },
  { name: 'dim above maxDim', frame: () => patch(F.fwd(), (v) => v.setUint32(28, 16385, true)), code: 'too-large' },
  { name: 'nTokens and dim of 2^32 - 1', frame: () => patch(F.fwd(), (v) => (v.setUint32(24, 0xffffffff, true), v.setUint32(28, 0xffffffff, true))), code: 'too-large' },
  { name: 'tensor above maxMessageBytes', frame: () => patch(F.fwd(), (v) => (v.setUint32(24, 4096, true), v.setUint32(28, 8192, true))), code: 'too-large' },
  { name: 'hello peerId above maxPeerIdBytes', frame: () => patch(F.hello(), (v) => v.setUint16(22, 129, true)), code: 'too-large' },
  { name: 'error text above maxErrorMessageBytes', frame: () => patch(F.error(), (v) => v.setUint16(22, 1025, true)), code: 'too-large' },
  { name: 'span end above maxLayers', frame: () => patch(F.open(), (v) => v.setUint32(24, 1025, true)), code: 'too-large' },
  { name: 'open.maxTokens above maxContextTokens', frame: () => patch(F.open(), (v) => v.setUint32(28, (1 << 20) + 1, true)), code: 'too-large' },
  // non-finite
  { name: 'NaN in an f32 payload', frame: () => patch(F.fwd(), (v) => v.setFloat32(40 + 4 * 5, NaN, true)), code: 'non-finite' },
  { name: '+Inf in an f32 payload', frame: () => patch(F.res(), (v) => v.setFloat32(40, Infinity, true)), code: 'non-finite' },
  { name: '-Inf in an f32 payload', frame: () => patch(F.fwd(), (v) => v.setFloat32(40 + 28, -Infinity, true)), code: 'non-finite' },
  { name: 'signalling NaN bits in f32', frame: () => patch(F.fwd(), (v) => v.setUint32(44, 0x7f800001, true)), code: 'non-finite' },
  { name: 'f16 Inf', frame: () => patch(F.fwd16(), (v) => v.setUint16(42, 0x7c00, true)), code: 'non-finite' },
  { name: 'f16 NaN', frame: () => patch(F.fwd16(), (v) => v.setUint16(54, 0xfe00, true)), code: 'non-finite' },
  { name: 'NaN in a chunk', frame: () => patch(F.chunk(2), (v) => v.setFloat32(40 + 4 * 39, NaN, true)), code: 'non-finite' },
  { name: 'ping time NaN', frame: () => patch(F.ping(), (v) => v.setFloat64(24, NaN, true)), code: 'non-finite' },
  { name: 'pong time Inf', frame: () => patch(single(encode(pong)), (v) => v.setFloat64(24, Infinity, true)), code: 'non-finite' },
  // bad-field
  { name: 'not an ArrayBuffer', frame: () => new Uint8Array(F.ping()) as unknown as ArrayBuffer, code: 'bad-field' },
  { name: 'hello span start = end', frame: () => patch(F.hello(), (v) => v.setUint32(28, 4, true)), code: 'bad-field' },
  { name: 'open span start > end', frame: () => patch(F.open(), (v) => v.setUint32(20, 33, true)), code: 'bad-field' },
  { name: 'hello protocolVersion 0', frame: () => patch(F.hello(), (v) => v.setUint16(20, 0, true)), code: 'bad-field' },
  { name: 'hello with a session id', frame: () => patch(F.hello(), (v) => v.setUint32(12, 1, true)), code: 'bad-field' },
  { name: 'hello empty peerId', frame: () => resize(patch(F.hello(), (v) => v.setUint16(22, 0, true)), 72), code: 'bad-field' },
  { name: 'open with a step', frame: () => patch(F.open(), (v) => v.setUint32(16, 1, true)), code: 'bad-field' },
  { name: 'open maxTokens 0', frame: () => patch(F.open(), (v) => v.setUint32(28, 0, true)), code: 'bad-field' },
  { name: 'error code 0', frame: () => patch(F.error(), (v) => v.setUint16(20, 0, true)), code: 'bad-field' },
  { name: 'error code past the list', frame: () => patch(F.error(), (v) => v.setUint16(20, WIRE_ERROR_CODES.length + 1, true)), code: 'bad-field' },
  { name: 'ping with a flag', frame: () => patch(F.ping(), (v) => v.setUint8(3, 1)), code: 'bad-field' },
  { name: 'forward with an unknown flag', frame: () => patch(F.fwd(), (v) => v.setUint8(3, 0x02)), code: 'bad-field' },
  { name: 'result with the replay flag', frame: () => patch(F.res(), (v) => v.setUint8(3, 0x01)), code: 'bad-field' },
  { name: 'forward nTokens 0', frame: () => patch(F.fwd(), (v) => v.setUint32(24, 0, true)), code: 'bad-field' },
  { name: 'forward dim 0', frame: () => patch(F.fwd(), (v) => v.setUint32(28, 0, true)), code: 'bad-field' },
  { name: 'dtype 3', frame: () => patch(F.fwd(), (v) => v.setUint8(32, 3)), code: 'bad-field' },
  { name: 'non-zero padding', frame: () => patch(F.fwd(), (v) => v.setUint8(34, 1)), code: 'bad-field' },
  { name: 'positions past maxContextTokens', frame: () => patch(F.fwd(), (v) => v.setUint32(20, 1 << 20, true)), code: 'bad-field' },
  // bad-utf8
  { name: 'peerId byte 0xff', frame: () => patch(F.hello(), (_, b) => (b[75] = 0xff)), code: 'bad-utf8' },
  { name: 'peerId overlong NUL (c0 80)', frame: () => patch(F.hello(), (_, b) => ((b[72] = 0xc0), (b[73] = 0x80))), code: 'bad-utf8' },
  { name: 'peerId encoded surrogate (ed a0 80)', frame: () => patch(F.hello(), (_, b) => ((b[72] = 0xed), (b[73] = 0xa0), (b[74] = 0x80))), code: 'bad-utf8' },
  { name: 'error text ends mid-character', frame: () => patch(F.error(), (_, b) => (b[b.length - 1] = 0xe2)), code: 'bad-utf8' },
  // bad-chunk
  { name: 'chunk index = count', frame: () => patch(F.chunk(1), (v) => v.setUint16(4, 4, true)), code: 'bad-chunk' },
  { name: 'chunk count 0', frame: () => patch(F.chunk(0), (v) => v.setUint16(6, 0, true)), code: 'bad-chunk' },
  { name: 'chunk count disagrees with the sizes', frame: () => patch(F.chunk(0), (v) => v.setUint16(6, 5, true)), code: 'bad-chunk' },
  { name: 'chunkElems 0', frame: () => patch(F.chunk(0), (v) => v.setUint32(36, 0, true)), code: 'bad-chunk' },
  { name: 'chunkElems above the total', frame: () => patch(F.fwd(), (v) => v.setUint32(36, 9, true)), code: 'bad-chunk' },
  { name: 'ping as chunk 0 of 2', frame: () => patch(F.ping(), (v) => v.setUint16(6, 2, true)), code: 'bad-chunk' },
  { name: 'opened as chunk 1 of 1', frame: () => patch(F.opened(), (v) => v.setUint16(4, 1, true)), code: 'bad-chunk' },
];

describe('hostile frames', () => {
  it.each(hostile)('$name -> $code', ({ frame, code, limits }) => {
    expectProtocolError(() => decodeFrame(frame(), limits ?? DEFAULT_LIMITS), code);
  });

  it('the table covers every ProtocolError code', () => {
    const codes: ProtocolErrorCode[] = [
      'bad-magic',
      'bad-version',
      'unknown-kind',
      'truncated',
      'size-mismatch',
      'too-large',
      'non-finite',
      'bad-field',
      'bad-utf8',
      'bad-chunk',
    ];
    expect(new Set(hostile.map((h) => h.code))).toEqual(new Set(codes));
  });

  it('the unpatched frames decode (the table tests the patch, not a broken base)', () => {
    for (const f of [F.hello(), F.open(), F.opened(), F.error(), F.close(), F.ping(), F.fwd(), F.fwd16(), F.res()]) {
      expect(decodeMsg(f).kind).not.toBe('chunk');
    }
    for (let i = 0; i < 4; i++) expect(decodeChunk(F.chunk(i)).index).toBe(i);
  });

  it('10,000 fuzzed frames either decode to a valid message that re-encodes to the same bytes, or throw ProtocolError', () => {
    const r = rng(2024);
    const bases = [
      F.hello(),
      F.open(),
      F.opened(),
      F.error(),
      F.close(),
      F.ping(),
      single(encode(pong)),
      F.fwd(),
      F.fwd16(),
      F.res(),
      single(encode(result(3, 5, 'f16'))),
      ...encodeTensor(forward(4, 32, 'f32'), 200),
      ...encodeTensor(result(3, 40, 'f16'), 100),
    ];
    const seen = new Map<string, number>();
    const count = (k: string): void => void seen.set(k, (seen.get(k) ?? 0) + 1);
    for (let iter = 0; iter < 10_000; iter++) {
      const base = bases[Math.floor(r() * bases.length)];
      let frame: ArrayBuffer;
      const mode = iter % 4;
      if (mode === 0) {
        // Random bytes; half of them with a valid magic, version and kind so they get past byte 2.
        const len = Math.floor(r() * 120);
        frame = new ArrayBuffer(len);
        const b = new Uint8Array(frame);
        for (let i = 0; i < len; i++) b[i] = Math.floor(r() * 256);
        if (len >= 3 && r() < 0.5) {
          b[0] = 0xf1;
          b[1] = 1;
          b[2] = 1 + Math.floor(r() * 9);
          if (len >= 12 && r() < 0.5) new DataView(frame).setUint32(8, len, true);
        }
      } else if (mode === 1) {
        // A valid frame with 1..4 random bytes changed, the length field kept consistent half the time.
        const fix = r() < 0.5;
        frame = patch(
          base,
          (_, b) => {
            const k = 1 + Math.floor(r() * 4);
            for (let j = 0; j < k; j++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
          },
          fix,
        );
      } else if (mode === 2) {
        // A valid frame cut or extended.
        frame = resize(base, Math.max(0, base.byteLength + Math.floor(r() * 17) - 8), r() < 0.7);
      } else {
        // A valid frame with one header or tensor field set to a random or extreme value.
        const at = [3, 4, 6, 12, 16, 20, 24, 28, 32, 36][Math.floor(r() * 10)];
        const value = [0, 1, 0xffff, 0xffffffff, Math.floor(r() * 2 ** 32)][Math.floor(r() * 5)];
        frame = patch(base, (v) => {
          if (at + 4 <= v.byteLength) v.setUint32(at, value, true);
        });
      }
      let d: Decoded;
      try {
        d = decodeFrame(frame);
      } catch (e) {
        if (!(e instanceof ProtocolError)) throw e;
        count(e.code);
        continue;
      }
      count(`ok:${d.kind}`);
      if (d.kind === 'chunk') {
        // A valid chunk: its own fields agree with its size, and a Reassembler takes it.
        expect(d.index).toBeLessThan(d.count);
        const elems = d.index < d.count - 1 ? d.chunkElems : d.nTokens * d.dim - (d.count - 1) * d.chunkElems;
        expect(d.raw.byteLength).toBe(elems * (d.dtype === 'f32' ? 4 : 2));
        const m = new Reassembler().push(d);
        if (d.count === 1) throw new Error('a single chunk must decode to a message');
        expect(m).toBeNull();
      } else {
        // A valid message is canonical: encoding it again gives exactly the same bytes.
        const again = d.kind === 'forward' || d.kind === 'result' ? single(encode(d, Math.max(44, frame.byteLength))) : encodeControl(d);
        expect(new Uint8Array(again)).toEqual(new Uint8Array(frame));
      }
    }
    // The fuzz reaches deep: most codes and several message kinds are hit.
    expect([...seen.keys()].filter((k) => !k.startsWith('ok:')).length).toBe(10); // every ProtocolError code
    expect([...seen.keys()].filter((k) => k.startsWith('ok:')).length).toBe(10); // 9 kinds + chunk
  });

  it('frames claiming gigabytes are refused in bounded time without allocating what they claim', () => {
    // Limits opened wide so only the frame's own length can stop a 4 GiB payload claim.
    const wide = makeLimits({ maxTokens: 0xffffffff, maxDim: 0xffffffff, maxMessageBytes: 2 ** 32, maxContextTokens: 0xffffffff });
    const claims: Array<[ArrayBuffer, ProtocolErrorCode, Limits]> = [
      [patch(F.ping(), (v) => v.setUint32(8, 0xffffffff, true), false), 'too-large', DEFAULT_LIMITS],
      [patch(F.fwd(), (v) => (v.setUint32(24, 0xffffffff, true), v.setUint32(28, 0xffffffff, true))), 'too-large', DEFAULT_LIMITS],
      // 2^16 x 2^14 f32 = 4 GiB in one frame of 72 bytes.
      [patch(F.fwd(), (v) => (v.setUint32(24, 1 << 16, true), v.setUint32(28, 1 << 14, true), v.setUint32(36, 2 ** 30, true))), 'truncated', wide],
      // The same claim as chunk 0 of 65,533 chunks of 16,385 values: a consistent count, a 32-byte payload.
      [
        patch(F.fwd(), (v) => {
          v.setUint32(24, 1 << 16, true);
          v.setUint32(28, 1 << 14, true);
          v.setUint32(36, 16385, true);
          v.setUint16(6, Math.ceil(2 ** 30 / 16385), true);
        }),
        'truncated',
        wide,
      ],
    ];
    for (const [frame, code, limits] of claims) {
      const before = process.memoryUsage().arrayBuffers;
      const t0 = performance.now();
      for (let i = 0; i < 1000; i++) expectProtocolError(() => decodeFrame(frame, limits), code);
      const ms = performance.now() - t0;
      const grew = process.memoryUsage().arrayBuffers - before;
      expect(ms).toBeLessThan(500); // 1000 decodes; allocating 4 GiB even once takes longer or throws RangeError
      expect(grew).toBeLessThan(16 * 1024 * 1024);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('Reassembler bounds', () => {
  /** Chunk frames of a forward for `session`/`step`: 4 x 32 f32 values in frames of 200 bytes (4 chunks). */
  const chunksOf = (session: number, step: number, dtype: Dtype = 'f32'): TensorChunk[] =>
    encodeTensor(forward(4, 32, dtype, session * 100 + step, { session, step }), 200).map((f) => decodeChunk(f));

  it('completes in any order and frees its bytes; forward and result of one step are separate', () => {
    const r = new Reassembler();
    const fwd = chunksOf(1, 0);
    const res = encodeTensor({ ...result(4, 32, 'f32'), session: 1 }, 200).map((f) => decodeChunk(f));
    expect(r.push(fwd[2])).toBeNull();
    expect(r.push(res[0])).toBeNull();
    expect(r.pending).toBe(2);
    expect(r.bufferedBytes).toBe(2 * 4 * 32 * 4);
    expect(r.push(fwd[0])).toBeNull();
    expect(r.push(fwd[3])).toBeNull();
    const m = r.push(fwd[1]);
    expect(m?.kind).toBe('forward');
    expect(r.pending).toBe(1);
    expect(r.bufferedBytes).toBe(4 * 32 * 4);
  });

  it('refuses a message beyond maxPartials, and takes one again once a slot frees', () => {
    const r = new Reassembler({ maxPartials: 2 });
    const a = chunksOf(1, 0);
    const b = chunksOf(2, 0);
    const c = chunksOf(3, 0);
    r.push(a[0]);
    r.push(b[0]);
    let caught: unknown = null;
    try {
      r.push(c[0]);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(ReassemblyError);
    if (caught instanceof ReassemblyError) expect(caught.code).toBe('too-many-partials');
    if (caught instanceof ReassemblyError) expect(caught.name).toBe('ReassemblyError');
    // Chunks of messages already in progress still go in.
    r.push(a[1]);
    r.push(a[2]);
    expect(r.push(a[3])?.kind).toBe('forward');
    expect(r.push(c[0])).toBeNull();
    expect(r.pending).toBe(2);
  });

  it('refuses a message that would pass maxBufferedBytes (reserved on its first chunk)', () => {
    const one = 4 * 32 * 4;
    const r = new Reassembler({ maxBufferedBytes: one + one / 2 });
    r.push(chunksOf(1, 0)[0]);
    expect(() => r.push(chunksOf(2, 0)[3])).toThrow(ReassemblyError);
    try {
      r.push(chunksOf(2, 0)[3]);
    } catch (e) {
      if (!(e instanceof ReassemblyError)) throw e;
      expect(e.code).toBe('buffer-full');
    }
    expect(r.pending).toBe(1);
    expect(r.bufferedBytes).toBe(one);
  });

  it('a chunk claiming a 4 GiB message is refused before anything is allocated', () => {
    const wide = makeLimits({ maxTokens: 0xffffffff, maxDim: 0xffffffff, maxMessageBytes: 2 ** 32, maxContextTokens: 0xffffffff });
    // 2^15 x 2^15 f32 = 4 GiB as 65,533 chunks of 16,385 values (64 KiB frames): build a valid first chunk by hand.
    const chunkElems = 16385;
    const buf = new ArrayBuffer(40 + chunkElems * 4);
    const v = new DataView(buf);
    new Uint8Array(buf).set(new Uint8Array(F.fwd(), 0, 40));
    v.setUint32(8, buf.byteLength, true);
    v.setUint16(6, Math.ceil(2 ** 30 / chunkElems), true);
    v.setUint32(24, 1 << 15, true);
    v.setUint32(28, 1 << 15, true);
    v.setUint32(36, chunkElems, true);
    const chunk = decodeChunk(buf, wide);
    const r = new Reassembler();
    const before = process.memoryUsage().arrayBuffers;
    expect(() => r.push(chunk)).toThrow(ReassemblyError);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1024 * 1024);
    expect(r.pending).toBe(0);
  });

  it('drops partials older than partialTimeoutMs (on sweep and on the next push)', () => {
    let now = 1000;
    const r = new Reassembler({ partialTimeoutMs: 500 }, () => now);
    const a = chunksOf(1, 0);
    r.push(a[0]);
    r.push(a[1]);
    now += 500;
    expect(r.sweep()).toBe(0); // exactly the timeout: still alive
    now += 1;
    expect(r.sweep()).toBe(1);
    expect(r.pending).toBe(0);
    expect(r.bufferedBytes).toBe(0);
    // The rest of a dropped message starts a new partial that cannot complete, and times out in turn.
    expect(r.push(a[2])).toBeNull();
    expect(r.push(a[3])).toBeNull();
    expect(r.pending).toBe(1);
    now += 501;
    r.push(chunksOf(2, 0)[0]); // push sweeps first
    expect(r.pending).toBe(1);
    // A slow drip does not keep a partial alive: the clock runs from its first chunk.
    const b = chunksOf(3, 0);
    r.push(b[0]);
    now += 300;
    r.push(b[1]);
    now += 300;
    expect(r.push(b[2])).toBeNull();
    expect(r.push(b[3])).toBeNull(); // b was dropped before chunk 2; chunks 2 and 3 start over
  });

  it('a repeated chunk, or one that disagrees with its siblings, is a ProtocolError and drops the message', () => {
    const r = new Reassembler();
    const a = chunksOf(1, 0);
    r.push(a[0]);
    expectProtocolError(() => r.push(a[0]), 'bad-chunk');
    expect(r.pending).toBe(0);
    expect(r.bufferedBytes).toBe(0);
    r.push(a[0]);
    const other = chunksOf(1, 0, 'f16'); // same session and step, other dtype (and chunkElems)
    expectProtocolError(() => r.push(other[1]), 'bad-chunk');
    expect(r.pending).toBe(0);
    r.push(a[0]);
    expectProtocolError(() => r.push({ ...a[1], pos0: 99 }), 'bad-chunk');
    r.push(a[0]);
    expectProtocolError(() => r.push({ ...a[1], raw: a[3].raw }), 'bad-chunk'); // hand-made: wrong size
    expect(r.pending).toBe(0);
  });

  it('dropSession frees only that session', () => {
    const r = new Reassembler();
    r.push(chunksOf(1, 0)[0]);
    r.push(chunksOf(1, 1)[0]);
    r.push(chunksOf(2, 0)[0]);
    r.dropSession(1);
    expect(r.pending).toBe(1);
    expect(r.bufferedBytes).toBe(4 * 32 * 4);
  });

  it('rejects nonsense limits', () => {
    expect(() => new Reassembler({ maxPartials: 0 })).toThrow(InvalidArgumentError);
    expect(() => new Reassembler({ partialTimeoutMs: NaN })).toThrow(InvalidArgumentError);
    expect(() => new Reassembler({ maxBufferedBytes: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => makeLimits({ maxFrameBytes: 10 })).toThrow(InvalidArgumentError);
    expect(() => makeLimits({ maxMessageBytes: 2 ** 40 })).toThrow(InvalidArgumentError);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('StepGuard', () => {
  type Step = [step: number, replay: boolean, expected: 'next' | 'replay' | StepOrderErrorCode];
  const table: Array<{ name: string; steps: Step[] }> = [
    { name: 'in order from 0', steps: [[0, false, 'next'], [1, false, 'next'], [2, false, 'next']] },
    { name: 'first step must be 0', steps: [[1, false, 'gap'], [0, false, 'next']] },
    { name: 'a gap is refused and changes nothing', steps: [[0, false, 'next'], [2, false, 'gap'], [1, false, 'next']] },
    { name: 'a replay without the flag is refused', steps: [[0, false, 'next'], [1, false, 'next'], [1, false, 'unflagged-replay'], [0, false, 'unflagged-replay'], [2, false, 'next']] },
    { name: 'a flagged replay rewinds', steps: [[0, false, 'next'], [1, false, 'next'], [2, false, 'next'], [1, true, 'replay'], [2, false, 'next'], [3, false, 'next']] },
    { name: 'a flagged replay of the latest step', steps: [[0, false, 'next'], [0, true, 'replay'], [1, false, 'next']] },
    { name: 'a flag on the next step is just next', steps: [[0, true, 'next'], [1, true, 'next']] },
    { name: 'a flag does not excuse a gap', steps: [[0, false, 'next'], [5, true, 'gap']] },
  ];
  it.each(table)('$name', ({ steps }) => {
    const g = new StepGuard();
    g.begin(42);
    for (const [step, replay, expected] of steps) {
      if (expected === 'next' || expected === 'replay') {
        expect(g.check(42, step, replay)).toBe(expected);
      } else {
        let caught: unknown = null;
        try {
          g.check(42, step, replay);
        } catch (e) {
          caught = e;
        }
        if (!(caught instanceof StepOrderError)) throw new Error(`step ${step}: expected ${expected}, got ${String(caught)}`);
        expect(caught.code).toBe(expected);
        expect(caught.name).toBe('StepOrderError');
      }
    }
  });

  it('sessions are independent, must be begun, and are bounded', () => {
    const g = new StepGuard(2);
    expect(() => g.check(1, 0, false)).toThrow(StepOrderError);
    g.begin(1);
    g.begin(2);
    expect(() => g.begin(1)).toThrow(/session-exists/);
    expect(() => g.begin(3)).toThrow(/too-many-sessions/);
    expect(g.check(1, 0, false)).toBe('next');
    expect(g.check(2, 0, false)).toBe('next');
    expect(g.check(1, 1, false)).toBe('next');
    g.end(2);
    expect(g.has(2)).toBe(false);
    expect(() => g.check(2, 1, false)).toThrow(/unknown-session/);
    g.begin(3);
    expect(g.check(3, 0, false)).toBe('next');
  });

  it('works with decoded forwards: a lost result is re-sent with the replay flag', () => {
    const g = new StepGuard();
    g.begin(3);
    const steps = [0, 1, 2].map((step) => decodeMsg(single(encode(forward(1, 8, 'f32', step, { step })))));
    for (const m of steps) if (m.kind === 'forward') expect(g.check(m.session, m.step, m.replay)).toBe('next');
    const again = decodeMsg(single(encode(forward(1, 8, 'f32', 2, { step: 2, replay: true }))));
    if (again.kind !== 'forward') throw new Error(again.kind);
    expect(g.check(again.session, again.step, again.replay)).toBe('replay');
  });
});
