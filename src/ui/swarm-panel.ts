// The modes bar and the swarm panel: Local (nothing leaves the device), Swarm (this tab's Head, the layers on the
// swarm's hosts: the engine worker runs the Head and the page relays its links) and Contribute (this tab serves a span
// to others, contribute-view.ts). Also the signalling and ICE settings, the swarm picture, and which swarm: a public one
// by name, or a private one created here or joined by invite link (swarm-invite.ts). In Swarm mode each conversation
// gets its own identity (key, peer id, links) unless the user turns that off: hosts cannot link two chats by key.
// Not here: the chat itself (chat-controller.ts), the worker (src/worker).

import { proxy } from 'comlink';
import { InvalidArgumentError } from '../model/errors';
import type { NetSettings } from '../storage/settings';
import { loadNetSettings, parseIceServers, saveNetSettings } from '../storage/settings';
import { fromBase64url, toBase64url } from '../swarm/base64url';
import { IdentityError, SignalError } from '../swarm/errors';
import { Identity } from '../swarm/identity';
import { newSecret, privateSwarm, publicSwarm, SECRET_BYTES, type SwarmConfig } from '../swarm/swarm-config';
import { SwarmNet } from '../swarm/swarm-net';
import { parseSignalUrl, type SignalConfig } from '../swarm/transport';
import type { EngineClient, LoadedModel, LoadProgress } from '../worker/engine-client';
import { relayBridge } from '../worker/link-relay';
import { ContributeSession } from './contribute-view';
import { byId } from './dom';
import { formatProgress } from './format';
import { InviteBox, takeInviteFromAddress } from './swarm-invite';
import { renderSwarm } from './swarm-map';

export type Mode = 'local' | 'swarm' | 'contribute';
const MODES: readonly Mode[] = ['local', 'swarm', 'contribute'];

const PRIVACY: Record<Mode, string> = {
  local: '<strong>Local:</strong> nothing leaves this device.<span class="more"> The model runs in this tab on your GPU, and your chats are stored only in this browser.</span>',
  swarm: '<strong>Swarm:</strong> hosts can reconstruct what you write.<span class="more"> Tokenizing, the embedding, the first and last layers, the output head and sampling run on this device; hosts run the layers between on hidden states, from which your text can still be read back. Use Local, or a private swarm of people you trust, for anything private.</span>',
  contribute: '<strong>Contribute:</strong> this tab serves layers of the model to other people\'s chats.<span class="more"> It sees their hidden states, from which their text can be reconstructed. Your own chats here still run locally.</span>',
};

/** Swarm mode with a model no manifest is pinned for: hosts cannot check their weights against one (serve.ts). */
export const UNPINNED_SWARM = 'weights not pinned: hosts cannot check theirs, so only spot checks of their results protect the reply';

/** Records and the route are refreshed this often. 500 ms: hosts announce every 10 s; the route changes per token. */
const REFRESH_MS = 500;

/** The swarm the settings name: private when they hold an invite's secret (never public because a secret is bad). */
export function swarmOf(s: NetSettings): SwarmConfig {
  if (!s.secret) return publicSwarm(s.swarm);
  const secret = fromBase64url(s.secret, SECRET_BYTES);
  if (!secret) throw new IdentityError('secret', 'The stored swarm secret is not base64url: join the swarm by its invite link again.');
  return privateSwarm(s.swarm, secret);
}

/** Signalling config from the settings (named errors for a bad URL or ICE line, before anything connects). */
export function signalConfigOf(s: NetSettings): SignalConfig {
  return parseSignalUrl(s.signalUrl, parseIceServers(s.iceServers));
}

