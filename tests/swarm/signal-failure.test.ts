// Why joining a signalling server failed, against real servers on loopback (no GPU): a real PeerServer accepts a peer;
// a port nothing listens on is 'unreachable'; a server that answers the peer-id request with HTTP 503 is 'refused'; a
// wrong PeerServer key is 'refused'; an address that is not a URL is 'config'; and with the device offline (the
// browser's navigator.onLine, stubbed here as Node has none) a server elsewhere is 'offline' before anything is
// tried, while a server on this machine is still tried.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { installNodeWebRtc } from '../../src/cli/node-webrtc';
import { startSignalServer, type SignalServer } from '../../src/cli/signal';
import { SignalError } from '../../src/swarm/errors';
import { openPeer, parseSignalUrl } from '../../src/swarm/transport';

let peerServer: SignalServer;
const httpServers: Server[] = [];

async function listen(handler: Parameters<typeof createServer>[1]): Promise<number> {
  const s = createServer(handler);
  httpServers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

/** The SignalError openPeer throws for `url` (or fails the test). */
async function failure(url: string, key?: string): Promise<SignalError> {
  const cfg = { ...parseSignalUrl(url), ...(key ? { key } : {}) };
  try {
    const r = await openPeer(cfg, undefined, 5_000);
    if (r.kind === 'open') r.peer.destroy();
  } catch (e) {
    expect(e).toBeInstanceOf(SignalError);
    return e as SignalError;
  }
  throw new Error(`${url} was accepted`);
}

beforeAll(async () => {
  installNodeWebRtc();
  peerServer = await startSignalServer(0);
});
afterAll(async () => {
  await peerServer?.close();
  for (const s of httpServers) s.close();
  vi.unstubAllGlobals();
});

describe('signalling failures name their cause', () => {
  it('a running PeerServer accepts a peer', async () => {
    const r = await openPeer(parseSignalUrl(peerServer.url), undefined);
    expect(r.kind).toBe('open');
    if (r.kind === 'open') r.peer.destroy();
  });

  it('nothing listening: unreachable', async () => {
    const port = await listen(() => {});
    await new Promise<void>((r) => httpServers.pop()!.close(() => r())); // bound, then released: nothing listens
    const e = await failure(`ws://127.0.0.1:${port}/`);
    expect(e.code).toBe('unreachable');
    expect(e.message).toMatch(new RegExp(`^No answer from the signalling server ws://127\\.0\\.0\\.1:${port}/ `));
  });

  it('a server that answers HTTP 503: refused', async () => {
    const port = await listen((_req, res) => res.writeHead(503).end('busy'));
    const e = await failure(`ws://127.0.0.1:${port}/`);
    expect(e.code).toBe('refused');
    expect(e.message).toContain('answered HTTP 503');
  });

  it('a PeerServer that does not know the key: refused', async () => {
    const e = await failure(peerServer.url, 'not-the-key');
    expect(e.code).toBe('refused');
  });

  it('an address that is not a URL: config', () => {
    expect(() => parseSignalUrl('peerjs server')).toThrow(SignalError);
    try {
      parseSignalUrl('ftp://example.org/');
    } catch (e) {
      expect((e as SignalError).code).toBe('config');
    }
  });

  it('offline: a server elsewhere is not even tried; one on this machine still is', async () => {
    vi.stubGlobal('navigator', { onLine: false });
    try {
      const t0 = performance.now();
      const e = await failure('wss://0.peerjs.com/');
      expect(e.code).toBe('offline');
      expect(e.message).toMatch(/^This device is offline, so it cannot reach the signalling server wss:\/\/0\.peerjs\.com:443\//);
      expect(performance.now() - t0).toBeLessThan(100);
      const r = await openPeer(parseSignalUrl(peerServer.url), undefined);
      expect(r.kind).toBe('open');
      if (r.kind === 'open') r.peer.destroy();
    } finally {
      vi.unstubAllGlobals();
    }
  });
});
