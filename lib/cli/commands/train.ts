// `puzzle-llama train`: train() from the command line; Ctrl-C stops after the current step with a checkpoint.
import { readFileSync } from 'node:fs';
import { train } from '../../train/train.js';
import type { TrainOptions } from '../../train/options.js';
import type { DataOptions } from '../../train/data.js';
import { recipe, RECIPES } from '../../train/recipes.js';
import { RESPONSE_KINDS, type ResponseKind } from '../../puzzle/canonical.js';
import { durationFlag, intFlag, intListFlag, parseFlags } from '../args.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';
import { formatSeconds } from '../progress.js';
import { trainProgress } from '../train-progress.js';

export const trainHelp = `puzzle-llama train [--recipe NAME] [--config FILE] [--preset tiny] [--out DIR] [--steps N] [--batch-size B] [--lr X]
                   [--lora] [--frozen-weights fp32|bf16] [--gradient-checkpointing]
                   [--data FILE | --n 5,6,7 --max-value 60 --responses synthetic|canonical|canonical-only|random-core-only] [--seed S]
                   [--device auto|cpu|cuda] [--threads T] [--checkpoint-every K] [--resume]
                   [--time SECONDS|Nm] [--dist-timeout SECONDS]
  Trains a model from scratch (or LoRA with --lora) on puzzles synthesized on the fly (or read from --data).
  Started by \`puzzle-llama launch\`, torchrun or srun with several ranks, it trains data-parallel: the
  batch stays the global batch, each rank takes a share, rank 0 writes the run folder; a rank that dies or
  stops answering fails the others after --dist-timeout (default 300 s).
  --frozen-weights bf16 (LoRA) keeps the frozen base matrices in bf16: half their memory.
  --gradient-checkpointing recomputes each layer's forward pass in the backward pass: the same results,
  one layer's activations instead of every layer's, about a third more compute.
  --time trains to a time budget (seconds, or minutes as 8m): the learning rate follows the elapsed
  fraction of it and the run ends when it is spent (with --steps too, at whichever comes first).
  --recipe takes a measured set of options: ${Object.values(RECIPES).map((r) => `${r.name} (${r.description})`).join('; ')}.
  --config FILE is JSON with any train() option (flags given on the command line win over it, and it over the recipe).`;

function numberFlag(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const x = Number(value);
  if (value.trim() === '' || !Number.isFinite(x)) throw new CliError(`puzzle-llama train: --${name} must be a number, got '${value}'`);
  return x;
}

