// train(): resolve the options, prepare or resume the run (rank 0 decides for every rank), make the engine
// (and, with several ranks, the communicator that sums gradients), run the loop, and finish: the Hugging
// Face model folder (plus a PEFT adapter for LoRA), a last evaluation and the HTML report. With several
// ranks (torchrun, Slurm or `puzzle-llama launch`) rank 0 alone writes files. The library draws nothing:
// callers follow the run through onStep, onEval and onNote.
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../engine/engine.js';
import { loadAddon } from '../engine/loader.js';
import { loadModel, loadTokenizer } from '../core/load-model.js';
import { joinGroup, threadsPerRank, type ProcessGroup } from '../dist/group.js';
import { readWorld, type World } from '../dist/env.js';
import { evaluate } from '../eval/run.js';
import type { EvaluateResult } from '../eval/evaluate.js';
import { openHfCheckpoint } from '../model/hf-checkpoint.js';
import { PuzzleTokenizer, type Tokenizer } from '../model/tokenizer.js';
import { CHECKPOINT_VERSION, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { openPuzzleStream } from './data.js';
import { GlobalBatches } from './batches.js';
import { exportModel } from './export.js';
import { writeRunReport } from './run-report.js';
import { evalsPath, metricsPath, openRunFolder, readHistory, type RunPlan } from './run-folder.js';
import type { RunLock } from '../io/run-lock.js';
import { runSteps } from './loop.js';
import { fingerprint, resolveTrainOptions, type ResolvedTrainOptions, type StepRecord, type TrainOptions } from './options.js';

export interface TrainResult {
  out: string;
  options: ResolvedTrainOptions;
  /** This process's place in a data-parallel run ({ rank: 0, worldSize: 1 } alone). */
  world: { rank: number; worldSize: number };
  /** Every step of the run (those before a resume included, read back from metrics.jsonl). */
  history: StepRecord[];
  /** Steps done when train() returned (the step a time budget reached; fewer than asked when stopped). */
  stepsDone: number;
  stopped: boolean;
  /** What ended training: the step count, the time budget, or the signal. */
  endedBy: 'steps' | 'time' | 'signal';
  /** Seconds of training (before a resume included; evaluations during training not counted). */
  trainedSeconds: number;
  checkpoint: string | null;
  /** The final Hugging Face model folder (null when stopped early, and on ranks other than 0). */
  model: string | null;
  /** The PEFT adapter folder, for LoRA runs. */
  adapter: string | null;
  /** The last evaluation (evalEvery / evalAtEnd), with its table. */
  evaluation: (EvaluateResult & { step: number; table: string }) | null;
  /** The HTML report (null on ranks other than 0). */
  report: string | null;
  /** What onNote said (a resume, a change of world size). */
  notes: string[];
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  if (options?.baseModel !== undefined && (typeof options.baseModel !== 'string' || !existsSync(join(options.baseModel, 'config.json')))) {
    throw new Error(`train(): baseModel '${String(options.baseModel)}' is not a model folder (no config.json)`);
  }
  const tokenizer: Tokenizer = options?.baseModel ? loadTokenizer(options.baseModel) : new PuzzleTokenizer();
  const baseConfig = options?.baseModel ? (await openHfCheckpoint(options.baseModel)).config : null;
  const o = resolveTrainOptions(options, tokenizer.vocabSize, baseConfig);
  const world = readWorld();
  if (world.worldSize > o.batchSize) {
    throw new RangeError(`train(): batchSize ${o.batchSize} is smaller than the world size ${world.worldSize}: every rank needs at least one puzzle of each batch`);
  }
  const group = world.worldSize > 1 ? await joinGroup(world, { timeoutMs: o.distributed.timeoutMs, token: options.distributed?.token }) : null;
  let failure: unknown;
  try {
    return await run(o, world, group, tokenizer, options);
  } catch (err) {
    failure = err;
    throw group ? await group.explain(err) : err;
  } finally {
    await group?.close(failure);
  }
}

async function run(
  o: ResolvedTrainOptions,
  world: World,
  group: ProcessGroup | null,
  tokenizer: Tokenizer,
  options: TrainOptions,
): Promise<TrainResult> {
  const lead = world.rank === 0;
  const notes: string[] = [];
  const note = (message: string) => {
    notes.push(message);
    if (lead) options.onNote?.(message);
  };
  const extra = { tokenizer: o.baseModel ? `the base model's (${o.baseModel})` : 'puzzle characters', worldSize: world.worldSize };
  // Rank 0 owns the folder (its lock) for the whole run; its refusal is every rank's.
  let lock: RunLock | null = null;
  const open = () => {
    const r = openRunFolder(o, extra, note);
    lock = r.lock;
    return r.plan;
  };
  try {
    const plan: RunPlan = group ? await group.decide('plan', open) : open();
    return await runPlanned(o, world, group, tokenizer, options, plan, notes, note);
  } finally {
    (lock as RunLock | null)?.release();
  }
}

async function runPlanned(
  o: ResolvedTrainOptions,
  world: World,
  group: ProcessGroup | null,
  tokenizer: Tokenizer,
  options: TrainOptions,
  plan: RunPlan,
  notes: string[],
  note: (message: string) => void,
): Promise<TrainResult> {
  const lead = world.rank === 0;
  const resume = plan.resume;
  if (resume && resume.worldSize !== null && resume.worldSize !== world.worldSize) {
    note(`resuming a run trained on ${resume.worldSize} rank(s) on ${world.worldSize}: the global batch stays ${o.batchSize} puzzles; the losses may differ from an uninterrupted run in the last bits (another summation order)`);
  }
  if (resume) note(`resuming from step ${resume.step} (${resume.checkpoint})`);

  const threads = o.threads ?? (group ? threadsPerRank(world, loadAddon().addon.buildInfo().cpu.hardwareThreads) : undefined);
  const deviceIndex = world.localRank;
  const engineOptions = { lora: o.lora, device: o.device, deviceIndex, threads, seed: o.seed, frozenWeights: o.frozenWeights, gradientCheckpointing: o.gradientCheckpointing };
  const engine = o.baseModel ? (await loadModel(o.baseModel, engineOptions)).engine : await Engine.create({ config: o.config, ...engineOptions });
  const stream = openPuzzleStream(o.data, resume?.data);
  const batches = new GlobalBatches(stream, tokenizer, o.batchSize, o.lengthBuckets, o.seed, resume?.data, o.cutTails);
  try {
    if (group) {
      const comm = await group.connect(engine.device === 'cuda' ? 'nccl' : 'gloo', { deviceIndex });
      engine.attachCommunicator(comm, { bucketBytes: o.distributed.bucketBytes });
    }
    const start = resume?.step ?? 0;
    if (resume && lead) loadCheckpoint(resume.checkpoint, engine);
    // Every rank starts from rank 0's weights and optimizer state (fresh or resumed).
    if (group) await engine.broadcastState(0);

    const metrics = lead ? metricsPath(o) : null;
    const history = metrics ? readHistory(metrics, start) : [];
    let checkpoint: string | null = resume?.checkpoint ?? null;
    const save = async (stepsDone: number, trainedSeconds: number) => {
      if (group) await checkSameWeights(engine, group, stepsDone);
      if (!lead) return;
      checkpoint = await saveCheckpoint(
        o.out,
        engine,
        { version: CHECKPOINT_VERSION, step: stepsDone, adamStep: engine.stepCount, data: batches.position(), fingerprint: fingerprint(o), allParameters: o.baseModel === null, worldSize: world.worldSize, trainedSeconds, ...(plan.dataFile ? { dataFile: plan.dataFile } : {}), savedAt: new Date().toISOString() },
        o.keepCheckpoints,
      );
    };

    let evaluation: TrainResult['evaluation'] = null;
    const runEval = async (stepsDone: number) => {
      if (lead) options.onEvalStart?.(stepsDone);
      const shard = group ? { rank: world.rank, worldSize: world.worldSize, gather: <T>(part: T) => group.gather(part) } : undefined;
      const r = await evaluate({ model: { engine, tokenizer }, sets: o.evalSets, limit: o.evalLimit, modes: o.evalModes, signal: group ? undefined : options.signal, shard });
      evaluation = { ...r, step: stepsDone };
      if (!lead) return;
      appendFileSync(evalsPath(o), JSON.stringify({ step: stepsDone, scores: r.scores, tokensPerSecond: r.tokensPerSecond }) + '\n');
      options.onEval?.(stepsDone, r.scores.map((x) => ({ set: x.id, mode: x.mode, pass1: x.pass1 })));
    };

    const trainedBefore = resume?.trainedSeconds ?? 0;
    const { stepsDone, stopped, endedBy, trainedSeconds } = await runSteps({ o, engine, tokenizer, batches, group, start, trainedSeconds: trainedBefore, history, metrics, signal: options.signal, onStep: options.onStep, checkpoint: save, evaluate: runEval });
    await save(stepsDone, trainedSeconds);
    let model: string | null = null;
    let adapter: string | null = null;
    if (!stopped) {
      if (lead) ({ model, adapter } = await exportModel(engine, o, tokenizer));
      if (o.evalAtEnd && (evaluation as TrainResult['evaluation'])?.step !== stepsDone) await runEval(stepsDone);
    }
    const report = lead ? writeRunReport(o, history, evaluation, world.worldSize) : null;
    // No rank leaves before every rank is done (rank 0's store must outlive the others' last collective).
    if (group) await group.barrier();
    return { out: o.out, options: o, world: { rank: world.rank, worldSize: world.worldSize }, history, stepsDone, stopped, endedBy, trainedSeconds, checkpoint, model, adapter, evaluation, report, notes };
  } finally {
    stream.close();
    engine.dispose();
  }
}

/** Ranks that took the same steps hold the same weights; a mismatch means a broken run, not a saved one. */
async function checkSameWeights(engine: Engine, group: ProcessGroup, step: number): Promise<void> {
  const sums = await group.gather(engine.parameterSumSquares());
  if (sums.some((s) => s !== sums[0])) {
    throw new Error(`the ranks' weights differ at step ${step} (sum of squares per rank: ${sums.join(', ')}); the run is not consistent and is not checkpointed`);
  }
}
