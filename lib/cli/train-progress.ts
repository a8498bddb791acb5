// What `train` and `start` show while train() runs: a progress bar drawn from onStep (redrawn in place on a
// terminal, or when `puzzle-llama launch` relays this rank's output to one), and a line for each
// evaluation and note. Only rank 0 of a data-parallel run is given steps to draw. A run with a time budget
// fills the bar by its training seconds and shows the step it has reached.
import type { TrainOptions } from '../train/options.js';
import type { CliIo } from './io.js';
import { createProgress, formatSeconds, type Progress } from './progress.js';

export type TrainCallbacks = Pick<TrainOptions, 'onStep' | 'onEvalStart' | 'onEval' | 'onNote'> & {
  /** Ends the bar with a last line. */
  finish(message: string): void;
};

function formatRate(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0);
}

/** The bounds of the run the bar shows: a step count, a time budget in seconds, or both. */
export interface TrainBounds {
  steps?: number;
  timeBudget?: number;
}

export function trainProgress(io: CliIo, bounds: TrainBounds, env: Record<string, string | undefined> = process.env): TrainCallbacks {
  // The launcher pipes a rank's stderr to its own terminal and says so: draw as on a terminal.
  const relayed = env.PUZZLE_LLAMA_TTY === '1';
  const stream = relayed && !io.stderr.isTTY ? Object.assign(Object.create(io.stderr), { isTTY: true, columns: Number(env.COLUMNS) || 100, write: io.stderr.write.bind(io.stderr) }) : io.stderr;
  let bar: Progress | null = null;
  const byTime = bounds.timeBudget !== undefined;
  const total = byTime ? (bounds.timeBudget as number) : (bounds.steps ?? 0);
  const counts = byTime ? (done: number, all: number) => `${formatSeconds(done)}/${formatSeconds(all)} budget` : undefined;
  const open = () => (bar ??= createProgress({ label: 'train', total, stream, counts }));
  const line = (text: string) => {
    if (bar) {
      bar.finish(text);
      bar = null;
    } else io.stderr.write(text + '\n');
  };
  return {
    onStep: (r) =>
      byTime
        ? open().update(Math.min(total, r.elapsedSeconds), `step ${(r.step + 1).toLocaleString('en-US')} loss ${r.loss.toFixed(4)} ${formatRate(r.tokensPerSecond)} tok/s`)
        : open().update(r.step + 1, `loss ${r.loss.toFixed(4)} ${formatRate(r.tokensPerSecond)} tok/s`),
    onEvalStart: (step) => line(`train: evaluating at step ${step}`),
    onEval: (step, scores) => line(`train: step ${step}: ${scores.map((s) => `${s.set} ${s.mode} ${s.pass1.toFixed(3)}`).join(', ')}`),
    onNote: (message) => line(`train: ${message}`),
    finish: (message) => line(message),
  };
}
