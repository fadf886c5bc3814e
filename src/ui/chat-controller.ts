// The conversation on screen and what the chat buttons do: send, stream the reply through the engine's chat API
// (the same `chat.completions.create` that `flock chat` and API users call), stop, regenerate, new chat, and the
// past chats (open, rename, export, delete), saved as they change; a reload reopens the chat that was open. Not here: loading models (app.ts), the DOM of
// messages (chat-view.ts), storage formats (storage/conversations.ts).

import type { ChatCompletionMessageParam } from '@mlc-ai/web-llm';
import type { ChatEngine, FinishReason, FlockReplyChecks } from '../engine/chat-api';
import {
  deleteConversation, exportConversation, getConversation, listConversations, newConversation, renameConversation, saveConversation,
  titleFrom, type Conversation, type SavedMessage,
} from '../storage/conversations';
import { loadLastConversation, saveLastConversation } from '../storage/settings';
import { ChatView, correctionNote } from './chat-view';
import { byId, saveFile } from './dom';
import { checksNote, formatRate } from './format';
import type { Notice } from './notice';
import type { SettingsForm } from './settings-form';

const FINISH_TEXT: Record<FinishReason, string> = {
  length: 'reached max tokens',
  stop: 'the model finished',
  abort: 'stopped',
  context: 'the context is full',
};

/** What the controller needs of the app around it. */
export interface ChatHost {
  engine: ChatEngine;
  settings: SettingsForm;
  notice: Notice;
  /** a reply may start now (a model is loaded, nothing else runs) */
  canSend(): boolean;
  /** a reply started (true) or ended (false) */
  generating(on: boolean): void;
  /** the loaded model's name, kept with the conversation */
  modelName(): string;
  /** another conversation is on screen (a new chat, or a past one opened) */
  conversationChanged(id: string): void;
  /** ready to send a reply in conversation `id` (Swarm mode: under this conversation's identity); may take a moment */
  beforeReply(id: string): Promise<void>;
}

export class ChatController {
  readonly view = new ChatView();
  private conv: Conversation = newConversation('');
  private busy = false;
  private readonly form = byId('composer', HTMLFormElement);
  private readonly promptBox = byId('prompt', HTMLTextAreaElement);
  private readonly buttons = {
    send: byId('send', HTMLButtonElement),
    stop: byId('stop', HTMLButtonElement),
    regenerate: byId('regenerate', HTMLButtonElement),
    newChat: byId('new-chat', HTMLButtonElement),
  };

