// The swarm a command joins, from its flags: `--swarm NAME` alone is a public swarm (identities carry
// `--pow-bits` of proof of work, 17 by default: every participant of a swarm must agree on it); with `--secret-file
// PATH` it is a private one (the secret from a file only its owner may read, key-file.ts). Argument checking only.

import { FlockError } from '../model/errors';
import { PUBLIC_POW_BITS } from '../swarm/identity';
import { privateSwarm, publicSwarm, type SwarmConfig } from '../swarm/swarm-config';
import { readSecretFile } from './key-file';

export function swarmFromFlags(name: string, secretFile: string | undefined, powBits: string | undefined): SwarmConfig {
  if (secretFile) return privateSwarm(name, readSecretFile(secretFile));
  const bits = powBits === undefined ? PUBLIC_POW_BITS : Number(powBits);
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) throw new FlockError(`--pow-bits expects a whole number from 0 to 32, got "${powBits}"`);
  return publicSwarm(name, bits);
}
