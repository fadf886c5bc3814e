// Node's RTCPeerConnection (src/cli/node-webrtc.ts over node-datachannel): a data channel announced to a handler that
// throws (PeerJS's, when the connection it belongs to was closed meanwhile) is closed, and the process goes on; the
// handler itself still runs. Two real peer connections over loopback, negotiated by hand.

import { afterAll, describe, expect, it } from 'vitest';
import { installNodeWebRtc } from '../../src/cli/node-webrtc';

installNodeWebRtc();

const opened: RTCPeerConnection[] = [];
afterAll(() => {
  for (const pc of opened) pc.close();
});

async function connect(a: RTCPeerConnection, b: RTCPeerConnection): Promise<void> {
  a.onicecandidate = (e) => void (e.candidate && b.addIceCandidate(e.candidate));
  b.onicecandidate = (e) => void (e.candidate && a.addIceCandidate(e.candidate));
  await a.setLocalDescription(await a.createOffer());
  await b.setRemoteDescription(a.localDescription!);
  await b.setLocalDescription(await b.createAnswer());
  await a.setRemoteDescription(b.localDescription!);
}

describe("Node's RTCPeerConnection", () => {
  it('closes a data channel whose handler throws, without an uncaught error', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown): void => void uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    try {
      const a = new RTCPeerConnection();
      const b = new RTCPeerConnection();
      opened.push(a, b);
      let called = 0;
      b.ondatachannel = () => {
        called++;
        throw new TypeError("Cannot read properties of null (reading '_initializeDataChannel')");
      };
      const ch = a.createDataChannel('flock');
      const closed = new Promise<void>((resolve) => (ch.onclose = () => resolve()));
      await connect(a, b);
      await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the channel stayed open')), 15_000))]);
      expect(called).toBe(1);
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});
