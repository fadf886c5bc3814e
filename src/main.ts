// The page: wires the engine worker, storage and the views together. Startup checks WebGPU on this thread (what the
// page sees decides the No-WebGPU page), starts the engine worker, loads the chosen model (the embedded stories260K
// by default) with a progress bar, then runs the chat: streaming replies, Stop, Regenerate, New chat, past chats,
// system prompt and sampling settings; the modes bar and swarm panel (src/ui/swarm-panel.ts) switch between Local,
// Swarm and Contribute. Not here: Node-only modules must never be imported here.

import './ui/style.css';
import { WebGpuUnavailableError } from './model/errors';
import {
  deleteConversation, exportConversation, getConversation, listConversations, newConversation, renameConversation, saveConversation,
  titleFrom, type ChatMessage, type Conversation,
} from './storage/conversations';
import { getModel } from './storage/model-cache';
import { loadSettings, saveSettings, type ChatSettings } from './storage/settings';
import { ChatView } from './ui/chat-view';
import { byId, saveFile } from './ui/dom';
import { formatBytes, formatProgress, formatRate } from './ui/format';
import { EMBEDDED_KEY, embeddedSpec, ModelPicker } from './ui/model-picker';
import { registerServiceWorker } from './ui/update';
import { describeError, errorName, startupMessage } from './ui/webgpu-help';
import { EngineClient, type ChatTurn, type ModelSpec, type SwarmInfo } from './worker/client';
import { SwarmPanel } from './ui/swarm-panel';

type AppState = 'loading' | 'ready' | 'generating' | 'error';

const FINISH_TEXT: Record<string, string> = {
  length: 'reached max tokens',
  stop: 'the model finished',
  abort: 'stopped',
  context: 'the context is full',
};

const app = byId('app', HTMLElement);
const form = byId('composer', HTMLFormElement);
const promptBox = byId('prompt', HTMLTextAreaElement);
const sendButton = byId('send', HTMLButtonElement);
const stopButton = byId('stop', HTMLButtonElement);
const regenButton = byId('regenerate', HTMLButtonElement);
const newChatButton = byId('new-chat', HTMLButtonElement);
const message = byId('message', HTMLElement);
const modelName = byId('model-name', HTMLElement);
const modelStatus = byId('model-status', HTMLElement);
const loadBox = byId('load', HTMLElement);
const loadProgress = byId('load-progress', HTMLProgressElement);
const loadBytes = byId('load-bytes', HTMLElement);
const deviceLine = byId('device-line', HTMLElement);
const templateNote = byId('template-note', HTMLElement);
const inputs = {
  systemPrompt: byId('system-prompt', HTMLTextAreaElement),
  temperature: byId('temperature', HTMLInputElement),
  topP: byId('top-p', HTMLInputElement),
  maxTokens: byId('max-tokens', HTMLInputElement),
  seed: byId('seed', HTMLInputElement),
};

const view = new ChatView();
let engine: EngineClient | undefined;
let settings: ChatSettings;
let conv: Conversation;
let state: AppState = 'loading';
/** false once startup failed for good (no WebGPU): nothing can be sent */
let usable = true;
let modelLoaded = false;
let currentModelKey = EMBEDDED_KEY;
/** how the chosen model was loaded (Swarm and Contribute modes open the same model) */
let currentSpec: ModelSpec = embeddedSpec();
let currentLabel = 'stories260K';
let panel: SwarmPanel | undefined;

function setState(s: AppState): void {
  state = s;
  app.dataset.state = s;
  const canSend = usable && modelLoaded && s === 'ready';
  sendButton.disabled = !canSend;
  stopButton.disabled = s !== 'generating';
  regenButton.disabled = !canSend || !conv?.messages.some((m) => m.role === 'user');
  newChatButton.disabled = s === 'generating';
  panel?.setEnabled(s === 'ready');
  void refreshChatList();
}

function showMessage(text: string, name: string): void {
  message.textContent = text;
  message.dataset.error = name;
  message.hidden = false;
}

function clearMessage(): void {
  message.textContent = '';
  delete message.dataset.error;
  message.hidden = true;
}

function showError(e: unknown): void {
  console.error(e);
  showMessage(describeError(e), errorName(e));
}

// ---- settings -------------------------------------------------------------------------------------------------

function fillSettings(s: ChatSettings): void {
  inputs.systemPrompt.value = s.systemPrompt;
  inputs.temperature.value = String(s.temperature);
  inputs.topP.value = String(s.topP);
  inputs.maxTokens.value = String(s.maxTokens);
  inputs.seed.value = s.seed === null ? '' : String(s.seed);
}

