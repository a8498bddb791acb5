// Exact integer arithmetic: floor division agrees with Python's `//`, sizes past 2^53 stay exact.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { add, floorDiv, intFromJson, mul, norm, parseInt10, sub } from '../../lib/puzzle/int.js';

function python(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(py, ['-c', 'pass'], { stdio: 'ignore' });
      return py;
    } catch {
      /* try the next one */
    }
  }
  return null;
}

const pairs: Array<[bigint, bigint]> = [];
for (const a of [-20n, -7n, -1n, 0n, 1n, 7n, 20n, 59n, -60n, 9007199254740993n, -9007199254740993n, 10n ** 30n + 7n, -(10n ** 25n)]) {
  for (const b of [18n, -18n, 2n, -2n, 1n, -1n, 3n, -3n, 7n, 9007199254740991n, -(10n ** 12n) - 1n]) pairs.push([a, b]);
}

describe('floor division', () => {
  it('matches the paper example -20/18 = -2', () => {
    expect(floorDiv(-20, 18)).toBe(-2);
    expect(floorDiv(7, -2)).toBe(-4);
    expect(floorDiv(-7, -2)).toBe(3);
    expect(floorDiv(0, -5)).toBe(0);
    expect(Object.is(floorDiv(0, -5), -0)).toBe(false);
  });

  it("matches Python's // on negatives and on numbers past 2^53", () => {
    const py = python();
    if (!py) {
      console.log('python3 not found: checking against the hand-written table only');
      return;
    }
    const script = `import sys\nfor line in sys.stdin:\n    a, b = map(int, line.split())\n    print(a // b)`;
    const out = execFileSync(py, ['-c', script], { input: pairs.map(([a, b]) => `${a} ${b}`).join('\n') + '\n' }).toString().trim().split('\n');
    expect(out.length).toBe(pairs.length);
    pairs.forEach(([a, b], i) => {
      expect(`${floorDiv(norm(a), norm(b))}`, `${a} // ${b}`).toBe(out[i]);
    });
  });

  it('throws on a zero divisor', () => {
    expect(() => floorDiv(3, 0)).toThrow(/division by zero/);
    expect(() => floorDiv(10n ** 20n, 0)).toThrow(/division by zero/);
  });
});

describe('exactness past 2^53', () => {
  it('promotes to bigint exactly where doubles would round', () => {
    const big = add(Number.MAX_SAFE_INTEGER, 2);
    expect(typeof big).toBe('bigint');
    expect(big).toBe(9007199254740993n);
    expect(mul(1000000007, 1000000009)).toBe(1000000016000000063n);
    expect(sub(big, 2)).toBe(Number.MAX_SAFE_INTEGER); // back to a plain number
  });

  it('reads integers from JSON numbers and decimal strings, refusing lossy numbers', () => {
    expect(intFromJson('123456789012345678901234567890', 'x')).toBe(123456789012345678901234567890n);
    expect(intFromJson(-42, 'x')).toBe(-42);
    expect(intFromJson('17', 'x')).toBe(17);
    expect(intFromJson(2 ** 60, 'target')).toMatch(/target = .* lost precision/);
    expect(intFromJson(1.5, 'target')).toMatch(/target must be an integer/);
    expect(intFromJson('12a', 'numbers[0]')).toMatch(/numbers\[0\] must be an integer/);
    expect(parseInt10('-0')).toBe(0);
  });
});
