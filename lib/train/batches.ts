// A step's training batch: the global batch of `batchSize` puzzles read from the stream (the same on every
// rank), padded to its longest example, and this rank's contiguous share of its rows, with the counts
// the loss is averaged over, so that the ranks together compute exactly the global batch's mean loss.
// With length buckets, a window of `buckets` batches is read at once, sorted by length and cut into
// batches (in a seeded random order), so that little compute goes to padding; the position saved in a
// checkpoint is the window's start and the batches of it already taken. `cutTails` cuts a fraction of the
// examples after their first fold (lib/core/sft.ts, encodeExample).
import { collate, encodeExample, type Batch, type SftExample } from '../core/sft.js';
import { shareOf } from '../dist/shard.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { Rng } from '../puzzle/rng.js';
import { puzzleHash } from '../puzzle/hash.js';
import type { DataPosition, PuzzleStream } from './data.js';

export interface ShareBatch extends Batch {
  /** The share's first row in the global batch (LoRA dropout draws the global batch's masks). */
  rowOffset: number;
  /** Answer tokens of the whole global batch: the loss's denominator. */
  lossTokens: number;
  /** Tokens of the whole global batch (for throughput). */
  globalTokens: number;
}

/** The hash salt of the cutTails choice (the random-core pick uses salt 0). */
const CUT_SALT = 1;

/** Global batches from a puzzle stream, optionally bucketed by length. */
export class GlobalBatches {
  private pending: SftExample[][] = [];
  private windowStart: number;
  private taken = 0;

  /**
   * `buckets` batches form a window (1: batches in stream order, unsorted). `start` is where a checkpoint
   * left the stream: the stream must already stand at `start.consumed`.
   */
  constructor(
    private readonly stream: PuzzleStream,
    private readonly tokenizer: Tokenizer,
    private readonly batchSize: number,
    private readonly buckets: number,
    private readonly seed: number,
    start: DataPosition = { consumed: 0 },
    private readonly cutTails = 0,
  ) {
    this.windowStart = start.consumed;
    const skip = start.skipBatches ?? 0;
    if (skip > 0) {
      if (skip >= buckets) throw new RangeError(`train(): the checkpoint's data position skips ${skip} batches of a window of ${buckets}`);
      this.fill();
      this.pending.splice(0, skip);
      this.taken = skip;
    }
  }

  next(): SftExample[] {
    if (this.pending.length === 0) this.fill();
    this.taken++;
    return this.pending.shift() as SftExample[];
  }

  /** Where the stream of batches stands (what a checkpoint saves). */
  position(): DataPosition {
    if (this.buckets === 1 || this.pending.length === 0) return this.stream.position();
    return { consumed: this.windowStart, skipBatches: this.taken };
  }

  private fill(): void {
    this.windowStart = this.stream.position().consumed;
    this.taken = 0;
    const count = this.batchSize * this.buckets;
    const examples = Array.from({ length: count }, () => {
      const p = this.stream.next();
      return encodeExample(this.tokenizer, p, this.cutTails > 0 && puzzleHash(p, CUT_SALT) < this.cutTails * 2 ** 32);
    });
    if (this.buckets === 1) {
      this.pending = [examples];
      return;
    }
    // a stable sort: equal lengths keep the stream's order
    const sorted = examples.map((e, i) => ({ e, i })).sort((a, b) => a.e.ids.length - b.e.ids.length || a.i - b.i);
    const batches: SftExample[][] = [];
    for (let b = 0; b < this.buckets; b++) batches.push(sorted.slice(b * this.batchSize, (b + 1) * this.batchSize).map((x) => x.e));
    // batch order shuffled (Fisher-Yates) by a stream seeded with the window's position: no trend in length
    const rng = new Rng((this.seed ^ Math.imul(this.windowStart + 1, 0x9e3779b1)) >>> 0);
    for (let i = batches.length - 1; i > 0; i--) {
      const j = rng.below(i + 1);
      [batches[i], batches[j]] = [batches[j], batches[i]];
    }
    this.pending = batches;
  }
}

/** This rank's share of a global batch, padded to the global batch's longest example. */
export function shareBatch(examples: SftExample[], tokenizer: Tokenizer, share: { rank: number; worldSize: number }, maxPositions: number): ShareBatch {
  const seq = Math.max(...examples.map((e) => e.ids.length)) - 1;
  if (seq > maxPositions) throw new Error(`train(): a batch needs ${seq} positions but max_position_embeddings is ${maxPositions}; raise it in config`);
  const { start, end } = shareOf(examples.length, share.rank, share.worldSize);
  const local = collate(examples.slice(start, end), tokenizer.pad, seq);
  const lossTokens = examples.reduce((a, e) => a + e.ids.length - e.queryLength, 0);
  const globalTokens = examples.reduce((a, e) => a + e.ids.length, 0);
  return { ...local, rowOffset: start * seq, lossTokens, globalTokens };
}
