// Hugging Face LlamaForCausalLM model folders: open and validate (config.json, model.safetensors or shards
// with model.safetensors.index.json), stream tensors one at a time as float32, and save atomically.
import { readTextFile } from '../io/regular-file.js';
import { constants as fsConstants, existsSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, normalize, resolve, sep } from 'node:path';
import { LORA_TARGETS, type LlamaConfig } from './config.js';
import { readJsonFile as readJson } from '../io/json.js';
import { makeDir } from '../io/make-dir.js';
import { randomBytes } from 'node:crypto';
import { parseHfConfigText, toGenerationConfig, toHfConfig, type HfModelConfig, type RopeSettings, type TorchDtype } from './hf-config.js';
import { tokenizerFiles, type HfTokenizer } from './hf-tokenizer.js';
import {
  DTYPE_SIZE,
  f16BitsToF32,
  float32ToF16,
  readSafetensorsHeader,
  writeSafetensors,
  type Dtype,
  type SafetensorsHeader,
  type TensorSource,
} from './safetensors.js';
import type { PuzzleTokenizer } from './tokenizer.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';
/** save_pretrained's default max_shard_size ("5GB", decimal). */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;

/** The dtypes weights are stored in. */
export type WeightDtype = 'F32' | 'BF16' | 'F16';
export const WEIGHT_DTYPES: readonly WeightDtype[] = ['F32', 'BF16', 'F16'];
export const TORCH_DTYPE_OF: Readonly<Record<WeightDtype, TorchDtype>> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

export type LinearTarget = (typeof LORA_TARGETS)[number];
const ATTENTION: readonly string[] = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];

/** `model.layers.{layer}.self_attn.q_proj` / `model.layers.{layer}.mlp.up_proj`. */
export function moduleName(layer: number, target: LinearTarget): string {
  return `model.layers.${layer}.${ATTENTION.includes(target) ? 'self_attn' : 'mlp'}.${target}`;
}

/** [out, in] of a projection (the shape of its weight). */
export function linearShape(config: LlamaConfig, target: LinearTarget): [number, number] {
  const d = config.hidden_size / config.num_attention_heads;
  const q = config.num_attention_heads * d;
  const kv = config.num_key_value_heads * d;
  const h = config.hidden_size;
  const i = config.intermediate_size;
  switch (target) {
    case 'q_proj':
      return [q, h];
    case 'k_proj':
    case 'v_proj':
      return [kv, h];
    case 'o_proj':
      return [h, q];
    case 'gate_proj':
    case 'up_proj':
      return [i, h];
    case 'down_proj':
      return [h, i];
  }
}

/** Every weight of a LlamaForCausalLM by its Hugging Face name, in the order transformers lists them. */
export function llamaTensorShapes(config: LlamaConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [config.vocab_size, config.hidden_size]);
  for (let layer = 0; layer < config.num_hidden_layers; layer++) {
    for (const t of LORA_TARGETS) shapes.set(`${moduleName(layer, t)}.weight`, linearShape(config, t));
    shapes.set(`model.layers.${layer}.input_layernorm.weight`, [config.hidden_size]);
    shapes.set(`model.layers.${layer}.post_attention_layernorm.weight`, [config.hidden_size]);
  }
  shapes.set('model.norm.weight', [config.hidden_size]);
  if (!config.tie_word_embeddings) shapes.set('lm_head.weight', [config.vocab_size, config.hidden_size]);
  return shapes;
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
const showShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

/** The error every model-folder problem throws; the message names the file at fault. */
export class HfCheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HfCheckpointError';
  }
}

// ---- reading ---------------------------------------------------------------------------------------

/** Where one tensor lies on disk. */
export interface CheckpointTensor {
  readonly name: string;
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly size: number;
  /** The safetensors file holding it. */
  readonly file: string;
  readonly fileOffset: number;
  readonly byteLength: number;
  /** The file's size when its header was read (a changed size means it was rewritten under us). */
  readonly fileSize: number;
}

export interface StreamedTensor {
  name: string;
  shape: readonly number[];
  /** Float32 values; with `reuseBuffer` a view into one buffer that the next tensor overwrites. */
  data: Float32Array;
}

export interface StreamOptions {
  /** Which tensors, in this order (default: the model's weights in transformers' order). */
  names?: readonly string[];
  /** Read every tensor into one buffer of the largest tensor's size (the consumer must copy it before the next). */
  reuseBuffer?: boolean;
}

