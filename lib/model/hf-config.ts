// Hugging Face config.json <-> our LlamaConfig: reads every RoPE spelling in use, validates, fills
// transformers' defaults, and writes a config.json that transformers' LlamaForCausalLM loads.
import { kindOf } from '../io/regular-file.js';
import { readFileSync, statSync } from 'node:fs';
import { validateConfig, type LlamaConfig } from './config.js';

// Decisions, in one place:
// - model_type 'llama' is taken as is. 'mistral' is taken when it is LLaMA in all but name: no sliding
//   window (sliding_window null, absent, or at least max_position_embeddings), no biases, silu. Anything
//   else (qwen2, gemma, phi, ...) is refused: the tensor names may match but the math does not.
// - transformers' LlamaConfig defaults every size to LLaMA-7B's (hidden 4096, ...). A config.json without
//   hidden_size would then only fail later as a shape mismatch against the weights, so the five size
//   fields (hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, vocab_size) are
//   required here. The others take transformers' defaults: max_position_embeddings 2048, rms_norm_eps
//   1e-6, rope_theta 10000, tie_word_embeddings false, num_key_value_heads = num_attention_heads,
//   head_dim = hidden_size / num_attention_heads, bos 1, eos 2, pad none.
// - RoPE: `rope_theta` (top level), `rope_scaling` with `type` (older) or `rope_type` (transformers >= 4.43),
//   and `rope_parameters` (transformers >= 5, where rope_theta moves inside) all normalize to one
//   `RopeSettings`. A spelling that names the same thing twice with different values is an error rather
//   than a silent pick. Types: default (no scaling), linear, dynamic, llama3, yarn; others (longrope, su,
//   ...) are refused naming the field.
// - The engine's LlamaConfig has no head_dim: a config.json whose head_dim differs from
//   hidden_size / num_attention_heads is refused here (it is valid for transformers).

/** The RoPE scaling variants transformers' LLaMA implements and we read. */
export const ROPE_SCALING_TYPES = ['linear', 'dynamic', 'llama3', 'yarn'] as const;
export type RopeScalingType = (typeof ROPE_SCALING_TYPES)[number];

export interface RopeScaling {
  type: RopeScalingType;
  /** How far the context is stretched (>= 1 in practice; transformers only warns below 1). */
  factor: number;
  /** The context length the model was pre-trained with (llama3: required; dynamic, yarn: optional). */
  originalMaxPositionEmbeddings: number | null;
  /** llama3 only. */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  /** yarn only (transformers' defaults 32 and 1 filled in; the others null when absent). */
  betaFast?: number;
  betaSlow?: number;
  attentionFactor?: number | null;
  mscale?: number | null;
  mscaleAllDim?: number | null;
  truncate?: boolean | null;
}

export interface RopeSettings {
  /** The base of the inverse frequencies (rope_theta). */
  theta: number;
  /** null: plain RoPE (rope_type 'default' or no scaling given). */
  scaling: RopeScaling | null;
}

export type TorchDtype = 'float32' | 'float16' | 'bfloat16';

/** Everything a model folder's config.json says that the engine and the writers need. */
export interface HfModelConfig {
  /** The engine's config (rope_theta mirrors `rope.theta`). */
  config: LlamaConfig;
  rope: RopeSettings;
  headDim: number;
  modelType: 'llama' | 'mistral';
  /** torch_dtype (or `dtype`, transformers >= 5) when given. */
  torchDtype: TorchDtype | null;
  bosTokenId: number | null;
  /** One id, or several (LLaMA-3 style configs list more than one). */
  eosTokenId: number | number[] | null;
  padTokenId: number | null;
  /** Things transformers accepts that we read past (unknown rope keys, attention dropout, ...). */
  warnings: string[];
  /** The JSON as read, for keys this layer does not interpret. */
  raw: Readonly<Record<string, unknown>>;
}

/** The error every config.json problem throws: the message starts with the file, then the field. */
export class HfConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HfConfigError';
  }
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

