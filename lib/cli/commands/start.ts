// `npm start` / `puzzle-llama start`: the main job. Today it runs the puzzle pipeline end to end:
// synthesize a training set (never touching the evaluation sets), verify all of it, and solve a sample
// of every evaluation set with the exact solver; training and evaluation join as they land.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { benchmarkSets, loadBenchmarkSet } from '../../puzzle/benchmark-sets.js';
import { parsePuzzleLine, readLines } from '../../puzzle/jsonl.js';
import { solve } from '../../puzzle/solve.js';
import { verify } from '../../puzzle/verify.js';
import { intFlag, parseFlags } from '../args.js';
import type { CliIo } from '../io.js';
import { createProgress } from '../progress.js';
import { synthCommand } from './synth.js';

export const startHelp = `puzzle-llama start [--out DIR] [--count N] [--sample K]
  The main job: synthesize N training puzzles into DIR (default runs/main), verify them, and solve K puzzles
  of each evaluation set exactly, printing a summary table.`;

export async function startCommand(argv: string[], io: CliIo): Promise<number> {
  const flags = parseFlags('start', argv, { out: { type: 'string' }, count: { type: 'string' }, sample: { type: 'string' } });
  const dir = flags.out ?? join('runs', 'main');
  const count = intFlag('start', 'count', flags.count, 200_000, 1);
  const sample = intFlag('start', 'sample', flags.sample, 20, 1, 3000);
  mkdirSync(dir, { recursive: true });
  const trainPath = join(dir, 'train.jsonl');

  io.stderr.write(`[1/3] synthesizing ${count.toLocaleString('en-US')} training puzzles (V 60, N 5,6,7) -> ${trainPath}\n`);
  const code = await synthCommand(['--count', String(count), '--seed', '1234', '--out', trainPath], io);
  if (code !== 0) return code;

  io.stderr.write(`[2/3] verifying every synthesized response\n`);
  const progress = createProgress({ label: 'verify', total: count, stream: io.stderr });
  let checked = 0;
  let bad = 0;
  for await (const { text } of readLines(trainPath)) {
    const parsed = parsePuzzleLine(text, ['response']);
    if (!parsed.ok || !verify(parsed.record, parsed.record.response).ok) bad++;
    if (++checked % 5000 === 0) progress.update(checked);
  }
  progress.finish(`verify: ${checked - bad}/${checked} synthesized responses verify`);

  io.stderr.write(`[3/3] solving ${sample} puzzles of each evaluation set exactly\n`);
  const rows: string[] = [];
  for (const set of benchmarkSets) {
    const all = loadBenchmarkSet(set.id);
    const k = Math.min(sample, all.length);
    const puzzles = Array.from({ length: k }, (_, i) => all[Math.floor((i * all.length) / k)]); // spread over every cell
    const t0 = performance.now();
    let solved = 0;
    for (const p of puzzles) if (solve(p).solvable) solved++;
    const ms = (performance.now() - t0) / puzzles.length;
    rows.push(`${set.id.padEnd(13)} ${set.description.padEnd(40)} ${`${solved}/${puzzles.length}`.padStart(7)} ${ms.toFixed(1).padStart(9)}`);
  }
  io.stdout.write(
    [
      '',
      `${'set'.padEnd(13)} ${'what'.padEnd(40)} ${'solved'.padStart(7)} ${'ms/puzzle'.padStart(9)}`,
      ...rows,
      '',
      `training data: ${trainPath} (${checked.toLocaleString('en-US')} puzzles, ${bad} failed verification)`,
      'model training and evaluation are not part of this build yet: `npm start` grows into synthesize -> train -> evaluate.',
      '',
    ].join('\n'),
  );
  return bad === 0 ? 0 : 1;
}
