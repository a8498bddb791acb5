// Out of GPU memory is a JS error the caller can catch, and the GPU stays usable: a model too large for
// the device, then a batch too large for a model that fits, each followed by a call that works.
import { describe, expect, inject, it } from 'vitest';
import { Engine } from '../../lib/engine/engine.js';
import type { LlamaConfig } from '../../lib/model/config.js';
import { kernels } from '../../lib/engine/kernels.js';

const cuda = inject('cuda');

const fits: LlamaConfig = {
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 1,
  num_attention_heads: 4,
  num_key_value_heads: 4,
  vocab_size: 32000,
  max_position_embeddings: 1024,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: true,
};

async function works(engine: Engine): Promise<number> {
  const tokens = Int32Array.from({ length: 2 * 16 }, (_, i) => (i * 37) % fits.vocab_size);
  const { loss } = await engine.forwardBackward(tokens, tokens, { batch: 2, seq: 16 });
  return loss;
}

describe.skipIf(!cuda.ok || inject('target') !== 'cuda')(`CUDA out of memory (${cuda.device ?? 'no GPU'})`, () => {
  it('a model larger than the GPU: Engine.create rejects with out of memory; a new engine works', async () => {
    // About 1.1 TB of fp32 weights (64 layers of hidden 16384, intermediate 65536): larger than any GPU.
    const huge: LlamaConfig = { ...fits, hidden_size: 16384, intermediate_size: 65536, num_hidden_layers: 64, num_attention_heads: 128, num_key_value_heads: 128 };
    const t0 = performance.now();
    await expect(Engine.create({ config: huge, device: 'cuda' })).rejects.toThrow(/out of memory/);
    console.log(`Engine.create of ~1.1 TB rejected after ${(performance.now() - t0).toFixed(0)} ms`);
    const engine = await Engine.create({ config: fits, device: 'cuda', seed: 1 });
    try {
      expect(Number.isFinite(await works(engine))).toBe(true);
    } finally {
      engine.dispose();
    }
    // The kernels' backend is unaffected too.
    const c = kernels.matmul(Float32Array.of(1, 2, 3, 4), Float32Array.of(1, 0, 0, 1), { m: 2, n: 2, k: 2, device: 'cuda' });
    expect(Array.from(c)).toEqual([1, 2, 3, 4]);
  });

  it('a batch larger than the GPU: forwardBackward rejects with out of memory; the same engine then works', async () => {
    const engine = await Engine.create({ config: fits, device: 'cuda', seed: 1 });
    try {
      const before = await works(engine);
      // 2M tokens × 32000 logits × 4 bytes ≈ 256 GB of activations.
      const B = 2048, T = 1024;
      const tokens = new Int32Array(B * T);
      await expect(engine.forwardBackward(tokens, tokens, { batch: B, seq: T })).rejects.toThrow(/out of memory/);
      const after = await works(engine);
      expect(Number.isFinite(after)).toBe(true);
      // The weights did not move (no step), so the same batch gives the same loss.
      expect(after).toBeCloseTo(before, 5);
    } finally {
      engine.dispose();
    }
  });
});