export interface PanelHost {
  engine: EngineClient;
  /** the model loaded now (the worker's answer), which Swarm and Contribute modes open too */
  loaded(): LoadedModel | null;
  /** load `m` locally again (leaving Swarm mode) */
  reloadLocal(m: LoadedModel): Promise<void>;
  /** the worker is swapping the local model for a swarm Head */
  swarmLoading(): void;
  /** the worker has `m` loaded (a swarm Head, or the local model again): the chat may send */
  modelReady(m: LoadedModel): void;
  /** show a progress line in the model area while the Head loads */
  progress(p: LoadProgress | null): void;
  busy(): boolean;
  showError(e: unknown): void;
  /** the swarm's error no longer applies (the mode changed, or a join worked) */
  clearError(): void;
  /** the context chosen for chats (0: the model's own) */
  context(): number;
  /** the conversation on screen (its id) */
  conversation(): string;
}

/** A new identity's discovery waits this long to know the hosts the old one knew. 5 s: a few announce rounds. */
const REKEY_WAIT_MS = 5_000;

export class SwarmPanel {
  mode: Mode = 'local';
  private net: SwarmNet | undefined;
  /** Swarm mode: where and as what the net joined, and for which conversation its identity is */
  private joined: { signal: SignalConfig; swarm: SwarmConfig; conversation: string } | undefined;
  /** a change of identity in progress */
  private rekeying: Promise<void> | undefined;
  /** the next conversation's identity, made ahead (its proof of work takes a moment) */
  private nextIdentity: Promise<Identity> | undefined;
  /** Swarm mode: the Head the worker loaded */
  private head: LoadedModel | undefined;
  private contributing: ContributeSession | undefined;
  /** the local model the worker swapped for a swarm Head: leaving Swarm mode loads it again */
  private localBefore: LoadedModel | null | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private settings!: NetSettings;
  /** false while a reply is generated or a model loads */
  private enabled = true;
  private readonly development = import.meta.env.DEV;
  private readonly invite = new InviteBox({
    create: () => void this.createPrivate(),
    join: (swarm) => void this.joinInvite(swarm),
    showError: (e) => this.host.showError(e),
    offerChanged: () => this.show(),
  });

  private readonly els = {
    modeButtons: [...document.querySelectorAll<HTMLButtonElement>('.modes .mode')],
    privacy: byId('where-words-go', HTMLElement),
    panel: byId('swarm-panel', HTMLElement),
    name: byId('swarm-name', HTMLInputElement),
    join: byId('swarm-join', HTMLButtonElement),
    status: byId('swarm-status', HTMLElement),
    contributeRow: byId('contribute-row', HTMLElement),
    memory: byId('memory-mb', HTMLInputElement),
    progress: byId('contribute-progress', HTMLProgressElement),
    stats: byId('contribute-stats', HTMLElement),
    map: byId('swarm-map', HTMLElement),
    signal: byId('signal-url', HTMLInputElement),
    ice: byId('ice-servers', HTMLTextAreaElement),
    identityRow: byId('identity-row', HTMLElement),
    identityPerChat: byId('identity-per-chat', HTMLInputElement),
  };

  constructor(private readonly host: PanelHost) {}

  async init(): Promise<void> {
    this.settings = await loadNetSettings(this.development);
    const e = this.els;
    e.name.value = this.settings.swarm;
    e.memory.value = String(this.settings.memoryMb);
    e.signal.value = this.settings.signalUrl;
    e.ice.value = this.settings.iceServers;
    e.identityPerChat.checked = this.settings.identityPerChat;
    for (const input of [e.name, e.memory, e.signal, e.ice, e.identityPerChat]) input.addEventListener('change', () => void this.saveFields());
    for (const b of e.modeButtons) {
      const m = MODES.find((x) => x === b.dataset.mode);
      if (m) b.addEventListener('click', () => void this.switchTo(m));
    }
    e.join.addEventListener('click', () => void this.toggle());
    // a contributing tab that closes tells its sessions' clients and the swarm first (they re-route at once)
    addEventListener('pagehide', () => this.contributing?.goodbye());
    this.showKind();
    // an invite in the address: out of the address bar at once, offered here (Swarm mode's panel shows it)
    const invited = takeInviteFromAddress();
    if (invited?.swarm) {
      this.mode = 'swarm';
      this.invite.offer(invited.link, invited.swarm);
    }
    this.show();
    if (invited?.error) this.host.showError(invited.error);
  }

