// Algorithm 1 of the paper: draw N candidates from [1, V], combine random pairs with random operators
// until one number is left; that number is the target and the recorded steps are a solution.
import { add, floorDiv, mul, sub, type Int } from './int.js';
import { PuzzleSet } from './key.js';
import { Rng } from './rng.js';
import { OPS, type Op, type SolvedPuzzle, type Step } from './types.js';

export interface SynthesizeOptions {
  /** Candidates per puzzle: one N, or several used in turn (puzzle i gets n[i mod length]). */
  n: number | readonly number[];
  /** V: candidates are drawn uniformly from [1, V]. */
  maxValue: number;
  /** How many puzzles to yield. */
  count: number;
  /** Seed of the generator (default 1); the same options and seed give the same puzzles. */
  seed?: number;
  /** Puzzles that must not be produced (by identity: sorted candidates plus target), e.g. the evaluation sets. */
  exclude?: PuzzleSet;
  /** Never yield the same puzzle twice (keeps every key: memory grows with count). */
  unique?: boolean;
}

/** How many excluded or repeated draws in a row before the space is declared exhausted. */
const MAX_REJECTIONS_IN_A_ROW = 100_000;

export function applyOp(a: Int, op: Op, b: Int): Int | null {
  switch (op) {
    case '+':
      return add(a, b);
    case '-':
      return sub(a, b);
    case '*':
      return mul(a, b);
    case '/':
      return b === 0 ? null : floorDiv(a, b);
  }
}

/** Checks synthesis options and returns the list of N; throws naming the bad field. */
export function validateSynthesizeOptions(options: SynthesizeOptions): number[] {
  const ns = typeof options.n === 'number' ? [options.n] : [...options.n];
  if (ns.length === 0) throw new RangeError('synthesize(): n must name at least one candidate count');
  for (const n of ns) {
    if (!Number.isInteger(n) || n < 2 || n > 64) {
      throw new RangeError(`synthesize(): n must be an integer in [2, 64], got ${n}`);
    }
  }
  const v = options.maxValue;
  if (!Number.isInteger(v) || v < 1 || v > 2 ** 32) {
    throw new RangeError(`synthesize(): maxValue must be an integer in [1, 2^32], got ${v}`);
  }
  if (!Number.isSafeInteger(options.count) || options.count < 0) {
    throw new RangeError(`synthesize(): count must be a non-negative integer, got ${options.count}`);
  }
  if (options.seed !== undefined && !Number.isSafeInteger(options.seed)) {
    throw new RangeError(`synthesize(): seed must be a safe integer, got ${options.seed}`);
  }
  return ns;
}

/** One puzzle with N candidates in [1, V], drawn from `rng`. */
export function synthesizeOne(rng: Rng, n: number, maxValue: number): SolvedPuzzle {
  const numbers: Int[] = new Array(n);
  for (let i = 0; i < n; i++) numbers[i] = 1 + rng.below(maxValue);
  const pool = numbers.slice();
  const steps: Step[] = [];
  while (pool.length > 1) {
    const m = pool.length;
    const i = rng.below(m);
    let j = rng.below(m - 1);
    if (j >= i) j++;
    const op = OPS[rng.below(4)];
    const result = applyOp(pool[i], op, pool[j]);
    if (result === null) continue; // a division by zero: draw the step again
    steps.push({ a: pool[i], op, b: pool[j], result });
    pool.splice(Math.max(i, j), 1);
    pool.splice(Math.min(i, j), 1);
    pool.push(result);
  }
  return { numbers, target: pool[0], steps };
}

/** Streams `count` puzzles; memory stays flat unless `unique` is set. */
export function* synthesize(options: SynthesizeOptions): Generator<SolvedPuzzle, void, undefined> {
  const ns = validateSynthesizeOptions(options);
  const rng = new Rng(options.seed ?? 1);
  const seen = options.unique ? new PuzzleSet() : null;
  const exclude = options.exclude;
  for (let k = 0; k < options.count; k++) {
    const n = ns[k % ns.length];
    let rejections = 0;
    for (;;) {
      const puzzle = synthesizeOne(rng, n, options.maxValue);
      if (exclude || seen) {
        if ((exclude && exclude.has(puzzle)) || (seen && !seen.add(puzzle))) {
          if (++rejections >= MAX_REJECTIONS_IN_A_ROW) {
            throw new Error(
              `synthesize(): ${rejections} draws in a row with n = ${n}, maxValue = ${options.maxValue} were excluded or ` +
                `repeated after ${k} puzzles; the puzzle space is too small for count = ${options.count}`,
            );
          }
          continue;
        }
      }
      yield puzzle;
      break;
    }
  }
}
