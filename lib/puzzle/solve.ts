// An exact solver: finds a solution of a puzzle or proves that none exists.
//
// A solution is an expression tree over all N candidates. The solver splits the candidates into two
// groups A and B at the root, enumerates every value the smaller group A can make (all of them, for
// groups of up to SMALL numbers), and asks which values B must make for `a op b` to land in the target
// interval; that is again an interval (floor division turns exact targets into intervals), so B is
// solved recursively with the same question. Failed (group, interval) questions are remembered.
// The search is exponential in N: a time budget per puzzle bounds it, and running out answers
// { solvable: null, reason: 'timeout' } (neither a solution nor a proof).
import { abs, add, ceilDiv, cmp, floorDiv, intToString, max, min, mul, sub, type Int } from './int.js';
import { formatResponse } from './format.js';
import { applyOp } from './synthesize.js';
import { canonicalPuzzle, checkPuzzle } from './verify.js';
import type { Op, Puzzle, Step } from './types.js';

export interface Solution {
  /** null: the time budget ran out before a solution or a proof (see reason). */
  solvable: boolean | null;
  /** One solution's steps when solvable, else null. */
  steps: Step[] | null;
  /** The steps in the response format when solvable, else null. */
  response: string | null;
  /** Why solvable is null. */
  reason?: 'timeout';
}

export interface SolveOptions {
  /** The time budget in milliseconds (default 10 000; Infinity: none). */
  timeoutMs?: number;
}

export const DEFAULT_SOLVE_TIMEOUT_MS = 10_000;

class OutOfTime extends Error {}

/** Groups of at most this many numbers have all their reachable values enumerated. */
const SMALL = 4;

type Derivation = { leaf: number } | { op: Op; leftMask: number; left: Int; rightMask: number; right: Int };

interface Reach {
  sorted: Int[];
  how: Map<Int, Derivation>;
}

/** A found way to make `value` from the numbers in `mask`. */
type Plan = { mask: number; value: Int } | { op: Op; left: Plan; right: Plan; value: Int };

export function solve(input: Puzzle, options: SolveOptions = {}): Solution {
  const problem = checkPuzzle(input);
  if (problem) throw new TypeError(`solve(): ${problem}`);
  const timeoutMs = options?.timeoutMs ?? DEFAULT_SOLVE_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs <= 0) throw new RangeError(`solve(): timeoutMs must be a number > 0, got ${String(timeoutMs)}`);
  const puzzle = canonicalPuzzle(input);
  if (puzzle.numbers.length > 30) throw new RangeError(`solve(): at most 30 numbers, got ${puzzle.numbers.length}`);
  const solver = new Solver(puzzle.numbers, performance.now() + timeoutMs);
  const full = (1 << puzzle.numbers.length) - 1;
  let plan: Plan | null;
  try {
    plan = solver.solveRange(full, puzzle.target, puzzle.target);
  } catch (err) {
    if (err instanceof OutOfTime) return { solvable: null, steps: null, response: null, reason: 'timeout' };
    throw err;
  }
  if (!plan) return { solvable: false, steps: null, response: null };
  const steps: Step[] = [];
  solver.emit(plan, steps);
  return { solvable: true, steps, response: formatResponse(steps) };
}

class Solver {
  private readonly reachCache = new Map<number, Reach>();
  private readonly boundCache = new Map<number, Int>();
  private readonly failed = new Set<string>();

  private ticks = 0;

  constructor(
    private readonly values: readonly Int[],
    private readonly deadline: number,
  ) {}

  /** Counts work; every 4096 units, gives up once the deadline has passed. */
  private tick(): void {
    if ((++this.ticks & 4095) === 0 && performance.now() > this.deadline) throw new OutOfTime();
  }

