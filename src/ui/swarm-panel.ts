// The modes bar and the swarm panel: Local (nothing leaves the device), Swarm (this tab's Head, the layers on the
// swarm's hosts: the engine worker runs the Head and the page relays its links) and Contribute (this tab serves a span
// to others, src/ui/contribute.ts). Also the signalling and ICE settings, the swarm picture and the contributor's
// stats. Not here: the chat itself (main.ts), the worker (src/worker).

import { proxy } from 'comlink';
import type { NetSettings } from '../storage/settings';
import { loadNetSettings, parseIceServers, saveNetSettings } from '../storage/settings';
import type { ModelSpec } from '../storage/model-source';
import type { EngineClient, LoadProgress, SwarmInfo } from '../worker/client';
import { Contributor } from './contribute';
import { byId } from './dom';
import { formatBytes, formatDuration, formatProgress } from './format';
import { renderSwarm } from './swarm-map';
import { SwarmNet } from './swarm-net';

export type Mode = 'local' | 'swarm' | 'contribute';
const MODES: readonly Mode[] = ['local', 'swarm', 'contribute'];

const PRIVACY: Record<Mode, string> = {
  local: '<strong>Local:</strong> nothing leaves this device. The model runs in this tab on your GPU, and your chats are stored only in this browser.',
  swarm: '<strong>Swarm:</strong> your words stay here: tokenizing, the embedding, the output head and sampling run on this device. Peers in the swarm run the middle layers and see hidden states (numbers), not your text. They could in principle learn something from those numbers: do not chat about secrets with peers you do not trust.',
  contribute: '<strong>Contribute:</strong> this tab serves layers of the model to other people\'s chats. It sees their hidden states, never their text. Your own chats here still run locally.',
};

/** Records and the route are refreshed this often. 500 ms: hosts announce every 10 s; the route changes per token. */
const REFRESH_MS = 500;

export interface PanelHost {
  engine: EngineClient;
  /** the model chosen in the picker, as the engine loads it */
  currentSpec(): ModelSpec;
  /** reload the chosen model locally (leaving Swarm mode) */
  reloadLocal(): Promise<void>;
  /** the Head is loaded in the worker for the swarm (Swarm mode): the chat may send */
  swarmReady(info: SwarmInfo | null): void;
  /** show a progress line in the model area while the Head loads */
  progress(p: LoadProgress | null): void;
  busy(): boolean;
  showError(e: unknown): void;
}

