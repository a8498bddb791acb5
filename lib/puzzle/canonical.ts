// Canonical solutions: the shortest "core" that reaches the target from one, two or three candidates, then
// the other candidates folded to 0 and added. A solution of this shape is one a small model can learn to
// write left to right; the synthetic chain of Algorithm 1 is a random walk that it cannot. Written out in
// docs/ARCHITECTURE.md ("Canonical solutions").
import { floorDiv, type Int } from './int.js';
import { applyOp } from './synthesize.js';
import { puzzleHash } from './hash.js';
import type { Op, Puzzle, SolvedPuzzle, Step } from './types.js';

/** How many candidates the core uses: the target itself, one step over two, two steps over three. */
export type CanonicalShape = 'target' | 'pair' | 'triple';

export interface CanonicalSolution {
  shape: CanonicalShape;
  steps: Step[];
}

/**
 * Where and in which order the candidates outside the core are folded to 0: after the core in prompt order
 * (the default), after it in reverse prompt order, after it in an order shuffled per puzzle (fixed by the
 * puzzle itself), or before the core in prompt order (the core's value is then added to the 0 last).
 */
export type FoldOrder = 'prompt' | 'reverse' | 'shuffled' | 'first';
export const FOLD_ORDERS: readonly FoldOrder[] = ['prompt', 'reverse', 'shuffled', 'first'];

/** The operators in the order the search tries them (so that the first hit is the canonical one). */
const OP_ORDER: readonly Op[] = ['+', '-', '*', '/'];
const COMMUTES: Record<Op, boolean> = { '+': true, '*': true, '-': false, '/': false };

/**
 * The canonical solution of a puzzle with a core of at most `maxCore` candidates, or null when it has none.
 * Search order, which makes the answer unique: smaller cores first; candidates in prompt order; operators
 * + - * /; for - and / the prompt order of the operands before the reverse.
 */
export function canonicalSolution(puzzle: Puzzle, maxCore: 1 | 2 | 3 = 3, fold: FoldOrder = 'prompt'): CanonicalSolution | null {
  for (const solution of coreSolutions(puzzle, maxCore, fold)) return solution;
  return null;
}

/** Every solution of the smallest core size the puzzle has (at most `maxCore`), in the canonical search order. */
export function shortestCoreSolutions(puzzle: Puzzle, maxCore: 1 | 2 | 3 = 3, fold: FoldOrder = 'prompt'): CanonicalSolution[] {
  const all: CanonicalSolution[] = [];
  for (const solution of coreSolutions(puzzle, maxCore, fold)) {
    if (all.length > 0 && solution.shape !== all[0].shape) break;
    all.push(solution);
  }
  return all;
}

/** Core solutions in the canonical search order (smaller cores first), each finished by folding the others. */
function* coreSolutions(puzzle: Puzzle, maxCore: 1 | 2 | 3, fold: FoldOrder): Generator<CanonicalSolution> {
  const x = puzzle.numbers;
  const n = x.length;
  const target = puzzle.target;
  const order = foldOrder(puzzle, fold);
  const rest = (used: number[]) => order.filter((i) => !used.includes(i)).map((i) => x[i]);
  const finish = (core: Step[], value: Int, others: Int[]) => finishFolded(core, value, others, fold === 'first');

  for (let i = 0; i < n; i++) {
    if (x[i] !== target) continue;
    const done = finish([], target, rest([i]));
    if (done) yield { shape: 'target', steps: done };
    break; // another copy of the target leaves the same others
  }
  if (maxCore < 2) return;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      for (const op of OP_ORDER) {
        for (const [a, b] of orders(x[i], x[j], op)) {
          if (applyOp(a, op, b) !== target) continue;
          const done = finish([{ a, op, b, result: target }], target, rest([i, j]));
          if (done) yield { shape: 'pair', steps: done };
        }
      }
    }
  }
  if (maxCore < 3) return;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      for (const op1 of OP_ORDER) {
        for (const [a, b] of orders(x[i], x[j], op1)) {
          const r = applyOp(a, op1, b);
          if (r === null) continue;
          for (let k = 0; k < n; k++) {
            if (k === i || k === j) continue;
            for (const op2 of OP_ORDER) {
              for (const [c, d] of orders(r, x[k], op2)) {
                if (applyOp(c, op2, d) !== target) continue;
                const done = finish([{ a, op: op1, b, result: r }, { a: c, op: op2, b: d, result: target }], target, rest([i, j, k]));
                if (done) yield { shape: 'triple', steps: done };
              }
            }
          }
        }
      }
    }
  }
}

