// The model's line in the top bar (name and status), the load progress bar, the note on how replies are built, and
// the GPU line. DOM only: what is loaded is the engine worker's answer (LoadedModel), shown as it comes.

import { FALLBACK_DESCRIPTION } from '../model/chat-template';
import type { LoadedModel, LoadProgress } from '../worker/api';
import { byId } from './dom';
import { formatBytes, formatProgress } from './format';

/** What was checked of the loaded weights (src/model/manifest-check.ts), in words. */
export function weightsText(m: Pick<LoadedModel, 'mode' | 'weights'>): string {
  if (m.weights === 'unpinned') return 'weights not pinned: not checked';
  return m.mode === 'local' ? 'weights checked against the pinned manifest' : 'weights on this device checked against the pinned manifest';
}

export class ModelStatus {
  private readonly name = byId('model-name', HTMLElement);
  private readonly status = byId('model-status', HTMLElement);
  private readonly button = byId('open-models', HTMLButtonElement);
  private readonly load = byId('load', HTMLElement);
  private readonly bar = byId('load-progress', HTMLProgressElement);
  private readonly bytes = byId('load-bytes', HTMLElement);
  private readonly templateNote = byId('template-note', HTMLElement);
  private readonly device = byId('device-line', HTMLElement);

  /** A load starts: its label, an empty bar. */
  loading(label: string, text = 'loading…'): void {
    this.name.textContent = label;
    this.status.textContent = text;
    this.progress({ loaded: 0, total: 1 });
  }

  /** Progress of the load in progress; null hides the bar. */
  progress(p: LoadProgress | null): void {
    this.load.hidden = p === null;
    if (!p) return;
    this.bar.max = Math.max(1, p.total);
    this.bar.value = Math.min(p.loaded, this.bar.max);
    const compiling = p.pipelines ? ` · GPU programs ${p.compiled ?? 0} of ${p.pipelines}` : '';
    this.bytes.textContent = formatProgress(p.loaded, p.total) + compiling;
  }

  /** A short line next to the model's name. */
  say(text: string): void {
    this.status.textContent = text;
  }

  /** What the worker loaded. */
  ready(m: LoadedModel): void {
    this.name.textContent = m.name;
    this.status.textContent = (m.mode === 'local'
      ? `ready · ${m.context} tokens of context · ${formatBytes(m.weightBytes)} of weights · ${m.arch}, ${m.nLayers} layers · loaded in ${Math.round(m.loadMs)} ms`
      : `swarm · ${m.context} tokens of context · ${swarmSplit(m)}`) +
      ` · ${weightsText(m)}`;
    this.status.dataset.context = String(m.context);
    this.status.dataset.weights = m.weights;
    this.button.title = `${m.name}: ${this.status.textContent}`;
    this.templateNote.hidden = m.chatTemplate;
    this.templateNote.textContent = m.chatTemplate ? '' : `${m.name}: ${FALLBACK_DESCRIPTION}.`;
    this.templateNote.title = this.templateNote.textContent;
  }

  notLoaded(text = 'not loaded'): void {
    this.status.textContent = text;
    this.load.hidden = true;
  }

  gpu(text: string): void {
    this.device.textContent = text;
  }
}

/** Where a swarm model's layers run (numbered from 0, as the swarm picture numbers them): e.g. "head and layers 0, 4 on this device (12 MB), layers 1–3 of 5 on peers". */
export function swarmSplit(m: LoadedModel): string {
  const range = (a: number, b: number) => (b - a === 1 ? `${a}` : `${a}–${b - 1}`);
  const ownSpans = [m.own?.front, m.own?.back].filter((x) => x != null);
  const ownCount = ownSpans.reduce((t, x) => t + x.end - x.start, 0);
  const start = m.own?.front?.end ?? 0;
  const end = m.own?.back?.start ?? m.nLayers;
  const here = ownCount > 0 ? `head and layer${ownCount > 1 ? 's' : ''} ${ownSpans.map((x) => range(x.start, x.end)).join(', ')}` : 'head';
  return `${here} on this device (${formatBytes(m.weightBytes)}), layer${end - start > 1 ? 's' : ''} ${range(start, end)} of ${m.nLayers} on peers`;
}
