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

export function encodeExample(tokenizer: Tokenizer, puzzle: SolvedPuzzle | (Puzzle & { response: string })): SftExample {
  const query = encodeQuery(tokenizer, puzzle);
  const response = 'steps' in puzzle ? formatResponse(puzzle.steps) : puzzle.response;
  return { ids: [...query, ...tokenizer.encode(response), tokenizer.eos], queryLength: query.length };
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
