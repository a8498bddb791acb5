// `puzzle-llama datasets`: writes the fixed evaluation sets (the same bytes as the shipped data/ files).
import { makeDir } from '../../io/make-dir.js';
import { join } from 'node:path';
import { benchmarkSetText, benchmarkSets, generateBenchmarkSets } from '../../puzzle/benchmark-sets.js';
import { parseFlags } from '../args.js';
import { CliError } from '../errors.js';
import { openTextSink, type CliIo } from '../io.js';

export const datasetsHelp = `puzzle-llama datasets --out DIR
  Writes the evaluation sets as DIR/<id>.jsonl: ${benchmarkSets.map((s) => s.id).join(', ')}.`;

export async function datasetsCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('datasets', argv, { out: { type: 'string' } });
  if (!flags.out) throw new CliError('puzzle-llama datasets: --out DIR is required');
  try {
    makeDir(flags.out);
  } catch (err) {
    throw new CliError(`puzzle-llama datasets: cannot create --out '${flags.out}': ${(err as Error).message}`);
  }
  const sets = generateBenchmarkSets();
  for (const set of benchmarkSets) {
    const puzzles = sets.get(set.id) ?? [];
    const path = join(flags.out, `${set.id}.jsonl`);
    const sink = openTextSink(path, io);
    await sink.write(benchmarkSetText(puzzles));
    await sink.close();
    io.stderr.write(`datasets: ${set.id.padEnd(12)} ${String(puzzles.length).padStart(5)} puzzles (${set.description}) -> ${path}\n`);
  }
  return 0;
}
