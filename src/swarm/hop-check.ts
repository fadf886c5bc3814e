// What a checked hop compares, and when a client checks: the divergence of two hosts' outputs for the same input
// (per position: the largest element difference relative to the row's largest magnitude), the tolerance below
// which two answers count as the same, the policy that picks the steps to check, and the counts a client reports.
// Pure functions and plain data; the witnesses that produce the second answer are witness.ts's.
//
// Why relative to the row's largest magnitude: hidden states of one position share a scale (the residual stream
// grows with depth; stories260K's rows reach |x| of 5-30), so one number per row is fair to every layer, and an
// element near zero cannot blow the ratio up. A host that scales one layer's output by 1.05 moves the row by about
// 5 % of its magnitude; honest hosts differ by rounding only.

import { InvalidArgumentError } from '../model/errors';
import { f16ToF32, f32ToF16 } from './f16';

/**
 * Two answers whose divergence is above this differ. Measured (tests/swarm/hop-tolerance.test.ts: stories260K, each
 * span of a 0:2 / 2:4 / 4:5 split over 40 positions of llama.cpp's greedy reply, Dawn on SwiftShader;
 * `npx vitest run tests/swarm/hop-tolerance.test.ts` prints them), the largest divergence between honest answers:
 * decode steps against one prefill chunk on the same GPU (other kernels) 1.3e-6, the GPU against the CPU reference
 * forward pass (another implementation's rounding, standing in for another vendor's GPU) 1.2e-6, f16 frames both
 * ways 1.8e-4 (the result's own f16 rounding); and the smallest of a host scaling one layer's output by 1.05:
 * 2.0e-2 (the scaled layer first in a two-layer span, diluted by the layer after it; 5.0e-2 when it is the span's
 * last); a session over part of a host's span (a client's own layers cut into it) answers bit for bit as a stage of
 * just those layers. 5e-3 sits 28x above f16 rounding and 4x below the weakest x1.05 lie. Not measured here: two different real
 * GPUs (f32 rounding of the same order as GPU against CPU is expected; quantized weights read by our own kernels
 * round the same way on every device).
 */
export const HOP_TOLERANCE = 5e-3;

/** A row of zeros compared with a row of zeros is equal; eps keeps the ratio finite. */
const EPS = 1e-6;

/** Per row (position) of two [n, dim] answers: max |a - b| / (max |a| + eps). */
export function rowDivergence(a: Float32Array, b: Float32Array, dim: number): Float64Array {
  if (a.length !== b.length || a.length % dim !== 0) {
    throw new InvalidArgumentError(`Answers of ${a.length} and ${b.length} values cannot be compared as rows of ${dim}.`);
  }
  const n = a.length / dim;
  const out = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let diff = 0;
    let mag = 0;
    for (let j = r * dim; j < (r + 1) * dim; j++) {
      diff = Math.max(diff, Math.abs(a[j] - b[j]));
      mag = Math.max(mag, Math.abs(a[j]));
    }
    // NaN anywhere (a host never sends it, the protocol refuses it; but be safe) counts as a difference
    out[r] = Number.isNaN(diff) ? Infinity : diff / (mag + EPS);
  }
  return out;
}

/** The first row at which two answers differ by more than `tol`, or -1 when they agree everywhere. */
export function firstMismatch(a: Float32Array, b: Float32Array, dim: number, tol = HOP_TOLERANCE): number {
  const d = rowDivergence(a, b, dim);
  for (let r = 0; r < d.length; r++) if (!(d[r] <= tol)) return r;
  return -1;
}

/** Round every value to f16 and back (what an f16 frame does to hidden states). */
export function roundF16(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f16ToF32(f32ToF16(x[i]));
  return out;
}

/**
 * How often a client checks. A hop's first step on a route is always checked (a host that lies from the start is
 * caught at once); after that each step of each hop is checked with probability `rate`, drawn from
 * crypto.getRandomValues, so a host cannot tell which steps will be checked. A check compares every position the
 * hop served since its last check (the witness catches up on them), so a lie on an unchecked step is caught by the
 * next check whichever step that is. `atEnd` checks what is left unchecked when a reply ends, before it is final.
 */
