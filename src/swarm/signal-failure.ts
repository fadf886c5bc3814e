// Why a signalling server could not be used, named as the user can act on it (SignalError's code): this device is
// offline; the server does not answer (a wrong address, a server that is down, a network that blocks it); or the
// server answered and refused. PeerJS reports the first two, an HTTP error from the server and the server's own
// refusals over its socket all as one 'server-error', so on such an error we ask the server once ourselves, with the
// request PeerJS makes for a peer id: no answer is 'unreachable', an answer other than 200 is 'refused', and a 200
// means the server itself said no over the socket ('refused' too).
// Not here: opening peers (transport.ts).

import { SignalError } from './errors';
import type { SignalConfig } from './transport';

/** Most time the diagnostic request waits for the server. 5 s: a server that answers at all answers well within. */
const PROBE_TIMEOUT_MS = 5_000;

/** PeerJS error types that mean the server answered and said no. */
const REFUSALS = new Set(['invalid-key', 'invalid-id', 'unavailable-id', 'ssl-unavailable', 'browser-incompatible']);

/** Whether the browser says this device has no network (never in Node, which does not say). */
export function deviceOffline(): boolean {
  return (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine === false;
}

/** A server on this machine stays reachable without a network. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\./.test(host);
}

function where(cfg: SignalConfig): string {
  return `${cfg.secure ? 'wss' : 'ws'}://${cfg.host}:${cfg.port}${cfg.path}`;
}

export function offlineError(cfg: SignalConfig): SignalError {
  return new SignalError(
    'offline',
    `This device is offline, so it cannot reach the signalling server ${where(cfg)}. Swarm and Contribute modes need the network; Local mode works offline.`,
  );
}

/** Ask the server for a peer id as PeerJS does: the HTTP status, or null when nothing answered. */
async function probe(cfg: SignalConfig): Promise<number | null> {
  const url = `${cfg.secure ? 'https' : 'http'}://${cfg.host}:${cfg.port}${cfg.path.endsWith('/') ? cfg.path : `${cfg.path}/`}${cfg.key}/id?ts=${Date.now()}`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return null;
  }
}

/** The SignalError for a PeerJS error of `type` (or 'timeout') with `message`, its cause found out. */
export async function signalFailure(cfg: SignalConfig, type: string, message: string): Promise<SignalError> {
  const w = where(cfg);
  if (deviceOffline() && !isLoopback(cfg.host)) return offlineError(cfg);
  if (REFUSALS.has(type)) return new SignalError('refused', `The signalling server ${w} refused this peer (${type}: ${message}).`);
  const status = await probe(cfg);
  if (deviceOffline() && !isLoopback(cfg.host)) return offlineError(cfg);
  const check = 'Check its address under "Signalling and ICE servers" and that it is running.';
  if (status === null) return new SignalError('unreachable', `No answer from the signalling server ${w} (${message}). ${check}`);
  if (status !== 200) return new SignalError('refused', `The signalling server ${w} answered HTTP ${status} to a request for a peer id: it refused. ${check}`);
  // it answers over HTTP: a 'server-error' now is the server's own refusal over the socket (an invalid key, …)
  if (type === 'server-error') return new SignalError('refused', `The signalling server ${w} refused this peer: ${message}.`);
  return new SignalError('unreachable', `The signalling server ${w} answers, but its connection failed (${type}: ${message}). Try again; if it keeps failing, this network may block WebSockets.`);
}