  /** Some value in [lo, hi] made from exactly the numbers in `mask`, or null when there is none. */
  solveRange(mask: number, lo: Int, hi: Int): Plan | null {
    this.tick();
    const size = popcount(mask);
    if (size <= SMALL) {
      const reach = this.reachable(mask);
      const i = lowerBound(reach.sorted, lo);
      return i < reach.sorted.length && reach.sorted[i] <= hi ? { mask, value: reach.sorted[i] } : null;
    }
    const bound = this.bound(mask);
    lo = max(lo, -bound as Int);
    hi = min(hi, bound);
    if (lo > hi) return null;
    const key = `${mask}|${intToString(lo)}|${intToString(hi)}`;
    if (this.failed.has(key)) return null;

    const lowest = mask & -mask;
    for (let s = 1; 2 * s <= size; s++) {
      const seen = new Set<string>();
      for (const a of subsetsOfSize(mask, s)) {
        if (2 * s === size && !(a & lowest)) continue; // the same split seen from the other side
        const signature = this.signature(a);
        if (seen.has(signature)) continue; // equal values in another order: the same question
        seen.add(signature);
        const found = this.splitAt(a, mask ^ a, lo, hi);
        if (found) return found;
      }
    }
    this.failed.add(key);
    return null;
  }

  /** Tries every value of group A (enumerated) against group B (solved for an interval). */
  private splitAt(maskA: number, maskB: number, lo: Int, hi: Int): Plan | null {
    const reachA = this.reachable(maskA);
    const boundB = this.bound(maskB);
    for (const a of reachA.sorted) {
      const leaf: Plan = { mask: maskA, value: a };
      let b: Plan | null;
      // a + b
      if ((b = this.solveRange(maskB, sub(lo, a), sub(hi, a)))) return node('+', leaf, b);
      // a − b
      if ((b = this.solveRange(maskB, sub(a, hi), sub(a, lo)))) return node('-', leaf, b);
      // b − a
      if ((b = this.solveRange(maskB, add(lo, a), add(hi, a)))) return node('-', b, leaf);
      // a · b
      if (a === 0) {
        if (lo <= 0 && hi >= 0 && (b = this.solveRange(maskB, -boundB as Int, boundB))) return node('*', leaf, b);
      } else if (a > 0) {
        if ((b = this.solveRange(maskB, ceilDiv(lo, a), floorDiv(hi, a)))) return node('*', leaf, b);
      } else if ((b = this.solveRange(maskB, ceilDiv(hi, a), floorDiv(lo, a)))) return node('*', leaf, b);
      // b / a (floor)
      if (a > 0) {
        if ((b = this.solveRange(maskB, mul(lo, a), sub(add(mul(hi, a), a), 1)))) return node('/', b, leaf);
      } else if (a < 0) {
        if ((b = this.solveRange(maskB, add(add(mul(hi, a), a), 1), mul(lo, a)))) return node('/', b, leaf);
      }
      // a / b (floor): b > 0 and b < 0 give one interval each
      for (const [bLo, bHi] of divisorIntervals(a, lo, hi, boundB)) {
        if ((b = this.solveRange(maskB, bLo, bHi))) return node('/', leaf, b);
      }
    }
    return null;
  }

  /** Every value the numbers in `mask` can make, with one way to make each. */
  private reachable(mask: number): Reach {
    const cached = this.reachCache.get(mask);
    if (cached) return cached;
    const how = new Map<Int, Derivation>();
    if (popcount(mask) === 1) {
      const index = 31 - Math.clz32(mask);
      how.set(this.values[index], { leaf: index });
    } else {
      const lowest = mask & -mask;
      for (let left = (mask - 1) & mask; left > 0; left = (left - 1) & mask) {
        if (!(left & lowest)) continue; // each unordered split once
        const right = mask ^ left;
        const ra = this.reachable(left).sorted;
        const rb = this.reachable(right).sorted;
        for (const a of ra) {
          for (const b of rb) {
            this.tick();
            put(how, add(a, b), '+', left, a, right, b);
            put(how, mul(a, b), '*', left, a, right, b);
            put(how, sub(a, b), '-', left, a, right, b);
            put(how, sub(b, a), '-', right, b, left, a);
            if (b !== 0) put(how, floorDiv(a, b), '/', left, a, right, b);
            if (a !== 0) put(how, floorDiv(b, a), '/', right, b, left, a);
          }
        }
      }
    }
    const reach: Reach = { sorted: [...how.keys()].sort(cmp), how };
    this.reachCache.set(mask, reach);
    return reach;
  }

