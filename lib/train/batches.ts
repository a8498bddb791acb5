// A step's training batch: the global batch of `batchSize` puzzles read from the stream (the same on every
// rank), padded to its longest example, and this rank's contiguous share of its rows, with the counts
// the loss is averaged over, so that the ranks together compute exactly the global batch's mean loss.
import { collate, encodeExample, type Batch } from '../core/sft.js';
import { shareOf } from '../dist/shard.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { PuzzleStream } from './data.js';

export interface ShareBatch extends Batch {
  /** The share's first row in the global batch (LoRA dropout draws the global batch's masks). */
  rowOffset: number;
  /** Answer tokens of the whole global batch: the loss's denominator. */
  lossTokens: number;
  /** Tokens of the whole global batch (for throughput). */
  globalTokens: number;
}

export function nextShareBatch(
  stream: PuzzleStream,
  tokenizer: Tokenizer,
  batchSize: number,
  share: { rank: number; worldSize: number },
  maxPositions: number,
): ShareBatch {
  const examples = Array.from({ length: batchSize }, () => encodeExample(tokenizer, stream.next()));
  const seq = Math.max(...examples.map((e) => e.ids.length)) - 1;
  if (seq > maxPositions) throw new Error(`train(): a batch needs ${seq} positions but max_position_embeddings is ${maxPositions}; raise it in config`);
  const { start, end } = shareOf(batchSize, share.rank, share.worldSize);
  const local = collate(examples.slice(start, end), tokenizer.pad, seq);
  const lossTokens = examples.reduce((a, e) => a + e.ids.length - e.queryLength, 0);
  const globalTokens = examples.reduce((a, e) => a + e.ids.length, 0);
  return { ...local, rowOffset: start * seq, lossTokens, globalTokens };
}
