// SwiGLU gate: G[i] = silu(G[i]) * U[i] over n * ffn elements, in place in G.
// CPU twin: the feed-forward loop in src/model/reference.ts.

import { PARAMS_WGSL } from './params';

export interface SwigluVariant {
  op: 'swiglu';
  ffn: number;
}

// Bindings: 0 G [n, ffn] (in place), 1 U [n, ffn], 2 params.
export function swigluWgsl(v: SwigluVariant): string {
  return `
${PARAMS_WGSL}
const F: u32 = ${v.ffn}u;
@group(0) @binding(0) var<storage, read_write> G: array<f32>;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<uniform> P: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * ${64 * 1024}u;
  if (i >= P.n * F) { return; }
  let g = G[i];
  G[i] = g / (1.0 + exp(-g)) * U[i];
}
`;
}
