// The CUDA-vs-CPU parity table (native/cuda/parity.tsv): its parser, the row lookup and the bound, shared by test/gpu and bench:gpu (the C++ harness parses the same file with native/cuda/dev/parity_table.h).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../io/package-root.js';

export type ParityPath = 'fp32' | 'bf16' | 'exact';

/** One row: the tolerance of one output tensor of one op on one arithmetic path. */
export interface ParityRule {
  op: string;
  tensor: string;
  path: ParityPath;
  atolAbs: number;
  /** Times the caller's sqrt(K)·rms(A)·rms(B) (GEMM-like ops). */
  atolSqrtK: number;
  /** Times max|want| over the tensor. */
  atolMaxRef: number;
  rtol: number;
  /** Where the row came from, for messages: 'FILE:LINE'. */
  source: string;
}

/** The columns, in order; the first non-comment line of the file must be exactly these, tab-separated. */
export const PARITY_COLUMNS = ['op', 'tensor', 'path', 'atol_abs', 'atol_sqrtK', 'atol_maxref', 'rtol'] as const;
const PATHS: readonly ParityPath[] = ['fp32', 'bf16', 'exact'];
const NAME = /^[A-Za-z][A-Za-z0-9_.-]*$/;
// A plain decimal or exponent number (no hex, no Infinity, no sign): what the C++ parser accepts too.
const NUMBER = /^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

export class ParityTable {
  private readonly byKey = new Map<string, ParityRule>();

  constructor(readonly rules: readonly ParityRule[], readonly file: string) {
    for (const r of rules) this.byKey.set(key(r.op, r.tensor, r.path), r);
  }

  /** The ops that have at least one row. */
  ops(): Set<string> {
    return new Set(this.rules.map((r) => r.op));
  }

  /** The row for (op, tensor, path); throws naming the file when there is none. */
  rule(op: string, tensor: string, path: ParityPath): ParityRule {
    const r = this.byKey.get(key(op, tensor, path));
    if (!r) throw new Error(`${this.file}: no row for op '${op}', tensor '${tensor}', path '${path}'`);
    return r;
  }
}

function key(op: string, tensor: string, path: string): string {
  return `${op}\t${tensor}\t${path}`;
}

/**
 * Parses the table's text. A malformed line throws an Error naming `source:LINE` and the field:
 * a wrong field count, an unknown path, a number that is not a finite non-negative decimal, an exact row
 * with a tolerance, a duplicate (op, tensor, path), or a missing or different header.
 */
export function parseParityTable(text: string, source = 'parity.tsv'): ParityTable {
  const rules: ParityRule[] = [];
  const seen = new Map<string, number>();
  let header = false;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i].replace(/\r$/, '');
    if (line.trim() === '' || line.startsWith('#')) continue;
    const where = `${source}:${lineNo}`;
    const fields = line.split('\t');
    if (!header) {
      if (fields.length !== PARITY_COLUMNS.length || fields.some((f, j) => f !== PARITY_COLUMNS[j])) {
        throw new Error(`${where}: the header must be the ${PARITY_COLUMNS.length} tab-separated columns '${PARITY_COLUMNS.join("' '")}', got '${line}'`);
      }
      header = true;
      continue;
    }
    if (fields.length !== PARITY_COLUMNS.length) {
      throw new Error(`${where}: ${fields.length} tab-separated fields, want ${PARITY_COLUMNS.length} (${PARITY_COLUMNS.join(', ')})`);
    }
    const [op, tensor, path, ...nums] = fields;
    if (!NAME.test(op)) throw new Error(`${where}: field op: '${op}' is not a name`);
    if (!NAME.test(tensor)) throw new Error(`${where}: field tensor: '${tensor}' is not a name`);
    if (!PATHS.includes(path as ParityPath)) throw new Error(`${where}: field path: '${path}' must be one of ${PATHS.join(', ')}`);
    const values = nums.map((s, j) => {
      const column = PARITY_COLUMNS[3 + j];
      if (!NUMBER.test(s)) throw new Error(`${where}: field ${column}: '${s}' is not a non-negative decimal number`);
      const v = Number(s);
      if (!Number.isFinite(v)) throw new Error(`${where}: field ${column}: '${s}' is not finite`);
      if (path === 'exact' && v !== 0) throw new Error(`${where}: field ${column}: an exact row has no tolerance (must be 0), got '${s}'`);
      return v;
    });
    const k = key(op, tensor, path);
    const before = seen.get(k);
    if (before !== undefined) throw new Error(`${where}: field op/tensor/path: '${op} ${tensor} ${path}' repeats line ${before}`);
    seen.set(k, lineNo);
    rules.push({ op, tensor, path: path as ParityPath, atolAbs: values[0], atolSqrtK: values[1], atolMaxRef: values[2], rtol: values[3], source: where });
  }
  if (!header) throw new Error(`${source}: no header line (${PARITY_COLUMNS.join(', ')})`);
  return new ParityTable(rules, source);
}

/** Where the table is: $PUZZLE_LLAMA_PARITY_TABLE, else native/cuda/parity.tsv under the package root. */
export function parityTablePath(): string {
  return process.env.PUZZLE_LLAMA_PARITY_TABLE || join(packageRoot(), 'native', 'cuda', 'parity.tsv');
}

let cached: { path: string; table: ParityTable } | null = null;

/** The table read from parityTablePath() (read again when that path changes). */
export function loadParityTable(path = parityTablePath()): ParityTable {
  if (cached?.path !== path) cached = { path, table: parseParityTable(readFileSync(path, 'utf8'), path) };
  return cached.table;
}

/** What the bound of a row needs besides the row: the GEMM geometry and the tensor's scale. */
export interface ParityScale {
  /** sqrt(K)·rms(A)·rms(B) (the row's comment says what A and B are); default 0. */
  sqrtK?: number;
  /** max|want| over the tensor; default 0. */
  maxRef?: number;
}

/** atol = atol_abs + atol_sqrtK·sqrtK + atol_maxref·maxRef, and the row's rtol. */
export function tolerance(rule: ParityRule, scale: ParityScale = {}): { atol: number; rtol: number } {
  const sqrtK = scale.sqrtK ?? 0;
  const maxRef = scale.maxRef ?? 0;
  if (!(sqrtK >= 0) || !(maxRef >= 0)) throw new Error(`parity bound of ${rule.op} ${rule.tensor}: sqrtK ${sqrtK} and maxRef ${maxRef} must be >= 0`);
  return { atol: rule.atolAbs + rule.atolSqrtK * sqrtK + rule.atolMaxRef * maxRef, rtol: rule.rtol };
}

/** |got − want| ≤ atol + rtol·|want|; a NaN or infinite got fails, and a non-finite want passes only an identical got. */
export function withinBound(got: number, want: number, tol: { atol: number; rtol: number }): boolean {
  if (got === want) return true;
  if (!Number.isFinite(want)) return false;
  return Math.abs(got - want) <= tol.atol + tol.rtol * Math.abs(want);
}

/** Root mean square of a tensor (the rms(A), rms(B) of a sqrtK term). */
export function rms(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s / Math.max(1, a.length));
}

/** max|x| over a tensor (the maxRef of a bound). */
export function maxAbsOf(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Whether CUDA attention runs its bf16 flash kernels for this shape (native/cuda/attention_bf16.cuh, bf16AttentionCovers). */
export function attentionPath(d: number, tq: number): 'bf16' | 'fp32' {
  return d > 32 && d <= 128 && tq >= 8 ? 'bf16' : 'fp32';
}
