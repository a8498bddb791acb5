// The paper's text format: prompt "34, 18, 31: -110" and response "31-34=-3, 19+41=60, …".
import { parseInt10, type Int } from './int.js';
import type { Op, Puzzle, Step } from './types.js';

// Template literals write numbers and bigints alike in plain decimal.
export function formatPrompt(puzzle: Puzzle): string {
  let text = '';
  for (let i = 0; i < puzzle.numbers.length; i++) text += (i ? ', ' : '') + `${puzzle.numbers[i]}`;
  return `${text}: ${puzzle.target}`;
}

export function formatStep(step: Step): string {
  return `${step.a}${step.op}${step.b}=${step.result}`;
}

export function formatResponse(steps: readonly Step[]): string {
  let text = '';
  for (let i = 0; i < steps.length; i++) text += (i ? ', ' : '') + formatStep(steps[i]);
  return text;
}

/** Longest integer literal (in characters) the parsers accept; longer text is not a puzzle number. */
export const MAX_INTEGER_DIGITS = 2000;

const PROMPT = /^\s*(-?\d+(?:\s*,\s*-?\d+)*)\s*:\s*(-?\d+)\s*$/;

/** Reads a prompt back into a puzzle; null when the text is not a prompt. */
export function parsePrompt(text: string): Puzzle | null {
  const m = PROMPT.exec(text);
  if (!m) return null;
  const parts = m[1].split(',').map((s) => s.trim());
  if (parts.some((p) => p.length > MAX_INTEGER_DIGITS) || m[2].length > MAX_INTEGER_DIGITS) return null;
  const numbers = parts.map((p) => parseInt10(p) as Int);
  return { numbers, target: parseInt10(m[2]) as Int };
}

const STEP = /^\s*(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)\s*$/;

export type StepParse = { ok: true; step: Step } | { ok: false; error: string };

/** Reads one step `a op b=c` (spaces around tokens tolerated); numbers may have up to `maxDigits` characters. */
export function parseStep(text: string, maxDigits = MAX_INTEGER_DIGITS): StepParse {
  const m = STEP.exec(text);
  if (!m) return { ok: false, error: `not a step of the form "a op b=c": ${JSON.stringify(clip(text.trim()))}` };
  for (const token of [m[1], m[3], m[4]]) {
    if (token.length > maxDigits) {
      return { ok: false, error: `a number with ${token.length} characters is longer than ${maxDigits}` };
    }
  }
  return {
    ok: true,
    step: { a: parseInt10(m[1]) as Int, op: m[2] as Op, b: parseInt10(m[3]) as Int, result: parseInt10(m[4]) as Int },
  };
}

export type ResponseParse = { ok: true; steps: Step[] } | { ok: false; error: string; stepIndex: number };

/** Reads a whole response: steps separated by commas. */
export function parseResponse(text: string, maxDigits = MAX_INTEGER_DIGITS): ResponseParse {
  const pieces = text.split(',');
  const steps: Step[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const parsed = parseStep(pieces[i], maxDigits);
    if (!parsed.ok) return { ok: false, error: `step ${i + 1}: ${parsed.error}`, stepIndex: i };
    steps.push(parsed.step);
  }
  return { ok: true, steps };
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}
