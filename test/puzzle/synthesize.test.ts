// Algorithm 1: deterministic for a seed, streaming, exact, every response verifies, exclusions hold.
import { describe, expect, it } from 'vitest';
import { formatPrompt, formatResponse } from '../../lib/puzzle/format.js';
import { PuzzleSet, puzzleKey } from '../../lib/puzzle/key.js';
import { synthesize } from '../../lib/puzzle/synthesize.js';
import { verify } from '../../lib/puzzle/verify.js';

describe('synthesize', () => {
  it('produces puzzles whose recorded steps always verify, for many N and V', () => {
    let total = 0;
    for (const [ns, v] of [[[2, 3, 4], 1], [[5, 6, 7], 60], [[8], 100], [[5, 6, 7], 1000], [[10, 12, 15], 60], [[8], 1000]] as const) {
      for (const p of synthesize({ n: ns, maxValue: v, count: 2000, seed: 99 })) {
        const verdict = verify(p, formatResponse(p.steps));
        if (!verdict.ok) throw new Error(`${formatPrompt(p)} / ${formatResponse(p.steps)}: ${verdict.detail}`);
        expect(p.steps.length).toBe(p.numbers.length - 1);
        for (const x of p.numbers) expect(x >= 1 && x <= v).toBe(true);
        total++;
      }
    }
    expect(total).toBe(12000);
  });

  it('is deterministic for a seed and differs between seeds', () => {
    const a = [...synthesize({ n: [5, 6, 7], maxValue: 60, count: 50, seed: 7 })].map((p) => formatResponse(p.steps));
    const b = [...synthesize({ n: [5, 6, 7], maxValue: 60, count: 50, seed: 7 })].map((p) => formatResponse(p.steps));
    const c = [...synthesize({ n: [5, 6, 7], maxValue: 60, count: 50, seed: 8 })].map((p) => formatResponse(p.steps));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('uses the N values in turn', () => {
    const sizes = [...synthesize({ n: [5, 6, 7], maxValue: 60, count: 6, seed: 1 })].map((p) => p.numbers.length);
    expect(sizes).toEqual([5, 6, 7, 5, 6, 7]);
  });

  it('streams: asking for 1e8 puzzles and taking three costs three', () => {
    const it = synthesize({ n: 5, maxValue: 60, count: 1e8, seed: 3 });
    const t0 = performance.now();
    const first = [it.next().value, it.next().value, it.next().value];
    expect(first.every((p) => p && p.numbers.length === 5)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('never produces an excluded puzzle', () => {
    const taken = [...synthesize({ n: 3, maxValue: 4, count: 200, seed: 5 })];
    const exclude = new PuzzleSet().addAll(taken.slice(0, 100));
    const keys = new Set(taken.slice(0, 100).map(puzzleKey));
    let produced = 0;
    for (const p of synthesize({ n: 3, maxValue: 4, count: 500, seed: 5, exclude })) {
      expect(keys.has(puzzleKey(p))).toBe(false);
      produced++;
    }
    expect(produced).toBe(500);
  });

  it('keeps numbers past 2^53 exact', () => {
    let big = 0;
    for (const p of synthesize({ n: 8, maxValue: 1000, count: 3000, seed: 17 })) {
      if (typeof p.target === 'bigint') {
        big++;
        expect(verify(p, formatResponse(p.steps)).ok).toBe(true);
      }
    }
    expect(big).toBeGreaterThan(0);
  });

  it('reports an exhausted puzzle space instead of looping forever', () => {
    // V = 1, N = 2: [1, 1] reaches only 0, 1 and 2
    expect(() => [...synthesize({ n: 2, maxValue: 1, count: 4, seed: 1, unique: true })]).toThrow(/too small/);
  });

  it('refuses bad options naming the field', () => {
    expect(() => synthesize({ n: 1, maxValue: 60, count: 1 }).next()).toThrow(/n must be an integer in \[2, 64\], got 1/);
    expect(() => synthesize({ n: 5, maxValue: 0, count: 1 }).next()).toThrow(/maxValue .* got 0/);
    expect(() => synthesize({ n: 5, maxValue: 60, count: -1 }).next()).toThrow(/count .* got -1/);
  });
});
