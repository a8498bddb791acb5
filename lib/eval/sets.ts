// What an evaluation set can be: one of the shipped sets (by id) or a user's JSONL file of puzzles (by path;
// each line needs "numbers" and "target", other fields are ignored). Read once, checked line by line.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { benchmarkSets, loadBenchmarkSet } from '../puzzle/benchmark-sets.js';
import { parsePuzzleLine } from '../puzzle/jsonl.js';
import type { Puzzle } from '../puzzle/types.js';

export interface EvalSet {
  /** The shipped set's id, or the file's path as given. */
  id: string;
  /** Whether it is one of the shipped sets (the paper's numbers sit beside those). */
  shipped: boolean;
  puzzles: Puzzle[];
}

/** A set spec names a file when it is not a shipped id and looks like a path (a / or a .jsonl ending). */
export function isSetFile(spec: string): boolean {
  return !benchmarkSets.some((s) => s.id === spec) && (spec.includes('/') || spec.includes('\\') || spec.endsWith('.jsonl'));
}

/** Loads a set by id or path; throws naming the set, the file and the line at fault. */
export function loadEvalSet(spec: string): EvalSet {
  if (typeof spec !== 'string' || spec === '') throw new TypeError(`evaluation set must be a set id or a JSONL path, got ${JSON.stringify(spec)}`);
  if (!isSetFile(spec)) {
    if (!benchmarkSets.some((s) => s.id === spec)) {
      throw new RangeError(`unknown evaluation set '${spec}'; known: ${benchmarkSets.map((s) => s.id).join(', ')}, or a path to a JSONL file of puzzles`);
    }
    return { id: spec, shipped: true, puzzles: loadBenchmarkSet(spec) };
  }
  if (!existsSync(spec)) throw new Error(`evaluation set file '${spec}' does not exist`);
  if (!statSync(spec).isFile()) throw new Error(`evaluation set '${spec}' is not a regular file`);
  const puzzles: Puzzle[] = [];
  readFileSync(spec, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      const parsed = parsePuzzleLine(line);
      if (!parsed.ok) throw new Error(`evaluation set ${spec}:${i + 1}: ${parsed.error}`);
      puzzles.push({ numbers: parsed.record.numbers, target: parsed.record.target });
    });
  if (puzzles.length === 0) throw new Error(`evaluation set file '${spec}' holds no puzzle`);
  return { id: spec, shipped: false, puzzles };
}
