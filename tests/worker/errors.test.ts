// Named errors across the page <-> engine worker boundary: every error class under src/ is in the registry (a new
// class cannot be forgotten), and each one thrown behind a real comlink boundary (a MessageChannel, as between the
// page and its worker) arrives as an instance of its own class with its message and every field it carries.

import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { expose, wrap } from 'comlink';
import { afterAll, describe, expect, it } from 'vitest';
import { FlockError, InvalidArgumentError } from '../../src/model/errors';
import { EncodeError, HopMismatchError, HopTimeoutError, IdentityError, LinkAuthError, LinkDownError, NoRouteError, ProtocolError, ReassemblyError, RemoteError, SignalError, StepOrderError } from '../../src/swarm/errors';
import { ERROR_CLASSES, installErrorTransfer } from '../../src/worker/errors';

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Every class under src/ that extends Error or one of its subclasses, by name. */
function declaredErrorClasses(): string[] {
  const names = new Set<string>(['Error']);
  const decls: [string, string][] = [];
  for (const f of sourceFiles('src')) {
    for (const m of readFileSync(f, 'utf8').matchAll(/class\s+(\w+)\s+extends\s+(\w+)/g)) decls.push([m[1], m[2]]);
  }
  // a class is an error class when its base is one (to a fixed point: bases may come later in the walk)
  for (let grew = true; grew; ) {
    grew = false;
    for (const [name, base] of decls) if (names.has(base) && !names.has(name)) (names.add(name), (grew = true));
  }
  names.delete('Error');
  return [...names].sort();
}

/** One instance of each class, with fields set to values a test can recognise. */
const SAMPLES: Record<string, () => Error> = {
  ProtocolError: () => new ProtocolError('too-large', 'a frame of 1 MiB'),
  EncodeError: () => new EncodeError('non-finite', 'NaN in our payload'),
  ReassemblyError: () => new ReassemblyError('buffer-full', 'no room'),
  StepOrderError: () => new StepOrderError('gap', 'step 5 after 0'),
  LinkDownError: () => new LinkDownError('heartbeat', 'peer-7', 'nothing heard for 5000 ms'),
  RemoteError: () => new RemoteError('kv-full', 'peer-8', 'no KV left'),
  HopTimeoutError: () => new HopTimeoutError('no answer in 10 s'),
  NoRouteError: () => new NoRouteError('No peer serves layers [2, 4)', { start: 2, end: 4 }, [1, 400, 22, 7]),
  SignalError: () => new SignalError('unreachable', 'no answer from ws://127.0.0.1:9/'),
  IdentityError: () => new IdentityError('wrong-key', 'signed by another key'),
  LinkAuthError: () => new LinkAuthError('fingerprint', 'peer-9', 'the DTLS fingerprints it signed are not this connection\'s'),
  HopMismatchError: () => new HopMismatchError('peer-10', 17, 'answered position 17 unlike two other hosts'),
};

function sample(name: string): Error {
  const make = SAMPLES[name];
  if (make) return make();
  const Ctor = ERROR_CLASSES[name] as unknown as new (message: string) => Error;
  return new Ctor(`a ${name} for the test`);
}

installErrorTransfer();
const { port1, port2 } = new MessageChannel();
expose({ fail: (name: string) => { throw sample(name); } }, port1);
const remote = wrap<{ fail(name: string): void }>(port2);

afterAll(() => {
  port1.close();
  port2.close();
});

describe('errors across the worker boundary', () => {
  it('every error class declared under src/ is in the registry, by its literal name', () => {
    const declared = declaredErrorClasses();
    expect(declared.length).toBeGreaterThan(20);
    expect(Object.keys(ERROR_CLASSES).sort()).toEqual(declared);
    for (const name of declared) expect(sample(name).name).toBe(name);
  });

  it.each(Object.keys(ERROR_CLASSES))('%s arrives as itself, with its message and fields', async (name) => {
    const sent = sample(name);
    const got = await remote.fail(name).then(() => null, (e: unknown) => e);
    expect(got).toBeInstanceOf(ERROR_CLASSES[name]);
    expect(got).toBeInstanceOf(FlockError);
    const e = got as Error;
    expect(e.name).toBe(name);
    expect(e.message).toBe(sent.message);
    expect({ ...e }).toEqual({ ...sent });
  });

  it('a NoRouteError keeps the conversation ids and the missing span', async () => {
    const e = await remote.fail('NoRouteError').then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(NoRouteError);
    expect(e instanceof NoRouteError && e.ids).toEqual([1, 400, 22, 7]);
    expect(e instanceof NoRouteError && e.missing).toEqual({ start: 2, end: 4 });
    expect(e).not.toBeInstanceOf(InvalidArgumentError);
  });

  it('an error that is not Flock\'s keeps its name on a plain Error', async () => {
    const { port1: a, port2: b } = new MessageChannel();
    expose({ fail: () => { throw new DOMException('gone', 'AbortError'); } }, a);
    const r = wrap<{ fail(): void }>(b);
    const e = await r.fail().then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(Error);
    expect((e as Error).name).toBe('AbortError');
    expect((e as Error).message).toBe('gone');
    a.close();
    b.close();
  });
});
