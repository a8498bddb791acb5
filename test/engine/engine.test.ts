// The Engine surface: names and initialisation, determinism, training to overfit, generation with the
// KV cache against full forwards, the event loop staying free, progress, abort, and argument errors.
import { describe, expect, it } from 'vitest';
import { Engine } from '../../lib/engine/engine.js';
import { presetConfig, type LlamaConfig } from '../../lib/model/config.js';
import * as ref from './reference.js';

const small: LlamaConfig = {
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 32,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
};

function batch(b: number, t: number, vocab: number, seed = 1): { tokens: Int32Array; targets: Int32Array } {
  const r = ref.rng(seed);
  const seqs = Int32Array.from({ length: b * (t + 1) }, () => Math.floor(r() * vocab));
  const tokens = new Int32Array(b * t);
  const targets = new Int32Array(b * t);
  for (let i = 0; i < b; i++)
    for (let j = 0; j < t; j++) {
      tokens[i * t + j] = seqs[i * (t + 1) + j];
      targets[i * t + j] = seqs[i * (t + 1) + j + 1];
    }
  return { tokens, targets };
}

function argmax(a: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[offset + i] > a[offset + best]) best = i;
  return best;
}

describe('Engine parameters', () => {
  it('uses Hugging Face and PEFT names and shapes, and initializes like them', async () => {
    const engine = await Engine.create({
      config: small,
      lora: { r: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'up_proj'] },
      seed: 3,
    });
    const names = engine.parameterNames();
    expect(names).toContain('model.embed_tokens.weight');
    expect(names).toContain('model.layers.1.self_attn.k_proj.weight');
    expect(names).toContain('model.layers.0.post_attention_layernorm.weight');
    expect(names).toContain('model.norm.weight');
    expect(names).toContain('lm_head.weight');
    const shapes = new Map(engine.parameters().map((p) => [p.name, p]));
    expect(shapes.get('model.layers.0.self_attn.k_proj.weight')!.shape).toEqual([16, 32]);
    expect(shapes.get('base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight')!.shape).toEqual([4, 32]);
    expect(shapes.get('base_model.model.model.layers.1.mlp.up_proj.lora_B.weight')!.shape).toEqual([64, 4]);
    expect(engine.trainableNames().sort()).toEqual(names.filter((n) => n.includes('.lora_')).sort());
    expect(engine.trainableNames()).toHaveLength(8);
    const w = engine.getParameter('model.layers.0.mlp.down_proj.weight');
    const std = Math.sqrt(w.reduce((s, x) => s + x * x, 0) / w.length);
    expect(std).toBeGreaterThan(0.018);
    expect(std).toBeLessThan(0.022);
    expect(Array.from(engine.getParameter('model.norm.weight')).every((x) => x === 1)).toBe(true);
    expect(Array.from(engine.getParameter('base_model.model.model.layers.0.mlp.up_proj.lora_B.weight')).every((x) => x === 0)).toBe(true);
    const a = engine.getParameter('base_model.model.model.layers.0.mlp.up_proj.lora_A.weight');
    const bound = 1 / Math.sqrt(32);
    expect(ref.maxAbs(a)).toBeLessThanOrEqual(bound);
    expect(ref.maxAbs(a)).toBeGreaterThan(0.9 * bound);
    const again = await Engine.create({ config: small, seed: 3 });
    expect(again.getParameter('model.layers.0.mlp.down_proj.weight')).toEqual(w);
    const other = await Engine.create({ config: small, seed: 4 });
    expect(other.getParameter('model.layers.0.mlp.down_proj.weight')).not.toEqual(w);
    // Optimizer state round-trips (checkpoints).
    const name = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
    const st = { expAvg: ref.randn(128, 1), expAvgSq: ref.randn(128, 2).map(Math.abs) };
    engine.setOptimizerState(name, st);
    expect(engine.getOptimizerState(name).expAvg).toEqual(st.expAvg);
    engine.stepCount = 7;
    expect(engine.stepCount).toBe(7);
    for (const e of [engine, again, other]) e.dispose();
  });

  it('is deterministic: the same seed and inputs give bitwise-equal losses and gradients, for 1 or 2 threads', async () => {
    const { tokens, targets } = batch(4, 16, 32);
    const run = async (threads: number) => {
      const e = await Engine.create({ config: small, seed: 11, threads, lora: { r: 2, alpha: 4, dropout: 0.2, targets: ['v_proj', 'down_proj'] } });
      const r = await e.forwardBackward(tokens, targets, { batch: 4, seq: 16, dropoutSeed: 1 });
      const g = e.getGradient('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight');
      e.dispose();
      return { loss: r.loss, g };
    };
    const a = await run(2);
    const b = await run(2);
    const c = await run(1);
    expect(a.loss).toBe(b.loss);
    expect(a.g).toEqual(b.g);
    expect(c.loss).toBe(a.loss);
    expect(c.g).toEqual(a.g);
  });
});

