// User settings kept on this device (IndexedDB through idb-keyval): system prompt, sampling, the chosen model, its
// context and the memory limit for models; and which conversation was open last (localStorage: written at once).
// Values read back are checked and fall back to defaults one by one. Not here: applying them (the UI does).

import { createStore, get, set, type UseStore } from 'idb-keyval';
import { InvalidArgumentError } from '../model/errors';
import { DEFAULT_CONTEXT } from '../model/memory';

export interface ChatSettings {
  systemPrompt: string;
  temperature: number;
  topP: number;
  maxTokens: number;
  /** null: a fresh random seed per reply */
  seed: number | null;
  /** 'embedded', 'file' is never stored, or a cached model id */
  model: string;
  /** positions a conversation may hold (0: the model's own context); never more than the model's own */
  context: number;
  /** memory a model may use, MB; null: a share of what the browser says this device has */
  memoryMb: number | null;
}

export const DEFAULT_SETTINGS: Readonly<ChatSettings> = Object.freeze({
  systemPrompt: 'You are a helpful assistant.',
  temperature: 0.8,
  topP: 0.95,
  maxTokens: 256,
  seed: null,
  model: 'embedded',
  context: DEFAULT_CONTEXT,
  memoryMb: null,
});

/** The longest context a setting may hold: 2^24 positions, far beyond any model's (Llama 3.1: 131072). */
const MAX_CONTEXT_SETTING = 1 << 24;
/** The largest memory limit a setting may hold, MB: 1 TiB. */
const MAX_MEMORY_MB = 1 << 20;

let store: UseStore | undefined;
function db(): UseStore {
  store ??= createStore('flock-settings', 'settings');
  return store;
}

function num(v: unknown, ok: (n: number) => boolean, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) && ok(v) ? v : fallback;
}

/** Check a stored record; every field that is missing or out of range takes its default. */
export function parseSettings(v: unknown): ChatSettings {
  const r: Record<string, unknown> = typeof v === 'object' && v !== null ? { ...v } : {};
  const d = DEFAULT_SETTINGS;
  return {
    systemPrompt: typeof r.systemPrompt === 'string' ? r.systemPrompt : d.systemPrompt,
    temperature: num(r.temperature, (n) => n >= 0 && n <= 2, d.temperature),
    topP: num(r.topP, (n) => n > 0 && n <= 1, d.topP),
    maxTokens: num(r.maxTokens, (n) => Number.isInteger(n) && n >= 1 && n <= 4096, d.maxTokens),
    seed: typeof r.seed === 'number' && Number.isInteger(r.seed) && r.seed >= 0 && r.seed <= 0xffff_ffff ? r.seed : null,
    model: typeof r.model === 'string' && r.model ? r.model : d.model,
    context: num(r.context, (n) => Number.isInteger(n) && n >= 0 && n <= MAX_CONTEXT_SETTING, d.context),
    memoryMb: typeof r.memoryMb === 'number' && Number.isFinite(r.memoryMb) && r.memoryMb > 0 && r.memoryMb <= MAX_MEMORY_MB ? r.memoryMb : null,
  };
}

export async function loadSettings(): Promise<ChatSettings> {
  return parseSettings(await get('chat', db()));
}

export async function saveSettings(s: ChatSettings): Promise<void> {
  await set('chat', s, db());
}

/**
 * Which conversation was open last is kept in localStorage, written at once: an IndexedDB write still in flight when
 * the user reloads (or closes the tab) right after choosing a chat is lost, and the page reopened the chat before.
 * Older versions kept it in IndexedDB; that value is read when localStorage has none.
 */
const LAST_CONVERSATION_KEY = 'flock.last-conversation';

function validConversationId(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length <= 100 ? v : undefined;
}

function localStore(): Storage | undefined {
  try {
    return typeof localStorage === 'undefined' ? undefined : localStorage;
  } catch {
    return undefined; // storage blocked (some privacy settings throw on access)
  }
}

/** The id of the conversation that was open last (the app reopens it), or undefined. */
export async function loadLastConversation(): Promise<string | undefined> {
  const ls = localStore();
  const local = validConversationId(ls?.getItem(LAST_CONVERSATION_KEY));
  if (local) return local;
  return validConversationId(await get('last-conversation', db()));
}