  /** An upper bound on |value| for the numbers in `mask`: Π(|x| + 1) − 1. */
  private bound(mask: number): Int {
    let b = this.boundCache.get(mask);
    if (b === undefined) {
      let p: Int = 1;
      for (let m = mask; m; m &= m - 1) p = mul(p, add(abs(this.values[31 - Math.clz32(m & -m)]), 1));
      b = sub(p, 1);
      this.boundCache.set(mask, b);
    }
    return b;
  }

  private signature(mask: number): string {
    const xs: Int[] = [];
    for (let m = mask; m; m &= m - 1) xs.push(this.values[31 - Math.clz32(m & -m)]);
    return xs.sort(cmp).map(intToString).join(',');
  }

  /** Appends the steps of a plan, operands before the step that uses them. */
  emit(plan: Plan, steps: Step[]): void {
    if ('mask' in plan) {
      this.emitReached(plan.mask, plan.value, steps);
      return;
    }
    this.emit(plan.left, steps);
    this.emit(plan.right, steps);
    steps.push({ a: plan.left.value, op: plan.op, b: plan.right.value, result: plan.value });
  }

  private emitReached(mask: number, value: Int, steps: Step[]): void {
    const d = this.reachable(mask).how.get(value);
    if (!d) throw new Error(`solve(): internal error: no derivation of ${intToString(value)} for mask ${mask}`);
    if ('leaf' in d) return;
    this.emitReached(d.leftMask, d.left, steps);
    this.emitReached(d.rightMask, d.right, steps);
    steps.push({ a: d.left, op: d.op, b: d.right, result: value });
  }
}

function node(op: Op, left: Plan, right: Plan): Plan {
  return { op, left, right, value: applyOp(left.value, op, right.value) as Int };
}

function put(how: Map<Int, Derivation>, value: Int, op: Op, leftMask: number, left: Int, rightMask: number, right: Int): void {
  if (!how.has(value)) how.set(value, { op, leftMask, left, rightMask, right });
}

/**
 * The divisors b with floor(a / b) in [lo, hi] and 1 ≤ |b| ≤ bound, as at most two intervals
 * (one of positive b, one of negative b).
 */
export function divisorIntervals(a: Int, lo: Int, hi: Int, bound: Int): Array<[Int, Int]> {
  const out: Array<[Int, Int]> = [];
  const positive = positiveDivisors(a, lo, hi, bound);
  if (positive) out.push(positive);
  // floor(a / b) for b < 0 is floor((−a) / (−b)) with −b > 0
  const negative = positiveDivisors(sub(0, a), lo, hi, bound);
  if (negative) out.push([sub(0, negative[1]), sub(0, negative[0])]);
  return out;
}

/** The b in [1, bound] with lo ≤ floor(a / b) ≤ hi, i.e. lo·b ≤ a < (hi + 1)·b; null when none. */
function positiveDivisors(a: Int, lo: Int, hi: Int, bound: Int): [Int, Int] | null {
  let from: Int = 1;
  let to: Int = bound;
  if (lo > 0) to = min(to, floorDiv(a, lo));
  else if (lo < 0) from = max(from, ceilDiv(a, lo));
  else if (a < 0) return null;
  const h = add(hi, 1);
  if (h > 0) from = max(from, add(floorDiv(a, h), 1));
  else if (h < 0) to = min(to, sub(ceilDiv(a, h), 1));
  else if (a >= 0) return null;
  return from <= to ? [from, to] : null;
}

function popcount(x: number): number {
  let c = 0;
  for (; x; x &= x - 1) c++;
  return c;
}

function* subsetsOfSize(mask: number, size: number): Generator<number> {
  const bits: number[] = [];
  for (let m = mask; m; m &= m - 1) bits.push(m & -m);
  const pick: number[] = [];
  function* rec(start: number, acc: number): Generator<number> {
    if (pick.length === size) {
      yield acc;
      return;
    }
    for (let i = start; i <= bits.length - (size - pick.length); i++) {
      pick.push(i);
      yield* rec(i + 1, acc | bits[i]);
      pick.pop();
    }
  }
  yield* rec(0, 0);
}

function lowerBound(sorted: readonly Int[], x: Int): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