/** Operand orders to try: the given one, and the reverse for operators that do not commute. */
function orders(a: Int, b: Int, op: Op): Array<[Int, Int]> {
  return COMMUTES[op] || a === b ? [[a, b]] : [[a, b], [b, a]];
}

/** The candidates' indices in the order a fold visits them (the core's are skipped later). */
function foldOrder(puzzle: Puzzle, fold: FoldOrder): number[] {
  const order = puzzle.numbers.map((_, i) => i);
  if (fold === 'reverse') order.reverse();
  if (fold === 'shuffled') {
    // Fisher-Yates driven by an xorshift seeded with the puzzle's hash: the same puzzle, the same order
    let state = puzzleHash(puzzle, 0x5eed) || 1;
    for (let i = order.length - 1; i > 0; i--) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      const j = state % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
  }
  return order;
}

/**
 * The core's steps and the others folded to 0 (in the order given), the fold after the core or, with
 * `foldFirst`, before it, then the core's value plus 0; null when the others cannot be folded to 0 (a single
 * one left over, or a first pair with no zero between them).
 */
function finishFolded(core: Step[], value: Int, others: Int[], foldFirst: boolean): Step[] | null {
  if (others.length === 0) return core;
  if (others.length === 1) return null;
  const first = zeroStep(others[0], others[1]);
  if (!first) return null;
  const zeros = [first];
  for (let k = 2; k < others.length; k++) zeros.push({ a: 0, op: '*', b: others[k], result: 0 });
  const add: Step = { a: value, op: '+', b: 0, result: value };
  return foldFirst ? [...zeros, ...core, add] : [...core, ...zeros, add];
}

/** A step that makes 0 from two numbers: x-x, the smaller over the larger (floor division), or 0 times. */
function zeroStep(x: Int, y: Int): Step | null {
  if (x === y) return { a: x, op: '-', b: y, result: 0 };
  if (y !== 0 && floorDiv(x, y) === 0) return { a: x, op: '/', b: y, result: 0 };
  if (x !== 0 && floorDiv(y, x) === 0) return { a: y, op: '/', b: x, result: 0 };
  return null;
}

/**
 * Which solution a synthesized puzzle is answered with: Algorithm 1's chain; the canonical one (the chain
 * where there is none); the canonical one only; or one of the shortest cores picked at random (a pick fixed
 * by the puzzle itself, so a seed still gives the same file), only.
 */
export type ResponseKind = 'synthetic' | 'canonical' | 'canonical-only' | 'random-core-only';
export const RESPONSE_KINDS: readonly ResponseKind[] = ['synthetic', 'canonical', 'canonical-only', 'random-core-only'];

/** Whether a kind drops the puzzles that have no core solution (so a generator must draw until it has enough). */
export function dropsUnsolved(responses: ResponseKind): boolean {
  return responses === 'canonical-only' || responses === 'random-core-only';
}

/**
 * Puzzles with the steps of the chosen solution: 'canonical' keeps the synthetic chain where there is no
 * canonical solution (with a core of at most `maxCore` candidates); the '-only' kinds drop those puzzles.
 */
export function* answered(puzzles: Iterable<SolvedPuzzle>, responses: ResponseKind, maxCore: 1 | 2 | 3 = 3, fold: FoldOrder = 'prompt'): Generator<SolvedPuzzle> {
  for (const p of puzzles) {
    if (responses === 'synthetic') {
      yield p;
      continue;
    }
    if (responses === 'random-core-only') {
      const all = shortestCoreSolutions(p, maxCore, fold);
      if (all.length > 0) yield { numbers: p.numbers, target: p.target, steps: all[puzzleHash(p) % all.length].steps };
      continue;
    }
    const canonical = canonicalSolution(p, maxCore, fold);
    if (canonical) yield { numbers: p.numbers, target: p.target, steps: canonical.steps };
    else if (responses === 'canonical') yield p;
  }
}
