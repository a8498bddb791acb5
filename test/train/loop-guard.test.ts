// The training loop stops at the first non-finite loss (negative second moments, one flipped sign bit,
// make AdamW's update NaN) instead of training on and exiting 0; nothing of that step is written.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { Engine } from '../../lib/engine/engine.js';
import { PuzzleTokenizer } from '../../lib/model/tokenizer.js';
import { openPuzzleStream } from '../../lib/train/data.js';
import { runSteps } from '../../lib/train/loop.js';
import { GlobalBatches } from '../../lib/train/batches.js';
import { resolveTrainOptions } from '../../lib/train/options.js';

const work = mkdtempSync(join(tmpdir(), 'puzzle-loop-guard-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

it('throws at the step whose loss is NaN, before it reaches metrics.jsonl or a checkpoint', async () => {
  const tokenizer = new PuzzleTokenizer();
  const o = resolveTrainOptions({ out: work, config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 }, steps: 5, batchSize: 4, threads: 1, checkpointEvery: 1 }, tokenizer.vocabSize);
  const engine = await Engine.create({ config: o.config, threads: 1 });
  const name = engine.trainableNames()[0];
  const { expAvg, expAvgSq } = engine.getOptimizerState(name);
  expAvgSq.fill(-1); // what a flipped sign bit in a checkpoint gives
  engine.setOptimizerState(name, { expAvg, expAvgSq });
  engine.stepCount = 3;
  const metrics = join(work, 'metrics.jsonl');
  writeFileSync(metrics, '');
  const saved: number[] = [];
  const stream = openPuzzleStream(o.data);
  const run = runSteps({ o, engine, tokenizer, batches: new GlobalBatches(stream, tokenizer, o.batchSize, o.lengthBuckets, o.seed), group: null, start: 0, trainedSeconds: 0, history: [], metrics, checkpoint: async (s) => void saved.push(s), evaluate: async () => {} });
  await expect(run).rejects.toThrow(/train\(\): step [01] gave loss NaN and gradient norm .*: the run diverged or its state is corrupt/);
  const lines = readFileSync(metrics, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  expect(lines.every((l) => Number.isFinite(l.loss))).toBe(true);
  expect(saved.length).toBeLessThanOrEqual(lines.length);
  expect(existsSync(join(work, 'checkpoints'))).toBe(false);
  stream.close();
  engine.dispose();
});