export interface HfCheckpoint {
  dir: string;
  /** config.json, parsed. */
  hf: HfModelConfig;
  config: LlamaConfig;
  /** The safetensors files, in index order. */
  files: string[];
  /** Every tensor of every file. */
  tensors: ReadonlyMap<string, CheckpointTensor>;
  /** The model's weights (in transformers' order): all present, with the shapes the config implies. */
  weights: readonly string[];
  /** Tensors the model does not use and that transformers would report as unexpected. */
  unexpected: readonly string[];
  /** Tensors transformers drops silently (rotary inv_freq buffers; lm_head.weight of a tied model). */
  ignored: readonly string[];
  warnings: readonly string[];
  /** Bytes on disk of the weights (in their stored dtypes). */
  weightBytes: number;
  /** Elements of the largest weight. */
  largestWeight: number;
  /** One tensor as float32 (F32, F16 and BF16 exactly), read in chunks: memory is the result plus 8 MiB. */
  readFloat32(name: string, into?: Float32Array): Promise<Float32Array>;
  /** The tensors one at a time, each read when the consumer asks for the next. */
  stream(options?: StreamOptions): AsyncGenerator<StreamedTensor>;
}

export interface OpenOptions {
  /** Refuse tensors the model does not use (default false: they are listed in `unexpected`). */
  strict?: boolean;
}

function readJsonFile(path: string): unknown {
  return readJson(path, (m) => new HfCheckpointError(m));
}

function listFew(names: readonly string[], n = 5): string {
  const shown = names.slice(0, n).map((x) => `'${x}'`).join(', ');
  return names.length > n ? `${shown} and ${names.length - n} more` : shown;
}

/** The shard files and which tensor each holds, from model.safetensors.index.json, fully cross-checked. */
function readIndex(dir: string, warnings: string[]): { files: string[]; headers: Map<string, SafetensorsHeader> } {
  const indexPath = join(dir, INDEX_FILE);
  const json = readJsonFile(indexPath);
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new HfCheckpointError(`${indexPath}: must be a JSON object with a weight_map`);
  }
  const { weight_map: map, metadata } = json as Record<string, unknown>;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) {
    throw new HfCheckpointError(`${indexPath}: weight_map must be an object of tensor name -> shard file, got ${JSON.stringify(map)}`);
  }
  const byFile = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
    if (typeof file !== 'string' || file === '') {
      throw new HfCheckpointError(`${indexPath}: weight_map['${name}'] must be a shard file name, got ${JSON.stringify(file)}`);
    }
    const norm = normalize(file);
    if (isAbsolute(file) || norm === '..' || norm.startsWith(`..${sep}`)) {
      throw new HfCheckpointError(`${indexPath}: weight_map['${name}'] = ${JSON.stringify(file)} points outside the model folder`);
    }
    const list = byFile.get(file) ?? [];
    list.push(name);
    byFile.set(file, list);
  }
  if (byFile.size === 0) throw new HfCheckpointError(`${indexPath}: weight_map is empty`);
  const headers = new Map<string, SafetensorsHeader>();
  for (const [file, names] of byFile) {
    const path = join(dir, file);
    if (!existsSync(path)) {
      throw new HfCheckpointError(
        `${indexPath}: weight_map maps ${listFew(names, 3)} to shard '${file}', which does not exist in ${dir}`,
      );
    }
    headers.set(file, readSafetensorsHeader(path));
  }
  const owner = new Map<string, string>();
  for (const [file, header] of headers) {
    for (const e of header.entries) {
      const first = owner.get(e.name);
      if (first !== undefined) {
        throw new HfCheckpointError(`${indexPath}: tensor '${e.name}' is stored twice, in shards '${first}' and '${file}'`);
      }
      owner.set(e.name, file);
    }
  }
  for (const [file, names] of byFile) {
    for (const name of names) {
      const actual = owner.get(name);
      if (actual === undefined) {
        throw new HfCheckpointError(`${indexPath}: weight_map maps '${name}' to shard '${file}', which has no such tensor`);
      }
      if (actual !== file) {
        throw new HfCheckpointError(`${indexPath}: weight_map maps '${name}' to shard '${file}', but it is in shard '${actual}'`);
      }
    }
  }
  const unlisted = [...owner.keys()].filter((n) => !Object.prototype.hasOwnProperty.call(map, n));
  if (unlisted.length > 0) {
    throw new HfCheckpointError(
      `${indexPath}: ${listFew(unlisted)} ${unlisted.length === 1 ? 'is' : 'are'} in shard '${owner.get(unlisted[0])}' but not in weight_map`,
    );
  }
  if (metadata !== null && typeof metadata === 'object' && 'total_size' in (metadata as object)) {
    const declared = (metadata as Record<string, unknown>).total_size;
    let actual = 0;
    for (const h of headers.values()) for (const e of h.entries) actual += e.end - e.begin;
    if (declared !== actual) warnings.push(`${indexPath}: metadata.total_size is ${JSON.stringify(declared)}, the shards hold ${actual} bytes of tensors`);
  }
  return { files: [...headers.keys()].map((f) => join(dir, f)), headers };
}

