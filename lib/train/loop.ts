// The training loop: per step, each micro-batch's share through forwardBackward (the gradients summed over
// the ranks on the last one, bucket by bucket), one AdamW step, the global loss, a line in metrics.jsonl,
// checkpoints and evaluations on schedule. In a data-parallel run every rank agrees, after each step,
// whether to stop, so that they all stop at the same step. A time budget is measured by rank 0's clock and
// shared in the same exchange, so that every rank uses the same learning rate and stops at the same step.
import { appendFileSync } from 'node:fs';
import type { Engine } from '../engine/engine.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { ProcessGroup } from '../dist/group.js';
import { shareBatch, type GlobalBatches } from './batches.js';
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
  batches: GlobalBatches;
  group: ProcessGroup | null;
  /** The first step to run (the checkpoint's, when resumed). */
  start: number;
  /** Seconds of training before `start` (the checkpoint's, when resumed): what the time budget has used. */
  trainedSeconds: number;
  history: StepRecord[];
  /** metrics.jsonl, appended by rank 0 alone; null on the other ranks. */
  metrics: string | null;
  signal?: AbortSignal;
  onStep?: (record: StepRecord) => void;
  /** Called after `stepsDone` steps when a checkpoint is due (rank 0 writes it; every rank calls). */
  checkpoint(stepsDone: number, trainedSeconds: number): Promise<void>;
  evaluate(stepsDone: number): Promise<void>;
}

export interface LoopResult {
  stepsDone: number;
  /** The signal stopped the run before its end. */
  stopped: boolean;
  /** What ended it: the step count, the time budget, or the signal. */
  endedBy: 'steps' | 'time' | 'signal';
  /** Seconds of training, those before a resume included (evaluations not counted). */
  trainedSeconds: number;
}

/** Runs steps [start, o.steps) until the time budget is spent or the signal stops it. */
export async function runSteps(c: LoopContext): Promise<LoopResult> {
  const { o, engine, tokenizer, batches, group } = c;
  const world = group ? { rank: group.world.rank, worldSize: group.world.worldSize } : { rank: 0, worldSize: 1 };
  const t0 = performance.now();
  // training time so far, on rank 0's clock (the time spent in evaluations is left out)
  let trained = c.trainedSeconds;
  let evalSeconds = 0;
  const budget = o.timeBudget;
  const clock = () => c.trainedSeconds + (performance.now() - t0) / 1000 - evalSeconds;
  const ended = (stepsDone: number, endedBy: LoopResult['endedBy']): LoopResult => ({ stepsDone, stopped: endedBy === 'signal', endedBy, trainedSeconds: trained });
  let step = c.start;
  for (; step < o.steps; step++) {
    if (budget !== null && trained >= budget) return ended(step, 'time');
    if (!group && c.signal?.aborted) return ended(step, 'signal');
    const stepStart = performance.now();
    const timeFraction = budget === null ? 0 : trained / budget;
    const lr = learningRate(step, { lr: o.lr, minLr: o.minLr, totalSteps: o.steps, warmupSteps: o.warmupSteps, kind: o.schedule }, timeFraction);
    let lossShare = 0;
    let tokens = 0;
    for (let micro = 0; micro < o.gradAccumulation; micro++) {
      const batch = shareBatch(batches.next(), tokenizer, world, o.config.max_position_embeddings);
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
    trained = clock();
    if (group) {
      const parts = await group.gather({ loss: lossShare, stop: Boolean(c.signal?.aborted), trained });
      loss = parts.reduce((a, p) => a + p.loss, 0);
      stop = parts.some((p) => p.stop);
      trained = parts[0].trained;
    }
    const seconds = (performance.now() - stepStart) / 1000;
    const record: StepRecord = {
      step,
      loss: loss / o.gradAccumulation,
      lr,
      gradNorm: result.gradNorm,
      tokens,
      tokensPerSecond: tokens / seconds,
      elapsedSeconds: trained,
    };
    // A NaN or infinite loss poisons every later step: stop here, before it reaches a file or a checkpoint.
    if (!Number.isFinite(record.loss) || !Number.isFinite(record.gradNorm)) {
      throw new Error(`train(): step ${step} gave loss ${record.loss} and gradient norm ${record.gradNorm}: the run diverged or its state is corrupt; it stops here and its last checkpoint is left as it was`);
    }
    c.history.push(record);
    if (c.metrics) appendFileSync(c.metrics, JSON.stringify(record) + '\n');
    if (world.rank === 0) c.onStep?.(record);
    if (stop) return ended(step + 1, step + 1 < o.steps ? 'signal' : 'steps');
    const last = step + 1 >= o.steps || (budget !== null && trained >= budget);
    if (o.checkpointEvery > 0 && (step + 1) % o.checkpointEvery === 0 && !last) await c.checkpoint(step + 1, trained);
    if (o.evalEvery > 0 && (step + 1) % o.evalEvery === 0) {
      const evalStart = performance.now();
      await c.evaluate(step + 1);
      evalSeconds += (performance.now() - evalStart) / 1000;
    }
  }
  return ended(step, 'steps');
}
