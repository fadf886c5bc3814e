// Matrix products against weights in their GGUF encoding: Y[t, ROW_BASE + r] (+)= sum_k X[t, k] * W[r, k].
// Two shapes: `matvec` (decode, few tokens: one workgroup per output row, threads split the row and reduce) and
// `tiled` (prefill: 16 tokens x 64 rows per workgroup through workgroup memory, each weight read once per 16 tokens).
// ROW_BASE lets a tensor split across several buffers (larger than one binding) write into one output.
// CPU twin: matVec() in src/model/reference.ts over dequantize().

import type { TensorTypeName } from '../../model/quant';
import { dequantWgsl, rowBytes } from './weights-wgsl';
import { PARAMS_WGSL } from './params';

export interface MatmulVariant {
  op: 'matvec' | 'tiled';
  type: TensorTypeName;
  /** row length (input features) */
  K: number;
  /** rows in this weight buffer */
  rows: number;
  /** output row offset of this buffer's first row */
  rowBase: number;
  /** output row stride (all rows of the whole tensor) */
  outStride: number;
  /** add into Y instead of overwriting it (fuses the residual add) */
  accumulate: boolean;
  /** matvec: threads sharing one row (matvecThreadsPerRow); ignored by tiled */
  threads?: number;
  /**
   * matvec only: what X holds. 'norm': the raw residual, RMS-normalised per token inside the kernel (eps, weight Wn),
   * exactly as the rmsnorm kernel does it; 'glu': the gate G, with U bound too, the input being silu(G) * U as the
   * swiglu kernel computes it. Both save a dispatch and a round of the input through memory.
   */
  input?: { kind: 'norm'; eps: number } | { kind: 'glu' };
  /** add a per-row bias B[ROW_BASE + row] (binding 4) */
  bias?: boolean;
}

export const MATVEC_WG = 64;

/**
 * Threads that share one row in the matvec kernel: as many as leave each at least `minSteps` vec4 steps, at most the
 * whole workgroup. The device decides minSteps (device.ts): on SwiftShader each workgroup and each barrier has a fixed
 * cost, so few threads with long loops win (a 4096x1024 Q8_0 matvec took 198 ms with 4 steps per thread and 77 ms
 * with 16, measured there); a real GPU needs many threads in flight to reach its memory bandwidth.
 */
export function matvecThreadsPerRow(K: number, minSteps = 16): number {
  let t = 1;
  while (t < MATVEC_WG && t * 2 * 4 * minSteps <= K) t *= 2;
  return t;
}
export const TILE_T = 16;
export const TILE_R = 64;
const KC = 32;

/** Norm prologue of a fused matvec: the rmsnorm kernel's reduction over token t's row, same order, same result. */
export function normPrologue(): string {
  return `
  var ss = 0.0;
  for (var i = lid; i < K; i += ${MATVEC_WG}u) { let x = X[t * K + i]; ss += x * x; }
  part[lid] = ss;
  workgroupBarrier();
  for (var s = ${MATVEC_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  INV = 1.0 / sqrt(part[0] / f32(K) + EPS);
  workgroupBarrier(); // part is reused by the row reduction below`;
}

/**
 * The matvec input: the binding of a fused input's extra buffer (at `binding`) and x4(t, k), elements k..k+3 of token
 * t's input as the separate kernels would have stored it: X itself, rmsnorm(X) (weight Wn, INV from normPrologue), or
 * silu(G) * U (X holding G).
 */
export function inputWgsl(K: number, input: MatmulVariant['input'], binding: number): string {
  const decl = !input ? '' : input.kind === 'norm'
    ? `@group(0) @binding(${binding}) var<storage, read> Wn: array<f32>;\nconst EPS: f32 = ${input.eps.toExponential(9)};\nvar<private> INV: f32;`
    : `@group(0) @binding(${binding}) var<storage, read> U: array<f32>;`;
  // one input element at row offset b + j, column k + j, as the separate rmsnorm / swiglu kernels would have stored it
  const elem = (b: string, k: string): string => !input ? `X[${b}]` : input.kind === 'norm'
    ? `X[${b}] * INV * Wn[${k}]`
    : `X[${b}] / (1.0 + exp(-X[${b}])) * U[${b}]`;
  return `${decl}
fn x4(t: u32, k: u32) -> vec4f {
  let b = t * K + k;
  ${K % 4 === 0
    ? `return vec4f(${elem('b', 'k')}, ${elem('b + 1u', 'k + 1u')}, ${elem('b + 2u', 'k + 2u')}, ${elem('b + 3u', 'k + 3u')});`
    : `var r = vec4f(0.0); for (var j = 0u; j < 4u; j++) { if (k + j < K) { r[j] = ${elem('b + j', 'k + j')}; } } return r;`}
}`;
}

