// Hosts check their span against the pinned manifest before they announce (src/swarm/serve.ts through launchHost,
// what `flock host` runs), over a real PeerServer, real WebRTC and Dawn. A copy of stories260K whose header is the
// same but one bit of layer 3's ffn_down differs: serving a span with layer 3 is refused with ManifestMismatchError
// naming that tensor (and the host never shows up in discovery); serving a span without it works, 'verified', and a
// client decodes llama.cpp's greedy ids through it. A client whose own Head tensor differs is refused the same way.
// The same copy under another header (no manifest pinned) serves as 'unpinned'. `flock host` prints the error and
// exits 1, and prints the weights line when it serves.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drain, generateTokens } from '../../src/engine/generate';
import { ManifestMismatchError } from '../../src/model/errors';
import { STORIES } from '../helpers/gpu';
import { writePerturbedCopy, writeRenamedCopy } from '../helpers/perturb-gguf';
import { ANNOUNCE_MS, referenceIds, Swarm, TEST_POW_BITS } from './harness';

const PERTURBED = 'blk.3.ffn_down.weight';
const N = 8;

describe('hosts check their span against the pinned manifest', () => {
  let swarm: Swarm;
  let tmp = '';
  let perturbed = '';
  let renamed = '';
  let badHead = '';
  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'flock-manifest-swarm-'));
    perturbed = path.join(tmp, 'stories-layer3.gguf');
    renamed = path.join(tmp, 'stories-renamed.gguf');
    badHead = path.join(tmp, 'stories-head.gguf');
    await writePerturbedCopy(STORIES, perturbed, PERTURBED);
    await writeRenamedCopy(perturbed, renamed);
    await writePerturbedCopy(STORIES, badHead, 'output.weight');
    swarm = await Swarm.start('test-manifest');
  });
  afterAll(async () => {
    await swarm?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  it('refuses a span with the altered layer, naming the tensor; serves one without it, verified', async () => {
    const err = await swarm.host({ start: 2, end: 5 }, undefined, {}, { model: perturbed }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestMismatchError);
    expect((err as ManifestMismatchError).tensors).toEqual([PERTURBED]);
    expect((err as Error).message).toContain(PERTURBED);

    const t0 = performance.now();
    const front = await swarm.host({ start: 0, end: 2 }, undefined, {}, { model: perturbed });
    console.log(`host 0:2 of stories260K started, weights checked, in ${(performance.now() - t0).toFixed(0)} ms`);
    expect(front.weights).toBe('verified');
    const back = await swarm.host({ start: 2, end: 5 });
    expect(back.weights).toBe('verified');

    const ref = await referenceIds();
    const c = await swarm.client();
    const res = await drain(generateTokens(c.model, { inputIds: [1], maxTokens: N, temperature: 0, ignoreEos: true }));
    expect(res.outputIds).toEqual(ref.slice(0, N));
    expect(c.model.route.map((h) => [h.start, h.end])).toEqual([[0, 2], [2, 5]]);
    // the refused host never announced: the only records are the two that serve
    const spans = c.discovery.records().filter((r) => r.modelHash === c.modelHash).map((r) => `${r.span.start}:${r.span.end}`);
    expect(spans.sort()).toEqual(['0:2', '2:5']);
  });

  it('a client whose Head tensor differs is refused before it joins a route', async () => {
    const err = await swarm.client({}, { model: badHead, waitForRouteMs: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestMismatchError);
    expect((err as ManifestMismatchError).tensors).toEqual(['output.weight']);
  });

  it('a model with no pinned manifest serves as unpinned', async () => {
    const h = await swarm.host({ start: 3, end: 4 }, undefined, {}, { model: renamed });
    expect(h.weights).toBe('unpinned');
  });

  it('`flock host` prints the refusal and exits 1; when it serves, it prints what its weights are', async () => {
    const run = (model: string, layers: string, until?: RegExp) => new Promise<{ code: number | null; err: string }>((resolve) => {
      const child = spawn(process.execPath, [
        'bin/flock.mjs', 'host', '--model', model, '--swarm', swarm.name, '--signal', swarm.server.url, '--layers', layers,
        '--pow-bits', String(TEST_POW_BITS), '--announce-ms', String(ANNOUNCE_MS), '--max-context', '64',
      ], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString('utf8');
        if (until?.test(err)) child.kill('SIGTERM');
      });
      child.once('exit', (code) => resolve({ code, err }));
    });
    const refused = await run(perturbed, '3:4');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^flock: ManifestMismatchError: .*blk\.3\.ffn_down\.weight/m);
    const served = await run(perturbed, '4:5', /^weights: /m);
    expect(served.err).toMatch(/^flock host \S+: layers 4:5 of 5/m);
    expect(served.err).toMatch(/^weights: verified /m);
  });
});
