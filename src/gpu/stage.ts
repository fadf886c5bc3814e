// A Stage: layers [start, end) of a model on one GPU, serving any number of sessions, each with its own KV cache.
// It transforms hidden states in place: X [n, dim] at positions pos0..pos0+n-1 -> X after the span's layers.
// Several Stages on one device can be encoded into one command buffer (a whole local model is one submission per
// step); a remote Stage uploads hidden states, runs, and reads them back (forward()).

import type { ModelConfig, WeightRole } from '../model/config';
import { layerWeights, partTensors } from '../model/config';
import { ContextOverflowError, InvalidArgumentError } from '../model/errors';
import { readBytes, type GgufFile } from '../model/gguf';
import { blockFormat, byteSize, dequantize } from '../model/quant';
import { ropeTable } from '../model/rope';
import {
  encodeReadback, storageBuffer, submit, uploadBuffer, writeBufferPadded, type FlockDevice,
} from './device';
import { encodeParams, PARAMS_BYTES } from './kernels/params';
import { encodeOps, makeOp, type KernelVariant, type Op } from './pipelines';
import {
  MATVEC_MAX_N, matmulOps, matvecMultiOps, uploadMatrix, uploadVector, type FusedInput, type GpuMatrix, type LoadCounter,
} from './weights';

export interface StageOptions {
  /** most tokens per forward call (prefill chunk); default 64 */
  maxBatch?: number;
  /** most positions a session may hold; default min(model context, 2048) */
  maxContext?: number;
  /** largest weight buffer; default the device's binding limit (tests lower it to exercise split tensors) */
  maxPartBytes?: number;
  counter?: LoadCounter;
  signal?: AbortSignal;
}

interface Layer {
  attnNorm: GPUBuffer;
  ffnNorm: GPUBuffer;
  w: Record<WeightRole, GpuMatrix>;
  /** biases of q, k, v (qwen2) */
  bias: Partial<Record<WeightRole, GPUBuffer>>;
}

const ROLES: readonly WeightRole[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];

/**
 * Most steps of one session recorded into one submission. Each step's parameters (n, pos0) go to their own slot of
 * the session's parameter table and are copied into the uniform before the step's passes, so steps queued together
 * (decode ahead, src/engine/local-model.ts) each see their own position.
 */
export const MAX_STEPS_PER_SUBMISSION = 16;

export class StageSession {
  /** positions filled so far (the next token's position) */
  length = 0;
  readonly opsCache = new Map<GPUBuffer, { decode?: Op[]; prefill?: Op[] }>();
  /** hidden-state buffer for forward() */
  io: GPUBuffer | undefined;
  constructor(
    readonly kc: GPUBuffer[],
    readonly vc: GPUBuffer[],
    readonly params: GPUBuffer,
    /** MAX_STEPS_PER_SUBMISSION slots of PARAMS_BYTES, copied into `params` step by step */
    readonly paramTable: GPUBuffer,
    readonly maxPos: number,
    /** the layers this session runs: the stage's, or a part of them (a client routing through part of a host's span) */
    readonly span: { start: number; end: number },
  ) {}
  destroy(): void {
    for (const b of [...this.kc, ...this.vc, this.params, this.paramTable]) b.destroy();
    this.io?.destroy();
    this.opsCache.clear();
  }
}

export class GpuStage {
  private sessions = new Set<StageSession>();
  private constructor(
    private readonly dev: FlockDevice,
    readonly cfg: ModelConfig,
    readonly start: number,
    readonly end: number,
    readonly maxBatch: number,
    readonly maxContext: number,
    private readonly layers: Layer[],
    private readonly rope: GPUBuffer,
    private readonly scratch: Record<'xn' | 'q' | 'k' | 'v' | 'att' | 'g' | 'u', GPUBuffer>,
    /** bytes of weights this stage holds */
    readonly weightBytes: number,
  ) {}

