// The Head's GPU part: token embedding lookup, final norm, output head, repetition penalty and top-k selection.
// A decode step ends here with k (logit, id) candidates copied for readback: 8·k bytes instead of the vocabulary.
// The sampler (src/model/sampler.ts) finishes the choice on the CPU. For greedy decoding the choice is the top-1
// candidate, so the GPU can make it alone: encodeGreedyId copies the chosen id into the embedding's id buffer, and
// the next step embeds it without the CPU (decode ahead). The Head never leaves the user's device.

import type { ModelConfig } from '../model/config';
import { partTensors } from '../model/config';
import { InvalidArgumentError, InvalidLogitsError } from '../model/errors';
import type { GgufFile } from '../model/gguf';
import { encodeReadback, storageBuffer, submit, type FlockDevice } from './device';
import { encodeParams, PARAMS_BYTES, type StepParams } from './kernels/params';
import { TOPK_CHUNK, TOPK_MAX } from './kernels/topk';
import { encodeOps, makeOp, type KernelVariant, type Op } from './pipelines';
import { matmulOps, uploadMatrix, uploadVector, type GpuMatrix, type LoadCounter } from './weights';

export interface HeadOptions {
  maxBatch?: number;
  maxPartBytes?: number;
  counter?: LoadCounter;
  signal?: AbortSignal;
}

export interface Candidates {
  ids: Uint32Array;
  logits: Float32Array;
}

/** The id top-k gives a removed or padding entry (kernels/topk.ts), and encodeGreedyId a step whose logits are all NaN. */
export const NO_ID = 0xffffffff;

/** Ids chosen on the GPU (encodeGreedyId), checked: a NaN-only step is an InvalidLogitsError. */
export function checkChosenIds(ids: Uint32Array): Uint32Array {
  if (ids.includes(NO_ID)) throw new InvalidLogitsError('Every logit of a step is NaN: the model file or the device produced invalid numbers.');
  return ids;
}

/** Most ids the penalty kernel takes per step (repeat-last-n windows are far smaller). */
export const MAX_PENALTY_IDS = 4096;

export class GpuHead {
  private readonly params = new Map<string, GPUBuffer>();
  private embedOpsCache = new WeakMap<GPUBuffer, Op[]>();
  private selectCache = new WeakMap<GPUBuffer, Map<string, { ops: Op[]; out: GPUBuffer }>>();
  private readonly idsBuf: GPUBuffer;
  private readonly xn: GPUBuffer;
  private readonly logits: GPUBuffer;
  private readonly penaltyIds: GPUBuffer;
  private pairs: GPUBuffer[] = [];

  private constructor(
    private readonly dev: FlockDevice,
    readonly cfg: ModelConfig,
    readonly maxBatch: number,
    private readonly embedding: GpuMatrix,
    private readonly outNorm: GPUBuffer,
    private readonly output: GpuMatrix,
    readonly weightBytes: number,
  ) {
    this.idsBuf = storageBuffer(dev, 'token ids', maxBatch * 4);
    this.xn = storageBuffer(dev, 'head xn', cfg.dim * 4);
    this.logits = storageBuffer(dev, 'logits', cfg.vocab * 4);
    this.penaltyIds = storageBuffer(dev, 'penalty ids', MAX_PENALTY_IDS * 4);
  }

  static async load(dev: FlockDevice, file: GgufFile, cfg: ModelConfig, opts: HeadOptions = {}): Promise<GpuHead> {
    const tensors = partTensors(file, cfg, { start: 0, end: 0, head: true });
    const maxPart = Math.min(opts.maxPartBytes ?? dev.maxBinding, dev.maxBinding);
    const embedding = await uploadMatrix(dev, file, tensors.get('token_embd.weight')!, maxPart, opts.counter, opts.signal);
    const outNorm = await uploadVector(dev, file, tensors.get('output_norm.weight')!, opts.counter);
    const output = cfg.tiedOutput
      ? embedding
      : await uploadMatrix(dev, file, tensors.get('output.weight')!, maxPart, opts.counter, opts.signal);
    const bytes = embedding.bytes + (cfg.tiedOutput ? 0 : output.bytes);
    return new GpuHead(dev, cfg, opts.maxBatch ?? 64, embedding, outNorm, output, bytes);
  }

  /** A uniform buffer per use, written before each submission. */
  private param(key: string, p: StepParams): GPUBuffer {
    const b = this.paramBuffer(key);
    this.dev.device.queue.writeBuffer(b, 0, encodeParams(p));
    return b;
  }

