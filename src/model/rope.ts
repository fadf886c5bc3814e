// Rotary position embedding angles, computed once on the CPU and shared by the CPU reference and the GPU kernels so
// both rotate by bit-identical cos/sin values. Angles follow llama.cpp's recurrence in f32
// (theta_{i+1} = theta_i * base^(-2/ropeDim), starting from theta_0 = pos), which is what the reference files use.

import type { ModelConfig } from './config';

/** cos/sin table: for position p and pair i (< ropeDim/2): [p * ropeDim + 2i] = cos, [p * ropeDim + 2i + 1] = sin. */
export function ropeTable(cfg: Pick<ModelConfig, 'ropeBase' | 'ropeDim'>, positions: number): Float32Array {
  const half = cfg.ropeDim / 2;
  const out = new Float32Array(positions * cfg.ropeDim);
  const scale = Math.fround(Math.pow(cfg.ropeBase, -2 / cfg.ropeDim));
  for (let p = 0; p < positions; p++) {
    let theta = Math.fround(p);
    for (let i = 0; i < half; i++) {
      out[p * cfg.ropeDim + 2 * i] = Math.cos(theta);
      out[p * cfg.ropeDim + 2 * i + 1] = Math.sin(theta);
      theta = Math.fround(theta * scale);
    }
  }
  return out;
}
