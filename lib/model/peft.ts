// PEFT LoRA adapter folders (adapter_config.json + adapter_model.safetensors): save, load with validation
// against the base model's config, and merge into base weights (W + (alpha / r) B A).
import { readTextFile } from '../io/regular-file.js';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { LORA_TARGETS, validateLora, type LlamaConfig, type LoraOptions } from './config.js';
import {
  HfCheckpointError,
  WEIGHT_DTYPES,
  linearShape,
  moduleName,
  openHfCheckpoint,
  readTensorFloat32,
  saveHfModel,
  writeFolderAtomic,
  writeJson,
  type CheckpointTensor,
  type LinearTarget,
  type SavedModel,
  type WeightDtype,
} from './hf-checkpoint.js';
import { HfTokenizer } from './hf-tokenizer.js';
import { float32ToBf16, float32ToF16, readSafetensorsHeader, writeSafetensors, type TensorSource } from './safetensors.js';
import type { PuzzleTokenizer } from './tokenizer.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
/** What PEFT puts before a base-model module name when it saves (PeftModelForCausalLM -> LoraModel -> model). */
export const PEFT_PREFIX = 'base_model.model.';

/** PEFT's saved name of one LoRA matrix: `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`. */
export function loraTensorName(layer: number, target: LinearTarget, which: 'A' | 'B'): string {
  return `${PEFT_PREFIX}${moduleName(layer, target)}.lora_${which}.weight`;
}

/** Every LoRA tensor of an adapter with its shape (A [r, in], B [out, r]), layer by layer. */
export function loraTensorShapes(config: LlamaConfig, lora: LoraOptions): Map<string, number[]> {
  const targets = expandTargets(lora.targets);
  const shapes = new Map<string, number[]>();
  for (let layer = 0; layer < config.num_hidden_layers; layer++) {
    for (const t of targets) {
      const [out, inF] = linearShape(config, t);
      shapes.set(loraTensorName(layer, t, 'A'), [lora.r, inF]);
      shapes.set(loraTensorName(layer, t, 'B'), [out, lora.r]);
    }
  }
  return shapes;
}

function expandTargets(targets: readonly string[]): LinearTarget[] {
  if (targets.includes('all-linear')) return [...LORA_TARGETS];
  return LORA_TARGETS.filter((t) => targets.includes(t));
}

export class PeftError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeftError';
  }
}

