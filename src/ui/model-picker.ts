// The model picker dialog: the embedded stories260K, the Hugging Face catalog, models downloaded from a pasted
// URL, and a local file. Nothing is downloaded or loaded before its header says it can run here: every path (the
// catalog's Download and Resume, a URL, a file, a cached model) reads the header first (the engine worker's
// inspect) and shows what it found, the memory it needs at the chosen context against this device, and the verdict;
// a model that does not fit is refused with the reason, one that fits only with a shorter context offers that
// context. It runs downloads (progress with bytes, rate and time left; cancel; resume), verifies a cached file
// before use (damaged pieces are fetched again), shows storage use and asks for persistent storage.
// Not here: loading into the GPU (app.ts's `load`, which runs in the engine worker) or the chat.

import {
  deleteModel, downloadModel, downloadedBytes, listModels, modelIdForUrl, requestPersistentStorage, storageInfo, verifyModel,
  type CachedModel,
} from '../storage/model-cache';
import type { EngineClient, InspectRequest, ModelReport, ModelSpec } from '../worker/engine-client';
import { CATALOG } from './catalog';
import { byId, h } from './dom';
import { formatBytes, formatDownload } from './format';
import { memoryBudget, reportEl, verdictText } from './model-report';
import type { SettingsForm } from './settings-form';

export const EMBEDDED_KEY = 'embedded';

export interface PickerHost {
  /** Load a model into the engine; `key` is what settings remember ('embedded' or a cached id; '' for a file). */
  load(spec: ModelSpec, label: string, key: string): Promise<boolean>;
  /** The key of the model in use. */
  current(): string;
  /** Whether the engine is free to load now. */
  idle(): boolean;
  showError(e: unknown): void;
  /** a short line next to the model name (what the picker is doing) */
  status(text: string): void;
  /** the chosen context and memory limit (read when judging and loading a model) */
  settings: SettingsForm;
}

interface Row {
  key: string;
  name: string;
  detail: string;
  url?: string;
  cached?: CachedModel;
}

/** A row's verdict: a line of text, or a header report; and what the user may do about it. */
interface Note {
  text: string;
  kind: 'ok' | 'bad' | 'info';
  report?: ModelReport;
  /** what the "Download" line of the report says when nothing needs downloading */
  downloadWord?: string;
  /** e.g. "Use 1024 tokens of context": sets it, then does what was asked */
  offer?: { label: string; run: () => void };
}

/** The memory the browser says this device has, GB (Chrome, Edge: navigator.deviceMemory), or undefined. */
export function declaredMemoryGb(): number | undefined {
  const v: unknown = (navigator as Navigator & { deviceMemory?: unknown }).deviceMemory;
  return typeof v === 'number' && v > 0 ? v : undefined;
}

export class ModelPicker {
  private readonly dialog = byId('models', HTMLDialogElement);
  private readonly list = byId('model-list', HTMLUListElement);
  private readonly download = byId('download', HTMLElement);
  private readonly downloadName = byId('download-name', HTMLElement);
  private readonly downloadProgress = byId('download-progress', HTMLProgressElement);
  private readonly downloadText = byId('download-text', HTMLElement);
  private readonly cancelButton = byId('download-cancel', HTMLButtonElement);
  private readonly storageLine = byId('storage-line', HTMLElement);
  private readonly persistButton = byId('persist', HTMLButtonElement);
  /** per-row verdicts from header checks and downloads */
  private readonly notes = new Map<string, Note>();
  /** a URL or file being checked that has no row of its own yet */
  private pending: Row | undefined;
  private active: AbortController | undefined;

