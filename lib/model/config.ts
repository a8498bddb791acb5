// LlamaConfig (Hugging Face keys), LoRA options, their validation, and the presets the engine trains well on CPU.
import { show } from '../io/show.js';

/** Hugging Face LlamaConfig fields the engine uses (config.json keys). */
export interface LlamaConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  vocab_size: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  /**
   * Linear RoPE scaling as transformers reads it: positions divided by `factor` (absent or null: plain RoPE).
   * A factor of 1e9 turns the rotation off within any context the presets have: no positional encoding
   * (NoPE), which the README measures to extrapolate in N where RoPE does not.
   */
  rope_scaling?: LinearRopeScaling | null;
  tie_word_embeddings: boolean;
  /** std of the normal init of linear and embedding weights (HF default 0.02). */
  initializer_range?: number;
}

/** The one RoPE scaling the engine implements (transformers' `linear`). */
export interface LinearRopeScaling {
  rope_type: 'linear';
  factor: number;
}

/** The factor that makes linear RoPE scaling a model without positional encoding (NoPE). */
export const NOPE_ROPE_FACTOR = 1e9;

/** PEFT LoRA options: y = W x + (alpha / r) B A dropout(x). */
export interface LoraOptions {
  r: number;
  alpha: number;
  dropout: number;
  /** Module names: 'q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj' (or 'all-linear'). */
  targets: string[];
}

export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;

/** What the puzzle presets share: the 32-character vocabulary (tied to the head) and 256 positions. */
const PUZZLE_VOCAB_256 = { vocab_size: 32, max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true };

/**
 * Presets sized for this engine. `tiny` trains a puzzle model in minutes on two CPU cores:
 * 4 layers, hidden 192 (6 heads of 32, 2 key-value heads: GQA), SwiGLU 512, 256 positions (prompt plus
 * the longest responses of the evaluation sets). `mini` is the same depth at hidden 128 (4 heads of 32):
 * 1.6x the steps per CPU-second, which within ten minutes learns more than tiny's extra width (the
 * README's results table).
 */
export const PRESETS = {
  mini: {
    hidden_size: 128,
    intermediate_size: 352,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    ...PUZZLE_VOCAB_256,
  },
  tiny: {
    hidden_size: 192,
    intermediate_size: 512,
    num_hidden_layers: 4,
    num_attention_heads: 6,
    num_key_value_heads: 2,
    ...PUZZLE_VOCAB_256,
  },
  small: {
    hidden_size: 384,
    intermediate_size: 1024,
    num_hidden_layers: 6,
    num_attention_heads: 6,
    num_key_value_heads: 2,
    ...PUZZLE_VOCAB_256,
  },
  /** A GPU-sized from-scratch model (75.5M parameters). */
  base: {
    hidden_size: 768,
    intermediate_size: 2048,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    num_key_value_heads: 4,
    vocab_size: 32,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: true,
  },
  /** open-llama-3B's exact shape (the paper's base model; 32000 tokens, two more once special tokens are added). */
  'open-llama-3b': {
    hidden_size: 3200,
    intermediate_size: 8640,
    num_hidden_layers: 26,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    vocab_size: 32000,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: false,
  },
} satisfies Record<string, LlamaConfig>;

export type PresetName = keyof typeof PRESETS;

/** A preset with some fields replaced (e.g. the tokenizer's vocab_size). */
export function presetConfig(name: PresetName, overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  const base = PRESETS[name];
  if (!base) throw new Error(`presetConfig(): unknown preset '${String(name)}' (known: ${Object.keys(PRESETS).join(', ')})`);
  return validateConfig({ ...base, ...overrides });
}

function positiveInt(where: string, key: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new RangeError(`${where}: ${key} must be a positive integer, got ${show(v)}`);
  }
  return v;
}

function positiveNumber(where: string, key: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new RangeError(`${where}: ${key} must be a positive number, got ${String(v)}`);
  }
  return v;
}

