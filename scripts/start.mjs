#!/usr/bin/env node
// `npm start`: the app on http://127.0.0.1:5173 (Vite dev server, embedded model) and a local signalling server
// (PeerServer) on 127.0.0.1:9000 for swarms between tabs and Node hosts on this machine. Ctrl-C stops both.
import { spawn } from 'node:child_process';

const SIGNAL_PORT = process.env.FLOCK_SIGNAL_PORT ?? '9000';
const APP_PORT = process.env.FLOCK_PORT ?? '5173';

const children = [
  spawn(process.execPath, ['bin/flock.mjs', 'signal', '--port', SIGNAL_PORT], { stdio: 'inherit' }),
  spawn(process.execPath, ['node_modules/vite/bin/vite.js', '--host', '127.0.0.1', '--port', APP_PORT, '--strictPort'], { stdio: 'inherit' }),
];
let stopping = false;
function stop(code) {
  if (stopping) return;
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  process.exitCode = code;
}
for (const c of children) c.on('exit', (code) => stop(code ?? 0));
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