type Obj = Record<string, unknown>;

const isObject = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

class Fields {
  constructor(
    readonly where: string,
    readonly obj: Obj,
    readonly prefix = '',
  ) {}
  fail(key: string, what: string, got: unknown): never {
    throw new HfConfigError(`${this.where}: ${this.prefix}${key} must be ${what}, got ${show(got)}`);
  }
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }
  positiveInt(key: string, fallback?: number): number {
    const v = this.obj[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) this.fail(key, 'a positive integer', this.obj[key]);
    return v;
  }
  positiveNumber(key: string, fallback?: number): number {
    const v = this.obj[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(key, 'a positive number', this.obj[key]);
    return v;
  }
  optionalPositiveNumber(key: string): number | null {
    return this.has(key) ? this.positiveNumber(key) : null;
  }
  optionalPositiveInt(key: string): number | null {
    return this.has(key) ? this.positiveInt(key) : null;
  }
  boolean(key: string, fallback: boolean): boolean {
    const v = this.obj[key] ?? fallback;
    if (typeof v !== 'boolean') this.fail(key, 'true or false', this.obj[key]);
    return v;
  }
  tokenId(key: string, fallback: number | null): number | null {
    if (!(key in this.obj)) return fallback;
    const v = this.obj[key];
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(key, 'a non-negative integer or null', v);
    return v;
  }
}

/** Parses and validates the JSON text of a config.json; `where` names it in errors. */
export function parseHfConfigText(text: string, where = 'config.json'): HfModelConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new HfConfigError(`${where}: not valid JSON: ${(err as Error).message}`);
  }
  return parseHfConfig(json, where);
}

/** Reads a config.json file (or the config.json inside a folder). */
export function readHfConfig(path: string): HfModelConfig {
  let text: string;
  try {
    const st = statSync(path, { throwIfNoEntry: false });
    if (st && !st.isFile() && !st.isDirectory()) throw new HfConfigError(`${path}: cannot read the model config (${kindOf(st)})`);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof HfConfigError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EISDIR') return readHfConfig(`${path.replace(/\/+$/, '')}/config.json`);
    throw new HfConfigError(`${path}: cannot read the model config (${e.code ?? e.message})`);
  }
  return parseHfConfigText(text, path);
}

