// `flock signal`: a local PeerServer (the `peer` npm package) for swarms on a LAN or in tests, with peer listing off
// (like the public PeerJS server; discovery.ts does not need it). Not a relay: only WebRTC signalling passes here.

import { parseArgs } from 'node:util';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
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
    // An offer to an id nobody holds is answered with EXPIRE (peers see 'peer-unavailable') once it has waited
    // expire_timeout, checked every cleanup_out_msgs: 500 ms and 100 ms here (the stock 5 s and 1 s would make every
    // client wait seconds on a host that is gone). Offers to an id claimed within that time are still delivered.
    const app = PeerServer({ host, port, path: '/', allow_discovery: false, expire_timeout: 500, cleanup_out_msgs: 100 }, (server: Server) => {
      // WebSocket connections are upgraded out of http's bookkeeping: track sockets to end them on close.
      const sockets = new Set<Socket>();
      server.on('connection', (s: Socket) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      const addr = server.address();
      if (addr === null || typeof addr === 'string') {
        reject(new FlockError('PeerServer is not listening on a TCP port.'));
        return;
      }
      resolve({
        port: addr.port,
        url: `ws://${host}:${addr.port}/`,
        close: () =>
          new Promise<void>((res) => {
            server.close(() => res());
            server.closeAllConnections?.();
            for (const s of sockets) s.destroy();
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