/** Record the open conversation; done when this returns, so a reload straight after reopens it. */
export function saveLastConversation(id: string): void {
  const ls = localStore();
  try {
    if (ls) {
      ls.setItem(LAST_CONVERSATION_KEY, id);
      return;
    }
  } catch {
    // quota exceeded or storage blocked: fall back to IndexedDB below
  }
  void set('last-conversation', id, db());
}

/** How this device reaches a swarm: the signalling server, ICE servers, the swarm's name, a memory limit to serve. */
export interface NetSettings {
  /** ws(s):// or http(s):// URL of a PeerServer */
  signalUrl: string;
  /** ICE servers, one per line: `stun:host:port`, or `turn:host:port USER PASSWORD` */
  iceServers: string;
  swarm: string;
  /** a private swarm's secret (base64url, from an invite link), or '' for the public swarm of that name */
  secret: string;
  /** GPU memory Contribute mode may use for weights and KV cache, MB */
  memoryMb: number;
  /** Swarm mode: a new identity (key and peer id) for each conversation, so hosts cannot link one chat to another by key */
  identityPerChat: boolean;
}

/**
 * The public PeerServer PeerJS runs (0.peerjs.com, free, best effort): signalling only; hidden states go peer to peer.
 * Development builds (`npm start`) use the PeerServer that command starts on 127.0.0.1:9000 instead.
 */
export const PUBLIC_SIGNAL_URL = 'wss://0.peerjs.com/';
export const PUBLIC_ICE_SERVERS = 'stun:stun.l.google.com:19302';
export const LOCAL_SIGNAL_URL = 'ws://127.0.0.1:9000/';

export function defaultNetSettings(development: boolean): NetSettings {
  return {
    signalUrl: development ? LOCAL_SIGNAL_URL : PUBLIC_SIGNAL_URL,
    iceServers: development ? '' : PUBLIC_ICE_SERVERS,
    swarm: 'flock-public',
    secret: '',
    memoryMb: 1024,
    identityPerChat: true,
  };
}

export function parseNetSettings(v: unknown, defaults: NetSettings): NetSettings {
  const r: Record<string, unknown> = typeof v === 'object' && v !== null ? { ...v } : {};
  const str = (k: keyof NetSettings, d: string) => (typeof r[k] === 'string' ? (r[k] as string) : d);
  return {
    signalUrl: str('signalUrl', defaults.signalUrl).trim() || defaults.signalUrl,
    iceServers: str('iceServers', defaults.iceServers),
    swarm: str('swarm', defaults.swarm).trim() || defaults.swarm,
    secret: /^[A-Za-z0-9_-]{43}$/.test(str('secret', '')) ? str('secret', '') : '',
    memoryMb: num(r.memoryMb, (n) => n > 0 && n <= 1_048_576, defaults.memoryMb),
    identityPerChat: typeof r.identityPerChat === 'boolean' ? r.identityPerChat : defaults.identityPerChat,
  };
}

export async function loadNetSettings(development: boolean): Promise<NetSettings> {
  const d = defaultNetSettings(development);
  return parseNetSettings(await get(development ? 'net-dev' : 'net', db()), d);
}

export async function saveNetSettings(s: NetSettings, development: boolean): Promise<void> {
  await set(development ? 'net-dev' : 'net', s, db());
}

export interface IceServer {
  urls: string;
  username?: string;
  credential?: string;
}

/** Parse the ICE servers field; a line that is not `stun:…`/`turn:…` [user password] is an error naming the line. */
export function parseIceServers(text: string): IceServer[] {
  const out: IceServer[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line) continue;
    const [urls, username, credential, ...rest] = line.split(/\s+/);
    if (!/^(stun|stuns|turn|turns):\S+$/.test(urls) || rest.length > 0 || (username !== undefined && credential === undefined)) {
      throw new InvalidArgumentError(`ICE server line ${i + 1} ("${line}") should be "stun:HOST:PORT" or "turn:HOST:PORT USER PASSWORD".`);
    }
    out.push(username === undefined ? { urls } : { urls, username, credential });
  }
  return out;
}
