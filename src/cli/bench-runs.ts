// What the benchmarks share: the median of their runs, and the per-token costs of repeated generations through a
// swarm client (bench:swarm's rows and checks, scripts/bench-checks.ts). Not a test: it asserts nothing.

import { drain, generateTokens, type GenerateOptions } from '../engine/generate';
import type { SwarmModel } from '../swarm/swarm-model';

/** The median of `xs` (the upper one of an even count); `xs` is left as it was. */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

/** Medians per decoded token over a swarm client's generations. */
export interface SwarmPerToken {
  /** decode time over the tokens after the first */
  ms: number;
  /** hidden-state bytes sent and received */
  bytes: number;
  /** steps checked against a witness (checked hops) */
  checks: number;
}

/**
 * Warm `model` up with 8 tokens (pipelines, links, sessions, witnesses), then generate `gen` `runs` times: the
 * medians per token of decode time, wire bytes and checks.
 */
export async function swarmPerToken(model: SwarmModel, gen: GenerateOptions & { maxTokens: number }, runs: number): Promise<SwarmPerToken> {
  await drain(generateTokens(model, { ...gen, maxTokens: 8 }));
  const tokens = gen.maxTokens;
  const ms: number[] = [];
  const bytes: number[] = [];
  const checks: number[] = [];
  for (let i = 0; i < runs; i++) {
    const before = model.wire.bytesOut + model.wire.bytesIn;
    const r = await drain(generateTokens(model, gen));
    ms.push(r.timings.decodeMs / (tokens - 1));
    bytes.push((model.wire.bytesOut + model.wire.bytesIn - before) / tokens);
    checks.push(model.verification.checks / tokens); // the counts of the generation's own sequence
  }
  return { ms: median(ms), bytes: median(bytes), checks: median(checks) };
}
