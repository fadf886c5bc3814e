// Top-k selection on the GPU, so a decode step reads back k (logit, id) pairs instead of the whole vocabulary.
// Each workgroup takes a chunk of 1024 inputs into workgroup memory and extracts its best k by k rounds of an
// argmax reduction (ties go to the lower id, as the CPU sampler ranks them). Run over the logits first, then again
// over the pairs it produced until one workgroup remains. Removed and padding entries become (-FLT_MAX, 0xffffffff); the Head drops those ids.
// Also here: the repetition penalty applied to the logits of recently seen ids before selection.
// CPU twins: Sampler ranking and applyPenaltyInPlace() in src/model/sampler.ts.

import { PARAMS_WGSL } from './params';

export const TOPK_CHUNK = 1024;
export const TOPK_MAX = 128;
const WG = 256;

export interface TopKVariant {
  op: 'topk';
  k: number;
  /** 'logits': input is f32 logits indexed by id; 'pairs': input is (f32 bits, id) pairs from an earlier pass */
  source: 'logits' | 'pairs';
}

// Bindings: 0 input, 1 output pairs [numWorkgroups * k * 2] u32, 2 params (P.a = input count).
export function topKWgsl(v: TopKVariant): string {
  const load = v.source === 'logits'
    ? 'vals[i] = bitcast<f32>(IN[g]); ids[i] = g;'
    : 'vals[i] = bitcast<f32>(IN[2u * g]); ids[i] = IN[2u * g + 1u];';
  return `
${PARAMS_WGSL}
const K: u32 = ${v.k}u;
@group(0) @binding(0) var<storage, read> IN: array<u32>;
@group(0) @binding(1) var<storage, read_write> OUT: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;
var<workgroup> vals: array<f32, ${TOPK_CHUNK}>;
var<workgroup> ids: array<u32, ${TOPK_CHUNK}>;
var<workgroup> rv: array<f32, ${WG}>;
var<workgroup> ri: array<u32, ${WG}>;
const NEG: f32 = -3.4028234e38;
fn better(av: f32, ai: u32, bv: f32, bi: u32) -> bool { return av > bv || (av == bv && ai < bi); }
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  for (var i = lid; i < ${TOPK_CHUNK}u; i += ${WG}u) {
    let g = wid.x * ${TOPK_CHUNK}u + i;
    if (g < P.a) { ${load} } else { vals[i] = NEG; ids[i] = 0xffffffffu; }
    if (vals[i] != vals[i]) { vals[i] = NEG; }
  }
  workgroupBarrier();
  for (var r = 0u; r < K; r++) {
    var bv = NEG;
    var bi = 0xffffffffu;
    var bl = 0u;
    for (var i = lid; i < ${TOPK_CHUNK}u; i += ${WG}u) {
      if (better(vals[i], ids[i], bv, bi)) { bv = vals[i]; bi = ids[i]; bl = i; }
    }
    rv[lid] = bv;
    ri[lid] = bl;
    workgroupBarrier();
    for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
      if (lid < s) {
        let o = ri[lid + s];
        let m = ri[lid];
        if (better(rv[lid + s], ids[o], rv[lid], ids[m])) { rv[lid] = rv[lid + s]; ri[lid] = o; }
      }
      workgroupBarrier();
    }
    if (lid == 0u) {
      let w = ri[0];
      OUT[2u * (wid.x * K + r)] = bitcast<u32>(vals[w]);
      OUT[2u * (wid.x * K + r) + 1u] = ids[w];
      vals[w] = NEG;
      ids[w] = 0xffffffffu;
    }
    workgroupBarrier();
  }
}
`;
}

export interface PenaltyVariant {
  op: 'penalty';
}

// Bindings: 0 logits (in place), 1 ids [P.b] u32, 2 params (P.b = count, P.f = penalty).
export function penaltyWgsl(_v: PenaltyVariant): string {
  return `
${PARAMS_WGSL}
@group(0) @binding(0) var<storage, read_write> L: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<uniform> P: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x >= P.b) { return; }
  let id = ids[gid.x];
  let x = L[id];
  L[id] = select(x * P.f, x / P.f, x > 0.0);
}
`;
}
