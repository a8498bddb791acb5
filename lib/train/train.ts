// train(): the training loop. Streams puzzles into SFT batches, runs forward/backward and AdamW on the
// engine, logs every step to metrics.jsonl, checkpoints atomically, resumes exactly, stops cleanly on abort,
// and leaves a Hugging Face model folder (plus a PEFT adapter for LoRA) and an HTML report.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic.js';
import { join } from 'node:path';
import { Engine } from '../engine/engine.js';
import { PuzzleTokenizer, type Tokenizer } from '../model/tokenizer.js';
import { openHfCheckpoint } from '../model/hf-checkpoint.js';
import { loadModel, loadTokenizer } from '../eval/load-model.js';
import { createProgress } from '../cli/progress.js';
import { latestCheckpoint, loadCheckpoint, readCheckpointState, saveCheckpoint, type CheckpointState, CHECKPOINT_VERSION } from './checkpoint.js';
import { openPuzzleStream } from './data.js';
import { fingerprint, resolveTrainOptions, type ResolvedTrainOptions, type StepRecord, type TrainOptions } from './options.js';
import { learningRate } from './schedule.js';
import { collate, encodeExample } from './sft.js';
import { exportModel } from './export.js';
import { evaluate } from '../eval/run.js';
import type { EvaluateResult } from '../eval/evaluate.js';
import { PAPER_TABLE2 } from '../eval/paper.js';
import { renderReport } from './report.js';

export interface TrainResult {
  out: string;
  options: ResolvedTrainOptions;
  /** Every step of the run (those before a resume included, read back from metrics.jsonl). */
  history: StepRecord[];
  /** Steps done when train() returned (less than options.steps when stopped by the signal). */
  stepsDone: number;
  stopped: boolean;
  checkpoint: string | null;
  /** The final Hugging Face model folder (null when stopped early). */
  model: string | null;
  /** The PEFT adapter folder, for LoRA runs. */
  adapter: string | null;
  /** The last evaluation (evalEvery / evalAtEnd), with its table. */
  evaluation: (EvaluateResult & { step: number; table: string }) | null;
  /** The HTML report (loss curve, pass@1 per set). */
  report: string;
}

/** A 53-bit mix of (seed, step, micro-batch), for LoRA dropout masks that a resumed run draws again. */
function dropoutSeed(seed: number, step: number, micro: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(step + 1, 0xc2b2ae35) ^ Math.imul(micro + 7, 0x27d4eb2d);
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  return ((h ^ (h >>> 13)) >>> 0) + step * 4096 + micro;
}

