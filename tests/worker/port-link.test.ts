// The worker's end of a relayed link (PortLink) over a real MessageChannel, the page's end played by the test: frames
// the page relays are decoded under the link's limits (the model's) and reach every listener; a frame that breaks
// them is a violation, not a message; the link's end arrives with the page's wording; frames the worker sends cross
// by transfer (the sender's buffers are detached). Messages on the port are checked field by field.

import { describe, expect, it } from 'vitest';
import { LinkDownError, ProtocolError } from '../../src/swarm/errors';
import { DEFAULT_LIMITS, encodeControl, encodeTensor, modelLimits, type Msg } from '../../src/swarm/protocol';
import type { PortToPage } from '../../src/worker/api';
import { parsePortMessage, PortLink } from '../../src/worker/port-link';

const LIMITS = modelLimits({ dim: 64, nLayers: 5, maxBatch: 64, maxContext: 256 });
const HASH = 'ab'.repeat(32);

function pair(): { page: MessagePort; link: PortLink } {
  const { port1: page, port2: worker } = new MessageChannel();
  return { page, link: new PortLink({ port: worker, peer: 'host-1', frameBytes: 16 * 1024 }, LIMITS) };
}

const next = <T>(p: (resolve: (x: T) => void) => void): Promise<T> => new Promise(p);

describe('PortLink', () => {
  it('decodes relayed frames under the model\'s limits, for every listener; a hello is kept', async () => {
    const { page, link } = pair();
    const a: Msg[] = [];
    const b: Msg[] = [];
    link.onMessage((m) => a.push(m));
    const off = link.onMessage((m) => b.push(m));
    const hello = encodeControl({ kind: 'hello', protocolVersion: 1, peerId: 'host-1', modelHash: HASH, span: { start: 0, end: 5 }, maxSessions: 4, freeKvTokens: 100 });
    page.postMessage({ t: 'frame', frame: hello }, [hello]);
    expect((await link.waitHello(2_000))?.peerId).toBe('host-1');
    off();
    // a result of 3 tokens in frames of 256 bytes: reassembled in the worker
    const payload = Float32Array.from({ length: 3 * 64 }, (_, i) => i / 7);
    for (const f of encodeTensor({ kind: 'result', session: 9, step: 0, pos0: 0, nTokens: 3, dim: 64, dtype: 'f32', payload }, 256, LIMITS)) {
      page.postMessage({ t: 'frame', frame: f }, [f]);
    }
    await next<void>((r) => link.onMessage(() => r()));
    expect(a.map((m) => m.kind)).toEqual(['hello', 'result']);
    expect(b.map((m) => m.kind)).toEqual(['hello']); // removed before the result came
    const res = a[1];
    expect(res.kind === 'result' && Array.from(res.payload)).toEqual(Array.from(payload));
    link.close();
  });

  it('a frame beyond the model\'s limits is a violation, never a message', async () => {
    const { page, link } = pair();
    const got: Msg[] = [];
    link.onMessage((m) => got.push(m));
    const violation = next<ProtocolError | Error>((r) => link.onViolation(r));
    // 4,096 tokens: fine under the protocol's defaults, not under this model's batch of 64
    const [first] = encodeTensor({ kind: 'result', session: 1, step: 0, pos0: 0, nTokens: 4096, dim: 64, dtype: 'f32', payload: new Float32Array(4096 * 64) }, 64 * 1024, DEFAULT_LIMITS);
    page.postMessage({ t: 'frame', frame: first }, [first]);
    const e = await violation;
    expect(e).toBeInstanceOf(ProtocolError);
    expect(e.message).toMatch(/too-large: result.nTokens 4096 > 64/);
    expect(got).toEqual([]);
    link.close();
  });

  it('the link\'s end carries the page\'s reason and words; sends after it are refused', async () => {
    const { page, link } = pair();
    page.postMessage({ t: 'down', reason: 'heartbeat', detail: 'link to host-1: nothing heard for 5000 ms' });
    const e = await link.closed;
    expect(e).toBeInstanceOf(LinkDownError);
    expect(e.reason).toBe('heartbeat');
    expect(e.message).toBe('heartbeat: link to host-1: nothing heard for 5000 ms');
    expect(link.isDown).toBe(true);
    await expect(link.send({ kind: 'close', session: 1 })).rejects.toBe(e);
  });

  it('frames the worker sends cross by transfer; close asks the page to hang up', async () => {
    const { page, link } = pair();
    const got: PortToPage[] = [];
    page.onmessage = (ev: MessageEvent<PortToPage>) => got.push(ev.data);
    const frame = encodeControl({ kind: 'close', session: 3 });
    await link.sendFrames([frame]);
    expect(frame.byteLength).toBe(0); // detached: moved, not copied
    link.close('protocol', 'a result of the wrong shape');
    await new Promise((r) => setTimeout(r, 50));
    expect(got.map((m) => m.t)).toEqual(['frames', 'close']);
    expect(got[1]).toEqual({ t: 'close', reason: 'protocol', detail: 'a result of the wrong shape' });
    page.close();
  });

  it('messages on the port are checked field by field', () => {
    const f = new ArrayBuffer(8);
    expect(parsePortMessage({ t: 'frame', frame: f })).toEqual({ t: 'frame', frame: f });
    expect(parsePortMessage({ t: 'down', reason: 'heartbeat', detail: 'x' })).toEqual({ t: 'down', reason: 'heartbeat', detail: 'x' });
    for (const bad of [null, 3, {}, { t: 'frame' }, { t: 'frame', frame: [1, 2] }, { t: 'down', reason: 'bored' }, { t: 'frames', frames: [] }, { t: 'msg', msg: { kind: 'pong' } }]) {
      expect(parsePortMessage(bad)).toBeNull();
    }
  });
});
