// The per-step uniform every kernel can read: token count, first position, and a few op-specific values.
// One small buffer per session/step is written before each submission; all other sizes are WGSL constants baked into
// each kernel variant, so bind groups can be built once and reused every step.

export const PARAMS_WGSL = /* wgsl */ `struct Params { n: u32, pos0: u32, a: u32, b: u32, f: f32, p1: u32, p2: u32, p3: u32 }`;
export const PARAMS_BYTES = 32;

export interface StepParams {
  n: number;
  pos0: number;
  a?: number;
  b?: number;
  f?: number;
}

export function encodeParams(p: StepParams): ArrayBuffer {
  const buf = new ArrayBuffer(PARAMS_BYTES);
  const u = new Uint32Array(buf);
  u[0] = p.n;
  u[1] = p.pos0;
  u[2] = p.a ?? 0;
  u[3] = p.b ?? 0;
  new Float32Array(buf)[4] = p.f ?? 0;
  return buf;
}
