// Token embedding lookup: X[t] = dequantized row ids[t] of token_embd, for the rows this weight buffer holds
// (a vocabulary split across buffers dispatches once per buffer). CPU twin: referenceEmbed().

import type { TensorTypeName } from '../../model/quant';
import { PARAMS_WGSL } from './params';
import { dequantWgsl, rowBytes } from './weights-wgsl';

export interface EmbedVariant {
  op: 'embed';
  type: TensorTypeName;
  dim: number;
  rows: number;
  rowBase: number;
}

// Bindings: 0 W (embedding rows), 1 ids [n] u32, 2 X [n, dim], 3 params.
export function embedWgsl(v: EmbedVariant): string {
  return `
${PARAMS_WGSL}
const K: u32 = ${v.dim}u;
const RB: u32 = ${rowBytes(v.type, v.dim)}u;
const ROWS: u32 = ${v.rows}u;
const ROW_BASE: u32 = ${v.rowBase}u;
@group(0) @binding(0) var<storage, read> W: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<uniform> P: Params;
${dequantWgsl(v.type, v.dim)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let k = gid.x * 4u;
  let t = gid.y;
  if (k >= K || t >= P.n) { return; }
  let id = ids[t];
  if (id < ROW_BASE || id >= ROW_BASE + ROWS) { return; }
  let v = dq4(id - ROW_BASE, k);
  for (var j = 0u; j < 4u; j++) { if (k + j < K) { X[t * K + k + j] = v[j]; } }
}
`;
}