  static async load(dev: FlockDevice, file: GgufFile, cfg: ModelConfig, start: number, end: number, opts: StageOptions = {}): Promise<GpuStage> {
    const tensors = partTensors(file, cfg, { start, end, head: false }); // validates before any fetch
    const maxBatch = opts.maxBatch ?? 64;
    const maxContext = Math.min(opts.maxContext ?? 2048, cfg.ctx);
    const maxPart = Math.min(opts.maxPartBytes ?? dev.maxBinding, dev.maxBinding);
    const vec = (name: string) => uploadVector(dev, file, tensors.get(name)!, opts.counter);
    const layers: Layer[] = [];
    let weightBytes = 0;
    for (let l = start; l < end; l++) {
      const slices = layerWeights(cfg, l);
      const w = {} as Record<WeightRole, GpuMatrix>;
      const bias: Partial<Record<WeightRole, GPUBuffer>> = {};
      for (const role of ROLES) {
        const sl = slices[role];
        w[role] = await uploadMatrix(dev, file, tensors.get(sl.name)!, maxPart, opts.counter, opts.signal, { start: sl.rowStart, count: sl.rows });
        weightBytes += w[role].bytes;
        if (sl.bias) bias[role] = await vec(sl.bias);
      }
      layers.push({ attnNorm: await vec(`blk.${l}.attn_norm.weight`), ffnNorm: await vec(`blk.${l}.ffn_norm.weight`), w, bias });
    }
    let freqFactors: Float32Array | undefined;
    if (cfg.ropeFreqs) {
      const t = tensors.get('rope_freqs.weight')!;
      const f = blockFormat(t.type, t.name);
      freqFactors = dequantize(f, await readBytes(file, t.offset, byteSize(f, t.nElems)), 0, t.nElems);
    }
    const { dim, nHeads, nKvHeads, headDim: hd, ffn } = cfg;
    const f32 = (label: string, elems: number) => storageBuffer(dev, label, elems * 4);
    const scratch = {
      xn: f32('xn', maxBatch * dim),
      q: f32('q', maxBatch * nHeads * hd),
      k: f32('k', maxBatch * nKvHeads * hd),
      v: f32('v', maxBatch * nKvHeads * hd),
      att: f32('att', maxBatch * nHeads * hd),
      g: f32('g', maxBatch * ffn),
      u: f32('u', maxBatch * ffn),
    };
    const rope = uploadBuffer(dev, 'rope table', ropeTable(cfg, maxContext, freqFactors));
    return new GpuStage(dev, cfg, start, end, maxBatch, maxContext, layers, rope, scratch, weightBytes);
  }

