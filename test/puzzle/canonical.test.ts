// Canonical solutions: each one the verifier accepts, the search order that makes it unique, and the
// puzzles that have none.
import { describe, expect, it } from 'vitest';
import { answered, canonicalSolution, FOLD_ORDERS, shortestCoreSolutions } from '../../lib/puzzle/canonical.js';
import { formatResponse } from '../../lib/puzzle/format.js';
import { synthesize } from '../../lib/puzzle/synthesize.js';
import { verify } from '../../lib/puzzle/verify.js';

describe('canonicalSolution', () => {
  it('uses the target itself and folds the others to 0', () => {
    const c = canonicalSolution({ numbers: [34, 26, 56, 57, 57], target: 56 });
    expect(c?.shape).toBe('target');
    expect(formatResponse(c!.steps)).toBe('26/34=0, 0*57=0, 0*57=0, 56+0=56');
  });

  it('finds a pair before a triple, + before -, prompt order before the reverse', () => {
    expect(formatResponse(canonicalSolution({ numbers: [3, 9, 4, 7, 8], target: 12 })!.steps)).toBe('3+9=12, 4/7=0, 0*8=0, 12+0=12');
    expect(formatResponse(canonicalSolution({ numbers: [3, 9, 5, 7, 8], target: 6 })!.steps)).toBe('9-3=6, 5/7=0, 0*8=0, 6+0=6');
    // 2*3=6, 6+5=11: no candidate is 11 and no pair makes it
    const puzzle = { numbers: [2, 3, 5, 40, 50], target: 11 };
    const triple = canonicalSolution(puzzle);
    expect(triple?.shape).toBe('triple');
    expect(verify(puzzle, formatResponse(triple!.steps)).ok).toBe(true);
  });

  it('returns null when one number would be left over or no short core reaches the target', () => {
    // 2+5 would leave 60 alone, which cannot be folded to 0; no triple makes 7 either
    expect(canonicalSolution({ numbers: [2, 5, 60], target: 7 }, 2)).toBeNull();
    expect(canonicalSolution({ numbers: [2, 5, 9, 4], target: 7 })?.steps.map((s) => `${s.a}${s.op}${s.b}=${s.result}`)).toEqual(['2+5=7', '4/9=0', '7+0=7']);
    expect(canonicalSolution({ numbers: [7, 11, 13, 17, 19], target: 123457 })).toBeNull();
  });

  it('answers every synthesized puzzle that has one with a response the verifier accepts', () => {
    let found = 0;
    for (const p of synthesize({ n: [5, 6, 7, 8], maxValue: 60, count: 2000, seed: 9 })) {
      const c = canonicalSolution(p);
      if (!c) continue;
      found++;
      const v = verify(p, formatResponse(c.steps));
      expect(v.ok, `${p.numbers.join(',')}: ${p.target} -> ${formatResponse(c.steps)}: ${v.detail}`).toBe(true);
    }
    expect(found).toBeGreaterThan(1000);
  });

  it("answered(): 'canonical' keeps chains where there is none, 'canonical-only' drops those puzzles", () => {
    const puzzles = [...synthesize({ n: 6, maxValue: 60, count: 300, seed: 3 })];
    const none = puzzles.filter((p) => !canonicalSolution(p)).length;
    expect(none).toBeGreaterThan(0);
    expect([...answered(puzzles, 'canonical')].length).toBe(300);
    expect([...answered(puzzles, 'canonical-only')].length).toBe(300 - none);
    expect([...answered(puzzles, 'synthetic')]).toEqual(puzzles);
  });

  it('shortestCoreSolutions(): every solution of the smallest core, the canonical one first', () => {
    // 12 = 3+9 = 4*3 = 8+4: three pairs, no candidate is 12
    const puzzle = { numbers: [3, 9, 4, 7, 8], target: 12 };
    const all = shortestCoreSolutions(puzzle);
    expect(all.map((c) => c.steps[0]).map((s) => `${s.a}${s.op}${s.b}`)).toEqual(['3+9', '3*4', '4+8']);
    expect(all.every((c) => c.shape === 'pair' && verify(puzzle, formatResponse(c.steps)).ok)).toBe(true);
    expect(all[0]).toEqual(canonicalSolution(puzzle));
    expect(shortestCoreSolutions({ numbers: [7, 11, 13, 17, 19], target: 123457 })).toEqual([]);
  });

  it("answered(): 'random-core-only' picks among the shortest cores, the same pick for the same puzzle", () => {
    const puzzles = [...synthesize({ n: [5, 6, 7], maxValue: 60, count: 600, seed: 4 })];
    const picked = [...answered(puzzles, 'random-core-only')];
    expect(picked.length).toBe(puzzles.filter((p) => canonicalSolution(p)).length);
    expect([...answered(puzzles, 'random-core-only')]).toEqual(picked);
    let differs = 0;
    for (const p of picked) {
      expect(verify(p, formatResponse(p.steps)).ok).toBe(true);
      const canonical = canonicalSolution(p)!;
      expect(p.steps.length).toBe(canonical.steps.length);
      if (formatResponse(p.steps) !== formatResponse(canonical.steps)) differs++;
    }
    // most puzzles with two or more shortest cores get another one than the first
    expect(differs).toBeGreaterThan(picked.length / 10);
  });

  it('answered() with maxCore 2 keeps only the puzzles whose core is the target or one pair', () => {
    const puzzles = [...synthesize({ n: [5, 6, 7], maxValue: 60, count: 400, seed: 8 })];
    const pairs = [...answered(puzzles, 'canonical-only', 2)];
    const shapes = puzzles.map((p) => canonicalSolution(p)?.shape);
    expect(pairs.length).toBe(shapes.filter((s) => s === 'pair' || s === 'target').length);
    expect(shapes.filter((s) => s === 'triple').length).toBeGreaterThan(0);
    for (const p of pairs) expect(p.steps.length).toBe(p.numbers.length - 1);
  });

  it('folds the others where the fold order says: after the core (prompt, reverse or shuffled order) or first', () => {
    const puzzle = { numbers: [3, 9, 4, 7, 8, 20], target: 12 };
    const fold = (order: (typeof FOLD_ORDERS)[number]) => formatResponse(canonicalSolution(puzzle, 3, order)!.steps);
    expect(fold('prompt')).toBe('3+9=12, 4/7=0, 0*8=0, 0*20=0, 12+0=12');
    expect(fold('reverse')).toBe('3+9=12, 8/20=0, 0*7=0, 0*4=0, 12+0=12');
    expect(fold('first')).toBe('4/7=0, 0*8=0, 0*20=0, 3+9=12, 12+0=12');
    // shuffled: the same core, the others in an order fixed by the puzzle (the same on every call)
    expect(fold('shuffled')).toBe(fold('shuffled'));
    expect(fold('shuffled').startsWith('3+9=12, ')).toBe(true);
    const puzzles = [...synthesize({ n: [5, 6, 7], maxValue: 60, count: 300, seed: 21 })];
    let reordered = 0;
    for (const order of FOLD_ORDERS) {
      for (const p of answered(puzzles, 'canonical-only', 3, order)) {
        expect(verify(p, formatResponse(p.steps)).ok, `${order}: ${formatResponse(p.steps)}`).toBe(true);
        const shape = canonicalSolution(p)!.shape;
        // the core is the same whatever the fold order; only where the zeros go changes
        expect(canonicalSolution(p, 3, order)!.shape).toBe(shape);
        if (order === 'shuffled' && formatResponse(p.steps) !== formatResponse(canonicalSolution(p)!.steps)) reordered++;
      }
    }
    expect(reordered).toBeGreaterThan(50);
  });
});
