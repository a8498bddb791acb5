// Runs a study's arms one after another in its folder: each arm writes its data, trains, is evaluated,
// and leaves arms/<name>/result.json; an arm whose result is there is not run again, so an interrupted
// study continues where it stopped. Then results.json, results.md and report.html are written.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { evaluate } from '../eval/run.js';
import { train } from '../train/train.js';
import type { StepRecord } from '../train/options.js';
import { armDataFile } from './data.js';
import { writeStudyReport } from './report.js';
import type { ArmResult, StudyArm, StudyDefinition } from './study.js';

export interface RunStudyOptions {
  out: string;
  /** Puzzles per evaluation set (default 300: a pass@1 good to about ±0.03). */
  limit?: number;
  threads?: number;
  device?: 'auto' | 'cpu' | 'cuda';
  signal?: AbortSignal;
  /** Before each arm: its index, the count, and whether its result was already there. */
  onArm?: (arm: StudyArm, index: number, count: number, cached: boolean) => void;
  onStep?: (arm: StudyArm, record: StepRecord) => void;
  onArmDone?: (result: ArmResult) => void;
}

export interface StudyResult {
  results: ArmResult[];
  markdown: string;
  files: { json: string; markdown: string; html: string };
  stopped: boolean;
}

export async function runStudy(study: StudyDefinition, o: RunStudyOptions): Promise<StudyResult> {
  const names = new Set<string>();
  for (const arm of study.arms) {
    if (names.has(arm.name)) throw new Error(`study ${study.name}: two arms are named '${arm.name}'`);
    names.add(arm.name);
  }
  mkdirSync(o.out, { recursive: true });
  const limit = o.limit ?? 300;
  const results: ArmResult[] = [];
  let stopped = false;
  for (const [index, arm] of study.arms.entries()) {
    const dir = join(o.out, 'arms', arm.name);
    const resultPath = join(dir, 'result.json');
    if (existsSync(resultPath)) {
      o.onArm?.(arm, index, study.arms.length, true);
      results.push(JSON.parse(readFileSync(resultPath, 'utf8')) as ArmResult);
      continue;
    }
    if (o.signal?.aborted) {
      stopped = true;
      break;
    }
    o.onArm?.(arm, index, study.arms.length, false);
    const result = arm.model ? await evaluateOnly(arm, study, limit, o) : await trainArm(arm, study, dir, limit, o);
    if (!result) {
      stopped = true;
      break;
    }
    mkdirSync(dir, { recursive: true });
    writeFileAtomic(resultPath, JSON.stringify(result, null, 2) + '\n');
    results.push(result);
    o.onArmDone?.(result);
  }
  const report = writeStudyReport(study, results, o.out, limit);
  return { results, markdown: report.markdown, files: report.files, stopped };
}

/** Trains one arm from scratch and evaluates it; null when the signal stopped it. */
async function trainArm(arm: StudyArm, study: StudyDefinition, dir: string, limit: number, o: RunStudyOptions): Promise<ArmResult | null> {
  const data = armDataFile(join(o.out, 'data'), arm.data);
  const run = await train({
    ...arm.train,
    out: join(dir, 'run'),
    data: { source: 'file', path: data },
    threads: o.threads,
    device: arm.train.device ?? o.device,
    evalAtEnd: true,
    evalSets: study.evalSets,
    evalLimit: limit,
    evalModes: ['free', 'constrained'],
    signal: o.signal,
    // a run interrupted before its end is continued from its checkpoint
    resume: existsSync(join(dir, 'run', 'checkpoints')),
    onStep: (r) => o.onStep?.(arm, r),
  });
  if (run.stopped || !run.evaluation) return null;
  const last = run.history.at(-1);
  const tokens = run.history.reduce((a, h) => a + h.tokens, 0);
  return {
    name: arm.name,
    params: arm.params,
    steps: run.stepsDone,
    trainedSeconds: run.trainedSeconds,
    trainTokensPerSecond: tokens / Math.max(run.trainedSeconds, 1e-9),
    finalLoss: last?.loss ?? null,
    scores: run.evaluation.scores,
    evalSeconds: run.evaluation.seconds,
  };
}

/** Evaluates an existing model folder (an arm with `model`). */
async function evaluateOnly(arm: StudyArm, study: StudyDefinition, limit: number, o: RunStudyOptions): Promise<ArmResult | null> {
  const r = await evaluate({ model: arm.model as string, sets: study.evalSets, limit, modes: ['free', 'constrained'], threads: o.threads, device: o.device, signal: o.signal });
  if (o.signal?.aborted) return null;
  return { name: arm.name, params: arm.params, steps: 0, trainedSeconds: 0, trainTokensPerSecond: 0, finalLoss: null, scores: r.scores, evalSeconds: r.seconds };
}