  /** Swarm mode holds the chosen model's Head: the picker may not swap models until the swarm is left. */
  get holdsModel(): boolean {
    return this.localBefore !== undefined;
  }

  /** The mode buttons may not change while a reply is being generated or a model loads. */
  setEnabled(on: boolean): void {
    this.enabled = on;
    for (const b of this.els.modeButtons) b.disabled = !on;
    this.invite.setEnabled(on && !this.active());
  }

  /** Say which kind of swarm the settings name (a stored secret that cannot be used is said too). */
  private showKind(): void {
    try {
      this.invite.render(swarmOf(this.settings));
    } catch (e) {
      this.host.showError(e);
    }
  }

  private async saveFields(): Promise<void> {
    const e = this.els;
    const memoryMb = Number(e.memory.value);
    const swarm = e.name.value.trim() || this.settings.swarm;
    this.settings = {
      swarm,
      // a private swarm's secret belongs to its name: another name is another (public) swarm
      secret: swarm === this.settings.swarm ? this.settings.secret : '',
      memoryMb: Number.isFinite(memoryMb) && memoryMb > 0 ? memoryMb : this.settings.memoryMb,
      signalUrl: e.signal.value.trim() || this.settings.signalUrl,
      iceServers: e.ice.value,
      identityPerChat: e.identityPerChat.checked,
    };
    await saveNetSettings(this.settings, this.development);
    this.showKind();
  }

  /** The swarm named in the panel, made private with a new secret; its invite link is shown to share. */
  private async createPrivate(): Promise<void> {
    if (this.active()) return;
    await this.saveFields();
    await this.useSwarm(this.settings.swarm, toBase64url(newSecret()));
  }

  /** An invite accepted: its swarm in the settings, then joined in this mode (Swarm mode when in Local). */
  private async joinInvite(swarm: SwarmConfig): Promise<void> {
    if (this.active() || this.host.busy() || !swarm.secret) return;
    await this.useSwarm(swarm.name, toBase64url(swarm.secret));
    if (this.mode === 'local') {
      this.mode = 'swarm';
      this.show();
    }
    await this.toggle();
  }

  private async useSwarm(name: string, secret: string): Promise<void> {
    this.settings = { ...this.settings, swarm: name, secret };
    this.els.name.value = name;
    await saveNetSettings(this.settings, this.development);
    this.showKind();
  }

  private active(): boolean {
    return this.net !== undefined || this.contributing !== undefined;
  }

  private async switchTo(mode: Mode): Promise<void> {
    if (mode === this.mode || this.host.busy()) return;
    await this.leave();
    this.host.clearError();
    this.mode = mode;
    this.show();
  }

  private show(): void {
    const e = this.els;
    const m = this.mode;
    document.body.dataset.mode = m;
    for (const b of e.modeButtons) {
      const on = b.dataset.mode === m;
      b.classList.toggle('active', on);
      b.setAttribute('aria-checked', String(on));
    }
    e.privacy.innerHTML = PRIVACY[m];
    e.panel.hidden = m === 'local';
    e.contributeRow.hidden = m !== 'contribute';
    e.identityRow.hidden = m !== 'swarm';
    const on = this.active();
    e.join.textContent = m === 'swarm' ? (on ? 'Leave swarm' : 'Join swarm') : on ? 'Stop contributing' : 'Start contributing';
    e.join.classList.toggle('primary', !on && !this.invite.offered);
    e.name.disabled = on;
    e.memory.disabled = on;
    e.signal.disabled = on;
    e.ice.disabled = on;
    this.invite.setEnabled(this.enabled && !on);
    if (!on) {
      e.map.replaceChildren();
      delete e.map.dataset.coverage;
      e.stats.replaceChildren();
      for (const k of ['span', 'peer', 'sessions', 'tokens']) delete e.stats.dataset[k];
    }
  }