export interface CheckPolicy {
  rate: number;
  atEnd: boolean;
  /** divergence above which two answers differ (HOP_TOLERANCE) */
  tolerance: number;
}

/**
 * The default rate: 0.1, with the end-of-reply check. Measured by `npm run bench:checks -- --runs 20` (stories260K,
 * 32 greedy tokens, the client's own first and last layers and two hops [1, 2) and [2, 4), two hosts per span so every
 * hop has a witness; loopback WebRTC, every host in one process on one SwiftShader device, a shared 2-core machine):
 *
 *   honest swarm      | off  | 0.05 + end | 0.1 + end | 0.25 + end | 1 + end | checked only
 *   decode ms/token   | 18.9 | 30.1       | 31.4      | 32.5       | 26.9    | 28.2
 *   wire bytes/token  | 1184 | 2223       | 2236      | 2248       | 2368    | 2368
 *
 *   a host lying on every step but its first (type (d)), end check off, 20 replies per rate:
 *   rate                                | 0     | 0.05  | 0.1   | 0.25  | 1
 *   caught before the reply ended       | 0/15  | 12/17 | 17/17 | 18/18 | 20/20
 *   tokens handed out when caught, mean | –     | 12.0  | 10.5  | 5.6   | 1.0
 *   tokens withdrawn, mean              | –     | 11.0  | 7.9   | 3.3   | 0.0
 *   (with only the end-of-reply check: 20/20 caught, all 31 streamed tokens withdrawn)
 *
 * With the end-of-reply check every position is checked once before a reply is final, whatever the rate: the bytes
 * and the witnesses' work are the same at 0.05 to 0.25 (about twice the bytes of no checks), and on this loopback
 * setup, where a witness costs compute on the same device and almost no network, so is the time. What the rate
 * decides is how far a lie runs before it is caught, against how many steps wait for a witness's round trip before
 * their token (a check runs inside its step): 0.05 let 5 liars in 17 run to the end of the reply, 0.1 caught every
 * one after about 10 tokens and withdrew 8, once per liar (it is banned). Rates above 0.1 withdraw fewer tokens but
 * put a witness round trip on more steps of every reply, honest or not; on a real network that round trip, not
 * measured here, is what a check costs. Rate 1 (or checkedOnly) catches at once and pays it on every token.
 */
export const DEFAULT_CHECK_POLICY: CheckPolicy = { rate: 0.1, atEnd: true, tolerance: HOP_TOLERANCE };

/** Rate 0 without the end-of-reply check turns checks off: not even a hop's first step is checked, nothing is kept. */
export function checksOff(p: CheckPolicy): boolean {
  return p.rate === 0 && !p.atEnd;
}

export function validatePolicy(p: CheckPolicy): CheckPolicy {
  if (!(p.rate >= 0 && p.rate <= 1)) throw new InvalidArgumentError(`checks.rate must be in [0, 1], got ${p.rate}`);
  if (!(p.tolerance > 0 && Number.isFinite(p.tolerance))) throw new InvalidArgumentError(`checks.tolerance must be a positive number, got ${p.tolerance}`);
  return p;
}

/** A uniform draw in [0, 1) no peer can predict. */
export function unpredictable(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0] / 2 ** 32;
}

/** What a client's checks found (the latest sequence's; `flock generate --json` prints it as `verification`). */
export interface Verification {
  /** checks run (a witness compared with a hop, or a replacement's replay with the answers of the host it replaced) */
  checks: number;
  /** checks whose answers differed */
  mismatches: number;
  /** peers banned because a third opinion sided against them */
  banned: string[];
  /** times generation went back to the last checked position */
  rollbacks: number;
  /** mismatches no third opinion could decide: those positions stand as they were, unverified */
  unverified: number;
  /** times a hop's check found no witness (counted once until its next check runs; that check covers what waited) */
  deferred: number;
  /** hidden-state bytes sent and received for checks (witnesses and third opinions), both ways */
  bytes: number;
}

export function emptyVerification(): Verification {
  return { checks: 0, mismatches: 0, banned: [], rollbacks: 0, unverified: 0, deferred: 0, bytes: 0 };
}
