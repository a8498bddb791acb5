// Puzzles as JSONL records: {"numbers":[…],"target":…,"prompt":"…","response":"…"}, integers beyond
// ±(2^53−1) written as decimal strings; reading takes both forms and names the field at fault.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { intFromJson, intToString, type Int } from './int.js';
import { formatPrompt, formatResponse } from './format.js';
import type { Puzzle, SolvedPuzzle } from './types.js';

/** A puzzle record as read from a JSONL line; extra fields are kept in `extra`. */
export interface PuzzleRecord extends Puzzle {
  prompt?: string;
  response?: string;
  extra: Record<string, unknown>;
}

function jsonInt(x: Int): string {
  return typeof x === 'number' ? String(x) : `"${intToString(x)}"`;
}

/** One JSONL line (without the newline) for a solved puzzle. Built by hand: this is the hot path of synth. */
export function puzzleToJsonLine(puzzle: SolvedPuzzle): string {
  let numbers = '';
  for (let i = 0; i < puzzle.numbers.length; i++) numbers += (i ? ',' : '') + jsonInt(puzzle.numbers[i]);
  // prompt and response hold only digits, signs, operators, commas, colons and spaces: nothing to escape
  return `{"numbers":[${numbers}],"target":${jsonInt(puzzle.target)},"prompt":"${formatPrompt(puzzle)}","response":"${formatResponse(puzzle.steps)}"}`;
}

export type RecordParse = { ok: true; record: PuzzleRecord } | { ok: false; error: string };

/** Parses and checks one JSONL line; `need` lists string fields that must be present. */
export function parsePuzzleLine(line: string, need: readonly ('response' | 'prompt')[] = []): RecordParse {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    return { ok: false, error: `not valid JSON (${(err as Error).message})` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: 'a line must be a JSON object with "numbers" and "target"' };
  }
  const obj = value as Record<string, unknown>;
  if (!Array.isArray(obj.numbers)) {
    return { ok: false, error: `"numbers" must be an array of integers, got ${describe(obj.numbers)}` };
  }
  if (obj.numbers.length < 2) return { ok: false, error: `"numbers" must hold at least 2 integers, got ${obj.numbers.length}` };
  const numbers: Int[] = [];
  for (let i = 0; i < obj.numbers.length; i++) {
    const x = intFromJson(obj.numbers[i], `"numbers"[${i}]`);
    if (typeof x === 'string') return { ok: false, error: x };
    numbers.push(x);
  }
  const target = intFromJson(obj.target, '"target"');
  if (typeof target === 'string') return { ok: false, error: target };
  for (const field of ['prompt', 'response'] as const) {
    if (obj[field] !== undefined && typeof obj[field] !== 'string') {
      return { ok: false, error: `"${field}" must be a string, got ${describe(obj[field])}` };
    }
  }
  for (const field of need) {
    if (obj[field] === undefined) return { ok: false, error: `"${field}" is missing` };
  }
  const { numbers: _n, target: _t, prompt, response, ...extra } = obj;
  return { ok: true, record: { numbers, target, prompt: prompt as string | undefined, response: response as string | undefined, extra } };
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing (the field is missing)';
  const text = JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** A line of input with its 1-based number. */
export interface InputLine {
  lineNumber: number;
  text: string;
}

/** Reads a file (or '-' for stdin) line by line; blank lines are skipped unless `keepBlank`. */
export async function* readLines(path: string, stdin: Readable = process.stdin, keepBlank = false): AsyncGenerator<InputLine> {
  const input = path === '-' ? stdin : createReadStream(path);
  const rl = createInterface({ input, crlfDelay: Infinity });
  let lineNumber = 0;
  for await (const text of rl) {
    lineNumber++;
    if (!keepBlank && text.trim() === '') continue;
    yield { lineNumber, text };
  }
}

/** Reads every puzzle of a JSONL file; throws naming the file and line of the first bad record. */
export async function readPuzzleFile(path: string): Promise<PuzzleRecord[]> {
  const out: PuzzleRecord[] = [];
  for await (const { lineNumber, text } of readLines(path)) {
    const parsed = parsePuzzleLine(text);
    if (!parsed.ok) throw new Error(`${path}:${lineNumber}: ${parsed.error}`);
    out.push(parsed.record);
  }
  return out;
}