function show(v: unknown): string {
  const s = v === undefined ? 'nothing (the field is missing)' : JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export interface AdapterConfigOptions {
  /** Where the base model lives (a Hub id or a folder); PEFT loads it from here. */
  baseModelNameOrPath?: string | null;
  revision?: string | null;
}

/**
 * adapter_config.json as PEFT's LoraConfig saves it. The keys are those every PEFT since 0.7 knows (newer
 * keys such as use_dora or layer_replication are left out: they default to off, and PEFT 0.7-0.11 refuses
 * keys it does not know).
 */
export function toAdapterConfig(input: LoraOptions, options: AdapterConfigOptions = {}): Record<string, unknown> {
  const lora = checkLora(input, 'toAdapterConfig(): lora');
  return {
    alpha_pattern: {},
    base_model_name_or_path: options.baseModelNameOrPath ?? null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    modules_to_save: null,
    peft_type: 'LORA',
    r: lora.r,
    rank_pattern: {},
    revision: options.revision ?? null,
    target_modules: expandTargets(lora.targets),
    task_type: 'CAUSAL_LM',
    use_rslora: false,
  };
}

function checkLora(input: LoraOptions, where: string): LoraOptions {
  try {
    return validateLora(input, where);
  } catch (err) {
    throw new PeftError((err as Error).message);
  }
}

export interface ParsedAdapterConfig {
  /** In the engine's terms: targets resolved against the base model, alpha such that alpha / r is the scale. */
  lora: LoraOptions;
  baseModelNameOrPath: string | null;
  /** alpha / r (alpha / sqrt(r) for rsLoRA, folded into lora.alpha). */
  scale: number;
  warnings: string[];
  raw: Readonly<Record<string, unknown>>;
}

/**
 * Validates adapter_config.json against the base model: LORA, plain LoRA math (no DoRA, no per-module ranks,
 * no fan_in_fan_out), and target_modules (a list matched as PEFT does: exact name or `.name` suffix; a
 * regular expression matched against the whole module name; 'all-linear'; null: PEFT's LLaMA default
 * q_proj, v_proj) resolving to projections of every layer, each list entry matching something.
 */
export function parseAdapterConfig(json: unknown, base: LlamaConfig, where = ADAPTER_CONFIG_FILE): ParsedAdapterConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new PeftError(`${where}: must be a JSON object, got ${show(json)}`);
  const c = json as Record<string, unknown>;
  const fail = (key: string, what: string): never => {
    throw new PeftError(`${where}: ${key} must be ${what}, got ${show(c[key])}`);
  };
  const warnings: string[] = [];
  if (c.peft_type !== 'LORA') fail('peft_type', '"LORA"');
  if (c.task_type !== undefined && c.task_type !== null && c.task_type !== 'CAUSAL_LM') fail('task_type', '"CAUSAL_LM"');
  const r = c.r ?? 8;
  if (typeof r !== 'number' || !Number.isSafeInteger(r) || r <= 0) fail('r', 'a positive integer');
  let alpha = c.lora_alpha ?? 8;
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) fail('lora_alpha', 'a number');
  const dropout = c.lora_dropout ?? 0;
  if (typeof dropout !== 'number' || !(dropout >= 0 && dropout < 1)) fail('lora_dropout', 'a number in [0, 1)');
  if (c.fan_in_fan_out === true) fail('fan_in_fan_out', 'false (LLaMA linear weights are [out, in])');
  if (c.use_dora === true) fail('use_dora', 'false (DoRA is not LoRA: the engine cannot run it)');
  if (c.lora_bias === true) fail('lora_bias', 'false (the engine has no bias terms)');
  if (c.bias !== undefined && !['none', 'all', 'lora_only'].includes(c.bias as string)) fail('bias', '"none" (LLaMA has no biases)');
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    const v = c[key];
    if (v !== undefined && v !== null && (typeof v !== 'object' || Object.keys(v as object).length > 0)) {
      fail(key, 'empty (the engine uses one r and one lora_alpha for every module)');
    }
  }
  const mts = c.modules_to_save;
  if (mts !== undefined && mts !== null && (!Array.isArray(mts) || mts.length > 0)) fail('modules_to_save', 'null (the engine trains only LoRA matrices)');
  if (c.layers_to_transform !== undefined && c.layers_to_transform !== null) {
    const l = c.layers_to_transform;
    const all = Array.from({ length: base.num_hidden_layers }, (_, i) => i);
    const given = typeof l === 'number' ? [l] : Array.isArray(l) ? l : null;
    if (!given || all.some((i) => !given.includes(i))) fail('layers_to_transform', `null or every layer 0..${base.num_hidden_layers - 1}`);
  }
  if (c.use_rslora === true) {
    alpha = (alpha as number) * Math.sqrt(r as number);
    warnings.push(`${where}: use_rslora: the scale lora_alpha / sqrt(r) is kept as alpha ${alpha} over r ${r}`);
  }

  // Module names as PEFT sees them in LlamaForCausalLM.
  const modules: string[] = [];
  for (let layer = 0; layer < base.num_hidden_layers; layer++) for (const t of LORA_TARGETS) modules.push(moduleName(layer, t));
  const others = ['lm_head', 'model.embed_tokens'];
  let matches: (name: string) => boolean;
  let entries: Array<{ entry: string; test: (name: string) => boolean }> = [];
  const tm = c.target_modules ?? ['q_proj', 'v_proj'];
  if (tm === 'all-linear') {
    matches = (name) => !others.includes(name);
  } else if (typeof tm === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${tm})$`);
    } catch (err) {
      throw new PeftError(`${where}: target_modules ${show(tm)} is not a regular expression this reader understands: ${(err as Error).message}`);
    }
    matches = (name) => re.test(name);
    entries = [{ entry: tm, test: matches }];
  } else if (Array.isArray(tm) && tm.length > 0 && tm.every((x) => typeof x === 'string' && x.length > 0)) {
    entries = (tm as string[]).map((entry) => ({ entry, test: (name: string) => name === entry || name.endsWith(`.${entry}`) }));
    matches = (name) => entries.some((e) => e.test(name));
  } else {
    fail('target_modules', 'a non-empty list of module names, a regular expression, or "all-linear"');
  }
  for (const o of others) {
    if (matches!(o)) throw new PeftError(`${where}: target_modules ${show(tm)} selects '${o}', which the engine cannot adapt with LoRA`);
  }
  for (const e of entries) {
    if (!modules.some(e.test)) {
      throw new PeftError(`${where}: target_modules entry ${show(e.entry)} matches no projection of the base model (known: ${LORA_TARGETS.join(', ')})`);
    }
  }
  const targets: LinearTarget[] = [];
  for (const t of LORA_TARGETS) {
    const hit = Array.from({ length: base.num_hidden_layers }, (_, layer) => matches!(moduleName(layer, t)));
    if (hit.every(Boolean)) targets.push(t);
    else if (hit.some(Boolean)) {
      throw new PeftError(
        `${where}: target_modules ${show(tm)} selects ${t} in layers ${hit.flatMap((h, i) => (h ? [i] : [])).join(', ')} only; the engine adapts a projection in every layer or none`,
      );
    }
  }
  if (targets.length === 0) throw new PeftError(`${where}: target_modules ${show(tm)} selects no projection of the base model`);
  const base_ = c.base_model_name_or_path;
  if (base_ !== undefined && base_ !== null && typeof base_ !== 'string') fail('base_model_name_or_path', 'a string or null');
  const lora = checkLora({ r: r as number, alpha: alpha as number, dropout: dropout as number, targets }, where);
  return { lora, baseModelNameOrPath: (base_ as string | null | undefined) ?? null, scale: lora.alpha / lora.r, warnings, raw: c };
}

// ---- saving ----------------------------------------------------------------------------------------

export interface SavePeftOptions extends AdapterConfigOptions {
  lora: LoraOptions;
  /** The base model's config (for the shapes). */
  config: LlamaConfig;
  /** A getter per PEFT name (e.g. engine.getParameter), or a Map of them. */
  tensors: ((name: string, shape: readonly number[]) => Float32Array | Promise<Float32Array>) | ReadonlyMap<string, Float32Array>;
  /** Stored dtype (default 'F32', as PEFT saves a float32 adapter). */
  dtype?: WeightDtype;
  overwrite?: boolean;
}

/** Writes adapter_config.json and adapter_model.safetensors atomically (a temporary folder, then a rename). */
export async function savePeftAdapter(dir: string, options: SavePeftOptions): Promise<{ dir: string; files: string[]; tensors: number }> {
  const dtype = options.dtype ?? 'F32';
  if (!WEIGHT_DTYPES.includes(dtype)) throw new PeftError(`savePeftAdapter(${dir}): dtype must be F32, BF16 or F16, got ${show(dtype)}`);
  const adapterConfig = toAdapterConfig(options.lora, options);
  const lora = checkLora(options.lora, 'savePeftAdapter(): lora');
  const shapes = loraTensorShapes(options.config, lora);
  const given = options.tensors;
  if (given instanceof Map) {
    const extra = [...given.keys()].filter((n) => !shapes.has(n));
    if (extra.length > 0) throw new PeftError(`savePeftAdapter(${dir}): tensors ${extra.slice(0, 3).map((n) => `'${n}'`).join(', ')} are not LoRA tensors of this adapter`);
  }
  const get = async (name: string, shape: number[]): Promise<ArrayBufferView> => {
    const data = typeof given === 'function' ? await given(name, shape) : given.get(name);
    if (data === undefined) throw new PeftError(`savePeftAdapter(${dir}): tensor '${name}' is missing`);
    if (!(data instanceof Float32Array)) throw new PeftError(`savePeftAdapter(${dir}): tensor '${name}' must be a Float32Array`);
    const n = shape[0] * shape[1];
    if (data.length !== n) throw new PeftError(`savePeftAdapter(${dir}): tensor '${name}' has ${data.length} values, its shape [${shape.join(', ')}] needs ${n}`);
    return dtype === 'F32' ? data : dtype === 'BF16' ? float32ToBf16(data) : float32ToF16(data);
  };
  await writeFolderAtomic(dir, options.overwrite ?? false, async (tmp) => {
    const entries = new Map<string, TensorSource>();
    for (const [name, shape] of shapes) entries.set(name, { dtype, shape, data: () => get(name, shape) });
    await writeSafetensors(join(tmp, ADAPTER_WEIGHTS_FILE), entries, { format: 'pt' });
    await writeJson(join(tmp, ADAPTER_CONFIG_FILE), adapterConfig);
    await openPeftAdapter(tmp, options.config); // what we wrote must read back
  });
  return { dir, files: [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE], tensors: shapes.size };
}

// ---- loading ---------------------------------------------------------------------------------------

export interface PeftAdapter extends ParsedAdapterConfig {
  dir: string;
  /** Every LoRA tensor by PEFT name (validated: all present, shapes from r and the base config). */
  tensors: ReadonlyMap<string, CheckpointTensor>;
  readFloat32(name: string): Promise<Float32Array>;
  /** All tensors as float32 (an adapter is small next to its base model). */
  loadAll(): Promise<Map<string, Float32Array>>;
}

/** Opens an adapter folder and checks it against the base model's config; reads the tensor header only. */
export async function openPeftAdapter(dir: string, base: LlamaConfig): Promise<PeftAdapter> {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new PeftError(`${dir}: not an adapter folder (no such directory)`);
  if (!existsSync(configPath)) throw new PeftError(`${configPath}: missing (a PEFT adapter folder needs it)`);
  if (!existsSync(weightsPath)) {
    const bin = existsSync(join(dir, 'adapter_model.bin')) ? ' (adapter_model.bin is there: only safetensors adapters are read)' : '';
    throw new PeftError(`${weightsPath}: missing${bin}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(readTextFile(configPath, 'the adapter config'));
  } catch (err) {
    throw new PeftError(`${configPath}: not valid JSON: ${(err as Error).message}`);
  }
  const parsed = parseAdapterConfig(json, base, configPath);
  const header = readSafetensorsHeader(weightsPath);
  const expected = loraTensorShapes(base, parsed.lora);
  const tensors = new Map<string, CheckpointTensor>();
  for (const e of header.entries) {
    tensors.set(e.name, {
      name: e.name,
      dtype: e.dtype,
      shape: Object.freeze([...e.shape]),
      size: e.shape.reduce((a, b) => a * b, 1),
      file: weightsPath,
      fileOffset: header.dataStart + e.begin,
      byteLength: e.end - e.begin,
      fileSize: header.fileSize,
    });
  }
  const missing = [...expected.keys()].filter((n) => !tensors.has(n));
  if (missing.length > 0) {
    throw new PeftError(
      `${weightsPath}: ${missing.length} LoRA tensor(s) that ${ADAPTER_CONFIG_FILE} (target_modules ${show(parsed.raw.target_modules)}) implies are missing: ` +
        `${missing.slice(0, 3).map((n) => `'${n}'`).join(', ')}${missing.length > 3 ? ` and ${missing.length - 3} more` : ''}`,
    );
  }
  const extra = [...tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length > 0) {
    throw new PeftError(
      `${weightsPath}: tensor(s) ${extra.slice(0, 3).map((n) => `'${n}'`).join(', ')}${extra.length > 3 ? ` and ${extra.length - 3} more` : ''} ` +
        `are not LoRA matrices of ${ADAPTER_CONFIG_FILE}'s targets (${parsed.lora.targets.join(', ')})`,
    );
  }
  for (const [name, shape] of expected) {
    const t = tensors.get(name)!;
    if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
      throw new PeftError(
        `${weightsPath}: tensor '${name}' has shape [${t.shape.join(', ')}], but r ${parsed.lora.r} (${ADAPTER_CONFIG_FILE}) and the base config imply [${shape.join(', ')}]`,
      );
    }
    if (!(WEIGHT_DTYPES as readonly string[]).includes(t.dtype)) throw new PeftError(`${weightsPath}: tensor '${name}' is ${t.dtype}; LoRA tensors must be F32, F16 or BF16`);
  }
  const read = (name: string): Promise<Float32Array> => {
    const t = tensors.get(name);
    if (!t) throw new PeftError(`${weightsPath}: no tensor '${name}'`);
    return readTensorFloat32(t);
  };
  return {
    ...parsed,
    dir,
    tensors,
    readFloat32: read,
    async loadAll() {
      const out = new Map<string, Float32Array>();
      for (const name of expected.keys()) out.set(name, await read(name));
      return out;
    },
  };
}

