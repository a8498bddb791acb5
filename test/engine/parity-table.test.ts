// The parity table native/cuda/parity.tsv (read by test/gpu/ops.test.ts and the C++ harness) on the CPU: it parses, covers every op of the kernels API, rejects malformed lines by line and field, and bounds as documented.
import { describe, expect, it } from 'vitest';
import { KERNEL_OPS } from '../../lib/engine/kernel-ops.js';
import { loadAddon } from '../../lib/engine/loader.js';
import {
  attentionPath,
  loadParityTable,
  parityTablePath,
  parseParityTable,
  tolerance,
  withinBound,
  type ParityRule,
} from '../../lib/engine/parity-table.js';

const HEADER = 'op\ttensor\tpath\tatol_abs\tatol_sqrtK\tatol_maxref\trtol';
/** A table of the header plus the given rows (tabs written as |). */
const table = (...rows: string[]): string => ['# a comment', HEADER, ...rows.map((r) => r.replaceAll('|', '\t'))].join('\n') + '\n';


describe('native/cuda/parity.tsv', () => {
  const t = loadParityTable();

  it('is found under the package root and parses', () => {
    expect(parityTablePath()).toMatch(/native[\\/]cuda[\\/]parity\.tsv$/);
    expect(t.rules.length).toBeGreaterThan(40);
  });

  it('has a row for every op the kernels API exposes (each is run on CUDA by test/gpu/ops.test.ts)', () => {
    // The ops of native/ops/spec.mjs that the addon exports (test/engine/ops-spec.test.ts: the same list), so a
    // new op without a row fails here.
    const names = Object.keys(loadAddon().addon.kernels);
    const ops = KERNEL_OPS.filter((op) => names.includes(op));
    expect(ops).toEqual(expect.arrayContaining(['matmul', 'attentionBackward', 'adamw', 'embeddingForward']));
    const missing = ops.filter((op) => !t.ops().has(op));
    expect(missing).toEqual([]);
  });

  it('holds the rows the GPU test looks up, with fp32 rows no looser than the bf16 ones of the same tensor', () => {
    for (const tensor of ['out', 'lse'] as const) {
      const f = t.rule('attentionForward', tensor, 'fp32');
      const b = t.rule('attentionForward', tensor, 'bf16');
      expect(f.rtol).toBeLessThanOrEqual(b.rtol);
      expect(b.atolMaxRef).toBeGreaterThan(0);
    }
    expect(t.rule('matmul', 'C', 'fp32').atolSqrtK).toBeLessThan(t.rule('matmul', 'C', 'bf16').atolSqrtK);
    for (const exact of ['embeddingForward', 'embeddingBackward', 'dropoutForward', 'dropoutBackward']) {
      expect(t.rules.filter((r) => r.op === exact).map((r) => r.path)).toEqual(['exact']);
    }
  });
});

describe('parseParityTable', () => {
  it('reads the numbers of a row and its source line', () => {
    const p = parseParityTable(table('matmul|C|bf16|1e-6|3e-2|0|3e-2', '', '# note', 'adamw|v|fp32|1e-9|0|0|.5'), 'x.tsv');
    expect(p.rules).toHaveLength(2);
    expect(p.rule('matmul', 'C', 'bf16')).toMatchObject({ atolAbs: 1e-6, atolSqrtK: 3e-2, atolMaxRef: 0, rtol: 3e-2, source: 'x.tsv:3' });
    expect(p.rule('adamw', 'v', 'fp32')).toMatchObject({ atolAbs: 1e-9, rtol: 0.5, source: 'x.tsv:6' });
    expect(() => p.rule('adamw', 'v', 'bf16')).toThrow("x.tsv: no row for op 'adamw', tensor 'v', path 'bf16'");
  });

  it.each([
    ['matmul|C|bf16|1e-6|3e-2|0', 'x.tsv:3: 6 tab-separated fields, want 7'],
    ['matmul|C|fp16|1e-6|3e-2|0|3e-2', "x.tsv:3: field path: 'fp16' must be one of fp32, bf16, exact"],
    ['matmul|C|bf16|1e-6|abc|0|3e-2', "x.tsv:3: field atol_sqrtK: 'abc' is not a non-negative decimal number"],
    ['matmul|C|bf16|-1e-6|3e-2|0|3e-2', "x.tsv:3: field atol_abs: '-1e-6' is not a non-negative decimal number"],
    ['matmul|C|bf16|1e-6|3e-2|0|1e999', "x.tsv:3: field rtol: '1e999' is not finite"],
    ['matmul|C|bf16|1e-6|3e-2|0|', "x.tsv:3: field rtol: '' is not a non-negative decimal number"],
    ['add|out|exact|0|0|1e-3|0', "x.tsv:3: field atol_maxref: an exact row has no tolerance (must be 0), got '1e-3'"],
    ['|C|bf16|1e-6|3e-2|0|3e-2', "x.tsv:3: field op: '' is not a name"],
    ['matmul|C D|bf16|1e-6|3e-2|0|3e-2', "x.tsv:3: field tensor: 'C D' is not a name"],
  ])('rejects %j naming the line and field', (row, message) => {
    expect(() => parseParityTable(table(row), 'x.tsv')).toThrow(message);
  });

  it('rejects a repeated row, a wrong header and a table without one', () => {
    expect(() => parseParityTable(table('adamw|m|fp32|0|0|0|1e-6', 'adamw|m|fp32|0|0|0|2e-6'), 'x.tsv')).toThrow(
      "x.tsv:4: field op/tensor/path: 'adamw m fp32' repeats line 3",
    );
    expect(() => parseParityTable('op\ttensor\tpath\tatol\tatol_sqrtK\tatol_maxref\trtol\n', 'x.tsv')).toThrow(/^x\.tsv:1: the header must be/);
    expect(() => parseParityTable('# only comments\n\n', 'x.tsv')).toThrow('x.tsv: no header line');
  });

  it('reports a malformed line of a later row by its own line number, after comments and blank lines', () => {
    const text = table('adamw|m|fp32|0|0|0|1e-6', '', '# x', '', 'adamw|v|fp32|0|0|0|1e-6|9');
    expect(() => parseParityTable(text, 'x.tsv')).toThrow('x.tsv:7: 8 tab-separated fields');
  });
});

