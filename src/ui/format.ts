// Small text formatters for the page (byte counts, rates, durations, download progress). Pure functions, no DOM.

import type { FlockReplyChecks } from '../engine/chat-api';
import type { DownloadProgress } from '../storage/model-cache';

/** 1234567 -> "1.2 MB" (decimal units, as download sizes are usually shown). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '?';
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** "0.41 / 1.18 MB"-style progress text; total 0 means not known yet. */
export function formatProgress(loaded: number, total: number): string {
  return total > 0 ? `${formatBytes(loaded)} / ${formatBytes(total)}` : formatBytes(loaded);
}

export function formatRate(perSecond: number): string {
  return Number.isFinite(perSecond) && perSecond > 0 ? `${perSecond.toFixed(perSecond < 10 ? 1 : 0)}` : '–';
}

export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '–';
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** "12.3 MB / 145 MB · 4.1 MB/s · 32 s left" */
export function formatDownload(p: DownloadProgress): string {
  const rate = p.rate > 0 ? `${formatBytes(p.rate)}/s` : '– /s';
  return `${formatBytes(p.loaded)} / ${formatBytes(p.total)} · ${rate} · ${p.loaded >= p.total ? 'done' : `${formatDuration(p.etaSeconds)} left`}`;
}

/** Layers [start, end) in words: "layer 3", "layers 1–2". */
export function formatLayers(start: number, end: number): string {
  return end - start === 1 ? `layer ${start}` : `layers ${start}–${end - 1}`;
}

/**
 * What a swarm reply's stats line says of its checks (engine/chat-api.ts FlockReplyChecks): only what was found, no
 * more: "checked" means every hop's answers matched another host's.
 */
export function checksNote(c: FlockReplyChecks): string {
  switch (c.state) {
    case 'checked':
      return `results checked against other hosts (${c.checks} check${c.checks === 1 ? '' : 's'})`;
    case 'unchecked':
      return `not checked: ${c.unchecked.map((u) => formatLayers(u.start, u.end)).join(', ')} had no second host to compare with`;
    case 'disputed':
      return 'hosts disagreed and no third could decide: unverified';
    case 'off':
      return 'results not checked (checks off)';
  }
}
