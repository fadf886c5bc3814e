// Transport: a PeerLink wraps one PeerJS DataConnection (serialization 'raw', reliable) and turns it into a stream of
// validated protocol messages. It sends frames under the channel's maxMessageSize with backpressure (waits on
// `bufferedamountlow`, with a timeout), decodes every incoming frame against Limits, reassembles chunked tensors,
// rate-limits frames, answers pings, and declares the link dead when nothing is heard for a while (PeerJS does not
// always fire 'close'). It also holds the signalling configuration as plain data and creates PeerJS peers.
// Not here: what messages mean (stage-host.ts, swarm-model.ts), banning policy (owners listen to onViolation).

import { withoutUndefined } from '../model/options';
import type { DataConnection, Peer, PeerOptions } from 'peerjs';
import { LinkDownError, ProtocolError, ReassemblyError, SignalError, type LinkDownReason } from './errors';
import {
  DEFAULT_LIMITS, DEFAULT_MAX_FRAME_BYTES, decodeFrame, encode, encodeControl, type HelloMsg, type Limits, type Msg,
} from './protocol';
import { authenticate, type AuthResult, type RemoteIdentity } from './link-auth';
import { HelloSlot, Listeners, type Link } from './link';
import type { Identity } from './identity';
import type { SwarmConfig } from './swarm-config';
import { MessageDecoder } from './message-decoder';
import { deviceOffline, isLoopback, offlineError, signalFailure } from './signal-failure';

// ---------------------------------------------------------------------------------------------------------------
// Signalling configuration.

/** Where the PeerServer is and which ICE servers to use; plain data (settings, CLI flags, tests). */
export interface SignalConfig {
  host: string;
  port: number;
  /** PeerServer mount path, e.g. '/' or '/myapp' */
  path: string;
  secure: boolean;
  /** PeerServer key; 'peerjs' is the stock default */
  key: string;
  iceServers: { urls: string | string[]; username?: string; credential?: string }[];
  /** PeerJS log level (0 none … 3 all), for diagnosing signalling */
  debug?: 0 | 1 | 2 | 3;
}

/** ws://host:port/path, wss://…, http(s)://… -> SignalConfig. No ICE servers by default (loopback/LAN). */
export function parseSignalUrl(url: string, iceServers: SignalConfig['iceServers'] = []): SignalConfig {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SignalError('config', `"${url}" is not a URL; give the signalling server as ws://HOST:PORT/PATH.`);
  }
  const secure = u.protocol === 'wss:' || u.protocol === 'https:';
  if (!secure && u.protocol !== 'ws:' && u.protocol !== 'http:') {
    throw new SignalError('config', `Signalling URL "${url}" must start with ws://, wss://, http:// or https://.`);
  }
  const port = u.port ? Number(u.port) : secure ? 443 : 80;
  return { host: u.hostname, port, path: u.pathname || '/', secure, key: 'peerjs', iceServers };
}

/** Options for `new Peer(id, …)`. */
export function peerOptions(cfg: SignalConfig): PeerOptions {
  return {
    host: cfg.host,
    port: cfg.port,
    path: cfg.path,
    secure: cfg.secure,
    key: cfg.key,
    config: { iceServers: cfg.iceServers },
    debug: cfg.debug ?? 0,
  };
}

/** PeerJS error types we react to (PeerErrorType values). */
export type PeerOpenResult = { kind: 'open'; peer: Peer } | { kind: 'taken' };

/**
 * Create a PeerJS peer with `id` (or a server-assigned one) and wait until the server accepts it. An id that is
 * taken resolves to {kind: 'taken'} (the rendezvous logic relies on that); other failures throw a SignalError that
 * names the cause (signal-failure.ts): offline (checked first, for any server not on this machine), unreachable, or
 * refused. peerjs is imported lazily: in Node its globals (node-webrtc.ts) must be installed first.
 */
