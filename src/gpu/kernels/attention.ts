// Causal attention of each query head over the KV cache, with grouped-query heads (query head h reads KV head
// h / (NH / NKV)). One workgroup per (token, head); keys are visited in chunks of 64 with an online softmax
// (running max and sum, accumulators rescaled per chunk), so any context length fits in fixed workgroup memory.
// Token t of the batch sees positions 0..pos0+t. CPU twin: the attention loop in src/model/reference.ts.

import { PARAMS_WGSL } from './params';

export interface AttentionVariant {
  op: 'attention';
  nHeads: number;
  nKvHeads: number;
  headDim: number;
}

const WG = 64;

// Bindings: 0 Q [n, nHeads*hd], 1 Kc [ctx, kvDim], 2 Vc, 3 O [n, nHeads*hd], 4 params.
export function attentionWgsl(v: AttentionVariant): string {
  return `
${PARAMS_WGSL}
const NH: u32 = ${v.nHeads}u;
const NKV: u32 = ${v.nKvHeads}u;
const HD: u32 = ${v.headDim}u;
const GROUP: u32 = ${v.nHeads / v.nKvHeads}u;
const SCALE: f32 = ${(1 / Math.sqrt(v.headDim)).toExponential(9)};
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> Kc: array<f32>;
@group(0) @binding(2) var<storage, read> Vc: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@group(0) @binding(4) var<uniform> P: Params;
var<workgroup> q: array<f32, HD>;
var<workgroup> acc: array<f32, HD>;
var<workgroup> e: array<f32, ${WG}>;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x;
  let t = wid.y;
  let kvOff = (h / GROUP) * HD;
  let len = P.pos0 + t + 1u;
  for (var d = lid; d < HD; d += ${WG}u) { q[d] = Q[t * NH * HD + h * HD + d]; acc[d] = 0.0; }
  workgroupBarrier();
  var m = -3.0e38;
  var l = 0.0;
  for (var c0 = 0u; c0 < len; c0 += ${WG}u) {
    // scores of this chunk, one key per thread
    let p = c0 + lid;
    var s = -3.0e38;
    if (p < len) {
      var dotv = 0.0;
      for (var d = 0u; d < HD; d++) { dotv += q[d] * Kc[p * NKV * HD + kvOff + d]; }
      s = dotv * SCALE;
    }
    red[lid] = s;
    workgroupBarrier();
    for (var st = ${WG / 2}u; st > 0u; st >>= 1u) {
      if (lid < st) { red[lid] = max(red[lid], red[lid + st]); }
      workgroupBarrier();
    }
    let mNew = max(m, red[0]);
    workgroupBarrier();
    var ev = 0.0;
    if (p < len) { ev = exp(s - mNew); }
    e[lid] = ev;
    red[lid] = ev;
    workgroupBarrier();
    for (var st = ${WG / 2}u; st > 0u; st >>= 1u) {
      if (lid < st) { red[lid] += red[lid + st]; }
      workgroupBarrier();
    }
    let alpha = exp(m - mNew);
    l = l * alpha + red[0];
    m = mNew;
    // weighted values: each thread owns output dims d = lid, lid + ${WG}, ...
    let cnt = min(${WG}u, len - c0);
    for (var d = lid; d < HD; d += ${WG}u) {
      var a = acc[d] * alpha;
      for (var j = 0u; j < cnt; j++) { a += e[j] * Vc[(c0 + j) * NKV * HD + kvOff + d]; }
      acc[d] = a;
    }
    workgroupBarrier();
  }
  for (var d = lid; d < HD; d += ${WG}u) { O[t * NH * HD + h * HD + d] = acc[d] / l; }
}
`;
}
