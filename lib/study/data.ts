// A study arm's training data as a JSONL file: synthesized (never an evaluation puzzle), answered with the
// chosen solution, and ordered (as drawn, by N, or easiest solution shape first). Arms that share a data
// spec share the file; a file already written is reused, so a study can be continued.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { benchmarkPuzzles } from '../puzzle/benchmark-sets.js';
import { answered, canonicalSolution, dropsUnsolved } from '../puzzle/canonical.js';
import { puzzleToJsonLine } from '../puzzle/jsonl.js';
import { synthesize } from '../puzzle/synthesize.js';
import type { SolvedPuzzle } from '../puzzle/types.js';
import type { ArmData } from './study.js';

const SHAPE_RANK: Record<string, number> = { target: 0, pair: 1, triple: 2 };

/** The file name a data spec is kept under. */
export function dataFileName(d: ArmData): string {
  return `train-${d.responses}-${d.order}-n${d.n.join('_')}-v${d.maxValue}-s${d.seed}-${d.count}.jsonl`;
}

/** Writes (once) and returns the path of an arm's training data in `dir`. */
export function armDataFile(dir: string, d: ArmData): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, dataFileName(d));
  if (existsSync(path)) return path;
  const puzzles: SolvedPuzzle[] = [];
  const draws = dropsUnsolved(d.responses) ? Number.MAX_SAFE_INTEGER : d.count;
  for (const p of answered(synthesize({ n: d.n, maxValue: d.maxValue, count: draws, seed: d.seed, exclude: benchmarkPuzzles() }), d.responses)) {
    puzzles.push(p);
    if (puzzles.length === d.count) break;
  }
  // stable sorts: within a group the synthesizer's order stays
  if (d.order === 'by-n') puzzles.sort((a, b) => a.numbers.length - b.numbers.length);
  if (d.order === 'by-difficulty') {
    const rank = (p: SolvedPuzzle) => SHAPE_RANK[canonicalSolution(p)?.shape ?? ''] ?? 3;
    const ranked = puzzles.map((p) => ({ p, r: rank(p) }));
    ranked.sort((a, b) => a.r - b.r);
    puzzles.splice(0, puzzles.length, ...ranked.map((x) => x.p));
  }
  writeFileAtomic(path, puzzles.map((p) => puzzleToJsonLine(p) + '\n').join(''));
  return path;
}

/** A generated evaluation set for a chain length no shipped set covers (V 60), written once. */
export function generatedSetFile(dir: string, n: number, count: number, seed: number): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `eval-n${n}-v60-s${seed}-${count}.jsonl`);
  if (existsSync(path)) return path;
  const lines: string[] = [];
  for (const p of synthesize({ n, maxValue: 60, count, seed, exclude: benchmarkPuzzles(), unique: true })) lines.push(puzzleToJsonLine(p) + '\n');
  writeFileAtomic(path, lines.join(''));
  return path;
}
