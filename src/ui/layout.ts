// The page's layout on narrow screens (phones, below NARROW_PX): the chat and its input fill the screen; the side
// list of chats opens as a drawer from the menu button, and the swarm panel opens and closes with its own button in
// Swarm and Contribute modes (it opens by itself when such a mode is chosen, since its Join button is what the user
// needs next). On wide screens both are always shown and these buttons are hidden (style.css). DOM only.

import { byId } from './dom';

/** Below this width the sidebar is a drawer and the swarm panel folds away: 720 px keeps a 15rem sidebar beside a
 *  chat at least 480 px wide (tablets in portrait, 768 px, keep both). Must equal style.css's breakpoint. */
export const NARROW_PX = 720;

export class Layout {
  private readonly app = byId('app', HTMLElement);
  private readonly menu = byId('menu-toggle', HTMLButtonElement);
  private readonly scrim = byId('scrim', HTMLElement);
  private readonly panel = byId('swarm-panel', HTMLElement);
  private readonly panelToggle = byId('panel-toggle', HTMLButtonElement);
  private readonly narrow = window.matchMedia(`(max-width: ${NARROW_PX}px)`);

  constructor() {
    this.menu.addEventListener('click', () => this.setMenu(this.app.dataset.menu !== 'open'));
    byId('menu-close', HTMLButtonElement).addEventListener('click', () => this.setMenu(false));
    this.scrim.addEventListener('click', () => this.setMenu(false));
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && this.app.dataset.menu === 'open') this.setMenu(false);
    });
    // choosing a chat (or a new one) is what the drawer was opened for
    byId('sidebar', HTMLElement).addEventListener('click', (ev) => {
      const t = ev.target;
      if (t instanceof Element && t.closest('#new-chat, #chat-list .title')) this.setMenu(false);
    });
    this.panelToggle.addEventListener('click', () => this.setPanel(this.panel.dataset.open === undefined));
    // the swarm panel's mode is on <body data-mode>; follow it
    new MutationObserver(() => this.followMode()).observe(document.body, { attributes: true, attributeFilter: ['data-mode'] });
    this.narrow.addEventListener('change', () => this.setMenu(false));
    this.followMode();
  }

  private setMenu(open: boolean): void {
    if (open) this.app.dataset.menu = 'open';
    else delete this.app.dataset.menu;
    this.menu.setAttribute('aria-expanded', String(open));
    this.scrim.hidden = !open || !this.narrow.matches;
  }

  private setPanel(open: boolean): void {
    if (open) this.panel.dataset.open = '';
    else delete this.panel.dataset.open;
    this.panelToggle.setAttribute('aria-expanded', String(open));
    this.panelToggle.textContent = open ? 'Hide swarm panel' : 'Show swarm panel';
  }

  private lastMode: string | undefined;

  private followMode(): void {
    const mode = document.body.dataset.mode ?? 'local';
    if (mode === this.lastMode) return;
    this.lastMode = mode;
    this.panelToggle.hidden = mode === 'local';
    this.setPanel(mode !== 'local');
  }
}