  private async toggle(): Promise<void> {
    if (this.active()) {
      await this.leave();
      this.show();
      return;
    }
    await this.saveFields();
    this.els.join.disabled = true;
    this.host.clearError();
    try {
      parseIceServers(this.settings.iceServers); // a bad line is named before anything connects
      if (this.mode === 'swarm') await this.joinAsClient();
      else if (this.mode === 'contribute') await this.startContributing();
    } catch (e) {
      await this.leave();
      this.host.showError(e);
    } finally {
      this.els.join.disabled = false;
      this.show();
    }
  }

  private status(text: string): void {
    this.els.status.textContent = text;
  }

  private async joinAsClient(): Promise<void> {
    const local = this.host.loaded();
    if (!local) throw new InvalidArgumentError('Load a model first: Swarm mode joins with the model chosen here.');
    this.status(`joining "${this.settings.swarm}"…`);
    const swarm = swarmOf(this.settings);
    // a fresh identity per join, and per chat after it (readyFor): a host cannot link this chat to this tab's others by key
    this.status(swarm.powBits > 0 ? 'making a new identity for this chat (a second of work the public swarm asks)…' : `joining "${swarm.name}"…`);
    const identity = await Identity.generate({ powBits: swarm.powBits });
    this.status(`joining "${swarm.name}"…`);
    const signal = signalConfigOf(this.settings);
    const net = await SwarmNet.join(signal, swarm, identity);
    this.net = net;
    this.joined = { signal, swarm, conversation: this.host.conversation() };
    this.status('loading the model\'s head (embeddings and output) on this device…');
    this.localBefore = local;
    this.host.swarmLoading();
    const context = this.host.context();
    const head = await this.host.engine.joinSwarm(local.spec, local.key, proxy(relayBridge(net.discovery)), (p) => this.host.progress(p), {
      maxContext: context > 0 ? context : Number.MAX_SAFE_INTEGER,
    });
    this.host.progress(null);
    this.head = head;
    this.host.modelReady(head);
    this.timer = setInterval(() => void this.refreshSwarm(), REFRESH_MS);
    await this.refreshSwarm();
    this.makeNextIdentity();
  }

  /** Another conversation is on screen: change identity now (in the background), so its first reply need not wait. */
  conversationChanged(id: string): void {
    this.readyFor(id).catch((e: unknown) => this.host.showError(e));
  }

  /**
   * Ready for a reply in conversation `id`: in Swarm mode with an identity per chat, under that conversation's own
   * identity (a new one when the conversation changed since the last reply). Rejects, with the network's named error,
   * when no new identity could join: a reply is never sent under another conversation's key.
   */
  async readyFor(id: string): Promise<void> {
    for (;;) {
      const busy = this.rekeying;
      if (busy) await busy.catch(() => undefined);
      else break;
    }
    const j = this.joined;
    if (!j || !this.net || !this.head || !this.settings.identityPerChat || j.conversation === id) return;
    const p = this.rekey(id);
    this.rekeying = p;
    try {
      await p;
    } catch (e) {
      void this.refreshSwarm(); // the status line says how things stand again
      throw e;
    } finally {
      if (this.rekeying === p) this.rekeying = undefined;
    }
  }

  private makeNextIdentity(): void {
    const j = this.joined;
    if (!j || !this.settings.identityPerChat) return;
    const next = Identity.generate({ powBits: j.swarm.powBits });
    next.catch(() => undefined); // made again when needed
    this.nextIdentity = next;
  }

