// Named errors for everything that can go wrong while reading a model file or preparing a model: one class per
// failure, each with `name` set so it survives a worker or peer boundary (src/worker/errors.ts rebuilds it).
// This file holds errors only; no logic.

export class FlockError extends Error {
  // Names are literal strings, not the class's own name: minifiers rename classes, and `name` is what a worker or
  // peer boundary carries across to rebuild the error (reviveError).
  override name = 'FlockError';
}

/** The bytes are not a GGUF file we can read: wrong magic, truncated header, bad version. */
export class GgufFormatError extends FlockError {
  override name = 'GgufFormatError';
}

/** A tensor's data would run past the end of the file, or its shape does not match its byte size. */
export class TensorBoundsError extends FlockError {
  override name = 'TensorBoundsError';
}

/** `general.architecture` names a model family Flock does not run. */
export class UnsupportedArchitectureError extends FlockError {
  override name = 'UnsupportedArchitectureError';
}

/** A tensor uses a GGML type for which Flock has no kernel. */
export class UnsupportedTensorTypeError extends FlockError {
  override name = 'UnsupportedTensorTypeError';
}

/** Metadata is missing or inconsistent (head counts that do not divide, missing tensors, …). */
export class ModelConfigError extends FlockError {
  override name = 'ModelConfigError';
}

/** The prompt plus the requested tokens do not fit in the context window. */
export class ContextOverflowError extends FlockError {
  override name = 'ContextOverflowError';
}

/** A tokenizer kind (`tokenizer.ggml.model`) we do not implement, or a broken vocabulary. */
export class TokenizerError extends FlockError {
  override name = 'TokenizerError';
}

/** Fetching bytes of a model failed (HTTP error, server without Range support, unreadable file). */
export class ModelFetchError extends FlockError {
  override name = 'ModelFetchError';
}

/** The runtime has no usable WebGPU adapter or device. */
export class WebGpuUnavailableError extends FlockError {
  override name = 'WebGpuUnavailableError';
}

/** Bad argument from a caller (negative token count, unknown option value…). */
export class InvalidArgumentError extends FlockError {
  override name = 'InvalidArgumentError';
}

/** `tokenizer.chat_template` does not parse as Jinja (or is not a string). */
export class ChatTemplateError extends FlockError {
  override name = 'ChatTemplateError';
}

/** The template failed while rendering: it called raise_exception, used an unsupported feature, or its output could
 *  not be tokenized safely. */
export class ChatTemplateRenderError extends FlockError {
  override name = 'ChatTemplateRenderError';
}

/** A chat request that is malformed: no messages, an unknown role, a value out of range, messages in an order the
 *  API does not accept. */
export class ChatRequestError extends FlockError {
  override name = 'ChatRequestError';
}

/** A valid OpenAI request that asks for something Flock does not do (n > 1, tools, logprobs, images, …). */
export class UnsupportedChatFeatureError extends FlockError {
  override name = 'UnsupportedChatFeatureError';
}

/** A step's logits held no number to choose from (every one NaN): broken weights or a device fault. */
export class InvalidLogitsError extends FlockError {
  override name = 'InvalidLogitsError';
}

/** A step stopped before it finished because the generation was aborted (Stop); the sequence that ran it is void. */
export class StepAbortedError extends FlockError {
  override name = 'StepAbortedError';
}

/** A manifest (manifest.ts) that is not one: wrong shape, a hash that is not 64 hex digits, too many or too long names. */
export class ManifestError extends FlockError {
  override name = 'ManifestError';
}

/** Tensors whose bytes do not hash to what the model's pinned manifest says: the file is damaged or altered. */
export class ManifestMismatchError extends FlockError {
  override name = 'ManifestMismatchError';
  constructor(
    message: string,
    /** the tensors that differ, by name */
    readonly tensors: string[] = [],
  ) {
    super(message);
  }
}

/** Every error class of this layer by its literal name (the worker boundary's registry, src/worker/errors.ts). */
export const MODEL_ERRORS = {
  FlockError,
  StepAbortedError,
  ChatTemplateError,
  ChatTemplateRenderError,
  ChatRequestError,
  UnsupportedChatFeatureError,
  GgufFormatError,
  TensorBoundsError,
  UnsupportedArchitectureError,
  UnsupportedTensorTypeError,
  ModelConfigError,
  ContextOverflowError,
  TokenizerError,
  ModelFetchError,
  WebGpuUnavailableError,
  InvalidArgumentError,
  InvalidLogitsError,
  ManifestError,
  ManifestMismatchError,
} as const;