  /** A session for `maxPos` positions running `span` (default: all of this stage's layers; any contiguous part). */
  createSession(maxPos = this.maxContext, span = { start: this.start, end: this.end }): StageSession {
    if (maxPos > this.maxContext) {
      throw new ContextOverflowError(`A session of ${maxPos} positions exceeds this stage's context of ${this.maxContext}.`);
    }
    if (!this.holds(span)) {
      throw new InvalidArgumentError(`Layers [${span.start}, ${span.end}) are not a part of this stage's [${this.start}, ${this.end}).`);
    }
    const kvBytes = maxPos * this.cfg.nKvHeads * this.cfg.headDim * 4;
    const kc: GPUBuffer[] = [];
    const vc: GPUBuffer[] = [];
    for (let l = span.start; l < span.end; l++) {
      kc.push(storageBuffer(this.dev, `k cache ${l}`, kvBytes));
      vc.push(storageBuffer(this.dev, `v cache ${l}`, kvBytes));
    }
    const params = this.dev.device.createBuffer({ label: 'stage params', size: PARAMS_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const table = this.dev.device.createBuffer({
      label: 'stage params table', size: PARAMS_BYTES * MAX_STEPS_PER_SUBMISSION, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    const s = new StageSession(kc, vc, params, table, maxPos, { start: span.start, end: span.end });
    this.sessions.add(s);
    return s;
  }

  closeSession(s: StageSession): void {
    s.destroy();
    this.sessions.delete(s);
  }

  /** Whether `span` is a non-empty run of this stage's layers. */
  holds(span: { start: number; end: number }): boolean {
    return Number.isInteger(span.start) && Number.isInteger(span.end) && span.start >= this.start && span.end <= this.end && span.start < span.end;
  }

  /** KV cache bytes one position takes in this stage (all its layers; a session of fewer layers takes less) */
  get kvBytesPerPosition(): number {
    return this.kvBytesPerPositionOf(this);
  }

  /** KV cache bytes one position of a session running `span` takes */
  kvBytesPerPositionOf(span: { start: number; end: number }): number {
    return 2 * (span.end - span.start) * this.cfg.nKvHeads * this.cfg.headDim * 4;
  }

  private buildOps(s: StageSession, X: GPUBuffer, tiled: boolean): Op[] {
    const { dev, cfg, scratch: S } = this;
    const { dim, nHeads, nKvHeads, headDim: hd, ffn } = cfg;
    const P = s.params;
    const ops: Op[] = [];
    const norm = (w: GPUBuffer) =>
      makeOp(dev, { op: 'rmsnorm', dim, eps: cfg.normEps, singleRow: false }, [X, w, S.xn, P], (n) => [n, 1, 1]);
    // the session's layers; i indexes its KV cache
    this.layers.slice(s.span.start - this.start, s.span.end - this.start).forEach((L, i) => {
      const mm = (role: WeightRole, x: GPUBuffer, y: GPUBuffer, acc: boolean, input?: FusedInput) =>
        matmulOps(dev, L.w[role], x, y, P, tiled, acc, L.bias[role], input);
      // Decode (matvec) fuses each RMSNorm into the products that read it, SwiGLU into Wdown's input, and runs Q, K
      // and V as one dispatch and gate and up as one (kernels/matvec-multi.ts): the same arithmetic in the same order,
      // 5 dispatches fewer per layer. The residual adds are the o and down products accumulating into X. Prefill
      // (tiled) keeps them as separate ops.
      const attnNorm = { weight: L.attnNorm, eps: cfg.normEps };
      const ffnNorm = { weight: L.ffnNorm, eps: cfg.normEps };
      // attention block: x += Wo · attn(rope(Wq·norm(x)), cache ← rope(Wk·norm(x)), Wv·norm(x))
      if (tiled) {
        ops.push(norm(L.attnNorm)); // xn: [n, dim]
        ops.push(...mm('q', S.xn, S.q, false)); // q: [n, nHeads * hd]
        ops.push(...mm('k', S.xn, S.k, false)); // k: [n, nKvHeads * hd]
        ops.push(...mm('v', S.xn, S.v, false)); // v: [n, nKvHeads * hd]
      } else {
        ops.push(...matvecMultiOps(dev, [
          { W: L.w.q, Y: S.q, bias: L.bias.q }, { W: L.w.k, Y: S.k, bias: L.bias.k }, { W: L.w.v, Y: S.v, bias: L.bias.v },
        ], X, P, attnNorm)); // q, k, v of norm(x)
      }
      ops.push(makeOp(dev, { op: 'rope_kv', nHeads, nKvHeads, headDim: hd, ropeDim: cfg.ropeDim, ...(cfg.ropeNeox ? { neox: true } : {}) },
        [S.q, S.k, S.v, s.kc[i], s.vc[i], this.rope, P],
        (n) => [Math.ceil(((nHeads + nKvHeads) * hd) / 2 / 64), n, 1]));
      ops.push(makeOp(dev, { op: 'attention', nHeads, nKvHeads, headDim: hd },
        [S.q, s.kc[i], s.vc[i], S.att, P], (n) => [nHeads, n, 1])); // att: [n, nHeads * hd]
      ops.push(...mm('o', S.att, X, true)); // x += att · Woᵀ
      // feed-forward block: x += Wdown · (silu(Wgate·norm(x)) * Wup·norm(x))
      if (tiled) {
        ops.push(norm(L.ffnNorm));
        ops.push(...mm('gate', S.xn, S.g, false)); // g: [n, ffn]
        ops.push(...mm('up', S.xn, S.u, false)); // u: [n, ffn]
        ops.push(makeOp(dev, { op: 'swiglu', ffn }, [S.g, S.u, P], (n) => {
          const groups = Math.ceil((n * ffn) / 64); // the kernel spreads 1024 workgroups per row of the grid
          return [Math.min(groups, 1024), Math.ceil(groups / 1024), 1];
        }));
        ops.push(...mm('down', S.g, X, true)); // x += silu(g) * u · Wdownᵀ
      } else {
        ops.push(...matvecMultiOps(dev, [{ W: L.w.gate, Y: S.g }, { W: L.w.up, Y: S.u }], X, P, ffnNorm)); // g, u of norm(x)
        ops.push(...mm('down', S.g, X, true, { kind: 'glu', U: S.u })); // x += silu(g) * u · Wdownᵀ
      }
    });
    return ops;
  }

  /** The kernel variants this stage runs, decoding and prefilling (for compilePipelines). */
  kernelVariants(X: GPUBuffer): KernelVariant[] {
    const s = this.createSession(1); // the ops need a session's buffers; nothing runs
    try {
      return [false, true].flatMap((tiled) => this.buildOps(s, X, tiled).map((op) => op.variant));
    } finally {
      this.closeSession(s);
    }
  }

  /**
   * Encode this stage's layers for n tokens at positions s.length.. into `enc`, updating X in place.
   * `slot` numbers the steps of this session within one submission (0, 1, … < MAX_STEPS_PER_SUBMISSION): each
   * step's parameters are written to their own slot now and copied into the uniform inside the command buffer.
   */
  encode(enc: GPUCommandEncoder, s: StageSession, X: GPUBuffer, n: number, slot = 0): void {
    if (!Number.isInteger(n) || n < 1 || n > this.maxBatch) {
      throw new InvalidArgumentError(`A stage runs 1..${this.maxBatch} tokens at a time, not ${n}.`);
    }
    if (!Number.isInteger(slot) || slot < 0 || slot >= MAX_STEPS_PER_SUBMISSION) {
      throw new InvalidArgumentError(`A submission holds at most ${MAX_STEPS_PER_SUBMISSION} steps of a session (slot ${slot}).`);
    }
    if (s.length + n > s.maxPos) {
      throw new ContextOverflowError(
        `The conversation needs ${s.length + n} positions but the context holds ${s.maxPos}. Start a new chat or shorten the prompt.`,
      );
    }
    this.dev.device.queue.writeBuffer(s.paramTable, slot * PARAMS_BYTES, encodeParams({ n, pos0: s.length }));
    enc.copyBufferToBuffer(s.paramTable, slot * PARAMS_BYTES, s.params, 0, PARAMS_BYTES);
    let cached = s.opsCache.get(X);
    if (!cached) s.opsCache.set(X, (cached = {}));
    const tiled = n > MATVEC_MAX_N;
    const ops = tiled ? (cached.prefill ??= this.buildOps(s, X, true)) : (cached.decode ??= this.buildOps(s, X, false));
    encodeOps(this.dev, enc, ops, n, `layers ${s.span.start}-${s.span.end}`);
    s.length += n;
  }

  /** Run hidden states [n, dim] through the stage and read them back: one submission, one readback. */
  async forward(s: StageSession, hidden: Float32Array): Promise<Float32Array> {
    const n = hidden.length / this.cfg.dim;
    s.io ??= storageBuffer(this.dev, 'stage io', this.maxBatch * this.cfg.dim * 4);
    writeBufferPadded(this.dev, s.io, 0, hidden);
    const enc = this.dev.device.createCommandEncoder({ label: 'stage forward' });
    this.encode(enc, s, s.io, n);
    const read = encodeReadback(this.dev, enc, s.io, hidden.byteLength);
    submit(this.dev, enc);
    return new Float32Array(await read());
  }

  /** Drop the last positions of a session (used to rewind after an abandoned step). */
  truncate(s: StageSession, length: number): void {
    s.length = Math.min(s.length, Math.max(0, length));
  }

  destroy(): void {
    for (const s of this.sessions) s.destroy();
    this.sessions.clear();
    for (const L of this.layers) {
      L.attnNorm.destroy();
      L.ffnNorm.destroy();
      for (const role of ROLES) {
        for (const p of L.w[role].parts) p.buffer.destroy();
        L.bias[role]?.destroy();
      }
    }
    this.rope.destroy();
    for (const b of Object.values(this.scratch)) b.destroy();
  }
}
