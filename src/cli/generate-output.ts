// What `flock generate` shares between its local and swarm forms: reading the sampling options from the command
// line, and printing a generation (streamed text, or one JSON object at the end with any extra fields).

import { FlockError } from '../model/errors';
import type { GenerateOptions, GenerationEvent, GenerationResult } from '../engine/generate';

export interface SamplingArgs {
  prompt?: string;
  'max-tokens'?: string;
  temperature?: string;
  'top-k'?: string;
  'top-p'?: string;
  'min-p'?: string;
  'repeat-penalty'?: string;
  seed?: string;
  'decode-ahead'?: string;
}

export function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new FlockError(`--${name} expects a number, got "${v}"`);
  return n;
}

/** The generation options the command line gives (128 tokens by default). */
export function generateOptionsFrom(values: SamplingArgs): GenerateOptions {
  return {
    prompt: values.prompt,
    maxTokens: num(values['max-tokens'], 'max-tokens') ?? 128,
    temperature: num(values.temperature, 'temperature'),
    topK: num(values['top-k'], 'top-k'),
    topP: num(values['top-p'], 'top-p'),
    minP: num(values['min-p'], 'min-p'),
    repeatPenalty: num(values['repeat-penalty'], 'repeat-penalty'),
    seed: num(values.seed, 'seed'),
    decodeAhead: num(values['decode-ahead'], 'decode-ahead'),
  };
}

/** Stream text to stdout (a rollback prints the reply again from where it went back to), or with `json` print
 *  {input_ids, output_ids, text, …, ...extra()} once done. */
export async function printGeneration(
  it: AsyncGenerator<GenerationEvent, GenerationResult, void>,
  o: { json: boolean; loadMs: number; device: string; extra?: () => Record<string, unknown> },
): Promise<GenerationResult> {
  for (;;) {
    const r = await it.next();
    if (!r.done) {
      const ev = r.value;
      if (o.json) continue;
      // text on a terminal cannot be taken back: say where the reply went back to and print it again from there
      if (ev.kind === 'rollback') process.stdout.write(`\n[a host returned wrong results: the reply goes back to token ${ev.keep}]\n${ev.text}`);
      else process.stdout.write(ev.text);
      continue;
    }
    const res = r.value;
    if (o.json) {
      process.stdout.write(JSON.stringify({
        input_ids: res.inputIds,
        output_ids: res.outputIds,
        text: res.text,
        finish_reason: res.finishReason,
        timings: { load_ms: o.loadMs, ...res.timings },
        per_decode_step: res.perDecodeStep,
        device: o.device,
        ...o.extra?.(),
      }) + '\n');
    } else {
      process.stdout.write('\n');
    }
    return res;
  }
}
