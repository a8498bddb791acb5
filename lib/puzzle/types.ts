// The puzzle's data: candidates, target, and the steps of a solution.
import type { Int } from './int.js';

export type Op = '+' | '-' | '*' | '/';
export const OPS: readonly Op[] = ['+', '-', '*', '/'];

/** One binary step `a op b = result`. */
export interface Step {
  a: Int;
  op: Op;
  b: Int;
  result: Int;
}

/** N candidate integers and the target they must reach in N−1 steps. */
export interface Puzzle {
  numbers: Int[];
  target: Int;
}

/** A puzzle with one known solution (every synthesized puzzle has one). */
export interface SolvedPuzzle extends Puzzle {
  steps: Step[];
}
