// The settings panel: system prompt and sampling, filled from the stored settings and saved when a field changes
// (values the engine would refuse are passed on, so its named error explains them). DOM and storage only.

import { saveSettings, type ChatSettings } from '../storage/settings';
import { byId } from './dom';

export class SettingsForm {
  private readonly inputs = {
    systemPrompt: byId('system-prompt', HTMLTextAreaElement),
    temperature: byId('temperature', HTMLInputElement),
    topP: byId('top-p', HTMLInputElement),
    maxTokens: byId('max-tokens', HTMLInputElement),
    seed: byId('seed', HTMLInputElement),
  };

  constructor(private settings: ChatSettings) {
    const i = this.inputs;
    i.systemPrompt.value = settings.systemPrompt;
    i.temperature.value = String(settings.temperature);
    i.topP.value = String(settings.topP);
    i.maxTokens.value = String(settings.maxTokens);
    i.seed.value = settings.seed === null ? '' : String(settings.seed);
    for (const el of Object.values(i)) {
      el.addEventListener('change', () => {
        const s = this.read();
        const valid = s.temperature >= 0 && s.topP > 0 && s.topP <= 1 && Number.isInteger(s.maxTokens) && s.maxTokens >= 1;
        if (valid) void saveSettings(s);
      });
    }
  }

  /** The fields as they are now (the last stored values for what is not a field). */
  read(): ChatSettings {
    const num = (el: HTMLInputElement) => (el.value.trim() === '' ? Number.NaN : Number(el.value));
    const i = this.inputs;
    this.settings = {
      ...this.settings,
      systemPrompt: i.systemPrompt.value,
      temperature: num(i.temperature),
      topP: num(i.topP),
      maxTokens: num(i.maxTokens),
      seed: i.seed.value.trim() === '' ? null : num(i.seed),
    };
    return this.settings;
  }

  /** Remember the model to start with next time. */
  rememberModel(key: string): void {
    this.settings = { ...this.read(), model: key };
    void saveSettings(this.settings); // stored values are re-checked field by field on the way back in
  }
}
