// Algorithm 1 of the paper: draw N candidates from [1, V], combine random pairs with random operators
// until one number is left; that number is the target and the recorded steps are a solution.
import { add, floorDiv, mul, sub, type Int } from './int.js';
import { candidatesHash, PuzzleSet } from './key.js';
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

/**
 * One puzzle with N candidates in [1, V], drawn from `rng`: the plain definition, exact (BigInt past 2^53) at
 * every step. The reference the fast path below is tested against; it draws the same numbers.
 */
export function synthesizeOneExact(rng: Rng, n: number, maxValue: number): SolvedPuzzle {
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

/**
 * The puzzle being drawn, in plain numbers: candidates, the pool of available numbers, and the steps so
 * far (operator as its index in OPS). Allocated once per stream, so a draw allocates nothing.
 */
export interface SynthScratch {
  numbers: Float64Array;
  pool: Float64Array;
  a: Float64Array;
  op: Uint8Array;
  b: Float64Array;
  result: Float64Array;
  /** Numbers in the pool. */
  poolSize: number;
  /** Steps recorded. */
  steps: number;
  /** When a draw stopped at a result past 2^53: the step's pool indices and operator, not yet applied. */
  pendingI: number;
  pendingJ: number;
  pendingOp: number;
}

export function createSynthScratch(): SynthScratch {
  return {
    numbers: new Float64Array(64),
    pool: new Float64Array(64),
    a: new Float64Array(63),
    op: new Uint8Array(63),
    b: new Float64Array(63),
    result: new Float64Array(63),
    poolSize: 0,
    steps: 0,
    pendingI: 0,
    pendingJ: 0,
    pendingOp: 0,
  };
}

/**
 * Algorithm 1 on plain numbers into `s`, with the same draws as synthesizeOneExact. True when every value
 * stayed a safe integer (the target is s.pool[0]); false at the first result past ±(2^53−1), with the pool
 * and steps as they were before that step and the step itself pending: finishExact() goes on from there.
 */
export function drawPlain(rng: Rng, n: number, maxValue: number, s: SynthScratch): boolean {
  const numbers = s.numbers;
  const pool = s.pool;
  for (let k = 0; k < n; k++) {
    const x = 1 + rng.below(maxValue);
    numbers[k] = x;
    pool[k] = x;
  }
  let m = n;
  let t = 0;
  while (m > 1) {
    const i = rng.below(m);
    let j = rng.below(m - 1);
    if (j >= i) j++;
    const op = rng.below(4);
    const a = pool[i];
    const b = pool[j];
    let r: number;
    if (op === 0) r = a + b;
    else if (op === 1) r = a - b;
    else if (op === 2) r = a * b;
    else {
      if (b === 0) continue; // a division by zero: draw the step again
      // floor division: for |a| < 2^53 the rounding of a / b never crosses an integer (a fraction of a
      // non-integer quotient is at least 1/|b| away from one), so the floor is exact
      r = Math.floor(a / b);
    }
    // a rounded sum or product past 2^53 is at least 2^53 in magnitude: this catches every inexact one
    if (!(r <= Number.MAX_SAFE_INTEGER && r >= -Number.MAX_SAFE_INTEGER)) {
      s.poolSize = m;
      s.steps = t;
      s.pendingI = i;
      s.pendingJ = j;
      s.pendingOp = op;
      return false;
    }
    if (r === 0) r = 0; // folds -0 into 0
    s.a[t] = a;
    s.op[t] = op;
    s.b[t] = b;
    s.result[t] = r;
    t++;
    // drop pool[i] and pool[j], keeping the order, then append r (as the exact path's splice, splice, push)
    const lo = i < j ? i : j;
    const hi = i < j ? j : i;
    for (let k = lo; k < hi - 1; k++) pool[k] = pool[k + 1];
    for (let k = hi - 1; k < m - 2; k++) pool[k] = pool[k + 2];
    pool[m - 2] = r;
    m--;
  }
  s.poolSize = 1;
  s.steps = t;
  return true;
}

/** The puzzle a successful drawPlain() left in `s`, as the objects synthesize() yields. */
export function puzzleFromScratch(s: SynthScratch, n: number): SolvedPuzzle {
  const numbers: Int[] = new Array(n);
  for (let k = 0; k < n; k++) numbers[k] = s.numbers[k];
  const steps: Step[] = new Array(s.steps);
  for (let t = 0; t < s.steps; t++) steps[t] = { a: s.a[t], op: OPS[s.op[t]], b: s.b[t], result: s.result[t] };
  return { numbers, target: s.pool[0], steps };
}

/** Finishes a puzzle whose drawPlain() stopped past 2^53: the pending step and the rest in exact integers. */
export function finishExact(rng: Rng, s: SynthScratch, n: number): SolvedPuzzle {
  const numbers: Int[] = new Array(n);
  for (let k = 0; k < n; k++) numbers[k] = s.numbers[k];
  const steps: Step[] = [];
  for (let t = 0; t < s.steps; t++) steps.push({ a: s.a[t], op: OPS[s.op[t]], b: s.b[t], result: s.result[t] });
  const pool: Int[] = [];
  for (let k = 0; k < s.poolSize; k++) pool.push(s.pool[k]);
  let i = s.pendingI;
  let j = s.pendingJ;
  let op = OPS[s.pendingOp];
  for (;;) {
    const result = applyOp(pool[i], op, pool[j]);
    if (result !== null) {
      steps.push({ a: pool[i], op, b: pool[j], result });
      pool.splice(Math.max(i, j), 1);
      pool.splice(Math.min(i, j), 1);
      pool.push(result);
    }
    const m = pool.length;
    if (m <= 1) break;
    i = rng.below(m);
    j = rng.below(m - 1);
    if (j >= i) j++;
    op = OPS[rng.below(4)];
  }
  return { numbers, target: pool[0], steps };
}

/** One puzzle with N candidates in [1, V], drawn from `rng` (plain numbers while they are safe, then exact). */
export function synthesizeOne(rng: Rng, n: number, maxValue: number, scratch: SynthScratch = createSynthScratch()): SolvedPuzzle {
  return drawPlain(rng, n, maxValue, scratch) ? puzzleFromScratch(scratch, n) : finishExact(rng, scratch, n);
}

/**
 * Draws the stream's puzzles one at a time, redrawing excluded (and, with `unique`, repeated) ones:
 * next(k) returns null when puzzle k is in `scratch` as plain numbers, or the puzzle itself when its numbers
 * passed 2^53 (or a set had to see it as an object).
 */
export interface PuzzleDrawer {
  ns: number[];
  scratch: SynthScratch;
  next(k: number): SolvedPuzzle | null;
}

export function createPuzzleDrawer(options: SynthesizeOptions): PuzzleDrawer {
  const ns = validateSynthesizeOptions(options);
  const rng = new Rng(options.seed ?? 1);
  const seen = options.unique ? new PuzzleSet() : null;
  const exclude = options.exclude ?? null;
  const { maxValue, count } = options;
  const scratch = createSynthScratch();
  const next = (k: number): SolvedPuzzle | null => {
    const n = ns[k % ns.length];
    let rejections = 0;
    for (;;) {
      let puzzle: SolvedPuzzle | null = null;
      if (!drawPlain(rng, n, maxValue, scratch)) puzzle = finishExact(rng, scratch, n);
      // the exclusion set is probed by hash first, so a plain puzzle becomes an object only on a hash match
      else if (seen || (exclude && exclude.mayHaveHash(candidatesHash(scratch.numbers, n, scratch.pool[0])))) {
        puzzle = puzzleFromScratch(scratch, n);
      }
      if (puzzle === null || !((exclude && exclude.has(puzzle)) || (seen && !seen.add(puzzle)))) return puzzle;
      if (++rejections >= MAX_REJECTIONS_IN_A_ROW) {
        throw new Error(
          `synthesize(): ${rejections} draws in a row with n = ${n}, maxValue = ${maxValue} were excluded or ` +
            `repeated after ${k} puzzles; the puzzle space is too small for count = ${count}`,
        );
      }
    }
  };
  return { ns, scratch, next };
}

/** Streams `count` puzzles; memory stays flat unless `unique` is set. */
export function* synthesize(options: SynthesizeOptions): Generator<SolvedPuzzle, void, undefined> {
  const drawer = createPuzzleDrawer(options);
  const { ns, scratch } = drawer;
  for (let k = 0; k < options.count; k++) {
    yield drawer.next(k) ?? puzzleFromScratch(scratch, ns[k % ns.length]);
  }
}
