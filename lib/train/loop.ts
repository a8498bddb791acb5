// The training loop: per step, each micro-batch's share through forwardBackward (the gradients summed over
// the ranks on the last one, bucket by bucket), one AdamW step, the global loss, a line in metrics.jsonl,
// checkpoints and evaluations on schedule. In a data-parallel run every rank agrees, after each step,
// whether to stop, so that they all stop at the same step.
import { appendFileSync } from 'node:fs';
import type { Engine } from '../engine/engine.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { ProcessGroup } from '../dist/group.js';
import { nextShareBatch } from './batches.js';
import type { PuzzleStream } from './data.js';
import type { ResolvedTrainOptions, StepRecord } from './options.js';
import { learningRate } from './schedule.js';

/** A 53-bit mix of (seed, step, micro-batch), for LoRA dropout masks that a resumed run draws again. */
export function dropoutSeed(seed: number, step: number, micro: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(step + 1, 0xc2b2ae35) ^ Math.imul(micro + 7, 0x27d4eb2d);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  return ((h ^ (h >>> 13)) >>> 0) + step * 4096 + micro;
}

export interface LoopContext {
  o: ResolvedTrainOptions;
  engine: Engine;
  tokenizer: Tokenizer;
  stream: PuzzleStream;
  group: ProcessGroup | null;
  /** The first step to run (the checkpoint's, when resumed). */
  start: number;
  history: StepRecord[];
  /** metrics.jsonl, appended by rank 0 alone; null on the other ranks. */
  metrics: string | null;
  signal?: AbortSignal;
  onStep?: (record: StepRecord) => void;
  /** Called after `stepsDone` steps when a checkpoint is due (rank 0 writes it; every rank calls). */
  checkpoint(stepsDone: number): Promise<void>;
  evaluate(stepsDone: number): Promise<void>;
}

/** Runs steps [start, o.steps) unless stopped; returns the steps done and whether the signal stopped it. */
export async function runSteps(c: LoopContext): Promise<{ stepsDone: number; stopped: boolean }> {
  const { o, engine, tokenizer, stream, group } = c;
  const world = group ? { rank: group.world.rank, worldSize: group.world.worldSize } : { rank: 0, worldSize: 1 };
  const t0 = performance.now();
  let step = c.start;
  for (; step < o.steps; step++) {
    if (!group && c.signal?.aborted) return { stepsDone: step, stopped: true };
    const stepStart = performance.now();
    const lr = learningRate(step, { lr: o.lr, minLr: o.minLr, totalSteps: o.steps, warmupSteps: o.warmupSteps, kind: o.schedule });
    let lossShare = 0;
    let tokens = 0;
    for (let micro = 0; micro < o.gradAccumulation; micro++) {
      const batch = nextShareBatch(stream, tokenizer, o.batchSize, world, o.config.max_position_embeddings);
      const r = await engine.forwardBackward(batch.tokens, batch.targets, {
        batch: batch.batch,
        seq: batch.seq,
        accumulate: micro > 0,
        dropoutSeed: dropoutSeed(o.seed, step, micro),
        rowOffset: batch.rowOffset,
        lossTokens: batch.lossTokens,
        reduceGradients: group !== null && micro === o.gradAccumulation - 1,
      });
      lossShare += r.loss;
      tokens += batch.globalTokens;
    }
    const result = await engine.step({
      lr,
      beta1: o.beta1,
      beta2: o.beta2,
      eps: o.eps,
      weightDecay: o.weightDecay,
      maxGradNorm: o.maxGradNorm,
      gradScale: 1 / o.gradAccumulation,
    });
    // The ranks' loss shares add up to the global batch's loss; a stop asked of any rank stops them all.
    let loss = lossShare;
    let stop = false;
    if (group) {
      const parts = await group.gather({ loss: lossShare, stop: Boolean(c.signal?.aborted) });
      loss = parts.reduce((a, p) => a + p.loss, 0);
      stop = parts.some((p) => p.stop);
    }
    const seconds = (performance.now() - stepStart) / 1000;
    const record: StepRecord = {
      step,
      loss: loss / o.gradAccumulation,
      lr,
      gradNorm: result.gradNorm,
      tokens,
      tokensPerSecond: tokens / seconds,
      elapsedSeconds: (performance.now() - t0) / 1000,
    };
    // A NaN or infinite loss poisons every later step: stop here, before it reaches a file or a checkpoint.
    if (!Number.isFinite(record.loss) || !Number.isFinite(record.gradNorm)) {
      throw new Error(`train(): step ${step} gave loss ${record.loss} and gradient norm ${record.gradNorm}: the run diverged or its state is corrupt; it stops here and its last checkpoint is left as it was`);
    }
    c.history.push(record);
    if (c.metrics) appendFileSync(c.metrics, JSON.stringify(record) + '\n');
    if (world.rank === 0) c.onStep?.(record);
    if (stop) return { stepsDone: step + 1, stopped: step + 1 < o.steps };
    if (o.checkpointEvery > 0 && (step + 1) % o.checkpointEvery === 0 && step + 1 < o.steps) await c.checkpoint(step + 1);
    if (o.evalEvery > 0 && (step + 1) % o.evalEvery === 0) await c.evaluate(step + 1);
  }
  return { stepsDone: step, stopped: false };
}
