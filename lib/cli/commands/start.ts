// `npm start` / `puzzle-llama start`: the main job within a wall-clock budget (ten minutes by default) on any
// machine: synthesize training puzzles answered as the `cpu-10min` recipe says (never an evaluation puzzle), time a
// sample of decoding to know what the evaluation will cost, train the `cpu-10min` recipe for the time
// left, evaluate every paper set (free and constrained decoding) and print the table.
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Engine } from '../../engine/engine.js';
import { evaluate } from '../../eval/run.js';
import { DEFAULT_EVAL_SETS } from '../../eval/evaluate.js';
import { presetConfig, type PresetName } from '../../model/config.js';
import { PuzzleTokenizer } from '../../model/tokenizer.js';
import { recipe } from '../../train/recipes.js';
import { train, type TrainResult } from '../../train/train.js';
import { durationFlag, intFlag, parseFlags } from '../args.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';
import { formatSeconds } from '../progress.js';
import { trainProgress } from '../train-progress.js';
import { synthCommand } from './synth.js';

export const startHelp = `puzzle-llama start [--out DIR] [--minutes M] [--steps N] [--count N] [--limit K] [--threads T]
  The main job, done within --minutes (default 10) of wall clock on any machine: synthesize --count
  training puzzles answered with their canonical solutions, train the mini preset without positional
  encoding from scratch (the cpu-10min recipe) for the time left once the evaluation's cost is measured on
  a sample, then evaluate K puzzles of each of the paper's four sets, free and constrained decoding, and
  print the pass@1 table.
  --steps N trains exactly N steps instead of to the clock (a deterministic run).
  Defaults: runs/main, 150,000 puzzles (fewer are read on a slow machine), 300 puzzles per set.`;

/** Seconds kept back for exporting the model and writing the report. */
const FINISH_SECONDS = 10;
/** The evaluation's measured cost is scaled by this, for batches that come out smaller than the sample's. */
const EVAL_MARGIN = 1.25;
/** Beams of the main job's beam-search evaluation. */
const MAIN_BEAMS = 8;
/** Below this, training learns nothing worth evaluating: the job trains this long and says it overran. */
const MIN_TRAIN_SECONDS = 60;

