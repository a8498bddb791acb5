// config.json <-> LlamaConfig: every RoPE spelling, transformers' defaults, and errors that name the file,
// the field and the value.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseHfConfig, parseHfConfigText, readHfConfig, toGenerationConfig, toHfConfig } from '../../lib/model/hf-config.js';
import { NOPE_ROPE_FACTOR, PRESETS } from '../../lib/model/config.js';

const dir = mkdtempSync(join(tmpdir(), 'hf-config-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A minimal config.json of a small LLaMA (the sizes transformers would otherwise default to 7B's). */
const minimal = {
  model_type: 'llama',
  hidden_size: 64,
  intermediate_size: 160,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  vocab_size: 100,
};

describe('reading config.json', () => {
  it("fills transformers' LlamaConfig defaults", () => {
    const hf = parseHfConfig(minimal);
    expect(hf.config).toEqual({
      ...minimal,
      model_type: undefined,
      num_key_value_heads: 4,
      max_position_embeddings: 2048,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: false,
    } as unknown as typeof hf.config);
    expect(hf.rope).toEqual({ theta: 10000, scaling: null });
    expect(hf.headDim).toBe(16);
    expect(hf.bosTokenId).toBe(1);
    expect(hf.eosTokenId).toBe(2);
    expect(hf.padTokenId).toBeNull();
    expect(hf.torchDtype).toBeNull();
    expect(hf.modelType).toBe('llama');
  });

  it('reads a real-looking open_llama_3b config.json (nulls, GQA absent, torch_dtype)', () => {
    const hf = parseHfConfig({
      architectures: ['LlamaForCausalLM'],
      bos_token_id: 1,
      eos_token_id: 2,
      hidden_act: 'silu',
      hidden_size: 3200,
      initializer_range: 0.02,
      intermediate_size: 8640,
      max_position_embeddings: 2048,
      model_type: 'llama',
      num_attention_heads: 32,
      num_hidden_layers: 26,
      pad_token_id: 0,
      rms_norm_eps: 1e-6,
      tie_word_embeddings: false,
      torch_dtype: 'float16',
      transformers_version: '4.28.0.dev0',
      use_cache: true,
      vocab_size: 32000,
    });
    expect(hf.config.num_key_value_heads).toBe(32);
    expect(hf.headDim).toBe(100);
    expect(hf.padTokenId).toBe(0);
    expect(hf.torchDtype).toBe('float16');
    expect(hf.config.initializer_range).toBe(0.02);
  });

  it('reads rope_theta at the top level', () => {
    expect(parseHfConfig({ ...minimal, rope_theta: 500000 }).rope).toEqual({ theta: 500000, scaling: null });
  });

  it('reads rope_scaling spelled with "type" (transformers < 4.43)', () => {
    const hf = parseHfConfig({ ...minimal, rope_scaling: { type: 'linear', factor: 4.0 } });
    expect(hf.rope.scaling).toEqual({ type: 'linear', factor: 4, originalMaxPositionEmbeddings: null });
    const dyn = parseHfConfig({ ...minimal, rope_scaling: { type: 'dynamic', factor: 2.0 } });
    expect(dyn.rope.scaling?.type).toBe('dynamic');
  });

  it('reads rope_scaling spelled with "rope_type" (LLaMA 3.1 style llama3 scaling)', () => {
    const hf = parseHfConfig({
      ...minimal,
      max_position_embeddings: 131072,
      rope_theta: 500000.0,
      rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
    });
    expect(hf.rope).toEqual({
      theta: 500000,
      scaling: { type: 'llama3', factor: 8, originalMaxPositionEmbeddings: 8192, lowFreqFactor: 1, highFreqFactor: 4 },
    });
  });

  it('reads yarn with its defaults filled', () => {
    const hf = parseHfConfig({ ...minimal, max_position_embeddings: 8192, rope_scaling: { rope_type: 'yarn', factor: 4.0, original_max_position_embeddings: 2048 } });
    expect(hf.rope.scaling).toEqual({
      type: 'yarn',
      factor: 4,
      originalMaxPositionEmbeddings: 2048,
      betaFast: 32,
      betaSlow: 1,
      attentionFactor: null,
      mscale: null,
      mscaleAllDim: null,
      truncate: null,
    });
  });

  it('reads rope_parameters (transformers >= 5), theta included', () => {
    const plain = parseHfConfig({ ...minimal, rope_parameters: { rope_type: 'default', rope_theta: 250000.0 } });
    expect(plain.rope).toEqual({ theta: 250000, scaling: null });
    expect(plain.config.rope_theta).toBe(250000);
    const scaled = parseHfConfig({ ...minimal, rope_parameters: { rope_type: 'linear', factor: 2.0, rope_theta: 10000.0 } });
    expect(scaled.rope.scaling).toEqual({ type: 'linear', factor: 2, originalMaxPositionEmbeddings: null });
    // No rope_type inside rope_parameters reads as plain RoPE.
    expect(parseHfConfig({ ...minimal, rope_parameters: { rope_theta: 1e6 } }).rope).toEqual({ theta: 1e6, scaling: null });
  });

  it('treats rope_type "default" as no scaling, in either spelling', () => {
    expect(parseHfConfig({ ...minimal, rope_scaling: { rope_type: 'default' } }).rope.scaling).toBeNull();
    expect(parseHfConfig({ ...minimal, rope_scaling: null }).rope.scaling).toBeNull();
  });

  it('accepts mistral only without a sliding window', () => {
    expect(parseHfConfig({ ...minimal, model_type: 'mistral', sliding_window: null }).modelType).toBe('mistral');
    expect(parseHfConfig({ ...minimal, model_type: 'mistral', sliding_window: 4096 }).modelType).toBe('mistral');
    expect(() => parseHfConfig({ ...minimal, model_type: 'mistral', sliding_window: 512 })).toThrow(
      /config\.json: sliding_window 512 is below max_position_embeddings 2048/,
    );
  });

  it('reads eos_token_id lists and dtype (transformers >= 5 spelling)', () => {
    const hf = parseHfConfig({ ...minimal, eos_token_id: [2, 7], dtype: 'bfloat16' });
    expect(hf.eosTokenId).toEqual([2, 7]);
    expect(hf.torchDtype).toBe('bfloat16');
  });
});

describe('config.json errors name the file, the field and the value', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a string size', { hidden_size: 'abc' }, /^config\.json: hidden_size must be a positive integer, got "abc"$/],
    ['a missing size', { vocab_size: undefined }, /^config\.json: vocab_size must be a positive integer, got nothing \(the field is missing\)$/],
    ['a fractional size', { num_hidden_layers: 2.5 }, /num_hidden_layers must be a positive integer, got 2\.5/],
    ['a zero size', { intermediate_size: 0 }, /intermediate_size must be a positive integer, got 0/],
    ['a negative eps', { rms_norm_eps: -1 }, /rms_norm_eps must be a positive number, got -1/],
    ['a string theta', { rope_theta: '10000' }, /rope_theta must be a positive number, got "10000"/],
    ['a string bool', { tie_word_embeddings: 'false' }, /tie_word_embeddings must be true or false, got "false"/],
    ['another model type', { model_type: 'qwen2' }, /model_type must be "llama" \(or "mistral" without a sliding window\), got "qwen2"/],
    ['no model type', { model_type: undefined }, /model_type must be "llama".*got nothing/],
    ['gelu', { hidden_act: 'gelu' }, /hidden_act must be "silu".*got "gelu"/],
    ['biases', { attention_bias: true }, /attention_bias must be false.*got true/],
    ['kv heads that do not divide', { num_key_value_heads: 3 }, /num_key_value_heads must divide num_attention_heads \(4\), got 3/],
    ['hidden not a multiple of heads', { hidden_size: 66 }, /hidden_size \(66\) must be a multiple of num_attention_heads \(4\)/],
    ['a head_dim the engine cannot run', { head_dim: 32 }, /head_dim 32 differs from hidden_size \/ num_attention_heads = 16/],
    ['an unknown RoPE type via type', { rope_scaling: { type: 'su', factor: 2 } }, /config\.json: rope_scaling\.type "su" is not a supported RoPE type \(supported: default, linear, dynamic, llama3, yarn\)/],
    ['an unknown RoPE type via rope_type', { rope_scaling: { rope_type: 'longrope', factor: 2 } }, /rope_scaling\.rope_type "longrope" is not a supported RoPE type/],
    ['an unknown RoPE type in rope_parameters', { rope_parameters: { rope_type: 'ntk', rope_theta: 1e4 } }, /rope_parameters\.rope_type "ntk" is not a supported RoPE type/],
    ['type and rope_type disagreeing', { rope_scaling: { type: 'linear', rope_type: 'dynamic', factor: 2 } }, /rope_scaling\.type "linear" and rope_scaling\.rope_type "dynamic" disagree/],
    ['a scaling without kind', { rope_scaling: { factor: 2 } }, /rope_scaling must name its kind in rope_type \(or type\)/],
    ['a scaling without factor', { rope_scaling: { type: 'linear' } }, /rope_scaling\.factor must be a positive number, got nothing/],
    ['llama3 without its fields', { rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 1024 } }, /rope_scaling\.low_freq_factor must be a positive number, got nothing/],
    ['llama3 with inverted factors', { rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 1024, low_freq_factor: 4, high_freq_factor: 1 } }, /rope_scaling\.high_freq_factor must be greater than low_freq_factor \(4\), got 1/],
    ['two thetas disagreeing', { rope_theta: 10000, rope_parameters: { rope_type: 'default', rope_theta: 500000 } }, /rope_theta 10000 and rope_parameters\.rope_theta 500000 disagree/],
    ['rope_scaling not an object', { rope_scaling: 'linear' }, /rope_scaling must be an object/],
    ['per-layer-type rope_parameters', { rope_parameters: { full_attention: { rope_type: 'default' }, sliding_attention: { rope_type: 'default' } } }, /rope_parameters holds per-layer-type settings/],
    ['a bos id outside the vocabulary', { bos_token_id: 100 }, /bos_token_id must be below vocab_size \(100\), got 100/],
    ['an unknown torch_dtype', { torch_dtype: 'int8' }, /torch_dtype must be "float32", "float16" or "bfloat16", got "int8"/],
  ];
  for (const [what, patch, message] of cases) {
    it(`refuses ${what}`, () => {
      const json: Record<string, unknown> = { ...minimal, ...patch };
      for (const [k, v] of Object.entries(patch)) if (v === undefined) delete json[k];
      expect(() => parseHfConfig(json)).toThrow(message);
    });
  }

  it('names the file path when reading from disk, and JSON syntax errors', () => {
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify({ ...minimal, hidden_size: 'abc' }));
    expect(() => readHfConfig(path)).toThrow(`${path}: hidden_size must be a positive integer, got "abc"`);
    expect(() => readHfConfig(dir)).toThrow(`${path}: hidden_size`); // a folder reads its config.json
    expect(() => parseHfConfigText('{"model_type": "llama",', '/m/config.json')).toThrow(/^\/m\/config\.json: not valid JSON/);
    expect(() => readHfConfig(join(dir, 'nope.json'))).toThrow(/nope\.json: cannot read the model config \(ENOENT\)/);
  });
});

