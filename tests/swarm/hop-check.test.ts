// The pure parts of checked hops (src/swarm/hop-check.ts, witness.ts): rows of kept blocks against the same rows of
// one flat array (the oracle: blocks are only a flat array cut where steps ended), the divergence against its
// definition computed in float64 per row, and where firstMismatch points: the first row moved by more than the
// tolerance, never a row moved by f16 rounding. No GPU, no network.

import { describe, expect, it } from 'vitest';
import { firstMismatch, HOP_TOLERANCE, roundF16, rowDivergence, validatePolicy, DEFAULT_CHECK_POLICY } from '../../src/swarm/hop-check';
import { cutRows, rowsOf } from '../../src/swarm/witness';
import { InvalidArgumentError } from '../../src/model/errors';
import { rng } from '../helpers/rng';

const DIM = 8;

function randomRows(rand: () => number, rows: number): Float32Array {
  return Float32Array.from({ length: rows * DIM }, () => (rand() - 0.5) * 20);
}

/** `flat` cut into blocks of random whole rows. */
function blocksOf(rand: () => number, flat: Float32Array): Float32Array[] {
  const out: Float32Array[] = [];
  const rows = flat.length / DIM;
  for (let r = 0; r < rows; ) {
    const n = Math.min(rows - r, 1 + Math.floor(rand() * 5));
    out.push(flat.slice(r * DIM, (r + n) * DIM));
    r += n;
  }
  return out;
}

describe('kept rows', () => {
  it('rowsOf and cutRows over blocks give the flat array\'s rows', () => {
    const rand = rng(7);
    for (let trial = 0; trial < 50; trial++) {
      const rows = 1 + Math.floor(rand() * 30);
      const flat = randomRows(rand, rows);
      const blocks = blocksOf(rand, flat);
      const a = Math.floor(rand() * rows);
      const b = a + Math.floor(rand() * (rows - a + 1));
      expect(rowsOf(blocks, a, b, DIM)).toEqual(flat.slice(a * DIM, b * DIM));
      const cut = cutRows(blocks, b, DIM);
      expect(rowsOf(cut, 0, b, DIM)).toEqual(flat.slice(0, b * DIM));
      expect(cut.reduce((t, x) => t + x.length, 0)).toBe(b * DIM);
    }
  });

  it('asking for rows past what was kept is a named error', () => {
    expect(() => rowsOf([new Float32Array(2 * DIM)], 0, 3, DIM)).toThrow(InvalidArgumentError);
  });
});

describe('divergence', () => {
  it('is max |a - b| / (max |a| + 1e-6) per row, computed in float64', () => {
    const rand = rng(11);
    const a = randomRows(rand, 6);
    const b = a.map((v) => v + (rand() - 0.5) * 0.01);
    const d = rowDivergence(a, b, DIM);
    for (let r = 0; r < 6; r++) {
      const row = (x: Float32Array) => Array.from(x.subarray(r * DIM, (r + 1) * DIM));
      const diff = Math.max(...row(a).map((v, j) => Math.abs(v - row(b)[j])));
      const mag = Math.max(...row(a).map(Math.abs));
      expect(d[r]).toBeCloseTo(diff / (mag + 1e-6), 12);
    }
  });

  it('firstMismatch: f16 rounding is no mismatch; the first row scaled by 1.05 is', () => {
    const rand = rng(3);
    for (let trial = 0; trial < 20; trial++) {
      const rows = 2 + Math.floor(rand() * 20);
      const a = randomRows(rand, rows);
      expect(firstMismatch(a, roundF16(a), DIM)).toBe(-1);
      const at = Math.floor(rand() * rows);
      const b = a.slice();
      for (let r = at; r < rows; r++) for (let j = 0; j < DIM; j++) b[r * DIM + j] *= 1.05;
      expect(firstMismatch(a, b, DIM)).toBe(at);
    }
  });

  it('NaN is a mismatch; answers of different shapes are refused', () => {
    const a = new Float32Array(2 * DIM).fill(1);
    const b = a.slice();
    b[DIM + 3] = Number.NaN;
    expect(firstMismatch(a, b, DIM)).toBe(1);
    expect(() => rowDivergence(a, new Float32Array(DIM), DIM)).toThrow(InvalidArgumentError);
  });

  it('policies outside their ranges are refused', () => {
    expect(validatePolicy(DEFAULT_CHECK_POLICY)).toBe(DEFAULT_CHECK_POLICY);
    expect(() => validatePolicy({ ...DEFAULT_CHECK_POLICY, rate: 1.5 })).toThrow(InvalidArgumentError);
    expect(() => validatePolicy({ ...DEFAULT_CHECK_POLICY, tolerance: 0 })).toThrow(InvalidArgumentError);
    expect(HOP_TOLERANCE).toBeGreaterThan(0);
  });
});