// ---- merging ---------------------------------------------------------------------------------------

export interface LoraDims {
  out: number;
  in: number;
  r: number;
}

/**
 * W + scale · B A, with W [out, in], A [r, in], B [out, r], scale = alpha / r. Each output element's
 * LoRA sum is accumulated in float64 and the result rounded once to float32. Writes into `into` when given
 * (which may be `weight` itself, for an in-place merge); dims are inferred from the lengths when omitted.
 */
export function mergeLora(
  weight: Float32Array,
  a: Float32Array,
  b: Float32Array,
  scale: number,
  dims?: LoraDims,
  into?: Float32Array,
): Float32Array {
  let d = dims;
  if (!d) {
    const r = Math.round(Math.sqrt((a.length * b.length) / weight.length));
    if (!(r > 0) || a.length % r !== 0 || b.length % r !== 0) {
      throw new PeftError(`mergeLora(): cannot infer [out, in, r] from lengths W ${weight.length}, A ${a.length}, B ${b.length}`);
    }
    d = { out: b.length / r, in: a.length / r, r };
  }
  const { out, in: inF, r } = d;
  if (weight.length !== out * inF) throw new PeftError(`mergeLora(): W has ${weight.length} values, [out ${out}, in ${inF}] needs ${out * inF}`);
  if (a.length !== r * inF) throw new PeftError(`mergeLora(): A has ${a.length} values, [r ${r}, in ${inF}] needs ${r * inF}`);
  if (b.length !== out * r) throw new PeftError(`mergeLora(): B has ${b.length} values, [out ${out}, r ${r}] needs ${out * r}`);
  if (!Number.isFinite(scale)) throw new PeftError(`mergeLora(): scale must be a finite number, got ${scale}`);
  const result = into ?? new Float32Array(weight.length);
  if (result.length !== weight.length) throw new PeftError(`mergeLora(): the output buffer has ${result.length} values, W has ${weight.length}`);
  const acc = new Float64Array(inF);
  for (let o = 0; o < out; o++) {
    acc.fill(0);
    for (let k = 0; k < r; k++) {
      const bk = b[o * r + k];
      if (bk === 0) continue;
      const row = k * inF;
      for (let i = 0; i < inF; i++) acc[i] += bk * a[row + i];
    }
    const base = o * inF;
    for (let i = 0; i < inF; i++) result[base + i] = weight[base + i] + scale * acc[i];
  }
  return result;
}

