// `puzzle-llama synth`: streams synthesized puzzles as JSONL, never one from the evaluation sets or --exclude files.
import { existsSync } from 'node:fs';
import { benchmarkPuzzles } from '../../puzzle/benchmark-sets.js';
import { puzzleToJsonLine, readPuzzleFile } from '../../puzzle/jsonl.js';
import { synthesize } from '../../puzzle/synthesize.js';
import { synthesizeJsonl } from '../../puzzle/synth-jsonl.js';
import { answered, dropsUnsolved, FOLD_ORDERS, RESPONSE_KINDS, type FoldOrder, type ResponseKind } from '../../puzzle/canonical.js';
import { intFlag, intListFlag, parseFlags } from '../args.js';
import { CliError } from '../errors.js';
import { openTextSink, type CliIo } from '../io.js';
import { createProgress } from '../progress.js';

export const synthHelp = `puzzle-llama synth --n 5,6,7 --max-value 60 --count 1000000 --seed 1 [--exclude FILE]…
                   [--responses synthetic|canonical|canonical-only|random-core-only] [--max-core 1|2|3]
                   [--fold prompt|reverse|shuffled|first] --out FILE|-
  Synthesizes puzzles with the paper's Algorithm 1 (N used in turn from --n), one JSONL record per line.
  --responses: the response is Algorithm 1's chain (synthetic, the default) or the canonical solution
  (the target from one to three candidates, the others folded to 0; the chain where there is none),
  canonical-only skips the puzzles without one; random-core-only answers with one of the shortest cores,
  picked at random (fixed per puzzle), and skips the puzzles without one. --max-core (default 3) bounds
  the canonical core: 2 keeps only the target itself or one pair. --fold: where the canonical solution folds
  the other candidates to 0: after the core in prompt order (the default), in reverse order, in an order
  shuffled per puzzle, or first, before the core.
  Puzzles of the shipped evaluation sets and of every --exclude file (JSONL with numbers and target) are never produced.`;

const LINES_PER_CHUNK = 4096;

export async function synthCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('synth', argv, {
    n: { type: 'string' },
    'max-value': { type: 'string' },
    count: { type: 'string' },
    seed: { type: 'string' },
    exclude: { type: 'string', multiple: true },
    out: { type: 'string' },
    responses: { type: 'string' },
    'max-core': { type: 'string' },
    fold: { type: 'string' },
  });
  const responses = (flags.responses ?? 'synthetic') as ResponseKind;
  if (!RESPONSE_KINDS.includes(responses)) throw new CliError(`puzzle-llama synth: --responses must be one of ${RESPONSE_KINDS.join(', ')}, got '${flags.responses}'`);
  const maxCore = intFlag('synth', 'max-core', flags['max-core'], 3, 1, 3) as 1 | 2 | 3;
  if (maxCore !== 3 && responses === 'synthetic') throw new CliError("puzzle-llama synth: --max-core bounds canonical cores; it needs --responses canonical, canonical-only or random-core-only");
  const fold = (flags.fold ?? 'prompt') as FoldOrder;
  if (!FOLD_ORDERS.includes(fold)) throw new CliError(`puzzle-llama synth: --fold must be one of ${FOLD_ORDERS.join(', ')}, got '${flags.fold}'`);
  if (fold !== 'prompt' && responses === 'synthetic') throw new CliError('puzzle-llama synth: --fold orders the canonical fold; it needs --responses canonical, canonical-only or random-core-only');
  const ns = intListFlag('synth', 'n', flags.n, [5, 6, 7], 2, 64);
  const maxValue = intFlag('synth', 'max-value', flags['max-value'], 60, 1, 2 ** 32);
  const count = intFlag('synth', 'count', flags.count, 1000, 0);
  const seed = intFlag('synth', 'seed', flags.seed, 1, -Number.MAX_SAFE_INTEGER);
  const out = flags.out ?? '-';

  const exclude = benchmarkPuzzles();
  for (const file of flags.exclude ?? []) {
    if (!existsSync(file)) throw new CliError(`puzzle-llama synth: --exclude file '${file}' does not exist`);
    let records;
    try {
      records = await readPuzzleFile(file);
    } catch (err) {
      throw new CliError(`puzzle-llama synth: --exclude ${(err as Error).message}`);
    }
    exclude.addAll(records);
  }

  const started = performance.now();
  const sink = openTextSink(out, io);
  const progress = out === '-' ? null : createProgress({ label: 'synth', total: count, stream: io.stderr, plainEvery: 0 });
  let written = 0;
  // the other response kinds go through answered(): puzzle objects, formatted line by line
  async function writeAnswered(): Promise<void> {
    let chunk: string[] = [];
    // the -only kinds skip puzzles: draw until `count` are written
    const draws = dropsUnsolved(responses) ? Number.MAX_SAFE_INTEGER : count;
    for (const puzzle of answered(synthesize({ n: ns, maxValue, count: draws, seed, exclude }), responses, maxCore, fold)) {
      if (written + chunk.length >= count) break;
      chunk.push(puzzleToJsonLine(puzzle));
      if (chunk.length === LINES_PER_CHUNK) {
        await sink.write(chunk.join('\n') + '\n');
        written += chunk.length;
        chunk = [];
        progress?.update(written);
      }
    }
    if (chunk.length) await sink.write(chunk.join('\n') + '\n');
    written += chunk.length;
    await sink.close();
  }
  try {
    if (responses === 'synthetic') {
      // the fast path: JSONL bytes straight from synthesis into one reusable buffer, written in large chunks
      for (const chunk of synthesizeJsonl({ n: ns, maxValue, count, seed, exclude })) {
        await sink.write(chunk.bytes);
        written += chunk.puzzles;
        progress?.update(written);
      }
      await sink.close();
    } else {
      await writeAnswered();
    }
  } catch (err) {
    sink.abort();
    throw err;
  }

  const seconds = (performance.now() - started) / 1000;
  const summary = `synth: ${written} puzzles (N ${ns.join(',')}, V ${maxValue}, seed ${seed}${responses === 'synthetic' ? '' : `, ${responses} responses`}) in ${seconds.toFixed(2)} s` + (out === '-' ? '' : ` -> ${out}`);
  if (progress) progress.finish(summary);
  else io.stderr.write(summary + '\n');
  return 0;
}
