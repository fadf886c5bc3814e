// Reassembly of hidden-state tensors split over frames (protocol.ts encodes and decodes the frames; a TensorChunk is
// one decoded frame of a multi-frame forward or result). One Reassembler per link: per-link state, bounded in
// messages, bytes and time. Not here: frame validation (decodeFrame checks each chunk against the limits first) or
// step order (step-guard.ts).

import { InvalidArgumentError } from '../model/errors';
import { ProtocolError, ReassemblyError } from './errors';
import { f16ArrayToF32 } from './f16';
import { dtypeWidth, FLAG_REPLAY, tensorMsg, type ForwardMsg, type ResultMsg, type TensorChunk, type TensorFields } from './protocol';

export interface ReassemblerLimits {
  /** Most messages half received at once. A pipeline keeps one or two in flight per session. */
  maxPartials: number;
  /** A partial older than this (from its first chunk) is dropped: its sender gave up or died. */
  partialTimeoutMs: number;
  /** Most bytes reserved for partials together (each reserves its whole f32 tensor on its first chunk). */
  maxBufferedBytes: number;
}

export const DEFAULT_REASSEMBLER_LIMITS: Readonly<ReassemblerLimits> = Object.freeze({
  maxPartials: 8,
  partialTimeoutMs: 30_000, // 64 MiB at ~2 MB/s, a slow home uplink, with room
  maxBufferedBytes: 128 * 1024 * 1024, // two messages of DEFAULT_LIMITS.maxMessageBytes
});

interface PartialTensor extends TensorFields {
  of: 'forward' | 'result';
  replay: boolean;
  count: number;
  chunkElems: number;
  /** received[i] = 1 once chunk i is in. */
  received: Uint8Array;
  nReceived: number;
  /** X: [nTokens, dim], filled chunk by chunk. */
  out: Float32Array;
  bytes: number;
  createdAt: number;
}

/**
 * Puts chunked forward/result messages back together, keyed by (kind, session, step). Bounded: at most maxPartials
 * messages in progress, maxBufferedBytes reserved, partials older than partialTimeoutMs dropped. Chunks may arrive
 * in any order. A chunk that disagrees with its siblings, or repeats an index, is a ProtocolError and drops the
 * partial. Chunks of a dropped or completed message start a new partial, which times out: the StepGuard, not this
 * class, rejects the step.
 */
export class Reassembler {
  private readonly partials = new Map<string, PartialTensor>();
  private buffered = 0;
  readonly limits: ReassemblerLimits;

  constructor(
    limits: Partial<ReassemblerLimits> = {},
    private readonly now: () => number = () => Date.now(),
  ) {
    const l = { ...DEFAULT_REASSEMBLER_LIMITS, ...limits };
    if (!Number.isInteger(l.maxPartials) || l.maxPartials < 1) {
      throw new InvalidArgumentError(`maxPartials = ${l.maxPartials} must be an integer >= 1.`);
    }
    if (!(l.partialTimeoutMs > 0)) {
      throw new InvalidArgumentError(`partialTimeoutMs = ${l.partialTimeoutMs} must be > 0.`);
    }
    if (!Number.isInteger(l.maxBufferedBytes) || l.maxBufferedBytes < 4) {
      throw new InvalidArgumentError(`maxBufferedBytes = ${l.maxBufferedBytes} must be an integer >= 4.`);
    }
    this.limits = l;
  }

  /** Messages in progress. */
  get pending(): number {
    return this.partials.size;
  }

  /** Bytes reserved by messages in progress. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Add a chunk; returns the whole message when this was its last missing chunk, else null. */
  push(chunk: TensorChunk): ForwardMsg | ResultMsg | null {
    this.sweep();
    const key = `${chunk.of}:${chunk.session}:${chunk.step}`;
    let p = this.partials.get(key);
    if (p === undefined) {
      if (this.partials.size >= this.limits.maxPartials) {
        throw new ReassemblyError(
          'too-many-partials',
          `${this.partials.size} messages already in progress (limit ${this.limits.maxPartials}); chunk dropped.`,
        );
      }
      const bytes = chunk.nTokens * chunk.dim * 4;
      if (this.buffered + bytes > this.limits.maxBufferedBytes) {
        throw new ReassemblyError(
          'buffer-full',
          `${bytes} more bytes would pass maxBufferedBytes ${this.limits.maxBufferedBytes} ` +
            `(${this.buffered} in use).`,
        );
      }
      p = {
        of: chunk.of,
        session: chunk.session,
        step: chunk.step,
        replay: chunk.replay,
        pos0: chunk.pos0,
        nTokens: chunk.nTokens,
        dim: chunk.dim,
        dtype: chunk.dtype,
        count: chunk.count,
        chunkElems: chunk.chunkElems,
        received: new Uint8Array(chunk.count),
        nReceived: 0,
        out: new Float32Array(chunk.nTokens * chunk.dim),
        bytes,
        createdAt: this.now(),
      };
      this.partials.set(key, p);
      this.buffered += bytes;
    } else if (
      p.replay !== chunk.replay ||
      p.pos0 !== chunk.pos0 ||
      p.nTokens !== chunk.nTokens ||
      p.dim !== chunk.dim ||
      p.dtype !== chunk.dtype ||
      p.count !== chunk.count ||
      p.chunkElems !== chunk.chunkElems
    ) {
      this.remove(key, p);
      throw new ProtocolError(
        'bad-chunk',
        `Chunk ${chunk.index} of ${key} disagrees with its earlier chunks; message dropped.`,
      );
    }
    const raw = chunk.raw;
    const at = chunk.index * p.chunkElems;
    const elems = Math.min(p.chunkElems, p.out.length - at);
    const badIndex = !Number.isInteger(chunk.index) || chunk.index < 0 || chunk.index >= p.count;
    if (badIndex || raw.byteLength !== elems * dtypeWidth(p.dtype)) {
      // Only a hand-made chunk gets here: decodeFrame already checked both.
      this.remove(key, p);
      throw new ProtocolError(
        'bad-chunk',
        `Chunk ${chunk.index} of ${key} has the wrong index or size; message dropped.`,
      );
    }
    if (p.received[chunk.index] !== 0) {
      this.remove(key, p);
      throw new ProtocolError('bad-chunk', `Chunk ${chunk.index} of ${key} arrived twice; message dropped.`);
    }
    if (p.dtype === 'f32') p.out.set(new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4), at);
    else f16ArrayToF32(new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2), p.out, at);
    p.received[chunk.index] = 1;
    p.nReceived++;
    if (p.nReceived < p.count) return null;
    this.remove(key, p);
    const h = { session: p.session, step: p.step, flags: p.replay ? FLAG_REPLAY : 0 };
    return tensorMsg(p.of, h, p.pos0, p.nTokens, p.dim, p.dtype, p.out);
  }

  /** Drop partials older than partialTimeoutMs; returns how many were dropped. push calls it; a timer should too. */
  sweep(): number {
    const t = this.now();
    let dropped = 0;
    for (const [key, p] of this.partials) {
      if (t - p.createdAt > this.limits.partialTimeoutMs) {
        this.remove(key, p);
        dropped++;
      }
    }
    return dropped;
  }

  /** Drop every partial of a session (on close or failure). */
  dropSession(session: number): void {
    for (const [key, p] of this.partials) if (p.session === session) this.remove(key, p);
  }

  private remove(key: string, p: PartialTensor): void {
    if (this.partials.delete(key)) this.buffered -= p.bytes;
  }
}