export async function trainCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('train', argv, {
    config: { type: 'string' },
    preset: { type: 'string' },
    out: { type: 'string' },
    steps: { type: 'string' },
    'batch-size': { type: 'string' },
    lr: { type: 'string' },
    lora: { type: 'boolean' },
    'frozen-weights': { type: 'string' },
    'gradient-checkpointing': { type: 'boolean' },
    data: { type: 'string' },
    n: { type: 'string' },
    'max-value': { type: 'string' },
    seed: { type: 'string' },
    device: { type: 'string' },
    threads: { type: 'string' },
    'checkpoint-every': { type: 'string' },
    resume: { type: 'boolean' },
    'dist-timeout': { type: 'string' },
    time: { type: 'string' },
    recipe: { type: 'string' },
    responses: { type: 'string' },
  });
  let fromRecipe: Partial<TrainOptions> = {};
  if (flags.recipe !== undefined) {
    try {
      fromRecipe = recipe(flags.recipe).options;
    } catch (err) {
      throw new CliError(`puzzle-llama train: --recipe: ${(err as Error).message}`);
    }
  }
  let fromConfig: Partial<TrainOptions> = {};
  if (flags.config) {
    try {
      fromConfig = JSON.parse(readFileSync(flags.config, 'utf8'));
    } catch (err) {
      throw new CliError(`puzzle-llama train: --config ${flags.config}: ${(err as Error).message}`);
    }
    if (typeof fromConfig !== 'object' || fromConfig === null || Array.isArray(fromConfig)) {
      throw new CliError(`puzzle-llama train: --config ${flags.config} must hold a JSON object of train() options`);
    }
  }
  const fromFile: Partial<TrainOptions> = { ...fromRecipe, ...fromConfig };
  const responses = flags.responses as ResponseKind | undefined;
  if (responses !== undefined && !RESPONSE_KINDS.includes(responses)) throw new CliError(`puzzle-llama train: --responses must be one of ${RESPONSE_KINDS.join(', ')}, got '${responses}'`);
  if (responses !== undefined && flags.data) throw new CliError('puzzle-llama train: --responses applies to synthesized data; a --data file holds its own responses (write them with `synth --responses`)');
  const seed = flags.seed !== undefined ? intFlag('train', 'seed', flags.seed, 1234, 0) : fromFile.seed;
  let data: DataOptions | undefined = fromFile.data;
  if (flags.data) data = { source: 'file', path: flags.data };
  else if (flags.n || flags['max-value'] || responses) {
    const base = data?.source === 'synth' ? data : undefined;
    data = {
      source: 'synth',
      n: flags.n ? intListFlag('train', 'n', flags.n, [5, 6, 7], 2, 64) : (base?.n ?? [5, 6, 7]),
      maxValue: flags['max-value'] ? intFlag('train', 'max-value', flags['max-value'], 60, 1) : (base?.maxValue ?? 60),
      seed: seed ?? base?.seed ?? 1234,
      responses: responses ?? base?.responses,
      ...(base?.maxCore !== undefined ? { maxCore: base.maxCore } : {}),
      ...(base?.fold !== undefined ? { fold: base.fold } : {}),
    };
  }
  const frozenWeights = flags['frozen-weights'] ?? fromFile.frozenWeights;
  if (frozenWeights !== undefined && frozenWeights !== 'fp32' && frozenWeights !== 'bf16') {
    throw new CliError(`puzzle-llama train: --frozen-weights must be fp32 or bf16, got '${frozenWeights}'`);
  }
  const device = flags.device ?? fromFile.device;
  if (device !== undefined && !['auto', 'cpu', 'cuda'].includes(device)) throw new CliError(`puzzle-llama train: --device must be auto, cpu or cuda, got '${device}'`);
  const options: TrainOptions = {
    ...fromFile,
    out: flags.out ?? fromFile.out ?? 'runs/train',
    preset: flags.preset ?? fromFile.preset,
    // --steps alone makes a fixed run even when the recipe has a time budget
    timeBudget: durationFlag('train', 'time', flags.time) ?? (flags.steps !== undefined ? fromConfig.timeBudget : fromFile.timeBudget),
    steps: flags.steps !== undefined ? intFlag('train', 'steps', flags.steps, 1, 1) : (fromFile.steps ?? (flags.time !== undefined || fromFile.timeBudget !== undefined ? undefined : 1000)),
    batchSize: flags['batch-size'] !== undefined ? intFlag('train', 'batch-size', flags['batch-size'], 32, 1) : fromFile.batchSize,
    lr: numberFlag('lr', flags.lr) ?? fromFile.lr,
    lora: flags.lora ? true : fromFile.lora,
    frozenWeights,
    gradientCheckpointing: flags['gradient-checkpointing'] ? true : fromFile.gradientCheckpointing,
    data,
    seed,
    device: device as TrainOptions['device'],
    threads: flags.threads !== undefined ? intFlag('train', 'threads', flags.threads, 1, 1, 1024) : fromFile.threads,
    checkpointEvery: flags['checkpoint-every'] !== undefined ? intFlag('train', 'checkpoint-every', flags['checkpoint-every'], 200, 0) : fromFile.checkpointEvery,
    resume: flags.resume ?? fromFile.resume,
    distributed:
      flags['dist-timeout'] !== undefined
        ? { ...fromFile.distributed, timeoutMs: 1000 * intFlag('train', 'dist-timeout', flags['dist-timeout'], 300, 1, 7 * 24 * 3600) }
        : fromFile.distributed,
  };
  const controller = new AbortController();
  let first = 0;
  // SIGINT (Ctrl-C) and SIGTERM (what torchrun and Slurm send before SIGKILL) stop after the current step.
  // Under the launcher a Ctrl-C arrives twice (from the terminal and relayed): a second signal within a
  // second of the first is the same one.
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now();
    if (first && now - first > 1000) {
      io.stderr.write(`\npuzzle-llama train: ${signal} again, exiting now (the last complete checkpoint is intact)\n`);
      process.exit(130);
    }
    if (first) return;
    first = now;
    io.stderr.write(`\npuzzle-llama train: ${signal}: stopping after the current step (Ctrl-C again to exit now)\n`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const steps = options.steps;
  const shown = trainProgress(io, { steps, timeBudget: options.timeBudget });
  try {
    const result = await train({ ...options, ...shown, signal: controller.signal });
    if (result.world.rank > 0) {
      io.stdout.write(`rank ${result.world.rank} of ${result.world.worldSize}: ${result.stepsDone} steps${result.stopped ? ' (stopped)' : ''}; rank 0 wrote ${result.out}\n`);
      return result.stopped ? 130 : 0;
    }
    shown.finish(
      result.stopped
        ? `train: stopped after step ${result.stepsDone}${steps ? ` of ${steps}` : ''}; resume with --resume (checkpoint ${result.checkpoint})`
        : `train: ${result.stepsDone} steps${result.endedBy === 'time' ? ` (the ${formatSeconds(result.trainedSeconds)} budget)` : ''}, final loss ${result.history.at(-1)?.loss.toFixed(4) ?? '-'}`,
    );
    io.stdout.write(
      [
        `run:        ${result.out}`,
        `steps:      ${result.stepsDone}${result.options.timeBudget === null ? `/${result.options.steps}` : ` in ${formatSeconds(result.trainedSeconds)} of training`}${result.stopped ? ' (stopped)' : ''}`,
        `final loss: ${result.history.at(-1)?.loss.toFixed(4) ?? '-'}`,
        `checkpoint: ${result.checkpoint}`,
        ...(result.model ? [`model:      ${result.model}`] : []),
        ...(result.adapter ? [`adapter:    ${result.adapter}`] : []),
      ].join('\n') + '\n',
    );
    return result.stopped ? 130 : 0;
  } catch (err) {
    throw new CliError(`puzzle-llama train: ${(err as Error).message}`, 1);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
