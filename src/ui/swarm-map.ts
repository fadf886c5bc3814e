// The swarm picture: which peers serve which layers of the model (one bar per host over the layer axis), a coverage
// strip where layers nobody serves stand out (a chat's own first and last layers run on this device and need no
// host), and the route the current chat takes with each hop's latency. Hosts that failed this tab lately, or claim
// more speed than was measured through them, are marked (routing prefers others: swarm/reliability.ts, routing.ts).
// Pure rendering from plain data into one container; main.ts calls render() when records or the route change.

import type { Span } from '../swarm/protocol';
import type { PeerRecord } from '../swarm/records';
import type { SwarmStatus } from '../worker/api';
import { h } from './dom';
import { formatLayers } from './format';

export interface SwarmView {
  nLayers: number;
  records: readonly PeerRecord[];
  /** this tab's peer id (its bar is marked) */
  self?: string;
  status?: SwarmStatus | null;
  /** a chat's own first and last layers (they run on this device); none in Contribute mode */
  own?: { front: Span | null; back: Span | null };
}

/** Per layer, how many hosts serve it. */
export function hostCounts(nLayers: number, records: readonly Pick<PeerRecord, 'span'>[]): number[] {
  const n = new Array<number>(nLayers).fill(0);
  for (const r of records) for (let l = Math.max(0, r.span.start); l < Math.min(nLayers, r.span.end); l++) n[l]++;
  return n;
}

/** Maximal runs of layers nobody serves, as [start, end) spans. */
export function gaps(counts: readonly number[]): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  for (let l = 0; l < counts.length; l++) {
    if (counts[l] > 0) continue;
    const last = out.at(-1);
    if (last && last.end === l) last.end = l + 1;
    else out.push({ start: l, end: l + 1 });
  }
  return out;
}

const short = (id: string): string => (id.length > 10 ? `${id.slice(0, 8)}…` : id);
const pct = (x: number, n: number): string => `${((100 * x) / n).toFixed(3)}%`;
const ms = (x: number): string => (Number.isFinite(x) ? `${x < 10 ? x.toFixed(1) : Math.round(x)} ms` : '…');

function bar(cls: string, start: number, end: number, n: number, label: string): HTMLElement {
  const b = h('div', { class: cls }, label);
  b.style.left = pct(start, n);
  b.style.width = pct(end - start, n);
  return b;
}


/** What the picture says of a host that failed this tab lately or claims more speed than measured. */
export function hostMarks(peer: string, status: SwarmStatus | null | undefined): { failures: number; overclaims: boolean; text: string; title: string } {
  const failures = status?.failures[peer] ?? 0;
  const overclaims = status?.overclaimed.includes(peer) ?? false;
  const text = [
    failures > 0 ? `failed this tab ${failures}×` : '',
    overclaims ? 'slower than it claims' : '',
  ].filter(Boolean).join(' · ');
  const title = [
    failures > 0 ? `Lately this host failed this tab ${failures} time${failures === 1 ? '' : 's'} (a session dropped, silence, or leaving mid-reply): routes prefer steadier hosts of its layers.` : '',
    overclaims ? 'It claims far more speed than was measured through it: it is routed as measured.' : '',
  ].filter(Boolean).join(' ');
  return { failures, overclaims, text, title };
}

