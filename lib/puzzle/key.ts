// A puzzle's identity for splits: its sorted candidates plus its target; and a set of puzzles by that
// identity, fast to probe (an order-free 32-bit hash first, the exact key only when the hash matches).
import { cmp, type Int } from './int.js';
import type { Puzzle } from './types.js';

export function puzzleKey(puzzle: Puzzle): string {
  const sorted = puzzle.numbers.slice().sort(cmp);
  let key = '';
  for (let i = 0; i < sorted.length; i++) key += (i ? ',' : '') + `${sorted[i]}`;
  return `${key}:${puzzle.target}`;
}

function mixInt(x: Int): number {
  let h: number;
  if (typeof x === 'number') {
    h = (x | 0) ^ Math.imul((x / 4294967296) | 0, 0x27d4eb2d);
  } else {
    const s = x.toString();
    h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  }
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A hash of the candidates as a multiset (order does not matter) and the target. */
export function puzzleHash(puzzle: Puzzle): number {
  let h = puzzle.numbers.length;
  for (let i = 0; i < puzzle.numbers.length; i++) h = (h + mixInt(puzzle.numbers[i])) | 0;
  return (Math.imul(h, 0x9e3779b1) ^ mixInt(puzzle.target)) >>> 0;
}

/**
 * puzzleHash of the first `n` candidates in `numbers` and `target`, all safe integers held as plain numbers
 * (synthesis's scratch arrays): the same value, without a Puzzle object.
 */
export function candidatesHash(numbers: ArrayLike<number>, n: number, target: number): number {
  let h = n;
  for (let i = 0; i < n; i++) h = (h + mixInt(numbers[i])) | 0;
  return (Math.imul(h, 0x9e3779b1) ^ mixInt(target)) >>> 0;
}

/** A set of puzzles by identity (sorted candidates plus target). */
export class PuzzleSet {
  private readonly byHash = new Map<number, string | string[]>();
  /** One bit per low 20 bits of the hashes present: most probes that miss end here, before the Map. */
  private readonly hashBits = new Int32Array(1 << 15);
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** False when no puzzle with this puzzleHash is in the set (true: one may be; ask has()). */
  mayHaveHash(hash: number): boolean {
    return (this.hashBits[(hash >>> 5) & 0x7fff] & (1 << (hash & 31))) !== 0 && this.byHash.has(hash);
  }

  has(puzzle: Puzzle): boolean {
    const bucket = this.byHash.get(puzzleHash(puzzle));
    if (bucket === undefined) return false;
    const key = puzzleKey(puzzle);
    return typeof bucket === 'string' ? bucket === key : bucket.includes(key);
  }

  /** Adds a puzzle; false when it was already there. */
  add(puzzle: Puzzle): boolean {
    const h = puzzleHash(puzzle);
    const bucket = this.byHash.get(h);
    const key = puzzleKey(puzzle);
    this.hashBits[(h >>> 5) & 0x7fff] |= 1 << (h & 31);
    if (bucket === undefined) this.byHash.set(h, key);
    else if (typeof bucket === 'string') {
      if (bucket === key) return false;
      this.byHash.set(h, [bucket, key]);
    } else {
      if (bucket.includes(key)) return false;
      bucket.push(key);
    }
    this.count++;
    return true;
  }

  addAll(puzzles: Iterable<Puzzle>): this {
    for (const p of puzzles) this.add(p);
    return this;
  }
}