/** Read the settings fields; a value the engine would reject is passed on so its named error explains it. */
function readSettings(): ChatSettings {
  const num = (el: HTMLInputElement) => (el.value.trim() === '' ? Number.NaN : Number(el.value));
  return {
    ...settings,
    systemPrompt: inputs.systemPrompt.value,
    temperature: num(inputs.temperature),
    topP: num(inputs.topP),
    maxTokens: num(inputs.maxTokens),
    seed: inputs.seed.value.trim() === '' ? null : num(inputs.seed),
  };
}

for (const el of Object.values(inputs)) {
  el.addEventListener('change', () => {
    const s = readSettings();
    const valid = s.temperature >= 0 && s.topP > 0 && s.topP <= 1 && Number.isInteger(s.maxTokens) && s.maxTokens >= 1;
    settings = s;
    if (valid) void saveSettings(s);
  });
}

// ---- past chats -------------------------------------------------------------------------------------------------

async function refreshChatList(): Promise<void> {
  const items = await listConversations();
  view.showChatList(items, conv?.id, {
    open: (id) => void openConversation(id),
    rename: (id, title) => void renameConversation(id, title).then((c) => {
      if (c && c.id === conv.id) conv.title = c.title;
      return refreshChatList();
    }),
    exportJson: (id) => void exportChat(id),
    remove: (id) => void removeChat(id),
  }, state === 'generating');
}

async function openConversation(id: string): Promise<void> {
  if (state === 'generating') return;
  const c = await getConversation(id);
  if (!c) return;
  conv = c;
  view.showMessages(c.messages.filter((m) => m.role !== 'system'));
  clearMessage();
  setState(state);
}

function startNewChat(): void {
  conv = newConversation(modelName.textContent ?? '');
  view.showMessages([]);
  clearMessage();
  setState(state);
  promptBox.focus();
}

async function exportChat(id: string): Promise<void> {
  const c = id === conv.id ? conv : await getConversation(id);
  if (!c) return;
  const safe = c.title.replace(/[^\w\- ]+/g, '').trim().slice(0, 40) || 'chat';
  saveFile(`flock-${safe}.json`, exportConversation(c));
}

async function removeChat(id: string): Promise<void> {
  await deleteConversation(id);
  if (id === conv.id) startNewChat();
  else await refreshChatList();
}

// ---- chatting -----------------------------------------------------------------------------------------------

async function reply(): Promise<void> {
  if (!engine) return;
  const s = readSettings();
  const seed = s.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
  const turns: ChatTurn[] = [];
  if (s.systemPrompt.trim()) turns.push({ role: 'system', content: s.systemPrompt });
  for (const m of conv.messages) turns.push({ role: m.role, content: m.content });
  clearMessage();
  setState('generating');
  const streaming = view.startReply();
  const t0 = performance.now();
  try {
    const res = await engine.chat(
      { messages: turns, temperature: s.temperature, topP: s.topP, maxTokens: s.maxTokens, seed },
      (t) => streaming.push(t.id, t.text),
    );
    const stats =
      `${res.tokenCount} tokens · ${formatRate(res.decodeTokensPerSecond)} tokens/s · first token after ` +
      `${Math.round(res.prefillMs)} ms · ${FINISH_TEXT[res.finishReason]}` + (s.temperature > 0 ? ` · seed ${seed}` : '');
    streaming.finish(res.text, res.finishReason, stats);
    const m: ChatMessage = { role: 'assistant', content: res.text, finish: res.finishReason, stats };
    conv.messages.push(m);
    conv.updatedAt = Date.now();
    await saveConversation(conv);
    console.debug(`reply in ${Math.round(performance.now() - t0)} ms`);
  } catch (e) {
    streaming.fail();
    view.removeLast();
    showError(e);
  } finally {
    setState('ready');
  }
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = promptBox.value;
  if (state !== 'ready' || !modelLoaded || !text.trim()) return;
  promptBox.value = '';
  if (conv.messages.length === 0) conv.title = titleFrom(text);
  conv.model = modelName.textContent ?? '';
  const m: ChatMessage = { role: 'user', content: text };
  conv.messages.push(m);
  conv.updatedAt = Date.now();
  view.appendMessage(m);
  void saveConversation(conv).then(reply);
});

promptBox.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener('click', () => void engine?.abort());

regenButton.addEventListener('click', () => {
  if (state !== 'ready') return;
  if (conv.messages.at(-1)?.role === 'assistant') {
    conv.messages.pop();
    view.removeLast();
  }
  if (conv.messages.at(-1)?.role === 'user') void reply();
});

newChatButton.addEventListener('click', startNewChat);

// ---- models -------------------------------------------------------------------------------------------------