export async function openPeer(cfg: SignalConfig, id: string | undefined, timeoutMs = 10_000): Promise<PeerOpenResult> {
  if (deviceOffline() && !isLoopback(cfg.host)) throw offlineError(cfg);
  const { Peer: PeerCtor } = await import('peerjs').catch((e: unknown) => {
    throw deviceOffline() ? offlineError(cfg) : e; // a page whose PeerJS chunk is not cached yet cannot load it offline
  });
  const peer = id === undefined ? new PeerCtor(peerOptions(cfg)) : new PeerCtor(id, peerOptions(cfg));
  return new Promise<PeerOpenResult>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      peer.off('open', onOpen);
      peer.off('error', onError);
      // Later errors (a failed ICE candidate, an unreachable peer) concern one connection, not the peer: PeerJS
      // reports them here, and each connection's owner handles its own failure.
      peer.on('error', () => {});
    };
    const timer = setTimeout(() => {
      done();
      peer.destroy();
      void signalFailure(cfg, 'timeout', `it did not accept a peer within ${timeoutMs} ms`).then(reject);
    }, timeoutMs);
    const onOpen = (): void => {
      done();
      resolve({ kind: 'open', peer });
    };
    const onError = (e: { type: string; message: string }): void => {
      done();
      peer.destroy();
      if (e.type === 'unavailable-id') resolve({ kind: 'taken' });
      else void signalFailure(cfg, e.type, e.message).then(reject);
    };
    peer.on('open', onOpen);
    peer.on('error', onError);
  });
}

/** Connect to `remote` with the options every Flock link uses (binary frames, reliable, ordered). */
export function connectRaw(peer: Peer, remote: string, label = 'flock'): DataConnection {
  return peer.connect(remote, { serialization: 'raw', reliable: true, label });
}

/**
 * Open a PeerLink to `remote`, retrying with a fresh connection when the channel does not open in time (ICE over
 * loopback normally opens in 5 ms to 1 s; a lost candidate can stall one attempt). `attempts` tries of
 * opts.openTimeoutMs each. A peer the signalling server does not know fails at once with LinkDownError
 * 'unavailable' (PeerServer answers an offer to an unknown id with EXPIRE after its expire_timeout: 5 s on the
 * public server, 500 ms on `flock signal`), not after the open timeout.
 */
export async function dial(peer: Peer, remote: string, opts: Partial<LinkOptions>, auth: LinkAuth, attempts = 3): Promise<PeerLink> {
  for (let i = 1; ; i++) {
    if (peer.destroyed || peer.disconnected) throw new LinkDownError('closed', remote, 'our peer is not connected to the signalling server');
    const conn: DataConnection | undefined = peer.connect(remote, { serialization: 'raw', reliable: true, label: 'flock' });
    if (!conn) throw new LinkDownError('closed', remote, 'PeerJS could not start a connection');
    const settled = new AbortController();
    try {
      return await Promise.race([PeerLink.open(conn, opts, auth), unavailable(peer, remote, settled.signal)]);
    } catch (e) {
      if (i >= attempts || !(e instanceof LinkDownError) || e.reason !== 'open-timeout') throw e;
    } finally {
      settled.abort();
    }
  }
}

/** What a probe learned about a peer: gone (the signalling server does not know it), alive (a channel opened), or
 *  nothing within the time given. */
export type ProbeResult = 'gone' | 'alive' | 'unknown';

/**
 * Ask the signalling server whether `remote` is still there, by starting a throwaway connection (label 'flock-probe':
 * hosts close it as soon as it opens). A peer whose process died is gone from the server at once (its WebSocket
 * closed), so the server answers EXPIRE: 'gone' within its expire_timeout, where a heartbeat would take seconds more.
 */
export async function probe(peer: Peer, remote: string, timeoutMs: number): Promise<ProbeResult> {
  if (peer.destroyed || peer.disconnected) return 'unknown';
  const conn: DataConnection | undefined = peer.connect(remote, { serialization: 'raw', reliable: true, label: 'flock-probe' });
  if (!conn) return 'unknown';
  const settled = new AbortController();
  try {
    return await Promise.race([
      unavailable(peer, remote, settled.signal).catch(() => 'gone' as const),
      new Promise<ProbeResult>((resolve) => conn.once('open', () => resolve('alive'))),
      new Promise<ProbeResult>((resolve) => setTimeout(() => resolve('unknown'), timeoutMs)),
    ]);
  } finally {
    settled.abort();
    // never close a connection mid-negotiation (PeerJS throws from its candidate handler): close once it is open
    if (conn.open) conn.close();
    else conn.once('open', () => conn.close());
  }
}

