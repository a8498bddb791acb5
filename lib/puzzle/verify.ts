// The exact verifier of docs/ARCHITECTURE.md ("The puzzle and the verifier"): replays a response's steps over the candidates as a multiset.
// It never throws on any response text; every failure carries one reason from VERDICT_REASONS.
import { intToString, isInt, norm, type Int } from './int.js';
import { MAX_INTEGER_DIGITS, parseResponse } from './format.js';
import { applyOp } from './synthesize.js';
import type { Puzzle } from './types.js';

/** Every reason a response can fail, in the order the checks run. */
export const VERDICT_REASONS = {
  'malformed-input': 'the puzzle record itself is invalid (missing or non-integer numbers or target, fewer than 2 numbers)',
  'empty-response': 'the response is empty or only white space',
  'parse-error': 'a step is not of the form "a op b=c" with integers a, b, c and op one of + - * /',
  'too-many-steps': 'more than N−1 steps',
  'operand-not-available': 'a step uses a number that is neither an unused candidate nor an unused earlier result',
  'division-by-zero': 'a step divides by zero',
  'wrong-result': 'a step states a result that its arithmetic (floor division for /) does not give',
  'numbers-left-unused': 'fewer than N−1 steps: some numbers were never used',
  'final-value-differs': 'every step is valid but the last result is not the target',
} as const;

export type VerdictReason = keyof typeof VERDICT_REASONS;

export interface Verdict {
  ok: boolean;
  /** Null when ok; otherwise one of VERDICT_REASONS' keys. */
  reason: VerdictReason | null;
  /** A human-readable account of the failure (which step, which number). */
  detail: string | null;
  /** The 0-based step where the failure was found, when it is about one step. */
  step: number | null;
}

const OK: Verdict = { ok: true, reason: null, detail: null, step: null };

function fail(reason: VerdictReason, detail: string, step: number | null = null): Verdict {
  return { ok: false, reason, detail, step };
}

/** Checks that a puzzle is well formed; returns a message naming the bad field, or null. */
export function checkPuzzle(puzzle: unknown): string | null {
  if (typeof puzzle !== 'object' || puzzle === null) return 'the puzzle must be an object with numbers and target';
  const p = puzzle as Partial<Puzzle>;
  if (!Array.isArray(p.numbers)) return '"numbers" must be an array of integers';
  if (p.numbers.length < 2) return `"numbers" must hold at least 2 integers, got ${p.numbers.length}`;
  const bad = p.numbers.findIndex((x) => !isInt(x));
  if (bad >= 0) return `"numbers"[${bad}] must be an integer, got ${String(p.numbers[bad])}`;
  if (!isInt(p.target)) return `"target" must be an integer, got ${String(p.target)}`;
  return null;
}

/** The puzzle with every integer in canonical form (1n becomes 1), so values compare with ===. */
export function canonicalPuzzle(puzzle: Puzzle): Puzzle {
  return { numbers: puzzle.numbers.map(norm), target: norm(puzzle.target) };
}

/** Judges `response` as a solution of `puzzle`. */
export function verify(input: Puzzle, response: unknown): Verdict {
  const problem = checkPuzzle(input);
  if (problem) return fail('malformed-input', problem);
  const puzzle = canonicalPuzzle(input);
  if (typeof response !== 'string') return fail('malformed-input', `the response must be a string, got ${response === null ? 'null' : typeof response}`);
  if (response.trim() === '') return fail('empty-response', 'the response is empty');

  const parsed = parseResponse(response, digitBudget(puzzle));
  if (!parsed.ok) return fail('parse-error', parsed.error, parsed.stepIndex);
  const steps = parsed.steps;
  const expected = puzzle.numbers.length - 1;
  if (steps.length > expected) {
    return fail('too-many-steps', `${steps.length} steps for ${puzzle.numbers.length} numbers; expected ${expected}`);
  }

  const available = new Map<Int, number>();
  for (const x of puzzle.numbers) available.set(x, (available.get(x) ?? 0) + 1);
  const take = (x: Int): boolean => {
    const c = available.get(x);
    if (!c) return false;
    if (c === 1) available.delete(x);
    else available.set(x, c - 1);
    return true;
  };

  let last: Int = puzzle.numbers[0];
  for (let i = 0; i < steps.length; i++) {
    const { a, op, b, result } = steps[i];
    const where = `step ${i + 1} (${intToString(a)}${op}${intToString(b)}=${intToString(result)})`;
    if (!take(a)) return fail('operand-not-available', `${where}: ${intToString(a)} is not available (${describe(available)})`, i);
    if (!take(b)) return fail('operand-not-available', `${where}: ${intToString(b)} is not available (${describe(available)})`, i);
    const value = applyOp(a, op, b);
    if (value === null) return fail('division-by-zero', `${where}: division by zero`, i);
    if (value !== result) return fail('wrong-result', `${where}: ${intToString(a)}${op}${intToString(b)} is ${intToString(value)}`, i);
    available.set(result, (available.get(result) ?? 0) + 1);
    last = result;
  }
  if (steps.length < expected) {
    return fail('numbers-left-unused', `${steps.length} steps for ${puzzle.numbers.length} numbers leave ${describe(available)} unused`);
  }
  if (last !== puzzle.target) {
    return fail('final-value-differs', `the last result is ${intToString(last)}, the target is ${intToString(puzzle.target)}`);
  }
  return OK;
}

/**
 * The longest number a valid step of this puzzle can hold: every intermediate value v has
 * |v| ≤ Π(|x| + 1) − 1, at most Σ(digits(|x|) + 1) digits, plus a sign (never below MAX_INTEGER_DIGITS,
 * so that what solve() answers for huge puzzles always parses).
 */
function digitBudget(puzzle: Puzzle): number {
  let digits = 1;
  for (const x of puzzle.numbers) digits += intToString(x).replace('-', '').length + 1;
  return Math.max(MAX_INTEGER_DIGITS, digits);
}

function describe(available: Map<Int, number>): string {
  const items: string[] = [];
  for (const [x, c] of available) for (let k = 0; k < c && items.length < 12; k++) items.push(intToString(x));
  return items.length ? `available: ${items.join(', ')}` : 'nothing is available';
}
