// Can this build run a GGUF file? Decided from its header alone (a few MB at most, fetched with Range requests):
// architecture, tokenizer kind, every tensor's type/shape/bounds. Not here: loading weights or the GPU.

import { partTensors, readConfig } from '../model/config';
import { openGguf, metaString } from '../model/gguf';
import { ggmlTypeName } from '../model/quant';
import type { ByteSource } from '../model/source';
import { createTokenizer } from '../model/tokenizer';
import type { ModelReport } from './api';

export async function inspectSource(source: ByteSource): Promise<ModelReport> {
  const file = await openGguf(source);
  const types = [...new Set([...file.tensors.values()].map((t) => ggmlTypeName(t.type)))].sort();
  const report: ModelReport = {
    runnable: false,
    reason: '',
    arch: metaString(file.metadata, 'general.architecture') ?? '?',
    tokenizer: metaString(file.metadata, 'tokenizer.ggml.model') ?? '?',
    tensorTypes: types,
    size: file.fileSize,
  };
  try {
    const cfg = readConfig(file);
    createTokenizer(file.metadata);
    partTensors(file, cfg, { start: 0, end: cfg.nLayers, head: true });
    report.runnable = true;
  } catch (e) {
    report.reason = e instanceof Error ? e.message : String(e);
  }
  return report;
}
