// `flock signal`: a local PeerServer (the `peer` npm package) for swarms on a LAN or in tests, with peer listing off
// (like the public PeerJS server; discovery.ts does not need it). Not a relay: only WebRTC signalling passes here.

import { parseArgs } from 'node:util';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PeerServer } from 'peer';
import { FlockError } from '../model/errors';

export interface SignalServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Start a PeerServer on host:port (port 0 = any free port), path '/'. */
export function startSignalServer(port = 0, host = '127.0.0.1'): Promise<SignalServer> {
  return new Promise((resolve, reject) => {
    const app = PeerServer({ host, port, path: '/', allow_discovery: false }, (server: Server) => {
      const addr = server.address() as AddressInfo; // node's own http server, not data from a peer
      resolve({
        port: addr.port,
        url: `ws://${host}:${addr.port}/`,
        close: () =>
          new Promise<void>((res) => {
            server.closeAllConnections?.();
            server.close(() => res());
          }),
      });
    });
    app.on('error', (e: Error) => reject(new FlockError(`PeerServer failed: ${e.message}`)));
  });
}

export async function runSignal(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { port: { type: 'string', default: '9000' }, host: { type: 'string', default: '127.0.0.1' } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new FlockError(`--port expects 0..65535, got "${values.port}"`);
  const s = await startSignalServer(port, values.host);
  process.stderr.write(`flock signal: PeerServer on ${s.url}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await s.close();
}
