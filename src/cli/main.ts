// `flock` command line: generate text with a local GGUF model through Dawn (Node's WebGPU), and run the benchmark.
// Argument parsing and output formatting only; the work happens in src/engine.

import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { FlockError } from '../model/errors';
import { FileSource, openSource } from '../model/source-file';
import { LocalModel } from '../engine/local-model';
import { nodeDevice } from './dawn';
import { generateOptionsFrom, num, printGeneration } from './generate-output';

export const DEFAULT_MODEL = fileURLToPath(new URL('../../public/models/stories260K.gguf', import.meta.url));

const USAGE = `Usage:
  flock generate [--model PATH|URL] [--prompt TEXT] [--max-tokens N] [--temperature T] [--top-k K]
                 [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S] [--stages K] [--json]
                 [--decode-ahead N]   greedy steps queued per submission (default 4; 0: one step per token)
  flock chat     [--model PATH|URL] [--system TEXT] [--temperature T] [--max-tokens N] ...   (see flock chat --help)
  flock bench    [--model PATH ...] [--out FILE] [--contexts N,N] [--tokens N] [--decode-ahead N,N] [--profile]
  flock generate --swarm NAME --signal URL [--secret-file PATH] [--own-layers F,L] ...
                 (layers on the swarm's hosts, but the first F and last L here; default 1,1)
  flock host     --model PATH|URL --swarm NAME --signal URL [--layers A:B | --max-layers N] [--key-file PATH]
                 [--secret-file PATH | --pow-bits N] [--max-context N] [--announce-ms MS]
  flock signal   [--port 9000] [--host 127.0.0.1]                     (a local signalling server)
  flock secret   PATH                                                 (a new private swarm secret, mode 600)

The default model is the embedded stories260K. Without --prompt, generation starts from BOS alone.`;

async function generate(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', default: DEFAULT_MODEL },
      prompt: { type: 'string' },
      'max-tokens': { type: 'string', default: '128' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      'min-p': { type: 'string' },
      'repeat-penalty': { type: 'string' },
      seed: { type: 'string' },
      'decode-ahead': { type: 'string' },
      stages: { type: 'string', default: '1' },
      'max-context': { type: 'string' },
      json: { type: 'boolean', default: false },
      swarm: { type: 'string' },
      signal: { type: 'string' },
      dtype: { type: 'string' },
      'secret-file': { type: 'string' },
      'pow-bits': { type: 'string' },
      'own-layers': { type: 'string' },
    },
  });
  if (values.swarm !== undefined || values.signal !== undefined) {
    // Layers on a swarm's hosts, Head here: see swarm-generate.ts.
    const { runSwarmGenerate } = await import('./swarm-generate');
    return runSwarmGenerate(values);
  }
  const dev = await nodeDevice();
  const t0 = performance.now();
  const source = openSource(values.model!);
  try {
    const model = await LocalModel.load(dev, source, {
      stages: num(values.stages, 'stages'),
      maxContext: num(values['max-context'], 'max-context'),
    });
    const loadMs = performance.now() - t0;
    await printGeneration(model.generate(generateOptionsFrom(values)), { json: values.json ?? false, loadMs, device: dev.adapterName });
    model.destroy();
  } finally {
    if (source instanceof FileSource) await source.close();
  }
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  switch (cmd) {
    case 'generate':
      return generate(rest);
    case 'chat': {
      const { runChat } = await import('./chat');
      return runChat(rest, DEFAULT_MODEL);
    }
    case 'bench': {
      const { runBench } = await import('./bench');
      return runBench(rest);
    }
    case 'host': {
      const { runHost } = await import('./host');
      return runHost(rest);
    }
    case 'signal': {
      const { runSignal } = await import('./signal');
      return runSignal(rest);
    }
    case 'secret': {
      const { writeNewSecret } = await import('./key-file');
      if (!rest[0]) throw new FlockError('flock secret needs a PATH to write the new secret to (mode 600).');
      writeNewSecret(rest[0]);
      process.stderr.write(`flock secret: a new private swarm secret in ${rest[0]}; share it only with the swarm's members (--secret-file ${rest[0]})\n`);
      return;
    }
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(USAGE + '\n');
      return;
    default:
      throw new FlockError(`Unknown command "${cmd}".\n${USAGE}`);
  }
}

/** Node's parseArgs throws a TypeError with one of these codes for an unknown option, a missing value or a stray word. */
function isBadArgument(e: Error): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    const err = e instanceof Error ? e : new Error(String(e));
    if (isBadArgument(err)) process.stderr.write(`flock: InvalidArgumentError: ${err.message}. "flock --help" lists the commands and options.\n`);
    else process.stderr.write(`flock: ${err.name}: ${err.message}\n`);
    process.exit(1);
  },
);
