// Several matrix-vector products over one input in one dispatch: Q, K and V of a layer, or its gate and up, each
// Y_i[t, r] = sum_k x[t, k] * W_i[r, k] with its own weight buffer, weight type and output buffer. A workgroup's rows
// all belong to one matrix (each matrix's rows start on a workgroup boundary), so every workgroup runs one decoder and
// the arithmetic per row is the single matvec's (kernels/matmul.ts) in the same order: outputs are bit-identical to
// one dispatch per matrix, with the input (and its RMSNorm, when fused) read once per workgroup as there.
// Decoders come from weights-wgsl.ts unchanged; each matrix gets its own copy with its names suffixed (W_i, RB_i,
// dq4_i and the helpers), since they read the weight binding by name.
// CPU twin: matVec() in src/model/reference.ts over dequantize(), once per matrix.

import type { TensorTypeName } from '../../model/quant';
import { inputWgsl, MATVEC_WG, normPrologue } from './matmul';
import { PARAMS_WGSL } from './params';
import { dequantWgsl, rowBytes } from './weights-wgsl';

export interface MatvecMultiVariant {
  op: 'matvec_multi';
  /** row length (input features), shared by every matrix */
  K: number;
  /** the matrices in dispatch order: weight type, rows, and whether a per-row bias is added */
  mats: { type: TensorTypeName; rows: number; bias?: boolean }[];
  /** threads sharing one row (matvecThreadsPerRow) */
  threads: number;
  /** X is the raw residual, RMS-normalised per token inside the kernel (the matvec 'norm' input) */
  input?: { kind: 'norm'; eps: number };
}

/** Workgroups each matrix takes (its rows over the rows per workgroup), in order. */
export function matvecMultiGroups(v: MatvecMultiVariant): number[] {
  const R = MATVEC_WG / v.threads;
  return v.mats.map((m) => Math.ceil(m.rows / R));
}

/** Storage buffers a variant binds: X, the norm weight, and per matrix its weights, output and bias. */
export function matvecMultiStorageBuffers(mats: MatvecMultiVariant['mats'], norm: boolean): number {
  return 1 + (norm ? 1 : 0) + mats.reduce((s, m) => s + (m.bias ? 3 : 2), 0);
}

/** A decoder's WGSL with the weight binding, its row bytes and every function and module constant suffixed `_i`. */
function decoderFor(type: TensorTypeName, K: number, i: number): string {
  const code = dequantWgsl(type, K);
  const names = new Set(['W', 'RB', ...[...code.matchAll(/\bfn\s+([A-Za-z_]\w*)/g)].map((m) => m[1])]);
  for (const m of code.matchAll(/^(?:const|var(?:<[^>]*>)?)\s+([A-Za-z_]\w*)/gm)) names.add(m[1]);
  return code.replace(/\b[A-Za-z_]\w*\b/g, (w) => (names.has(w) ? `${w}_${i}` : w));
}

// Bindings: 0 X [n, K], 1 params {n}, 2 Wn [K] (with 'norm'), then per matrix i: W_i, Y_i [n, rows_i], B_i [rows_i].
export function matvecMultiWgsl(v: MatvecMultiVariant): string {
  const T = v.threads;
  const R = MATVEC_WG / T;
  const groups = matvecMultiGroups(v);
  let b = v.input ? 3 : 2;
  const decls: string[] = [];
  const branches: string[] = [];
  const stores: string[] = [];
  let g0 = 0;
  v.mats.forEach((m, i) => {
    decls.push(`@group(0) @binding(${b++}) var<storage, read> W_${i}: array<u32>;`);
    decls.push(`@group(0) @binding(${b++}) var<storage, read_write> Y_${i}: array<f32>;`);
    if (m.bias) decls.push(`@group(0) @binding(${b++}) var<storage, read> B_${i}: array<f32>;`);
    decls.push(`const RB_${i}: u32 = ${rowBytes(m.type, v.K)}u;`, decoderFor(m.type, v.K, i));
    const g1 = g0 + groups[i];
    branches.push(`${i === 0 ? '' : ' else '}if (wg < ${g1}u) {
    m = ${i}u;
    row = (wg - ${g0}u) * ${R}u + lid / ${T}u;
    if (row < ${m.rows}u) {
      for (var k = lane * 4u; k < K; k += ${T * 4}u) { acc += dot(dq4_${i}(row, k), x4(t, k)); }
    }
  }`);
    stores.push(`if (m == ${i}u && row < ${m.rows}u) { Y_${i}[t * ${m.rows}u + row] = part[lid]${m.bias ? ` + B_${i}[row]` : ''}; }`);
    g0 = g1;
  });
  return `
const K: u32 = ${v.K}u;
${PARAMS_WGSL}
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<uniform> P: Params;
${inputWgsl(v.K, v.input, 2)}
${decls.join('\n')}
var<workgroup> part: array<f32, ${MATVEC_WG}>;
@compute @workgroup_size(${MATVEC_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  // ${R} rows per workgroup, ${T} threads per row; workgroups ${groups.join(' + ')} for the ${v.mats.length} matrices
  let lane = lid % ${T}u;
  let wg = wid.x + wid.y * nwg.x;
  let t = wid.z;
  if (t >= P.n || wg >= ${g0}u) { return; }${v.input ? normPrologue() : ''}
  var acc = 0.0;
  var m = 0u;
  var row = 0u;
  ${branches.join('')}
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${T >> 1}u; s > 0u; s >>= 1u) {
    if (lane < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  if (lane == 0u) {
    ${stores.join('\n    ')}
  }
}
`;
}
