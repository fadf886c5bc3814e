// Merging option objects with their defaults. A general helper at the bottom layer, so every layer may use it.

/** `over` without its undefined fields, so `{...defaults, ...withoutUndefined(over)}` keeps the defaults. */
export function withoutUndefined<T extends object>(over: T): Partial<T> {
  const out: Partial<T> = {};
  for (const k of Object.keys(over) as (keyof T)[]) if (over[k] !== undefined) out[k] = over[k];
  return out;
}