function readHistory(path: string, upTo: number): StepRecord[] {
  if (!existsSync(path)) return [];
  const out: StepRecord[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as StepRecord;
    if (r.step < upTo) out.push(r);
  }
  return out;
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  if (options?.baseModel !== undefined && (typeof options.baseModel !== 'string' || !existsSync(join(options.baseModel, 'config.json')))) {
    throw new Error(`train(): baseModel '${String(options.baseModel)}' is not a model folder (no config.json)`);
  }
  const tokenizer: Tokenizer = options?.baseModel ? loadTokenizer(options.baseModel) : new PuzzleTokenizer();
  const baseConfig = options?.baseModel ? (await openHfCheckpoint(options.baseModel)).config : null;
  const o = resolveTrainOptions(options, tokenizer.vocabSize, baseConfig);
  const metricsPath = join(o.out, 'metrics.jsonl');
  const evalsPath = join(o.out, 'evals.jsonl');

  // Everything that can be refused is refused before the engine starts.
  let resumeFrom: string | null = null;
  let resumeState: CheckpointState | null = null;
  if (existsSync(join(o.out, 'checkpoints'))) {
    const latest = latestCheckpoint(o.out);
    if (latest && !o.resume) {
      throw new Error(`train(): ${o.out} already holds a run (latest checkpoint ${latest}); pass resume: true (--resume) to continue it, or another out folder`);
    }
    if (latest) {
      resumeState = readCheckpointState(latest);
      if (resumeState.fingerprint !== fingerprint(o)) {
        throw new Error(`train(): the options differ from those of the run in ${o.out}; a resumed run must keep its model, data, batch, schedule and seed`);
      }
      if (resumeState.step > o.steps) throw new Error(`train(): the checkpoint is at step ${resumeState.step}, beyond steps = ${o.steps}`);
      resumeFrom = latest;
    }
  } else if (o.resume) {
    throw new Error(`train(): resume was asked for but ${o.out} holds no checkpoint`);
  }
  const probe = openPuzzleStream(o.data);
  try {
    probe.next(); // a missing or malformed data file fails here, before any training
  } finally {
    probe.close();
  }

  mkdirSync(o.out, { recursive: true });
  writeFileAtomic(join(o.out, 'train-config.json'), JSON.stringify({ ...o, tokenizer: o.baseModel ? `the base model's (${o.baseModel})` : 'puzzle characters' }, null, 2) + '\n');
  const engine = o.baseModel
    ? (await loadModel(o.baseModel, { lora: o.lora, device: o.device, threads: o.threads, seed: o.seed, frozenWeights: o.frozenWeights, gradientCheckpointing: o.gradientCheckpointing })).engine
    : await Engine.create({ config: o.config, lora: o.lora, device: o.device, seed: o.seed, threads: o.threads, frozenWeights: o.frozenWeights, gradientCheckpointing: o.gradientCheckpointing });
  let stream = openPuzzleStream(o.data);
  let start = 0;
  try {
    if (resumeFrom && resumeState) {
      loadCheckpoint(resumeFrom, engine);
      start = resumeState.step;
      stream.close();
      stream = openPuzzleStream(o.data, resumeState.data);
      // metrics.jsonl keeps exactly the steps before the checkpoint, as if the run had never stopped
      writeFileAtomic(metricsPath, readHistory(metricsPath, start).map((r) => JSON.stringify(r) + '\n').join(''));
      // and evals.jsonl the evaluations up to it
      if (existsSync(evalsPath)) {
        const kept = readFileSync(evalsPath, 'utf8').split('\n').filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step <= start);
        writeFileAtomic(evalsPath, kept.map((l) => l + '\n').join(''));
      }
    } else {
      writeFileSync(metricsPath, '');
    }

    const history = readHistory(metricsPath, start);
    const progressStream = options.progress === undefined ? process.stderr : options.progress;
    const progress = progressStream ? createProgress({ label: 'train', total: o.steps, stream: progressStream as never }) : null;
    const t0 = performance.now();
    let stopped = false;
    let step = start;
    let checkpoint: string | null = resumeFrom;
    const save = async (stepsDone: number) => {
      checkpoint = await saveCheckpoint(
        o.out,
        engine,
        { version: CHECKPOINT_VERSION, step: stepsDone, adamStep: engine.stepCount, data: stream.position(), fingerprint: fingerprint(o), allParameters: o.baseModel === null, savedAt: new Date().toISOString() },
        o.keepCheckpoints,
      );
    };

    let evaluation: TrainResult['evaluation'] = null;
    const runEval = async (stepsDone: number) => {
      progress?.finish(`train: evaluating at step ${stepsDone} (${o.evalLimit} puzzles of ${o.evalSets.join(', ')})`);
      const r = await evaluate({ model: { engine, tokenizer }, sets: o.evalSets, limit: o.evalLimit, modes: o.evalModes, signal: options.signal });
      evaluation = { ...r, step: stepsDone };
      const scores = r.scores.map((x) => ({ set: x.id, mode: x.mode, pass1: x.pass1 }));
      appendFileSync(evalsPath, JSON.stringify({ step: stepsDone, scores: r.scores, tokensPerSecond: r.tokensPerSecond }) + '\n');
      options.onEval?.(stepsDone, scores);
    };

    for (; step < o.steps; step++) {
      if (options.signal?.aborted) {
        stopped = true;
        break;
      }
      const stepStart = performance.now();
      const lr = learningRate(step, { lr: o.lr, minLr: o.minLr, totalSteps: o.steps, warmupSteps: o.warmupSteps, kind: o.schedule });
      let lossSum = 0;
      let tokens = 0;
      for (let micro = 0; micro < o.gradAccumulation; micro++) {
        const examples = Array.from({ length: o.batchSize }, () => encodeExample(tokenizer, stream.next()));
        const batch = collate(examples, tokenizer.pad);
        if (batch.seq > o.config.max_position_embeddings) {
          throw new Error(`train(): a batch needs ${batch.seq} positions but max_position_embeddings is ${o.config.max_position_embeddings}; raise it in config`);
        }
        const r = await engine.forwardBackward(batch.tokens, batch.targets, {
          batch: batch.batch,
          seq: batch.seq,
          accumulate: micro > 0,
          dropoutSeed: dropoutSeed(o.seed, step, micro),
        });
        lossSum += r.loss;
        tokens += examples.reduce((a, e) => a + e.ids.length, 0);
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
      const seconds = (performance.now() - stepStart) / 1000;
      const record: StepRecord = {
        step,
        loss: lossSum / o.gradAccumulation,
        lr,
        gradNorm: result.gradNorm,
        tokens,
        tokensPerSecond: tokens / seconds,
        elapsedSeconds: (performance.now() - t0) / 1000,
      };
      history.push(record);
      appendFileSync(metricsPath, JSON.stringify(record) + '\n');
      options.onStep?.(record);
      progress?.update(step + 1, `loss ${record.loss.toFixed(4)} ${formatRate(record.tokensPerSecond)} tok/s`);
      if (o.checkpointEvery > 0 && (step + 1) % o.checkpointEvery === 0 && step + 1 < o.steps) await save(step + 1);
      if (o.evalEvery > 0 && (step + 1) % o.evalEvery === 0) await runEval(step + 1);
    }
    await save(step);
    progress?.finish(
      stopped
        ? `train: stopped after step ${step} of ${o.steps}; resume with resume: true (checkpoint ${checkpoint})`
        : `train: ${o.steps} steps, final loss ${history.at(-1)?.loss.toFixed(4) ?? '-'}`,
    );
    let model: string | null = null;
    let adapter: string | null = null;
    if (!stopped) {
      ({ model, adapter } = await exportModel(engine, o, tokenizer));
      if (o.evalAtEnd && (evaluation as TrainResult['evaluation'])?.step !== step) await runEval(step);
    }
    const report = writeReport(o, history, evaluation);
    return { out: o.out, options: o, history, stepsDone: step, stopped, checkpoint, model, adapter, evaluation, report };
  } finally {
    stream.close();
    engine.dispose();
  }
}