  private paramBuffer(key: string): GPUBuffer {
    let b = this.params.get(key);
    if (!b) {
      b = this.dev.device.createBuffer({ label: `head params ${key}`, size: PARAMS_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      this.params.set(key, b);
    }
    return b;
  }

  /** Embed token ids into X [n, dim]. */
  encodeEmbed(enc: GPUCommandEncoder, X: GPUBuffer, ids: readonly number[]): void {
    const n = ids.length;
    if (n < 1 || n > this.maxBatch) throw new InvalidArgumentError(`embed takes 1..${this.maxBatch} tokens, not ${n}`);
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.cfg.vocab) throw new InvalidArgumentError(`token id ${id} is outside the vocabulary (${this.cfg.vocab})`);
    }
    this.dev.device.queue.writeBuffer(this.idsBuf, 0, new Uint32Array(ids));
    this.encodeEmbedIds(enc, X, n);
  }

  /**
   * Embed the one id the last encodeGreedyId left in the id buffer, on the GPU: no upload, so it can follow a step
   * that is still running. Call encodeEmbed once before, for the first id.
   */
  encodeEmbedChosen(enc: GPUCommandEncoder, X: GPUBuffer): void {
    this.encodeEmbedIds(enc, X, 1);
  }

  private encodeEmbedIds(enc: GPUCommandEncoder, X: GPUBuffer, n: number): void {
    this.param('embed', { n, pos0: 0 });
    encodeOps(this.dev, enc, this.embedOps(X), n, 'embed');
  }

  private embedOps(X: GPUBuffer): Op[] {
    let ops = this.embedOpsCache.get(X);
    if (!ops) {
      const dim = this.cfg.dim;
      const P = this.paramBuffer('embed'); // written by each encode
      ops = this.embedding.parts.map((part) =>
        makeOp(this.dev, { op: 'embed', type: this.embedding.type, dim, rows: part.rows, rowBase: part.rowBase },
          [part.buffer, this.idsBuf, X, P], (nn) => [Math.ceil(dim / 4 / 64), nn, 1]));
      this.embedOpsCache.set(X, ops);
    }
    return ops;
  }

  /**
   * The kernel variants a generation on X runs here: the embedding, and selection with each candidate count in `ks`
   * (1 for greedy, the sampler's default top-k), with and without the repetition penalty. For compilePipelines.
   */
  kernelVariants(X: GPUBuffer, ks: readonly number[]): KernelVariant[] {
    const ops = [...this.embedOps(X)];
    for (const k of ks) for (const penalty of [1, 1.1]) ops.push(...this.selectOps(X, 0, k, [0], penalty).ops);
    return ops.map((op) => op.variant);
  }

  private pairsBuffer(i: number): GPUBuffer {
    const words = Math.ceil(this.cfg.vocab / TOPK_CHUNK) * TOPK_MAX * 2;
    return (this.pairs[i] ??= storageBuffer(this.dev, `topk pairs ${i}`, words * 4));
  }

  /** The ops of a selection (final norm of row `row`, logits, penalty, top-k) and the buffer holding its result. */
  private selectOps(X: GPUBuffer, row: number, k: number, penaltyIds: readonly number[], penalty: number): { ops: Op[]; out: GPUBuffer; all: boolean } {
    const { vocab, dim } = this.cfg;
    if (penaltyIds.length > MAX_PENALTY_IDS) throw new InvalidArgumentError(`at most ${MAX_PENALTY_IDS} penalised ids`);
    const all = k <= 0 || k > TOPK_MAX || k >= vocab;
    const doPenalty = penalty !== 1 && penaltyIds.length > 0;
    if (doPenalty) this.dev.device.queue.writeBuffer(this.penaltyIds, 0, new Uint32Array(penaltyIds));
    const key = `${all ? 'all' : k}:${doPenalty}`;
    let byKey = this.selectCache.get(X);
    if (!byKey) this.selectCache.set(X, (byKey = new Map()));
    let sel = byKey.get(key);
    const Pn = this.param('norm', { n: 1, pos0: 0, a: row });
    const Pp = this.param('penalty', { n: 1, pos0: 0, b: penaltyIds.length, f: penalty });
    // top-k passes: vocab -> ceil(vocab/1024)·k pairs -> ... -> k pairs
    const passes: { count: number; groups: number }[] = [];
    if (!all) {
      for (let count = vocab; ; ) {
        const groups = Math.ceil(count / TOPK_CHUNK);
        passes.push({ count, groups });
        if (groups === 1) break;
        count = groups * k;
      }
    }
    const Pk = passes.map((p, i) => this.param(`topk${i}`, { n: 1, pos0: 0, a: p.count }));
    if (!sel) {
      const ops: Op[] = [];
      // the final norm stays a kernel of its own: fused into the output head, each of vocab / rows-per-workgroup
      // workgroups would repeat its reduction (40 % slower on SwiftShader for a 32,000-row head, measured)
      ops.push(makeOp(this.dev, { op: 'rmsnorm', dim, eps: this.cfg.normEps, singleRow: true }, [X, this.outNorm, this.xn, Pn], () => [1, 1, 1]));
      ops.push(...matmulOps(this.dev, this.output, this.xn, this.logits, Pn, false, false));
      if (doPenalty) {
        ops.push(makeOp(this.dev, { op: 'penalty' }, [this.logits, this.penaltyIds, Pp], () => [Math.ceil(MAX_PENALTY_IDS / 64), 1, 1]));
      }
      let input = this.logits;
      passes.forEach((p, i) => {
        const out = this.pairsBuffer(i % 2);
        ops.push(makeOp(this.dev, { op: 'topk', k, source: i === 0 ? 'logits' : 'pairs' }, [input, out, Pk[i]], () => [p.groups, 1, 1]));
        input = out;
      });
      sel = { ops, out: input };
      byKey.set(key, sel);
    }
    return { ...sel, all };
  }

