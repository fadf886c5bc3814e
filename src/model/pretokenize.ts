// Pre-tokenizers for byte-level BPE vocabularies: the rules that cut text into "words" before BPE merges run inside
// each word. A GGUF file names its rule set in `tokenizer.ggml.pre` ("llama-bpe", "qwen2", "gpt-2", …); this file maps
// those names to the splitting steps llama.cpp applies for them (src/llama-vocab.cpp and src/unicode.cpp there), so
// that our words, and therefore our token ids, are llama.cpp's.
// Not here: the byte-to-unicode mapping, merging, special tokens (all in ./tokenizer-bpe), or Hugging Face's
// pre-tokenizer JSON (GGUF stores only the name).
//
// How a rule set is applied (llama.cpp's unicode_regex_split): the text starts as one piece; each step is a regular
// expression run over every current piece separately, and both its matches and the stretches between matches become
// pieces. Because a piece is searched on its own, a lookahead such as `\s+(?!\S)` sees the end of the piece as the
// end of the text.
//
// Our patterns are JavaScript regular expressions (`u` flag) that reproduce what llama.cpp computes, which is not
// always what the pattern in the model's tokenizer.json would compute:
//   - "\s" means llama.cpp's whitespace: the Unicode White_Space set (which, unlike JavaScript's \s, includes U+0085
//     and excludes U+FEFF). Non-ASCII whitespace is replaced by U+000B before matching, exactly as llama.cpp does, so
//     a pattern that names U+3000 literally (DeepSeek's punctuation class) does not match it, as in llama.cpp.
//   - Case-insensitive contractions are spelled out ('[sS]…); llama.cpp cannot run (?i:…) either.
//   - Upper/lower-case letter classes are approximated the way llama.cpp approximates them (any non-ASCII letter
//     counts as both), which keeps Tekken's and GPT-4o's rules faithful to llama.cpp rather than to Hugging Face.
//   - Possessive quantifiers and atomic groups never appear: llama.cpp's adapted patterns already avoid them.
// Letter, number, punctuation, mark and symbol classes come from JavaScript's Unicode tables (Unicode 15 in Node 20);
// llama.cpp carries its own copy of the tables, so code points assigned in a newer Unicode version may differ.

import { TokenizerError } from './errors';

/** How one `tokenizer.ggml.pre` value tokenizes, beyond its splitting steps. */
export interface PreTokenizerSpec {
  /** The names (values of `tokenizer.ggml.pre`) that select this rule set. */
  readonly names: readonly string[];
  /** Splitting steps, applied in order (see the header). */
  readonly steps: readonly string[];
  /** A whole word that is itself a vocabulary piece becomes that piece without merging (Llama 3, Tekken). */
  readonly ignoreMerges: boolean;
  /** llama.cpp's default for add_bos_token when the file does not say (true for Llama 3 and Tekken). */
  readonly addBosDefault: boolean;
  /** llama.cpp's default BOS id (11 for byte-level BPE files, none for ChatGLM) when the file names none. */
  readonly bosDefault: number | null;
  /**
   * Whether llama.cpp's detokenizer "cleans up" spaces for this rule set (drops the space in " ," " ." " 's" …, as
   * Hugging Face's clean_up_tokenization_spaces does). Flock's decode() never does: it would break exact round trips
   * and streaming. Recorded for comparing with llama.cpp in tests.
   */
  readonly cleanSpaces: boolean;
}

// Building blocks shared by many rule sets.
const CONTRACTIONS = "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]";
/** GPT-2's rule; llama.cpp's hand-written scanner for it also takes a final run of whitespace (the last `\s+`). */
const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/** The Llama 3 / cl100k rule: digits in groups of up to three, punctuation keeps trailing newlines. */
const LLAMA3 =
  `(?:${CONTRACTIONS})|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|` +
  '\\s+(?!\\S)|\\s+';
/** Qwen2's rule: Llama 3's with single digits. */
const QWEN2 =
  `(?:${CONTRACTIONS})|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|` +
  '\\s+(?!\\S)|\\s+';
/** Qwen3.5's rule: Qwen2's with combining marks kept inside words. */
const QWEN35 =
  `(?:${CONTRACTIONS})|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|` +
  '\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
