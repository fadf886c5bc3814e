// The swarm a command joins, from its flags: `--swarm NAME` alone is a public swarm (identities carry
// `--pow-bits` of proof of work, 17 by default: every participant of a swarm must agree on it); with `--secret-file
// PATH` it is a private one (the secret from a file only its owner may read, key-file.ts). And the client's own layers
// (`--own-layers F,L`). Argument checking only.

import { FlockError } from '../model/errors';
import { PUBLIC_POW_BITS } from '../swarm/identity';
import type { OwnLayers } from '../swarm/open-client';
import { privateSwarm, publicSwarm, type SwarmConfig } from '../swarm/swarm-config';
import { readSecretFile } from './key-file';

export function swarmFromFlags(name: string, secretFile: string | undefined, powBits: string | undefined): SwarmConfig {
  if (secretFile) return privateSwarm(name, readSecretFile(secretFile));
  const bits = powBits === undefined ? PUBLIC_POW_BITS : Number(powBits);
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new FlockError(`--pow-bits expects a whole number from 0 to 32, got "${powBits}"`);
  return publicSwarm(name, bits);
}

/** `--own-layers F,L`: the first F and the last L layers run on the client (open-client.ts OwnLayers). */
export function ownLayersFromFlag(flag: string | undefined): OwnLayers | undefined {
  if (flag === undefined) return undefined;
  const m = /^(\d{1,3}),(\d{1,3})$/.exec(flag.trim());
  if (!m) throw new FlockError(`--own-layers expects FIRST,LAST (layers this machine runs before and after the hosts', e.g. 1,1), got "${flag}"`);
  return { first: Number(m[1]), last: Number(m[2]) };
}