// Bindings: 0 W (weights), 1 X [n, K], 2 Y [n, outStride], 3 params {n}, then 4 bias [outStride] (with `bias`), then
// the fused input's extra buffer: Wn [K] ('norm') or U [n, K] ('glu').
export function matmulWgsl(v: MatmulVariant): string {
  if (v.input && v.op !== 'matvec') throw new Error(`fused input '${v.input.kind}' is a matvec variant only`);
  const head = `
const K: u32 = ${v.K}u;
const RB: u32 = ${rowBytes(v.type, v.K)}u;
const ROWS: u32 = ${v.rows}u;
const ROW_BASE: u32 = ${v.rowBase}u;
const OUT: u32 = ${v.outStride}u;
${PARAMS_WGSL}
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
${v.bias ? '@group(0) @binding(4) var<storage, read> B: array<f32>;' : ''}
${dequantWgsl(v.type, v.K)}
${inputWgsl(v.K, v.input, v.bias ? 5 : 4)}
fn store(t: u32, row: u32, v0: f32) {
  let i = t * OUT + ROW_BASE + row;
  let val = v0${v.bias ? ' + B[ROW_BASE + row]' : ''};
  ${v.accumulate ? 'Y[i] = Y[i] + val;' : 'Y[i] = val;'}
}
`;
  if (v.op === 'matvec') {
    const T = v.threads ?? matvecThreadsPerRow(v.K);
    const R = MATVEC_WG / T;
    return head + `
var<workgroup> part: array<f32, ${MATVEC_WG}>;
@compute @workgroup_size(${MATVEC_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  // ${R} rows per workgroup, ${T} threads per row
  let lane = lid % ${T}u;
  let row = (wid.x + wid.y * nwg.x) * ${R}u + lid / ${T}u;
  let t = wid.z;
  if (t >= P.n) { return; }${v.input?.kind === 'norm' ? normPrologue() : ''}
  var acc = 0.0;
  if (row < ROWS) {
    for (var k = lane * 4u; k < K; k += ${T * 4}u) {
      acc += dot(dq4(row, k), x4(t, k));
    }
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${T >> 1}u; s > 0u; s >>= 1u) {
    if (lane < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  if (lane == 0u && row < ROWS) { store(t, row, part[lid]); }
}
`;
  }
  const WS = KC + 1; // padded stride: rows of the weight tile fall in different memory banks
  return head + `
var<workgroup> xs: array<f32, ${TILE_T * KC}>;
var<workgroup> ws: array<f32, ${TILE_R * WS}>;
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r0 = wid.x * ${TILE_R}u;
  let t0 = wid.y * ${TILE_T}u;
  let n = P.n;
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var kc = 0u; kc < K; kc += ${KC}u) {
    // weight tile: ${TILE_R} rows x ${KC} columns, decoded 4 at a time
    for (var i = lid; i < ${(TILE_R * KC) / 4}u; i += 256u) {
      let r = i / ${KC / 4}u;
      let k4 = (i % ${KC / 4}u) * 4u;
      var w = vec4f(0.0);
      if (r0 + r < ROWS && kc + k4 < K) { w = dq4(r0 + r, kc + k4); }
      for (var j = 0u; j < 4u; j++) { ws[r * ${WS}u + k4 + j] = w[j]; }
    }
    // activation tile: ${TILE_T} tokens x ${KC} columns
    for (var i = lid; i < ${TILE_T * KC}u; i += 256u) {
      let t = i / ${KC}u;
      let k = i % ${KC}u;
      var x = 0.0;
      if (t0 + t < n && kc + k < K) { x = X[(t0 + t) * K + kc + k]; }
      xs[i] = x;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${KC}u; kk++) {
      let xv = xs[lid3.y * ${KC}u + kk];
      for (var j = 0u; j < 4u; j++) { acc[j] += xv * ws[(lid3.x + 16u * j) * ${WS}u + kk]; }
    }
    workgroupBarrier();
  }
  let t = t0 + lid3.y;
  for (var j = 0u; j < 4u; j++) {
    let row = r0 + lid3.x + 16u * j;
    if (row < ROWS && t < n) { store(t, row, acc[j]); }
  }
}
`;
}
