// Can this device run a GGUF file? Decided from its header alone (read to its last byte and no further, through
// Range requests for a URL): architecture, tokenizer kind, every tensor's type/shape/bounds, then the memory it needs
// at the context asked for (model/memory.ts) against the device's buffer limits and the memory budget, and its
// download against the free storage. Not here: loading weights, words for the user (ui/model-report.ts).

import { partTensors, readConfig, type ModelConfig } from '../model/config';
import { openGguf, metaNumber, metaString } from '../model/gguf';
import {
  effectiveContext, longestFit, memoryAt, memoryProblems, weightSizes, type MemoryLimits, type WeightSizes,
} from '../model/memory';
import { ggmlTypeName } from '../model/quant';
import type { ByteSource } from '../model/source';
import { createTokenizer } from '../model/tokenizer';
import type { InspectRequest, ModelReport, ModelVerdict } from './api';

/** What the device allows, and the storage this site may still use (null: unknown). */
export interface InspectEnv {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  freeStorage: number | null;
}

/** The verdict from the report's facts: runs at all, fits at some context, fits the storage, fits as asked. */
export function verdictOf(r: Pick<ModelReport, 'runnable' | 'fitContext' | 'context' | 'downloadBytes' | 'freeStorage'>): ModelVerdict {
  if (!r.runnable) return 'cannot-run';
  if (r.fitContext === 0) return 'too-big';
  if (r.freeStorage !== null && r.downloadBytes > r.freeStorage) return 'no-space';
  return r.fitContext < r.context ? 'shorter' : 'fits';
}

export async function inspectSource(source: ByteSource, req: InspectRequest, env: InspectEnv): Promise<ModelReport> {
  const file = await openGguf(source);
  const tensors = [...file.tensors.values()];
  const arch = metaString(file.metadata, 'general.architecture') ?? '?';
  const limits: MemoryLimits = { maxBufferSize: env.maxBufferSize, maxStorageBufferBindingSize: env.maxStorageBufferBindingSize, budget: req.budget?.bytes ?? null };
  const modelContext = metaNumber(file.metadata, `${arch}.context_length`) ?? 0;
  const report: ModelReport = {
    verdict: 'cannot-run',
    runnable: false,
    reason: '',
    name: source.name,
    arch,
    tokenizer: metaString(file.metadata, 'tokenizer.ggml.model') ?? '?',
    tensorTypes: [...new Set(tensors.map((t) => ggmlTypeName(t.type)))].sort(),
    size: file.fileSize,
    params: tensors.reduce((a, t) => a + t.nElems, 0),
    modelContext,
    downloadBytes: Math.max(0, file.fileSize - req.cachedBytes),
    freeStorage: env.freeStorage,
    limits,
    budget: req.budget,
    context: effectiveContext(req.context, modelContext),
    memory: null,
    problems: [],
    fitContext: 0,
  };
  let cfg: ModelConfig;
  let weights: WeightSizes;
  try {
    cfg = readConfig(file);
    createTokenizer(file.metadata);
    partTensors(file, cfg, { start: 0, end: cfg.nLayers, head: true });
    weights = weightSizes(file, cfg);
  } catch (e) {
    report.reason = e instanceof Error ? e.message : String(e);
    return report;
  }
  report.runnable = true;
  report.memory = memoryAt(cfg, weights, report.context);
  report.problems = memoryProblems(report.memory, limits);
  report.fitContext = longestFit(cfg, weights, limits, report.context);
  report.verdict = verdictOf(report);
  return report;
}
