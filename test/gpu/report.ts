// The parity report of `npm run test:gpu`: every CUDA-vs-CPU comparison (max abs/rel error, tolerance,
// verdict) printed as it is made, kept per test file in $PARITY_REPORT_DIR/parts/, and merged by
// setup.ts after the run into parity.json and parity.junit.xml (one JUnit test case per tensor).
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

/** One tensor compared: |got − want| ≤ atol + rtol·|want| elementwise, the worst element named. */
export interface Comparison {
  /** The op or model part, e.g. 'matmul', 'attentionBackward', 'model.step'. */
  op: string;
  /** Which tensor of which case, e.g. 'dq B2 T77 H8 Hkv2 D64'. */
  tensor: string;
  elements: number;
  maxAbsErr: number;
  /** max |got − want| / max(|want|, tiny) over elements. */
  maxRelErr: number;
  /** max of |got − want| / (atol + rtol·|want|): ≤ 1 passes. */
  worstRatio: number;
  worstIndex: number;
  got: number;
  want: number;
  maxAbsRef: number;
  atol: number;
  rtol: number;
  /** 'tolerance' or 'bit-exact'. */
  kind: 'tolerance' | 'bit-exact';
  ok: boolean;
  note?: string;
}

export interface ParityReport {
  date: string;
  cuda: { ok: boolean; reason: string | null; device?: string };
  totals: { comparisons: number; failed: number };
  /** Per op: the comparison whose worstRatio is highest. */
  worstByOp: Record<string, { tensor: string; worstRatio: number; maxAbsErr: number; maxRelErr: number; atol: number; rtol: number; ok: boolean }>;
  comparisons: Comparison[];
}

export function reportDir(): string {
  return resolve(process.env.PARITY_REPORT_DIR || join('out', 'parity'));
}

const collected: Comparison[] = [];

function measure(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number) {
  let maxAbsErr = 0;
  let maxRelErr = 0;
  let worstRatio = 0;
  let worstIndex = 0;
  let maxAbsRef = 0;
  for (let i = 0; i < want.length; i++) {
    const w = want[i];
    const e = Math.abs(got[i] - w);
    // NaN anywhere fails: the comparisons below are false for NaN, so track it explicitly.
    const ratio = Number.isNaN(e) ? Infinity : e / (atol + rtol * Math.abs(w));
    if (!(e <= maxAbsErr)) maxAbsErr = Number.isNaN(e) ? Infinity : e;
    const rel = e / Math.max(Math.abs(w), 1e-30);
    if (!(rel <= maxRelErr)) maxRelErr = Number.isNaN(rel) ? Infinity : rel;
    if (ratio > worstRatio) {
      worstRatio = ratio;
      worstIndex = i;
    }
    maxAbsRef = Math.max(maxAbsRef, Math.abs(w));
  }
  return { maxAbsErr, maxRelErr, worstRatio, worstIndex, maxAbsRef };
}

function line(c: Comparison): string {
  const verdict = c.ok ? 'ok  ' : 'FAIL';
  if (c.kind === 'bit-exact') {
    return `${verdict} ${c.op} ${c.tensor}: ${c.ok ? 'bit-identical' : `differs, max |err| ${c.maxAbsErr.toExponential(2)} at ${c.worstIndex}`} (${c.elements} elements)`;
  }
  return (
    `${verdict} ${c.op} ${c.tensor}: max |err| ${c.maxAbsErr.toExponential(2)}, max rel ${c.maxRelErr.toExponential(2)}` +
    ` (max |ref| ${c.maxAbsRef.toExponential(2)}); worst at ${c.worstIndex}: ${c.got.toPrecision(6)} vs ${c.want.toPrecision(6)}` +
    ` = ${c.worstRatio.toFixed(3)} of tol (atol ${c.atol.toExponential(1)}, rtol ${c.rtol.toExponential(1)})${c.note ? `; ${c.note}` : ''}`
  );
}

/**
 * Compares got (CUDA) with want (the CPU reference) elementwise and records the result; returns it.
 * The caller asserts `ok`, so one failing tensor fails its test while every tensor still gets reported.
 */
export function compareTensor(op: string, tensor: string, got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number, note?: string): Comparison {
  if (got.length !== want.length) throw new Error(`${op} ${tensor}: length ${got.length} vs ${want.length}`);
  const m = measure(got, want, atol, rtol);
  const c: Comparison = {
    op,
    tensor,
    elements: want.length,
    ...m,
    got: want.length ? got[m.worstIndex] : 0,
    want: want.length ? want[m.worstIndex] : 0,
    atol,
    rtol,
    kind: 'tolerance',
    ok: m.worstRatio <= 1 && Number.isFinite(m.worstRatio),
    note,
  };
  collected.push(c);
  console.log(line(c));
  return c;
}

