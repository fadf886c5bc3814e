// User settings kept on this device (IndexedDB through idb-keyval): system prompt, sampling, the chosen model.
// Values read back are checked and fall back to defaults one by one. Not here: applying them (the UI does).

import { createStore, get, set, type UseStore } from 'idb-keyval';

export interface ChatSettings {
  systemPrompt: string;
  temperature: number;
  topP: number;
  maxTokens: number;
  /** null: a fresh random seed per reply */
  seed: number | null;
  /** 'embedded', 'file' is never stored, or a cached model id */
  model: string;
}

export const DEFAULT_SETTINGS: Readonly<ChatSettings> = Object.freeze({
  systemPrompt: 'You are a helpful assistant.',
  temperature: 0.8,
  topP: 0.95,
  maxTokens: 256,
  seed: null,
  model: 'embedded',
});

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
  };
}

export async function loadSettings(): Promise<ChatSettings> {
  return parseSettings(await get('chat', db()));
}

export async function saveSettings(s: ChatSettings): Promise<void> {
  await set('chat', s, db());
}
