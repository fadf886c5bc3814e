// The message line under the top bar: errors (with their class name in data-error, for tests and styling) and
// notes. Each message belongs to what raised it (a scope: the chat, the model, the swarm), and goes away when that no
// longer applies: the next reply clears a chat error, a model that loads clears a model error, leaving Swarm or
// Contribute mode clears a swarm error, and a message about being offline clears when the device is back online.
// DOM only; what to say comes from the caller.

import { byId } from './dom';
import { describeError, errorName } from './webgpu-help';

/** What a message is about. */
export type NoticeScope = 'chat' | 'model' | 'swarm';

export class Notice {
  private readonly el = byId('message', HTMLElement);
  private scope: NoticeScope | undefined;
  private untilOnline = false;

  constructor() {
    window.addEventListener('online', () => {
      if (this.untilOnline) this.clear();
    });
  }

  /** Show `text` (an error of class `name`); `offline`: it is about being offline, and clears once back online. */
  show(text: string, name: string, scope?: NoticeScope, offline = false): void {
    this.el.textContent = text;
    this.el.dataset.error = name;
    if (scope) this.el.dataset.scope = scope;
    else delete this.el.dataset.scope;
    this.el.hidden = false;
    this.scope = scope;
    this.untilOnline = offline;
  }

  showError(e: unknown, scope?: NoticeScope): void {
    console.error(e);
    const offline = !navigator.onLine || (e instanceof Error && (e as { code?: unknown }).code === 'offline');
    const text = describeError(e);
    this.show(offline && !/offline/i.test(text) ? `This device is offline. ${text}` : text, errorName(e), scope, offline);
  }

  /** Clear the message; with `scope`, only a message of that scope (or one that has none). */
  clear(scope?: NoticeScope): void {
    if (scope && this.scope !== undefined && this.scope !== scope) return;
    this.el.textContent = '';
    delete this.el.dataset.error;
    delete this.el.dataset.scope;
    this.el.hidden = true;
    this.scope = undefined;
    this.untilOnline = false;
  }
}