/** Bit-for-bit equality (dropout masks, embedding gathers), recorded like the rest. */
export function compareExact(op: string, tensor: string, got: ArrayLike<number>, want: ArrayLike<number>): Comparison {
  if (got.length !== want.length) throw new Error(`${op} ${tensor}: length ${got.length} vs ${want.length}`);
  let first = -1;
  const m = measure(got, want, 0, 0);
  for (let i = 0; i < want.length && first < 0; i++) if (!Object.is(got[i], want[i])) first = i;
  const c: Comparison = {
    op,
    tensor,
    elements: want.length,
    ...m,
    worstRatio: first < 0 ? 0 : Infinity,
    worstIndex: Math.max(first, 0),
    got: first < 0 ? 0 : got[first],
    want: first < 0 ? 0 : want[first],
    atol: 0,
    rtol: 0,
    kind: 'bit-exact',
    ok: first < 0,
  };
  collected.push(c);
  console.log(line(c));
  return c;
}

/** Writes this test file's comparisons to the parts folder (call from afterAll). */
export function flushReport(testFile: string): void {
  if (collected.length === 0) return;
  const dir = join(reportDir(), 'parts');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${basename(testFile).replace(/\W+/g, '_')}.json`);
  writeFileSync(file, JSON.stringify(collected) + '\n');
}

// ---- merging (setup.ts, in the main vitest process) -----------------------------------------------

export function clearParts(): void {
  rmSync(join(reportDir(), 'parts'), { recursive: true, force: true });
}

export function mergeReport(cuda: ParityReport['cuda']): ParityReport {
  const dir = reportDir();
  const partsDir = join(dir, 'parts');
  let comparisons: Comparison[] = [];
  try {
    for (const f of readdirSync(partsDir).sort()) {
      if (f.endsWith('.json')) comparisons = comparisons.concat(JSON.parse(readFileSync(join(partsDir, f), 'utf8')) as Comparison[]);
    }
  } catch {
    // no parts: every test skipped
  }
  const worstByOp: ParityReport['worstByOp'] = {};
  for (const c of comparisons) {
    const prev = worstByOp[c.op];
    if (!prev || c.worstRatio > prev.worstRatio || (!c.ok && prev.ok)) {
      worstByOp[c.op] = { tensor: c.tensor, worstRatio: c.worstRatio, maxAbsErr: c.maxAbsErr, maxRelErr: c.maxRelErr, atol: c.atol, rtol: c.rtol, ok: c.ok };
    }
  }
  const report: ParityReport = {
    date: new Date().toISOString(),
    cuda,
    totals: { comparisons: comparisons.length, failed: comparisons.filter((c) => !c.ok).length },
    worstByOp,
    comparisons,
  };
  mkdirSync(dir, { recursive: true });
  // Infinity (a NaN or a bit mismatch) is not JSON: written as a string.
  const json = JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2);
  atomicWrite(join(dir, 'parity.json'), json + '\n');
  atomicWrite(join(dir, 'parity.junit.xml'), junit(report));
  return report;
}

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

function xml(s: string): string {
  return s.replace(/[<>&"']/g, (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[ch] as string);
}

/** JUnit XML: a test suite per op, a test case per tensor; without a GPU one skipped case says why. */
function junit(r: ParityReport): string {
  const byOp = new Map<string, Comparison[]>();
  for (const c of r.comparisons) {
    if (!byOp.has(c.op)) byOp.set(c.op, []);
    byOp.get(c.op)!.push(c);
  }
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const skipped = r.comparisons.length === 0 ? 1 : 0;
  out.push(`<testsuites name="puzzle-llama CUDA parity" tests="${r.comparisons.length + skipped}" failures="${r.totals.failed}" skipped="${skipped}">`);
  if (skipped) {
    const why = r.cuda.ok ? 'no comparison was made' : `no GPU: ${r.cuda.reason ?? 'unknown'}`;
    out.push(`  <testsuite name="parity" tests="1" failures="0" skipped="1">`);
    out.push(`    <testcase classname="parity" name="CUDA vs CPU"><skipped message="${xml(why)}"/></testcase>`);
    out.push('  </testsuite>');
  }
  for (const [op, list] of byOp) {
    const failures = list.filter((c) => !c.ok).length;
    out.push(`  <testsuite name="${xml(op)}" tests="${list.length}" failures="${failures}" skipped="0">`);
    for (const c of list) {
      const detail =
        c.kind === 'bit-exact'
          ? c.ok ? 'bit-identical' : `differs at ${c.worstIndex}: ${c.got} vs ${c.want}`
          : `max abs err ${c.maxAbsErr.toExponential(3)}, max rel err ${c.maxRelErr.toExponential(3)}, worst ${c.worstRatio.toFixed(3)} of tol (atol ${c.atol}, rtol ${c.rtol}) at ${c.worstIndex}: ${c.got} vs ${c.want}`;
      out.push(`    <testcase classname="parity.${xml(op)}" name="${xml(c.tensor)}">`);
      out.push(`      <properties><property name="maxAbsErr" value="${c.maxAbsErr}"/><property name="maxRelErr" value="${c.maxRelErr}"/><property name="worstRatio" value="${c.worstRatio}"/><property name="atol" value="${c.atol}"/><property name="rtol" value="${c.rtol}"/></properties>`);
      if (!c.ok) out.push(`      <failure message="${xml(detail)}"/>`);
      out.push(`      <system-out>${xml(detail)}</system-out>`);
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return out.join('\n') + '\n';
}
