// train() end to end on a very small model: the loss falls, a stopped-and-resumed run reproduces the
// uninterrupted one exactly, saved folders load back with the same logits, bad options fail first.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../lib/engine/engine.js';
import { evaluate } from '../../lib/eval/run.js';
import { loadModel } from '../../lib/core/load-model.js';
import { packageRoot } from '../../lib/io/package-root.js';
import { latestCheckpoint, loadCheckpoint } from '../../lib/train/checkpoint.js';
import { train } from '../../lib/train/train.js';
import type { TrainOptions } from '../../lib/train/options.js';
import { NOPE_ROPE_FACTOR } from '../../lib/model/config.js';

const work = mkdtempSync(join(tmpdir(), 'puzzle-train-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const small = { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 };
const base = (out: string, extra: Partial<TrainOptions> = {}): TrainOptions => ({
  out: join(work, out),
  config: small,
  steps: 12,
  batchSize: 8,
  lr: 3e-3,
  threads: 2,
  ...extra,
});

describe('train()', () => {
  it('lowers the loss of a short run and writes its folder', async () => {
    const r = await train(base('falls', { steps: 40, checkpointEvery: 0 }));
    const first = r.history.slice(0, 5).reduce((a, s) => a + s.loss, 0) / 5;
    const last = r.history.slice(-5).reduce((a, s) => a + s.loss, 0) / 5;
    expect(last).toBeLessThan(first * 0.8);
    const lines = readFileSync(join(r.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(lines[0]).toHaveProperty('tokensPerSecond');
    expect(lines[0]).toHaveProperty('gradNorm');
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) expect(existsSync(join(r.out, 'model', f)), f).toBe(true);
  });

  it('resumes after a stop with exactly the losses of an uninterrupted run', async () => {
    const whole = await train(base('whole', { checkpointEvery: 4 }));
    const controller = new AbortController();
    const first = await train(
      base('resumed', {
        checkpointEvery: 4,
        signal: controller.signal,
        onStep: (s) => {
          if (s.step === 6) controller.abort();
        },
      }),
    );
    expect(first.stopped).toBe(true);
    expect(first.stepsDone).toBe(7);
    const second = await train(base('resumed', { checkpointEvery: 4, resume: true }));
    expect(second.stopped).toBe(false);
    expect(second.history.map((s) => s.loss)).toEqual(whole.history.map((s) => s.loss)); // bit for bit
    const metrics = readFileSync(join(second.out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss);
    expect(metrics).toEqual(whole.history.map((s) => s.loss));
  });

  it('gives the same losses with gradient checkpointing, and resumes a run with it switched on', async () => {
    const plain = await train(base('gc-plain', { checkpointEvery: 4 }));
    const checkpointed = await train(base('gc-whole', { gradientCheckpointing: true }));
    expect(checkpointed.options.gradientCheckpointing).toBe(true);
    expect(checkpointed.history.map((s) => s.loss)).toEqual(plain.history.map((s) => s.loss)); // bit for bit
    const controller = new AbortController();
    await train(base('gc-resumed', { checkpointEvery: 4, signal: controller.signal, onStep: (s) => s.step === 5 && controller.abort() }));
    const resumed = await train(base('gc-resumed', { checkpointEvery: 4, resume: true, gradientCheckpointing: true }));
    expect(resumed.history.map((s) => s.loss)).toEqual(plain.history.map((s) => s.loss));
    await expect(train(base('gc-bad', { gradientCheckpointing: 'yes' as unknown as boolean }))).rejects.toThrow(/gradientCheckpointing must be a boolean, got "yes"/);
  });

  it('saves a model and a LoRA adapter that load back with the same logits', async () => {
    for (const [name, lora] of [['full', null], ['lora', { r: 4, alpha: 8, dropout: 0.05, targets: ['q_proj', 'v_proj', 'down_proj'] }]] as const) {
      const r = await train(base(`save-${name}`, { steps: 6, lora: lora ? { ...lora, targets: [...lora.targets] } : null, lr: 1e-2 }));
      const reference = await Engine.create({ config: r.options.config, lora: r.options.lora, threads: 2 });
      loadCheckpoint(latestCheckpoint(r.out)!, reference);
      const loaded = await loadModel(r.model!, { adapter: r.adapter ?? undefined, threads: 2 });
      const tokens = Int32Array.from({ length: 2 * 10 }, (_, i) => (i * 7) % 20);
      const a = await reference.forward(tokens, { batch: 2, seq: 10 });
      const b = await loaded.engine.forward(tokens, { batch: 2, seq: 10 });
      expect(Array.from(b)).toEqual(Array.from(a));
      if (lora) expect(existsSync(join(r.adapter!, 'adapter_config.json'))).toBe(true);
      reference.dispose();
      loaded.engine.dispose();
    }
  });

  it('saves a model without positional encoding as linear RoPE scaling by 1e9, and it loads back the same', async () => {
    const r = await train(base('save-nope', { steps: 6, lora: null, lr: 1e-2, config: { ...small, rope_scaling: { rope_type: 'linear', factor: NOPE_ROPE_FACTOR } } }));
    expect(JSON.parse(readFileSync(join(r.model!, 'config.json'), 'utf8')).rope_scaling).toEqual({ type: 'linear', factor: 1e9 });
    const reference = await Engine.create({ config: r.options.config, lora: null, threads: 2 });
    loadCheckpoint(latestCheckpoint(r.out)!, reference);
    const loaded = await loadModel(r.model!, { threads: 2 });
    const tokens = Int32Array.from({ length: 2 * 10 }, (_, i) => (i * 7) % 20);
    const a = await reference.forward(tokens, { batch: 2, seq: 10 });
    expect(Array.from(await loaded.engine.forward(tokens, { batch: 2, seq: 10 }))).toEqual(Array.from(a));
    // and it is not a RoPE model: the same weights with plain RoPE give other logits
    const rope = await Engine.create({ config: { ...r.options.config, rope_scaling: null }, lora: null, threads: 2 });
    loadCheckpoint(latestCheckpoint(r.out)!, rope);
    expect(Array.from(await rope.forward(tokens, { batch: 2, seq: 10 }))).not.toEqual(Array.from(a));
    for (const e of [reference, loaded.engine, rope]) e.dispose();
  });

  it('fine-tunes a base model folder with LoRA, resumes it, and merges the adapter on request', async () => {
    const scratch = await train(base('base-model', { steps: 3 }));
    const whole = await train({ out: join(work, 'ft-whole'), baseModel: scratch.model!, steps: 6, batchSize: 8, lr: 1e-2, threads: 2, merge: true, checkpointEvery: 3 });
    expect(whole.options.lora).toMatchObject({ r: 8, alpha: 32, dropout: 0.05 }); // the paper's defaults
    expect(existsSync(join(whole.adapter!, 'adapter_model.safetensors'))).toBe(true);
    // checkpoints hold only what was trained
    const names = Object.keys(JSON.parse(readFileSync(join(latestCheckpoint(whole.out)!, 'model.safetensors')).subarray(8, 8 + readFileSync(join(latestCheckpoint(whole.out)!, 'model.safetensors')).readUInt32LE(0)).toString()));
    expect(names.filter((n) => n !== '__metadata__').every((n) => n.includes('lora_'))).toBe(true);
    // stop at step 3 and resume: the same losses
    const controller = new AbortController();
    await train({ out: join(work, 'ft-resumed'), baseModel: scratch.model!, steps: 6, batchSize: 8, lr: 1e-2, threads: 2, merge: true, checkpointEvery: 3, signal: controller.signal, onStep: (r) => r.step === 2 && controller.abort() });
    const resumed = await train({ out: join(work, 'ft-resumed'), baseModel: scratch.model!, steps: 6, batchSize: 8, lr: 1e-2, threads: 2, merge: true, checkpointEvery: 3, resume: true });
    expect(resumed.history.map((h) => h.loss)).toEqual(whole.history.map((h) => h.loss));
    // base + adapter and the merged folder give the same logits (up to float32 rounding of the merge)
    const withAdapter = await loadModel(scratch.model!, { adapter: whole.adapter!, threads: 2 });
    const merged = await loadModel(whole.model!, { threads: 2 });
    const tokens = Int32Array.from({ length: 12 }, (_, i) => (i * 5) % 20);
    const a = await withAdapter.engine.forward(tokens, { batch: 1, seq: 12 });
    const b = await merged.engine.forward(tokens, { batch: 1, seq: 12 });
    const worst = a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
    expect(worst).toBeLessThan(1e-4);
    withAdapter.engine.dispose();
    merged.engine.dispose();
  });

  it('trains every weight of a base model folder when LoRA is off, and writes the trained model', async () => {
    const scratch = await train(base('full-base', { steps: 3 }));
    const tuned = await train({ out: join(work, 'ft-full'), baseModel: scratch.model!, lora: null, steps: 3, batchSize: 8, lr: 1e-2, threads: 2 });
    expect(tuned.adapter).toBeNull();
    expect(tuned.model).toBe(join(work, 'ft-full', 'model'));
    const before = await loadModel(scratch.model!, { threads: 2 });
    const after = await loadModel(tuned.model!, { threads: 2 });
    const tokens = Int32Array.from({ length: 12 }, (_, i) => (i * 5) % 20);
    const a = await before.engine.forward(tokens, { batch: 1, seq: 12 });
    const b = await after.engine.forward(tokens, { batch: 1, seq: 12 });
    expect(b.length).toBe(a.length);
    expect(a.some((x, i) => x !== b[i])).toBe(true); // the written weights are the trained ones, not the base's
    before.engine.dispose();
    after.engine.dispose();
  });

  it('evaluates a trained folder, free and constrained', async () => {
    const r = await train(base('for-eval', { steps: 4 }));
    const report = await evaluate({ model: r.model!, sets: ['id', 'ood-form'], limit: 6, modes: ['free', 'constrained'], maxNewTokens: 60, threads: 2, out: join(work, 'eval') });
    expect(report.records.length).toBe(24);
    for (const rec of report.records.filter((x) => x.mode === 'constrained')) {
      // well-formed up to where the token budget may have cut it
      if (rec.stopped) expect(['final-value-differs', null]).toContain(rec.reason);
      else expect(['operand-not-available', 'division-by-zero', 'too-many-steps']).not.toContain(rec.reason); // a cut last step may read as a parse error or a wrong result
    }
    expect(report.table).toMatch(/ood-form\s+all\s+6/);
    expect(existsSync(join(work, 'eval', 'records.jsonl'))).toBe(true);
  });

  it('evaluates during and after training and writes the HTML report with both plots', async () => {
    const seen: number[] = [];
    const r = await train(base('evals', { steps: 6, evalEvery: 3, evalAtEnd: true, evalLimit: 4, evalSets: ['id', 'ood-form'], onEval: (step) => seen.push(step) }));
    expect(seen).toEqual([3, 6]); // the final evaluation is not repeated at step 6
    expect(r.evaluation?.step).toBe(6);
    expect(r.evaluation?.scores.map((x) => `${x.mode}:${x.id}`).sort()).toEqual(['constrained:id', 'constrained:ood-form', 'free:id', 'free:ood-form']);
    const html = readFileSync(r.report, 'utf8');
    expect(html).toMatch(/<svg class="loss-chart"/);
    expect(html).toMatch(/<svg class="pass-chart"[\s\S]*class="bar constrained"/);
    expect(readFileSync(join(r.out, 'evals.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
  });

  it('trains LoRA on a base kept in bf16, and what it saves loads back with the same logits', async () => {
    const lora = { r: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
    const r = await train(base('save-bf16', { steps: 6, lora, lr: 1e-2, frozenWeights: 'bf16' }));
    expect(r.history.every((h) => Number.isFinite(h.loss))).toBe(true);
    expect(r.options.frozenWeights).toBe('bf16');
    const reference = await Engine.create({ config: r.options.config, lora: r.options.lora, threads: 2, frozenWeights: 'bf16' });
    loadCheckpoint(latestCheckpoint(r.out)!, reference);
    const loaded = await loadModel(r.model!, { adapter: r.adapter ?? undefined, threads: 2, frozenWeights: 'bf16' });
    const tokens = Int32Array.from({ length: 2 * 10 }, (_, i) => (i * 7) % 20);
    expect(Array.from(await loaded.engine.forward(tokens, { batch: 2, seq: 10 }))).toEqual(Array.from(await reference.forward(tokens, { batch: 2, seq: 10 })));
    reference.dispose();
    loaded.engine.dispose();
    await expect(train(base('bad-bf16', { frozenWeights: 'bf16' }))).rejects.toThrow(/frozenWeights 'bf16' needs lora/);
    await expect(train(base('bad-fw', { lora: true, frozenWeights: 'int8' as 'bf16' }))).rejects.toThrow(/frozenWeights must be 'fp32' or 'bf16', got "int8"/);
  });

  it('refuses bad options before any training starts', async () => {
    await expect(train(base('bad1', { preset: 'huge' }))).rejects.toThrow(/unknown preset 'huge'/);
    await expect(train(base('bad2', { steps: -3 }))).rejects.toThrow(/steps must be an integer ≥ 1, got -3/);
    await expect(train(base('bad3', { data: { source: 'file', path: join(work, 'nope.jsonl') } }))).rejects.toThrow(/does not exist/);
    await expect(train(base('bad-core', { data: { source: 'synth', n: [5], maxValue: 60, seed: 1, maxCore: 4 as 3 } }))).rejects.toThrow(/data\.maxCore must be 1, 2 or 3 .*got 4/);
    await expect(train(base('bad-fold', { data: { source: 'synth', n: [5], maxValue: 60, seed: 1, fold: 'around' as 'first' } }))).rejects.toThrow(/data\.fold must be one of prompt, reverse, shuffled, first .*got "around"/);
    await expect(train(base('bad-cut', { cutTails: 1.5 }))).rejects.toThrow(/cutTails/);
    await expect(train(base('bad-mode', { evalModes: ['constrained-beam1' as 'free'] }))).rejects.toThrow(/evalModes: decoding mode "constrained-beam1" is not one of/);
    await expect(train(base('no-mode', { evalModes: [] }))).rejects.toThrow(/evalModes must list decoding modes/);
    writeFileSync(join(work, 'bad.jsonl'), '{"numbers":[1,2],"target":3,"response":"1+2=3"}\n{"numbers":"x"}\n');
    await expect(train(base('bad4', { data: { source: 'file', path: join(work, 'bad.jsonl') }, steps: 3, batchSize: 2 }))).rejects.toThrow(/bad\.jsonl:2: "numbers"/);
    expect(existsSync(join(work, 'bad1'))).toBe(false);

    await train(base('corrupt', { steps: 2 }));
    await expect(train(base('corrupt', { steps: 2 }))).rejects.toThrow(/already holds a run/);
    writeFileSync(join(latestCheckpoint(join(work, 'corrupt'))!, 'state.json'), '{"version":1,"step":"two"');
    await expect(train(base('corrupt', { steps: 4, resume: true }))).rejects.toThrow(/state\.json: unreadable checkpoint state/);
    await expect(train(base('fresh', { resume: true }))).rejects.toThrow(/holds no checkpoint/);
  });

  it('stops on Ctrl-C after the current step, leaving a checkpoint that resumes', async () => {
    const out = join(work, 'sigint');
    const bin = join(packageRoot(), 'bin', 'puzzle-llama.js');
    const args = ['train', '--out', out, '--steps', '120', '--batch-size', '2', '--threads', '2', '--gradient-checkpointing', '--config', join(work, 'sigint.json')];
    writeFileSync(join(work, 'sigint.json'), JSON.stringify({ config: small, checkpointEvery: 0 }));
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    // wait for the first steps in metrics.jsonl, then interrupt
    const metrics = join(out, 'metrics.jsonl');
    for (let i = 0; i < 600 && !(existsSync(metrics) && readFileSync(metrics, 'utf8').split('\n').length > 3); i++) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, stderr).toBe(130);
    expect(stderr).toMatch(/stopping after the current step/);
    const dir = latestCheckpoint(out);
    expect(dir).not.toBeNull();
    const state = JSON.parse(readFileSync(join(dir!, 'state.json'), 'utf8'));
    expect(state.step).toBeGreaterThan(0);
    expect(JSON.parse(readFileSync(join(out, 'train-config.json'), 'utf8')).gradientCheckpointing).toBe(true); // the flag reached train()
    const again = spawn(process.execPath, [bin, ...args, '--resume'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out2 = '';
    again.stderr.on('data', (d) => (out2 += d));
    expect(await new Promise<number | null>((resolve) => again.on('exit', resolve)), out2).toBe(0);
    const steps = readFileSync(metrics, 'utf8').trim().split('\n').map((l) => JSON.parse(l).step);
    expect(steps).toEqual(Array.from({ length: 120 }, (_, i) => i));
  });
});