function linearRopeScaling(where: string, v: unknown): LinearRopeScaling {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new TypeError(`${where}: rope_scaling must be an object like {"rope_type": "linear", "factor": 2} or null, got ${show(v)}`);
  }
  const o = v as Record<string, unknown>;
  if (o.rope_type !== 'linear') {
    throw new RangeError(`${where}: rope_scaling.rope_type must be 'linear' (the only scaling the engine implements), got ${show(o.rope_type)}`);
  }
  const factor = o.factor;
  if (typeof factor !== 'number' || !Number.isFinite(factor) || factor <= 0 || factor > 1e30) {
    throw new RangeError(`${where}: rope_scaling.factor must be a positive number up to 1e30, got ${show(factor)}`);
  }
  return { rope_type: 'linear', factor };
}

/** Fills defaults (as Hugging Face does) and checks every field; throws naming the first bad one. */
export function validateConfig(input: Partial<LlamaConfig>, where = 'config'): LlamaConfig {
  if (typeof input !== 'object' || input === null) throw new TypeError(`${where} must be an object, got ${String(input)}`);
  const c: LlamaConfig = {
    hidden_size: positiveInt(where, 'hidden_size', input.hidden_size),
    intermediate_size: positiveInt(where, 'intermediate_size', input.intermediate_size),
    num_hidden_layers: positiveInt(where, 'num_hidden_layers', input.num_hidden_layers),
    num_attention_heads: positiveInt(where, 'num_attention_heads', input.num_attention_heads),
    num_key_value_heads: positiveInt(where, 'num_key_value_heads', input.num_key_value_heads ?? input.num_attention_heads),
    vocab_size: positiveInt(where, 'vocab_size', input.vocab_size),
    max_position_embeddings: positiveInt(where, 'max_position_embeddings', input.max_position_embeddings),
    rms_norm_eps: positiveNumber(where, 'rms_norm_eps', input.rms_norm_eps ?? 1e-6),
    rope_theta: positiveNumber(where, 'rope_theta', input.rope_theta ?? 10000),
    tie_word_embeddings: input.tie_word_embeddings ?? false,
  };
  if (input.initializer_range !== undefined) c.initializer_range = input.initializer_range;
  if (input.rope_scaling !== undefined && input.rope_scaling !== null) c.rope_scaling = linearRopeScaling(where, input.rope_scaling);
  if (typeof c.tie_word_embeddings !== 'boolean') {
    throw new TypeError(`${where}: tie_word_embeddings must be a boolean, got ${String(c.tie_word_embeddings)}`);
  }
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new RangeError(`${where}: hidden_size (${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads})`);
  }
  if (c.num_attention_heads % c.num_key_value_heads !== 0) {
    throw new RangeError(
      `${where}: num_attention_heads (${c.num_attention_heads}) must be divisible by num_key_value_heads (${c.num_key_value_heads})`,
    );
  }
  const headDim = c.hidden_size / c.num_attention_heads;
  if (headDim % 2 !== 0 || headDim > 256) {
    throw new RangeError(`${where}: head dim hidden_size / num_attention_heads = ${headDim} must be even and at most 256`);
  }
  return c;
}

/** Fills PEFT defaults (alpha = r, dropout 0) and checks the fields. */
export function validateLora(input: Partial<LoraOptions>, where = 'lora'): LoraOptions {
  if (typeof input !== 'object' || input === null) throw new TypeError(`${where} must be an object, got ${String(input)}`);
  const r = positiveInt(where, 'r', input.r);
  const alpha = input.alpha ?? r;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) throw new RangeError(`${where}: alpha must be a number, got ${String(alpha)}`);
  const dropout = input.dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) {
    throw new RangeError(`${where}: dropout must be in [0, 1), got ${String(dropout)}`);
  }
  const targets = input.targets;
  if (!Array.isArray(targets) || targets.length === 0) {
    throw new TypeError(`${where}: targets must be a non-empty array of module names, got ${JSON.stringify(targets)}`);
  }
  targets.forEach((t, i) => {
    if (t !== 'all-linear' && !(LORA_TARGETS as readonly string[]).includes(t)) {
      throw new RangeError(`${where}: targets[${i}] = ${JSON.stringify(t)} is not one of ${LORA_TARGETS.join(', ')}, all-linear`);
    }
  });
  return { r, alpha, dropout, targets: [...targets] };
}