  constructor(
    private readonly engine: EngineClient,
    private readonly host: PickerHost,
  ) {
    byId('open-models', HTMLButtonElement).addEventListener('click', () => void this.open());
    this.cancelButton.addEventListener('click', () => this.active?.abort(new DOMException('Download cancelled', 'AbortError')));
    this.persistButton.addEventListener('click', () => void requestPersistentStorage().then(() => this.refresh()));
    byId('url-form', HTMLFormElement).addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = byId('model-url', HTMLInputElement);
      const url = input.value.trim();
      if (!/^https?:\/\//i.test(url)) {
        this.host.showError(new Error('Paste an http(s) address of a .gguf file.'));
        return;
      }
      const name = decodeURIComponent(new URL(url).pathname.split('/').pop() || url);
      void modelIdForUrl(url).then((key) => {
        this.pending = { key, name, detail: new URL(url).host, url };
        return this.fetchAndUse(url, name);
      });
    });
    byId('model-file', HTMLInputElement).addEventListener('change', (ev) => {
      const input = ev.currentTarget;
      if (!(input instanceof HTMLInputElement)) return;
      const file = input.files?.[0];
      if (file) void this.openFile(file);
      input.value = '';
    });
    // a new context or memory limit changes every verdict: they are read again on the next check
    host.settings.onModelLimitsChange(() => {
      this.notes.clear();
      void this.refresh();
    });
  }

  async open(): Promise<void> {
    if (!this.dialog.open) this.dialog.showModal();
    await this.refresh();
  }

  async refresh(): Promise<void> {
    const cached = await listModels();
    const byUrl = new Map(cached.map((m) => [m.url, m]));
    const rows: Row[] = [{ key: EMBEDDED_KEY, name: 'stories260K', detail: `embedded · 1.2 MB · a tiny story model · works offline` }];
    for (const c of CATALOG) {
      const m = byUrl.get(c.url);
      rows.push({ key: m?.id ?? (await modelIdForUrl(c.url)), name: `${c.name} ${c.quant}`, detail: `Hugging Face · ≈ ${formatBytes(c.size)}`, url: c.url, cached: m });
      byUrl.delete(c.url);
    }
    for (const m of byUrl.values()) rows.push({ key: m.id, name: m.name, detail: `${new URL(m.url).host} · ${formatBytes(m.size)}`, url: m.url, cached: m });
    const pending = this.pending;
    if (pending && !rows.some((r) => r.key === pending.key)) rows.splice(1, 0, pending);
    this.list.replaceChildren(...rows.map((r) => this.rowEl(r)));
    const s = await storageInfo();
    this.storageLine.textContent =
      `Storage: ${formatBytes(s.usage)} used of ${formatBytes(s.quota)} available to this site · ` +
      (s.persisted ? 'persistent (the browser will not clear it on its own)' : 'not persistent (the browser may clear it when space runs low)');
    this.persistButton.hidden = s.persisted;
  }

  private rowEl(r: Row): HTMLLIElement {
    const inUse = this.host.current() === r.key;
    const busy = this.active !== undefined || !this.host.idle();
    const buttons: HTMLButtonElement[] = [];
    const button = (cls: string, label: string, fn: () => void, disabled = busy) => {
      const b = h('button', { type: 'button', class: cls, disabled }, label);
      b.addEventListener('click', fn);
      buttons.push(b);
    };
    let status = '';
    if (r.key === EMBEDDED_KEY) {
      if (!inUse) button('use', 'Use', () => void this.host.load(embeddedSpec(), 'stories260K', EMBEDDED_KEY).then(() => this.refresh()));
    } else if (!r.url) {
      // a file from this device: its verdict (and any offer) is all there is
    } else {
      const m = r.cached;
      if (m?.complete) {
        status = `downloaded (${formatBytes(m.size)})`;
        if (!inUse) button('use', 'Use', () => void this.useCached(m));
      } else if (m) {
        status = `partly downloaded: ${formatBytes(downloadedBytes(m))} of ${formatBytes(m.size)}`;
        button('download', 'Resume', () => void this.fetchAndUse(m.url, m.name));
      } else if (r.url) {
        const url = r.url;
        button('check', 'Check', () => void this.check(r.key, { kind: 'url', url, name: r.name }));
        button('download', 'Download', () => void this.fetchAndUse(url, r.name));
      }
      if (m) button('delete', 'Delete', () => void this.remove(m), busy || inUse);
    }
    if (inUse) status = status ? `in use · ${status}` : 'in use';
    const note = this.notes.get(r.key);
    if (note?.offer) {
      const offer = note.offer;
      button('offer primary', offer.label, () => offer.run());
    }
    return h(
      'li',
      { 'data-key': r.key, 'data-url': r.url, class: inUse ? 'in-use' : undefined },
      h('div', { class: 'name' }, h('strong', {}, r.name), h('span', { class: 'muted small' }, ` ${r.detail}`)),
      h('div', { class: 'status small' }, status),
      h('div', { class: `verdict small ${note?.kind ?? ''}`, 'data-verdict': note?.report?.verdict }, note?.text ?? ''),
      ...(note?.report ? [reportEl(note.report, declaredMemoryGb(), note.downloadWord ?? 'none')] : []),
      h('div', { class: 'buttons' }, ...buttons),
    );
  }

  private note(key: string, text: string, kind: Note['kind'], more: Partial<Note> = {}): void {
    this.notes.set(key, { text, kind, ...more });
  }

  /** What a header check is judged against: the chosen context and the memory budget. */
  private request(cachedBytes: number): InspectRequest {
    const s = this.host.settings.read();
    return { context: s.context, budget: memoryBudget(s.memoryMb, declaredMemoryGb()), cachedBytes };
  }

  /** Read only the header of `spec`, judge it, and show the report in row `key`. */
  private async check(key: string, spec: ModelSpec, cachedBytes = 0, downloadWord = 'none'): Promise<ModelReport | undefined> {
    if (spec.kind === 'url' && !navigator.onLine) {
      this.note(key, 'This device is offline: reading a model from the network needs a connection.', 'bad');
      await this.refresh();
      return undefined;
    }
    this.note(key, 'Reading the file header…', 'info');
    await this.refresh();
    try {
      const r = await this.engine.inspect(spec, this.request(cachedBytes));
      this.note(key, verdictText(r), r.verdict === 'fits' ? 'ok' : 'bad', { report: r, downloadWord });
      return r;
    } catch (e) {
      const offline = !navigator.onLine ? ' This device is offline.' : '';
      this.note(key, `Could not read the header: ${(e as Error).message}${offline}`, 'bad');
      return undefined;
    } finally {
      await this.refresh();
    }
  }

  /**
   * Go on with `proceed` when the report says the model fits; when it fits only with a shorter context, offer that
   * context (choosing it goes on); otherwise stop, the row saying why. True when `proceed` ran and succeeded.
   */
  private async decide(key: string, r: ModelReport | undefined, proceed: () => Promise<boolean>): Promise<boolean> {
    if (r?.verdict === 'shorter') {
      const note = this.notes.get(key);
      const fit = r.fitContext;
      if (note) note.offer = { label: `Use ${fit} tokens of context`, run: () => void this.host.settings.setContext(fit).then(proceed) };
      this.host.status(`${r.name.split('/').pop()} fits only with ${fit} tokens of context`);
      await this.refresh();
      return false;
    }
    if (r?.verdict !== 'fits') return false;
    return proceed();
  }

  /** A .gguf file from this device: check its header, then load it. */
  private async openFile(file: File): Promise<boolean> {
    const key = `file:${file.name}:${file.size}`;
    this.pending = { key, name: file.name, detail: `a file on this device · ${formatBytes(file.size)}` };
    const r = await this.check(key, { kind: 'file', file }, file.size, 'none (a file on this device)');
    return this.decide(key, r, async () => {
      const ok = await this.host.load({ kind: 'file', file }, file.name, '');
      if (ok) {
        this.notes.delete(key);
        if (this.pending?.key === key) this.pending = undefined;
      }
      await this.refresh();
      return ok;
    });
  }

  /** Check the header, then download (or resume) into the cache, verify, and load. */
  private async fetchAndUse(url: string, name: string, retry = true, checked = false): Promise<boolean> {
    if (this.active) return false;
    const key = await modelIdForUrl(url);
    if (!checked) {
      const have = (await listModels()).find((m) => m.id === key);
      const r = await this.check(key, { kind: 'url', url, name }, have ? downloadedBytes(have) : 0);
      return this.decide(key, r, () => this.fetchAndUse(url, name, retry, true));
    }
    const ac = new AbortController();
    this.active = ac;
    this.download.hidden = false;
    this.downloadName.textContent = name;
    this.downloadText.textContent = 'starting…';
    this.download.dataset.state = 'downloading';
    this.cancelButton.disabled = false;
    await this.refresh();
    try {
      await downloadModel(url, {
        name,
        signal: ac.signal,
        onProgress: (p) => {
          this.downloadProgress.max = Math.max(1, p.total);
          this.downloadProgress.value = p.loaded;
          this.downloadText.textContent = formatDownload(p);
          this.download.dataset.loaded = String(p.loaded);
        },
      });
      this.download.dataset.state = 'done';
      this.cancelButton.disabled = true;
      this.active = undefined;
      if (this.pending?.key === key) this.pending = undefined; // the cached model's own row shows it from now on
      return await this.useCached(await this.cachedOrThrow(key), retry);
    } catch (e) {
      if (ac.signal.aborted) {
        this.download.dataset.state = 'cancelled';
        this.downloadText.textContent += ' · cancelled (what was downloaded is kept: Resume continues from there)';
      } else {
        this.download.dataset.state = 'error';
        this.note(key, `Download failed: ${(e as Error).message}`, 'bad');
        this.host.showError(e);
      }
      return false;
    } finally {
      if (this.active === ac) this.active = undefined;
      this.cancelButton.disabled = true;
      await this.refresh();
    }
  }

  private async cachedOrThrow(id: string): Promise<CachedModel> {
    const m = (await listModels()).find((x) => x.id === id);
    if (!m) throw new Error('The downloaded model disappeared from storage.');
    return m;
  }

  /** Verify a cached model (re-fetching damaged pieces once), check it can run, then load it; true when loaded. */
  async useCached(m: CachedModel, retry = true): Promise<boolean> {
    this.note(m.id, 'Checking the downloaded file…', 'info');
    this.host.status(`checking ${m.name} before use…`);
    await this.refresh();
    const v = await verifyModel(m.id);
    if (!v.ok && v.badChunks.length > 0 && retry) {
      this.note(m.id, `${v.reason} Fetching them again…`, 'info');
      this.host.status(`${v.reason} Fetching them again…`);
      await this.refresh();
      return this.fetchAndUse(m.url, m.name, false, true); // the header was judged already; verifies again, then loads
    }
    if (!v.ok) {
      this.note(m.id, `This file cannot be used: ${v.reason}`, 'bad');
      this.host.status(`${m.name} cannot be used: ${v.reason}`);
      await this.refresh();
      return false;
    }
    const report = await this.check(m.id, { kind: 'cached', id: m.id }, m.size, 'none (downloaded)');
    return this.decide(m.id, report, async () => {
      const ok = await this.host.load({ kind: 'cached', id: m.id }, m.name, m.id);
      await this.refresh();
      return ok;
    });
  }

  private async remove(m: CachedModel): Promise<void> {
    if (!confirm(`Delete ${m.name} (${formatBytes(m.size)}) from this device?`)) return;
    await deleteModel(m.id);
    this.notes.delete(m.id);
    if (this.pending?.key === m.id) this.pending = undefined;
    await this.refresh();
  }
}

/** The embedded model is small (1.2 MB): it is fetched whole, from the service worker's precache once installed.
 *  (Range reads through some servers, vite preview among them, answer gzip-encoded slices of the wrong size.) */
export function embeddedSpec(): ModelSpec {
  return { kind: 'whole', url: new URL('./models/stories260K.gguf', location.href).href, name: 'stories260K' };
}