/**
 * Opens a model folder and validates it: config.json, then model.safetensors or the shards of
 * model.safetensors.index.json (every shard present, every mapped tensor in its shard, no tensor twice),
 * then every weight the config implies, present in F32, F16 or BF16 with its shape. Reads headers only.
 */
export async function openHfCheckpoint(dir: string, options: OpenOptions = {}): Promise<HfCheckpoint> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new HfCheckpointError(`${dir}: not a model folder (no such directory)`);
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) throw new HfCheckpointError(`${configPath}: missing (a model folder needs its config.json)`);
  const hf = parseHfConfigText(readTextFile(configPath, 'the model config'), configPath);
  const warnings = [...hf.warnings];

  let files: string[];
  let headers: SafetensorsHeader[];
  if (existsSync(join(dir, SINGLE_FILE))) {
    if (existsSync(join(dir, INDEX_FILE))) warnings.push(`${dir}: both ${SINGLE_FILE} and ${INDEX_FILE} exist; ${SINGLE_FILE} is read, as transformers does`);
    files = [join(dir, SINGLE_FILE)];
    headers = [readSafetensorsHeader(files[0])];
  } else if (existsSync(join(dir, INDEX_FILE))) {
    const index = readIndex(dir, warnings);
    files = index.files;
    headers = [...index.headers.values()];
  } else {
    const others = readdirSync(dir).filter((f) => /^(pytorch_model.*\.bin|model\.ckpt.*|tf_model\.h5|flax_model\.msgpack)$/.test(f));
    throw new HfCheckpointError(
      `${dir}: no ${SINGLE_FILE} and no ${INDEX_FILE}` +
        (others.length ? ` (found ${others.join(', ')}: only safetensors weights are read; convert with transformers' save_pretrained(safe_serialization=True))` : ''),
    );
  }

  const tensors = new Map<string, CheckpointTensor>();
  for (const h of headers) {
    for (const e of h.entries) {
      tensors.set(e.name, {
        name: e.name,
        dtype: e.dtype,
        shape: Object.freeze([...e.shape]),
        size: numel(e.shape),
        file: h.path,
        fileOffset: h.dataStart + e.begin,
        byteLength: e.end - e.begin,
        fileSize: h.fileSize,
      });
    }
  }

  const expected = llamaTensorShapes(hf.config);
  const configSummary = `hidden_size ${hf.config.hidden_size}, intermediate_size ${hf.config.intermediate_size}, ` +
    `heads ${hf.config.num_attention_heads}/${hf.config.num_key_value_heads}, vocab_size ${hf.config.vocab_size}`;
  const missing = [...expected.keys()].filter((n) => !tensors.has(n));
  if (missing.length > 0) {
    throw new HfCheckpointError(
      `${dir}: ${missing.length} weight${missing.length === 1 ? '' : 's'} of the model ${missing.length === 1 ? 'is' : 'are'} missing: ${listFew(missing)}` +
        ` (config.json: num_hidden_layers ${hf.config.num_hidden_layers}, tie_word_embeddings ${hf.config.tie_word_embeddings})`,
    );
  }
  let weightBytes = 0;
  let largestWeight = 0;
  for (const [name, shape] of expected) {
    const t = tensors.get(name)!;
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new HfCheckpointError(
        `${t.file}: tensor '${name}' has shape ${showShape(t.shape)}, but config.json (${configSummary}) implies ${showShape(shape)}`,
      );
    }
    if (!(WEIGHT_DTYPES as readonly string[]).includes(t.dtype)) {
      throw new HfCheckpointError(`${t.file}: tensor '${name}' is ${t.dtype}; weights must be F32, F16 or BF16`);
    }
    weightBytes += t.byteLength;
    largestWeight = Math.max(largestWeight, t.size);
  }
  const unexpected: string[] = [];
  const ignored: string[] = [];
  for (const name of tensors.keys()) {
    if (expected.has(name)) continue;
    if (/^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name)) ignored.push(name);
    else if (name === 'lm_head.weight' && hf.config.tie_word_embeddings) {
      ignored.push(name);
      warnings.push(`${tensors.get(name)!.file}: lm_head.weight is ignored: tie_word_embeddings is true, so the head is embed_tokens`);
    } else unexpected.push(name);
  }
  if (options.strict && unexpected.length > 0) {
    throw new HfCheckpointError(`${dir}: ${unexpected.length} tensor(s) the model does not use: ${listFew(unexpected)}`);
  }

  const weights = [...expected.keys()];
  const info = (name: string): CheckpointTensor => {
    const t = tensors.get(name);
    if (!t) throw new HfCheckpointError(`${dir}: no tensor '${name}' in ${files.map((f) => basename(f)).join(', ')}`);
    return t;
  };
  const checkpoint: HfCheckpoint = {
    dir,
    hf,
    config: hf.config,
    files,
    tensors,
    weights,
    unexpected,
    ignored,
    warnings,
    weightBytes,
    largestWeight,
    readFloat32: async (name, into) => readTensorFloat32(info(name), into),
    async *stream(opts: StreamOptions = {}) {
      const names = opts.names ?? weights;
      const list = names.map(info);
      let shared: Float32Array | undefined;
      if (opts.reuseBuffer) shared = new Float32Array(list.reduce((m, t) => Math.max(m, t.size), 0));
      for (const t of list) {
        const data = await readTensorFloat32(t, shared);
        yield { name: t.name, shape: t.shape, data };
      }
    },
  };
  return checkpoint;
}

