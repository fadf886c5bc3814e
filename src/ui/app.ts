// The page's state and how its parts fit: the app is loading, ready or generating; the engine
// worker owns the loaded model and the app shows the worker's answer (LoadedModel); the chat controller, the model
// picker and the swarm panel each get what they need of the app through a small host interface. Not here: the
// chat (chat-controller.ts), downloads (model-picker.ts), swarm modes (swarm-panel.ts), start-up checks (main.ts).

import { getModel } from '../storage/model-cache';
import type { ChatSettings } from '../storage/settings';
import type { EngineClient, LoadedModel, ModelSpec } from '../worker/engine-client';
import { ChatController } from './chat-controller';
import { byId } from './dom';
import { declaredMemoryGb, EMBEDDED_KEY, embeddedSpec, ModelPicker } from './model-picker';
import { memoryBudget } from './model-report';
import { ModelStatus } from './model-status';
import { Notice } from './notice';
import { SettingsForm } from './settings-form';
import { SwarmPanel } from './swarm-panel';

/** 'error' is set by main.ts when the page cannot run at all (no WebGPU); the app is never built then. */
export type AppState = 'loading' | 'ready' | 'generating';

export class App {
  readonly notice = new Notice();
  readonly status = new ModelStatus();
  readonly settings: SettingsForm;
  readonly chat: ChatController;
  private readonly root = byId('app', HTMLElement);
  private state: AppState = 'loading';
  /** the worker's answer to the last load (it owns what is loaded); null while nothing is */
  private model: LoadedModel | null = null;
  private picker: ModelPicker | undefined;
  private panel: SwarmPanel | undefined;

  constructor(
    private readonly engine: EngineClient,
    stored: ChatSettings,
  ) {
    const declared = memoryBudget(null, declaredMemoryGb());
    this.settings = new SettingsForm(stored, declared ? declared.bytes / 1e6 : undefined);
    this.chat = new ChatController({
      engine,
      settings: this.settings,
      notice: this.notice,
      canSend: () => this.state === 'ready' && this.model !== null,
      generating: (on) => this.setState(on ? 'generating' : 'ready'),
      modelName: () => this.model?.name ?? '',
      conversationChanged: (id) => this.panel?.conversationChanged(id),
      beforeReply: async (id) => this.panel?.readyFor(id),
    });
    this.setState('loading');
  }

  /** Wire the picker and the swarm panel, then load the model to start with. */
  async start(startWith: string): Promise<void> {
    this.picker = new ModelPicker(this.engine, {
      load: (spec, label, key) => this.load(spec, label, key),
      current: () => this.model?.key ?? '',
      idle: () => this.state === 'ready' && !this.panel?.holdsModel,
      showError: (e) => this.notice.showError(e, 'model'),
      status: (text) => this.status.say(text),
      settings: this.settings,
    });
    this.panel = new SwarmPanel({
      engine: this.engine,
      loaded: () => this.model,
      reloadLocal: async (m) => void (await this.load(m.spec, m.name, m.key)),
      swarmLoading: () => {
        this.model = null;
        this.status.say('loading the head for the swarm…');
        this.setState('loading');
      },
      modelReady: (m) => this.loaded(m),
      progress: (p) => this.status.progress(p),
      busy: () => this.state === 'generating' || this.state === 'loading',
      showError: (e) => this.notice.showError(e, 'swarm'),
      clearError: () => this.notice.clear('swarm'),
      context: () => this.settings.read().context,
      conversation: () => this.chat.conversationId,
    });
    await this.panel.init();
    await this.chat.resume();
    if (startWith !== EMBEDDED_KEY) {
      const m = await getModel(startWith);
      if (m?.complete && (await this.picker.useCached(m))) return;
    }
    await this.load(embeddedSpec(), 'stories260K', EMBEDDED_KEY);
  }

  /** Load `spec` onto this device (Local mode); true when it loaded. */
  async load(spec: ModelSpec, label: string, key: string): Promise<boolean> {
    if (this.state === 'generating') return false;
    if (this.panel?.holdsModel) {
      this.notice.show('Leave the swarm to change the model: the hosts serve the model this chat joined with.', 'InvalidArgumentError', 'model');
      return false;
    }
    this.model = null;
    this.setState('loading');
    this.status.loading(label);
    this.notice.clear('model');
    try {
      const m = await this.engine.load(spec, key, (p) => this.status.progress(p), { context: this.settings.read().context });
      this.loaded(m);
      if (key) this.settings.rememberModel(key);
      return true;
    } catch (e) {
      this.model = await this.engine.loaded(); // a failed load leaves the previous model in place
      if (this.model) this.status.ready(this.model);
      else this.status.notLoaded();
      this.notice.showError(e, 'model');
      this.setState('ready');
      return false;
    }
  }

  private loaded(m: LoadedModel): void {
    this.model = m;
    this.status.progress(null);
    this.status.ready(m);
    this.setState('ready');
  }

  private setState(s: AppState): void {
    this.state = s;
    this.root.dataset.state = s;
    this.panel?.setEnabled(s === 'ready');
    this.chat.refresh();
  }
}
