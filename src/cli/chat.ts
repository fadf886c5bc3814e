// `flock chat`: an interactive terminal chat with a local GGUF model through Dawn. The conversation is kept and sent
// with every turn (the KV cache of the last reply is reused, so a turn runs only its new tokens), rendered with the
// model's chat template, or for models without one (the default stories260K) the text-continuation fallback the page
// uses too; replies stream as they are generated. Ctrl-C stops a reply, Ctrl-C at the prompt (or /exit, or end of
// input) quits. Argument parsing and terminal I/O only; the chat API is src/engine/chat.ts.

import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { ChatCompletionMessageParam } from '@mlc-ai/web-llm';
import { FlockChatEngine } from '../engine/chat';
import { PrefixCache } from '../engine/generate';
import { FALLBACK_DESCRIPTION } from '../model/chat-template';
import { LocalModel } from '../engine/local-model';
import { FlockError } from '../model/errors';
import { openSource } from '../model/source-file';
import { nodeDevice } from './dawn';

export const CHAT_USAGE = `  flock chat     [--model PATH|URL] [--system TEXT] [--temperature T] [--top-p P] [--max-tokens N]
                 [--seed S] [--repetition-penalty R] [--stop TEXT]... [--template FILE] [--max-context N]`;

/** How a reply's end shows in the terminal (a reply the model finished ends with a plain newline). */
const FINISH_MARK: Partial<Record<string, string>> = { abort: ' [stopped]\n', length: ' [max tokens]\n', context: ' [the context is full]\n' };

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new FlockError(`--${name} expects a number, got "${v}"`);
  return n;
}

export async function runChat(argv: string[], defaultModel: string): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string', default: defaultModel },
      system: { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'max-tokens': { type: 'string', default: '256' },
      seed: { type: 'string' },
      'repetition-penalty': { type: 'string' },
      stop: { type: 'string', multiple: true },
      template: { type: 'string' },
      'max-context': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`Usage:\n${CHAT_USAGE}\n\nThe default model is the embedded stories260K (no chat template: it continues your text).\n`);
    return;
  }
  const dev = await nodeDevice();
  const model = await LocalModel.load(dev, openSource(values.model!), { maxContext: num(values['max-context'], 'max-context') });
  const cache = new PrefixCache();
  const engine = new FlockChatEngine(model, { cache, ...(values.template ? { chatTemplate: readFileSync(values.template, 'utf8') } : {}) });
  const out = process.stdout;
  out.write(
    `${engine.modelName} on ${dev.adapterName}; ${engine.template.isFallback ? FALLBACK_DESCRIPTION : values.template ? `chat template from ${values.template}` : 'chat template from the file'}.\n` +
      'Type a message; Ctrl-C stops a reply; /exit or Ctrl-C at the prompt quits.\n',
  );

  const history: ChatCompletionMessageParam[] = values.system ? [{ role: 'system', content: values.system }] : [];
  const rl = createInterface({ input: process.stdin, output: out, terminal: process.stdin.isTTY === true });
  let generating = false;
  // In a terminal readline turns Ctrl-C into its own SIGINT event; with piped input the process gets the signal.
  const onInterrupt = (): void => {
    if (generating) engine.interruptGenerate();
    else rl.close();
  };
  rl.on('SIGINT', onInterrupt);
  process.on('SIGINT', onInterrupt);
  // Lines are queued: piped input arrives all at once, long before the replies to earlier lines are done.
  const lines: string[] = [];
  let ended = false;
  let waiting: ((line: string | null) => void) | null = null;
  rl.on('line', (line) => {
    if (waiting) {
      const w = waiting;
      waiting = null;
      if (!process.stdin.isTTY) out.write(`${line}\n`); // after the prompt we printed; a terminal echoed it already
      w(line);
    } else {
      lines.push(line);
    }
  });
  rl.on('close', () => {
    ended = true;
    waiting?.(null);
    waiting = null;
  });
  rl.setPrompt('> ');
  const ask = (): Promise<string | null> => {
    const queued = lines.shift();
    if (queued !== undefined) {
      if (!process.stdin.isTTY) out.write(`> ${queued}\n`); // a terminal already echoed it
      return Promise.resolve(queued);
    }
    if (ended) return Promise.resolve(null);
    rl.prompt();
    return new Promise((resolve) => (waiting = resolve));
  };

  try {
    for (;;) {
      const line = await ask();
      if (line === null || line.trim() === '/exit') break;
      if (line.trim() === '') continue;
      history.push({ role: 'user', content: line });
      generating = true;
      let reply = '';
      let finish = '';
      try {
        const chunks = await engine.chat.completions.create({
          messages: history,
          stream: true,
          temperature: num(values.temperature, 'temperature'),
          top_p: num(values['top-p'], 'top-p'),
          max_tokens: num(values['max-tokens'], 'max-tokens'),
          seed: num(values.seed, 'seed'),
          repetition_penalty: num(values['repetition-penalty'], 'repetition-penalty'),
          stop: values.stop,
        });
        for await (const chunk of chunks) {
          const choice = chunk.choices[0];
          const text = choice?.delta.content ?? '';
          reply += text;
          out.write(text);
          if (chunk.flock.reply) finish = chunk.flock.reply.finish;
        }
      } finally {
        generating = false;
      }
      out.write(FINISH_MARK[finish] ?? '\n');
      history.push({ role: 'assistant', content: reply });
    }
  } finally {
    process.off('SIGINT', onInterrupt);
    rl.close();
    await engine.unload();
  }
}