const CHUNK_BYTES = 8 << 20;
let f16Table: Float32Array | null = null;

async function readFully(handle: FileHandle, into: Uint8Array, position: number, t: CheckpointTensor): Promise<void> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await handle.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0) throw new HfCheckpointError(`${t.file}: file is truncated: tensor '${t.name}' ends at byte ${position + done}`);
    done += bytesRead;
  }
}

/** One tensor as float32, read in 8 MiB chunks and converted as they come (F32 is read in place). */
export async function readTensorFloat32(t: CheckpointTensor, into?: Float32Array): Promise<Float32Array> {
  if (!(WEIGHT_DTYPES as readonly string[]).includes(t.dtype)) {
    throw new HfCheckpointError(`${t.file}: tensor '${t.name}' is ${t.dtype}; only F32, F16 and BF16 convert to float32`);
  }
  if (into && into.length < t.size) {
    throw new HfCheckpointError(`readFloat32('${t.name}'): the given buffer holds ${into.length} elements, the tensor ${t.size}`);
  }
  const out = into ? into.subarray(0, t.size) : new Float32Array(t.size);
  if (t.size === 0) return out;
  const handle = await open(t.file, fsConstants.O_RDONLY);
  try {
    const now = (await handle.stat()).size;
    if (now !== t.fileSize) throw new HfCheckpointError(`${t.file}: file changed size since its header was read (${t.fileSize} -> ${now})`);
    if (t.dtype === 'F32') {
      await readFully(handle, new Uint8Array(out.buffer, out.byteOffset, t.byteLength), t.fileOffset, t);
      return out;
    }
    const scratch = new Uint8Array(Math.min(CHUNK_BYTES, t.byteLength));
    const src = new Uint16Array(scratch.buffer);
    const bits = new Uint32Array(out.buffer, out.byteOffset, t.size);
    const table = t.dtype === 'F16' ? (f16Table ??= buildF16Table()) : null;
    for (let pos = 0; pos < t.byteLength; pos += scratch.byteLength) {
      const n = Math.min(scratch.byteLength, t.byteLength - pos);
      await readFully(handle, scratch.subarray(0, n), t.fileOffset + pos, t);
      const base = pos >>> 1;
      const count = n >>> 1;
      if (table) {
        for (let i = 0; i < count; i++) out[base + i] = table[src[i]];
      } else {
        for (let i = 0; i < count; i++) bits[base + i] = src[i] << 16;
      }
    }
    return out;
  } finally {
    await handle.close();
  }
}