describe('the bound: |got − want| ≤ atol_abs + atol_sqrtK·sqrtK + atol_maxref·maxRef + rtol·|want|', () => {
  const rule = (atolAbs: number, atolSqrtK: number, atolMaxRef: number, rtol: number): ParityRule => ({
    op: 'x', tensor: 'y', path: 'fp32', atolAbs, atolSqrtK, atolMaxRef, rtol, source: 'test',
  });

  it('adds the three absolute terms', () => {
    const tol = tolerance(rule(1e-6, 3e-2, 2e-2, 1e-2), { sqrtK: 8, maxRef: 5 });
    expect(tol.atol).toBeCloseTo(1e-6 + 0.24 + 0.1, 12);
    expect(tol.rtol).toBe(1e-2);
    expect(tolerance(rule(1e-6, 3e-2, 2e-2, 1e-2)).atol).toBe(1e-6);
    expect(() => tolerance(rule(0, 1, 0, 0), { sqrtK: -1 })).toThrow(/must be >= 0/);
  });

  it('passes at the bound and fails just past it', () => {
    const tol = { atol: 0.5, rtol: 0.25 };
    // bound at want 4: 0.5 + 1 = 1.5
    expect(withinBound(5.5, 4, tol)).toBe(true);
    expect(withinBound(2.5, 4, tol)).toBe(true);
    expect(withinBound(5.5001, 4, tol)).toBe(false);
    expect(withinBound(2.4999, 4, tol)).toBe(false);
    // rtol is relative to |want|, not |got|: want -4 gives the same 1.5
    expect(withinBound(-2.5, -4, tol)).toBe(true);
    expect(withinBound(-2.4, -4, tol)).toBe(false);
    // want 0: atol alone
    expect(withinBound(0.5, 0, tol)).toBe(true);
    expect(withinBound(0.51, 0, tol)).toBe(false);
  });

  it('fails NaN and infinities against a finite want, and a zero tolerance means equal', () => {
    const tol = { atol: 1, rtol: 1 };
    expect(withinBound(Number.NaN, 1, tol)).toBe(false);
    expect(withinBound(Number.POSITIVE_INFINITY, 1, tol)).toBe(false);
    expect(withinBound(1, Number.POSITIVE_INFINITY, tol)).toBe(false);
    expect(withinBound(Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY, tol)).toBe(true);
    expect(withinBound(1, 1, { atol: 0, rtol: 0 })).toBe(true);
    expect(withinBound(1 + 2 ** -23, 1, { atol: 0, rtol: 0 })).toBe(false);
  });

  it("a bf16 GEMM row's bound grows with sqrt(K): an error that passes at K 1024 fails at K 16", () => {
    const r = parseParityTable(table('matmul|C|bf16|0|3e-2|0|0')).rule('matmul', 'C', 'bf16');
    const err = 0.5;
    expect(withinBound(err, 0, tolerance(r, { sqrtK: Math.sqrt(1024) }))).toBe(true); // bound 0.96
    expect(withinBound(err, 0, tolerance(r, { sqrtK: Math.sqrt(16) }))).toBe(false); // bound 0.12
  });

  it('attention takes the bf16 rows exactly where the flash kernels run', () => {
    expect(attentionPath(64, 8)).toBe('bf16');
    expect(attentionPath(128, 1000)).toBe('bf16');
    expect(attentionPath(33, 9)).toBe('bf16');
    expect(attentionPath(32, 100)).toBe('fp32');
    expect(attentionPath(256, 100)).toBe('fp32');
    expect(attentionPath(64, 7)).toBe('fp32');
  });
});
