// Chat templates: turn a conversation ([{role, content}]) into the prompt token ids a model was trained on, using the
// Jinja template in the GGUF's `tokenizer.chat_template` (rendered with @huggingface/jinja), or a plain documented
// fallback for models without one. Also names the ids and strings that end an assistant turn.
// Not here: sampling, the generation loop, stop-string matching over streamed text, or the OpenAI request shape
// (all in src/engine/chat*.ts); tokenizer algorithms (./tokenizer*).
//
// Injection safety. A template's output mixes two kinds of text: the template's own (role headers, <|im_start|>,
// <|eot_id|> …), where special-token strings must become control ids, and message content, where they must not —
// a user typing "<|im_end|>\n<|im_start|>system" must get the tokens for those characters. Rendering first and then
// tokenizing the whole string with special-token parsing (what llama.cpp's server does) would lose that distinction.
// So each message's content is wrapped in markers before rendering:
//   1. render with content → the true prompt text (what llama.cpp would render);
//   2. render again with each content wrapped as MARK_OPEN(i) + content + MARK_CLOSE(i); the markers are private-use
//      characters and digits (a per-render random number), so filters such as upper/lower/title/trim leave them
//      intact, and a template cannot tell them from ordinary text;
//   3. if removing the markers gives back exactly the text of step 1, the markers say which characters came from
//      content. (Templates that trim content, like Llama 3's `content | trim`, are matched by retrying step 2 with
//      trimmed content.)
//   4. tokenize: control-token strings are looked for ONLY in the template's own text (the same longest-first
//      search llama.cpp does, limited to the control tokens that `encodeWithSpecial` finds in that text). Between two
//      control tokens, template text and content are joined and encoded together with the plain `encode()` —
//      exactly the text fragments llama.cpp would tokenize, so for content without special-token strings the ids
//      equal llama.cpp's tokenization of the rendered text with special parsing on (tested against node-llama-cpp).
//      Whitespace that a control token swallows after or before itself (Phi-3's rstrip) is removed as the tokenizer
//      would, found by probing the tokenizer rather than by knowing its rules.
// If a template cuts a marker apart (it slices or splits content), the markers cannot be trusted; then the true text
// is tokenized with special parsing, but only after checking that no message contains a control-token string; if
// one does, rendering fails with ChatTemplateRenderError rather than risk an injection.
//
// Fallback format (no `tokenizer.chat_template`): a model without a template is a text model (stories260K, base
// models), and what its user expects is that it continues their text. So the conversation is one text: the user's
// and the model's messages in order, each reply right after the text it continued, each later user message on a new
// line; system messages are left out (a text model has no notion of them). With BOS in front when the vocabulary
// wants it, and no stop strings: the model stops at its end-of-text token or the token limit. A single message is
// exactly the plain prompt `flock generate --prompt` runs.

import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { ChatTemplateError, ChatTemplateRenderError } from './errors';
import type { Tokenizer } from './tokenizer';

export { ChatTemplateError, ChatTemplateRenderError };

/** Who wrote a message. */
export type Role = 'system' | 'user' | 'assistant';

/** One message of a conversation: the one chat-message type (storage adds what it keeps beside it). */
export interface ChatMessage {
  role: Role;
  content: string;
}

export interface RenderOptions {
  /** end the prompt with the assistant header so the model writes the reply (default true) */
  addGenerationPrompt?: boolean;
  /** the clock behind `strftime_now` (Llama 3.1+ templates print today's date); default: now */
  now?: Date;
  /** further template variables, e.g. `{date_string: '26 Jul 2024'}` or `{enable_thinking: false}` */
  extra?: Record<string, unknown>;
}

export interface ChatPrompt {
  /** the rendered prompt, content included (what llama.cpp would render) */
  text: string;
  /** prompt token ids, with BOS in front when the vocabulary asks for one and the template did not write it */
  ids: number[];
  /**
   * How content was kept apart from template text: 'markers' (exact), 'markers-trimmed' (the template trims content),
   * 'checked' (markers were cut by the template; no message contained a control-token string).
   */
  isolation: 'markers' | 'markers-trimmed' | 'checked';
}

/** The template used when the GGUF has none (see the header). */
export const FALLBACK_TEMPLATE =
  "{% for message in messages if message['role'] != 'system' %}" +
  "{% if message['role'] == 'user' and not loop.first %}{{ '\\n' }}{% endif %}" +
  "{{ message['content'] }}" +
  '{% endfor %}';

/** What the fallback does, in the words the page and `flock chat` show for a model without a chat template. */
export const FALLBACK_DESCRIPTION =
  'it has no chat template, so it continues your text: your messages and its replies form one text (each new message of yours on a new line), and the system prompt is not used';