function writeReport(o: ResolvedTrainOptions, history: StepRecord[], evaluation: TrainResult['evaluation']): string {
  const path = join(o.out, 'report.html');
  const last = history.at(-1);
  const html = renderReport({
    title: `puzzle-llama run: ${o.out}`,
    steps: history.map((h) => ({ step: h.step, loss: h.loss, lr: h.lr })),
    scores: (evaluation?.scores ?? []).map((s) => ({ set: s.id, mode: s.mode, pass1: s.pass1, paper: PAPER_TABLE2[s.id]?.total?.[2] })),
    facts: [
      ['model', `${o.preset}: hidden ${o.config.hidden_size}, ${o.config.num_hidden_layers} layers, ${o.config.num_attention_heads} heads (${o.config.num_key_value_heads} kv)${o.lora ? `, LoRA r ${o.lora.r}` : ''}`],
      ['data', o.data.source === 'synth' ? `synthesized: N ${o.data.n.join(',')}, V ${o.data.maxValue}` : `file ${o.data.path}`],
      ['steps', `${history.length} of ${o.steps}, batch ${o.batchSize}${o.gradAccumulation > 1 ? ` x ${o.gradAccumulation}` : ''}, lr ${o.lr} (${o.schedule})`],
      ['final loss', last ? last.loss.toFixed(4) : '-'],
      ['train speed', last ? `${Math.round(history.reduce((a, h) => a + h.tokens, 0) / Math.max(last.elapsedSeconds, 1e-9))} tokens/s` : '-'],
      ['evaluation', evaluation ? `step ${evaluation.step}, ${o.evalLimit} puzzles per set, ${Math.round(evaluation.tokensPerSecond)} generated tokens/s` : 'none'],
    ],
  });
  writeFileAtomic(path, html);
  return path;
}

function formatRate(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0);
}
