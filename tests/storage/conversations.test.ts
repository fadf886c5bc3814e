// Unit tests (Node, no IndexedDB) of what conversations.ts and settings.ts decide without storage: record
// validation, titles, the export/import round trip, and settings falling back field by field.

import { describe, expect, it } from 'vitest';
import { exportConversation, importConversation, newConversation, parseConversation, titleFrom } from '../../src/storage/conversations';
import { DEFAULT_SETTINGS, parseSettings } from '../../src/storage/settings';

describe('conversations', () => {
  it('round-trips through export and import', () => {
    const c = newConversation('stories260K', 1000);
    c.title = 'A story';
    c.messages.push({ role: 'user', content: 'Once' }, { role: 'assistant', content: 'upon a time', finish: 'length', stats: '3 tokens' });
    const back = importConversation(exportConversation(c));
    expect(back).toEqual(c);
  });

  it('rejects damaged records with a reason', () => {
    const ok = newConversation('m', 1);
    expect(() => parseConversation(null)).toThrow(/object/);
    expect(() => parseConversation({ ...ok, id: '' })).toThrow(/id/);
    expect(() => parseConversation({ ...ok, messages: 'x' })).toThrow(/messages/);
    expect(() => parseConversation({ ...ok, messages: [{ role: 'robot', content: 'x' }] })).toThrow(/role/);
    expect(() => parseConversation({ ...ok, messages: [{ role: 'user', content: 5 }] })).toThrow(/content/);
    expect(() => importConversation(JSON.stringify({ format: 'other', conversation: ok }))).toThrow(/format/);
  });

  it('drops unknown fields and keeps only known message fields', () => {
    const c = parseConversation({ ...newConversation('m', 1), extra: 1, messages: [{ role: 'user', content: 'hi', html: '<b>' }] });
    expect(c.messages).toEqual([{ role: 'user', content: 'hi' }]);
    expect('extra' in c).toBe(false);
  });

  it('titles a chat from its first line', () => {
    expect(titleFrom('  Hello there\nsecond line')).toBe('Hello there');
    expect(titleFrom('')).toBe('New chat');
    expect(titleFrom('x'.repeat(100))).toHaveLength(60);
  });
});

describe('settings', () => {
  it('falls back to defaults field by field', () => {
    expect(parseSettings(undefined)).toEqual(DEFAULT_SETTINGS);
    const s = parseSettings({ temperature: 0, topP: 5, maxTokens: 12.5, seed: 7, systemPrompt: 'Be brief.', model: '' });
    expect(s).toEqual({ ...DEFAULT_SETTINGS, temperature: 0, seed: 7, systemPrompt: 'Be brief.' });
    expect(parseSettings({ seed: null }).seed).toBeNull();
  });

  it('keeps a context choice (0: the model\'s own) and a memory limit in MB, or falls back', () => {
    expect(parseSettings({ context: 1024, memoryMb: 3.5 })).toMatchObject({ context: 1024, memoryMb: 3.5 });
    expect(parseSettings({ context: 0 }).context).toBe(0);
    for (const context of [-1, 1.5, '2048', 2 ** 30]) expect(parseSettings({ context }).context).toBe(DEFAULT_SETTINGS.context);
    for (const memoryMb of [0, -5, Number.NaN, '100', 2 ** 21]) expect(parseSettings({ memoryMb }).memoryMb).toBeNull();
  });
});