/** "Upper-case run then lower-case run" as llama.cpp approximates it: a letter that is not a-z, then not A-Z. */
const UPPER = '(?:(?=\\p{L})[^a-z])';
const LOWER = '(?:(?=\\p{L})[^A-Z])';
const GPT4O =
  `[^\\r\\n\\p{L}\\p{N}]?${UPPER}*${LOWER}+(?:${CONTRACTIONS})?|[^\\r\\n\\p{L}\\p{N}]?${UPPER}+${LOWER}*` +
  `(?:${CONTRACTIONS})?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const TEKKEN =
  `[^\\r\\n\\p{L}\\p{N}]?${UPPER}*${LOWER}+|[^\\r\\n\\p{L}\\p{N}]?${UPPER}+${LOWER}*|\\p{N}|` +
  ' ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
/** DeepSeek's CJK/Hangul class (U+0800..U+4E00 is as broad as it looks). */
const DEEPSEEK_CJK = '[\\u{4E00}-\\u{9FA5}\\u{800}-\\u{4E00}\\u{AC00}-\\u{D7FF}]+';
/** DeepSeek LLM's letter class: ASCII letters and the cased letters of many scripts, as its tokenizer lists them. */
const DEEPSEEK_LETTERS =
  'A-Za-z\\u{B5}\\u{C0}-\\u{D6}\\u{D8}-\\u{F6}\\u{F8}-\\u{1BA}\\u{1BC}-\\u{1BF}\\u{1C4}-\\u{293}\\u{295}-\\u{2AF}' +
  '\\u{370}-\\u{373}\\u{376}\\u{377}\\u{37B}-\\u{37D}\\u{37F}\\u{386}\\u{388}-\\u{38A}\\u{38C}\\u{38E}-\\u{3A1}' +
  '\\u{3A3}-\\u{3F5}\\u{3F7}-\\u{481}\\u{48A}-\\u{52F}\\u{531}-\\u{556}\\u{10A0}-\\u{10C5}\\u{13A0}-\\u{13F5}' +
  '\\u{13F8}-\\u{13FD}\\u{1C90}-\\u{1CBA}\\u{1CBD}-\\u{1CBF}\\u{1D00}-\\u{1D2B}\\u{1D6B}-\\u{1D77}\\u{1D79}-\\u{1D9A}' +
  '\\u{1E00}-\\u{1F15}\\u{1F18}-\\u{1F1D}\\u{1F20}-\\u{1F45}\\u{1F48}-\\u{1F4D}\\u{1F50}-\\u{1F57}\\u{1F59}\\u{1F5B}' +
  '\\u{1F5D}\\u{1F5F}-\\u{1F7D}\\u{1F80}-\\u{1FB4}\\u{1FB6}-\\u{1FBC}\\u{1FBE}\\u{1FC2}-\\u{1FC4}\\u{1FC6}-\\u{1FCC}' +
  '\\u{1FD0}-\\u{1FD3}\\u{1FD6}-\\u{1FDB}\\u{1FE0}-\\u{1FEC}\\u{1FF2}-\\u{1FF4}\\u{1FF6}-\\u{1FFC}\\u{2102}\\u{2107}' +
  '\\u{210A}-\\u{2113}\\u{2115}\\u{2119}-\\u{211D}\\u{2124}\\u{2126}\\u{2128}\\u{212A}-\\u{212D}\\u{212F}-\\u{2134}' +
  '\\u{2139}\\u{213C}-\\u{213F}\\u{2145}-\\u{2149}\\u{214E}\\u{2183}\\u{2184}\\u{2C00}-\\u{2C7B}\\u{2C7E}-\\u{2CE4}' +
  '\\u{2CEB}-\\u{2CEE}\\u{2CF2}\\u{2CF3}\\u{A640}-\\u{A66D}\\u{A680}-\\u{A69B}\\u{A722}-\\u{A76F}\\u{A771}-\\u{A787}' +
  '\\u{A78B}-\\u{A78E}\\u{AB70}-\\u{ABBF}\\u{FB00}-\\u{FB06}\\u{FB13}-\\u{FB17}\\u{FF21}-\\u{FF3A}\\u{FF41}-\\u{FF5A}' +
  '\\u{10400}-\\u{1044F}\\u{104B0}-\\u{104D3}\\u{104D8}-\\u{104FB}\\u{10C80}-\\u{10CB2}\\u{10CC0}-\\u{10CF2}' +
  '\\u{118A0}-\\u{118DF}\\u{1E900}-\\u{1E943}';
/** Bloom/Poro: everything up to whitespace or sentence punctuation (the parentheses and "|" are literal). */
const PORO = ' ?[^(\\s|.,!?…。，、।۔،)]+';

interface Entry {
  names: string[];
  steps: string[];
  ignoreMerges?: boolean;
  addBos?: boolean;
  noBos?: boolean;
  cleanSpaces?: boolean;
}

// Grouped as llama.cpp groups them. cleanSpaces defaults to true there and is switched off per name.
const ENTRIES: Entry[] = [
  { names: ['default'], steps: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'] },
  {
    names: ['llama3', 'llama-v3', 'llama-bpe', 'falcon3', 'falcon-h1', 'pixtral', 'midm-2.0', 'lfm2'],
    steps: [LLAMA3],
    ignoreMerges: true,
    addBos: true,
  },
  { names: ['dbrx', 'smaug-bpe'], steps: [LLAMA3] },
  { names: ['chatglm-bpe', 'glm4'], steps: [LLAMA3], noBos: true },
  {
    names: ['jais-2'],
    steps: [
      `(?:${CONTRACTIONS})|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|` +
        [512, 256, 128, 64, 32, 16, 8, 4].map((n) => `\\s{${n}}(?!\\S)|`).join('') +
        '\\s{1,2}(?!\\S)|\\s{1}',
    ],
  },
  {
    names: ['deepseek-llm'],
    steps: [
      '[\\r\\n]',
      `\\s?[${DEEPSEEK_LETTERS}]+`,
      '\\s?[!-/:-~\\u{FF01}-\\u{FF0F}\\u{FF1A}-\\u{FF5E}\\u{2018}-\\u{201F}\\u{3000}-\\u{3002}]+',
      '\\s+$',
      DEEPSEEK_CJK,
      '\\p{N}+',
    ],
    cleanSpaces: false,
  },
  {
    names: ['deepseek-coder'],
    steps: ['[\\r\\n]', '\\s?\\p{L}+', '\\s?\\p{P}+', DEEPSEEK_CJK, '\\p{N}'],
    cleanSpaces: false,
  },
  {
    names: ['deepseek-v3', 'hunyuan-dense', 'joyai-llm'],
    steps: [
      '\\p{N}{1,3}',
      '[\\u{4E00}-\\u{9FA5}\\u{3040}-\\u{309F}\\u{30A0}-\\u{30FF}]+',
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|" +
        ' ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
    ],
    cleanSpaces: false,
  },
  { names: ['falcon'], steps: ['[\\p{P}\\$\\+<=>\\^~\\|`]+', GPT2, '[0-9][0-9][0-9]'] },
  { names: ['starcoder', 'refact', 'codeshell', 'exaone', 'minerva-7b', 'mellum2'], steps: ['\\p{N}', GPT2] },
  { names: ['command-r', 'smollm'], steps: ['\\p{N}', GPT2], cleanSpaces: false },
  { names: ['gpt-2', 'phi-2', 'gigachat', 'a.x-4.0', 'mellum', 'exaone4', 'mpt', 'olmo', 'jais'], steps: [GPT2] },
  { names: ['trillion', 'granite-docling'], steps: [GPT2], cleanSpaces: false },
  { names: ['stablelm2', 'megrez'], steps: [QWEN2] },
  {
    names: ['qwen2', 'deepseek-r1-qwen', 'kormo', 'f2llmv2', 'hunyuan', 'solar-open', 'grok-2'],
    steps: [QWEN2],
    cleanSpaces: false,
  },
  { names: ['qwen35'], steps: [QWEN35], cleanSpaces: false },
  { names: ['laguna'], steps: ['[^\\n]+|[\\n]+', QWEN2], cleanSpaces: false },
  { names: ['bloom', 'gpt3-finnish'], steps: [PORO] },
  { names: ['poro-chat'], steps: [PORO], cleanSpaces: false },
  { names: ['viking'], steps: [PORO, '\\p{N}'], cleanSpaces: false },
  { names: ['tekken'], steps: [TEKKEN], ignoreMerges: true, addBos: true, cleanSpaces: false },
  { names: ['gpt-4o', 'llama4', 'kanana2', 'talkie', 'minimax-m2'], steps: [GPT4O], cleanSpaces: false },
  {
    names: ['bailingmoe', 'bailingmoe2', 'llada-moe'],
    steps: [
      "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|" +
        ' ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+',
    ],
    cleanSpaces: false,
  },
  {
    names: ['seed-coder'],
    steps: [
      `(?:${CONTRACTIONS})|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|` +
        '\\s+(?!\\S)|\\s+',
    ],
    cleanSpaces: false,
  },
  {
    names: ['exaone-moe'],
    steps: [
      `(?:${CONTRACTIONS})|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}|` +
        ' ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+',
    ],
  },
  {
    names: ['minicpm5'],
    steps: [
      '\\p{N}{1,3}',
      `(?:${CONTRACTIONS})|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|` +
        '\\s+(?!\\S)|\\s+',
    ],
    ignoreMerges: true,
  },
];