export class SwarmPanel {
  mode: Mode = 'local';
  private net: SwarmNet | undefined;
  private info: SwarmInfo | undefined;
  private contributor: Contributor | undefined;
  /** the worker was asked to swap the local model for a swarm Head: leaving must reload the local model */
  private headRequested = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private settings!: NetSettings;
  private readonly development = import.meta.env.DEV;

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
  };

  constructor(private readonly host: PanelHost) {}

  async init(): Promise<void> {
    this.settings = await loadNetSettings(this.development);
    const e = this.els;
    e.name.value = this.settings.swarm;
    e.memory.value = String(this.settings.memoryMb);
    e.signal.value = this.settings.signalUrl;
    e.ice.value = this.settings.iceServers;
    for (const input of [e.name, e.memory, e.signal, e.ice]) input.addEventListener('change', () => void this.saveFields());
    for (const b of e.modeButtons) {
      const m = MODES.find((x) => x === b.dataset.mode);
      if (m) b.addEventListener('click', () => void this.switchTo(m));
    }
    e.join.addEventListener('click', () => void this.toggle());
    this.show();
  }

  /** Swarm mode holds the chosen model's Head: the picker may not swap models until the swarm is left. */
  get holdsModel(): boolean {
    return this.headRequested;
  }

  /** The mode buttons may not change while a reply is being generated or a model loads. */
  setEnabled(on: boolean): void {
    for (const b of this.els.modeButtons) b.disabled = !on;
  }

  private async saveFields(): Promise<void> {
    const e = this.els;
    const memoryMb = Number(e.memory.value);
    this.settings = {
      swarm: e.name.value.trim() || this.settings.swarm,
      memoryMb: Number.isFinite(memoryMb) && memoryMb > 0 ? memoryMb : this.settings.memoryMb,
      signalUrl: e.signal.value.trim() || this.settings.signalUrl,
      iceServers: e.ice.value,
    };
    await saveNetSettings(this.settings, this.development);
  }

  private active(): boolean {
    return this.net !== undefined || this.contributor !== undefined;
  }

  private async switchTo(mode: Mode): Promise<void> {
    if (mode === this.mode || this.host.busy()) return;
    const reload = this.headRequested;
    await this.leave();
    this.mode = mode;
    this.show();
    if (reload) await this.host.reloadLocal();
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
    const on = this.active();
    e.join.textContent = m === 'swarm' ? (on ? 'Leave swarm' : 'Join swarm') : on ? 'Stop contributing' : 'Start contributing';
    e.join.classList.toggle('primary', !on);
    e.name.disabled = on;
    e.memory.disabled = on;
    e.signal.disabled = on;
    e.ice.disabled = on;
    if (!on) {
      e.map.replaceChildren();
      delete e.map.dataset.coverage;
      e.stats.replaceChildren();
      for (const k of ['span', 'peer', 'sessions', 'tokens']) delete e.stats.dataset[k];
    }
  }

  private async toggle(): Promise<void> {
    if (this.active()) {
      const reload = this.headRequested;
      await this.leave();
      this.show();
      if (reload) await this.host.reloadLocal();
      return;
    }
    await this.saveFields();
    this.els.join.disabled = true;
    try {
      parseIceServers(this.settings.iceServers); // a bad line is named before anything connects
      if (this.mode === 'swarm') await this.joinAsClient();
      else if (this.mode === 'contribute') await this.startContributing();
    } catch (e) {
      const reload = this.headRequested;
      await this.leave();
      this.host.showError(e);
      if (reload) await this.host.reloadLocal();
    } finally {
      this.els.join.disabled = false;
      this.show();
    }
  }

  private status(text: string): void {
    this.els.status.textContent = text;
  }

  private async joinAsClient(): Promise<void> {
    this.status(`joining "${this.settings.swarm}"…`);
    const net = await SwarmNet.join(this.settings);
    this.net = net;
    this.status('loading the model\'s head (embeddings and output) on this device…');
    this.headRequested = true;
    this.host.swarmReady(null);
    const info = await this.host.engine.joinSwarm(this.host.currentSpec(), proxy(net.bridge()), (p) => this.host.progress(p));
    this.host.progress(null);
    this.info = info;
    this.host.swarmReady(info);
    this.timer = setInterval(() => void this.refreshSwarm(), REFRESH_MS);
    await this.refreshSwarm();
  }

  private async refreshSwarm(): Promise<void> {
    const net = this.net;
    const info = this.info;
    if (!net || !info) return;
    const records = net.records(info.modelHash);
    await this.host.engine.setSwarmRecords(records, [...net.rttMs()]);
    const status = await this.host.engine.swarmStatus();
    if (this.net !== net) return; // left meanwhile
    renderSwarm(this.els.map, { nLayers: info.nLayers, records, status });
    const covered = this.els.map.dataset.coverage === 'full';
    this.status(`in swarm "${net.swarm}" as ${net.id.slice(0, 8)}… · ${records.length} host${records.length === 1 ? '' : 's'} of ${info.name}` +
      (covered ? '' : ' · waiting for every layer to be served'));
  }

  private async startContributing(): Promise<void> {
    const e = this.els;
    this.status(`joining "${this.settings.swarm}" and choosing layers…`);
    e.progress.hidden = false;
    e.progress.value = 0;
    try {
      this.contributor = await Contributor.start({
        spec: this.host.currentSpec(),
        net: this.settings,
        onProgress: (p) => {
          e.progress.max = Math.max(1, p.total);
          e.progress.value = Math.min(p.loaded, e.progress.max);
          this.status(`downloading this span's layers: ${formatProgress(p.loaded, p.total)}`);
        },
      });
    } finally {
      e.progress.hidden = true;
    }
    this.timer = setInterval(() => this.refreshContributor(), 1000);
    this.refreshContributor();
  }

  private refreshContributor(): void {
    const c = this.contributor;
    if (!c) return;
    const s = c.stats();
    const e = this.els;
    e.stats.dataset.span = `${s.span.start}:${s.span.end}`;
    e.stats.dataset.peer = s.peerId;
    e.stats.dataset.sessions = String(s.sessions);
    e.stats.dataset.tokens = String(s.tokens);
    const rows: [string, string][] = [
      ['Serving', `layers ${s.span.start}–${s.span.end - 1} of ${s.nLayers} (${formatBytes(s.weightBytes)} of weights)`],
      ['Sessions', `${s.sessions} open, ${s.links} peer${s.links === 1 ? '' : 's'} connected`],
      ['Tokens', `${s.tokens} run for others${s.tokensPerSecond > 0 ? ` · ${s.tokensPerSecond.toFixed(0)} tok/s` : ''}`],
      ['Uptime', formatDuration(s.uptimeMs / 1000)],
      ['Wake Lock', { held: 'held: the screen stays on', unsupported: 'not offered by this browser: keep the tab visible', refused: 'refused: keep the tab visible', released: 'released' }[s.wakeLock]],
    ];
    e.stats.replaceChildren(...rows.flatMap(([k, v]) => {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      return [dt, dd];
    }));
    renderSwarm(e.map, { nLayers: s.nLayers, records: c.net.records(c.modelHash), self: s.peerId });
    this.status(`contributing to "${c.net.swarm}" as ${s.peerId.slice(0, 8)}…`);
  }

  /** Stop whatever this mode runs (idempotent). */
  private async leave(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.contributor?.stop();
    this.contributor = undefined;
    if (this.headRequested) {
      this.info = undefined;
      this.headRequested = false;
      this.host.swarmReady(null);
      await this.host.engine.leaveSwarm();
    }
    this.net?.stop();
    this.net = undefined;
    this.status('');
  }
}
