// The verifier: the paper's examples pass; every kind of mistake fails with its own reason; no input throws.
import { describe, expect, it } from 'vitest';
import { formatResponse } from '../../lib/puzzle/format.js';
import { Rng } from '../../lib/puzzle/rng.js';
import { synthesize } from '../../lib/puzzle/synthesize.js';
import { VERDICT_REASONS, verify } from '../../lib/puzzle/verify.js';

const paper1 = { numbers: [3, 6, 7, 51, 58], target: 4 };
const paper2 = { numbers: [34, 18, 31, 41, 19, 55], target: -110 };

describe('verify', () => {
  it("accepts the paper's two examples", () => {
    expect(verify(paper1, '58-51=7, 6-7=-1, 3*-1=-3, -3+7=4')).toEqual({ ok: true, reason: null, detail: null, step: null });
    expect(verify(paper2, '31-34=-3, 19+41=60, 60/-3=-20, -20/18=-2, -2*55=-110').ok).toBe(true);
  });

  it('tolerates spaces around tokens', () => {
    expect(verify(paper1, ' 58 - 51 = 7 ,6-7 =-1,  3 * -1=-3, -3+7=4 \n').ok).toBe(true);
  });

  it('names each kind of failure', () => {
    const cases: Array<[string, string, number | null]> = [
      ['', 'empty-response', null],
      ['   ', 'empty-response', null],
      ['58-51=7, 6-7=-1, 3x-1=-3, -3+7=4', 'parse-error', 2],
      ['58-51=7, 6-7=-1, 3*-1=-3, -3+7=4,', 'parse-error', 4],
      ['58-51=7, 6-7=-1, 3*-1=-3, -3+7=4, 4+0=4', 'too-many-steps', null],
      ['58-52=6, 6-7=-1, 3*-1=-3, -3+7=4', 'operand-not-available', 0], // operand changed
      ['58-51=7, 6-7=-1, 3*-1=-3, -3+7=4'.replace('3*-1', '-1*-1'), 'operand-not-available', 2],
      ['58+51=7, 6-7=-1, 3*-1=-3, -3+7=4', 'wrong-result', 0], // operator changed
      ['58-51=8, 6-7=-1, 3*-1=-3, -3+7=4', 'wrong-result', 0], // result changed
      ['58-51=7, 6-7=-1, 3*-1=-3', 'numbers-left-unused', null],
      ['58-51=7, 6-7=-1, 3*-1=-3, -3-7=-10', 'final-value-differs', null],
    ];
    for (const [response, reason, step] of cases) {
      const v = verify(paper1, response);
      expect(v.ok, response).toBe(false);
      expect(v.reason, response).toBe(reason);
      expect(v.step, response).toBe(step);
      expect(typeof v.detail).toBe('string');
    }
  });

  it('rejects division by zero and uses floor division', () => {
    expect(verify({ numbers: [5, 3, 3], target: 0 }, '3-3=0, 5/0=0').reason).toBe('division-by-zero');
    expect(verify({ numbers: [-20, 18], target: -2 }, '-20/18=-2').ok).toBe(true);
    expect(verify({ numbers: [-20, 18], target: -1 }, '-20/18=-1').reason).toBe('wrong-result');
  });

  it('treats candidates as a multiset', () => {
    expect(verify({ numbers: [5, 5, 2], target: 12 }, '5+5=10, 10+2=12').ok).toBe(true);
    expect(verify({ numbers: [5, 4, 2], target: 12 }, '5+5=10, 10+2=12').reason).toBe('operand-not-available');
    // a result can be used only once
    expect(verify({ numbers: [1, 2, 3], target: 6 }, '1+2=3, 3+3=6').ok).toBe(true);
    expect(verify({ numbers: [1, 2, 4], target: 6 }, '1+2=3, 3+3=6').reason).toBe('operand-not-available');
  });

  it('rejects a mutated step of synthesized puzzles at that step', () => {
    const rng = new Rng(4);
    let checked = 0;
    for (const p of synthesize({ n: [5, 6, 7], maxValue: 60, count: 500, seed: 21 })) {
      const steps = p.steps.map((s) => ({ ...s }));
      const k = rng.below(steps.length);
      const field = (['a', 'b', 'result'] as const)[rng.below(3)];
      steps[k][field] = (steps[k][field] as number) + 1 + rng.below(5) * 1000003;
      const v = verify(p, formatResponse(steps));
      expect(v.ok).toBe(false);
      if (field === 'result') {
        expect(v.reason).toBe('wrong-result');
        expect(v.step).toBe(k);
      } else {
        // a changed operand is either missing from the pool, or present but giving another result
        expect(['operand-not-available', 'wrong-result', 'division-by-zero']).toContain(v.reason);
      }
      checked++;
    }
    expect(checked).toBe(500);
  });

  it('never throws, whatever the text', () => {
    const rng = new Rng(8);
    const alphabet = '0123456789+-*/=, :\n\t-éß漢😀\u0000\u2212';
    const reasons = Object.keys(VERDICT_REASONS);
    const texts = [
      '9'.repeat(100_000),
      `${'9'.repeat(3000)}+1=${'9'.repeat(2999)}`,
      '1+1=2,'.repeat(50_000),
      '58−51=7', // unicode minus
      '٣+٤=٧', // arabic-indic digits
      '\uFEFF58-51=7',
      '=',
      ',,,,',
      'null',
    ];
    for (let i = 0; i < 2000; i++) {
      let s = '';
      const len = rng.below(40);
      for (let j = 0; j < len; j++) s += alphabet[rng.below(alphabet.length)];
      texts.push(s);
    }
    for (const t of texts) {
      const v = verify(paper1, t);
      expect(v.ok).toBe(false);
      expect(reasons).toContain(v.reason);
    }
    // not even malformed puzzles or non-string responses
    expect(verify({ numbers: [1], target: 1 } as never, '1+1=2').reason).toBe('malformed-input');
    expect(verify(null as never, '1+1=2').reason).toBe('malformed-input');
    expect(verify(paper1, 42 as never).reason).toBe('malformed-input');
  });

  it('keeps numbers past 2^53 exact', () => {
    const big = 9007199254740993n; // 2^53 + 1: a double would round it to 2^53
    expect(verify({ numbers: [9007199254740992n, 1], target: big }, '9007199254740992+1=9007199254740993').ok).toBe(true);
    expect(verify({ numbers: [9007199254740992n, 1], target: big }, '9007199254740992+1=9007199254740992').reason).toBe('wrong-result');
  });
});

describe('verify input forms', () => {
  it('accepts small values given as bigint', () => {
    expect(verify({ numbers: [1n, 2n], target: 3n }, '1+2=3').ok).toBe(true);
  });
});
