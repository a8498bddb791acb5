// The main job's phases at their real sizes, shortened: synthesis to JSONL, training the tiny preset
// (tokens/s), and evaluation with the KV cache (generated tokens/s), free and constrained.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthCommand } from '../../lib/cli/commands/synth.js';
import { evaluate } from '../../lib/eval/run.js';
import { train } from '../../lib/train/train.js';
import { nullWritable } from '../inputs.js';
import type { BenchRow, BenchSuite } from '../suite.js';


export const mainjobSuite: BenchSuite = {
  name: 'mainjob',
  description: 'the main job (npm start) phase by phase: synth, train the tiny preset, evaluate',
  async run({ threads, quick }) {
    const dir = mkdtempSync(join(tmpdir(), 'puzzle-mainjob-'));
    const rows: BenchRow[] = [];
    try {
      const count = quick ? 20_000 : 100_000;
      const data = join(dir, 'train.jsonl');
      const t0 = performance.now();
      await synthCommand(['--count', String(count), '--seed', '5', '--out', data], { stdin: process.stdin, stdout: nullWritable(), stderr: nullWritable() });
      rows.push({ name: `synth ${count.toLocaleString('en-US')} puzzles -> JSONL`, unit: 'puzzles/s', value: count / ((performance.now() - t0) / 1000), higherIsBetter: true });

      const steps = quick ? 20 : 100;
      const run = await train({ out: join(dir, 'run'), preset: 'tiny', steps, batchSize: 32, lr: 2e-3, data: { source: 'file', path: data }, threads, checkpointEvery: 0 });
      const timed = run.history.slice(Math.min(5, run.history.length - 1)); // past the first steps' allocations
      const tokens = timed.reduce((a, h) => a + h.tokens, 0);
      const seconds = timed.reduce((a, h) => a + h.tokens / h.tokensPerSecond, 0);
      rows.push({ name: `train tiny preset, batch 32 (${steps} steps)`, unit: 'tokens/s', value: tokens / seconds, higherIsBetter: true, note: `${threads} threads; final loss ${run.history.at(-1)?.loss.toFixed(3)}` });

      for (const mode of ['free', 'constrained'] as const) {
        const r = await evaluate({ model: run.model!, sets: ['id'], limit: quick ? 32 : 128, modes: [mode], threads });
        rows.push({ name: `evaluate id, ${mode} decoding`, unit: 'tokens/s', value: r.tokensPerSecond, higherIsBetter: true, note: `${r.generatedTokens} tokens generated for ${r.records.length} puzzles` });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return rows;
  },
};
