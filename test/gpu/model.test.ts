// The whole model on CUDA against the CPU engine from the same weights: logits, loss and every gradient
// of one forwardBackward, then one AdamW step (full and LoRA with dropout); and a tiny model trained
// 200 steps on each, whose loss curves must agree. Tolerances are bf16's: the GPU's GEMMs round their
// inputs to bf16, so errors are relative to each tensor's scale (|err| ≤ tol·max|ref| + tol·|ref|).
import { afterAll, describe, expect, inject, it } from 'vitest';
import { Engine } from '../../lib/engine/engine.js';
import type { LlamaConfig, LoraOptions } from '../../lib/model/config.js';
import { maxAbs, rng } from '../engine/reference.js';
import { compareTensor, flushReport, type Comparison } from './report.js';

const cuda = inject('cuda');
const target = inject('target');

afterAll(() => flushReport(import.meta.url));


/** bf16 compute: an error of `frac` of the tensor's largest element, plus `frac` relative. */
function scaled(op: string, tensor: string, got: Float32Array, want: Float32Array, frac: number, note?: string): Comparison {
  return compareTensor(op, tensor, got, want, frac * maxAbs(want) + 1e-12, frac, note);
}

function randomBatch(b: number, t: number, vocab: number, seed: number): { tokens: Int32Array; targets: Int32Array } {
  const r = rng(seed);
  const tokens = Int32Array.from({ length: b * t }, () => Math.floor(r() * vocab));
  // Next-token targets, with some ignored (-100) positions, as SFT batches have.
  const targets = Int32Array.from({ length: b * t }, (_, i) => ((i + 1) % t === 0 || i % 7 === 3 ? -100 : tokens[i + 1]));
  return { tokens, targets };
}

/** Makes a CUDA engine holding exactly the CPU engine's weights. */
async function twin(cpu: Engine, config: LlamaConfig, lora: LoraOptions | null, frozenWeights: 'fp32' | 'bf16' = 'fp32', attentionBackward?: AttentionBackward): Promise<Engine> {
  const gpu = await Engine.create({ config, lora, device: target, seed: 1, frozenWeights, attentionBackward });
  for (const name of cpu.parameterNames()) gpu.setParameter(name, cpu.getParameter(name));
  return gpu;
}

const small: LlamaConfig = {
  hidden_size: 256,
  intermediate_size: 688,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 301,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
};

type AttentionBackward = 'fast' | 'low-memory';

/**
 * One parity case: a CUDA twin of a CPU engine (with the attentionBackward option given), then logits,
 * loss, every gradient, one AdamW step and the loss after it, each within bf16's tolerance.
 */
async function parityCase(label: string, lora: LoraOptions | null, frozenWeights: 'fp32' | 'bf16',
  attentionBackward: AttentionBackward | undefined, config: LlamaConfig): Promise<void> {
  const cpu = await Engine.create({ config, lora, device: 'cpu', seed: 3, frozenWeights });
  // LoRA B starts at zero (PEFT): give it values so every LoRA gradient is exercised.
  if (lora) {
    const r = rng(99);
    for (const name of cpu.parameterNames().filter((n) => n.includes('lora_B'))) {
      const b = cpu.getParameter(name);
      cpu.setParameter(name, b.map(() => (r() - 0.5) * 0.02));
    }
  }
  const gpu = await twin(cpu, config, lora, frozenWeights, attentionBackward);
  const cs: Comparison[] = [];
  const op = `model.${lora ? (frozenWeights === 'bf16' ? 'lora-bf16' : 'lora') : attentionBackward ? `full-${attentionBackward}` : 'full'}`;
  try {
    expect(gpu.info().device).toBe(target);
    const B = 3, T = 77;
    const { tokens, targets } = randomBatch(B, T, config.vocab_size, 5);
    const lc = await cpu.forward(tokens, { batch: B, seq: T });
    const lg = await gpu.forward(tokens, { batch: B, seq: T });
    cs.push(scaled(`${op}.forward`, `logits B${B} T${T} V${small.vocab_size}`, lg, lc, 2e-2));

    const fc = await cpu.forwardBackward(tokens, targets, { batch: B, seq: T, dropoutSeed: 17 });
    const fg = await gpu.forwardBackward(tokens, targets, { batch: B, seq: T, dropoutSeed: 17 });
    cs.push(compareTensor(`${op}.loss`, 'loss', [fg.loss], [fc.loss], 0, 5e-3));
    expect(fg.tokens).toBe(fc.tokens);
    for (const name of cpu.trainableNames()) {
      cs.push(scaled(`${op}.grad`, name, gpu.getGradient(name), cpu.getGradient(name), 5e-2));
    }

    const before = new Map(cpu.trainableNames().map((n) => [n, cpu.getParameter(n)]));
    const hp = { lr: 1e-3, weightDecay: 0.1, maxGradNorm: 1 };
    const sc = await cpu.step(hp);
    const sg = await gpu.step(hp);
    cs.push(compareTensor(`${op}.step`, 'grad norm', [sg.gradNorm], [sc.gradNorm], 0, 2e-2));
    // Step 1 of AdamW moves each weight by about lr·sign(g): where a gradient is near 0 the two
    // signs may differ, so compare the updates (|Δ| ≤ lr·(1+wd)), and require most signs to agree.
    let agree = 0;
    let total = 0;
    for (const [name, p0] of before) {
      const pc = cpu.getParameter(name);
      const pg = gpu.getParameter(name);
      const dc = pc.map((x, i) => x - p0[i]);
      const dg = pg.map((x, i) => x - p0[i]);
      for (let i = 0; i < dc.length; i++) {
        if (Math.abs(dc[i]) > 0.5 * hp.lr) {
          total++;
          if (Math.sign(dc[i]) === Math.sign(dg[i])) agree++;
        }
      }
      cs.push(compareTensor(`${op}.step`, `update ${name}`, dg, dc, 2.2 * hp.lr, 0, 'bounded by 2 lr: signs may flip where g ~ 0'));
    }
    const agreement = agree / Math.max(1, total);
    console.log(`${label}: ${(100 * agreement).toFixed(2)}% of ${total} clear updates agree in sign`);
    cs.push(compareTensor(`${op}.step`, 'update sign agreement (1 - fraction)', [1 - agreement], [0], 0.05, 0, 'at most 5% of the clear updates may flip'));

    // And the step after: the updated weights give the same loss.
    const ac = await cpu.forwardBackward(tokens, targets, { batch: B, seq: T, dropoutSeed: 18 });
    const ag = await gpu.forwardBackward(tokens, targets, { batch: B, seq: T, dropoutSeed: 18 });
    cs.push(compareTensor(`${op}.loss`, 'loss after one step', [ag.loss], [ac.loss], 0, 1e-2));
  } finally {
    cpu.dispose();
    gpu.dispose();
  }
  expect(cs.filter((c) => !c.ok).map((c) => `${c.op} ${c.tensor}: ${c.worstRatio.toFixed(2)} of tol`)).toEqual([]);
}

