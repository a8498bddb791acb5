// bench/flops.ts: FLOP counts checked by brute force (attention pairs) and against the engine's own
// parameters (the linear weights a training step multiplies, and the LoRA adapters).
import { describe, expect, it } from 'vitest';
import { attentionFlops, linearParameters, matmulFlops, trainStepFlops } from '../../bench/flops.js';
import { Engine } from '../../lib/engine/engine.js';
import { presetConfig, type LoraOptions } from '../../lib/model/config.js';

describe('matmulFlops and attentionFlops', () => {
  it('counts 2 m n k for a matmul and names a bad dimension', () => {
    expect(matmulFlops(3, 5, 7)).toBe(210);
    expect(() => matmulFlops(3, 0, 7)).toThrow(/n must be an integer >= 1, got 0/);
  });

  it('counts 2 d FLOPs per scored pair and product, by brute force over the causal mask', () => {
    const b = 2, t = 9, h = 3, d = 4;
    let pairs = 0;
    for (let i = 0; i < t; i++) for (let j = 0; j < t; j++) if (j <= i) pairs++;
    // Forward: Q K^T and P V; backward: dV, dP, dQ, dK.
    expect(attentionFlops({ b, t, h, d }, 'forward')).toBe(2 * 2 * d * pairs * b * h);
    expect(attentionFlops({ b, t, h, d }, 'backward')).toBe(4 * 2 * d * pairs * b * h);
    expect(attentionFlops({ b, t, h, d })).toBe(6 * 2 * d * pairs * b * h);
    expect(attentionFlops({ b, t, h, d, causal: false }, 'forward')).toBe(2 * 2 * d * t * t * b * h);
    expect(() => attentionFlops({ b, t: 0, h, d })).toThrow(/shape\.t must be an integer >= 1, got 0/);
  });
});

describe('trainStepFlops', () => {
  const config = presetConfig('tiny');
  const lora: LoraOptions = { r: 8, alpha: 16, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };

  it('counts the linear weights the engine holds (the tied head counted as a matmul)', async () => {
    const engine = await Engine.create({ config, seed: 1, threads: 1 });
    let linear = 0;
    for (const name of engine.parameterNames()) if (/_proj\.weight$/.test(name)) linear += engine.getParameter(name).length;
    engine.dispose();
    expect(linearParameters(config).total).toBe(linear + config.vocab_size * config.hidden_size);
  });

  it('is 6 P tokens plus attention for full training, 4 P tokens plus 6 x adapters with LoRA', async () => {
    const P = linearParameters(config).total;
    const heads = config.num_attention_heads;
    const attention = config.num_hidden_layers * attentionFlops({ b: 4, t: 32, h: heads, d: config.hidden_size / heads });
    expect(trainStepFlops(config, 4, 32)).toBe(6 * P * 128 + attention);
    const engine = await Engine.create({ config, lora, seed: 1, threads: 1 });
    let adapters = 0;
    for (const name of engine.parameterNames()) if (/lora_[AB]\.weight$/.test(name)) adapters += engine.getParameter(name).length;
    engine.dispose();
    expect(adapters).toBeGreaterThan(0);
    expect(trainStepFlops(config, 4, 32, lora)).toBe(4 * P * 128 + 6 * adapters * 128 + attention);
    expect(trainStepFlops(config, 4, 32, lora)).toBeLessThan(trainStepFlops(config, 4, 32));
  });

  it('names a bad LoRA target and a bad batch', () => {
    expect(() => trainStepFlops(config, 4, 32, { ...lora, targets: ['qproj'] })).toThrow(/lora\.targets has 'qproj'/);
    expect(() => trainStepFlops(config, 0, 32)).toThrow(/batch must be an integer >= 1, got 0/);
  });
});