function buildF16Table(): Float32Array {
  const table = new Float32Array(65536);
  for (let b = 0; b < 65536; b++) table[b] = f16BitsToF32(b);
  return table;
}

// ---- writing ---------------------------------------------------------------------------------------

/** A tensor by name, asked for when its turn to be written comes. */
export type TensorGetter = (name: string, shape: readonly number[]) => Float32Array | Promise<Float32Array>;
/** Tensors as [name, values] pairs, in any order (see saveHfModel on memory). */
export type TensorPairs = AsyncIterable<readonly [string, Float32Array]> | Iterable<readonly [string, Float32Array]>;

export interface SaveHfModelOptions {
  config: LlamaConfig;
  /** A getter per name (nothing is held beyond the tensor being written), a Map, or [name, data] pairs. */
  tensors: TensorGetter | ReadonlyMap<string, Float32Array> | TensorPairs;
  /** The stored dtype (default 'F32'); config.json's torch_dtype follows it. */
  dtype?: WeightDtype;
  /** Shard when the weights exceed this many bytes (default 5 GB, as save_pretrained); a larger tensor gets a shard alone. */
  maxShardBytes?: number;
  /** Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json, and takes bos/eos/pad ids from it. */
  tokenizer?: PuzzleTokenizer | HfTokenizer;
  rope?: RopeSettings;
  bosTokenId?: number | null;
  eosTokenId?: number | number[] | null;
  padTokenId?: number | null;
  /** Replace an existing non-empty folder (default false: refuse). */
  overwrite?: boolean;
  /** Extra __metadata__ for each safetensors file (format: 'pt' is always written: transformers requires it). */
  metadata?: Record<string, string>;
}

export interface SavedModel {
  dir: string;
  /** Every file written, relative to dir. */
  files: string[];
  /** The weight files (one, or the shards). */
  weightFiles: string[];
  /** Bytes of tensor data. */
  weightBytes: number;
}

/**
 * Writes a LlamaForCausalLM folder that transformers loads unchanged: config.json, generation_config.json,
 * model.safetensors (or model-0000k-of-0000n.safetensors + model.safetensors.index.json), tokenizer files.
 * Atomic: everything goes into a hidden folder beside `dir`, is fsynced and re-opened for validation, then
 * renamed to `dir`; on any error the temporary folder is removed and `dir` is untouched.
 * Memory: a getter (or Map) costs one tensor at a time. Pairs are consumed in their own order; a tensor that
 * comes before its turn (file order is by name within each shard) is held, converted to `dtype`, until then.
 */
