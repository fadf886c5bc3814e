// The command line refuses what it cannot parse with a named error and a pointer to the help, exit status 1, before
// it opens a model or a GPU device; the help itself exits 0. Runs `bin/flock.mjs` as a user would.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function flock(...args: string[]): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['bin/flock.mjs', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe('flock arguments', () => {
  it.each([
    { args: ['generate', '--no-such-option'], says: "Unknown option '--no-such-option'" },
    { args: ['host', '--layers'], says: "Option '--layers <value>' argument missing" },
    { args: ['signal', 'stray'], says: "Unexpected argument 'stray'" },
  ])('$args: InvalidArgumentError, exit 1', ({ args, says }) => {
    const r = flock(...args);
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/^flock: InvalidArgumentError: /m);
    expect(r.err).toContain(says);
    expect(r.err).toContain('"flock --help" lists the commands and options');
    expect(r.err).not.toContain('TypeError');
  });

  it('an unknown command names itself and prints the usage; --help prints it and exits 0', () => {
    const bad = flock('nope');
    expect(bad.status).toBe(1);
    expect(bad.err).toContain('Unknown command "nope"');
    expect(bad.err).toContain('flock generate');
    const help = flock('--help');
    expect(help.status).toBe(0);
    expect(help.out).toMatch(/^Usage:/);
  });
});
