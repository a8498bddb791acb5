// What a study is: named arms (one training run and its evaluation each), the columns that describe
// them, and the charts and conclusions drawn from their results. The runner (runner.ts) runs the arms;
// scaling.ts, extrapolation.ts and curriculum.ts define the studies.
import type { SetScore } from '../eval/evaluate.js';
import type { ResponseKind } from '../puzzle/canonical.js';
import type { TrainOptions } from '../train/options.js';

/** Training data an arm writes before it trains: synthesized, answered, and put in an order. */
export interface ArmData {
  count: number;
  seed: number;
  n: number[];
  maxValue: number;
  responses: ResponseKind;
  /** as-drawn (the synthesizer's order), by-n (5s first, a curriculum by length), by-difficulty (easiest solution shape first). */
  order: 'as-drawn' | 'by-n' | 'by-difficulty';
}

export interface StudyArm {
  /** A folder-safe id, unique in the study. */
  name: string;
  /** Values of the study's columns (model size, puzzles, responses …). */
  params: Record<string, string | number>;
  /** train() options; `out`, `data`, the evaluation and `threads` are the runner's. */
  train: Omit<TrainOptions, 'out' | 'data' | 'threads' | 'evalSets' | 'evalLimit' | 'evalModes' | 'evalAtEnd'>;
  data: ArmData;
  /** Evaluate this model folder instead of training (an existing run's model). */
  model?: string;
}

export interface ArmResult {
  name: string;
  params: Record<string, string | number>;
  steps: number;
  trainedSeconds: number;
  trainTokensPerSecond: number;
  finalLoss: number | null;
  scores: SetScore[];
  evalSeconds: number;
}

export interface StudyDefinition {
  name: string;
  /** The question it answers, for the report. */
  question: string;
  arms: StudyArm[];
  /** Evaluation sets (ids or JSONL paths the study writes), puzzles per set. */
  evalSets: string[];
  /** The columns of the results table, in order (keys of params). */
  columns: string[];
  /** The charts of the report, drawn from the results. */
  charts(results: ArmResult[]): Array<{ title: string; svg: string }>;
  /** A table of its own instead of one row per arm with pass@1 per set (extrapolation: one column per N). */
  table?(results: ArmResult[]): { header: string[]; rows: string[][] };
}

/** pass@1 of one set and mode in an arm's result (NaN when it was not evaluated). */
export function pass1(r: ArmResult, set: string, mode: 'free' | 'constrained', n?: number): number {
  const s = r.scores.find((x) => x.id === set && x.mode === mode);
  if (!s) return NaN;
  if (n === undefined) return s.pass1;
  return s.byN[String(n)]?.pass1 ?? NaN;
}