/**
 * Rejects when PeerJS reports that `remote` is not on the signalling server (its 'peer-unavailable' error); stops
 * listening when `settled` aborts (the attempt ended either way).
 */
function unavailable(peer: Peer, remote: string, settled: AbortSignal): Promise<never> {
  return new Promise<never>((_, reject) => {
    const onError = (e: { type: string; message: string }): void => {
      // PeerJS words it "Could not connect to peer <id>"; the id is the only way to tell whose offer expired
      if (e.type !== 'peer-unavailable' || !e.message.endsWith(` ${remote}`)) return;
      reject(new LinkDownError('unavailable', remote, `${remote} is not on the signalling server (it left, or never joined)`));
    };
    peer.on('error', onError);
    settled.addEventListener('abort', () => peer.off('error', onError), { once: true });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// PeerLink.

/** Who we are on a link, and in which swarm (link-auth.ts proves both at the start of every link). */
export interface LinkAuth {
  identity: Identity;
  swarm: SwarmConfig;
}

export interface LinkOptions {
  limits: Limits;
  /** Largest frame we send; also capped by the channel's maxMessageSize. 64 KiB: see DEFAULT_MAX_FRAME_BYTES. */
  maxFrameBytes: number;
  /** Ping period. 1 s: cheap (32-byte frames) and detects a frozen peer within deadAfterMs. */
  heartbeatMs: number;
  /** No frame at all for this long = dead. 5 s: five missed pings; a decode step on loopback takes milliseconds. */
  deadAfterMs: number;
  /** Most time to wait for the send buffer to drain below lowWaterBytes. 10 s. */
  sendTimeoutMs: number;
  /** Wait for `bufferedamountlow` when bufferedAmount passes this. 1 MiB: 4 max-size frames in flight. */
  highWaterBytes: number;
  /** Frame rate limit: a bucket of `burstFrames` refilled at `framesPerSecond`. A 64 MiB message is 1,024 frames. */
  framesPerSecond: number;
  burstFrames: number;
  /** Time to wait for the channel to open. */
  openTimeoutMs: number;
}

/** Messages a link holds until its owner listens. 64: a client opens a few sessions at once; more is a flood. */
const BACKLOG = 64;

export const DEFAULT_LINK_OPTIONS: Readonly<LinkOptions> = Object.freeze({
  limits: DEFAULT_LIMITS,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  heartbeatMs: 1_000,
  deadAfterMs: 5_000,
  sendTimeoutMs: 10_000,
  highWaterBytes: 1 << 20,
  framesPerSecond: 4_000,
  burstFrames: 2_048,
  openTimeoutMs: 10_000,
});

export interface LinkCounters {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** frames rejected by the decoder */
  rejected: number;
  /** times a send waited for the channel's buffer to drain (bufferedamountlow) */
  drains: number;
}

/**
 * One validated, heartbeat-checked connection to a peer. Messages go to the `onMessage` listeners (pings are
 * answered here and not passed on); a frame that breaks the protocol goes to the `onViolation` listeners (the owner
 * may close or ban). `closed` resolves (never rejects) with the reason once the link is down, for whatever cause.
 */
export class PeerLink implements Link {
  readonly opts: LinkOptions;
  readonly counters: LinkCounters = { framesIn: 0, framesOut: 0, bytesIn: 0, bytesOut: 0, rejected: 0, drains: 0 };
  readonly closed: Promise<LinkDownError>;
  /** last measured round trip of a ping, ms (NaN until one came back) */
  rttMs = Number.NaN;
  private readonly helloSlot = new HelloSlot();
  private readonly messages = new Listeners<Msg>();
  /**
   * Messages that came before anyone listened (sent right behind the other end's proof, during ours, or before the
   * owner subscribed), handed to the first listener; null once it came. At most BACKLOG: more before anyone listens
   * is a flood.
   */
  private backlog: Msg[] | null = [];
  /** Violations before anyone listened for them, handed to the first listener; null once it came. */
  private heldViolations: (ProtocolError | ReassemblyError)[] | null = [];
  private readonly violations = new Listeners<ProtocolError | ReassemblyError>();

  private readonly decoder: MessageDecoder;
  /** where frames go instead of being reassembled here (relayFrames) */
  private frameSink: ((frame: ArrayBuffer) => void) | null = null;
  private down: LinkDownError | null = null;
  private resolveClosed!: (e: LinkDownError) => void;
  private lastHeard = performance.now();
  private lastTick = performance.now();
  private timer: ReturnType<typeof setInterval> | undefined;
  private nonce = 0;
  private tokens: number;
  private tokensAt = performance.now();
  private muted = false;
  private sendChain: Promise<void> = Promise.resolve();

  private constructor(
    readonly conn: DataConnection,
    opts: Partial<LinkOptions>,
    /** who the other end proved to be (link-auth.ts) */
    readonly remote: RemoteIdentity,
    early: readonly unknown[],
  ) {
    this.opts = { ...DEFAULT_LINK_OPTIONS, ...withoutUndefined(opts) };
    this.tokens = this.opts.burstFrames;
    this.decoder = new MessageDecoder(this.opts.limits);
    this.closed = new Promise((r) => (this.resolveClosed = r));
    conn.on('data', (d) => this.receive(d));
    conn.on('close', () => this.die('closed', 'the data channel closed'));
    conn.on('error', (e) => this.die('closed', `the data channel failed: ${e.message}`));
    this.timer = setInterval(() => this.tick(), this.opts.heartbeatMs);
    for (const d of early) this.receive(d);
  }

  /**
   * Wrap a connection once its channel is open (or fail with LinkDownError('open-timeout')) and both ends proved who
   * they are (link-auth.ts; or fail with LinkAuthError, the connection closed).
   */
  static async open(conn: DataConnection, opts: Partial<LinkOptions>, auth: LinkAuth): Promise<PeerLink> {
    const timeoutMs = opts.openTimeoutMs ?? DEFAULT_LINK_OPTIONS.openTimeoutMs;
    if (!conn.open) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          conn.close();
          reject(new LinkDownError('open-timeout', conn.peer, `no data channel to ${conn.peer} within ${timeoutMs} ms`));
        }, timeoutMs);
        conn.once('open', () => {
          clearTimeout(timer);
          resolve();
        });
        conn.once('error', (e) => {
          clearTimeout(timer);
          reject(new LinkDownError('closed', conn.peer, `connecting to ${conn.peer} failed: ${e.message}`));
        });
      });
    }
    let proved: AuthResult;
    try {
      proved = await authenticate(conn, auth.identity, conn.provider.id, auth.swarm, timeoutMs);
    } catch (e) {
      conn.close(); // open: safe to close
      throw e;
    }
    return new PeerLink(conn, opts, proved.remote, proved.early);
  }

  get peer(): string {
    return this.conn.peer;
  }

  get silentMs(): number {
    return performance.now() - this.lastHeard;
  }

  get limits(): Limits {
    return this.opts.limits;
  }

  onMessage(listener: (msg: Msg) => void): () => void {
    const off = this.messages.add(listener);
    const held = this.backlog;
    this.backlog = null;
    for (const m of held ?? []) listener(m);
    return off;
  }

  private deliver(msg: Msg): void {
    if (!this.backlog) return this.messages.emit(msg);
    if (this.backlog.length >= BACKLOG) {
      this.violation(new ProtocolError('too-large', `more than ${BACKLOG} messages before the link was in use`));
      return;
    }
    this.backlog.push(msg);
  }

  onViolation(listener: (e: ProtocolError | ReassemblyError) => void): () => void {
    const off = this.violations.add(listener);
    const held = this.heldViolations;
    this.heldViolations = null;
    for (const e of held ?? []) listener(e);
    return off;
  }

  get isDown(): boolean {
    return this.down !== null;
  }

  /** Most bytes the reassembler held at once over the link's life. */
  get peakBufferedBytes(): number {
    return this.decoder.peakBufferedBytes;
  }

  /** Bytes the reassembler holds for partial messages (for memory bounds). */
  get bufferedBytes(): number {
    return this.decoder.bufferedBytes;
  }

  /**
   * From now on, hand every frame but pings and pongs to `sink` as it arrives, validated against this link's limits
   * but not reassembled or dispatched (the engine worker decodes them again under the same limits: the page relays
   * links to it, src/worker/link-relay.ts). The hello that came before is handed on first, re-encoded.
   */
  relayFrames(sink: (frame: ArrayBuffer) => void): void {
    this.frameSink = sink;
    if (this.hello) sink(encodeControl(this.hello, this.opts.limits));
  }

  /** The peer's latest hello (hosts send one as soon as the channel opens; it may arrive before anyone listens). */
  get hello(): HelloMsg | null {
    return this.helloSlot.value;
  }

  /** Largest frame we may send: our option, capped by the channel's maxMessageSize when it tells us. */
  get frameBytes(): number {
    const sctp = this.conn.peerConnection?.sctp;
    const max = sctp && Number.isFinite(sctp.maxMessageSize) && sctp.maxMessageSize > 0 ? sctp.maxMessageSize : Infinity;
    return Math.min(this.opts.maxFrameBytes, this.opts.limits.maxFrameBytes, max);
  }

  /** Encode and send a message; resolves once every frame is handed to the channel. Sends are serialised. */
  send(msg: Msg): Promise<void> {
    return this.sendFrames(encode(msg, this.frameBytes, this.opts.limits));
  }

  /** Send already encoded frames in order (tests use this to send hostile bytes). */
  sendFrames(frames: ArrayBuffer[]): Promise<void> {
    const run = this.sendChain.then(() => this.writeFrames(frames));
    this.sendChain = run.catch(() => {});
    return run;
  }

  private async writeFrames(frames: ArrayBuffer[]): Promise<void> {
    for (const f of frames) {
      if (this.down) throw this.down;
      const dc = this.conn.dataChannel;
      if (!dc) throw this.die('closed', 'no data channel');
      if (dc.bufferedAmount > this.opts.highWaterBytes) await this.drain(dc);
      this.conn.send(f);
      this.counters.framesOut++;
      this.counters.bytesOut += f.byteLength;
    }
  }

  /** Wait for the channel's buffer to fall below half the high-water mark, or die after sendTimeoutMs. */
  private drain(dc: RTCDataChannel): Promise<void> {
    this.counters.drains++;
    dc.bufferedAmountLowThreshold = this.opts.highWaterBytes / 2;
    return new Promise<void>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        dc.removeEventListener('bufferedamountlow', done);
        resolve();
      };
      const timer = setTimeout(() => {
        dc.removeEventListener('bufferedamountlow', done);
        reject(this.die('send-timeout', `the send buffer did not drain within ${this.opts.sendTimeoutMs} ms`));
      }, this.opts.sendTimeoutMs);
      dc.addEventListener('bufferedamountlow', done);
      void this.closed.then((e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  waitHello(timeoutMs: number): Promise<HelloMsg | null> {
    return this.helloSlot.wait(timeoutMs, this.closed);
  }

  /** Close the link (idempotent). */
  close(reason: LinkDownReason = 'closed', detail = 'closed by us'): void {
    this.die(reason, detail);
  }

  /** Test hook: stop reacting to anything (no pings, no answers) while keeping the channel open — a frozen peer. */
  mute(): void {
    this.muted = true;
    clearInterval(this.timer);
  }

  private die(reason: LinkDownReason, detail: string): LinkDownError {
    if (this.down) return this.down;
    this.down = new LinkDownError(reason, this.conn.peer, `link to ${this.conn.peer}: ${detail}`);
    clearInterval(this.timer);
    try {
      this.conn.close();
    } catch {
      // the channel may already be gone; nothing more to release
    }
    this.resolveClosed(this.down);
    this.messages.clear();
    this.violations.clear();
    return this.down;
  }

  private tick(): void {
    if (this.down) return;
    const now = performance.now();
    // Our own event loop stalled (a long shader compile, GC): frames from the peer may be waiting unread. Do not
    // blame the peer for our stall; give it a fresh window from now.
    if (now - this.lastTick > 2 * this.opts.heartbeatMs) this.lastHeard = Math.max(this.lastHeard, now - this.opts.heartbeatMs);
    this.lastTick = now;
    if (now - this.lastHeard > this.opts.deadAfterMs) {
      this.die('heartbeat', `nothing heard for ${Math.round(now - this.lastHeard)} ms`);
      return;
    }
    this.decoder.sweep();
    this.nonce = (this.nonce + 1) >>> 0;
    this.send({ kind: 'ping', nonce: this.nonce, time: now }).catch(() => {});
  }

  private receive(data: unknown): void {
    if (this.down || this.muted) return;
    this.lastHeard = performance.now();
    // rate limit first: a flood costs us one subtraction per frame, not a decode
    const now = this.lastHeard;
    this.tokens = Math.min(this.opts.burstFrames, this.tokens + ((now - this.tokensAt) * this.opts.framesPerSecond) / 1000);
    this.tokensAt = now;
    if (this.tokens < 1) {
      const why = `more than ${this.opts.burstFrames} frames at once or ${this.opts.framesPerSecond} per second`;
      this.violation(new ProtocolError('too-large', `flood: ${why}`)); // the owner bans; we hang up regardless
      this.die('flood', why);
      return;
    }
    this.tokens -= 1;
    this.counters.framesIn++;
    let buf: ArrayBuffer;
    if (data instanceof ArrayBuffer) buf = data;
    else if (ArrayBuffer.isView(data)) buf = copyToArrayBuffer(data);
    else {
      this.violation(new ProtocolError('bad-field', 'A frame must be binary; got a text or object message.'));
      return;
    }
    this.counters.bytesIn += buf.byteLength;
    let msg: Msg | null;
    try {
      if (this.frameSink) {
        const d = decodeFrame(buf, this.opts.limits);
        if (d.kind !== 'ping' && d.kind !== 'pong') return this.frameSink(buf);
        msg = d;
      } else {
        msg = this.decoder.push(buf);
      }
    } catch (e) {
      this.violation(e instanceof ProtocolError || e instanceof ReassemblyError ? e : new ProtocolError('bad-field', `undecodable frame: ${String(e)}`));
      return;
    }
    if (msg === null) return;
    switch (msg.kind) {
      case 'ping':
        this.send({ kind: 'pong', nonce: msg.nonce, time: msg.time }).catch(() => {});
        return;
      case 'pong':
        if (msg.nonce === this.nonce) this.rttMs = performance.now() - msg.time;
        return;
      case 'hello':
        this.helloSlot.set(msg);
        this.messages.emit(msg); // kept in its slot for later listeners (waitHello, relay)
        return;
      case 'open':
      case 'opened':
      case 'error':
      case 'forward':
      case 'result':
      case 'close':
        this.deliver(msg);
        return;
      default: {
        const never: never = msg;
        void never;
        this.violation(new ProtocolError('unknown-kind', 'unknown message kind'));
      }
    }
  }

  private violation(e: ProtocolError | ReassemblyError): void {
    this.counters.rejected++;
    if (!this.heldViolations) return this.violations.emit(e);
    // nobody listens yet (frames right behind the proof): the owner hears of it when it does, and bans
    if (this.heldViolations.length < BACKLOG) this.heldViolations.push(e);
    else this.die('flood', `more than ${BACKLOG} violations before the link was in use`);
  }
}

/** A typed-array view's bytes as their own ArrayBuffer (a Node Buffer may share a pooled one). */
function copyToArrayBuffer(v: ArrayBufferView): ArrayBuffer {
  const out = new ArrayBuffer(v.byteLength);
  new Uint8Array(out).set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  return out;
}
