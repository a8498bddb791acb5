// The exact solver agrees with an independent brute force, including puzzles with no solution.
import { describe, expect, it } from 'vitest';
import { Rng } from '../../lib/puzzle/rng.js';
import { solve } from '../../lib/puzzle/solve.js';
import { synthesize } from '../../lib/puzzle/synthesize.js';
import { verify } from '../../lib/puzzle/verify.js';

/** Plain exhaustive search over ordered pairs and operators, in bigint, sharing no code with the solver. */
function bruteForce(numbers: bigint[], target: bigint): boolean {
  const seen = new Set<string>();
  const pyFloorDiv = (a: bigint, b: bigint): bigint => {
    const q = a / b;
    return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? q - 1n : q;
  };
  const rec = (pool: bigint[]): boolean => {
    if (pool.length === 1) return pool[0] === target;
    const key = [...pool].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0)).join(',');
    if (seen.has(key)) return false;
    seen.add(key);
    for (let i = 0; i < pool.length; i++) {
      for (let j = 0; j < pool.length; j++) {
        if (i === j) continue;
        const rest = pool.filter((_, k) => k !== i && k !== j);
        const a = pool[i];
        const b = pool[j];
        const results = [a + b, a - b, a * b];
        if (b !== 0n) results.push(pyFloorDiv(a, b));
        for (const r of results) if (rec([...rest, r])) return true;
      }
    }
    return false;
  };
  return rec(numbers);
}

describe('solve', () => {
  it('agrees with brute force on small puzzles, solvable or not', () => {
    const rng = new Rng(12);
    let solvable = 0;
    let unsolvable = 0;
    for (let i = 0; i < 400; i++) {
      const n = 2 + rng.below(3); // 2..4
      const v = [5, 20, 60, 1000][rng.below(4)];
      const numbers = Array.from({ length: n }, () => 1 + rng.below(v));
      const range = [10, 100, 5000][rng.below(3)];
      const target = rng.below(2 * range + 1) - range;
      const expected = bruteForce(numbers.map(BigInt), BigInt(target));
      const got = solve({ numbers, target });
      expect(got.solvable, `${numbers.join(', ')}: ${target}`).toBe(expected);
      if (got.solvable) {
        solvable++;
        expect(verify({ numbers, target }, got.response).ok).toBe(true);
      } else {
        unsolvable++;
        expect(got.response).toBeNull();
      }
    }
    expect(solvable).toBeGreaterThan(50);
    expect(unsolvable).toBeGreaterThan(50);
  });

  it('agrees with brute force for N = 5', () => {
    const rng = new Rng(13);
    let unsolvable = 0;
    for (let i = 0; i < 25; i++) {
      const numbers = Array.from({ length: 5 }, () => 1 + rng.below(12));
      const target = rng.below(40001) - 20000;
      const expected = bruteForce(numbers.map(BigInt), BigInt(target));
      const got = solve({ numbers, target });
      expect(got.solvable, `${numbers.join(', ')}: ${target}`).toBe(expected);
      if (got.solvable) expect(verify({ numbers, target }, got.response).ok).toBe(true);
      else unsolvable++;
    }
    expect(unsolvable).toBeGreaterThan(0);
  });

  it('knows small puzzles with no solution', () => {
    expect(solve({ numbers: [2, 3], target: 7 }).solvable).toBe(false); // 5, 6, ±1, 0, 1
    expect(solve({ numbers: [1, 1], target: 5 }).solvable).toBe(false);
    expect(solve({ numbers: [1, 1, 1], target: 4 }).solvable).toBe(false);
    expect(solve({ numbers: [1, 1, 1], target: 3 }).solvable).toBe(true);
  });

  it('solves every synthesized puzzle up to N = 8, V = 1000', () => {
    for (const [n, v, count] of [[6, 60, 40], [7, 60, 30], [8, 60, 20], [7, 1000, 20], [8, 1000, 5]] as const) {
      for (const p of synthesize({ n, maxValue: v, count, seed: 31 })) {
        const s = solve(p);
        expect(s.solvable).toBe(true);
        expect(verify(p, s.response).ok).toBe(true);
      }
    }
  });

  it('handles targets past 2^53', () => {
    const s = solve({ numbers: [1000, 1000, 1000, 1000, 1000, 1000], target: 10n ** 18n });
    expect(s.solvable).toBe(true);
    expect(verify({ numbers: [1000, 1000, 1000, 1000, 1000, 1000], target: 10n ** 18n }, s.response).ok).toBe(true);
    expect(solve({ numbers: [1000, 1000, 1000], target: 10n ** 18n }).solvable).toBe(false);
  });

  it('refuses malformed puzzles naming the field', () => {
    expect(() => solve({ numbers: [1], target: 1 })).toThrow(/numbers/);
    expect(() => solve({ numbers: [1, 2.5], target: 1 })).toThrow(/"numbers"\[1\]/);
  });
});