/** Every `tokenizer.ggml.pre` value Flock accepts. A file without the key gets "default", as in llama.cpp. */
export const SUPPORTED_PRE_TOKENIZERS: readonly string[] = ENTRIES.flatMap((e) => e.names);

/**
 * Non-ASCII White_Space code points (all in the BMP, so replacing one keeps every UTF-16 offset). llama.cpp turns
 * them into U+000B before matching; so do we.
 */
const NON_ASCII_SPACE = /[\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/g;

/** A compiled rule set: cut text into the words BPE merges within. */
export class PreTokenizer {
  readonly spec: PreTokenizerSpec;
  private readonly steps: RegExp[];

  constructor(spec: PreTokenizerSpec) {
    this.spec = spec;
    this.steps = spec.steps.map(compile);
  }

  /** The words of `text`, in order; their concatenation is `text`. */
  split(text: string): string[] {
    if (text.length === 0) return [];
    const probe = text.replace(NON_ASCII_SPACE, '\v');
    // ends[i] is where piece i ends; piece i starts where piece i - 1 ends.
    let ends = [text.length];
    for (const re of this.steps) {
      const next: number[] = [];
      let start = 0;
      for (const end of ends) {
        const piece = probe.slice(start, end);
        let last = 0;
        re.lastIndex = 0;
        for (let m = re.exec(piece); m !== null; m = re.exec(piece)) {
          if (m[0].length === 0) {
            re.lastIndex++; // none of our patterns matches empty; guard against an endless loop anyway
            continue;
          }
          if (m.index > last) next.push(start + m.index);
          last = m.index + m[0].length;
          next.push(start + last);
        }
        if (last < piece.length) next.push(end);
        start = end;
      }
      ends = next;
    }
    const words: string[] = [];
    let start = 0;
    for (const end of ends) {
      words.push(text.slice(start, end));
      start = end;
    }
    return words;
  }
}

/** The rule set `tokenizer.ggml.pre` names; TokenizerError for names Flock does not know. */
export function preTokenizerFor(pre: string | undefined): PreTokenizer {
  const name = pre ?? 'default';
  const entry = ENTRIES.find((e) => e.names.includes(name));
  if (!entry) {
    throw new TokenizerError(
      `tokenizer.ggml.pre = ${JSON.stringify(name)} is a pre-tokenizer Flock does not implement; supported: ` +
        `${SUPPORTED_PRE_TOKENIZERS.join(', ')}. Use a model converted with one of these.`,
    );
  }
  return new PreTokenizer({
    names: entry.names,
    steps: entry.steps,
    ignoreMerges: entry.ignoreMerges ?? false,
    addBosDefault: entry.addBos ?? false,
    bosDefault: entry.noBos ? null : 11,
    cleanSpaces: entry.cleanSpaces ?? true,
  });
}

/**
 * Our pattern dialect to a JavaScript RegExp: `\s` becomes the ASCII whitespace class (non-ASCII whitespace was
 * already folded into U+000B, see NON_ASCII_SPACE) and `\S` its complement; everything else is JavaScript syntax.
 */
function compile(source: string): RegExp {
  let out = '';
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') {
      const n = source[i + 1];
      i++;
      if (n === 's') out += inClass ? '\\t-\\r ' : '[\\t-\\r ]';
      else if (n === 'S' && !inClass) out += '[^\\t-\\r ]';
      else if (n === 'S') throw new Error(`pre-tokenizer pattern uses \\S inside a class: ${source}`);
      else out += c + n;
      continue;
    }
    if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    out += c;
  }
  return new RegExp(out, 'gu');
}
