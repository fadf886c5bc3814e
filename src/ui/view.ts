// The page's elements and every change made to them: load progress, state, messages, streamed output.
// Not here: the model or the generation loop (main.ts drives this view).

import { formatProgress } from './format';

export type PageState = 'loading' | 'ready' | 'generating' | 'done' | 'error';

export interface GenerateInputs {
  prompt: string;
  /** NaN when the field is empty or not a number; the sampler rejects it with a message */
  temperature: number;
  maxTokens: number;
}

function byId<T extends HTMLElement>(doc: Document, id: string, type: new () => T): T {
  const el = doc.getElementById(id);
  if (!(el instanceof type)) throw new Error(`index.html is missing #${id} (${type.name})`);
  return el;
}

export class PageView {
  readonly app: HTMLElement;
  readonly form: HTMLFormElement;
  readonly prompt: HTMLTextAreaElement;
  readonly temperature: HTMLInputElement;
  readonly maxTokens: HTMLInputElement;
  readonly generateButton: HTMLButtonElement;
  readonly stopButton: HTMLButtonElement;
  private readonly output: HTMLPreElement;
  private readonly outputText: Text;
  private readonly modelStatus: HTMLElement;
  private readonly progress: HTMLProgressElement;
  private readonly progressText: HTMLElement;
  private readonly deviceLine: HTMLElement;
  private readonly message: HTMLElement;
  private readonly stats: HTMLElement;
  private ids: number[] = [];
  /** false once the model failed to load: Generate stays off for good */
  private usable = true;

  constructor(doc: Document) {
    this.app = byId(doc, 'app', HTMLElement);
    this.form = byId(doc, 'generate-form', HTMLFormElement);
    this.prompt = byId(doc, 'prompt', HTMLTextAreaElement);
    this.temperature = byId(doc, 'temperature', HTMLInputElement);
    this.maxTokens = byId(doc, 'max-tokens', HTMLInputElement);
    this.generateButton = byId(doc, 'generate', HTMLButtonElement);
    this.stopButton = byId(doc, 'stop', HTMLButtonElement);
    this.output = byId(doc, 'output', HTMLPreElement);
    this.modelStatus = byId(doc, 'model-status', HTMLElement);
    this.progress = byId(doc, 'load-progress', HTMLProgressElement);
    this.progressText = byId(doc, 'load-bytes', HTMLElement);
    this.deviceLine = byId(doc, 'device-line', HTMLElement);
    this.message = byId(doc, 'message', HTMLElement);
    this.stats = byId(doc, 'stats', HTMLElement);
    // one Text node that grows with appendData: no re-parse of the whole output per token
    this.outputText = doc.createTextNode('');
    this.output.replaceChildren(this.outputText);
  }

  /** `data-state` on the output (tests wait on it) and on <main> (styling), plus which buttons work. */
  setState(state: PageState): void {
    this.output.dataset.state = state;
    this.app.dataset.state = state;
    const busy = state === 'loading' || state === 'generating';
    this.generateButton.disabled = busy || !this.usable;
    this.stopButton.disabled = state !== 'generating';
  }

  setModelStatus(text: string): void {
    this.modelStatus.textContent = text;
  }

  setDevice(text: string): void {
    this.deviceLine.textContent = text;
  }

  showProgress(loaded: number, total: number): void {
    this.progress.max = Math.max(1, total);
    this.progress.value = Math.min(loaded, this.progress.max);
    this.progressText.textContent = formatProgress(loaded, total);
  }

  /** A failure that leaves the page unable to generate (no WebGPU, model did not load, device lost). */
  failStartup(text: string, errorName: string): void {
    this.usable = false;
    this.progress.hidden = true;
    this.setModelStatus('not available');
    this.showMessage(text, errorName);
    this.setState('error');
  }

  /** `errorName` (the error's class) goes to data-error, for tests and bug reports; the text is for people. */
  showMessage(text: string, errorName: string): void {
    this.message.textContent = text;
    this.message.dataset.error = errorName;
    this.message.hidden = false;
  }

  clearMessage(): void {
    this.message.textContent = '';
    delete this.message.dataset.error;
    this.message.hidden = true;
  }

  readInputs(): GenerateInputs {
    return {
      prompt: this.prompt.value,
      temperature: this.temperature.value.trim() === '' ? Number.NaN : Number(this.temperature.value),
      maxTokens: this.maxTokens.value.trim() === '' ? Number.NaN : Number(this.maxTokens.value),
    };
  }

  startOutput(): void {
    this.ids = [];
    this.outputText.data = '';
    this.output.dataset.ids = '';
    delete this.output.dataset.finish;
    this.stats.textContent = '';
  }

  appendToken(id: number, text: string): void {
    this.ids.push(id);
    this.output.dataset.ids = this.ids.join(',');
    if (text) this.outputText.appendData(text);
  }

  /** The final text (includes a tail the streaming decoder held back) and why generation ended. */
  finishOutput(text: string, finish: string, stats: string): void {
    this.outputText.data = text;
    this.output.dataset.finish = finish;
    this.stats.textContent = stats;
  }

  setStats(text: string): void {
    this.stats.textContent = text;
  }
}
