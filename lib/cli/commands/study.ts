// `puzzle-llama study <name>`: one reproducible experiment per command (scaling, extrapolation, curriculum);
// each arm trains and is evaluated in the study folder, which a second call continues; the markdown
// table is printed and report.html drawn.
import { join } from 'node:path';
import { curriculumStudy } from '../../study/curriculum.js';
import { extrapolationStudy } from '../../study/extrapolation.js';
import { runStudy } from '../../study/runner.js';
import { scalingStudy } from '../../study/scaling.js';
import type { StudyDefinition } from '../../study/study.js';
import { intFlag, intListFlag, parseFlags } from '../args.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';
import { createProgress, formatSeconds, type Progress } from '../progress.js';

export const studyHelp = `puzzle-llama study scaling|extrapolation|curriculum [--out DIR] [--scale cpu|gpu] [--limit K] [--threads T]
                   [--steps N] [--volumes 4000,12000,36000] [--model DIR]
  Runs one study: every arm trains from scratch and is evaluated on K puzzles per set (default 300),
  free and constrained; writes results.json, results.md and report.html in DIR (default runs/study-NAME).
  A study that was stopped continues where it stopped when run again with the same --out.
  scaling: pass@1 against training puzzles (--volumes) for two model sizes (three with --scale gpu).
  extrapolation: pass@1 for N = 5 … 12 and 15 after training on 5–7 (--model DIR evaluates a trained model).
  curriculum: the paper's synthetic chains at 1x and 2x the --steps, against canonical solutions, filtered,
  ordered by N and easiest first.`;

const NAMES = ['scaling', 'extrapolation', 'curriculum'] as const;

export async function studyCommand(argv: string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (!NAMES.includes(name as (typeof NAMES)[number])) {
    throw new CliError(`puzzle-llama study: name a study (${NAMES.join(', ')}), got ${name === undefined ? 'nothing' : `'${name}'`}`);
  }
  const flags = parseFlags('study', rest, {
    out: { type: 'string' },
    scale: { type: 'string' },
    limit: { type: 'string' },
    threads: { type: 'string' },
    steps: { type: 'string' },
    volumes: { type: 'string' },
    model: { type: 'string' },
  });
  const scale = flags.scale ?? 'cpu';
  if (scale !== 'cpu' && scale !== 'gpu') throw new CliError(`puzzle-llama study: --scale must be cpu or gpu, got '${scale}'`);
  const out = flags.out ?? join('runs', `study-${name}`);
  const steps = flags.steps === undefined ? undefined : intFlag('study', 'steps', flags.steps, 1, 1);
  const limit = intFlag('study', 'limit', flags.limit, 300, 1, 3000);
  const threads = flags.threads === undefined ? undefined : intFlag('study', 'threads', flags.threads, 1, 1, 1024);
  if (flags.volumes !== undefined && name !== 'scaling') throw new CliError('puzzle-llama study: --volumes applies to the scaling study');
  if (flags.model !== undefined && name !== 'extrapolation') throw new CliError('puzzle-llama study: --model applies to the extrapolation study');
  if (steps !== undefined && name === 'scaling') throw new CliError('puzzle-llama study: the scaling study sets its steps from --volumes');
  let study: StudyDefinition;
  try {
    study =
      name === 'scaling'
        ? scalingStudy({ scale, volumes: flags.volumes === undefined ? undefined : intListFlag('study', 'volumes', flags.volumes, [], 1, 1e9) })
        : name === 'extrapolation'
          ? extrapolationStudy({ scale, out, model: flags.model, steps })
          : curriculumStudy({ scale, steps });
  } catch (err) {
    throw new CliError(`puzzle-llama study: ${(err as Error).message}`);
  }

  const controller = new AbortController();
  const onSigint = () => {
    io.stderr.write('\nstopping after the current step; run the same command again to continue\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  let bar: Progress | null = null;
  const started = performance.now();
  try {
    const r = await runStudy(study, {
      out,
      limit,
      threads,
      device: scale === 'gpu' ? 'cuda' : 'cpu',
      signal: controller.signal,
      onArm: (arm, i, count, cached) => {
        io.stderr.write(`[${i + 1}/${count}] ${arm.name}: ${cached ? 'done before, result kept' : arm.model ? `evaluating ${arm.model}` : `training ${arm.train.steps} steps, then evaluating ${limit} puzzles per set`}\n`);
        bar = arm.model || cached ? null : createProgress({ label: arm.name, total: arm.train.steps ?? 0, stream: io.stderr });
      },
      onStep: (_arm, rec) => bar?.update(rec.step + 1, `loss ${rec.loss.toFixed(4)}`),
      onArmDone: (res) => {
        bar?.finish(`${res.name}: ${res.steps} steps in ${formatSeconds(res.trainedSeconds)}, evaluated in ${formatSeconds(res.evalSeconds)}`);
        bar = null;
      },
    });
    io.stdout.write(`${r.markdown}\nstudy ${name}: ${r.results.length} arms in ${formatSeconds((performance.now() - started) / 1000)}${r.stopped ? ' (stopped; run again to continue)' : ''}\nreport: ${r.files.html}\ntable:  ${r.files.markdown}\n`);
    return r.stopped ? 130 : 0;
  } catch (err) {
    throw new CliError(`puzzle-llama study ${name}: ${(err as Error).message}`, 1);
  } finally {
    process.off('SIGINT', onSigint);
  }
}