/** A control token found in template text, with the whitespace it swallows (llama.cpp's rstrip/lstrip attributes). */
interface Control {
  id: number;
  text: string;
  byteLength: number;
  stripAfter: boolean;
  stripBefore: boolean;
}

/** A piece of rendered output: template text (trusted: special strings parsed) or message content (never parsed). */
export interface PromptSegment {
  text: string;
  trusted: boolean;
}

const utf8 = new TextEncoder();

export class ChatTemplate {
  /** the Jinja source in use (FALLBACK_TEMPLATE when the model has none) */
  readonly source: string;
  readonly isFallback: boolean;
  /** the control id(s) the template writes right after an assistant reply (<|eot_id|>, <|im_end|>, <|end|>); the
   *  engine stops on these as well as on tokenizer.isEndOfGeneration, which may not know a format's turn end */
  readonly stopIds: ReadonlySet<number>;
  /** strings that end an assistant turn in this format (none so far: formats end turns with control tokens) */
  readonly stopStrings: readonly string[];
  private readonly template: Template;
  private readonly tok: Tokenizer;
  /** control tokens met so far in template text, by their string */
  private readonly controls = new Map<string, Control | null>();

  /** `source` null or undefined: the fallback format. */
  constructor(source: string | null | undefined, tokenizer: Tokenizer) {
    this.tok = tokenizer;
    this.isFallback = source === null || source === undefined;
    this.source = source ?? FALLBACK_TEMPLATE;
    try {
      this.template = new Template(this.source);
    } catch (e) {
      throw new ChatTemplateError(
        `The model's chat template (tokenizer.chat_template) does not parse: ${errorText(e)}. ` +
          'Pass a working template instead of the one in the file.',
      );
    }
    this.stopStrings = [];
    this.stopIds = this.findTurnEndIds();
  }

  /** The template from a GGUF metadata record, or the fallback when the record has none. */
  static fromMetadata(metadata: Record<string, unknown>, tokenizer: Tokenizer): ChatTemplate {
    const src = metadata['tokenizer.chat_template'];
    if (src !== undefined && typeof src !== 'string') {
      throw new ChatTemplateError(`tokenizer.chat_template should be a string, found ${typeof src}.`);
    }
    return new ChatTemplate(src === undefined || src.trim() === '' ? null : src, tokenizer);
  }

  /** The prompt text only (content included), as the template renders it. */
  render(messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
    return this.renderWith(messages.map((m) => m.content), messages, opts);
  }

  /** Render and tokenize a conversation (see the header for how content is kept from becoming control tokens). */
  apply(messages: readonly ChatMessage[], opts: RenderOptions = {}): ChatPrompt {
    const text = this.render(messages, opts);
    let segments = this.isolate(messages, opts, text, false);
    let isolation: ChatPrompt['isolation'] = 'markers';
    if (segments === null) {
      segments = this.isolate(messages, opts, text, true);
      isolation = 'markers-trimmed';
    }
    if (segments === null) {
      this.checkNoControls(messages);
      segments = [{ text, trusted: true }];
      isolation = 'checked';
    }
    const ids = this.encodeSegments(segments);
    const bos = this.tok.bosId;
    if (this.tok.addBos && bos !== null && ids[0] !== bos) ids.unshift(bos);
    return { text, ids, isolation };
  }

  /**
   * Token ids for rendered segments: control tokens only from trusted text; the text between two control tokens
   * (trusted and untrusted joined) goes through the plain encode(), as llama.cpp tokenizes each text fragment.
   */
  encodeSegments(segments: readonly PromptSegment[]): number[] {
    // Control tokens that the trusted text uses, longest first like the tokenizers' own special-token search.
    for (const s of segments) if (s.trusted) this.learnControls(s.text);
    const known = [...this.controls.values()].filter((c): c is Control => c !== null);
    known.sort((a, b) => b.byteLength - a.byteLength || a.id - b.id);

    // Fragments: strings still to encode as plain text, Controls already found.
    const items: (string | Control)[] = [];
    const pushText = (t: string): void => {
      if (t === '') return;
      const last = items[items.length - 1];
      if (typeof last === 'string') items[items.length - 1] = last + t;
      else items.push(t);
    };
    for (const s of segments) {
      if (!s.trusted) {
        pushText(s.text);
        continue;
      }
      for (const piece of partition(s.text, known)) {
        if (typeof piece === 'string') pushText(piece);
        else items.push(piece);
      }
    }

    // Whitespace swallowed by control tokens (C isspace, as llama.cpp's rstrip/lstrip).
    for (let i = 0; i < items.length; i++) {
      const c = items[i];
      if (typeof c === 'string') continue;
      const before = items[i - 1];
      const after = items[i + 1];
      if (c.stripBefore && typeof before === 'string') items[i - 1] = before.replace(/[ \t\n\v\f\r]+$/, '');
      if (c.stripAfter && typeof after === 'string') items[i + 1] = after.replace(/^[ \t\n\v\f\r]+/, '');
    }

    const ids: number[] = [];
    for (const it of items) {
      if (typeof it !== 'string') ids.push(it.id);
      else if (it !== '') ids.push(...this.tok.encode(it));
    }
    return ids;
  }

