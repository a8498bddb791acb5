// The paper's SFT format as token sequences: <bos> prompt <ans> response <eos>, loss on the answer only
// (the response and its <eos>); batches are right-padded with <pad> and ignored targets (-100).
import { formatPrompt, formatResponse } from '../puzzle/format.js';
import type { Puzzle, SolvedPuzzle } from '../puzzle/types.js';
import type { Tokenizer } from '../model/tokenizer.js';

export const IGNORE_INDEX = -100;

export interface SftExample {
  /** <bos> prompt <ans> response <eos> */
  ids: number[];
  /** How many leading ids are the query (<bos> prompt <ans>); the answer follows. */
  queryLength: number;
}

/** The query tokens the model continues at evaluation time: <bos> prompt <ans>. */
export function encodeQuery(tokenizer: Tokenizer, puzzle: Puzzle): number[] {
  return [tokenizer.bos, ...tokenizer.encode(formatPrompt(puzzle)), tokenizer.ans];
}

/**
 * The example's token ids; `cutTail` ends the answer after its first step that makes 0 (when that is not
 * the last step), without <eos>: a prefix of the full example, so its targets are the full one's first ones.
 */
export function encodeExample(tokenizer: Tokenizer, puzzle: SolvedPuzzle | (Puzzle & { response: string }), cutTail = false): SftExample {
  const query = encodeQuery(tokenizer, puzzle);
  const response = 'steps' in puzzle ? formatResponse(puzzle.steps) : puzzle.response;
  const cut = cutTail ? responseHead(response) : null;
  if (cut !== null) return { ids: [...query, ...tokenizer.encode(cut)], queryLength: query.length };
  return { ids: [...query, ...tokenizer.encode(response), tokenizer.eos], queryLength: query.length };
}

/** The response through its first step whose result is 0, or null when there is none before the last step. */
export function responseHead(response: string): string | null {
  const steps = response.split(',');
  for (let i = 0; i < steps.length - 1; i++) {
    const eq = steps[i].lastIndexOf('=');
    if (eq >= 0 && steps[i].slice(eq + 1).trim() === '0') return steps.slice(0, i + 1).join(',');
  }
  return null;
}

export interface Batch {
  batch: number;
  seq: number;
  tokens: Int32Array; // [batch, seq]
  targets: Int32Array; // [batch, seq]: the next token where it is an answer token, else -100
  /** Answer tokens that count in the loss. */
  targetCount: number;
}

/**
 * Packs examples into one right-padded batch of length `seq` (the longest example minus one when
 * omitted). An example longer than seq + 1 tokens is an error naming it.
 */
export function collate(examples: readonly SftExample[], pad: number, seq?: number): Batch {
  if (examples.length === 0) throw new RangeError('collate(): no examples');
  const longest = Math.max(...examples.map((e) => e.ids.length));
  const T = seq ?? longest - 1;
  const tokens = new Int32Array(examples.length * T).fill(pad);
  const targets = new Int32Array(examples.length * T).fill(IGNORE_INDEX);
  let targetCount = 0;
  examples.forEach((e, b) => {
    if (e.ids.length - 1 > T) {
      throw new RangeError(`collate(): example ${b} has ${e.ids.length} tokens, more than seq + 1 = ${T + 1}; raise the sequence length`);
    }
    for (let t = 0; t < e.ids.length - 1; t++) {
      tokens[b * T + t] = e.ids[t];
      if (t + 1 >= e.queryLength) {
        targets[b * T + t] = e.ids[t + 1];
        targetCount++;
      }
    }
  });
  return { batch: examples.length, seq: T, tokens, targets, targetCount };
}