async function loadModel(spec: ModelSpec, label: string, key: string): Promise<boolean> {
  if (!engine || state === 'generating') return false;
  if (panel?.holdsModel) {
    showMessage('Leave the swarm to change the model: the hosts serve the model this chat joined with.', 'InvalidArgumentError');
    return false;
  }
  modelLoaded = false;
  setState('loading');
  modelName.textContent = label;
  modelStatus.textContent = 'loading…';
  loadBox.hidden = false;
  loadProgress.value = 0;
  clearMessage();
  try {
    const info = await engine.load(spec, (p) => {
      loadProgress.max = Math.max(1, p.total);
      loadProgress.value = Math.min(p.loaded, loadProgress.max);
      loadBytes.textContent = formatProgress(p.loaded, p.total);
    });
    modelLoaded = true;
    currentModelKey = key;
    currentSpec = spec;
    currentLabel = label;
    modelName.textContent = info.name;
    modelStatus.textContent = `ready · ${info.arch}, ${info.nLayers} layers, ${formatBytes(info.weightBytes)} of weights, loaded in ${Math.round(info.loadMs)} ms`;
    templateNote.hidden = info.chatTemplate;
    templateNote.textContent = info.chatTemplate
      ? ''
      : `${info.name} has no chat template: it continues your last message as plain text (the system prompt is not used).`;
    if (key) {
      settings = { ...readSettings(), model: key };
      void saveSettings(settings); // stored values are re-checked field by field on the way back in
    }
    setState('ready');
    return true;
  } catch (e) {
    modelStatus.textContent = 'not loaded';
    showError(e);
    setState('ready');
    return false;
  }
}

/** Swarm mode: the worker swapped the local model for the model's Head (info), or is about to (null). */
function swarmReady(info: SwarmInfo | null): void {
  if (!info) {
    modelLoaded = false;
    modelStatus.textContent = 'loading the head for the swarm…';
    setState('loading');
    return;
  }
  modelLoaded = true;
  modelName.textContent = info.name;
  modelStatus.textContent = `swarm · head on this device (${formatBytes(info.weightBytes)}), ${info.nLayers} layers on peers`;
  templateNote.hidden = info.chatTemplate;
  templateNote.textContent = info.chatTemplate ? '' : `${info.name} has no chat template: it continues your last message as plain text.`;
  setState('ready');
}

function showLoadProgress(p: { loaded: number; total: number } | null): void {
  loadBox.hidden = p === null;
  if (!p) return;
  loadProgress.max = Math.max(1, p.total);
  loadProgress.value = Math.min(p.loaded, loadProgress.max);
  loadBytes.textContent = formatProgress(p.loaded, p.total);
}

/** The model to start with: the one used last if it is still cached and complete, else the embedded one. */
async function startupModel(picker: ModelPicker): Promise<void> {
  if (settings.model !== EMBEDDED_KEY) {
    const m = await getModel(settings.model);
    if (m?.complete && (await picker.useCached(m))) return;
  }
  await loadModel(embeddedSpec(), 'stories260K', EMBEDDED_KEY);
}

/** What this thread sees decides: without navigator.gpu or an adapter here, the worker is not even started. */
async function checkWebGpu(): Promise<void> {
  if (!('gpu' in navigator) || !navigator.gpu) throw new WebGpuUnavailableError('navigator.gpu is missing');
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new WebGpuUnavailableError('WebGPU is present but no GPU adapter is available (blocklisted GPU or driver).');
}

async function main(): Promise<void> {
  registerServiceWorker();
  settings = await loadSettings();
  fillSettings(settings);
  conv = newConversation('stories260K');
  setState('loading');
  modelStatus.textContent = 'requesting the GPU…';
  try {
    await checkWebGpu();
    engine = EngineClient.start();
    const dev = await engine.init();
    deviceLine.textContent = `GPU: ${dev.adapterName}${dev.hasF16 ? ' (shader-f16)' : ''} · the engine runs in a background worker`;
  } catch (e) {
    console.error(e);
    usable = false;
    loadBox.hidden = true;
    promptBox.disabled = true;
    modelStatus.textContent = 'not available';
    showMessage(startupMessage(e, 'gpu' in navigator && navigator.gpu !== undefined), errorName(e));
    setState('error');
    return;
  }
  const picker = new ModelPicker(engine, {
    load: async (spec, label, key) => {
      const ok = await loadModel(spec, label, key);
      if (ok) currentModelKey = key;
      return ok;
    },
    current: () => currentModelKey,
    idle: () => state !== 'generating' && state !== 'loading' && !panel?.holdsModel,
    showError,
    status: (text) => {
      modelStatus.textContent = text;
    },
  });
  panel = new SwarmPanel({
    engine,
    currentSpec: () => currentSpec,
    reloadLocal: async () => {
      await loadModel(currentSpec, currentLabel, currentModelKey);
    },
    swarmReady,
    progress: showLoadProgress,
    busy: () => state === 'generating' || state === 'loading',
    showError,
  });
  await panel.init();
  await startupModel(picker);
}

void main();
