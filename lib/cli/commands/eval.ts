// `puzzle-llama eval`: evaluate() from the command line; prints the Table-2-shaped table.
import { benchmarkSets } from '../../puzzle/benchmark-sets.js';
import { evaluate } from '../../eval/run.js';
import { parseDecodingMode, type DecodingMode } from '../../eval/evaluate.js';
import { intFlag, parseFlags } from '../args.js';
import { CliError } from '../errors.js';
import type { CliIo } from '../io.js';
import { createProgress } from '../progress.js';

export const evalHelp = `puzzle-llama eval --model DIR [--adapter DIR] [--sets id,ood-num-100,ood-num-1000,ood-form] [--limit K]
                  [--samples K] [--temperature T] [--top-k K] [--seed S] [--mode MODES]
                  [--batch-size B] [--out DIR] [--device auto|cpu|cuda] [--threads T] [--frozen-weights fp32|bf16]
  Zero-shot pass@1 per set and per N (pass@K with --samples), free and/or constrained decoding,
  printed beside the paper's Table 2. --mode: free, constrained, both (the default: free,constrained),
  their beam-search forms with K beams (free-beam4, constrained-beam4), or a comma-separated list; --out writes records.jsonl (one per response), scores.json, table.txt.
  With --adapter, --frozen-weights bf16 keeps the base model's matrices in bf16 (half their memory).
  Sets: ${benchmarkSets.map((s) => s.id).join(', ')}.`;

export async function evalCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('eval', argv, {
    model: { type: 'string' },
    adapter: { type: 'string' },
    'frozen-weights': { type: 'string' },
    sets: { type: 'string' },
    limit: { type: 'string' },
    samples: { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    seed: { type: 'string' },
    mode: { type: 'string' },
    'batch-size': { type: 'string' },
    'max-new-tokens': { type: 'string' },
    out: { type: 'string' },
    device: { type: 'string' },
    threads: { type: 'string' },
  });
  if (!flags.model) throw new CliError('puzzle-llama eval: --model DIR is required');
  const mode = flags.mode ?? 'both';
  const modes = (mode === 'both' ? 'free,constrained' : mode).split(',').map((m) => m.trim()) as DecodingMode[];
  for (const m of modes) {
    try {
      parseDecodingMode(m);
    } catch (err) {
      throw new CliError(`puzzle-llama eval: --mode: ${(err as Error).message}, or both`);
    }
  }
  const temperature = flags.temperature === undefined ? undefined : Number(flags.temperature);
  if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0)) {
    throw new CliError(`puzzle-llama eval: --temperature must be a number ≥ 0, got '${flags.temperature}'`);
  }
  const device = flags.device ?? 'auto';
  if (!['auto', 'cpu', 'cuda'].includes(device)) throw new CliError(`puzzle-llama eval: --device must be auto, cpu or cuda, got '${device}'`);
  const frozenWeights = flags['frozen-weights'];
  if (frozenWeights !== undefined && frozenWeights !== 'fp32' && frozenWeights !== 'bf16') {
    throw new CliError(`puzzle-llama eval: --frozen-weights must be fp32 or bf16, got '${frozenWeights}'`);
  }
  if (frozenWeights === 'bf16' && !flags.adapter) {
    throw new CliError('puzzle-llama eval: --frozen-weights bf16 needs --adapter (a model alone has no LoRA; its weights load as f32)');
  }
  let progress: ReturnType<typeof createProgress> | null = null;
  try {
    const report = await evaluate({
      model: flags.model,
      adapter: flags.adapter,
      sets: flags.sets?.split(',').map((s) => s.trim()),
      limit: flags.limit === undefined ? undefined : intFlag('eval', 'limit', flags.limit, 1, 1),
      samples: intFlag('eval', 'samples', flags.samples, 1, 1, 1000),
      temperature,
      topK: intFlag('eval', 'top-k', flags['top-k'], 0, 0),
      seed: intFlag('eval', 'seed', flags.seed, 1234, 0),
      modes,
      batchSize: intFlag('eval', 'batch-size', flags['batch-size'], 32, 1, 4096),
      maxNewTokens: intFlag('eval', 'max-new-tokens', flags['max-new-tokens'], 200, 1, 100_000),
      out: flags.out,
      device: device as 'auto' | 'cpu' | 'cuda',
      threads: flags.threads === undefined ? undefined : intFlag('eval', 'threads', flags.threads, 1, 1, 1024),
      frozenWeights: frozenWeights as 'fp32' | 'bf16' | undefined,
      onProgress: (done, total) => (progress ??= createProgress({ label: 'eval', total, stream: io.stderr })).update(done, 'responses'),
    });
    (progress ?? createProgress({ label: 'eval', total: 0, stream: io.stderr })).finish(`eval: ${report.records.length} responses`);
    io.stdout.write(report.table + '\n' + (report.files.length ? `wrote ${report.files.join(', ')}\n` : ''));
    return 0;
  } catch (err) {
    if (err instanceof CliError) throw err; // bad flags: already prefixed, exit status 2 as elsewhere
    throw new CliError(`puzzle-llama eval: ${(err as Error).message}`, 1);
  }
}
