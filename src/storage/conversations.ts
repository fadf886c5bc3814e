// Past chats kept on this device (IndexedDB through idb-keyval): list, read, save, rename, delete, export as JSON.
// Everything read back from storage or an imported file is validated field by field (parseConversation), so a
// damaged or hand-edited record is rejected instead of trusted. Not here: rendering, or anything sent anywhere.

import { createStore, del, entries, get, set, type UseStore } from 'idb-keyval';
import type { ChatMessage, Role } from '../model/chat-template';

/** A message as a conversation keeps it: the message, and for replies how they ended. */
export interface SavedMessage extends ChatMessage {
  /** assistant replies: why generation ended ('length', 'stop', 'abort', 'context') */
  finish?: string;
  /** assistant replies: a one-line summary (tokens, speed) */
  stats?: string;
}

export interface Conversation {
  id: string;
  title: string;
  createdAt: number;
  updatedAt: number;
  /** the model the chat was last used with (display only) */
  model: string;
  messages: SavedMessage[];
}

export interface ConversationSummary {
  id: string;
  title: string;
  updatedAt: number;
  messageCount: number;
}

/** The export format's tag; bump the number when the shape changes. */
export const EXPORT_FORMAT = 'flock.conversation.v1';

const MAX_TITLE = 200;
let store: UseStore | undefined;
function db(): UseStore {
  store ??= createStore('flock-conversations', 'conversations');
  return store;
}

export function newConversation(model: string, now = Date.now()): Conversation {
  return { id: crypto.randomUUID(), title: 'New chat', createdAt: now, updatedAt: now, model, messages: [] };
}

/** A title from the first user message: its first line, at most 60 characters. */
export function titleFrom(text: string): string {
  const line = text.trim().split('\n')[0]?.trim() ?? '';
  if (!line) return 'New chat';
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}

function isRole(v: unknown): v is Role {
  return v === 'system' || v === 'user' || v === 'assistant';
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseMessage(v: unknown, i: number): SavedMessage {
  if (!isRecord(v)) throw new Error(`message ${i} is not an object`);
  if (!isRole(v.role)) throw new Error(`message ${i} has an unknown role ${JSON.stringify(v.role)}`);
  if (typeof v.content !== 'string') throw new Error(`message ${i} has no text content`);
  const m: SavedMessage = { role: v.role, content: v.content };
  if (typeof v.finish === 'string') m.finish = v.finish;
  if (typeof v.stats === 'string') m.stats = v.stats;
  return m;
}

/** Validate a conversation read from storage or a file; throws an Error saying what is wrong. */
export function parseConversation(v: unknown): Conversation {
  if (!isRecord(v)) throw new Error('a conversation must be an object');
  const { id, title, createdAt, updatedAt, model, messages } = v;
  if (typeof id !== 'string' || id.length === 0 || id.length > 100) throw new Error('conversation id is missing');
  if (typeof title !== 'string') throw new Error('conversation title is missing');
  if (typeof createdAt !== 'number' || typeof updatedAt !== 'number') throw new Error('conversation times are missing');
  if (!Array.isArray(messages)) throw new Error('conversation messages are missing');
  return {
    id,
    title: title.slice(0, MAX_TITLE),
    createdAt,
    updatedAt,
    model: typeof model === 'string' ? model : '',
    messages: messages.map(parseMessage),
  };
}

export async function saveConversation(c: Conversation): Promise<void> {
  await set(c.id, c, db());
}

export async function getConversation(id: string): Promise<Conversation | undefined> {
  const v: unknown = await get(id, db());
  if (v === undefined) return undefined;
  try {
    return parseConversation(v);
  } catch (e) {
    console.warn(`stored conversation ${id} is damaged and is skipped: ${(e as Error).message}`);
    return undefined;
  }
}

/** Every stored chat, most recently updated first; damaged records are skipped (and logged). */
export async function listConversations(): Promise<ConversationSummary[]> {
  const out: ConversationSummary[] = [];
  for (const [key, v] of await entries(db())) {
    try {
      const c = parseConversation(v);
      out.push({ id: c.id, title: c.title, updatedAt: c.updatedAt, messageCount: c.messages.length });
    } catch (e) {
      console.warn(`stored conversation ${String(key)} is damaged and is skipped: ${(e as Error).message}`);
    }
  }
  return out.sort((a, b) => b.updatedAt - a.updatedAt);
}

export async function renameConversation(id: string, title: string): Promise<Conversation | undefined> {
  const c = await getConversation(id);
  if (!c) return undefined;
  c.title = title.trim().slice(0, MAX_TITLE) || 'Untitled chat';
  c.updatedAt = Date.now();
  await saveConversation(c);
  return c;
}

export async function deleteConversation(id: string): Promise<void> {
  await del(id, db());
}

/** The JSON a user downloads: the conversation plus a format tag, pretty-printed. */
export function exportConversation(c: Conversation): string {
  return JSON.stringify({ format: EXPORT_FORMAT, exportedAt: new Date().toISOString(), conversation: c }, null, 2);
}

/** Read an exported file back (the inverse of exportConversation). */
export function importConversation(json: string): Conversation {
  const v: unknown = JSON.parse(json);
  if (!isRecord(v) || v.format !== EXPORT_FORMAT) throw new Error(`not a Flock conversation export (format ${EXPORT_FORMAT})`);
  return parseConversation(v.conversation);
}
