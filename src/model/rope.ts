// Rotary position embedding angles, computed once on the CPU and shared by the CPU reference and the GPU kernels so
// both rotate by bit-identical cos/sin values. Angles follow llama.cpp's recurrence in f32: theta_0 = pos,
// theta_{i+1} = theta_i * base^(-2/ropeDim); the angle used is freqScale * theta_i / freqFactor_i (linear scaling
// and Llama 3.1's `rope_freqs` divisors). Which elements a pair rotates (adjacent or half a head apart) is the
// kernel's business, not the table's.

import type { ModelConfig } from './config';

export type RopeParams = Pick<ModelConfig, 'ropeBase' | 'ropeDim'> & Partial<Pick<ModelConfig, 'ropeFreqScale'>>;

/** cos/sin table: for position p and pair i (< ropeDim/2): [p * ropeDim + 2i] = cos, [p * ropeDim + 2i + 1] = sin. */
export function ropeTable(cfg: RopeParams, positions: number, freqFactors?: Float32Array): Float32Array {
  const half = cfg.ropeDim / 2;
  const out = new Float32Array(positions * cfg.ropeDim);
  const scale = Math.fround(Math.pow(cfg.ropeBase, -2 / cfg.ropeDim));
  const freqScale = Math.fround(cfg.ropeFreqScale ?? 1);
  for (let p = 0; p < positions; p++) {
    let theta = Math.fround(p);
    for (let i = 0; i < half; i++) {
      const ff = freqFactors ? freqFactors[i] : 1;
      const angle = Math.fround(freqScale * Math.fround(theta / ff));
      out[p * cfg.ropeDim + 2 * i] = Math.cos(angle);
      out[p * cfg.ropeDim + 2 * i + 1] = Math.sin(angle);
      theta = Math.fround(theta * scale);
    }
  }
  return out;
}