describe.skipIf(!cuda.ok)(`CUDA engine vs CPU engine (${cuda.device ?? 'no GPU'})`, () => {
  const allProjections = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const cases: Array<[string, LoraOptions | null, 'fp32' | 'bf16', AttentionBackward?]> = [
    ['full', null, 'fp32'],
    ['LoRA r=8 dropout 0.1', { r: 8, alpha: 16, dropout: 0.1, targets: allProjections }, 'fp32'],
    // The frozen base in bf16 on both: the GPU takes the weight as it is (wgmma) or through gemm_sm80.cu.
    ['LoRA r=8, frozen weights in bf16', { r: 8, alpha: 16, dropout: 0, targets: allProjections }, 'bf16'],
    // attentionBackward 'low-memory': the backward recomputes S and dP for dQ (the default keeps dS).
    ['full, attentionBackward low-memory', null, 'fp32', 'low-memory'],
  ];
  it.each(cases)('forwardBackward + step of a small model (%s): logits, loss, every gradient, updated weights', (label, lora, frozenWeights, attentionBackward) =>
    parityCase(label, lora, frozenWeights, attentionBackward, small));

  it('is deterministic: gradient checkpointing on the GPU gives the same losses and gradients bit for bit', async () => {
    const lora = { r: 8, alpha: 16, dropout: 0.1, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
    const { tokens, targets } = randomBatch(4, 96, small.vocab_size, 91);
    const run = async (gradientCheckpointing: boolean) => {
      const gpu = await Engine.create({ config: small, lora, device: target, seed: 3, gradientCheckpointing });
      try {
        const losses: number[] = [];
        for (let s = 0; s < 2; s++) {
          losses.push((await gpu.forwardBackward(tokens, targets, { batch: 4, seq: 96, dropoutSeed: 5 + s })).loss);
          await gpu.step({ lr: 1e-2, weightDecay: 0.01, maxGradNorm: 1 });
        }
        return { losses, grads: gpu.trainableNames().map((n) => gpu.getGradient(n)), peak: gpu.info().peakAllocatedBytes };
      } finally {
        gpu.dispose();
      }
    };
    const plain = await run(false);
    const checkpointed = await run(true);
    expect(checkpointed.losses).toEqual(plain.losses);
    expect(checkpointed.grads).toEqual(plain.grads);
    expect(checkpointed.peak).toBeLessThan(plain.peak);
  });

  it('a decode session with decodeReorder() (beam search) gives the CPU engine\'s logits', async () => {
    const cpu = await Engine.create({ config: small, device: 'cpu', seed: 5 });
    const gpu = await twin(cpu, small, null);
    try {
      const run = async (e: Engine) => {
        await e.decodeStart(Int32Array.of(1, 2, 3, 9, 10, 11, 4, 5, 6), { batch: 3, promptLength: 3, maxNewTokens: 4 });
        await e.decodeNext(Int32Array.of(7, 8, 12));
        // row 0 continues row 2, rows 1 and 2 continue row 0 (a source that also moves)
        await e.decodeReorder(Int32Array.of(2, 0, 0));
        const logits = await e.decodeNext(Int32Array.of(13, 14, 15));
        e.decodeEnd();
        return logits;
      };
      const [want, got] = [await run(cpu), await run(gpu)];
      const c = scaled('model.decodeReorder', 'logits after a reorder', got, want, 2e-2);
      expect(c.ok, `worst ${c.worstRatio.toFixed(2)} of tol`).toBe(true);
    } finally {
      cpu.dispose();
      gpu.dispose();
    }
  });

  it('a tiny model trained 200 steps on the GPU follows the CPU loss curve', async () => {
    const tiny: LlamaConfig = {
      hidden_size: 64,
      intermediate_size: 176,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 32,
      max_position_embeddings: 64,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      tie_word_embeddings: true,
    };
    // A learnable task: each sequence counts up from a random start (mod vocab), so the loss falls well below log(32).
    const B = 8, T = 32, steps = 200;
    const batchAt = (s: number): { tokens: Int32Array; targets: Int32Array } => {
      const r = rng(1000 + s);
      const tokens = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        const start = Math.floor(r() * tiny.vocab_size);
        const stride = 1 + Math.floor(r() * 3);
        for (let t = 0; t < T; t++) tokens[b * T + t] = (start + stride * t) % tiny.vocab_size;
      }
      const targets = Int32Array.from(tokens, (_, i) => ((i + 1) % T === 0 ? -100 : tokens[i + 1]));
      return { tokens, targets };
    };
    const cpu = await Engine.create({ config: tiny, device: 'cpu', seed: 7 });
    const gpu = await twin(cpu, tiny, null);
    const lc: number[] = [];
    const lg: number[] = [];
    const hp = { lr: 3e-3, weightDecay: 0.01, maxGradNorm: 1 };
    try {
      for (let s = 0; s < steps; s++) {
        const { tokens, targets } = batchAt(s);
        const [c, g] = await Promise.all([
          cpu.forwardBackward(tokens, targets, { batch: B, seq: T }),
          gpu.forwardBackward(tokens, targets, { batch: B, seq: T }),
        ]);
        lc.push(c.loss);
        lg.push(g.loss);
        await Promise.all([cpu.step(hp), gpu.step(hp)]);
      }
    } finally {
      cpu.dispose();
      gpu.dispose();
    }
    // Means over windows of 10 steps: single steps are noisy, the curve is what must agree.
    const windows = (l: number[]) => Float32Array.from({ length: steps / 10 }, (_, w) => l.slice(w * 10, w * 10 + 10).reduce((a, b) => a + b, 0) / 10);
    const wc = windows(lc);
    const wg = windows(lg);
    console.log(`loss curve (10-step means) cpu: ${Array.from(wc, (x) => x.toFixed(3)).join(' ')}`);
    console.log(`loss curve (10-step means) gpu: ${Array.from(wg, (x) => x.toFixed(3)).join(' ')}`);
    const c = compareTensor('model.train200', 'loss curve, 10-step means', wg, wc, 0.05, 0.05);
    const first = compareTensor('model.train200', 'loss at step 1', [lg[0]], [lc[0]], 0, 5e-3);
    expect(c.ok && first.ok, `loss curves differ: worst ${c.worstRatio.toFixed(2)} of tol`).toBe(true);
    // Both learned: the last window is well under the first.
    expect(wc[wc.length - 1]).toBeLessThan(0.6 * wc[0]);
    expect(wg[wg.length - 1]).toBeLessThan(0.6 * wg[0]);
  });
});

