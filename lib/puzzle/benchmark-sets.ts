// The fixed evaluation sets of the paper's Table 2 (plus longer chains), generated from fixed seeds and
// shipped as JSONL under data/. No puzzle appears twice across them, and training data excludes them all.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../io/package-root.js';
import { PuzzleSet } from './key.js';
import { parsePuzzleLine, puzzleToJsonLine } from './jsonl.js';
import { synthesize } from './synthesize.js';
import type { Puzzle, SolvedPuzzle } from './types.js';

export interface BenchmarkCell {
  /** Candidates per puzzle. */
  n: number;
  count: number;
  seed: number;
}

export interface BenchmarkSet {
  id: string;
  description: string;
  /** V: candidates are drawn from [1, V]. */
  maxValue: number;
  cells: BenchmarkCell[];
}

const BASE_SEED = 2_406_021_00; // from the paper's arXiv number, 2406.02100

function cells(ns: number[], count: number, offset: number): BenchmarkCell[] {
  return ns.map((n, i) => ({ n, count, seed: BASE_SEED + offset + i }));
}

/** The sets in generation order (order matters: later sets skip puzzles already taken by earlier ones). */
export const benchmarkSets: readonly BenchmarkSet[] = [
  { id: 'id', description: 'in-domain: V = 60, N = 5, 6, 7', maxValue: 60, cells: cells([5, 6, 7], 1000, 0) },
  { id: 'ood-num-100', description: 'numerical OOD: V = 100, N = 5, 6, 7', maxValue: 100, cells: cells([5, 6, 7], 1000, 10) },
  { id: 'ood-num-1000', description: 'numerical OOD: V = 1000, N = 5, 6, 7', maxValue: 1000, cells: cells([5, 6, 7], 1000, 20) },
  { id: 'ood-form', description: 'form OOD: V = 60, N = 8', maxValue: 60, cells: cells([8], 1000, 30) },
  { id: 'ood-form-10', description: 'longer chains: V = 60, N = 10', maxValue: 60, cells: cells([10], 500, 40) },
  { id: 'ood-form-12', description: 'longer chains: V = 60, N = 12', maxValue: 60, cells: cells([12], 500, 50) },
];

export function benchmarkSet(id: string): BenchmarkSet {
  const set = benchmarkSets.find((s) => s.id === id);
  if (!set) throw new RangeError(`unknown evaluation set '${id}'; known: ${benchmarkSets.map((s) => s.id).join(', ')}`);
  return set;
}

/** Generates every set from its seeds: a map from set id to its puzzles, cell by cell. */
export function generateBenchmarkSets(): Map<string, SolvedPuzzle[]> {
  const taken = new PuzzleSet();
  const out = new Map<string, SolvedPuzzle[]>();
  for (const set of benchmarkSets) {
    const puzzles: SolvedPuzzle[] = [];
    for (const cell of set.cells) {
      for (const p of synthesize({ n: cell.n, maxValue: set.maxValue, count: cell.count, seed: cell.seed, exclude: taken, unique: true })) {
        taken.add(p);
        puzzles.push(p);
      }
    }
    out.set(set.id, puzzles);
  }
  return out;
}

/** The JSONL text of a generated set, as shipped in data/<id>.jsonl. */
export function benchmarkSetText(puzzles: readonly SolvedPuzzle[]): string {
  return puzzles.map((p) => puzzleToJsonLine(p) + '\n').join('');
}

/** The shipped data folder (data/ in the package). */
export function dataDir(): string {
  return join(packageRoot(), 'data');
}

/** Reads a shipped set from data/<id>.jsonl (or from `dir`). */
export function loadBenchmarkSet(id: string, dir: string = dataDir()): Array<Puzzle & { prompt: string; response: string }> {
  benchmarkSet(id);
  const path = join(dir, `${id}.jsonl`);
  if (!existsSync(path)) throw new Error(`evaluation set '${id}' not found at ${path}; write it with \`puzzle-llama datasets --out ${dir}\``);
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: Array<Puzzle & { prompt: string; response: string }> = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    const parsed = parsePuzzleLine(line, ['prompt', 'response']);
    if (!parsed.ok) throw new Error(`${path}:${i + 1}: ${parsed.error}`);
    const r = parsed.record;
    out.push({ numbers: r.numbers, target: r.target, prompt: r.prompt as string, response: r.response as string });
  });
  return out;
}

/** Every puzzle of every shipped set: what training data must never contain. */
export function benchmarkPuzzles(dir: string = dataDir()): PuzzleSet {
  const set = new PuzzleSet();
  for (const s of benchmarkSets) set.addAll(loadBenchmarkSet(s.id, dir));
  return set;
}
