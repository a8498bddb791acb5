// Model folders: our writer's single-file and sharded checkpoints in F32, BF16 and F16 read back exactly;
// broken indexes, missing and misshapen weights refused with the file named; atomic writes; files written
// by PyTorch read through the same layer, and ours read by PyTorch.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { findPython } from '../../bench/peer.js';
import type { LlamaConfig } from '../../lib/model/config.js';
import { toHfConfig } from '../../lib/model/hf-config.js';
import {
  INDEX_FILE,
  SINGLE_FILE,
  llamaTensorShapes,
  openHfCheckpoint,
  saveHfModel,
  type HfCheckpoint,
} from '../../lib/model/hf-checkpoint.js';
import { HfTokenizer } from '../../lib/model/hf-tokenizer.js';
import {
  bf16ToFloat32,
  f16ToFloat32,
  float32ToBf16,
  float32ToF16,
  readSafetensors,
  readSafetensorsHeader,
  writeSafetensorsSync,
} from '../../lib/model/safetensors.js';
import { PuzzleTokenizer } from '../../lib/model/tokenizer.js';

const root = mkdtempSync(join(tmpdir(), 'hf-checkpoint-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
const found = await findPython();
const python = 'python' in found ? found.python : null;
if (!python) console.warn(`PyTorch checkpoint tests are skipped: ${'reason' in found ? found.reason : ''}`);
let counter = 0;
const fresh = (name = 'model') => join(root, `${name}-${counter++}`);

const TINY: LlamaConfig = {
  hidden_size: 32,
  intermediate_size: 72,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 32,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
};

/** Deterministic values spread over many magnitudes (so bf16/f16 rounding is exercised, subnormals included). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() - 0.5) * 2 ** Math.floor(next() * 30 - 24);
  return out;
}

function modelTensors(config: LlamaConfig): Map<string, Float32Array> {
  const m = new Map<string, Float32Array>();
  let seed = 1;
  for (const [name, shape] of llamaTensorShapes(config)) m.set(name, values(shape.reduce((a, b) => a * b, 1), seed++));
  return m;
}

async function collect(ck: HfCheckpoint): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for await (const t of ck.stream()) out.set(t.name, t.data);
  return out;
}

function expectBitsEqual(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) throw new Error(`${what}[${i}]: ${actual[i]} (0x${a[i].toString(16)}) != ${expected[i]} (0x${e[i].toString(16)})`);
  }
}

/** Hidden temporary folders writeFolderAtomic would leave behind. */
const leftovers = (dir: string) => readdirSync(dir).filter((f) => f.includes('.tmp-') || f.includes('.old-'));

describe('saving and reading model folders', () => {
  it('writes a single-file F32 model with config, generation config and tokenizer, read back bit for bit', async () => {
    const dir = fresh();
    const tensors = modelTensors(TINY);
    const asked: string[] = [];
    const tok = new PuzzleTokenizer();
    const saved = await saveHfModel(dir, {
      config: { ...TINY, vocab_size: 32 },
      tensors: (name) => {
        asked.push(name);
        return tensors.get(name)!;
      },
      tokenizer: tok,
    });
    expect(saved.weightFiles).toEqual([SINGLE_FILE]);
    expect(new Set(asked)).toEqual(new Set(tensors.keys()));
    expect(readdirSync(dir).sort()).toEqual(
      ['config.json', 'generation_config.json', SINGLE_FILE, 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'].sort(),
    );
    expect(leftovers(root)).toEqual([]);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ architectures: ['LlamaForCausalLM'], model_type: 'llama', torch_dtype: 'float32', bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 });
    expect(JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'))).toEqual({ _from_model_config: true, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 });
    // transformers refuses safetensors files without format metadata.
    expect(readSafetensorsHeader(join(dir, SINGLE_FILE)).metadata).toEqual({ format: 'pt' });

    const ck = await openHfCheckpoint(dir);
    expect(ck.config).toEqual({ ...TINY, initializer_range: 0.02 });
    expect(ck.weights).toEqual([...llamaTensorShapes(TINY).keys()]);
    expect(ck.unexpected).toEqual([]);
    expect(ck.weightBytes).toBe(saved.weightBytes);
    const back = await collect(ck);
    for (const [name, data] of tensors) expectBitsEqual(back.get(name)!, data, name);
    const hfTok = HfTokenizer.fromFiles(dir);
    expect(hfTok.encode('12+3=15')).toEqual(tok.encode('12+3=15'));
  });

  it('shards BF16 weights with an index, and reads them back as torch would round them', async () => {
    const dir = fresh();
    const tensors = modelTensors(TINY);
    const maxShardBytes = 12_000; // the MLP weights (72 x 32 x 2 = 4608 bytes) fill shards two at a time
    const saved = await saveHfModel(dir, { config: TINY, tensors: (n) => tensors.get(n)!, dtype: 'BF16', maxShardBytes });
    const shards = saved.weightFiles;
    expect(shards.length).toBeGreaterThan(3);
    expect(shards[0]).toBe(`model-00001-of-${String(shards.length).padStart(5, '0')}.safetensors`);
    const index = JSON.parse(readFileSync(join(dir, INDEX_FILE), 'utf8'));
    expect(Object.keys(index.weight_map).sort()).toEqual([...tensors.keys()].sort());
    expect(new Set(Object.values(index.weight_map))).toEqual(new Set(shards));
    expect(index.metadata.total_size).toBe(saved.weightBytes);
    let total = 0;
    for (const f of shards) {
      const h = readSafetensorsHeader(join(dir, f));
      expect(h.metadata.format).toBe('pt');
      const bytes = h.entries.reduce((a, e) => a + e.end - e.begin, 0);
      // Only a shard holding a single tensor may exceed the limit.
      if (h.entries.length > 1) expect(bytes).toBeLessThanOrEqual(maxShardBytes);
      total += bytes;
      for (const e of h.entries) expect(e.dtype).toBe('BF16');
    }
    expect(total).toBe(saved.weightBytes);
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');

    const ck = await openHfCheckpoint(dir);
    expect(ck.files.length).toBe(shards.length);
    for await (const t of ck.stream()) expectBitsEqual(t.data, bf16ToFloat32(float32ToBf16(tensors.get(t.name)!)), t.name);
  });

  it("rounds to BF16 and F16 bit for bit as torch does (ties, subnormals, overflow, Inf, NaN)", async () => {
    // test/fixtures/dtypes.safetensors holds awkward float32 values and torch's own .to(bfloat16/float16).
    const torchFile = readSafetensors(join(fixtures, 'dtypes.safetensors'));
    const f32 = torchFile.tensors.get('f32')!.data as Float32Array;
    const config: LlamaConfig = { ...TINY, hidden_size: f32.length, intermediate_size: 64, num_hidden_layers: 1 };
    const tensors = modelTensors(config);
    tensors.set('model.norm.weight', f32);
    for (const [dtype, key] of [['BF16', 'f32.bf16'], ['F16', 'f32.f16']] as const) {
      const dir = fresh();
      await saveHfModel(dir, { config, tensors, dtype });
      const ours = readSafetensors(join(dir, SINGLE_FILE)).tensors.get('model.norm.weight')!;
      expect(ours.dtype).toBe(dtype);
      const isNaN = dtype === 'BF16' ? (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0 : (b: number) => (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0;
      // Any NaN pattern will do (torch's vectorized path writes 0xffff, its scalar path 0x7fc0); the rest bit for bit.
      const show = (a: Uint16Array) => [...a].map((b) => (isNaN(b) ? 'NaN' : b.toString(16)));
      expect(show(ours.data as Uint16Array), dtype).toEqual(show(torchFile.tensors.get(key)!.data as Uint16Array));
      expect(show(ours.data as Uint16Array)).toContain('NaN');
    }
  });

  it('writes F16 from [name, data] pairs in any order, and a tensor over the shard limit alone', async () => {
    const dir = fresh();
    const tensors = modelTensors(TINY);
    async function* reversed() {
      for (const entry of [...tensors.entries()].reverse()) yield entry;
    }
    const saved = await saveHfModel(dir, { config: TINY, tensors: reversed(), dtype: 'F16', maxShardBytes: 1000 });
    // embed_tokens (32 x 32 x 2 = 2048 bytes) is larger than the limit: it gets a shard of its own.
    const index = JSON.parse(readFileSync(join(dir, INDEX_FILE), 'utf8'));
    const embedShard = index.weight_map['model.embed_tokens.weight'];
    expect(Object.values(index.weight_map).filter((f) => f === embedShard)).toHaveLength(1);
    expect(saved.weightFiles.length).toBeGreaterThan(10);
    const ck = await openHfCheckpoint(dir);
    for await (const t of ck.stream()) expectBitsEqual(t.data, f16ToFloat32(float32ToF16(tensors.get(t.name)!)), t.name);
  });

  it('streams with one reused buffer, and reads single tensors into a given buffer', async () => {
    const dir = fresh();
    const tensors = modelTensors(TINY);
    await saveHfModel(dir, { config: TINY, tensors, dtype: 'BF16' });
    const ck = await openHfCheckpoint(dir);
    expect(ck.largestWeight).toBe(72 * 32);
    const buffers = new Set<ArrayBufferLike>();
    let n = 0;
    for await (const t of ck.stream({ reuseBuffer: true })) {
      buffers.add(t.data.buffer);
      expect(t.data.length).toBe(t.shape.reduce((a, b) => a * b, 1));
      expectBitsEqual(t.data, bf16ToFloat32(float32ToBf16(tensors.get(t.name)!)), t.name);
      n++;
    }
    expect(n).toBe(tensors.size);
    expect(buffers.size).toBe(1);
    const into = new Float32Array(10_000).fill(7);
    const norm = await ck.readFloat32('model.norm.weight', into);
    expect(norm.buffer).toBe(into.buffer);
    expect(into[32]).toBe(7); // nothing past the tensor is touched
    await expect(ck.readFloat32('model.norm.weight', new Float32Array(3))).rejects.toThrow(/given buffer holds 3 elements, the tensor 32/);
    await expect(ck.readFloat32('nope')).rejects.toThrow(/no tensor 'nope'/);
    const names = ['model.norm.weight', 'model.embed_tokens.weight'];
    const picked = [];
    for await (const t of ck.stream({ names })) picked.push(t.name);
    expect(picked).toEqual(names);
  });

  it('handles tied embeddings: no lm_head written; one given is refused', async () => {
    const tied = { ...TINY, tie_word_embeddings: true };
    const tensors = modelTensors(tied);
    expect(tensors.has('lm_head.weight')).toBe(false);
    const dir = fresh();
    await saveHfModel(dir, { config: tied, tensors });
    const ck = await openHfCheckpoint(dir);
    expect(ck.weights).not.toContain('lm_head.weight');
    const withHead = new Map(tensors).set('lm_head.weight', new Float32Array(32 * 32));
    await expect(saveHfModel(fresh(), { config: tied, tensors: withHead })).rejects.toThrow(/'lm_head\.weight' are not weights of this model \(config\.tie_word_embeddings true\)/);
  });

  it('refuses wrong tensors from every kind of source, leaving nothing behind', async () => {
    const tensors = modelTensors(TINY);
    const cases: Array<[string, Parameters<typeof saveHfModel>[1]['tensors'], RegExp]> = [
      ['a short tensor', (n) => (n === 'model.norm.weight' ? new Float32Array(31) : tensors.get(n)!), /tensor 'model\.norm\.weight' has 31 values, its shape \[32\] needs 32/],
      ['a Float64Array', (n) => (n === 'model.norm.weight' ? (new Float64Array(32) as unknown as Float32Array) : tensors.get(n)!), /tensor 'model\.norm\.weight' must be a Float32Array, got Float64Array/],
      ['a missing Map entry', new Map([...tensors].filter(([n]) => n !== 'lm_head.weight')), /tensor 'lm_head\.weight' is missing from the given Map/],
      ['an unknown pair', [...tensors.entries(), ['model.extra.weight', new Float32Array(1)] as const], /tensor 'model\.extra\.weight' is not a weight of this model/],
      ['a duplicate pair', [...tensors.entries(), ['model.norm.weight', tensors.get('model.norm.weight')!] as const], /tensor 'model\.norm\.weight' was given twice/],
      ['a missing pair', [...tensors.entries()].filter(([n]) => n !== 'model.layers.1.mlp.up_proj.weight'), /tensor 'model\.layers\.1\.mlp\.up_proj\.weight' was never given/],
      ['a getter that throws', (n) => {
        if (n === 'model.layers.1.mlp.down_proj.weight') throw new Error('engine went away');
        return tensors.get(n)!;
      }, /engine went away/],
    ];
    for (const [what, source, message] of cases) {
      const dir = fresh('refused');
      await expect(saveHfModel(dir, { config: TINY, tensors: source, maxShardBytes: 10_000 }), what).rejects.toThrow(message);
      expect(existsSync(dir), what).toBe(false);
      expect(leftovers(root), what).toEqual([]);
    }
    await expect(saveHfModel(fresh(), { config: TINY, tensors, dtype: 'F8' as 'F32' })).rejects.toThrow(/dtype must be F32, BF16 or F16, got "F8"/);
    await expect(saveHfModel(fresh(), { config: TINY, tensors, maxShardBytes: 0 })).rejects.toThrow(/maxShardBytes must be a positive integer, got 0/);
  });

  it('never replaces a non-empty folder unless told to, and then replaces it whole', async () => {
    const tensors = modelTensors(TINY);
    const dir = fresh();
    mkdirSync(dir);
    writeFileSync(join(dir, 'keep.txt'), 'mine');
    await expect(saveHfModel(dir, { config: TINY, tensors })).rejects.toThrow(`${dir}: exists and is not empty (pass overwrite: true to replace it)`);
    expect(readdirSync(dir)).toEqual(['keep.txt']);
    // A failing overwrite leaves the old folder as it was.
    await expect(saveHfModel(dir, { config: TINY, tensors: () => new Float32Array(1), overwrite: true })).rejects.toThrow(/values, its shape/);
    expect(readdirSync(dir)).toEqual(['keep.txt']);
    await saveHfModel(dir, { config: TINY, tensors, overwrite: true });
    expect(readdirSync(dir)).not.toContain('keep.txt');
    expect((await openHfCheckpoint(dir)).weights.length).toBe(tensors.size);
    expect(leftovers(root)).toEqual([]);
    // An existing empty folder is simply filled.
    const empty = fresh();
    mkdirSync(empty);
    await saveHfModel(empty, { config: TINY, tensors });
    expect(existsSync(join(empty, SINGLE_FILE))).toBe(true);
  });
});

describe('refusing broken model folders', () => {
  /** A valid sharded BF16 model to break. */
  async function sharded(): Promise<{ dir: string; index: { weight_map: Record<string, string> } }> {
    const dir = fresh('broken');
    await saveHfModel(dir, { config: TINY, tensors: modelTensors(TINY), dtype: 'BF16', maxShardBytes: 12_000 });
    return { dir, index: JSON.parse(readFileSync(join(dir, INDEX_FILE), 'utf8')) };
  }
  const writeIndex = (dir: string, index: unknown) => writeFileSync(join(dir, INDEX_FILE), JSON.stringify(index));

  it('an index pointing at a missing shard', async () => {
    const { dir, index } = await sharded();
    const shard = index.weight_map['model.norm.weight'];
    rmSync(join(dir, shard));
    await expect(openHfCheckpoint(dir)).rejects.toThrow(
      new RegExp(`${INDEX_FILE}: weight_map maps '.*' and \\d+ more to shard '${shard}', which does not exist in ${dir}$`),
    );
  });

  it('a tensor missing from its shard', async () => {
    const { dir, index } = await sharded();
    index.weight_map['model.layers.9.mlp.up_proj.weight'] = index.weight_map['model.norm.weight'];
    writeIndex(dir, index);
    await expect(openHfCheckpoint(dir)).rejects.toThrow(
      `${join(dir, INDEX_FILE)}: weight_map maps 'model.layers.9.mlp.up_proj.weight' to shard '${index.weight_map['model.norm.weight']}', which has no such tensor`,
    );
  });

  it('a tensor mapped to the wrong shard', async () => {
    const { dir, index } = await sharded();
    const right = index.weight_map['model.norm.weight'];
    const wrong = index.weight_map['model.embed_tokens.weight'];
    expect(right).not.toBe(wrong);
    index.weight_map['model.norm.weight'] = wrong;
    writeIndex(dir, index);
    await expect(openHfCheckpoint(dir)).rejects.toThrow(`maps 'model.norm.weight' to shard '${wrong}', but it is in shard '${right}'`);
  });

  it('a tensor stored in two shards', async () => {
    const { dir, index } = await sharded();
    const extra = 'model-extra.safetensors';
    writeSafetensorsSync(join(dir, extra), { 'model.norm.weight': { dtype: 'BF16', shape: [32], data: new Uint16Array(32) } });
    index.weight_map['model.other'] = extra; // so the extra shard is read
    writeIndex(dir, index);
    await expect(openHfCheckpoint(dir)).rejects.toThrow(/tensor 'model\.norm\.weight' is stored twice, in shards 'model-0000\d-of-0000\d\.safetensors' and 'model-extra\.safetensors'/);
  });

  it('a tensor in a shard but not in the weight map, and total_size disagreeing', async () => {
    const { dir, index } = await sharded();
    delete index.weight_map['model.norm.weight'];
    writeIndex(dir, index);
    await expect(openHfCheckpoint(dir)).rejects.toThrow(/'model\.norm\.weight' is in shard 'model-.*' but not in weight_map/);
    const ok = await sharded();
    writeIndex(ok.dir, { metadata: { total_size: 5 }, weight_map: ok.index.weight_map });
    const ck = await openHfCheckpoint(ok.dir);
    expect(ck.warnings.join('\n')).toMatch(/metadata\.total_size is 5, the shards hold \d+ bytes/);
  });

  it('index entries outside the folder, an empty map, bad JSON', async () => {
    const { dir, index } = await sharded();
    writeIndex(dir, { weight_map: { ...index.weight_map, 'model.norm.weight': '../elsewhere.safetensors' } });
    await expect(openHfCheckpoint(dir)).rejects.toThrow(/weight_map\['model\.norm\.weight'\] = "\.\.\/elsewhere\.safetensors" points outside the model folder/);
    writeIndex(dir, { weight_map: {} });
    await expect(openHfCheckpoint(dir)).rejects.toThrow(/weight_map is empty/);
    writeIndex(dir, { weight_map: [] });
    await expect(openHfCheckpoint(dir)).rejects.toThrow(/weight_map must be an object of tensor name -> shard file/);
    writeFileSync(join(dir, INDEX_FILE), '{"weight_map": ');
    await expect(openHfCheckpoint(dir)).rejects.toThrow(new RegExp(`${INDEX_FILE}: not valid JSON`));
  });

  /** A single-file model whose tensors are edited before writing. */
  function single(edit: (m: Map<string, { dtype: 'F32' | 'I32' | 'BF16'; shape: number[]; data: ArrayBufferView }>) => void, config = TINY): string {
    const dir = fresh('single');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(toHfConfig(config)));
    const m = new Map<string, { dtype: 'F32' | 'I32' | 'BF16'; shape: number[]; data: ArrayBufferView }>();
    for (const [name, shape] of llamaTensorShapes(config)) m.set(name, { dtype: 'F32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    edit(m);
    writeSafetensorsSync(join(dir, SINGLE_FILE), m, { format: 'pt' });
    return dir;
  }

  it('missing weights, wrong shapes, wrong dtypes', async () => {
    const missing = single((m) => {
      m.delete('model.layers.1.self_attn.k_proj.weight');
      m.delete('lm_head.weight');
    });
    await expect(openHfCheckpoint(missing)).rejects.toThrow(/2 weights of the model are missing: 'model\.layers\.1\.self_attn\.k_proj\.weight', 'lm_head\.weight' \(config\.json: num_hidden_layers 2, tie_word_embeddings false\)/);
    const shape = single((m) => m.set('model.layers.0.self_attn.k_proj.weight', { dtype: 'F32', shape: [32, 32], data: new Float32Array(1024) }));
    await expect(openHfCheckpoint(shape)).rejects.toThrow(
      `${join(shape, SINGLE_FILE)}: tensor 'model.layers.0.self_attn.k_proj.weight' has shape [32, 32], but config.json (hidden_size 32, intermediate_size 72, heads 4/2, vocab_size 32) implies [16, 32]`,
    );
    const dtype = single((m) => m.set('model.norm.weight', { dtype: 'I32', shape: [32], data: new Int32Array(32) }));
    await expect(openHfCheckpoint(dtype)).rejects.toThrow(`${join(dtype, SINGLE_FILE)}: tensor 'model.norm.weight' is I32; weights must be F32, F16 or BF16`);
  });

  it('reports unexpected tensors (refused when strict) and ignores what transformers ignores', async () => {
    const dir = single((m) => {
      m.set('model.layers.0.self_attn.rotary_emb.inv_freq', { dtype: 'F32', shape: [4], data: new Float32Array(4) });
      m.set('score.weight', { dtype: 'F32', shape: [2, 32], data: new Float32Array(64) });
    });
    const ck = await openHfCheckpoint(dir);
    expect(ck.unexpected).toEqual(['score.weight']);
    expect(ck.ignored).toEqual(['model.layers.0.self_attn.rotary_emb.inv_freq']);
    await expect(openHfCheckpoint(dir, { strict: true })).rejects.toThrow(/1 tensor\(s\) the model does not use: 'score\.weight'/);
    const tied = single((m) => m.set('lm_head.weight', { dtype: 'F32', shape: [32, 32], data: new Float32Array(1024) }), { ...TINY, tie_word_embeddings: true });
    const tck = await openHfCheckpoint(tied);
    expect(tck.ignored).toEqual(['lm_head.weight']);
    expect(tck.warnings.join()).toMatch(/lm_head\.weight is ignored: tie_word_embeddings is true/);
  });

  it('folders without config or weights', async () => {
    const dir = fresh('empty');
    mkdirSync(dir);
    await expect(openHfCheckpoint(dir)).rejects.toThrow(`${join(dir, 'config.json')}: missing (a model folder needs its config.json)`);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(toHfConfig(TINY)));
    writeFileSync(join(dir, 'pytorch_model.bin'), 'x');
    await expect(openHfCheckpoint(dir)).rejects.toThrow(/no model\.safetensors and no model\.safetensors\.index\.json \(found pytorch_model\.bin: only safetensors weights are read/);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...toHfConfig(TINY), hidden_size: 'abc' }));
    await expect(openHfCheckpoint(dir)).rejects.toThrow(`${join(dir, 'config.json')}: hidden_size must be a positive integer, got "abc"`);
    await expect(openHfCheckpoint(join(dir, 'nope'))).rejects.toThrow(/not a model folder/);
  });

  it('a shard truncated after it was opened', async () => {
    const { dir, index } = await sharded();
    const ck = await openHfCheckpoint(dir);
    const shard = join(dir, index.weight_map['model.norm.weight']);
    writeFileSync(shard, readFileSync(shard).subarray(0, 100));
    await expect(ck.readFloat32('model.norm.weight')).rejects.toThrow(/file changed size since its header was read/);
  });
});

describe('files written by PyTorch', () => {
  it('reads the float32 fixture (written from torch tensors) as a model folder, its extra tensors reported', async () => {
    const fixture = join(fixtures, 'llama-full.safetensors');
    const file = readSafetensors(fixture);
    const config = JSON.parse(file.metadata.config) as LlamaConfig;
    const dir = fresh('torch-fixture');
    mkdirSync(dir);
    copyFileSync(fixture, join(dir, SINGLE_FILE));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(toHfConfig(config)));
    const ck = await openHfCheckpoint(dir);
    expect(ck.weights.length).toBe(2 * 9 + 3);
    expect(ck.unexpected).toContain('out.logits');
    expect(ck.unexpected).toContain('input.tokens');
    expect(ck.unexpected.every((n) => n.startsWith('out.') || n.startsWith('input.') || n.startsWith('grad.'))).toBe(true);
    for await (const t of ck.stream()) expectBitsEqual(t.data, file.tensors.get(t.name)!.data as Float32Array, t.name);
  });


  const run = (script: string, args: string[]) => {
    const r = spawnSync(python!, ['-c', script, ...args], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`python failed (${r.status}): ${r.stderr}`);
    return r.stdout;
  };

  // torch writes a sharded model (BF16 shards, one F16 tensor) with an index by hand, plus its own float32
  // view of every stored value; we must read exactly torch's values.
  const WRITE = String.raw`
import json, struct, sys, torch
out, cfg, refdir = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
g = torch.Generator().manual_seed(7)
h, i, L, nh, kv, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]
d = h // nh
shapes = {"model.embed_tokens.weight": (V, h)}
for l in range(L):
    p = f"model.layers.{l}."
    shapes.update({p + "self_attn.q_proj.weight": (nh * d, h), p + "self_attn.k_proj.weight": (kv * d, h), p + "self_attn.v_proj.weight": (kv * d, h),
                   p + "self_attn.o_proj.weight": (h, nh * d), p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                   p + "mlp.down_proj.weight": (h, i), p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,)})
shapes["model.norm.weight"] = (h,)
shapes["lm_head.weight"] = (V, h)
def raw(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16: t = t.view(torch.int16)
    return t.numpy().tobytes()
def save(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    names = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
    for n, t in tensors.items():
        b = raw(t); header[n] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}; blobs.append(b); off += len(b)
    text = json.dumps(header).encode(); text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text))); f.write(text); [f.write(b) for b in blobs]
stored, ref = {}, {}
for n, s in shapes.items():
    x = torch.randn(s, generator=g) * 0.05
    t = x.to(torch.float16) if n == "model.norm.weight" else x.to(torch.bfloat16)
    stored[n] = t; ref[n] = t.to(torch.float32)
names = list(shapes)
half = len(names) // 2
wm = {}
for k, part in enumerate([names[:half], names[half:]]):
    fname = f"model-{k + 1:05d}-of-00002.safetensors"
    save(f"{out}/{fname}", {n: stored[n] for n in part})
    wm.update({n: fname for n in part})
json.dump({"metadata": {"total_size": sum(t.numel() * t.element_size() for t in stored.values())}, "weight_map": wm}, open(f"{out}/model.safetensors.index.json", "w"))
save(f"{refdir}/reference.safetensors", ref)
`;

  it.skipIf(!python)('reads a sharded BF16/F16 checkpoint written by torch to torch\'s own float32 values', async () => {
    const dir = fresh('torch-sharded');
    mkdirSync(dir);
    const refDir = fresh('torch-reference');
    mkdirSync(refDir);
    run(WRITE, [dir, JSON.stringify(TINY), refDir]);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(toHfConfig(TINY, { torchDtype: 'bfloat16' })));
    const reference = readSafetensors(join(refDir, 'reference.safetensors'));
    const ck = await openHfCheckpoint(dir, { strict: true });
    expect(ck.files.length).toBe(2);
    expect(ck.tensors.get('model.norm.weight')!.dtype).toBe('F16');
    expect(ck.tensors.get('lm_head.weight')!.dtype).toBe('BF16');
    expect(ck.warnings).toEqual([]);
    let n = 0;
    for await (const t of ck.stream()) {
      expectBitsEqual(t.data, reference.tensors.get(t.name)!.data as Float32Array, t.name);
      n++;
    }
    expect(n).toBe(21);
  });

  // torch reads our sharded BF16 checkpoint the way transformers does (index -> shards -> tensors) and
  // reports every tensor's float64 sum of squares and first value.
  const READ = String.raw`
import json, struct, sys, torch
d = sys.argv[1]
idx = json.load(open(f"{d}/model.safetensors.index.json"))
out = {}
for shard in sorted(set(idx["weight_map"].values())):
    with open(f"{d}/{shard}", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; header = json.loads(f.read(n)); data = f.read()
    assert header["__metadata__"]["format"] == "pt", header["__metadata__"]
    for name, e in header.items():
        if name == "__metadata__": continue
        assert idx["weight_map"][name] == shard, name
        b, end = e["data_offsets"]
        assert e["dtype"] == "BF16"
        t = torch.frombuffer(bytearray(data[b:end]), dtype=torch.int16).view(torch.bfloat16).reshape(e["shape"]).to(torch.float64)
        out[name] = [float((t * t).sum()), float(t.flatten()[0]), list(t.shape)]
assert set(out) == set(idx["weight_map"]), "index and shards disagree"
print(json.dumps(out))
`;

  it.skipIf(!python)('our sharded BF16 checkpoint reads in torch to the values we stored', async () => {
    const dir = fresh('for-torch');
    const tensors = modelTensors(TINY);
    await saveHfModel(dir, { config: TINY, tensors, dtype: 'BF16', maxShardBytes: 12_000 });
    const seen = JSON.parse(run(READ, [dir])) as Record<string, [number, number, number[]]>;
    expect(Object.keys(seen).sort()).toEqual([...tensors.keys()].sort());
    for (const [name, data] of tensors) {
      const rounded = bf16ToFloat32(float32ToBf16(data));
      let ss = 0;
      for (const x of rounded) ss += x * x;
      const [tss, first, shape] = seen[name];
      expect(shape, name).toEqual(llamaTensorShapes(TINY).get(name));
      expect(first, name).toBe(rounded[0]);
      expect(Math.abs(tss - ss), name).toBeLessThanOrEqual(1e-12 * ss);
    }
  });
});
