// What `train` and `start` show while train() runs: a progress bar drawn from onStep (redrawn in place on a
// terminal, or when `puzzle-llama launch` relays this rank's output to one), and a line for each
// evaluation and note. Only rank 0 of a data-parallel run is given steps to draw.
import type { TrainOptions } from '../train/options.js';
import type { CliIo } from './io.js';
import { createProgress, type Progress } from './progress.js';

export type TrainCallbacks = Pick<TrainOptions, 'onStep' | 'onEvalStart' | 'onEval' | 'onNote'> & {
  /** Ends the bar with a last line. */
  finish(message: string): void;
};

function formatRate(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(1)}k` : x.toFixed(0);
}

export function trainProgress(io: CliIo, total: number, env: Record<string, string | undefined> = process.env): TrainCallbacks {
  // The launcher pipes a rank's stderr to its own terminal and says so: draw as on a terminal.
  const relayed = env.PUZZLE_LLAMA_TTY === '1';
  const stream = relayed && !io.stderr.isTTY ? Object.assign(Object.create(io.stderr), { isTTY: true, columns: Number(env.COLUMNS) || 100, write: io.stderr.write.bind(io.stderr) }) : io.stderr;
  let bar: Progress | null = null;
  const open = () => (bar ??= createProgress({ label: 'train', total, stream }));
  const line = (text: string) => {
    if (bar) {
      bar.finish(text);
      bar = null;
    } else io.stderr.write(text + '\n');
  };
  return {
    onStep: (r) => open().update(r.step + 1, `loss ${r.loss.toFixed(4)} ${formatRate(r.tokensPerSecond)} tok/s`),
    onEvalStart: (step) => line(`train: evaluating at step ${step}`),
    onEval: (step, scores) => line(`train: step ${step}: ${scores.map((s) => `${s.set} ${s.mode} ${s.pass1.toFixed(3)}`).join(', ')}`),
    onNote: (message) => line(`train: ${message}`),
    finish: (message) => line(message),
  };
}
