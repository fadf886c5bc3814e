// A curious host against the client's own layers, on stories260K with its public weights (the CPU reference).
// The client's first host receives the states after the client's first k layers; the attacks of inversion.ts read
// the tokens back from them. The oracle is the text's own ids. What the numbers say, and what README and the app say
// about privacy in a swarm: k = 0 hands every token to the first host; k = 1 or more stops the crudest attack only
// partly and the search not at all; the last k' layers on the client keep the next token's scores off the wire only
// for a host that reads them directly. Privacy in a swarm comes from whom you let in (a private swarm), not from these.

import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { readConfig, type ModelConfig } from '../../src/model/config';
import { openGguf } from '../../src/model/gguf';
import { loadReferenceWeights, type Weights } from '../../src/model/reference';
import { openSource } from '../../src/model/source-file';
import { createTokenizer } from '../../src/model/tokenizer';
import { STORIES } from '../helpers/gpu';
import { agreement, logitLens, nearestRow, searchInversion, statesAfter } from './inversion';

/** A user's prompt the model never wrote, and the model's own story (llama.cpp's greedy ids from BOS). */
const PROMPT = 'Tom wanted a red ball for his birthday, but his mom said he had to wait. He was sad and sat under the big tree in the garden.';

describe('inverting the hidden states a host receives (stories260K)', () => {
  let cfg: ModelConfig;
  let w: Weights;
  let ids: number[];
  const table: { k: number; nearestRow: number; search: number }[] = [];
  beforeAll(async () => {
    const file = await openGguf(openSource(STORIES));
    cfg = readConfig(file);
    w = await loadReferenceWeights(file, cfg, { start: 0, end: cfg.nLayers, head: true });
    const tok = createTokenizer(file.metadata);
    const fixture = JSON.parse(await readFile('tests/fixtures/stories260K.greedy.json', 'utf8')) as { output_ids: number[] };
    ids = [1, ...tok.encode(PROMPT), ...fixture.output_ids.slice(0, 48)];
  });

  it('the first host, with k of the client own layers before it: nearest row and search', () => {
    for (const k of [0, 1, 2, 3]) {
      const H = statesAfter(cfg, w, ids, k);
      table.push({ k, nearestRow: agreement(nearestRow(cfg, w, H), ids), search: agreement(searchInversion(cfg, w, H, k), ids) });
    }
    console.log('tokens recovered by the first host (%), k = layers the client runs first');
    console.table(table.map((r) => ({ k: r.k, 'nearest row': +(100 * r.nearestRow).toFixed(1), search: +(100 * r.search).toFixed(1) })));
    // with no own layers, the first host reads every token
    expect(table[0].nearestRow).toBe(1);
    expect(table[0].search).toBe(1);
    // the search reads (nearly) every token through the default one own layer and through two and three
    for (const r of table.slice(1)) expect(r.search).toBeGreaterThan(0.95);
    // the crudest attack weakens with depth (the claim README makes is exactly this table)
    expect(table[3].nearestRow).toBeLessThan(table[0].nearestRow);
  });

  it("the last host, with k' of the client's own layers after it: the next token through the public head", () => {
    const L = cfg.nLayers;
    const next = ids.slice(1);
    const full = logitLens(cfg, w, statesAfter(cfg, w, ids, L)).slice(0, -1); // what the model predicts
    const rows: { kLast: number; agreesWithModel: number; nextToken: number }[] = [];
    for (const kLast of [0, 1, 2]) {
      const lens = logitLens(cfg, w, statesAfter(cfg, w, ids, L - kLast)).slice(0, -1);
      rows.push({ kLast, agreesWithModel: agreement(lens, full), nextToken: agreement(lens, next) });
    }
    console.log("next token read by the last host through the public head (%), k' = layers the client runs last");
    console.table(rows.map((r) => ({ "k'": r.kLast, 'model top-1': +(100 * r.agreesWithModel).toFixed(1), 'actual next': +(100 * r.nextToken).toFixed(1) })));
    expect(rows[0].agreesWithModel).toBe(1);
    expect(rows[1].agreesWithModel).toBeLessThan(1);
  });
});