/** Validates a parsed config.json object into our config and RoPE settings; errors name `where` and the field. */
export function parseHfConfig(json: unknown, where = 'config.json'): HfModelConfig {
  if (!isObject(json)) throw new HfConfigError(`${where}: must be a JSON object, got ${show(json)}`);
  const f = new Fields(where, json);
  const warnings: string[] = [];

  const modelType = json.model_type;
  if (modelType !== 'llama' && modelType !== 'mistral') {
    throw new HfConfigError(
      `${where}: model_type must be "llama" (or "mistral" without a sliding window), got ${show(modelType)}`,
    );
  }
  if (json.architectures !== undefined && json.architectures !== null) {
    const a = json.architectures as unknown[];
    if (!Array.isArray(a) || !a.every((x) => typeof x === 'string')) f.fail('architectures', 'an array of class names', a);
    if (!a.some((x) => x === 'LlamaForCausalLM' || x === 'MistralForCausalLM')) {
      warnings.push(`${where}: architectures ${show(a)} names no *ForCausalLM class; the weights are read as LlamaForCausalLM's`);
    }
  }
  const hiddenAct = json.hidden_act ?? 'silu';
  if (hiddenAct !== 'silu') f.fail('hidden_act', '"silu" (the SwiGLU MLP of LLaMA)', hiddenAct);
  for (const key of ['attention_bias', 'mlp_bias']) {
    if (f.boolean(key, false)) f.fail(key, 'false (the engine has no bias terms)', json[key]);
  }
  if (typeof json.attention_dropout === 'number' && json.attention_dropout > 0) {
    warnings.push(`${where}: attention_dropout ${json.attention_dropout} is ignored (the engine has no attention dropout)`);
  }

  const hidden = f.positiveInt('hidden_size');
  const heads = f.positiveInt('num_attention_heads');
  const kvHeads = f.positiveInt('num_key_value_heads', heads);
  const maxPos = f.positiveInt('max_position_embeddings', 2048);
  if (modelType === 'mistral' && f.has('sliding_window')) {
    const window = f.positiveInt('sliding_window');
    if (window < maxPos) {
      throw new HfConfigError(
        `${where}: sliding_window ${window} is below max_position_embeddings ${maxPos}; sliding-window attention ` +
          'is not LLaMA attention (set it to null to read this model as LLaMA)',
      );
    }
  }
  const rope = parseRope(f, maxPos);
  const raw = {
    hidden_size: hidden,
    intermediate_size: f.positiveInt('intermediate_size'),
    num_hidden_layers: f.positiveInt('num_hidden_layers'),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    vocab_size: f.positiveInt('vocab_size'),
    max_position_embeddings: maxPos,
    rms_norm_eps: f.positiveNumber('rms_norm_eps', 1e-6),
    rope_theta: rope.theta,
    // the one scaling the engine runs travels in its config; load-model refuses the others
    ...(rope.scaling?.type === 'linear' ? { rope_scaling: { rope_type: 'linear' as const, factor: rope.scaling.factor } } : {}),
    tie_word_embeddings: f.boolean('tie_word_embeddings', false),
  } satisfies LlamaConfig;
  if (kvHeads > heads || heads % kvHeads !== 0) {
    throw new HfConfigError(
      `${where}: num_key_value_heads must divide num_attention_heads (${heads}), got ${show(json.num_key_value_heads)}`,
    );
  }
  if (hidden % heads !== 0) {
    throw new HfConfigError(`${where}: hidden_size (${hidden}) must be a multiple of num_attention_heads (${heads})`);
  }
  const headDim = hidden / heads;
  if (f.has('head_dim')) {
    const given = f.positiveInt('head_dim');
    if (given !== headDim) {
      throw new HfConfigError(
        `${where}: head_dim ${given} differs from hidden_size / num_attention_heads = ${headDim}; ` +
          'the engine derives head_dim from those two and cannot run this model',
      );
    }
  }
  if (json.initializer_range !== undefined) {
    (raw as LlamaConfig).initializer_range = f.positiveNumber('initializer_range');
  }
  let config: LlamaConfig;
  try {
    config = validateConfig(raw, where);
  } catch (err) {
    throw new HfConfigError((err as Error).message);
  }

  let torchDtype: TorchDtype | null = null;
  for (const key of ['torch_dtype', 'dtype']) {
    const v = json[key];
    if (v === undefined || v === null || v === 'auto') continue;
    if (v !== 'float32' && v !== 'float16' && v !== 'bfloat16') f.fail(key, '"float32", "float16" or "bfloat16"', v);
    if (torchDtype !== null && torchDtype !== v) {
      throw new HfConfigError(`${where}: torch_dtype ${show(json.torch_dtype)} and dtype ${show(json.dtype)} disagree`);
    }
    torchDtype = v as TorchDtype;
  }

  let eosTokenId: number | number[] | null;
  if (Array.isArray(json.eos_token_id)) {
    const ids = json.eos_token_id;
    if (ids.length === 0 || !ids.every((x) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
      f.fail('eos_token_id', 'a non-negative integer, a non-empty array of them, or null', ids);
    }
    eosTokenId = [...(ids as number[])];
  } else {
    eosTokenId = f.tokenId('eos_token_id', 2);
  }
  const bosTokenId = f.tokenId('bos_token_id', 1);
  const padTokenId = f.tokenId('pad_token_id', null);
  for (const [key, id] of [['bos_token_id', bosTokenId], ['pad_token_id', padTokenId], ['eos_token_id', eosTokenId]] as const) {
    const ids = Array.isArray(id) ? id : id === null ? [] : [id];
    for (const x of ids) {
      if (x >= config.vocab_size) f.fail(key, `below vocab_size (${config.vocab_size})`, json[key]);
    }
  }

  return {
    config,
    rope,
    headDim,
    modelType,
    torchDtype,
    bosTokenId,
    eosTokenId,
    padTokenId,
    warnings,
    raw: json,
  };
}

/** The RoPE settings of any spelling: rope_theta, rope_scaling (type | rope_type), rope_parameters. */
function parseRope(f: Fields, maxPos: number): RopeSettings {
  const json = f.obj;
  const topTheta = f.has('rope_theta') ? f.positiveNumber('rope_theta') : null;
  const params = json.rope_parameters;
  const scalingRaw = json.rope_scaling;
  let theta = topTheta ?? 10000;
  let scaling: RopeScaling | null = null;
  let fromParams: RopeScaling | null | undefined;

  if (params !== undefined && params !== null) {
    if (!isObject(params)) f.fail('rope_parameters', 'an object like {"rope_type": "default", "rope_theta": 10000}', params);
    const values = Object.values(params);
    if (!('rope_type' in params) && !('type' in params) && values.length > 0 && values.every(isObject)) {
      throw new HfConfigError(
        `${f.where}: rope_parameters holds per-layer-type settings (${Object.keys(params).join(', ')}); ` +
          'LLaMA uses one RoPE for every layer',
      );
    }
    const p = new Fields(f.where, params, 'rope_parameters.');
    if (p.has('rope_theta')) {
      const t = p.positiveNumber('rope_theta');
      if (topTheta !== null && topTheta !== t) {
        throw new HfConfigError(`${f.where}: rope_theta ${topTheta} and rope_parameters.rope_theta ${t} disagree`);
      }
      theta = t;
    }
    if (p.has('partial_rotary_factor') && params.partial_rotary_factor !== 1 && params.partial_rotary_factor !== 1.0) {
      p.fail('partial_rotary_factor', '1 (LLaMA rotates every dimension)', params.partial_rotary_factor);
    }
    // transformers >= 5 always writes rope_type there; a missing one means plain RoPE, as it reads it.
    fromParams = parseScaling(p, maxPos, 'rope_parameters', 'default');
    scaling = fromParams;
  }
  if (scalingRaw !== undefined && scalingRaw !== null) {
    if (!isObject(scalingRaw)) f.fail('rope_scaling', 'an object like {"rope_type": "linear", "factor": 2.0} or null', scalingRaw);
    const s = parseScaling(new Fields(f.where, scalingRaw, 'rope_scaling.'), maxPos, 'rope_scaling');
    if (fromParams !== undefined && JSON.stringify(s) !== JSON.stringify(fromParams)) {
      throw new HfConfigError(
        `${f.where}: rope_scaling ${show(scalingRaw)} and rope_parameters ${show(params)} describe different RoPE scalings`,
      );
    }
    scaling = s;
  }
  return { theta, scaling };
}

function parseScaling(s: Fields, maxPos: number, field: string, defaultType?: string): RopeScaling | null {
  const o = s.obj;
  const byType = o.type;
  const byRopeType = o.rope_type;
  if (byType !== undefined && byRopeType !== undefined && byType !== byRopeType) {
    throw new HfConfigError(`${s.where}: ${field}.type ${show(byType)} and ${field}.rope_type ${show(byRopeType)} disagree`);
  }
  const key = byRopeType !== undefined ? 'rope_type' : 'type';
  const type = byRopeType ?? byType ?? defaultType;
  if (type === undefined) {
    throw new HfConfigError(`${s.where}: ${field} must name its kind in rope_type (or type), got ${show(o)}`);
  }
  if (type === 'default') return null;
  if (typeof type !== 'string' || !(ROPE_SCALING_TYPES as readonly string[]).includes(type)) {
    throw new HfConfigError(
      `${s.where}: ${field}.${key} ${show(type)} is not a supported RoPE type (supported: default, ${ROPE_SCALING_TYPES.join(', ')})`,
    );
  }
  const t = type as RopeScalingType;
  const out: RopeScaling = {
    type: t,
    factor: s.positiveNumber('factor'),
    originalMaxPositionEmbeddings: s.optionalPositiveInt('original_max_position_embeddings'),
  };
  if (t === 'llama3') {
    out.originalMaxPositionEmbeddings = s.positiveInt('original_max_position_embeddings');
    out.lowFreqFactor = s.positiveNumber('low_freq_factor');
    out.highFreqFactor = s.positiveNumber('high_freq_factor');
    if (out.highFreqFactor <= out.lowFreqFactor) {
      s.fail('high_freq_factor', `greater than low_freq_factor (${out.lowFreqFactor})`, o.high_freq_factor);
    }
  } else if (t === 'yarn') {
    out.betaFast = s.positiveNumber('beta_fast', 32);
    out.betaSlow = s.positiveNumber('beta_slow', 1);
    if (out.betaFast <= out.betaSlow) s.fail('beta_fast', `greater than beta_slow (${out.betaSlow})`, o.beta_fast);
    out.attentionFactor = s.optionalPositiveNumber('attention_factor');
    out.mscale = s.optionalPositiveNumber('mscale');
    out.mscaleAllDim = s.optionalPositiveNumber('mscale_all_dim');
    out.truncate = s.has('truncate') ? s.boolean('truncate', true) : null;
  }
  if (out.originalMaxPositionEmbeddings !== null && out.originalMaxPositionEmbeddings > maxPos) {
    s.fail('original_max_position_embeddings', `at most max_position_embeddings (${maxPos})`, o.original_max_position_embeddings);
  }
  return out;
}

export interface ToHfConfigOptions {
  /** torch_dtype to record: the dtype the weights are saved in (default 'float32'). */
  torchDtype?: TorchDtype;
  bosTokenId?: number | null;
  eosTokenId?: number | number[] | null;
  padTokenId?: number | null;
  /** RoPE scaling to record; its theta must equal config.rope_theta. */
  rope?: RopeSettings;
  /** Written as transformers_version when given (informational only; left out otherwise). */
  transformersVersion?: string;
}

/**
 * The config.json object for a LlamaForCausalLM with this config (keys sorted, as transformers writes them).
 * RoPE scaling goes in the `rope_scaling` spelling every transformers since 4.43 reads (and 5.x converts):
 * linear and dynamic as {type, factor} (which older releases also accept), llama3 and yarn with rope_type.
 */
export function toHfConfig(input: LlamaConfig, options: ToHfConfigOptions = {}): Record<string, unknown> {
  let config: LlamaConfig;
  try {
    config = validateConfig(input, 'toHfConfig(): config');
  } catch (err) {
    throw new HfConfigError((err as Error).message);
  }
  const linear = config.rope_scaling ?? null;
  const rope = options.rope ?? {
    theta: config.rope_theta,
    scaling: linear ? { type: 'linear', factor: linear.factor, originalMaxPositionEmbeddings: null } : null,
  };
  if (rope.theta !== config.rope_theta) {
    throw new HfConfigError(`toHfConfig(): rope.theta ${rope.theta} differs from config.rope_theta ${config.rope_theta}`);
  }
  const ropeLinear = rope.scaling?.type === 'linear' ? rope.scaling.factor : null;
  if ((linear || ropeLinear !== null) && linear?.factor !== ropeLinear) {
    throw new HfConfigError(
      `toHfConfig(): rope.scaling ${show(rope.scaling)} differs from config.rope_scaling ${show(config.rope_scaling ?? null)}`,
    );
  }
  const ids = {
    bos_token_id: options.bosTokenId === undefined ? 1 : options.bosTokenId,
    eos_token_id: options.eosTokenId === undefined ? 2 : options.eosTokenId,
    pad_token_id: options.padTokenId === undefined ? null : options.padTokenId,
  };
  for (const [key, id] of Object.entries(ids)) {
    for (const x of Array.isArray(id) ? id : id === null ? [] : [id]) {
      if (!Number.isSafeInteger(x) || x < 0 || x >= config.vocab_size) {
        throw new HfConfigError(`toHfConfig(): ${key} must be an integer in [0, ${config.vocab_size}) or null, got ${show(id)}`);
      }
    }
  }
  const torchDtype = options.torchDtype ?? 'float32';
  if (!['float32', 'float16', 'bfloat16'].includes(torchDtype)) {
    throw new HfConfigError(`toHfConfig(): torchDtype must be float32, float16 or bfloat16, got ${show(torchDtype)}`);
  }
  const out: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'],
    attention_bias: false,
    attention_dropout: 0.0,
    ...ids,
    head_dim: config.hidden_size / config.num_attention_heads,
    hidden_act: 'silu',
    hidden_size: config.hidden_size,
    initializer_range: config.initializer_range ?? 0.02,
    intermediate_size: config.intermediate_size,
    max_position_embeddings: config.max_position_embeddings,
    mlp_bias: false,
    model_type: 'llama',
    num_attention_heads: config.num_attention_heads,
    num_hidden_layers: config.num_hidden_layers,
    num_key_value_heads: config.num_key_value_heads,
    pretraining_tp: 1,
    rms_norm_eps: config.rms_norm_eps,
    rope_scaling: rope.scaling ? ropeScalingJson(rope.scaling) : null,
    rope_theta: config.rope_theta,
    tie_word_embeddings: config.tie_word_embeddings,
    torch_dtype: torchDtype,
    use_cache: true,
    vocab_size: config.vocab_size,
  };
  if (options.transformersVersion) out.transformers_version = options.transformersVersion;
  // Round trip through our own reader: whatever we write, we (and so transformers' rules) accept.
  parseHfConfig(out, 'toHfConfig(): result');
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function ropeScalingJson(s: RopeScaling): Record<string, unknown> {
  if (s.type === 'linear' || (s.type === 'dynamic' && s.originalMaxPositionEmbeddings === null)) {
    return { factor: s.factor, type: s.type };
  }
  const out: Record<string, unknown> = { factor: s.factor, rope_type: s.type };
  if (s.originalMaxPositionEmbeddings !== null) out.original_max_position_embeddings = s.originalMaxPositionEmbeddings;
  if (s.type === 'llama3') {
    out.low_freq_factor = s.lowFreqFactor;
    out.high_freq_factor = s.highFreqFactor;
  }
  if (s.type === 'yarn') {
    out.beta_fast = s.betaFast ?? 32;
    out.beta_slow = s.betaSlow ?? 1;
    if (s.attentionFactor != null) out.attention_factor = s.attentionFactor;
    if (s.mscale != null) out.mscale = s.mscale;
    if (s.mscaleAllDim != null) out.mscale_all_dim = s.mscaleAllDim;
    if (s.truncate != null) out.truncate = s.truncate;
  }
  return out;
}

/** generation_config.json as transformers writes it from the model config. */
export function toGenerationConfig(hf: Pick<ToHfConfigOptions, 'bosTokenId' | 'eosTokenId' | 'padTokenId' | 'transformersVersion'>): Record<string, unknown> {
  const out: Record<string, unknown> = { _from_model_config: true };
  const bos = hf.bosTokenId === undefined ? 1 : hf.bosTokenId;
  const eos = hf.eosTokenId === undefined ? 2 : hf.eosTokenId;
  if (bos !== null) out.bos_token_id = bos;
  if (eos !== null) out.eos_token_id = eos;
  if (hf.padTokenId !== undefined && hf.padTokenId !== null) out.pad_token_id = hf.padTokenId;
  if (hf.transformersVersion) out.transformers_version = hf.transformersVersion;
  return out;
}