export function renderSwarm(box: HTMLElement, v: SwarmView): void {
  const n = Math.max(1, v.nLayers);
  const counts = hostCounts(n, v.records);
  // the layers hosts must serve: all of them, or those between a chat's own first and last
  const from = v.own?.front?.end ?? 0;
  const to = v.own?.back?.start ?? n;
  const isOwn = (l: number) => l < from || l >= to;
  const holes = gaps(counts.map((c, l) => (isOwn(l) ? 1 : c)));
  const onRoute = new Map((v.status?.route ?? []).map((h, i) => [h.peer, i]));
  box.replaceChildren();
  box.dataset.coverage = holes.length === 0 ? 'full' : 'gaps';
  box.dataset.hosts = String(v.records.length);
  box.dataset.reroutes = String(v.status?.reroutes.length ?? 0);

  const ownText = [v.own?.front, v.own?.back].filter((x) => x != null).map((x) => formatLayers(x.start, x.end)).join(' and ');
  const hosts = `${v.records.length} host${v.records.length === 1 ? '' : 's'}`;
  const summary = holes.length > 0
    ? `Not served: ${holes.map((g) => formatLayers(g.start, g.end)).join(', ')}. A chat needs every layer.`
    : ownText
      ? `Hosts serve ${formatLayers(from, to)} (${hosts}); ${ownText} run on this device.`
      : `Every layer 0–${n - 1} is served (${hosts}).`;
  box.append(h('p', { class: holes.length ? 'swarm-summary gap' : 'swarm-summary' }, summary));

  // the coverage strip: one cell per layer, the number of hosts in it, gaps in red
  const strip = h('div', { class: 'swarm-strip', role: 'img' });
  strip.setAttribute('aria-label', `Coverage of ${n} layers: ${counts.join(', ')} hosts per layer`);
  for (let l = 0; l < n; l++) {
    const own = isOwn(l);
    const cell = h('div', { class: own ? 'cell own' : counts[l] === 0 ? 'cell gap' : 'cell' }, own ? 'you' : String(counts[l]));
    cell.title = own ? `layer ${l}: runs on this device` : `layer ${l}: ${counts[l]} host${counts[l] === 1 ? '' : 's'}`;
    strip.append(cell);
  }
  box.append(strip);

  // one row per host, its span as a bar over the layer axis
  const rows = h('div', { class: 'swarm-rows' });
  const sorted = [...v.records].sort((a, b) => a.span.start - b.span.start || a.span.end - b.span.end || a.id.localeCompare(b.id));
  for (const r of sorted) {
    const hop = onRoute.get(r.id);
    const row = h('div', { class: 'swarm-row' });
    row.dataset.peer = r.id;
    row.dataset.span = `${r.span.start}:${r.span.end}`;
    const who = r.id === v.self ? 'this tab' : short(r.id);
    const tps = r.throughput > 0 ? ` · ${r.throughput.toFixed(0)} tok/s` : '';
    const marks = hostMarks(r.id, v.status);
    if (marks.failures > 0) row.dataset.failures = String(marks.failures);
    if (marks.overclaims) row.dataset.overclaims = '';
    const track = h('div', { class: 'track' });
    track.append(bar(hop !== undefined ? 'span on-route' : r.id === v.self ? 'span self' : 'span', r.span.start, r.span.end, n, r.span.end - r.span.start === 1 ? `${r.span.start}` : `${r.span.start}–${r.span.end - 1}`));
    const label = h('span', { class: 'who' }, `${who}${tps}`);
    if (marks.text) {
      label.append(h('span', { class: 'mark' }, marks.text));
      label.title = marks.title;
    }
    row.append(label, track);
    rows.append(row);
  }
  if (sorted.length === 0) rows.append(h('p', { class: 'muted small' }, 'No hosts of this model found yet.'));
  box.append(rows);

  // the route: this device's Head and own first layers, each hop with its latency, back to the own last layers and Head
  const route = v.status?.route ?? [];
  if (route.length > 0) {
    const line = h('ol', { class: 'swarm-route' });
    line.setAttribute('aria-label', 'Route of this chat');
    line.append(h('li', { class: 'end' }, `you: tokens, embedding${v.own?.front ? `, ${formatLayers(v.own.front.start, v.own.front.end)}` : ''}`));
    for (const [i, hop] of route.entries()) {
      const li = h('li', { class: 'hop' }, `${short(hop.peer)} · ${formatLayers(hop.start, hop.end)} · ${ms(hop.ms)}`);
      li.dataset.hop = String(i);
      li.dataset.peer = hop.peer;
      li.dataset.ms = Number.isFinite(hop.ms) ? hop.ms.toFixed(1) : '';
      line.append(li);
    }
    line.append(h('li', { class: 'end' }, `you: ${v.own?.back ? `${formatLayers(v.own.back.start, v.own.back.end)}, ` : ''}output head, sampling`));
    box.append(line);
    const rr = v.status?.reroutes ?? [];
    if (rr.length > 0) {
      box.append(h('p', { class: 'muted small swarm-reroutes' },
        rr.map((x) => `Step ${x.step}: ${formatLayers(x.start, x.end)} moved from ${short(x.from)} to ${x.to.map(short).join(' + ')} in ${Math.round(x.ms)} ms (${x.reason.split(':')[0]}).`).join(' ')));
    }
  }
}
