// RMSNorm over rows: Y[t] = X[t] / sqrt(mean(X[t]^2) + eps) * w. One workgroup per row (token).
// ROW_FROM_PARAM reads only row P.a (the Head normalises just the last token before the output head).
// CPU twin: rmsNorm() in src/model/reference.ts.

import { PARAMS_WGSL } from './params';

export interface RmsNormVariant {
  op: 'rmsnorm';
  dim: number;
  eps: number;
  /** normalise only row P.a of X into row 0 of Y */
  singleRow: boolean;
}

const WG = 64;

// Bindings: 0 X [n, dim], 1 w [dim], 2 Y [n, dim], 3 params.
export function rmsNormWgsl(v: RmsNormVariant): string {
  return `
${PARAMS_WGSL}
const D: u32 = ${v.dim}u;
const EPS: f32 = ${v.eps.toExponential(9)};
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Wn: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  if (${v.singleRow ? 'wid.x > 0u' : 'wid.x >= P.n'}) { return; }
  let src = ${v.singleRow ? 'P.a' : 'wid.x'} * D;
  let dst = ${v.singleRow ? '0u' : 'wid.x * D'};
  var ss = 0.0;
  for (var i = lid; i < D; i += ${WG}u) { let x = X[src + i]; ss += x * x; }
  part[lid] = ss;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(part[0] / f32(D) + EPS);
  for (var i = lid; i < D; i += ${WG}u) { Y[dst + i] = X[src + i] * inv * Wn[i]; }
}
`;
}