describe('writing config.json', () => {
  it('writes what transformers writes for LlamaForCausalLM, and reads back to the same config', () => {
    const config = { ...PRESETS.tiny };
    const json = toHfConfig(config, { torchDtype: 'bfloat16', bosTokenId: 1, eosTokenId: 2, padTokenId: 0 });
    expect(json).toMatchObject({
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      torch_dtype: 'bfloat16',
      bos_token_id: 1,
      eos_token_id: 2,
      pad_token_id: 0,
      hidden_act: 'silu',
      attention_bias: false,
      mlp_bias: false,
      head_dim: 32,
      rope_scaling: null,
      rope_theta: 10000,
      num_key_value_heads: 2,
      tie_word_embeddings: true,
    });
    expect(Object.keys(json)).toEqual([...Object.keys(json)].sort());
    const back = parseHfConfig(JSON.parse(JSON.stringify(json)));
    expect(back.config).toEqual({ ...config, initializer_range: 0.02 });
    expect(back.torchDtype).toBe('bfloat16');
    expect(back.padTokenId).toBe(0);
  });

  it('round-trips every RoPE scaling through our writer, in the spelling old and new transformers read', () => {
    const config = { ...PRESETS.tiny, max_position_embeddings: 4096 };
    const ropes = [
      { theta: 10000, scaling: { type: 'linear' as const, factor: 2, originalMaxPositionEmbeddings: null } },
      { theta: 10000, scaling: { type: 'dynamic' as const, factor: 3, originalMaxPositionEmbeddings: null } },
      { theta: 10000, scaling: { type: 'llama3' as const, factor: 8, originalMaxPositionEmbeddings: 1024, lowFreqFactor: 1, highFreqFactor: 4 } },
      { theta: 10000, scaling: { type: 'yarn' as const, factor: 4, originalMaxPositionEmbeddings: 1024, betaFast: 32, betaSlow: 1, attentionFactor: null, mscale: null, mscaleAllDim: null, truncate: null } },
    ];
    for (const rope of ropes) {
      // the engine runs linear scaling, so it lives in the engine's config too (and must agree with `rope`)
      const json = toHfConfig(rope.scaling.type === 'linear' ? { ...config, rope_scaling: { rope_type: 'linear', factor: 2 } } : config, { rope });
      // linear and dynamic in the {type, factor} form transformers 4.x before 4.43 insists on.
      if (rope.scaling.type === 'linear') expect(json.rope_scaling).toEqual({ type: 'linear', factor: 2 });
      else if (rope.scaling.type === 'dynamic') expect(json.rope_scaling).toEqual({ type: 'dynamic', factor: 3 });
      else expect((json.rope_scaling as Record<string, unknown>).rope_type).toBe(rope.scaling.type);
      expect(parseHfConfig(json).rope).toEqual(rope);
    }
    expect(() => toHfConfig(config, { rope: { theta: 5, scaling: null } })).toThrow(/rope\.theta 5 differs from config\.rope_theta 10000/);
    expect(() => toHfConfig(config, { eosTokenId: 32 })).toThrow(/eos_token_id must be an integer in \[0, 32\) or null, got 32/);
  });

  it('writes the config\'s linear RoPE scaling (NoPE included) and reads it back into the config', () => {
    for (const factor of [4, NOPE_ROPE_FACTOR]) {
      const config = { ...PRESETS.mini, rope_scaling: { rope_type: 'linear' as const, factor } };
      const json = toHfConfig(config);
      expect(json.rope_scaling).toEqual({ type: 'linear', factor });
      const back = parseHfConfig(JSON.parse(JSON.stringify(json)));
      expect(back.config).toEqual({ ...config, initializer_range: 0.02 });
      expect(back.rope.scaling).toEqual({ type: 'linear', factor, originalMaxPositionEmbeddings: null });
    }
    const scaled = { ...PRESETS.mini, rope_scaling: { rope_type: 'linear' as const, factor: 4 } };
    expect(() => toHfConfig(scaled, { rope: { theta: 10000, scaling: null } })).toThrow(/rope\.scaling null differs from config\.rope_scaling \{"rope_type":"linear","factor":4\}/);
    expect(() => toHfConfig(PRESETS.mini, { rope: { theta: 10000, scaling: { type: 'linear', factor: 2, originalMaxPositionEmbeddings: null } } })).toThrow(/differs from config\.rope_scaling null/);
    expect(() => toHfConfig({ ...PRESETS.mini, rope_scaling: { rope_type: 'dynamic' as 'linear', factor: 2 } })).toThrow(/rope_scaling\.rope_type must be 'linear' .*got "dynamic"/);
    expect(() => toHfConfig({ ...PRESETS.mini, rope_scaling: { rope_type: 'linear', factor: 0 } })).toThrow(/rope_scaling\.factor must be a positive number up to 1e30, got 0/);
  });

  it('writes generation_config.json from the token ids', () => {
    expect(toGenerationConfig({ bosTokenId: 1, eosTokenId: 2, padTokenId: 0 })).toEqual({
      _from_model_config: true,
      bos_token_id: 1,
      eos_token_id: 2,
      pad_token_id: 0,
    });
  });
});