  private renderWith(contents: readonly string[], messages: readonly ChatMessage[], opts: RenderOptions): string {
    const now = opts.now ?? new Date();
    const bos = this.tok.bosId;
    const eos = this.tok.eosId;
    const context: Record<string, unknown> = {
      // The globals Template.render would declare (false/true/none, range), which we must repeat because we run the
      // interpreter ourselves: Template.render declares its own raise_exception and strftime_now, and a variable
      // cannot be declared twice.
      false: false,
      true: true,
      none: null,
      False: false,
      True: true,
      None: null,
      range: pyRange,
      ...opts.extra,
      messages: messages.map((m, i) => ({ role: m.role, content: contents[i] })),
      add_generation_prompt: opts.addGenerationPrompt ?? true,
      bos_token: bos === null ? '' : this.tok.tokenText(bos),
      eos_token: eos === null ? '' : this.tok.tokenText(eos),
      // Hugging Face's helpers as transformers provides them, with our error and a C-locale, testable clock.
      raise_exception: (message: unknown): never => {
        throw new ChatTemplateRenderError(`The chat template refused these messages: ${String(message)}`);
      },
      strftime_now: (format: unknown): string => strftime(now, String(format)),
    };
    try {
      const env = new Environment();
      for (const [k, v] of Object.entries(context)) env.set(k, v);
      const out: unknown = new Interpreter(env).run(this.template.parsed).value;
      if (typeof out !== 'string') throw new ChatTemplateRenderError('The chat template did not produce text.');
      return out;
    } catch (e) {
      if (e instanceof ChatTemplateRenderError) throw e;
      throw new ChatTemplateRenderError(`The chat template failed while rendering: ${errorText(e)}`);
    }
  }

  /**
   * Segments of `text` by origin, from a render with each content wrapped in markers; null when the markers do not
   * reproduce `text` exactly (the template changed or cut the content).
   */
  private isolate(messages: readonly ChatMessage[], opts: RenderOptions, text: string, trim: boolean): PromptSegment[] | null {
    const nonce = markerNonce(messages);
    // Private-use characters and digits only: no Jinja filter changes them (upper/lower/title/trim/replace of text).
    const open = (i: number) => `\uE000${nonce}\uE001${i}\uE003`;
    const close = (i: number) => `\uE000${nonce}\uE002${i}\uE003`;
    const wrapped = messages.map((m, i) => open(i) + (trim ? m.content.trim() : m.content) + close(i));
    const marked = this.renderWith(wrapped, messages, opts);
    const re = new RegExp(`\uE000${nonce}([\uE001\uE002])(\\d+)\uE003`, 'g');
    const segments: PromptSegment[] = [];
    let at = 0;
    let inside: string | null = null;
    for (let m = re.exec(marked); m !== null; m = re.exec(marked)) {
      const piece = marked.slice(at, m.index);
      at = m.index + m[0].length;
      if (m[1] === '\uE001') {
        if (inside !== null) return null;
        if (piece !== '') segments.push({ text: piece, trusted: true });
        inside = m[2];
      } else {
        if (inside !== m[2]) return null;
        if (piece !== '') segments.push({ text: piece, trusted: false });
        inside = null;
      }
    }
    if (inside !== null) return null;
    const rest = marked.slice(at);
    if (rest !== '') segments.push({ text: rest, trusted: true });
    return segments.map((s) => s.text).join('') === text ? segments : null;
  }

  /** Remember the control tokens that encodeWithSpecial finds in trusted text. */
  private learnControls(text: string): void {
    for (const id of this.tok.encodeWithSpecial(text)) {
      // Control and unknown tokens, and only they, decode to nothing (the Tokenizer contract); normal, byte and
      // user-defined pieces are text, which plain encode() produces by itself.
      if (this.tok.tokenBytes(id, false).length !== 0) continue;
      const s = this.tok.tokenText(id);
      if (this.controls.has(s)) continue;
      const alone = this.tok.encodeWithSpecial(s);
      if (alone.length !== 1 || alone[0] !== id || s === '') {
        this.controls.set(s, null);
        continue;
      }
      // Probe the whitespace handling: a token that swallows the space after (before) it encodes "s " (" s") alone.
      this.controls.set(s, {
        id,
        text: s,
        byteLength: utf8.encode(s).length,
        stripAfter: sameIds(this.tok.encodeWithSpecial(s + ' '), alone),
        stripBefore: sameIds(this.tok.encodeWithSpecial(' ' + s), alone),
      });
    }
  }

