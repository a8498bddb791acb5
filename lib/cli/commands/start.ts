// `npm start` / `puzzle-llama start`: the main job on a CPU in about ten minutes: synthesize a training set
// (never an evaluation puzzle), train the tiny preset from scratch on it, evaluate on a sample of every
// evaluation set (free and constrained decoding), and print the table with where the report and model are.
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { benchmarkSets } from '../../puzzle/benchmark-sets.js';
import { train } from '../../train/train.js';
import { intFlag, parseFlags } from '../args.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';
import { trainProgress } from '../train-progress.js';
import { synthCommand } from './synth.js';

export const startHelp = `puzzle-llama start [--out DIR] [--steps N] [--count N] [--limit K] [--threads T]
  The main job: synthesize N training puzzles, train the tiny preset from scratch for --steps, then evaluate
  K puzzles of every evaluation set (free and constrained decoding) and print the pass@1 table.
  Defaults: runs/main, 2000 steps of batch 32, 64,000 puzzles (each seen once), 100 puzzles per set.`;

export async function startCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('start', argv, {
    out: { type: 'string' },
    steps: { type: 'string' },
    count: { type: 'string' },
    limit: { type: 'string' },
    threads: { type: 'string' },
  });
  const dir = flags.out ?? join('runs', 'main');
  const steps = intFlag('start', 'steps', flags.steps, 2000, 1);
  const count = intFlag('start', 'count', flags.count, steps * 32, 1);
  const limit = intFlag('start', 'limit', flags.limit, 100, 1, 3000);
  const threads = flags.threads === undefined ? undefined : intFlag('start', 'threads', flags.threads, 1, 1, 1024);
  const started = performance.now();
  // a fresh run each time; a previous run in the same folder is kept beside it, under its date
  if (existsSync(dir)) {
    const kept = `${dir}-${statSync(dir).mtime.toISOString().replace(/[:.]/g, '-')}`;
    renameSync(dir, kept);
    io.stderr.write(`the previous run in ${dir} was moved to ${kept}\n`);
  }
  mkdirSync(dir, { recursive: true });
  const trainPath = join(dir, 'train.jsonl');

  io.stderr.write(`[1/3] synthesizing ${count.toLocaleString('en-US')} training puzzles (V 60, N 5,6,7; no evaluation puzzle) -> ${trainPath}\n`);
  const code = await synthCommand(['--count', String(count), '--seed', '1234', '--out', trainPath], io);
  if (code !== 0) return code;

  io.stderr.write(`[2/3] training the tiny preset from scratch on the CPU: ${steps} steps of 32 puzzles\n`);
  const controller = new AbortController();
  const onSigint = () => {
    io.stderr.write('\nstopping after the current step (the checkpoint stays in the run folder)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  let result;
  const shown = trainProgress(io, steps);
  let lastLoss = NaN;
  let trained = false;
  const trainedLine = () => {
    if (!trained) shown.finish(`train: ${steps} steps, final loss ${lastLoss.toFixed(4)}`);
    trained = true;
  };
  try {
    result = await train({
      ...shown,
      onStep: (r) => {
        lastLoss = r.loss;
        shown.onStep?.(r);
      },
      out: dir,
      preset: 'tiny',
      steps,
      batchSize: 32,
      lr: 2e-3,
      data: { source: 'file', path: trainPath },
      checkpointEvery: 250,
      threads,
      evalAtEnd: true,
      evalLimit: limit,
      evalSets: benchmarkSets.map((s) => s.id),
      evalModes: ['free', 'constrained'],
      signal: controller.signal,
      onEvalStart: () => {
        trainedLine();
        io.stderr.write(`[3/3] evaluating ${limit} puzzles of each set (free and constrained decoding)\n`);
      },
      onEval: () => undefined,
    });
    if (result.stopped) shown.finish(`train: stopped after step ${result.stepsDone} of ${steps}`);
    else trainedLine();
  } catch (err) {
    throw new CliError(`puzzle-llama start: ${(err as Error).message}`, 1);
  } finally {
    process.off('SIGINT', onSigint);
  }
  if (result.stopped) {
    io.stdout.write(`stopped at step ${result.stepsDone}; the run is in ${dir}\n`);
    return 130;
  }
  const minutes = (performance.now() - started) / 60000;
  io.stdout.write(
    [
      '',
      result.evaluation?.table ?? '(no evaluation)',
      '',
      `main job done in ${minutes.toFixed(1)} min`,
      `report: ${result.report}`,
      `model:  ${result.model}`,
      `run:    ${dir} (metrics.jsonl, evals.jsonl, checkpoints/)`,
      '',
    ].join('\n'),
  );
  return 0;
}
