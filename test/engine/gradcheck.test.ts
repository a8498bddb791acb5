// Whole-model checks of a tiny LLaMA: the engine's loss and logits against the float64 reference model,
// and every gradient against central finite differences of that reference (full training and LoRA,
// grouped-query attention, tied and untied embeddings, linear RoPE scaling and none at all).
import { describe, expect, it } from 'vitest';
import { Engine } from '../../lib/engine/engine.js';
import { NOPE_ROPE_FACTOR, type LlamaConfig, type LoraOptions } from '../../lib/model/config.js';
import * as ref from './reference.js';

const base: LlamaConfig = {
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 11,
  max_position_embeddings: 16,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
};

const B = 2;
const T = 6;
const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % base.vocab_size);
const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 5 === 4 ? -100 : (i * 5 + 1) % base.vocab_size));

/** Gives every tensor random, larger-than-init values so every path carries signal; returns them in float64. */
function randomize(engine: Engine): Map<string, Float64Array> {
  const params = new Map<string, Float64Array>();
  engine.parameters().forEach((p, i) => {
    const n = p.shape.reduce((a, b) => a * b, 1);
    const isNorm = p.shape.length === 1;
    const data = ref.randn(n, 100 + i, isNorm ? 0.2 : 0.35).map((x) => (isNorm ? 1 + x : x));
    engine.setParameter(p.name, data);
    params.set(p.name, Float64Array.from(data));
  });
  return params;
}

const cases: Array<{ name: string; config: LlamaConfig; lora: LoraOptions | null }> = [
  { name: 'full training, GQA, untied head', config: base, lora: null },
  { name: 'full training, tied embeddings, MHA', config: { ...base, tie_word_embeddings: true, num_key_value_heads: 4 }, lora: null },
  { name: 'full training, linear RoPE scaling (factor 2.5)', config: { ...base, rope_scaling: { rope_type: 'linear', factor: 2.5 } }, lora: null },
  { name: 'full training, no positional encoding (linear factor 1e9)', config: { ...base, rope_scaling: { rope_type: 'linear', factor: NOPE_ROPE_FACTOR } }, lora: null },
  {
    name: 'LoRA on q, v, o, gate, down with GQA and tied embeddings',
    config: { ...base, tie_word_embeddings: true },
    lora: { r: 3, alpha: 6, dropout: 0, targets: ['q_proj', 'v_proj', 'o_proj', 'gate_proj', 'down_proj'] },
  },
];

describe.each(cases)('tiny model: $name', ({ config, lora }) => {
  it('matches the float64 model: logits, loss, and every gradient by finite differences', async () => {
    const engine = await Engine.create({ config, lora, seed: 5, threads: 2 });
    try {
      const params = randomize(engine);
      const refLora = lora ? { r: lora.r, alpha: lora.alpha, targets: lora.targets } : null;
      const want = ref.llamaLoss(config, refLora, params, tokens, targets, B, T);
      const logits = await engine.forward(tokens, { batch: B, seq: T });
      const lc = ref.compare(logits, want.logits, 1e-4, 1e-4);
      expect(lc.ok, `logits max err ${lc.maxErr}`).toBe(true);
      const { loss, tokens: counted } = await engine.forwardBackward(tokens, targets, { batch: B, seq: T });
      expect(counted).toBe(targets.filter((t) => t !== -100).length);
      expect(Math.abs(loss - want.loss)).toBeLessThan(1e-5 * Math.max(1, want.loss));

      const trainable = engine.parameters().filter((p) => p.trainable);
      expect(trainable.length).toBeGreaterThan(0);
      if (lora) expect(trainable.every((p) => p.name.includes('.lora_'))).toBe(true);
      if (config.tie_word_embeddings) expect(engine.parameterNames()).not.toContain('lm_head.weight');
      const h = 1e-5;
      const report: string[] = [];
      for (const p of trainable) {
        const grad = engine.getGradient(p.name);
        const values = params.get(p.name)!;
        const fd = new Float64Array(values.length);
        for (let i = 0; i < values.length; i++) {
          const keep = values[i];
          values[i] = keep + h;
          const up = ref.llamaLoss(config, refLora, params, tokens, targets, B, T).loss;
          values[i] = keep - h;
          const down = ref.llamaLoss(config, refLora, params, tokens, targets, B, T).loss;
          values[i] = keep;
          fd[i] = (up - down) / (2 * h);
        }
        const scale = Math.max(ref.maxAbs(fd), 1e-3);
        const r = ref.compare(grad, fd, 2e-4 * scale, 2e-3);
        report.push(`${p.name}: max err ${r.maxErr.toExponential(2)} (max |g| ${scale.toExponential(2)})`);
        expect(r.ok, `${p.name}: max err ${r.maxErr} at ${r.worst} (engine ${grad[r.worst]}, finite diff ${fd[r.worst]})`).toBe(true);
      }
      expect(report.length).toBe(trainable.length);
    } finally {
      engine.dispose();
    }
  });
});

describe('finite differences through the engine itself', () => {
  it('agree with its own gradients (float32, a sample of coordinates)', async () => {
    const engine = await Engine.create({ config: base, seed: 9, threads: 1 });
    try {
      randomize(engine);
      await engine.forwardBackward(tokens, targets, { batch: B, seq: T });
      const h = 1e-2;
      for (const name of ['model.layers.1.self_attn.k_proj.weight', 'model.layers.0.mlp.up_proj.weight', 'model.embed_tokens.weight']) {
        const grad = engine.getGradient(name);
        const values = engine.getParameter(name);
        // The coordinates with the largest gradients: the float32 difference quotient is meaningful there.
        const idx = Array.from(grad.keys()).sort((a, b) => Math.abs(grad[b]) - Math.abs(grad[a])).slice(0, 4);
        for (const i of idx) {
          const keep = values[i];
          values[i] = keep + h;
          engine.setParameter(name, values);
          const up = (await engine.forwardBackward(tokens, targets, { batch: B, seq: T })).loss;
          values[i] = keep - h;
          engine.setParameter(name, values);
          const down = (await engine.forwardBackward(tokens, targets, { batch: B, seq: T })).loss;
          values[i] = keep;
          engine.setParameter(name, values);
          const fd = (up - down) / (2 * h);
          expect(Math.abs(fd - grad[i]), `${name}[${i}]: fd ${fd} vs ${grad[i]}`).toBeLessThan(0.02 * Math.abs(grad[i]) + 1e-3);
        }
      }
    } finally {
      engine.dispose();
    }
  });
});