  /** Refuse content that would contain a control token if tokenized with special parsing. */
  private checkNoControls(messages: readonly ChatMessage[]): void {
    for (const m of messages) {
      for (const id of this.tok.encodeWithSpecial(m.content)) {
        if (this.tok.tokenBytes(id, false).length === 0) {
          throw new ChatTemplateRenderError(
            `A ${m.role} message contains the control token ${JSON.stringify(this.tok.tokenText(id))}, and this chat ` +
              'template reshapes message content too much for Flock to keep it as plain text. Remove that text.',
          );
        }
      }
    }
  }

  /** Control ids the template writes right after an assistant message (its end-of-turn token). */
  private findTurnEndIds(): Set<number> {
    const out = new Set<number>();
    const probe: ChatMessage[] = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello' },
    ];
    let segments: PromptSegment[] | null;
    try {
      segments = this.isolate(probe, { addGenerationPrompt: false }, this.render(probe, { addGenerationPrompt: false }), false);
    } catch {
      return out; // a template that refuses this probe (e.g. it demands a system message) still works for chat
    }
    if (segments === null) return out;
    let afterReply = false;
    for (const s of segments) {
      if (!s.trusted) {
        afterReply = s.text === 'Hello';
        continue;
      }
      if (!afterReply) continue;
      // The first control token after the reply, if it comes before any other text, ends the turn.
      const lead = s.text.replace(/^[ \t\n\v\f\r]+/, '');
      const ids = this.tok.encodeWithSpecial(lead);
      if (ids.length > 0 && this.tok.tokenBytes(ids[0], false).length === 0) {
        out.add(ids[0]);
      }
      afterReply = false;
    }
    return out;
  }
}

/** Split trusted text at control-token strings, longest first (llama.cpp's tokenizer_st_partition). */
function partition(text: string, controls: readonly Control[]): (string | Control)[] {
  let pieces: (string | Control)[] = [text];
  for (const c of controls) {
    if (!text.includes(c.text)) continue;
    const next: (string | Control)[] = [];
    for (const p of pieces) {
      if (typeof p !== 'string') {
        next.push(p);
        continue;
      }
      let pos = 0;
      for (let at = p.indexOf(c.text); at >= 0; at = p.indexOf(c.text, pos)) {
        if (at > pos) next.push(p.slice(pos, at));
        next.push(c);
        pos = at + c.text.length;
      }
      if (pos < p.length) next.push(p.slice(pos));
    }
    pieces = next;
  }
  return pieces;
}

/** Digits that occur in no message, so a marker cannot be forged by content (and survives upper/lower/title). */
function markerNonce(messages: readonly ChatMessage[]): string {
  for (;;) {
    const n = String(Math.floor(Math.random() * 1e12)).padStart(12, '0');
    if (!messages.some((m) => m.content.includes(n))) return n;
  }
}

/** Python's range(), as @huggingface/jinja defines it for templates. */
function pyRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new ChatTemplateRenderError('range() step must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October',
  'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/**
 * Python's strftime in the C locale (what transformers' strftime_now gives), local time. Llama 3.1+ templates call
 * strftime_now("%d %b %Y"); @huggingface/jinja's own version uses the host locale for month names.
 */
export function strftime(d: Date, format: string): string {
  const p2 = (n: number) => String(n).padStart(2, '0');
  return format.replace(/%([aAbBdeHIjmMpSyY%])/g, (_, c: string) => {
    switch (c) {
      case 'a': return DAYS[d.getDay()].slice(0, 3);
      case 'A': return DAYS[d.getDay()];
      case 'b': return MONTHS[d.getMonth()].slice(0, 3);
      case 'B': return MONTHS[d.getMonth()];
      case 'd': return p2(d.getDate());
      case 'e': return String(d.getDate()).padStart(2, ' ');
      case 'H': return p2(d.getHours());
      case 'I': return p2(((d.getHours() + 11) % 12) + 1);
      case 'j': {
        const start = new Date(d.getFullYear(), 0, 1);
        const day = Math.round((new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() - start.getTime()) / 86_400_000) + 1;
        return String(day).padStart(3, '0');
      }
      case 'm': return p2(d.getMonth() + 1);
      case 'M': return p2(d.getMinutes());
      case 'p': return d.getHours() < 12 ? 'AM' : 'PM';
      case 'S': return p2(d.getSeconds());
      case 'y': return p2(d.getFullYear() % 100);
      case 'Y': return String(d.getFullYear());
      default: return '%';
    }
  });
}
