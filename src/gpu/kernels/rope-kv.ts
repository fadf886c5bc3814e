// Rotary embedding of Q and K (pairs (2i, 2i+1), llama.cpp's "normal" RoPE used by `llama` files) and the append of
// K and V to the session's KV cache at positions pos0..pos0+n-1. cos/sin come from a table computed on the CPU
// (src/model/rope.ts) so GPU and reference rotate by identical values.
// One invocation per (token, head, pair); Q heads first, then KV heads (which also copy V).
// CPU twin: applyRope() and the cache writes in src/model/reference.ts.

import { PARAMS_WGSL } from './params';

export interface RopeKvVariant {
  op: 'rope_kv';
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  ropeDim: number;
  /** pairs (i, i + ropeDim/2) instead of (2i, 2i+1) */
  neox?: boolean;
}

// Bindings: 0 Q [n, nHeads*hd] (in place), 1 Kin [n, kvDim], 2 Vin [n, kvDim], 3 Kc [ctx, kvDim], 4 Vc, 5 table, 6 params.
export function ropeKvWgsl(v: RopeKvVariant): string {
  const half = v.headDim / 2;
  return `
${PARAMS_WGSL}
const NH: u32 = ${v.nHeads}u;
const NKV: u32 = ${v.nKvHeads}u;
const HD: u32 = ${v.headDim}u;
const HALF: u32 = ${half}u;
const ROPE_HALF: u32 = ${v.ropeDim / 2}u;
const RD: u32 = ${v.ropeDim}u;
@group(0) @binding(0) var<storage, read_write> Q: array<f32>;
@group(0) @binding(1) var<storage, read> Kin: array<f32>;
@group(0) @binding(2) var<storage, read> Vin: array<f32>;
@group(0) @binding(3) var<storage, read_write> Kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> Vc: array<f32>;
@group(0) @binding(5) var<storage, read> R: array<f32>;
@group(0) @binding(6) var<uniform> P: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x % HALF;
  let h = gid.x / HALF;
  let t = gid.y;
  if (h >= NH + NKV || t >= P.n) { return; }
  let pos = P.pos0 + t;
  var c = 1.0;
  var s = 0.0;
  if (i < ROPE_HALF) { c = R[pos * RD + 2u * i]; s = R[pos * RD + 2u * i + 1u]; }
  // element pair (ea, eb) of the head rotated by pair i's angle; dimensions past ropeDim pass through (c=1, s=0)
  ${v.neox
    ? 'var ea = i; var eb = i + HALF; if (i < ROPE_HALF) { eb = i + ROPE_HALF; } else { ea = ROPE_HALF + i; eb = ea + (HALF - ROPE_HALF); }'
    : 'let ea = 2u * i; let eb = 2u * i + 1u;'}
  if (h < NH) {
    let o = t * NH * HD + h * HD;
    let a = Q[o + ea]; let b = Q[o + eb];
    Q[o + ea] = a * c - b * s;
    Q[o + eb] = a * s + b * c;
  } else {
    let kh = h - NH;
    let o = t * NKV * HD + kh * HD;
    let dst = pos * NKV * HD + kh * HD;
    let a = Kin[o + ea]; let b = Kin[o + eb];
    Kc[dst + ea] = a * c - b * s;
    Kc[dst + eb] = a * s + b * c;
    Vc[dst + ea] = Vin[o + ea];
    Vc[dst + eb] = Vin[o + eb];
  }
}
`;
}
