// Named errors across the page <-> engine worker boundary. comlink sends a thrown Error as {name, message, stack}
// and rebuilds a plain Error; this replaces its 'throw' handler on both sides so that every Flock error class comes
// back as itself, with its fields (a NoRouteError keeps `missing` and `ids`, a LinkDownError its `reason` and
// `peer`), and `instanceof` works on the page as in the worker. Unknown errors keep their name on a plain Error
// (AbortError, OperationError…). Not here: the classes themselves (model/errors.ts, swarm/errors.ts).

import { transferHandlers } from 'comlink';
import { FlockError, MODEL_ERRORS } from '../model/errors';
import { SWARM_ERRORS } from '../swarm/errors';

/** Every error class a boundary can rebuild, by its literal `name` (tests check that none is missing). */
export const ERROR_CLASSES: Readonly<Record<string, abstract new (...args: never[]) => Error>> = { ...MODEL_ERRORS, ...SWARM_ERRORS };

/** An error as it crosses a boundary: structured-clone data only. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  /** the error's own fields besides name and message (code, peer, reason, missing, ids…) */
  fields: Record<string, unknown>;
}

/** `e` as plain data; fields that cannot be cloned (functions, symbols) are left out. */
export function serializeError(e: Error): WireError {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'name' || k === 'message' || k === 'stack' || typeof v === 'function' || typeof v === 'symbol') continue;
    fields[k] = v;
  }
  return { name: e.name, message: e.message, stack: e.stack, fields };
}

/** The error as it was thrown: its own class where we know the name, else an Error that keeps the name. */
export function reviveError(w: WireError): Error {
  const Ctor = Object.hasOwn(ERROR_CLASSES, w.name) ? ERROR_CLASSES[w.name] : undefined;
  // Built without running the constructor: constructors format their message (`${code}: …`), and the message
  // that crossed is already final.
  const e: Error = Object.create((Ctor ?? Error).prototype);
  Object.assign(e, w.fields);
  Object.defineProperty(e, 'message', { value: w.message, writable: true, configurable: true });
  Object.defineProperty(e, 'name', { value: w.name, writable: true, configurable: true, enumerable: Ctor !== undefined });
  if (w.stack !== undefined) Object.defineProperty(e, 'stack', { value: w.stack, writable: true, configurable: true });
  return e;
}

/** Anything thrown, as an Error (a FlockError for a thrown non-Error value). */
export function asError(e: unknown): Error {
  return e instanceof Error ? e : new FlockError(String(e));
}

function isWireError(x: unknown): x is WireError {
  return typeof x === 'object' && x !== null && 'name' in x && typeof x.name === 'string' && 'message' in x &&
    typeof x.message === 'string' && 'fields' in x && typeof x.fields === 'object' && x.fields !== null;
}

let installed = false;

/** Replace comlink's handler for thrown values (idempotent); both the page and the worker call this at start. */
export function installErrorTransfer(): void {
  if (installed) return;
  installed = true;
  const base = transferHandlers.get('throw');
  if (!base) throw new FlockError('comlink has no handler for thrown values; its version is not the one Flock was built with.');
  transferHandlers.set('throw', {
    canHandle: base.canHandle,
    serialize(thrown: unknown): [unknown, Transferable[]] {
      const value = typeof thrown === 'object' && thrown !== null && 'value' in thrown ? thrown.value : undefined;
      if (value instanceof Error) return [{ isError: true, value: serializeError(value) }, []];
      return base.serialize(thrown);
    },
    deserialize(serialized: unknown): unknown {
      if (typeof serialized === 'object' && serialized !== null && 'isError' in serialized && serialized.isError === true &&
        'value' in serialized && isWireError(serialized.value)) {
        throw reviveError(serialized.value);
      }
      return base.deserialize(serialized);
    },
  });
}
