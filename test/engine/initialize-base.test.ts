// Engine.create({ initializeBase: false }): base weights wait at zero for a load; LoRA tensors still start as PEFT's.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../lib/engine/engine.js';

const config = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 24, max_position_embeddings: 32 };

describe('initializeBase', () => {
  it('skips the random base init but still initializes LoRA A (Kaiming-uniform) and B (zeros)', async () => {
    const lora = { r: 4, alpha: 8, targets: ['q_proj', 'down_proj'] };
    const loading = await Engine.create({ config, lora, initializeBase: false, threads: 1, seed: 3 });
    const fresh = await Engine.create({ config, lora, threads: 1, seed: 3 });
    for (const name of loading.parameterNames()) {
      const got = loading.getParameter(name);
      if (name.includes('lora_A')) {
        expect(Array.from(got), name).toEqual(Array.from(fresh.getParameter(name))); // the same PEFT init
        expect(got.some((x) => x !== 0)).toBe(true);
      } else {
        expect(got.every((x) => x === 0), `${name} should be left at zero`).toBe(true);
      }
    }
    expect(fresh.getParameter('model.layers.0.mlp.up_proj.weight').some((x) => x !== 0)).toBe(true);
    loading.dispose();
    fresh.dispose();
  });
});
