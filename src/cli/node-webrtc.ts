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
    // A remote data channel can arrive after PeerJS closed the connection it belongs to; PeerJS's handler then
    // dereferences null and, thrown from an event listener, that would take the process down. Such a channel is
    // closed instead. (The polyfill defines `ondatachannel` on the instance, so it is wrapped here, not overridden.)
    let handler: ((e: RTCDataChannelEvent) => void) | null = null;
    Object.defineProperty(this, 'ondatachannel', {
      configurable: true,
      enumerable: true,
      get: () => handler,
      set: (fn: ((e: RTCDataChannelEvent) => void) | null) => {
        handler = fn
          ? (e) => {
              try {
                fn.call(this, e);
              } catch {
                e.channel.close();
              }
            }
          : null;
      },
    });
  }

  override async setRemoteDescription(d: RTCSessionDescriptionInit): Promise<void> {
    await super.setRemoteDescription(d);
    this.markRemoteReady();
  }

  override async addIceCandidate(c?: RTCIceCandidateInit | null): Promise<void> {
    if (!this.remoteDescription) {
      await Promise.race([this.remoteReady, new Promise((r) => setTimeout(r, 10_000))]);
    }
    // libdatachannel may throw "remote candidate without ICE transport" when a candidate races the description.
    // Retry every 25 ms for up to 1 s (40 tries); then drop the candidate silently. Never throw: PeerJS's handler of a
    // failed candidate dereferences the connection's provider, which is null once the connection was closed, and
    // that unhandled rejection would take the process down. A dropped candidate at worst delays the channel; the
    // caller's open timeout and retry (transport.ts dial) cover that.
    for (let i = 0; i < 40 && this.connectionState !== 'closed'; i++) {
      try {
        return await super.addIceCandidate(c ?? undefined);
      } catch {
        await new Promise((r) => setTimeout(r, 25));
      }
    }
  }
}

/** Put the WebRTC and WebSocket classes PeerJS needs on globalThis (once per process). */
export function installNodeWebRtc(): void {
  if (installed) return;
  installed = true;
  const install = (name: string, value: unknown): void => {
    if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
  };
  install('RTCPeerConnection', OrderedPeerConnection);
  install('RTCSessionDescription', RTCSessionDescription);
  install('RTCIceCandidate', RTCIceCandidate);
  install('WebSocket', WebSocket);
}

/** Release libdatachannel's threads so the process can exit (call after every peer is destroyed). */
export function cleanupNodeWebRtc(): void {
  nodeDataChannel.cleanup();
}
