// WebRTC and WebSocket for Node: PeerJS expects the browser globals RTCPeerConnection, RTCSessionDescription,
// RTCIceCandidate (node-datachannel's polyfill, libdatachannel underneath) and WebSocket (Node 20 has none; `ws`
// provides it). Installing them is idempotent. Not a transport: src/swarm/transport.ts does the framing.

import { RTCIceCandidate, RTCPeerConnection, RTCSessionDescription } from 'node-datachannel/polyfill';
import nodeDataChannel from 'node-datachannel';
import WebSocket from 'ws';

let installed = false;

/**
 * PeerJS handles signalling messages concurrently, so a remote ICE candidate can reach addIceCandidate before the
 * offer/answer's setRemoteDescription has finished. Browsers queue such candidates; libdatachannel throws ("remote
 * candidate without ICE transport"), PeerJS drops the candidate and the channel may never open. This subclass waits
 * for the remote description (at most 10 s, then tries anyway) before adding a candidate.
 */
class OrderedPeerConnection extends RTCPeerConnection {
  private remoteReady: Promise<void>;
  private markRemoteReady!: () => void;

  constructor(config?: RTCConfiguration) {
    super(config);
    this.remoteReady = new Promise((r) => (this.markRemoteReady = r));
  }

  override async setRemoteDescription(d: RTCSessionDescriptionInit): Promise<void> {
    await super.setRemoteDescription(d);
    this.markRemoteReady();
  }

  override async addIceCandidate(c?: RTCIceCandidateInit | null): Promise<void> {
    if (!this.remoteDescription) {
      await Promise.race([this.remoteReady, new Promise((r) => setTimeout(r, 10_000))]);
    }
    return super.addIceCandidate(c ?? undefined);
  }
}

/** Put the WebRTC and WebSocket classes PeerJS needs on globalThis (once per process). */
export function installNodeWebRtc(): void {
  if (installed) return;
  installed = true;
  const g: Record<string, unknown> = globalThis as unknown as Record<string, unknown>;
  g.RTCPeerConnection ??= OrderedPeerConnection;
  g.RTCSessionDescription ??= RTCSessionDescription;
  g.RTCIceCandidate ??= RTCIceCandidate;
  g.WebSocket ??= WebSocket;
}

/** Release libdatachannel's threads so the process can exit (call after every peer is destroyed). */
export function cleanupNodeWebRtc(): void {
  nodeDataChannel.cleanup();
}
