// The settings fields: system prompt and sampling (the settings panel), and the context and memory limit models are
// judged and loaded with (the model picker), filled from the stored settings and saved when a field changes (values
// the engine would refuse are passed on, so its named error explains them). DOM and storage only.

import { DEFAULT_CONTEXT } from '../model/memory';
import { saveSettings, type ChatSettings } from '../storage/settings';
import { byId, h } from './dom';

/** The contexts offered (0: the model's own); a model never gets more than its own. */
const CONTEXT_OPTIONS = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 0];

export class SettingsForm {
  private readonly inputs = {
    systemPrompt: byId('system-prompt', HTMLTextAreaElement),
    temperature: byId('temperature', HTMLInputElement),
    topP: byId('top-p', HTMLInputElement),
    maxTokens: byId('max-tokens', HTMLInputElement),
    seed: byId('seed', HTMLInputElement),
  };
  private readonly context = byId('context', HTMLSelectElement);
  private readonly memory = byId('memory-limit', HTMLInputElement);
  private readonly limitListeners: (() => void)[] = [];

  constructor(
    private settings: ChatSettings,
    /** the memory limit the browser implies, MB, shown as the field's placeholder */
    declaredMb?: number,
  ) {
    const i = this.inputs;
    i.systemPrompt.value = settings.systemPrompt;
    i.temperature.value = String(settings.temperature);
    i.topP.value = String(settings.topP);
    i.maxTokens.value = String(settings.maxTokens);
    i.seed.value = settings.seed === null ? '' : String(settings.seed);
    for (const el of Object.values(i)) el.addEventListener('change', () => this.save());
    const options = CONTEXT_OPTIONS.includes(settings.context) ? CONTEXT_OPTIONS : [...CONTEXT_OPTIONS, settings.context].sort((a, b) => (a || Infinity) - (b || Infinity));
    this.context.replaceChildren(...options.map((n) => h('option', { value: String(n) }, n === 0 ? "the model's own" : String(n))));
    this.context.value = String(settings.context);
    this.memory.value = settings.memoryMb === null ? '' : String(settings.memoryMb);
    this.memory.placeholder = declaredMb !== undefined ? `auto: ${Math.round(declaredMb)}` : 'none';
    for (const el of [this.context, this.memory]) {
      el.addEventListener('change', () => {
        this.save();
        for (const f of this.limitListeners) f();
      });
    }
  }

  private save(): void {
    const s = this.read();
    const valid = s.temperature >= 0 && s.topP > 0 && s.topP <= 1 && Number.isInteger(s.maxTokens) && s.maxTokens >= 1;
    if (valid) void saveSettings(s);
  }

  /** The fields as they are now (the last stored values for what is not a field). */
  read(): ChatSettings {
    const num = (el: HTMLInputElement) => (el.value.trim() === '' ? Number.NaN : Number(el.value));
    const i = this.inputs;
    const context = Number(this.context.value);
    const memoryMb = num(this.memory);
    this.settings = {
      ...this.settings,
      systemPrompt: i.systemPrompt.value,
      temperature: num(i.temperature),
      topP: num(i.topP),
      maxTokens: num(i.maxTokens),
      seed: i.seed.value.trim() === '' ? null : num(i.seed),
      context: Number.isInteger(context) && context >= 0 ? context : DEFAULT_CONTEXT,
      memoryMb: Number.isFinite(memoryMb) && memoryMb > 0 ? memoryMb : null,
    };
    return this.settings;
  }

  /** Call `f` when the context or the memory limit changes (every model's verdict changes with them). */
  onModelLimitsChange(f: () => void): void {
    this.limitListeners.push(f);
  }

  /** Choose a context (the picker's "Use N tokens of context") and keep it. */
  async setContext(n: number): Promise<void> {
    if (![...this.context.options].some((o) => o.value === String(n))) this.context.append(h('option', { value: String(n) }, String(n)));
    this.context.value = String(n);
    await saveSettings(this.read());
  }

  /** Remember the model to start with next time. */
  rememberModel(key: string): void {
    this.settings = { ...this.read(), model: key };
    void saveSettings(this.settings); // stored values are re-checked field by field on the way back in
  }
}
