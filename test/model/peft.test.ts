// PEFT adapter folders: adapter_config.json as PEFT writes it, PEFT's tensor names and shapes, read-back
// validation against the base config, and merging (W + alpha/r · B A) checked against float64.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { LlamaConfig, LoraOptions } from '../../lib/model/config.js';
import { llamaTensorShapes, openHfCheckpoint, saveHfModel } from '../../lib/model/hf-checkpoint.js';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  loraTensorName,
  loraTensorShapes,
  mergeLora,
  mergePeftIntoModel,
  openPeftAdapter,
  parseAdapterConfig,
  savePeftAdapter,
  toAdapterConfig,
} from '../../lib/model/peft.js';
import { bf16ToFloat32, float32ToBf16, readSafetensors, readSafetensorsHeader, writeSafetensorsSync } from '../../lib/model/safetensors.js';
import { PuzzleTokenizer } from '../../lib/model/tokenizer.js';
import { HfTokenizer } from '../../lib/model/hf-tokenizer.js';

const root = mkdtempSync(join(tmpdir(), 'peft-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
let counter = 0;
const fresh = (name = 'adapter') => join(root, `${name}-${counter++}`);

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
const LORA: LoraOptions = { r: 4, alpha: 8, dropout: 0.05, targets: ['q_proj', 'v_proj', 'down_proj'] };

function values(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

function adapterTensors(config: LlamaConfig, lora: LoraOptions): Map<string, Float32Array> {
  const m = new Map<string, Float32Array>();
  let seed = 100;
  for (const [name, [a, b]] of loraTensorShapes(config, lora)) m.set(name, values(a * b, seed++, 0.3));
  return m;
}

describe('adapter files', () => {
  it('names and shapes LoRA tensors as PEFT saves them', () => {
    expect(loraTensorName(3, 'q_proj', 'A')).toBe('base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight');
    expect(loraTensorName(0, 'up_proj', 'B')).toBe('base_model.model.model.layers.0.mlp.up_proj.lora_B.weight');
    const shapes = loraTensorShapes(TINY, LORA);
    expect(shapes.size).toBe(2 * 3 * 2);
    expect(shapes.get('base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight')).toEqual([4, 32]);
    expect(shapes.get('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight')).toEqual([16, 4]);
    expect(shapes.get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight')).toEqual([4, 72]);
    expect(loraTensorShapes(TINY, { ...LORA, targets: ['all-linear'] }).size).toBe(2 * 7 * 2);
  });

  it('writes adapter_config.json as PEFT does and reads the adapter back bit for bit', async () => {
    const dir = fresh();
    const tensors = adapterTensors(TINY, LORA);
    const saved = await savePeftAdapter(dir, { lora: LORA, config: TINY, tensors, baseModelNameOrPath: 'openlm-research/open_llama_3b' });
    expect(saved.tensors).toBe(12);
    expect(readdirSync(dir).sort()).toEqual([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]);
    expect(readdirSync(root).filter((f) => f.startsWith('.'))).toEqual([]);
    const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
    expect(json).toEqual({
      alpha_pattern: {},
      base_model_name_or_path: 'openlm-research/open_llama_3b',
      bias: 'none',
      fan_in_fan_out: false,
      inference_mode: true,
      init_lora_weights: true,
      layers_pattern: null,
      layers_to_transform: null,
      lora_alpha: 8,
      lora_dropout: 0.05,
      modules_to_save: null,
      peft_type: 'LORA',
      r: 4,
      rank_pattern: {},
      revision: null,
      target_modules: ['q_proj', 'v_proj', 'down_proj'],
      task_type: 'CAUSAL_LM',
      use_rslora: false,
    });
    const header = readSafetensorsHeader(join(dir, ADAPTER_WEIGHTS_FILE));
    expect(header.metadata).toEqual({ format: 'pt' });
    expect(header.entries.map((e) => e.name).sort()).toEqual([...tensors.keys()].sort());
    const adapter = await openPeftAdapter(dir, TINY);
    expect(adapter.lora).toEqual(LORA);
    expect(adapter.scale).toBe(2);
    expect(adapter.baseModelNameOrPath).toBe('openlm-research/open_llama_3b');
    const back = await adapter.loadAll();
    for (const [name, data] of tensors) expect(Buffer.from(back.get(name)!.buffer).equals(Buffer.from(data.buffer)), name).toBe(true);
  });

  it('stores BF16 adapters on request; a getter is asked once per tensor', async () => {
    const dir = fresh();
    const tensors = adapterTensors(TINY, { ...LORA, targets: ['all-linear'] });
    const asked: string[] = [];
    await savePeftAdapter(dir, {
      lora: { ...LORA, targets: ['all-linear'] },
      config: TINY,
      dtype: 'BF16',
      tensors: (name) => {
        asked.push(name);
        return tensors.get(name)!;
      },
    });
    expect(asked.sort()).toEqual([...tensors.keys()].sort());
    const cfg = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
    expect(cfg.target_modules).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    const adapter = await openPeftAdapter(dir, TINY);
    for (const [name, data] of tensors) expect(await adapter.readFloat32(name)).toEqual(bf16ToFloat32(float32ToBf16(data)));
  });

  it('refuses wrong tensors on save, leaving nothing behind', async () => {
    const tensors = adapterTensors(TINY, LORA);
    const short = new Map(tensors).set(loraTensorName(0, 'q_proj', 'A'), new Float32Array(3));
    const dir = fresh();
    await expect(savePeftAdapter(dir, { lora: LORA, config: TINY, tensors: short })).rejects.toThrow(
      /tensor 'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has 3 values, its shape \[4, 32\] needs 128/,
    );
    const extra = new Map(tensors).set(loraTensorName(0, 'k_proj', 'A'), new Float32Array(128));
    await expect(savePeftAdapter(dir, { lora: LORA, config: TINY, tensors: extra })).rejects.toThrow(/k_proj\.lora_A\.weight' are not LoRA tensors of this adapter/);
    await expect(savePeftAdapter(dir, { lora: { ...LORA, targets: ['qkv'] }, config: TINY, tensors })).rejects.toThrow(/targets\[0\] = "qkv" is not one of/);
    expect(readdirSync(root).filter((f) => f.startsWith('.'))).toEqual([]);
  });
});

describe('reading adapter_config.json against the base model', () => {
  const base = { peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, lora_dropout: 0, target_modules: ['q_proj', 'v_proj'], bias: 'none' };

  it('resolves target_modules as PEFT matches them', () => {
    expect(parseAdapterConfig(base, TINY).lora.targets).toEqual(['q_proj', 'v_proj']);
    // Full module paths match by suffix; a regex matches whole names; null is PEFT's LLaMA default.
    expect(parseAdapterConfig({ ...base, target_modules: ['self_attn.k_proj', 'mlp.up_proj'] }, TINY).lora.targets).toEqual(['k_proj', 'up_proj']);
    expect(parseAdapterConfig({ ...base, target_modules: String.raw`.*\.(q_proj|o_proj|gate_proj)` }, TINY).lora.targets).toEqual(['q_proj', 'o_proj', 'gate_proj']);
    expect(parseAdapterConfig({ ...base, target_modules: 'all-linear' }, TINY).lora.targets).toHaveLength(7);
    expect(parseAdapterConfig({ ...base, target_modules: null }, TINY).lora.targets).toEqual(['q_proj', 'v_proj']);
    // PEFT's own defaults for r and alpha (8, 8).
    const d = parseAdapterConfig({ peft_type: 'LORA', target_modules: ['q_proj'] }, TINY);
    expect(d.lora).toEqual({ r: 8, alpha: 8, dropout: 0, targets: ['q_proj'] });
    expect(parseAdapterConfig({ ...base, layers_to_transform: [0, 1] }, TINY).lora.targets).toEqual(['q_proj', 'v_proj']);
  });

  it('folds rsLoRA into alpha so that alpha / r is the scale', () => {
    const p = parseAdapterConfig({ ...base, r: 16, lora_alpha: 8, use_rslora: true }, TINY);
    expect(p.scale).toBeCloseTo(8 / Math.sqrt(16), 15);
    expect(p.lora.alpha / p.lora.r).toBeCloseTo(2, 15);
    expect(p.warnings[0]).toMatch(/use_rslora/);
  });

  const refusals: Array<[string, Record<string, unknown>, RegExp]> = [
    ['another PEFT type', { peft_type: 'IA3' }, /adapter_config\.json: peft_type must be "LORA", got "IA3"/],
    ['another task', { task_type: 'SEQ_CLS' }, /task_type must be "CAUSAL_LM", got "SEQ_CLS"/],
    ['a bad r', { r: 0 }, /r must be a positive integer, got 0/],
    ['a string alpha', { lora_alpha: '16' }, /lora_alpha must be a number, got "16"/],
    ['dropout 1', { lora_dropout: 1 }, /lora_dropout must be a number in \[0, 1\), got 1/],
    ['DoRA', { use_dora: true }, /use_dora must be false \(DoRA is not LoRA/],
    ['fan_in_fan_out', { fan_in_fan_out: true }, /fan_in_fan_out must be false/],
    ['per-module ranks', { rank_pattern: { q_proj: 8 } }, /rank_pattern must be empty/],
    ['modules_to_save', { modules_to_save: ['lm_head'] }, /modules_to_save must be null/],
    ['some layers only', { layers_to_transform: [0] }, /layers_to_transform must be null or every layer 0\.\.1, got \[0\]/],
    ['a target that matches nothing', { target_modules: ['q_proj', 'qkv_proj'] }, /target_modules entry "qkv_proj" matches no projection of the base model/],
    ['lm_head', { target_modules: ['q_proj', 'lm_head'] }, /target_modules \["q_proj","lm_head"\] selects 'lm_head', which the engine cannot adapt/],
    ['a regex over one layer', { target_modules: String.raw`model\.layers\.0\.self_attn\.q_proj` }, /selects q_proj in layers 0 only; the engine adapts a projection in every layer or none/],
    ['a bad regex', { target_modules: '(' }, /target_modules "\(" is not a regular expression/],
    ['an empty list', { target_modules: [] }, /target_modules must be a non-empty list of module names/],
  ];
  for (const [what, patch, message] of refusals) {
    it(`refuses ${what}`, () => {
      expect(() => parseAdapterConfig({ ...base, ...patch }, TINY)).toThrow(message);
    });
  }

  it('refuses adapter folders whose tensors disagree with the config', async () => {
    const good = fresh();
    const tensors = adapterTensors(TINY, LORA);
    await savePeftAdapter(good, { lora: LORA, config: TINY, tensors });
    const weights = join(good, ADAPTER_WEIGHTS_FILE);
    const writeConfig = (patch: Record<string, unknown>) =>
      writeFileSync(join(good, ADAPTER_CONFIG_FILE), JSON.stringify({ ...toAdapterConfig(LORA), ...patch }));
    // r in the config disagrees with the tensors' shapes.
    writeConfig({ r: 8 });
    await expect(openPeftAdapter(good, TINY)).rejects.toThrow(
      `${weights}: tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' has shape [4, 32], but r 8 (adapter_config.json) and the base config imply [8, 32]`,
    );
    // A target the tensors lack.
    writeConfig({ target_modules: ['q_proj', 'v_proj', 'down_proj', 'k_proj'] });
    await expect(openPeftAdapter(good, TINY)).rejects.toThrow(/4 LoRA tensor\(s\) that adapter_config\.json .* implies are missing: '.*k_proj\.lora_A\.weight'/);
    // Tensors the config does not explain.
    writeConfig({ target_modules: ['q_proj', 'v_proj'] });
    await expect(openPeftAdapter(good, TINY)).rejects.toThrow(/down_proj\.lora_A\.weight'.* are not LoRA matrices of adapter_config\.json's targets \(q_proj, v_proj\)/);
    // A base model with a different hidden size.
    writeConfig({});
    await expect(openPeftAdapter(good, { ...TINY, intermediate_size: 64 })).rejects.toThrow(/mlp\.down_proj\.lora_A\.weight' has shape \[4, 72\], but r 4 .* imply \[4, 64\]/);
    expect((await openPeftAdapter(good, TINY)).lora).toEqual(LORA);

    const bin = fresh();
    mkdirSync(bin);
    writeFileSync(join(bin, ADAPTER_CONFIG_FILE), JSON.stringify(toAdapterConfig(LORA)));
    writeFileSync(join(bin, 'adapter_model.bin'), 'x');
    await expect(openPeftAdapter(bin, TINY)).rejects.toThrow(/adapter_model\.safetensors: missing \(adapter_model\.bin is there: only safetensors adapters are read\)/);
    writeFileSync(join(bin, ADAPTER_CONFIG_FILE), '{');
    writeFileSync(join(bin, ADAPTER_WEIGHTS_FILE), '');
    await expect(openPeftAdapter(bin, TINY)).rejects.toThrow(/adapter_config\.json: not valid JSON/);
  });

  it('reads the LoRA tensors the PyTorch reference wrote (test/fixtures/llama-lora.safetensors) under PEFT names', async () => {
    const fixture = readSafetensors(join(fixtures, 'llama-lora.safetensors'));
    const config = JSON.parse(fixture.metadata.config) as LlamaConfig;
    const lora = JSON.parse(fixture.metadata.lora) as LoraOptions;
    const dir = fresh('from-torch');
    mkdirSync(dir);
    const loraTensors = [...fixture.tensors.values()].filter((t) => t.name.startsWith('base_model.model.'));
    writeSafetensorsSync(join(dir, ADAPTER_WEIGHTS_FILE), Object.fromEntries(loraTensors.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, data: t.data }])), { format: 'pt' });
    writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(toAdapterConfig(lora)));
    const adapter = await openPeftAdapter(dir, config);
    expect(adapter.lora).toEqual({ ...lora, targets: lora.targets });
    expect(adapter.tensors.size).toBe(loraTensors.length);
    for (const t of loraTensors) expect(await adapter.readFloat32(t.name)).toEqual(t.data);
  });
});

describe('merging', () => {
  /** W + s B A in float64, summing in another order than mergeLora does. */
  function reference64(w: Float32Array, a: Float32Array, b: Float32Array, s: number, out: number, inF: number, r: number): Float64Array {
    const ref = new Float64Array(out * inF);
    for (let i = 0; i < inF; i++) {
      for (let o = 0; o < out; o++) {
        let sum = 0;
        for (let k = r - 1; k >= 0; k--) sum += b[o * r + k] * a[k * inF + i];
        ref[o * inF + i] = w[o * inF + i] + s * sum;
      }
    }
    return ref;
  }

  it('computes W + (alpha / r) B A to float32 rounding of the float64 result', () => {
    for (const [out, inF, r, s] of [[16, 32, 4, 2], [72, 32, 8, 0.5], [5, 7, 3, 16], [64, 64, 64, 1 / 64]] as const) {
      const w = values(out * inF, out, 1);
      const a = values(r * inF, inF + 1, 1 / Math.sqrt(inF));
      const b = values(out * r, r + 2, 0.5);
      const merged = mergeLora(w, a, b, s, { out, in: inF, r });
      const ref = reference64(w, a, b, s, out, inF, r);
      let worstUlps = 0;
      let naiveWorst = 0;
      for (let j = 0; j < merged.length; j++) {
        const ulp = 2 ** (Math.floor(Math.log2(Math.abs(ref[j]) || 2 ** -126)) - 23);
        worstUlps = Math.max(worstUlps, Math.abs(merged[j] - ref[j]) / ulp);
        // A naive float32 merge (round after every operation) for comparison.
        const o = Math.floor(j / inF);
        const i = j % inF;
        let acc = 0;
        for (let k = 0; k < r; k++) acc = Math.fround(acc + Math.fround(b[o * r + k] * a[k * inF + i]));
        naiveWorst = Math.max(naiveWorst, Math.abs(Math.fround(w[j] + Math.fround(s * acc)) - ref[j]) / ulp);
      }
      // Rounded once from float64: within half an ulp (plus float64 noise).
      expect(worstUlps, `${out}x${inF} r${r}`).toBeLessThanOrEqual(0.5 + 1e-6);
      expect(worstUlps).toBeLessThanOrEqual(naiveWorst);
      // The LoRA term matters: the merge is not W.
      expect(merged.some((x, j) => x !== w[j])).toBe(true);
    }
  });

  it('infers dims, merges in place, and refuses inconsistent sizes', () => {
    const w = values(16 * 32, 1);
    const a = values(4 * 32, 2);
    const b = values(16 * 4, 3);
    const expected = mergeLora(w, a, b, 2, { out: 16, in: 32, r: 4 });
    expect(mergeLora(w, a, b, 2)).toEqual(expected);
    const inPlace = w.slice();
    expect(mergeLora(inPlace, a, b, 2, undefined, inPlace)).toBe(inPlace);
    expect(inPlace).toEqual(expected);
    expect(mergeLora(w, a, new Float32Array(16 * 4), 2)).toEqual(w); // B = 0 (PEFT's init) changes nothing
    expect(() => mergeLora(w, a, b, 2, { out: 16, in: 32, r: 5 })).toThrow(/A has 128 values, \[r 5, in 32\] needs 160/);
    expect(() => mergeLora(w.subarray(1), a, b, 2, { out: 16, in: 32, r: 4 })).toThrow(/W has 511 values, \[out 16, in 32\] needs 512/);
    expect(() => mergeLora(w, a, b, NaN)).toThrow(/scale must be a finite number/);
  });

  it('merges an adapter folder into a model folder, tensor by tensor', async () => {
    const baseDir = fresh('base');
    const weights = new Map<string, Float32Array>();
    let seed = 1;
    for (const [name, shape] of llamaTensorShapes(TINY)) weights.set(name, values(shape[0] * (shape[1] ?? 1), seed++, 0.1));
    await saveHfModel(baseDir, { config: TINY, tensors: weights, tokenizer: new PuzzleTokenizer(), padTokenId: 0 });
    const adapterDir = fresh();
    const lora = adapterTensors(TINY, LORA);
    await savePeftAdapter(adapterDir, { lora: LORA, config: TINY, tensors: lora });
    const outDir = fresh('merged');
    const saved = await mergePeftIntoModel(baseDir, adapterDir, outDir);
    expect(saved.files).toContain('tokenizer.json');
    expect(HfTokenizer.fromFiles(outDir).encode('1+2=3')).toEqual(new PuzzleTokenizer().encode('1+2=3'));
    const merged = await openHfCheckpoint(outDir);
    expect(merged.config).toEqual((await openHfCheckpoint(baseDir)).config);
    let changed = 0;
    for await (const t of merged.stream()) {
      const w = weights.get(t.name)!;
      const m = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(q_proj|v_proj|down_proj)\.weight$/.exec(t.name);
      if (!m) {
        expect(t.data, t.name).toEqual(w);
        continue;
      }
      const module = t.name.slice(0, -'.weight'.length);
      const a = lora.get(`base_model.model.${module}.lora_A.weight`)!;
      const b = lora.get(`base_model.model.${module}.lora_B.weight`)!;
      const [out, inF] = t.shape;
      const ref = reference64(w, a, b, LORA.alpha / LORA.r, out, inF, LORA.r);
      for (let j = 0; j < ref.length; j++) expect(Math.abs(t.data[j] - ref[j])).toBeLessThanOrEqual(Math.abs(ref[j]) * 2 ** -24 + 1e-12);
      changed++;
    }
    expect(changed).toBe(2 * 3);
    await expect(mergePeftIntoModel(baseDir, adapterDir, outDir)).rejects.toThrow(/exists and is not empty/);
  });
});
