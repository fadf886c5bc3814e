// The swarm panel's private-swarm part: the line saying which kind of swarm the settings name (public: anyone who
// knows the name; private: only people with the invite link), "Create a private swarm" with the invite link to share
// and a copy button, and the field where an invite link is pasted and joined. An invite that opened the app (in the
// address's fragment) is taken out of the address bar at once and offered here. DOM and parsing only: what joining
// does is the panel's (swarm-panel.ts); secrets and links are swarm-config.ts's.

import { IdentityError } from '../swarm/errors';
import { inviteLink, parseInvite, type SwarmConfig } from '../swarm/swarm-config';
import { byId, h } from './dom';

export type SwarmKind = 'public' | 'private';

/** What each kind of swarm means for the user: a heading with the name, then the words (text, never markup). */
const KIND_TEXT: Record<SwarmKind, [string, string]> = {
  public: ['Public swarm', 'anyone who knows the name can join. Hosts can reconstruct what you write: use Local, or a private swarm of people you trust, for anything private.'],
  private: ['Private swarm', 'only people with its invite link can join. Its hosts still see your hidden states: invite only people you trust. Another name leaves it for a public swarm.'],
};

/** The private swarm an invite link names; IdentityError (code 'secret') when it is not one, malformed or too long. */
export function inviteFrom(link: string): SwarmConfig {
  const text = link.trim();
  if (!text) throw new IdentityError('secret', 'Paste an invite link first: the app\'s address with #swarm=…&secret=… at its end.');
  const cfg = parseInvite(text);
  if (!cfg) throw new IdentityError('secret', 'This is not an invite link: it has no #swarm=…&secret=… part.');
  return cfg;
}

/**
 * An invite in the address the app was opened with: the link, then the fragment is removed from the address bar
 * (history.replaceState) so the secret does not linger there or in a bookmark. Null when the fragment holds none.
 */
export function takeInviteFromAddress(): { link: string; swarm: SwarmConfig | null; error: unknown } | null {
  const link = location.href;
  if (!location.hash) return null;
  let swarm: SwarmConfig | null = null;
  let error: unknown = null;
  try {
    swarm = parseInvite(link);
    if (!swarm) return null; // a fragment that is not an invite is none of ours
  } catch (e) {
    error = e;
  }
  history.replaceState(history.state, '', location.pathname + location.search);
  return { link, swarm, error };
}

export interface InviteActions {
  /** make the swarm named in the panel private, with a new secret */
  create(): void;
  /** join the private swarm `swarm` (an invite accepted) */
  join(swarm: SwarmConfig): void;
  showError(e: unknown): void;
  /** an invite was offered, or is no longer */
  offerChanged(): void;
}

export class InviteBox {
  private readonly els = {
    kind: byId('swarm-kind', HTMLElement),
    share: byId('invite-share', HTMLElement),
    link: byId('invite-link', HTMLInputElement),
    copy: byId('invite-copy', HTMLButtonElement),
    copied: byId('invite-copied', HTMLElement),
    create: byId('swarm-create', HTMLButtonElement),
    input: byId('invite-in', HTMLInputElement),
    join: byId('invite-join', HTMLButtonElement),
    offer: byId('invite-offer', HTMLElement),
  };

  constructor(private readonly actions: InviteActions) {
    const e = this.els;
    e.create.addEventListener('click', () => actions.create());
    e.join.addEventListener('click', () => this.accept());
    e.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') this.accept();
    });
    e.input.addEventListener('input', () => {
      if (!e.input.value.trim()) this.setOffered(false);
    });
    e.copy.addEventListener('click', () => void this.copy());
  }

  /** Say which kind of swarm `swarm` is and, for a private one, show its invite link. */
  render(swarm: SwarmConfig): void {
    const e = this.els;
    const kind: SwarmKind = swarm.secret ? 'private' : 'public';
    e.kind.dataset.kind = kind;
    const [title, words] = KIND_TEXT[kind];
    e.kind.replaceChildren(h('strong', {}, `${title} "${swarm.name}":`), ` ${words}`); // the name may come from a link: text only
    e.share.hidden = kind === 'public';
    e.link.value = swarm.secret ? inviteLink(location.href, swarm) : '';
    e.copied.textContent = '';
  }

  /** Offer to join the invite the app was opened with. */
  offer(link: string, swarm: SwarmConfig): void {
    const e = this.els;
    e.input.value = link;
    e.offer.textContent = `You were invited to the private swarm "${swarm.name}". Join to chat in it; to serve layers in it, choose Contribute first.`;
    this.setOffered(true);
    e.join.focus();
  }

  /** An invite is offered: its Join is the button to press (the panel's own Join takes the primary look away). */
  get offered(): boolean {
    return !this.els.offer.hidden;
  }

  private setOffered(on: boolean): void {
    this.els.offer.hidden = !on;
    this.els.join.classList.toggle('primary', on);
    this.actions.offerChanged();
  }

  /** Creating and joining are for when no swarm is joined and the app is idle. */
  setEnabled(on: boolean): void {
    for (const b of [this.els.create, this.els.join, this.els.input]) b.disabled = !on;
  }

  private accept(): void {
    if (this.els.join.disabled) return;
    let swarm: SwarmConfig;
    try {
      swarm = inviteFrom(this.els.input.value);
    } catch (err) {
      this.actions.showError(err);
      return;
    }
    this.els.input.value = '';
    this.setOffered(false);
    this.actions.join(swarm);
  }

  private async copy(): Promise<void> {
    const e = this.els;
    try {
      await navigator.clipboard.writeText(e.link.value);
      e.copied.textContent = 'Copied.';
    } catch {
      // no clipboard here (permissions, an insecure context): leave the link selected for the user to copy
      e.link.select();
      e.copied.textContent = 'Selected: copy it with your keyboard or menu.';
    }
  }
}