  constructor(private readonly host: ChatHost) {
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.send();
    });
    this.promptBox.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.buttons.stop.addEventListener('click', () => host.engine.interruptGenerate());
    this.buttons.regenerate.addEventListener('click', () => void this.regenerate());
    this.buttons.newChat.addEventListener('click', () => this.startNew());
  }

  /** the conversation on screen */
  get conversationId(): string {
    return this.conv.id;
  }

  /** Enable what can be used now; the chat list follows. */
  refresh(): void {
    const canSend = this.host.canSend() && !this.busy;
    this.buttons.send.disabled = !canSend;
    this.buttons.stop.disabled = !this.busy;
    this.buttons.regenerate.disabled = !canSend || !this.conv.messages.some((m) => m.role === 'user');
    this.buttons.newChat.disabled = this.busy;
    void this.refreshList();
  }

  startNew(focus = true): void {
    if (this.busy) return;
    this.conv = newConversation(this.host.modelName());
    saveLastConversation(this.conv.id);
    this.host.conversationChanged(this.conv.id);
    this.view.showMessages([]);
    this.host.notice.clear('chat');
    this.refresh();
    if (focus) this.promptBox.focus();
  }

  /**
   * Show the conversation the user left: the one open last (a new chat that was never saved stays a new chat), or,
   * when none was recorded, the most recent one; a new chat when there are none.
   */
  async resume(): Promise<void> {
    const last = await loadLastConversation();
    const id = last ?? (await listConversations())[0]?.id;
    if (id && (await this.open(id))) return;
    this.startNew(false);
  }

  /** Open a past chat; false when it is not there (deleted, or never saved). */
  async open(id: string): Promise<boolean> {
    if (this.busy) return false;
    const c = await getConversation(id);
    if (!c) return false;
    const changed = c.id !== this.conv.id;
    this.conv = c;
    saveLastConversation(c.id);
    if (changed) this.host.conversationChanged(c.id);
    this.view.showMessages(c.messages.filter((m) => m.role !== 'system'));
    this.host.notice.clear('chat');
    this.refresh();
    return true;
  }

  private async send(): Promise<void> {
    const text = this.promptBox.value;
    if (!this.host.canSend() || this.busy || !text.trim()) return;
    this.promptBox.value = '';
    if (this.conv.messages.length === 0) this.conv.title = titleFrom(text);
    this.conv.model = this.host.modelName();
    const m: SavedMessage = { role: 'user', content: text };
    this.conv.messages.push(m);
    this.conv.updatedAt = Date.now();
    this.view.appendMessage(m);
    await saveConversation(this.conv);
    await this.reply();
  }

  private async regenerate(): Promise<void> {
    if (!this.host.canSend() || this.busy) return;
    if (this.conv.messages.at(-1)?.role === 'assistant') {
      this.conv.messages.pop();
      this.view.removeLast();
    }
    if (this.conv.messages.at(-1)?.role === 'user') await this.reply();
  }

  /** Stream a reply to the conversation as it stands. */
  private async reply(): Promise<void> {
    const s = this.host.settings.read();
    const seed = s.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
    const messages: ChatCompletionMessageParam[] = [];
    if (s.systemPrompt.trim()) messages.push({ role: 'system', content: s.systemPrompt });
    for (const m of this.conv.messages) messages.push(m.role === 'user' ? { role: 'user', content: m.content } : { role: 'assistant', content: m.content });
    this.host.notice.clear('chat');
    this.busy = true;
    this.host.generating(true);
    const streaming = this.view.startReply();
    try {
      await this.host.beforeReply(this.conv.id);
      const stream = await this.host.engine.chat.completions.create({
        messages, stream: true, stream_options: { include_usage: true },
        temperature: s.temperature, top_p: s.topP, max_tokens: s.maxTokens, seed,
      });
      let text = '';
      let finish: FinishReason = 'stop';
      let tokens = 0;
      let rate = 0;
      let firstMs = 0;
      let checks: FlockReplyChecks | undefined;
      for await (const chunk of stream) {
        const correction = chunk.flock.correction;
        if (correction) {
          // tokens already shown were withdrawn (a swarm host's wrong results): the text goes back, the message is marked
          text = text.slice(0, correction.keepChars);
          streaming.correct(correction.at, correction.keepChars);
        }
        const piece = chunk.choices[0]?.delta.content ?? '';
        text += piece;
        streaming.push(chunk.flock.ids, piece);
        const reply = chunk.flock.reply;
        if (reply) {
          finish = reply.finish;
          tokens = reply.outputIds.length;
          checks = reply.checks;
        }
        if (chunk.usage) {
          rate = chunk.usage.extra.decode_tokens_per_s;
          firstMs = chunk.usage.extra.time_to_first_token_s * 1000;
        }
      }
      const stats =
        `${tokens} tokens · ${formatRate(rate)} tokens/s · first token after ${Math.round(firstMs)} ms · ${FINISH_TEXT[finish]}` +
        (s.temperature > 0 ? ` · seed ${seed}` : '') +
        (streaming.corrected.length > 0 ? ` · ${correctionNote(streaming.corrected)}` : '') +
        (checks ? ` · ${checksNote(checks)}` : '');
      streaming.finish(text, finish, stats);
      this.conv.messages.push({ role: 'assistant', content: text, finish, stats });
      this.conv.updatedAt = Date.now();
      await saveConversation(this.conv);
    } catch (e) {
      streaming.fail();
      this.view.removeLast();
      this.host.notice.showError(e, 'chat');
    } finally {
      this.busy = false;
      this.host.generating(false);
    }
  }

  private async refreshList(): Promise<void> {
    const items = await listConversations();
    this.view.showChatList(items, this.conv.id, {
      open: (id) => void this.open(id),
      rename: (id, title) => void renameConversation(id, title).then((c) => {
        if (c && c.id === this.conv.id) this.conv.title = c.title;
        return this.refreshList();
      }),
      exportJson: (id) => void this.exportChat(id),
      remove: (id) => void this.remove(id),
    }, this.busy);
  }

  private async exportChat(id: string): Promise<void> {
    const c = id === this.conv.id ? this.conv : await getConversation(id);
    if (!c) return;
    const safe = c.title.replace(/[^\w\- ]+/g, '').trim().slice(0, 40) || 'chat';
    saveFile(`flock-${safe}.json`, exportConversation(c));
  }

  private async remove(id: string): Promise<void> {
    await deleteConversation(id);
    if (id === this.conv.id) this.startNew();
    else await this.refreshList();
  }
}
