// Training data as an endless, resumable stream of puzzles: synthesized on the fly (never an evaluation
// puzzle) or read from a JSONL file epoch after epoch. Its position can be saved and restored exactly.
// Synthesized puzzles are answered with the synthetic chain or with their canonical solution
// (lib/puzzle/canonical.ts); 'canonical-only' skips the puzzles that have none.
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { benchmarkPuzzles } from '../puzzle/benchmark-sets.js';
import { parsePuzzleLine } from '../puzzle/jsonl.js';
import { PuzzleSet } from '../puzzle/key.js';
import { synthesize } from '../puzzle/synthesize.js';
import type { Puzzle } from '../puzzle/types.js';
import { answered, FOLD_ORDERS, RESPONSE_KINDS, type FoldOrder, type ResponseKind } from '../puzzle/canonical.js';
import { formatResponse } from '../puzzle/format.js';
import { assertRegularFile } from '../io/regular-file.js';


export type DataOptions =
  | { source: 'synth'; n: number[]; maxValue: number; seed: number; responses?: ResponseKind; maxCore?: 1 | 2 | 3; fold?: FoldOrder }
  | { source: 'file'; path: string };

/** Where a stream stands: puzzles handed out so far (file sources also count epochs by it). */
export interface DataPosition {
  consumed: number;
  /** With length buckets: batches already taken from the window that starts at `consumed`. */
  skipBatches?: number;
}

export interface TrainingPuzzle extends Puzzle {
  response: string;
}

export interface PuzzleStream {
  next(): TrainingPuzzle;
  position(): DataPosition;
  close(): void;
  describe(): string;
}

export function validateDataOptions(data: DataOptions, where = 'train(): data'): DataOptions {
  if (typeof data !== 'object' || data === null) throw new TypeError(`${where} must be an object, got ${String(data)}`);
  if (data.source === 'synth') {
    if (!Array.isArray(data.n) || data.n.length === 0 || data.n.some((n) => !Number.isInteger(n) || n < 2 || n > 64)) {
      throw new RangeError(`${where}.n must be a non-empty list of integers in [2, 64], got ${JSON.stringify(data.n)}`);
    }
    if (!Number.isInteger(data.maxValue) || data.maxValue < 1) throw new RangeError(`${where}.maxValue must be a positive integer, got ${data.maxValue}`);
    if (!Number.isSafeInteger(data.seed)) throw new RangeError(`${where}.seed must be an integer, got ${data.seed}`);
    if (data.responses !== undefined && !RESPONSE_KINDS.includes(data.responses)) {
      throw new RangeError(`${where}.responses must be one of ${RESPONSE_KINDS.join(', ')}, got ${JSON.stringify(data.responses)}`);
    }
    if (data.maxCore !== undefined && data.maxCore !== 1 && data.maxCore !== 2 && data.maxCore !== 3) {
      throw new RangeError(`${where}.maxCore must be 1, 2 or 3 (the most candidates a canonical core uses), got ${JSON.stringify(data.maxCore)}`);
    }
    if (data.fold !== undefined && !FOLD_ORDERS.includes(data.fold)) {
      throw new RangeError(`${where}.fold must be one of ${FOLD_ORDERS.join(', ')} (where the canonical solution folds the other candidates), got ${JSON.stringify(data.fold)}`);
    }
    return data;
  }
  if (data.source === 'file') {
    if (typeof data.path !== 'string' || !existsSync(data.path)) throw new Error(`${where}.path: the data file '${String(data.path)}' does not exist`);
    assertRegularFile(data.path, `${where}.path: the data file`);
    return data;
  }
  throw new RangeError(`${where}.source must be 'synth' or 'file', got ${JSON.stringify((data as { source?: unknown }).source)}`);
}

/** Opens a stream at `position` (the start when omitted). */
export function openPuzzleStream(data: DataOptions, position: DataPosition = { consumed: 0 }): PuzzleStream {
  const stream = data.source === 'synth' ? synthStream(data) : fileStream(data.path);
  for (let i = 0; i < position.consumed; i++) stream.next();
  return stream;
}

function synthStream(data: Extract<DataOptions, { source: 'synth' }>): PuzzleStream {
  const exclude: PuzzleSet = benchmarkPuzzles();
  const responses = data.responses ?? 'synthetic';
  const it = answered(synthesize({ n: data.n, maxValue: data.maxValue, count: Number.MAX_SAFE_INTEGER, seed: data.seed, exclude }), responses, data.maxCore ?? 3, data.fold ?? 'prompt');
  let consumed = 0;
  return {
    next() {
      const r = it.next();
      if (r.done) throw new Error('synthesized data ran out (count exhausted)');
      consumed++;
      return { numbers: r.value.numbers, target: r.value.target, response: formatResponse(r.value.steps) };
    },
    position: () => ({ consumed }),
    close() {},
    describe: () => `synthesized on the fly: N ${data.n.join(',')}, V ${data.maxValue}, seed ${data.seed}, ${responses} responses${data.maxCore !== undefined && data.maxCore !== 3 ? `, cores of at most ${data.maxCore}` : ''}${data.fold !== undefined && data.fold !== 'prompt' ? `, fold ${data.fold}` : ''} (evaluation puzzles excluded)`,
  };
}

/** Reads a JSONL file line by line with a small buffer, starting over at its end (the next epoch). */
function fileStream(path: string): PuzzleStream {
  const fd = openSync(path, 'r');
  const buffer = Buffer.alloc(1 << 16);
  let pending = '';
  let lineNumber = 0;
  let consumed = 0;
  let eof = false;
  let inEpoch = 0;
  const exclude = benchmarkPuzzles();
  let filePos = 0;

  const readLine = (): string | null => {
    for (;;) {
      const nl = pending.indexOf('\n');
      if (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        return line;
      }
      if (eof) {
        if (pending.length) {
          const line = pending;
          pending = '';
          return line;
        }
        return null;
      }
      const n = readSync(fd, buffer, 0, buffer.length, filePos);
      filePos += n;
      if (n === 0) eof = true;
      else pending += buffer.toString('utf8', 0, n);
    }
  };

  return {
    next() {
      for (;;) {
        const line = readLine();
        if (line === null) {
          if (inEpoch === 0) throw new Error(`${path}: the data file holds no usable puzzle`);
          filePos = 0;
          eof = false;
          lineNumber = 0;
          inEpoch = 0;
          continue;
        }
        lineNumber++;
        if (line.trim() === '') continue;
        const parsed = parsePuzzleLine(line, ['response']);
        if (!parsed.ok) throw new Error(`${path}:${lineNumber}: ${parsed.error}`);
        if (exclude.has(parsed.record)) {
          throw new Error(`${path}:${lineNumber}: this puzzle belongs to an evaluation set; training data must not contain it`);
        }
        inEpoch++;
        consumed++;
        return { numbers: parsed.record.numbers, target: parsed.record.target, response: parsed.record.response as string };
      }
    },
    position: () => ({ consumed }),
    close: () => closeSync(fd),
    describe: () => `read from ${path}`,
  };
}