  /**
   * Encode: final norm of row `row` of X, logits, penalty on `penaltyIds`, top-k. Returns a function to call after
   * submission that yields the candidates (best first). k = 0 or k > TOPK_MAX returns every logit instead.
   */
  encodeSelect(
    enc: GPUCommandEncoder, X: GPUBuffer, row: number, k: number, penaltyIds: readonly number[], penalty: number,
  ): () => Promise<Candidates> {
    const { vocab } = this.cfg;
    const sel = this.selectOps(X, row, k, penaltyIds, penalty);
    encodeOps(this.dev, enc, sel.ops, 1, 'head');
    if (sel.all) {
      const read = encodeReadback(this.dev, enc, this.logits, vocab * 4);
      return async () => {
        const logits = new Float32Array(await read());
        return { ids: Uint32Array.from({ length: vocab }, (_, i) => i), logits };
      };
    }
    const read = encodeReadback(this.dev, enc, sel.out, k * 8);
    return async () => {
      const words = new Uint32Array(await read());
      const ids = new Uint32Array(k);
      const logits = new Float32Array(k);
      const f = new Float32Array(words.buffer);
      let m = 0;
      for (let i = 0; i < k; i++) {
        if (words[2 * i + 1] === NO_ID) continue;
        ids[m] = words[2 * i + 1];
        logits[m++] = f[2 * i];
      }
      if (m === 0) throw new InvalidLogitsError('Every logit of this step is NaN: the model file or the device produced invalid numbers.');
      return { ids: ids.subarray(0, m), logits: logits.subarray(0, m) };
    };
  }

  /**
   * Encode a greedy choice for row `row` of X without a readback: the top-1 id (ties to the lower id, as the CPU
   * sampler breaks them) goes into the embedding's id buffer, for encodeEmbedChosen, and into word `slot` of `ids`.
   * An id of 0xffffffff there means every logit was NaN (checkChosenIds).
   */
  encodeGreedyId(enc: GPUCommandEncoder, X: GPUBuffer, row: number, ids: GPUBuffer, slot: number): void {
    const sel = this.selectOps(X, row, 1, [], 1);
    encodeOps(this.dev, enc, sel.ops, 1, 'head');
    enc.copyBufferToBuffer(sel.out, 4, this.idsBuf, 0, 4); // the pair is (logit bits, id): the id is word 1
    enc.copyBufferToBuffer(sel.out, 4, ids, slot * 4, 4);
  }

  /** Logits of every row of X [n, dim] (tests and scoring; one submission, reads back n·vocab floats). */
  async logitsAll(X: GPUBuffer, n: number): Promise<Float32Array> {
    const { vocab, dim } = this.cfg;
    const xnAll = storageBuffer(this.dev, 'head xn all', n * dim * 4);
    const out = storageBuffer(this.dev, 'logits all', n * vocab * 4);
    const P = this.dev.device.createBuffer({ size: PARAMS_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    this.dev.device.queue.writeBuffer(P, 0, encodeParams({ n, pos0: 0 }));
    const ops = [
      makeOp(this.dev, { op: 'rmsnorm', dim, eps: this.cfg.normEps, singleRow: false }, [X, this.outNorm, xnAll, P], (nn) => [nn, 1, 1]),
      ...matmulOps(this.dev, this.output, xnAll, out, P, n > 4, false),
    ];
    const enc = this.dev.device.createCommandEncoder({ label: 'logits all' });
    encodeOps(this.dev, enc, ops, n, 'logits all');
    const read = encodeReadback(this.dev, enc, out, n * vocab * 4);
    submit(this.dev, enc);
    const logits = new Float32Array(await read());
    for (const b of [xnAll, out, P]) b.destroy();
    return logits;
  }

  destroy(): void {
    for (const p of this.embedding.parts) p.buffer.destroy();
    if (!this.cfg.tiedOutput) for (const p of this.output.parts) p.buffer.destroy();
    for (const b of [this.outNorm, this.idsBuf, this.xn, this.logits, this.penaltyIds, ...this.pairs, ...this.params.values()]) b.destroy();
  }
}
