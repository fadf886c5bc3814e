// The short list of real GGUF files on Hugging Face that the model picker offers, with their sizes (as listed on
// huggingface.co, 3 significant digits). Whether this build can run one is decided at run time from the file's header
// (src/worker/inspect.ts), never assumed here; tests/ui/catalog.test.ts checks every entry against its model's shapes
// and the tensor-type mix llama.cpp writes for it (runnable, parity-tested types, sizes that add up).
// Not here: downloading (src/storage/model-cache.ts).

export interface CatalogEntry {
  name: string;
  quant: 'Q8_0' | 'Q4_K_M';
  url: string;
  /** the file's size in bytes, rounded to 3 significant digits, for display before the header is fetched */
  size: number;
}

const hf = (repo: string, file: string) => `https://huggingface.co/${repo}/resolve/main/${file}`;

export const CATALOG: readonly CatalogEntry[] = [
  { name: 'SmolLM2-135M-Instruct', quant: 'Q8_0', size: 145e6, url: hf('bartowski/SmolLM2-135M-Instruct-GGUF', 'SmolLM2-135M-Instruct-Q8_0.gguf') },
  { name: 'SmolLM2-135M-Instruct', quant: 'Q4_K_M', size: 105e6, url: hf('bartowski/SmolLM2-135M-Instruct-GGUF', 'SmolLM2-135M-Instruct-Q4_K_M.gguf') },
  { name: 'Qwen2.5-0.5B-Instruct', quant: 'Q8_0', size: 676e6, url: hf('Qwen/Qwen2.5-0.5B-Instruct-GGUF', 'qwen2.5-0.5b-instruct-q8_0.gguf') },
  { name: 'Qwen2.5-0.5B-Instruct', quant: 'Q4_K_M', size: 491e6, url: hf('Qwen/Qwen2.5-0.5B-Instruct-GGUF', 'qwen2.5-0.5b-instruct-q4_k_m.gguf') },
  { name: 'Llama-3.2-1B-Instruct', quant: 'Q8_0', size: 1.32e9, url: hf('bartowski/Llama-3.2-1B-Instruct-GGUF', 'Llama-3.2-1B-Instruct-Q8_0.gguf') },
  { name: 'Llama-3.2-1B-Instruct', quant: 'Q4_K_M', size: 808e6, url: hf('bartowski/Llama-3.2-1B-Instruct-GGUF', 'Llama-3.2-1B-Instruct-Q4_K_M.gguf') },
];
