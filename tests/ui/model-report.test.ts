// The picker's verdict and budget (worker/inspect.ts verdictOf, ui/model-report.ts memoryBudget and problemText), as
// tables: which fact decides the verdict when several apply, where the memory budget comes from, and that every memory
// problem is put in words naming the limit it breaks.

import { describe, expect, it } from 'vitest';
import { memoryBudget, problemText } from '../../src/ui/model-report';
import { verdictOf } from '../../src/worker/inspect';

const GiB = 2 ** 30;

describe('the verdict', () => {
  const base = { runnable: true, fitContext: 2048, context: 2048, downloadBytes: 100e6, freeStorage: 1e9 };
  const table: [string, Partial<typeof base>, string][] = [
    ['runs as asked', {}, 'fits'],
    ['fits only a shorter context', { fitContext: 1024 }, 'shorter'],
    ['fits no context', { fitContext: 0 }, 'too-big'],
    ['this build cannot run it, whatever else holds', { runnable: false, fitContext: 0, freeStorage: 0 }, 'cannot-run'],
    ['too big comes before storage', { fitContext: 0, freeStorage: 0 }, 'too-big'],
    ['the download does not fit the storage', { freeStorage: 50e6 }, 'no-space'],
    ['storage unknown: not a reason to refuse', { freeStorage: null as unknown as number }, 'fits'],
    ['nothing to download', { downloadBytes: 0, freeStorage: 0 }, 'fits'],
  ];
  for (const [label, over, want] of table) it(label, () => expect(verdictOf({ ...base, ...over })).toBe(want));
});

describe('the memory budget', () => {
  it('is the user\'s limit when set, else half of the memory the browser declares, else unknown', () => {
    expect(memoryBudget(3, 8)).toEqual({ bytes: 3e6, source: 'setting' });
    expect(memoryBudget(null, 8)).toEqual({ bytes: 4 * GiB, source: 'declared' });
    expect(memoryBudget(null, 0.5)).toEqual({ bytes: GiB / 4, source: 'declared' });
    expect(memoryBudget(null, undefined)).toBeNull();
  });

  it('names the limit each problem breaks', () => {
    expect(problemText({ kind: 'budget', need: 4.05e6, budget: 3e6 })).toBe('it needs 4.05 MB of memory and the limit is 3.00 MB');
    expect(problemText({ kind: 'buffer', what: 'kv-cache', bytes: 2 * GiB, limit: GiB, limitName: 'maxStorageBufferBindingSize' }))
      .toBe("one layer's KV cache needs a 2.15 GB buffer and this GPU allows 1.07 GB (maxStorageBufferBindingSize)");
    expect(problemText({ kind: 'buffer', what: 'weight-row', bytes: 200e6, limit: 128 * 2 ** 20, limitName: 'maxBufferSize' })).toContain('one row of a weight matrix');
  });
});