export async function saveHfModel(dir: string, options: SaveHfModelOptions): Promise<SavedModel> {
  const dtype = options.dtype ?? 'F32';
  if (!WEIGHT_DTYPES.includes(dtype)) throw new HfCheckpointError(`saveHfModel(${dir}): dtype must be F32, BF16 or F16, got ${JSON.stringify(dtype)}`);
  const maxShard = options.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES;
  if (!Number.isSafeInteger(maxShard) || maxShard <= 0) {
    throw new HfCheckpointError(`saveHfModel(${dir}): maxShardBytes must be a positive integer, got ${JSON.stringify(options.maxShardBytes)}`);
  }
  const tok = options.tokenizer;
  const ids = {
    bosTokenId: options.bosTokenId !== undefined ? options.bosTokenId : tok ? tok.bos : 1,
    eosTokenId: options.eosTokenId !== undefined ? options.eosTokenId : tok ? tok.eos : 2,
    padTokenId: options.padTokenId !== undefined ? options.padTokenId : tok ? tok.pad : null,
  };
  const configJson = toHfConfig(options.config, { ...ids, torchDtype: TORCH_DTYPE_OF[dtype], rope: options.rope });
  const config = options.config;
  if (tok && tok.vocabSize > config.vocab_size) {
    throw new HfCheckpointError(`saveHfModel(${dir}): the tokenizer has ${tok.vocabSize} tokens, more than config.vocab_size ${config.vocab_size}`);
  }
  const shapes = llamaTensorShapes(config);
  const source = tensorSource(dir, shapes, options.tensors, dtype);

  // Shards in transformers' tensor order, greedily filled.
  const elementBytes = DTYPE_SIZE[dtype];
  const shards: string[][] = [];
  let current: string[] = [];
  let currentBytes = 0;
  let weightBytes = 0;
  for (const [name, shape] of shapes) {
    const bytes = numel(shape) * elementBytes;
    if (current.length > 0 && currentBytes + bytes > maxShard) {
      shards.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(name);
    currentBytes += bytes;
    weightBytes += bytes;
  }
  shards.push(current);

  const metadata = { ...(options.metadata ?? {}), format: 'pt' };
  const written: string[] = [];
  await writeFolderAtomic(dir, options.overwrite ?? false, async (tmp) => {
    const weightFiles = shards.length === 1
      ? [SINGLE_FILE]
      : shards.map((_, k) => `model-${String(k + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    const weightMap: Record<string, string> = {};
    for (let k = 0; k < shards.length; k++) {
      const entries = new Map<string, TensorSource>();
      for (const name of shards[k]) {
        entries.set(name, { dtype, shape: shapes.get(name)!, data: () => source.bytes(name) });
        weightMap[name] = weightFiles[k];
      }
      await writeSafetensors(join(tmp, weightFiles[k]), entries, metadata);
      written.push(weightFiles[k]);
    }
    await source.finish();
    if (shards.length > 1) {
      const sorted = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      await writeJson(join(tmp, INDEX_FILE), { metadata: { total_size: weightBytes }, weight_map: sorted });
      written.push(INDEX_FILE);
    }
    await writeJson(join(tmp, 'config.json'), configJson);
    await writeJson(join(tmp, 'generation_config.json'), toGenerationConfig(ids));
    written.push('config.json', 'generation_config.json');
    if (tok) {
      for (const [file, json] of Object.entries(tokenizerFiles(tok))) {
        await writeJson(join(tmp, file), json);
        written.push(file);
      }
    }
    // What we wrote must open cleanly before it gets the final name.
    const check = await openHfCheckpoint(tmp, { strict: true });
    if (check.weightBytes !== weightBytes) throw new HfCheckpointError(`saveHfModel(${dir}): wrote ${check.weightBytes} bytes of weights, planned ${weightBytes}`);
  });
  return {
    dir,
    files: written,
    weightFiles: written.filter((f) => f.endsWith('.safetensors')),
    weightBytes,
  };
}

interface Source {
  bytes(name: string): Promise<ArrayBufferView>;
  /** Throws if pairs held more than the model's tensors. */
  finish(): Promise<void>;
}

/** float32 -> bf16 bits (round to nearest even, NaN kept quiet), the rule of safetensors.ts's f32ToBf16Bits. */
function toBf16Into(src: Float32Array, out: Uint16Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const u = bits[i];
    out[i] = (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x40 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return out;
}

/**
 * Checks one tensor's values and converts them to the stored dtype. With `scratch`, BF16 goes into that
 * reused buffer (writeSafetensors writes each tensor fully before asking for the next, so one buffer of the
 * largest tensor's size serves them all, without a fresh allocation per tensor).
 */
function convert(dir: string, name: string, shape: readonly number[], data: unknown, dtype: WeightDtype, scratch?: () => Uint16Array): ArrayBufferView {
  if (!(data instanceof Float32Array)) {
    throw new HfCheckpointError(`saveHfModel(${dir}): tensor '${name}' must be a Float32Array, got ${data === null ? 'null' : typeof data === 'object' ? (data as object).constructor?.name : typeof data}`);
  }
  const n = numel(shape);
  if (data.length !== n) {
    throw new HfCheckpointError(`saveHfModel(${dir}): tensor '${name}' has ${data.length} values, its shape ${showShape(shape)} needs ${n}`);
  }
  if (dtype === 'F32') return data;
  if (dtype === 'F16') return float32ToF16(data);
  return toBf16Into(data, scratch ? scratch().subarray(0, n) : new Uint16Array(n));
}

function tensorSource(dir: string, shapes: Map<string, number[]>, tensors: SaveHfModelOptions['tensors'], dtype: WeightDtype): Source {
  let shared: Uint16Array | undefined;
  const scratch = () => (shared ??= new Uint16Array(Math.max(...[...shapes.values()].map(numel))));
  if (typeof tensors === 'function') {
    return {
      bytes: async (name) => convert(dir, name, shapes.get(name)!, await tensors(name, shapes.get(name)!), dtype, scratch),
      finish: async () => undefined,
    };
  }
  if (tensors instanceof Map) {
    const extra = [...tensors.keys()].filter((n) => !shapes.has(n));
    if (extra.length > 0) throw new HfCheckpointError(`saveHfModel(${dir}): tensors ${listFew(extra)} are not weights of this model (config.tie_word_embeddings ${[...shapes.keys()].includes('lm_head.weight') ? 'false' : 'true'})`);
    return {
      bytes: async (name) => {
        if (!tensors.has(name)) throw new HfCheckpointError(`saveHfModel(${dir}): tensor '${name}' is missing from the given Map`);
        return convert(dir, name, shapes.get(name)!, tensors.get(name), dtype, scratch);
      },
      finish: async () => undefined,
    };
  }
  const pairs = tensors as TensorPairs;
  const iterator: AsyncIterator<readonly [string, Float32Array]> | Iterator<readonly [string, Float32Array]> =
    Symbol.asyncIterator in pairs ? (pairs as AsyncIterable<readonly [string, Float32Array]>)[Symbol.asyncIterator]() : (pairs as Iterable<readonly [string, Float32Array]>)[Symbol.iterator]();
  const held = new Map<string, ArrayBufferView>();
  const seen = new Set<string>();
  let done = false;
  const pull = async (): Promise<boolean> => {
    const r = await iterator.next();
    if (r.done) {
      done = true;
      return false;
    }
    if (!Array.isArray(r.value) || r.value.length !== 2 || typeof r.value[0] !== 'string') {
      throw new HfCheckpointError(`saveHfModel(${dir}): tensors must yield [name, Float32Array] pairs, got ${String(r.value)}`);
    }
    const [name, data] = r.value;
    if (!shapes.has(name)) throw new HfCheckpointError(`saveHfModel(${dir}): tensor '${name}' is not a weight of this model`);
    if (seen.has(name)) throw new HfCheckpointError(`saveHfModel(${dir}): tensor '${name}' was given twice`);
    seen.add(name);
    held.set(name, convert(dir, name, shapes.get(name)!, data, dtype));
    return true;
  };
  return {
    async bytes(name) {
      while (!held.has(name)) {
        if (done || !(await pull())) throw new HfCheckpointError(`saveHfModel(${dir}): tensor '${name}' was never given`);
      }
      const b = held.get(name)!;
      held.delete(name);
      return b;
    },
    async finish() {
      if (!done && (await pull())) {
        throw new HfCheckpointError(`saveHfModel(${dir}): tensors yielded more than the model's ${shapes.size} weights`);
      }
    },
  };
}

async function fsyncPath(path: string): Promise<void> {
  const h = await open(path, fsConstants.O_RDONLY);
  try {
    await h.sync();
  } catch (err) {
    // Some file systems refuse fsync on directories (EINVAL); the rename is still atomic there.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
  } finally {
    await h.close();
  }
}

/** Writes a JSON file (2-space indent, trailing newline, fsynced). */
export async function writeJson(path: string, value: unknown): Promise<void> {
  const h = await open(path, 'wx');
  try {
    await h.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Fills a fresh hidden folder beside `dir` with `fill`, then gives it the name `dir` with a rename: `dir` is
 * either absent, untouched, or complete. An existing empty `dir` is replaced; a non-empty one only with
 * `overwrite` (moved aside, then removed after the rename).
 */
export async function writeFolderAtomic(dir: string, overwrite: boolean, fill: (tmp: string) => Promise<void>): Promise<void> {
  const target = resolve(dir);
  const parent = dirname(target);
  const exists = existsSync(target);
  if (exists) {
    const st = lstatSync(target);
    if (!st.isDirectory()) throw new HfCheckpointError(`${dir}: exists and is not a folder`);
    if (!overwrite && readdirSync(target).length > 0) throw new HfCheckpointError(`${dir}: exists and is not empty (pass overwrite: true to replace it)`);
  }
  makeDir(parent);
  // mkdir, not mkdtemp: the folder gets the usual mode (0777 less the umask), not mkdtemp's 0700.
  const tmp = join(parent, `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  try {
    await fill(tmp);
    await fsyncPath(tmp);
    try {
      await rename(tmp, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !overwrite) {
        throw code === 'ENOTEMPTY' || code === 'EEXIST'
          ? new HfCheckpointError(`${dir}: became non-empty while writing (pass overwrite: true to replace it)`)
          : err;
      }
      const old = await mkdtemp(join(parent, `.${basename(target)}.old-`));
      await rename(target, join(old, 'previous'));
      await rename(tmp, target);
      await rm(old, { recursive: true, force: true });
    }
    await fsyncPath(parent);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}
