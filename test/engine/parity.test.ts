// Parity with PyTorch: logits, loss and every gradient of small models (full, LoRA, tied) against the
// fixtures scripts/make-fixtures.py wrote, then the losses and gradient norms of ten AdamW steps.
// Reports the worst element per tensor, as llm.c's test_gpt2.c does.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../lib/engine/engine.js';
import type { LlamaConfig, LoraOptions } from '../../lib/model/config.js';
import { readSafetensors } from '../../lib/model/safetensors.js';
import { worst } from './reference.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const names = ['llama-full', 'llama-lora', 'llama-tied'];

describe.each(names)('PyTorch parity: %s', (name) => {
  const path = join(fixtures, `${name}.safetensors`);
  const present = existsSync(path);
  it.skipIf(!present)(`logits, loss, gradients and 10 AdamW steps match ${name}.safetensors${present ? '' : ' (skipped: fixture missing; run scripts/make-fixtures.py)'}`, async () => {
    const file = readSafetensors(path);
    const config = JSON.parse(file.metadata.config) as LlamaConfig;
    const loraMeta = JSON.parse(file.metadata.lora ?? 'null') as LoraOptions | null;
    const adamw = JSON.parse(file.metadata.adamw) as { lr: number; beta1: number; beta2: number; eps: number; weight_decay: number; max_grad_norm: number; steps: number };
    const tensor = (key: string): Float32Array | Int32Array => {
      const t = file.tensors.get(key);
      if (!t) throw new Error(`${name}: fixture has no tensor '${key}'`);
      return t.data as Float32Array | Int32Array;
    };
    const engine = await Engine.create({ config, lora: loraMeta, seed: 0, threads: 2 });
    try {
      for (const p of engine.parameters()) engine.setParameter(p.name, tensor(p.name) as Float32Array);
      const tokensT = file.tensors.get('input.tokens')!;
      const [B, T] = tokensT.shape;
      const tokens = Int32Array.from(tensor('input.tokens'));
      const targets = Int32Array.from(tensor('input.targets'));
      const report: string[] = [];

      const logits = await engine.forward(tokens, { batch: B, seq: T });
      const lw = worst(logits, tensor('out.logits'));
      report.push(`logits: max |err| ${lw.maxErr.toExponential(2)} (max |ref| ${lw.scale.toFixed(3)})`);
      expect(lw.maxErr, 'logits').toBeLessThan(1e-4 + 1e-4 * lw.scale);

      const { loss } = await engine.forwardBackward(tokens, targets, { batch: B, seq: T });
      const refLoss = tensor('out.loss')[0];
      report.push(`loss: ${loss.toFixed(6)} vs ${refLoss.toFixed(6)}`);
      expect(Math.abs(loss - refLoss)).toBeLessThan(1e-5 * Math.max(1, refLoss));

      const trainable = engine.parameters().filter((p) => p.trainable);
      const gradKeys = [...file.tensors.keys()].filter((k) => k.startsWith('grad.'));
      expect(trainable.map((p) => `grad.${p.name}`).sort()).toEqual(gradKeys.sort());
      for (const p of trainable) {
        const g = engine.getGradient(p.name);
        const w = worst(g, tensor(`grad.${p.name}`));
        report.push(`grad ${p.name}: max |err| ${w.maxErr.toExponential(2)} at ${w.at} (max |ref| ${w.scale.toExponential(2)})`);
        expect(w.maxErr, `grad ${p.name}`).toBeLessThan(1e-6 + 1e-3 * w.scale);
      }

      const losses = tensor('out.losses');
      const norms = file.tensors.has('out.grad_norms') ? tensor('out.grad_norms') : null;
      for (let s = 0; s < adamw.steps; s++) {
        const r = await engine.forwardBackward(tokens, targets, { batch: B, seq: T });
        expect(Math.abs(r.loss - losses[s]), `loss before step ${s + 1}: ${r.loss} vs ${losses[s]}`).toBeLessThan(2e-4 * Math.max(1, losses[s]));
        const st = await engine.step({ lr: adamw.lr, beta1: adamw.beta1, beta2: adamw.beta2, eps: adamw.eps, weightDecay: adamw.weight_decay, maxGradNorm: adamw.max_grad_norm });
        if (norms) expect(Math.abs(st.gradNorm - norms[s]), `grad norm at step ${s + 1}`).toBeLessThan(1e-3 * norms[s] + 1e-6);
        report.push(`step ${s + 1}: loss ${r.loss.toFixed(6)} vs ${losses[s].toFixed(6)}, grad norm ${st.gradNorm.toFixed(5)}${norms ? ` vs ${norms[s].toFixed(5)}` : ''}`);
      }
      console.log(`${name}\n  ${report.join('\n  ')}`);
    } finally {
      engine.dispose();
    }
  });
});