export interface MergeOptions {
  /** Stored dtype of the merged model (default: the base model's, when all its weights share one; else F32). */
  dtype?: WeightDtype;
  maxShardBytes?: number;
  overwrite?: boolean;
  /** Tokenizer to write (default: the base folder's tokenizer.json when there is one; null: none). */
  tokenizer?: PuzzleTokenizer | HfTokenizer | null;
}

/**
 * A base model folder with a PEFT adapter merged in, written as a new model folder: each projection the
 * adapter targets becomes W + (alpha / r) B A, streamed one tensor at a time.
 */
export async function mergePeftIntoModel(baseDir: string, adapterDir: string, outDir: string, options: MergeOptions = {}): Promise<SavedModel> {
  const base = await openHfCheckpoint(baseDir);
  const adapter = await openPeftAdapter(adapterDir, base.config);
  const dtypes = new Set(base.weights.map((n) => base.tensors.get(n)!.dtype));
  const dtype = options.dtype ?? (dtypes.size === 1 ? ([...dtypes][0] as WeightDtype) : 'F32');
  let tokenizer = options.tokenizer;
  if (tokenizer === undefined) tokenizer = existsSync(join(baseDir, 'tokenizer.json')) ? HfTokenizer.fromFiles(baseDir) : null;
  const targets = new Set<string>();
  for (let layer = 0; layer < base.config.num_hidden_layers; layer++) {
    for (const t of adapter.lora.targets as LinearTarget[]) targets.add(`${moduleName(layer, t)}.weight`);
  }
  const ids = base.hf;
  return saveHfModel(outDir, {
    config: base.config,
    rope: base.hf.rope,
    bosTokenId: ids.bosTokenId,
    eosTokenId: ids.eosTokenId,
    padTokenId: ids.padTokenId,
    dtype,
    maxShardBytes: options.maxShardBytes,
    overwrite: options.overwrite,
    tokenizer: tokenizer ?? undefined,
    tensors: async (name) => {
      const w = await base.readFloat32(name);
      if (!targets.has(name)) return w;
      const module = name.slice(0, -'.weight'.length);
      const a = await adapter.readFloat32(`${PEFT_PREFIX}${module}.lora_A.weight`);
      const b = await adapter.readFloat32(`${PEFT_PREFIX}${module}.lora_B.weight`);
      const [out, inF] = base.tensors.get(name)!.shape;
      return mergeLora(w, a, b, adapter.scale, { out, in: inF, r: adapter.lora.r }, w);
    },
  }).catch((err: unknown) => {
    if (err instanceof HfCheckpointError || err instanceof PeftError) throw err;
    throw new PeftError(`mergePeftIntoModel(${baseDir} + ${adapterDir} -> ${outDir}): ${(err as Error).message}`);
  });
}