describe('Engine training', () => {
  it('overfits one batch (full training, AdamW with clipping)', async () => {
    const engine = await Engine.create({ config: small, seed: 1, threads: 2 });
    const { tokens, targets } = batch(4, 16, 32, 7);
    const first = await engine.forwardBackward(tokens, targets, { batch: 4, seq: 16 });
    expect(first.loss).toBeGreaterThan(3);
    let last = first.loss;
    for (let i = 0; i < 150; i++) {
      const s = await engine.step({ lr: 1e-2, weightDecay: 0.01, maxGradNorm: 1 });
      expect(s.skipped).toBe(false);
      expect(s.step).toBe(i + 1);
      last = (await engine.forwardBackward(tokens, targets, { batch: 4, seq: 16 })).loss;
    }
    expect(last).toBeLessThan(0.05);
    engine.dispose();
  });

  it('overfits one batch with LoRA only (base frozen)', async () => {
    const engine = await Engine.create({ config: small, seed: 2, lora: { r: 8, alpha: 16, dropout: 0, targets: ['all-linear'] } });
    // A stand-in for a pretrained base: embeddings and head large enough to express any next token.
    for (const name of ['model.embed_tokens.weight', 'lm_head.weight']) engine.setParameter(name, ref.randn(32 * 32, name.length, 1));
    const before = engine.getParameter('model.layers.0.self_attn.q_proj.weight');
    const { tokens, targets } = batch(2, 12, 32, 3);
    const first = (await engine.forwardBackward(tokens, targets, { batch: 2, seq: 12 })).loss;
    let loss = first;
    for (let i = 0; i < 150; i++) {
      await engine.step({ lr: 1e-2 });
      loss = (await engine.forwardBackward(tokens, targets, { batch: 2, seq: 12 })).loss;
    }
    expect(first).toBeGreaterThan(3);
    expect(loss).toBeLessThan(0.1);
    expect(engine.getParameter('model.layers.0.self_attn.q_proj.weight')).toEqual(before);
    expect(() => engine.getGradient('model.layers.0.self_attn.q_proj.weight')).toThrow(/is frozen and has no gradient/);
    engine.dispose();
  });

  it('accumulates gradients when asked', async () => {
    const engine = await Engine.create({ config: small, seed: 1 });
    const { tokens, targets } = batch(2, 8, 32);
    await engine.forwardBackward(tokens, targets, { batch: 2, seq: 8 });
    const g1 = engine.getGradient('model.norm.weight');
    await engine.forwardBackward(tokens, targets, { batch: 2, seq: 8, accumulate: true });
    const g2 = engine.getGradient('model.norm.weight');
    const c = ref.compare(g2, g1.map((x) => 2 * x), 1e-7, 1e-5);
    expect(c.ok).toBe(true);
    engine.dispose();
  });
});