  /** Join the same swarm as a new identity, move the worker's links to it, then hang up the old one. */
  private async rekey(conversation: string): Promise<void> {
    const old = this.net;
    const j = this.joined;
    const head = this.head;
    if (!old || !j || !head) return;
    this.status('a new identity for this chat…');
    const made = this.nextIdentity;
    this.nextIdentity = undefined;
    const identity = (await made?.catch(() => undefined)) ?? (await Identity.generate({ powBits: j.swarm.powBits }));
    // the hosts the old identity knew are asked directly too, besides the rendezvous (one of which may have just closed)
    const known = old.records(head.modelHash);
    const net = await SwarmNet.join(j.signal, j.swarm, identity, { knownPeers: known.map((r) => r.id) }).catch((e: unknown) => {
      // the old identity is still joined: say how to go on with it
      if (e instanceof SignalError) throw new SignalError(e.code, `${e.message} This chat's new identity could not join; the message is kept. Send again later, or turn off "A new identity for each chat" to go on as before.`);
      throw e;
    });
    if (this.net !== old) {
      net.stop(); // the swarm was left meanwhile
      return;
    }
    // route with as many hosts as the old identity knew, once the new one has heard of them (or after REKEY_WAIT_MS)
    await net.discovery.waitFor(() => net.records(head.modelHash).length >= known.length, REKEY_WAIT_MS).catch(() => undefined);
    if (this.net !== old) {
      net.stop();
      return;
    }
    this.net = net;
    this.joined = { ...j, conversation };
    try {
      await this.host.engine.rebindSwarm(proxy(relayBridge(net.discovery)));
    } finally {
      old.stop();
    }
    await this.refreshSwarm();
    this.makeNextIdentity();
  }

  private async refreshSwarm(): Promise<void> {
    const net = this.net;
    const head = this.head;
    if (!net || !head) return;
    const records = net.records(head.modelHash);
    await this.host.engine.setSwarmRecords(records, [...net.rttMs()]);
    const status = await this.host.engine.swarmStatus();
    if (this.net !== net) return; // left meanwhile
    renderSwarm(this.els.map, { nLayers: head.nLayers, records, status, own: head.own });
    this.els.status.dataset.peer = net.id;
    const covered = this.els.map.dataset.coverage === 'full';
    this.status(`in swarm "${net.swarm}" as ${net.id.slice(0, 8)}… · ${records.length} host${records.length === 1 ? '' : 's'} of ${head.name}` +
      (covered ? '' : ' · waiting for every layer to be served') +
      (net.peer.disconnected ? ' · signalling server out of reach: hosts already linked still serve, new ones wait for it' : '') + (head.weights === 'unpinned' ? ` · ${UNPINNED_SWARM}` : ''));
  }

  private async startContributing(): Promise<void> {
    const local = this.host.loaded();
    if (!local) throw new InvalidArgumentError('Load a model first: Contribute mode serves the model chosen here.');
    const e = this.els;
    this.status(`joining "${this.settings.swarm}" and choosing layers…`);
    e.progress.hidden = false;
    e.progress.value = 0;
    try {
      this.contributing = await ContributeSession.start(local.spec, this.settings, signalConfigOf(this.settings), (p) => {
        e.progress.max = Math.max(1, p.total);
        e.progress.value = Math.min(p.loaded, e.progress.max);
        this.status(`downloading this span's layers: ${formatProgress(p.loaded, p.total)}`);
      });
    } finally {
      e.progress.hidden = true;
    }
    this.timer = setInterval(() => this.refreshContributor(), 1000);
    this.refreshContributor();
  }

  private refreshContributor(): void {
    const c = this.contributing;
    if (c) this.status(c.render(this.els.stats, this.els.map));
  }

  /** Stop whatever this mode runs (idempotent); leaving Swarm mode loads the local model again. */
  private async leave(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.contributing?.stop();
    this.contributing = undefined;
    const local = this.localBefore;
    this.localBefore = undefined;
    this.head = undefined;
    if (local !== undefined) await this.host.engine.leaveSwarm();
    this.net?.stop();
    this.net = undefined;
    this.joined = undefined;
    this.nextIdentity = undefined;
    delete this.els.status.dataset.peer;
    this.status('');
    if (!local) return;
    // a join that failed left the local model in place; otherwise load it again
    const now = await this.host.engine.loaded();
    if (now?.mode === 'local') this.host.modelReady(now);
    else await this.host.reloadLocal(local);
  }
}
