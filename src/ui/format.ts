// Small text formatters for the page (byte counts, rates). Pure functions, no DOM.

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
