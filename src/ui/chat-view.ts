// The conversation on screen: the message list (markdown rendered through renderMarkdown, never raw HTML), the
// reply that is streaming in (with a mark where it was corrected: swarm hosts caught returning wrong results), and the
// side list of past chats with rename, export and delete.
// Not here: storage or the engine; main.ts decides what happens on each click.

import type { Role } from '../model/chat-template';
import type { ConversationSummary, SavedMessage } from '../storage/conversations';
import { byId, h } from './dom';
import { renderMarkdown } from './markdown';

export interface ChatListActions {
  open(id: string): void;
  rename(id: string, title: string): void;
  exportJson(id: string): void;
  remove(id: string): void;
}

const ROLE_LABEL: Record<Role, string> = { user: 'You', assistant: 'Flock', system: 'System' };

/** The mark on a reply that was corrected while it streamed, naming the tokens (1-based) it went back to. */
export function correctionNote(at: readonly number[]): string {
  return `corrected at token ${at.map((t) => t + 1).join(', ')}: a host returned wrong results`;
}

/** A reply being streamed: text arrives token by token and is re-rendered at most every 50 ms. */
export class StreamingReply {
  private text = '';
  private ids: number[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** where the reply was corrected (0-based token index of the first token withdrawn each time) */
  readonly corrected: number[] = [];
  constructor(
    readonly el: HTMLElement,
    private readonly content: HTMLElement,
    private readonly onRender: () => void,
  ) {
    el.dataset.state = 'generating';
    el.dataset.ids = '';
    content.classList.add('cursor');
  }

  push(ids: readonly number[], piece: string): void {
    this.ids.push(...ids);
    this.text += piece;
    this.timer ??= setTimeout(() => this.render(), 50);
  }

  /** Tokens streamed from token `at` on were withdrawn: cut the text to `keepChars` and mark the message. */
  correct(at: number, keepChars: number): void {
    this.text = this.text.slice(0, keepChars);
    this.ids.length = Math.min(this.ids.length, at);
    this.corrected.push(at);
    this.el.dataset.corrected = this.corrected.join(',');
    let mark = this.el.querySelector<HTMLElement>('.correction');
    if (!mark) {
      mark = h('div', { class: 'correction small', role: 'note' });
      this.el.querySelector('.stats')!.before(mark);
    }
    mark.textContent = `⚠ ${correctionNote(this.corrected)}`;
    this.timer ??= setTimeout(() => this.render(), 50);
  }

  private render(): void {
    this.timer = undefined;
    this.el.dataset.ids = this.ids.join(',');
    this.content.innerHTML = renderMarkdown(this.text);
    this.onRender();
  }

  /** The final text (it may hold a tail the streaming decoder kept back) and why the reply ended. */
  finish(text: string, finish: string, stats: string): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.text = text;
    this.el.dataset.ids = this.ids.join(',');
    this.content.classList.remove('cursor');
    this.content.innerHTML = renderMarkdown(text);
    this.el.dataset.finish = finish;
    this.el.dataset.state = 'done';
    this.el.querySelector('.stats')!.textContent = stats;
    this.onRender();
  }

  fail(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.content.classList.remove('cursor');
    this.content.innerHTML = renderMarkdown(this.text);
    this.el.dataset.state = 'error';
  }
}

export class ChatView {
  readonly messages = byId('messages', HTMLElement);
  private readonly empty = byId('empty', HTMLElement);
  private readonly list = byId('chat-list', HTMLUListElement);

  showMessages(messages: readonly SavedMessage[]): void {
    this.messages.replaceChildren(this.empty);
    this.empty.hidden = messages.length > 0;
    for (const m of messages) this.messages.append(this.messageEl(m));
    this.scroll();
  }

  private messageEl(m: SavedMessage): HTMLElement {
    const content = h('div', { class: 'content' });
    content.innerHTML = renderMarkdown(m.content);
    const el = h('article', { class: `msg ${m.role}`, 'data-role': m.role }, h('div', { class: 'who' }, ROLE_LABEL[m.role]), content, h('div', { class: 'stats muted small' }, m.stats ?? ''));
    if (m.finish) el.dataset.finish = m.finish;
    return el;
  }

  appendMessage(m: SavedMessage): HTMLElement {
    this.empty.hidden = true;
    const el = this.messageEl(m);
    this.messages.append(el);
    this.scroll();
    return el;
  }

  /** Add an empty assistant message and return the handle that streams into it. */
  startReply(): StreamingReply {
    const el = this.appendMessage({ role: 'assistant', content: '' });
    return new StreamingReply(el, el.querySelector<HTMLElement>('.content')!, () => this.scroll());
  }

  /** Remove the last message element (Regenerate replaces the last reply). */
  removeLast(): void {
    const last = this.messages.lastElementChild;
    if (last && last !== this.empty) last.remove();
  }

  private scroll(): void {
    // follow the reply only when the reader is already near the bottom
    const m = this.messages;
    if (m.scrollHeight - m.scrollTop - m.clientHeight < 120) m.scrollTop = m.scrollHeight;
  }

  showChatList(items: readonly ConversationSummary[], currentId: string | undefined, actions: ChatListActions, disabled: boolean): void {
    this.list.replaceChildren(
      ...items.map((c) => {
        const title = h('button', { type: 'button', class: 'title', title: c.title, disabled }, c.title);
        title.addEventListener('click', () => actions.open(c.id));
        const rename = h('button', { type: 'button', class: 'rename icon', title: 'Rename', 'aria-label': `Rename ${c.title}` }, '✎');
        rename.addEventListener('click', () => {
          const t = prompt('Rename chat', c.title);
          if (t !== null && t.trim()) actions.rename(c.id, t);
        });
        const exp = h('button', { type: 'button', class: 'export icon', title: 'Export as JSON', 'aria-label': `Export ${c.title}` }, '⤓');
        exp.addEventListener('click', () => actions.exportJson(c.id));
        const del = h('button', { type: 'button', class: 'delete icon', title: 'Delete', 'aria-label': `Delete ${c.title}`, disabled }, '✕');
        del.addEventListener('click', () => {
          if (confirm(`Delete “${c.title}”? This cannot be undone.`)) actions.remove(c.id);
        });
        return h('li', { 'data-id': c.id, class: c.id === currentId ? 'current' : undefined }, title, h('span', { class: 'actions' }, rename, exp, del));
      }),
    );
  }
}
