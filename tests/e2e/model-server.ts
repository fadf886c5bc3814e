// A test HTTP server for model downloads: serves one file with Range requests (206 + Content-Range + ETag), CORS
// for the app's other origin, an optional delay per request, and a log of every request and the bytes it sent, so
// tests can prove what was (and was not) fetched. Not a general file server.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RequestLog {
  range: string | null;
  start: number;
  end: number;
  /** bytes actually written before the response finished or the client went away */
  sent: number;
}

export interface ModelServer {
  url: string;
  log: RequestLog[];
  /** milliseconds to wait before answering each request */
  delayMs: number;
  bytesSent(): number;
  reset(): void;
  close(): Promise<void>;
}

export async function startModelServer(data: Uint8Array, name = 'model.gguf'): Promise<ModelServer> {
  const log: RequestLog[] = [];
  const etag = `"flock-test-${data.byteLength}"`;
  const state = { delayMs: 0 };
  const server: Server = createServer((req, res) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Range');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Range, Content-Length, ETag, Accept-Ranges');
    if (req.method === 'OPTIONS') {
      res.writeHead(204).end();
      return;
    }
    if (req.url !== `/${name}`) {
      res.writeHead(404).end();
      return;
    }
    const range = req.headers.range ?? null;
    const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] !== '' ? Math.min(Number(m[2]), data.byteLength - 1) : data.byteLength - 1;
    const entry: RequestLog = { range, start, end, sent: 0 };
    log.push(entry);
    setTimeout(() => {
      if (m && start >= data.byteLength) {
        res.writeHead(416, { 'Content-Range': `bytes */${data.byteLength}` }).end();
        return;
      }
      const body = data.subarray(start, end + 1);
      res.writeHead(m ? 206 : 200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': String(body.byteLength),
        'Accept-Ranges': 'bytes',
        ETag: etag,
        ...(m ? { 'Content-Range': `bytes ${start}-${end}/${data.byteLength}` } : {}),
      });
      res.end(body, () => {
        entry.sent = body.byteLength;
      });
    }, state.delayMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/${name}`,
    log,
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(v: number) {
      state.delayMs = v;
    },
    bytesSent: () => log.reduce((a, r) => a + r.sent, 0),
    reset: () => {
      log.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
