// Unit tests (Node) of the page's text formatters: sizes, durations and the download line.

import { describe, expect, it } from 'vitest';
import { checksNote, formatBytes, formatDownload, formatDuration, formatProgress } from '../../src/ui/format';

describe('format', () => {
  it('formats sizes, durations and download progress', () => {
    expect(formatBytes(999)).toBe('999 B');
    expect(formatBytes(1_185_376)).toBe('1.19 MB');
    expect(formatProgress(500_000, 1_185_376)).toBe('500.0 kB / 1.19 MB');
    expect(formatDuration(42.2)).toBe('43 s');
    expect(formatDuration(125)).toBe('2 min 5 s');
    expect(formatDuration(Infinity)).toBe('–');
    expect(formatDownload({ loaded: 50e6, total: 145e6, rate: 5e6, etaSeconds: 19, fetched: 50e6 })).toBe('50.0 MB / 145.0 MB · 5.00 MB/s · 19 s left');
    expect(formatDownload({ loaded: 145e6, total: 145e6, rate: 5e6, etaSeconds: 0, fetched: 145e6 })).toMatch(/done$/);
  });

  it('says what the checks of a swarm reply found, and no more', () => {
    expect(checksNote({ state: 'checked', checks: 3, unchecked: [] })).toBe('results checked against other hosts (3 checks)');
    expect(checksNote({ state: 'checked', checks: 1, unchecked: [] })).toBe('results checked against other hosts (1 check)');
    expect(checksNote({ state: 'unchecked', checks: 2, unchecked: [{ start: 3, end: 4 }, { start: 6, end: 9 }] }))
      .toBe('not checked: layer 3, layers 6–8 had no second host to compare with');
    expect(checksNote({ state: 'disputed', checks: 4, unchecked: [] })).toContain('unverified');
    expect(checksNote({ state: 'off', checks: 0, unchecked: [] })).toBe('results not checked (checks off)');
  });
});
