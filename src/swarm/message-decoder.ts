// Frames in, messages out: the per-link decoding state every receiver of hidden states keeps. Each frame is validated
// against the link's limits (decodeFrame) before anything is allocated for it, and chunked tensors are put back
// together (reassembler.ts) within a bounded buffer. PeerLink (a data channel on this thread) and PortLink (frames
// relayed from the page to the engine worker) both use it, so the same bytes meet the same checks wherever they
// are decoded. Not here: rate limits, heartbeats (transport.ts), what messages mean.

import { ProtocolError, ReassemblyError } from './errors';
import { decodeFrame, type Limits, type Msg } from './protocol';
import { Reassembler } from './reassembler';

/** Messages a link keeps half received at once. 8: a pipeline keeps one or two in flight per session. */
const MAX_PARTIALS = 8;

export class MessageDecoder {
  private readonly reassembler: Reassembler;
  /** the most bytes the reassembler held at once over the decoder's life */
  peakBufferedBytes = 0;

  constructor(readonly limits: Limits) {
    // two whole messages at the link's limit: one arriving while the previous one is still completing
    this.reassembler = new Reassembler({ maxPartials: MAX_PARTIALS, maxBufferedBytes: 2 * limits.maxMessageBytes });
  }

  /** Bytes reserved for partial messages now. */
  get bufferedBytes(): number {
    return this.reassembler.bufferedBytes;
  }

  /**
   * One frame: the message it completes, or null while a chunked message waits for more frames. Throws
   * ProtocolError or ReassemblyError (and nothing else) for a frame that breaks the protocol or the bounds.
   */
  push(frame: ArrayBuffer): Msg | null {
    try {
      const d = decodeFrame(frame, this.limits);
      if (d.kind !== 'chunk') return d;
      const msg = this.reassembler.push(d);
      this.peakBufferedBytes = Math.max(this.peakBufferedBytes, this.reassembler.bufferedBytes);
      return msg;
    } catch (e) {
      if (e instanceof ProtocolError || e instanceof ReassemblyError) throw e;
      throw new ProtocolError('bad-field', `undecodable frame: ${String(e)}`);
    }
  }

  /** Drop partial messages that waited too long (a timer calls this; push does too). */
  sweep(): void {
    this.reassembler.sweep();
  }
}