describe('Engine with frozen weights in bf16', () => {
  const lora = { r: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };

  it('computes exactly what an fp32 engine computes on the same weights rounded to bf16, in less memory', async () => {
    const half = await Engine.create({ config: small, lora, seed: 3, threads: 1, device: 'cpu', frozenWeights: 'bf16' });
    const full = await Engine.create({ config: small, lora, seed: 3, threads: 1, device: 'cpu' });
    const r = ref.rng(17);
    for (const name of half.parameterNames()) {
      // LoRA B gets values, so that every LoRA gradient is exercised; the rest is the bf16 engine's own.
      const w = name.includes('lora_B') ? Float32Array.from({ length: half.getParameter(name).length }, () => (r() - 0.5) * 0.1) : half.getParameter(name);
      half.setParameter(name, w);
      full.setParameter(name, w);
    }
    // The stored base matrices are bf16: the low 16 bits of every float are zero; norms and embeddings stay fp32.
    const q = new Uint32Array(half.getParameter('model.layers.0.self_attn.q_proj.weight').buffer);
    expect(q.every((bits) => (bits & 0xffff) === 0)).toBe(true);
    const head = new Uint32Array(half.getParameter('lm_head.weight').buffer);
    expect(head.every((bits) => (bits & 0xffff) === 0)).toBe(true);
    const embed = new Uint32Array(half.getParameter('model.embed_tokens.weight').buffer);
    expect(embed.some((bits) => (bits & 0xffff) !== 0)).toBe(true);

    const { tokens, targets } = batch(3, 12, 32, 4);
    expect(await half.forward(tokens, { batch: 3, seq: 12 })).toEqual(await full.forward(tokens, { batch: 3, seq: 12 }));
    const lh = await half.forwardBackward(tokens, targets, { batch: 3, seq: 12 });
    const lf = await full.forwardBackward(tokens, targets, { batch: 3, seq: 12 });
    expect(lh.loss).toBe(lf.loss);
    for (const name of half.trainableNames()) expect(half.getGradient(name)).toEqual(full.getGradient(name));
    await half.step({ lr: 1e-2 });
    await full.step({ lr: 1e-2 });
    for (const name of half.trainableNames()) expect(half.getParameter(name)).toEqual(full.getParameter(name));

    // Base matrices: 2 layers x (4·32·32 + 3·32·64 attention/MLP numbers) + lm_head 32·32, at 2 bytes not 4.
    const baseMatrices = 2 * (32 * 32 + 16 * 32 * 2 + 32 * 32 + 3 * 32 * 64) + 32 * 32;
    expect(full.info().memoryBytes - half.info().memoryBytes).toBeGreaterThanOrEqual(2 * baseMatrices);
    expect(half.info().parameterCount).toBe(full.info().parameterCount);
    half.dispose();
    full.dispose();
  });

  it('decodes (few rows: the bf16 GEMV) to the logits an fp32 engine gets from the rounded weights', async () => {
    const half = await Engine.create({ config: small, lora, seed: 5, threads: 2, device: 'cpu', frozenWeights: 'bf16' });
    const full = await Engine.create({ config: small, lora, seed: 5, threads: 2, device: 'cpu' });
    for (const name of half.parameterNames()) full.setParameter(name, half.getParameter(name));
    // 2 x 6 = 12 rows: the products read the bf16 weights directly (no widened copy).
    const tokens = Int32Array.from({ length: 12 }, (_, i) => (i * 5 + 3) % 32);
    const a = await half.forward(tokens, { batch: 2, seq: 6 });
    const b = await full.forward(tokens, { batch: 2, seq: 6 });
    const scale = b.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (let i = 0; i < b.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-5 * scale);
    // and one decode step per row, as generation runs it
    const first = await half.decodeStart(tokens, { batch: 2, promptLength: 6, maxNewTokens: 2 });
    for (let r = 0; r < 2; r++)
      for (let v = 0; v < 32; v++) expect(Math.abs(first[r * 32 + v] - b[(r * 6 + 5) * 32 + v])).toBeLessThanOrEqual(1e-5 * scale);
    half.decodeEnd();
    half.dispose();
    full.dispose();
  });

  it('setParameter rounds to the nearest bf16; full training and unknown values are refused', async () => {
    const half = await Engine.create({ config: small, lora, seed: 1, threads: 1, device: 'cpu', frozenWeights: 'bf16' });
    const name = 'model.layers.1.mlp.down_proj.weight';
    const n = half.getParameter(name).length;
    const x = Float32Array.from({ length: n }, (_, i) => 1 + i * 2 ** -10);
    half.setParameter(name, x);
    // Round to nearest, ties to even, on the float's bits (x includes exact ties such as 1 + 2^-8).
    const bits = new Uint32Array(Float32Array.from(x).buffer);
    const want = new Float32Array(bits.map((u) => (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000).buffer);
    expect(half.getParameter(name)).toEqual(want);
    expect(want[4]).toBe(1); // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even wins
    half.dispose();
    await expect(Engine.create({ config: small, frozenWeights: 'bf16', device: 'cpu' })).rejects.toThrow(/frozenWeights = 'bf16' needs options\.lora/);
    await expect(Engine.create({ config: small, lora, frozenWeights: 'fp16' as 'bf16', device: 'cpu' })).rejects.toThrow(/frozenWeights must be 'fp32' or 'bf16', got 'fp16'/);
  });
});

describe('Engine memory', () => {
  it('counts every backend allocation: at least the model arrays, and a peak that never falls', async () => {
    const engine = await Engine.create({ config: small, seed: 1, threads: 1, device: 'cpu' });
    const before = engine.info();
    expect(before.allocatedBytes).toBeGreaterThanOrEqual(before.memoryBytes * 0.99);
    expect(before.peakAllocatedBytes).toBeGreaterThanOrEqual(before.allocatedBytes);
    // A larger batch grows the activations: the peak follows, and stays after a smaller batch.
    const big = batch(8, 32, 32, 5);
    await engine.forwardBackward(big.tokens, big.targets, { batch: 8, seq: 32 });
    const after = engine.info();
    expect(after.peakAllocatedBytes).toBeGreaterThan(before.peakAllocatedBytes);
    const small2 = batch(2, 8, 32, 6);
    await engine.forwardBackward(small2.tokens, small2.targets, { batch: 2, seq: 8 });
    expect(engine.info().peakAllocatedBytes).toBeGreaterThanOrEqual(after.peakAllocatedBytes);
    engine.dispose();
  });

  it('inference keeps one layer of activations; switching to and from training changes no result', async () => {
    const deep = { ...small, num_hidden_layers: 6 };
    const lora = { r: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'v_proj', 'down_proj'] };
    const { tokens, targets } = batch(4, 32, 32, 8);
    const shape = { batch: 4, seq: 32, dropoutSeed: 11 };
    const fresh = await Engine.create({ config: deep, lora, seed: 2, threads: 1, device: 'cpu' });
    await fresh.forwardBackward(tokens, targets, shape);
    const trainedBytes = fresh.info().allocatedBytes;
    const wantGrads = fresh.trainableNames().map((n) => fresh.getGradient(n));
    const wantLogits = await fresh.forward(tokens, shape);
    fresh.dispose();

    const engine = await Engine.create({ config: deep, lora, seed: 2, threads: 1, device: 'cpu' });
    const logits = await engine.forward(tokens, shape); // inference layout first
    const inferenceBytes = engine.info().allocatedBytes;
    await engine.forwardBackward(tokens, targets, shape); // then the training layout
    expect(engine.trainableNames().map((n) => engine.getGradient(n))).toEqual(wantGrads);
    expect(logits).toEqual(wantLogits);
    expect(await engine.forward(tokens, shape)).toEqual(wantLogits); // inference on the training layout
    // Six layers' q, k, v, attention, gate and up for 128 rows are far more than one layer's.
    const perLayer = 128 * (4 * 32 + 2 * 64) * 4;
    expect(trainedBytes - inferenceBytes).toBeGreaterThan(5 * perLayer);
    engine.dispose();
  });

  it('gradient checkpointing gives the same losses and gradients, bit for bit, with less memory', async () => {
    const deep = { ...small, num_hidden_layers: 4 };
    const { tokens, targets } = batch(4, 32, 32, 12);
    const run = async (gradientCheckpointing: boolean, lora: object | null) => {
      const engine = await Engine.create({ config: deep, lora, seed: 5, threads: 1, device: 'cpu', gradientCheckpointing });
      const losses: number[] = [];
      for (let s = 0; s < 3; s++) {
        losses.push((await engine.forwardBackward(tokens, targets, { batch: 4, seq: 32, dropoutSeed: 40 + s })).loss);
        await engine.step({ lr: 1e-2, weightDecay: 0.01, maxGradNorm: 1 });
      }
      const grads = engine.trainableNames().map((n) => engine.getGradient(n));
      const bytes = engine.info().allocatedBytes;
      engine.dispose();
      return { losses, grads, bytes };
    };
    const lora = { r: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
    for (const l of [lora, null]) {
      const plain = await run(false, l);
      const checkpointed = await run(true, l);
      expect(checkpointed.losses).toEqual(plain.losses);
      expect(checkpointed.grads).toEqual(plain.grads);
      // Three of four layers' q, attention and mid (32 wide), k and v (16), gate and up (64), 128 rows, are not kept.
      expect(plain.bytes - checkpointed.bytes).toBeGreaterThanOrEqual(3 * 128 * (3 * 32 + 2 * 16 + 2 * 64) * 4);
    }
    await expect(Engine.create({ config: deep, device: 'cpu', gradientCheckpointing: 'yes' as unknown as boolean })).rejects.toThrow(
      /options\.gradientCheckpointing must be a boolean/,
    );
  });

  it('attentionBackward is checked; on the CPU backend low-memory changes nothing', async () => {
    const { tokens, targets } = batch(2, 16, 32, 31);
    const run = async (attentionBackward?: 'fast' | 'low-memory') => {
      const engine = await Engine.create({ config: small, seed: 8, threads: 1, device: 'cpu', attentionBackward });
      const { loss } = await engine.forwardBackward(tokens, targets, { batch: 2, seq: 16 });
      const grads = engine.trainableNames().map((n) => engine.getGradient(n));
      engine.dispose();
      return { loss, grads };
    };
    const plain = await run();
    expect(await run('low-memory')).toEqual(plain);
    expect(await run('fast')).toEqual(plain);
    await expect(Engine.create({ config: small, device: 'cpu', attentionBackward: 'recompute' as 'fast' })).rejects.toThrow(
      "Engine.create(): options.attentionBackward must be 'fast' or 'low-memory', got 'recompute'",
    );
  });

  it('LoRA dropout: the backward pass draws the forward pass\'s mask again (gradients match finite differences)', async () => {
    const lora = { r: 4, alpha: 8, dropout: 0.3, targets: ['q_proj', 'o_proj', 'down_proj'] };
    const { tokens, targets } = batch(2, 16, 32, 21);
    const engine = await Engine.create({ config: small, lora, seed: 6, threads: 1, device: 'cpu' });
    // B starts at zero (no gradient reaches A): give it values so that A's gradient goes through the dropout.
    for (const name of engine.trainableNames().filter((n) => n.includes('lora_B'))) {
      engine.setParameter(name, ref.randn(engine.getParameter(name).length, 3, 0.3));
    }
    const shape = { batch: 2, seq: 16, dropoutSeed: 77 };
    const loss = async () => (await engine.forwardBackward(tokens, targets, shape)).loss;
    await loss();
    for (const name of ['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'base_model.model.model.layers.1.mlp.down_proj.lora_A.weight']) {
      const grad = engine.getGradient(name);
      const w = engine.getParameter(name);
      for (const i of [0, 5, 17, w.length - 1]) {
        const h = 1e-2;
        const at = (v: number) => {
          const x = Float32Array.from(w);
          x[i] = v;
          engine.setParameter(name, x);
        };
        at(w[i] + h);
        const up = await loss();
        at(w[i] - h);
        const down = await loss();
        at(w[i]);
        const fd = (up - down) / (2 * h);
        // (Gradients here are ~3e-4; the central difference of an fp32 loss is good to about 1e-6.)
        expect(Math.abs(fd - grad[i]), `${name}[${i}]: ${fd} vs ${grad[i]}`).toBeLessThan(5e-6 + 3e-2 * Math.abs(fd));
      }
    }
    engine.dispose();
  });

  it('activationBytes() is what a step or a forward pass then allocates', async () => {
    const lora = { r: 4, alpha: 8, dropout: 0.1, targets: ['q_proj', 'v_proj', 'down_proj'] };
    const { tokens, targets } = batch(3, 20, 32, 14);
    for (const gradientCheckpointing of [false, true]) {
      const engine = await Engine.create({ config: small, lora, seed: 2, threads: 1, device: 'cpu', gradientCheckpointing });
      const before = engine.info().allocatedBytes;
      const forward = engine.activationBytes({ batch: 3, seq: 20 }, { mode: 'forward' });
      await engine.forward(tokens, { batch: 3, seq: 20 });
      expect(engine.info().allocatedBytes - before).toBe(forward);
      const training = engine.activationBytes({ batch: 3, seq: 20 });
      expect(training).toBeGreaterThan(forward);
      const other = engine.activationBytes({ batch: 3, seq: 20 }, { gradientCheckpointing: !gradientCheckpointing });
      expect(gradientCheckpointing ? other > training : other < training).toBe(true);
      await engine.forwardBackward(tokens, targets, { batch: 3, seq: 20 });
      expect(engine.info().allocatedBytes - before).toBe(training); // the forward pass's buffers were replaced
      engine.dispose();
    }
    const engine = await Engine.create({ config: small, seed: 2, threads: 1, device: 'cpu' });
    expect(() => engine.activationBytes({ batch: 0, seq: 20 })).toThrow(/activationBytes\(\): batch must be a positive integer, got 0/);
    expect(() => engine.activationBytes({ batch: 2, seq: 20 }, { mode: 'eval' as 'train' })).toThrow(/mode must be 'train' or 'forward', got "eval"/);
    engine.dispose();
  });

  it('decoding keeps logits for the last position of each sequence only', async () => {
    const config = { ...small, vocab_size: 512 };
    const prompts = Int32Array.from({ length: 4 * 32 }, (_, i) => (i * 37) % 512);
    const full = await Engine.create({ config, seed: 2, threads: 1, device: 'cpu' });
    await full.forward(prompts, { batch: 4, seq: 32 });
    const decoding = await Engine.create({ config, seed: 2, threads: 1, device: 'cpu' });
    const logits = await decoding.decodeStart(prompts, { batch: 4, promptLength: 32, maxNewTokens: 1 });
    expect(logits.length).toBe(4 * 512);
    // forward() keeps 128 rows of logits; the decode session 4 (and a KV cache of 4 x 33 positions).
    const kvCache = 2 * 2 * 4 * 33 * 2 * 8 * 4;
    expect(full.info().allocatedBytes - (decoding.info().allocatedBytes - kvCache)).toBeGreaterThanOrEqual((128 - 4) * 512 * 4);
    full.dispose();
    decoding.dispose();
  });
});

describe('Engine profile', () => {
  it('times each CPU op with its calls, FLOPs and bytes, and checks its argument', async () => {
    const engine = await Engine.create({ config: small, seed: 1, threads: 1, device: 'cpu' });
    expect(engine.profile(true)).toBe('');
    const { tokens, targets } = batch(2, 8, 32, 3);
    await engine.forwardBackward(tokens, targets, { batch: 2, seq: 8 });
    await engine.forwardBackward(tokens, targets, { batch: 2, seq: 8 });
    const report = engine.profile(false);
    const line = (name: string): string => report.split('\n').find((l) => l.startsWith(name + ' ')) ?? '';
    // Two forward-backward passes over 2 layers: one attention forward and one backward per layer and pass.
    expect(line('attentionForward')).toMatch(/ 4 calls .* GFLOP\/s .* GB\/s$/);
    expect(line('attentionBackward')).toMatch(/ 4 calls /);
    expect(line('crossEntropy')).toMatch(/ 2 calls /);
    // GEMMs are listed by shape: the q projection is (2*8) x 32 x 32, y = x W^T.
    expect(line('gemm 16x32x32 NT')).toMatch(/ ms +\d+ calls .* GFLOP\/s/);
    expect(report).toMatch(/^total \(op wall time\) +\d+\.\d+ ms/m);
    const shares = report.split('\n').filter((l) => /%/.test(l)).map((l) => Number(/([\d.]+)%/.exec(l)![1]));
    expect(shares.reduce((a, b) => a + b, 0)).toBeGreaterThan(99);
    expect(shares.reduce((a, b) => a + b, 0)).toBeLessThan(101);
    // Off again: nothing is recorded, the report is empty.
    await engine.forwardBackward(tokens, targets, { batch: 2, seq: 8 });
    expect(engine.profile(false)).toBe('');
    expect(() => engine.profile('yes' as unknown as boolean)).toThrow(/profile\(\): on must be a boolean, got/);
    engine.dispose();
    expect(() => engine.profile(true)).toThrow(/disposed/);
  });
});

describe('Engine generation', () => {
  it('greedy generation with the KV cache equals argmax of full forwards, for prompts of different lengths', async () => {
    const engine = await Engine.create({ config: small, seed: 4 });
    // Larger weights than init so the argmax is not a tie-break between near-equal logits.
    for (const p of engine.parameters()) if (p.shape.length === 2) engine.setParameter(p.name, ref.randn(p.shape[0] * p.shape[1], p.name.length, 0.2));
    const prompts = [Int32Array.of(1, 2, 3), Int32Array.of(4, 5, 6, 7, 8), Int32Array.of(9, 10, 11)];
    const out = await engine.generate(prompts, { maxNewTokens: 10 });
    expect(out).toHaveLength(3);
    for (let i = 0; i < prompts.length; i++) {
      const seq = Array.from(prompts[i]);
      for (let s = 0; s < 10; s++) {
        const logits = await engine.forward(Int32Array.from(seq), { batch: 1, seq: seq.length });
        seq.push(argmax(logits, (seq.length - 1) * 32, 32));
      }
      expect(Array.from(out[i])).toEqual(seq.slice(prompts[i].length));
    }
    // Stop tokens end a row early and are not returned.
    const stop = out[0][2];
    const stopped = await engine.generate([prompts[0]], { maxNewTokens: 10, stopTokens: [stop] });
    expect(Array.from(stopped[0])).toEqual(Array.from(out[0]).slice(0, Array.from(out[0]).indexOf(stop)));
    // The step-wise session gives the same tokens when it picks the argmax itself.
    const pair = [Int32Array.of(1, 2, 3), Int32Array.of(9, 10, 11)];
    let logits = await engine.decodeStart(Int32Array.of(1, 2, 3, 9, 10, 11), { batch: 2, promptLength: 3, maxNewTokens: 10 });
    const picked: number[][] = [[], []];
    for (let s = 0; s < 10; s++) {
      const next = [0, 1].map((b) => argmax(logits, b * 32, 32));
      next.forEach((t, b) => picked[b].push(t));
      if (s < 9) logits = await engine.decodeNext(Int32Array.from(next));
    }
    engine.decodeEnd();
    expect(picked).toEqual([Array.from(out[0]), Array.from(out[2])]);
    await expect(engine.decodeNext(Int32Array.of(1, 2))).rejects.toThrow(/no decode session/);
    expect(pair).toHaveLength(2);
    // Sampling is reproducible for a seed.
    const s1 = await engine.generate(prompts, { maxNewTokens: 8, temperature: 1, topK: 5, seed: 3 });
    const s2 = await engine.generate(prompts, { maxNewTokens: 8, temperature: 1, topK: 5, seed: 3 });
    expect(s1.map((x) => Array.from(x))).toEqual(s2.map((x) => Array.from(x)));
    engine.dispose();
  });

  it('decodeReorder() makes each row continue the row it names, as a full forward of that sequence', async () => {
    const engine = await Engine.create({ config: small, seed: 4 });
    for (const p of engine.parameters()) if (p.shape.length === 2) engine.setParameter(p.name, ref.randn(p.shape[0] * p.shape[1], p.name.length, 0.2));
    const seqs = [[1, 2, 3], [9, 10, 11], [4, 5, 6]];
    await engine.decodeStart(Int32Array.from(seqs.flat()), { batch: 3, promptLength: 3, maxNewTokens: 4 });
    await engine.decodeNext(Int32Array.of(7, 8, 12));
    [7, 8, 12].forEach((t, b) => seqs[b].push(t));
    // row 0 takes row 2's sequence, rows 1 and 2 both take row 0's (a source that also moves)
    await engine.decodeReorder(Int32Array.of(2, 0, 0));
    const now = [seqs[2], seqs[0], seqs[0]].map((s, b) => [...s, [13, 14, 15][b]]);
    const logits = await engine.decodeNext(Int32Array.of(13, 14, 15));
    await expect(engine.decodeReorder(Int32Array.of(0, 1))).rejects.toThrow(/decodeReorder\(\): rows/);
    await expect(engine.decodeReorder(Int32Array.of(0, 3, 1))).rejects.toThrow(/rows\[1\] = 3 is not a row of the session's batch \[0, 3\)/);
    await expect(engine.decodeReorder(Int32Array.of(-1, 0, 1))).rejects.toThrow(/rows\[0\] = -1/);
    engine.decodeEnd();
    const V = small.vocab_size;
    for (let b = 0; b < 3; b++) {
      const full = await engine.forward(Int32Array.from(now[b]), { batch: 1, seq: now[b].length });
      const last = full.subarray((now[b].length - 1) * V, now[b].length * V);
      const row = logits.subarray(b * V, (b + 1) * V);
      for (let v = 0; v < V; v++) expect(row[v]).toBeCloseTo(last[v], 4);
    }
    await expect(engine.decodeReorder(Int32Array.of(0, 1, 2))).rejects.toThrow(/no decode session/);
    engine.dispose();
  });
});

describe('Engine and the event loop', () => {
  it('keeps timers firing while a long training step runs, and reports progress', async () => {
    const config = presetConfig('tiny');
    const engine = await Engine.create({ config, seed: 1, threads: 2 });
    const { tokens, targets } = batch(16, 128, config.vocab_size);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 2);
    const progress: number[] = [];
    const t0 = performance.now();
    await engine.forwardBackward(tokens, targets, { batch: 16, seq: 128, onProgress: (done) => progress.push(done) });
    await engine.step({ lr: 1e-3 });
    const ms = performance.now() - t0;
    clearInterval(timer);
    expect(ms).toBeGreaterThan(20);
    expect(ticks).toBeGreaterThanOrEqual(Math.floor(ms / 2 / 4));
    expect(progress.length).toBeGreaterThan(2);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    engine.dispose();
  });

  it('aborts through an AbortSignal and stays usable', async () => {
    const config = presetConfig('tiny');
    const engine = await Engine.create({ config, seed: 1 });
    const controller = new AbortController();
    const pending = engine.generate([Int32Array.of(1, 2, 3)], {
      maxNewTokens: 120,
      signal: controller.signal,
      onProgress: (done) => {
        if (done === 3) controller.abort();
      },
    });
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    const already = new AbortController();
    already.abort();
    await expect(engine.forward(Int32Array.of(1), { batch: 1, seq: 1, signal: already.signal })).rejects.toMatchObject({ name: 'AbortError' });
    const out = await engine.generate([Int32Array.of(1, 2, 3)], { maxNewTokens: 4 });
    expect(out[0]).toHaveLength(4);
    engine.dispose();
  });
});

describe('Engine errors', () => {
  it('throws JS errors that name the field, never crashes', async () => {
    const engine = await Engine.create({ config: small, seed: 1 });
    const tok = new Int32Array(8);
    await expect(engine.forward(new Int32Array(7), { batch: 2, seq: 4 })).rejects.toThrow(/forward\(\): tokens has 7 elements, expected 8/);
    await expect(engine.forward(new Float32Array(8) as unknown as Int32Array, { batch: 2, seq: 4 })).rejects.toThrow(
      /forward\(\): tokens must be an Int32Array, got a Float32Array/,
    );
    const bad = Int32Array.of(0, 1, 2, 40, 0, 0, 0, 0);
    await expect(engine.forward(bad, { batch: 2, seq: 4 })).rejects.toThrow('forward(): tokens[3] = 40 is out of range [0, 32)');
    await expect(engine.forward(tok, { batch: 2, seq: 100 })).rejects.toThrow(/options\.seq = 100 is out of range \[1, 64\]/);
    await expect(engine.forward(tok, { batch: 0, seq: 4 })).rejects.toThrow(/options\.batch = 0 is out of range/);
    await expect(engine.forwardBackward(tok, Int32Array.of(0, 0, -5, 0, 0, 0, 0, 0), { batch: 2, seq: 4 })).rejects.toThrow(
      /targets\[2\] = -5 is out of range \[0, 32\) \(or -100 to ignore\)/,
    );
    await expect(engine.step({ lr: NaN })).rejects.toThrow(/step\(\): options\.lr must be a number, got NaN/);
    await expect(engine.step({ lr: 1e-3, beta1: 1.5 })).rejects.toThrow(/options\.beta1 = 1\.5 is out of range/);
    await expect(engine.generate([Int32Array.of(1, 99)], {})).rejects.toThrow(/prompts\[0\]\[1\] = 99 is out of range/);
    await expect(engine.generate([Int32Array.of(1)], { maxNewTokens: 64 })).rejects.toThrow(/exceeds max_position_embeddings = 64/);
    expect(() => engine.getParameter('model.nope')).toThrow(/getParameter\(\): no tensor named 'model\.nope'/);
    expect(() => engine.setParameter('model.norm.weight', new Float32Array(3))).toThrow(/data for 'model\.norm\.weight' has 3 elements, expected 32/);
    expect(() => engine.setParameter('model.norm.weight', new Float32Array(32).fill(NaN))).toThrow(/\[0\] is not finite/);
    // Still healthy after all of that.
    expect((await engine.forward(tok, { batch: 2, seq: 4 })).length).toBe(8 * 32);
    engine.dispose();
    engine.dispose();
    expect(() => engine.getParameter('model.norm.weight')).toThrow(/getParameter\(\): the engine was disposed/);
    await expect(engine.forward(tok, { batch: 2, seq: 4 })).rejects.toThrow(/forward\(\): the engine was disposed/);
  });

  it('refuses overlapping native calls and survives dispose() during a running call', async () => {
    const config = presetConfig('tiny');
    const engine = await Engine.create({ config, seed: 1 });
    const { tokens, targets } = batch(16, 128, config.vocab_size);
    const running = engine.forwardBackward(tokens, targets, { batch: 16, seq: 128 });
    await new Promise((r) => setImmediate(r));
    expect(() => engine.getParameter('model.norm.weight')).toThrow(/the engine is busy with forwardBackward\(\); await it first/);
    engine.dispose();
    // The running call keeps the model alive until it finishes, then the memory goes.
    const r = await running;
    expect(Number.isFinite(r.loss)).toBe(true);
    await expect(engine.step({ lr: 1e-3 })).rejects.toThrow(/step\(\): the engine was disposed/);
  });

  it('rejects bad configs and LoRA options by field', async () => {
    await expect(Engine.create({ config: { ...small, hidden_size: 30 } })).rejects.toThrow(/hidden_size \(30\) must be divisible by num_attention_heads \(4\)/);
    await expect(Engine.create({ config: { ...small, num_key_value_heads: 3 } })).rejects.toThrow(/must be divisible by num_key_value_heads \(3\)/);
    await expect(Engine.create({ config: { ...small, vocab_size: 0 } })).rejects.toThrow(/vocab_size must be a positive integer, got 0/);
    await expect(Engine.create({ config: { ...small, rope_scaling: { rope_type: 'yarn' as 'linear', factor: 2 } } })).rejects.toThrow(/rope_scaling\.rope_type must be 'linear'/);
    await expect(Engine.create({ config: { ...small, rope_scaling: { rope_type: 'linear', factor: -1 } } })).rejects.toThrow(/rope_scaling\.factor must be a positive number/);
    await expect(Engine.create({ config: small, lora: { r: 4, targets: ['qproj'] } })).rejects.toThrow(/targets\[0\] = "qproj" is not one of/);
    await expect(Engine.create({ config: small, lora: { r: 4, dropout: 1, targets: ['q_proj'] } })).rejects.toThrow(/dropout must be in \[0, 1\)/);
  });
});