export async function startCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('start', argv, {
    out: { type: 'string' },
    minutes: { type: 'string' },
    steps: { type: 'string' },
    count: { type: 'string' },
    limit: { type: 'string' },
    threads: { type: 'string' },
  });
  const started = performance.now();
  const dir = flags.out ?? join('runs', 'main');
  const minutes = flags.minutes === undefined ? 10 : (durationFlag('start', 'minutes', `${flags.minutes}m`) as number) / 60;
  const steps = flags.steps === undefined ? undefined : intFlag('start', 'steps', flags.steps, 2000, 1);
  const count = intFlag('start', 'count', flags.count, 150_000, 1);
  const limit = intFlag('start', 'limit', flags.limit, 300, 1, 3000);
  const threads = flags.threads === undefined ? undefined : intFlag('start', 'threads', flags.threads, 1, 1, 1024);
  const cpu = recipe('cpu-10min').options;
  const sets = [...DEFAULT_EVAL_SETS];
  // greedy free and constrained, and constrained beam search (MAIN_BEAMS hypotheses ranked by the model's own likelihood)
  const modes = ['free', 'constrained', `constrained-beam${MAIN_BEAMS}`] as const;

  // a fresh run each time; a previous run in the same folder is kept beside it, under its date
  if (existsSync(dir)) {
    const kept = `${dir}-${statSync(dir).mtime.toISOString().replace(/[:.]/g, '-')}`;
    renameSync(dir, kept);
    io.stderr.write(`the previous run in ${dir} was moved to ${kept}\n`);
  }
  mkdirSync(dir, { recursive: true });
  const trainPath = join(dir, 'train.jsonl');

  // the recipe's data, written to a file first: the training then reads it as any --data file
  const data = cpu.data;
  if (data?.source !== 'synth') throw new Error(`start: the cpu-10min recipe must synthesize its data, got ${JSON.stringify(data)}`);
  const responses = data.responses ?? 'canonical';
  io.stderr.write(`[1/3] synthesizing ${count.toLocaleString('en-US')} training puzzles (V ${data.maxValue}, N ${data.n.join(',')}; ${responses} responses; no evaluation puzzle) -> ${trainPath}\n`);
  const code = await synthCommand(['--count', String(count), '--seed', String(data.seed), '--n', data.n.join(','), '--max-value', String(data.maxValue), '--responses', responses, ...(data.maxCore !== undefined ? ['--max-core', String(data.maxCore)] : []), ...(data.fold !== undefined ? ['--fold', data.fold] : []), '--out', trainPath], io);
  if (code !== 0) return code;

  let timeBudget: number | undefined;
  if (steps === undefined) {
    const perPuzzle = await decodeSecondsPerPuzzle(cpu.preset as PresetName, threads);
    // free decoding is costed as greedy constrained decoding (a trained model writes the same steps)
    const evalSeconds = EVAL_MARGIN * sets.length * limit * (2 * perPuzzle.greedy + perPuzzle.beam);
    const left = minutes * 60 - (performance.now() - started) / 1000 - evalSeconds - FINISH_SECONDS;
    timeBudget = Math.max(MIN_TRAIN_SECONDS, Math.floor(left));
    if (left < MIN_TRAIN_SECONDS) io.stderr.write(`this machine needs about ${formatSeconds(evalSeconds)} for the evaluation alone: training ${MIN_TRAIN_SECONDS} s anyway, so the job will take longer than ${minutes} min\n`);
    io.stderr.write(`[2/3] training the ${cpu.preset} preset from scratch on the CPU for ${formatSeconds(timeBudget)} (${minutes} min, less about ${formatSeconds(evalSeconds)} measured for the evaluation)\n`);
  } else {
    io.stderr.write(`[2/3] training the ${cpu.preset} preset from scratch on the CPU: ${steps} steps of ${cpu.batchSize} puzzles\n`);
  }

  const controller = new AbortController();
  const onSigint = () => {
    io.stderr.write('\nstopping after the current step (the checkpoint stays in the run folder)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  const shown = trainProgress(io, { steps, timeBudget });
  let trained = false;
  let result: TrainResult;
  const trainedLine = (r: Pick<TrainResult, 'stepsDone' | 'history'>) => {
    if (!trained) shown.finish(`train: ${r.stepsDone} steps in ${formatSeconds(r.history.at(-1)?.elapsedSeconds ?? 0)}, final loss ${r.history.at(-1)?.loss.toFixed(4) ?? '-'}`);
    trained = true;
  };
  const history: TrainResult['history'] = [];
  try {
    result = await train({
      ...cpu,
      ...shown,
      onStep: (r) => {
        history.push(r);
        shown.onStep?.(r);
      },
      out: dir,
      data: { source: 'file', path: trainPath },
      steps,
      timeBudget,
      checkpointEvery: 250,
      threads,
      evalAtEnd: true,
      evalLimit: limit,
      evalSets: sets,
      evalModes: [...modes],
      signal: controller.signal,
      onEvalStart: () => {
        trainedLine({ stepsDone: history.length, history });
        io.stderr.write(`[3/3] evaluating ${limit} puzzles of each of ${sets.join(', ')} (free and constrained decoding, greedy; constrained also with ${MAIN_BEAMS} beams)\n`);
      },
      onEval: () => undefined,
    });
    if (result.stopped) shown.finish(`train: stopped after step ${result.stepsDone}`);
    else trainedLine(result);
  } catch (err) {
    throw new CliError(`puzzle-llama start: ${(err as Error).message}`, 1);
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (result.stopped) {
    io.stdout.write(`stopped at step ${result.stepsDone}; the run is in ${dir}\n`);
    return 130;
  }
  const total = (performance.now() - started) / 1000;
  io.stdout.write(
    [
      '',
      result.evaluation?.table ?? '(no evaluation)',
      '',
      `main job done in ${formatSeconds(total)}: ${result.stepsDone} steps of ${cpu.batchSize} puzzles${result.endedBy === 'time' ? ` in the ${formatSeconds(timeBudget ?? 0)} training budget` : ''}`,
      `report: ${result.report}`,
      `model:  ${result.model}`,
      `run:    ${dir} (metrics.jsonl, evals.jsonl, checkpoints/)`,
      '',
    ].join('\n'),
  );
  return 0;
}

/**
 * What one puzzle's decoding costs on this machine, greedy and with the main job's beams: a fresh model of
 * the preset decodes a sample of the in-domain set under constrained decoding (which writes well-formed
 * steps of the real length).
 */
async function decodeSecondsPerPuzzle(preset: PresetName, threads: number | undefined): Promise<{ greedy: number; beam: number }> {
  const tokenizer = new PuzzleTokenizer();
  const engine = await Engine.create({ config: presetConfig(preset, { vocab_size: tokenizer.vocabSize }), device: 'cpu', threads, seed: 1 });
  try {
    const greedy = await evaluate({ model: { engine, tokenizer }, sets: ['id'], limit: 96, modes: ['constrained'] });
    const beam = await evaluate({ model: { engine, tokenizer }, sets: ['id'], limit: 32, modes: [`constrained-beam${MAIN_BEAMS}`] });
    return { greedy: greedy.seconds / greedy.records.length, beam: beam.seconds / beam.records.length };
  } finally {
    engine.dispose();
  }
}