describe.skipIf(!cuda.ok)(`CUDA op profile (${cuda.device ?? 'no GPU'})`, () => {
  it('engine.profile() times every op of a training step on the device; info() counts device memory', async () => {
    const engine = await Engine.create({ config: small, device: target, seed: 1 });
    try {
      const B = 2, T = 64;
      const { tokens, targets } = randomBatch(B, T, small.vocab_size, 9);
      expect(engine.profile(true)).toBe('');
      await engine.forwardBackward(tokens, targets, { batch: B, seq: T });
      await engine.step({ lr: 1e-3 });
      const report = engine.profile(false);
      console.log(report);
      for (const op of ['gemm', 'attentionForward', 'attentionBackward', 'rmsnormForward', 'crossEntropy', 'adamw']) {
        expect(report).toMatch(new RegExp(`^${op}.*\\s[0-9.]+ ms\\s+[1-9][0-9]* calls`, 'm'));
      }
      expect(report).toMatch(/^total \(op time on the stream\)\s+[0-9.]*[1-9][0-9.]* ms$/m);
      // Device memory counted allocation by allocation, scratch included.
      const info = engine.info();
      expect(info.allocatedBytes).toBeGreaterThanOrEqual(info.memoryBytes * 0.99);
      expect(info.peakAllocatedBytes).toBeGreaterThanOrEqual(info.allocatedBytes);
    } finally {
      engine.dispose();
    }
  });
});
