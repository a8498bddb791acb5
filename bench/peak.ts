// The machine's fp32 FMA peak for a suite's table: measured (kernels.fmaPeak) at the suite's thread count
// in the same run, as a row of its own, and the fraction of it each compute row reaches. The limit is the
// rate per CPU second times the threads (what the cores do while they run, whoever else shares them); the
// rate per wall second, lower on a shared machine, is shown beside it.
import { kernels } from '../lib/engine/kernels.js';
import type { BenchRow } from './suite.js';

export interface MeasuredPeak {
  /** The limit: GFLOP/s per CPU second times the threads (the threads' cores, each busy all the time). */
  gflops: number;
  /** GFLOP/s per wall second: what the threads got now (less than gflops when the cores are shared). */
  wallGflops: number;
  threads: number;
  isa: string;
  /** The fraction of `threads` cores the measurement got (1 on an idle machine). */
  cpuShare: number;
}

/** Measures the peak on `threads` threads: 1 s (0.3 s with quick). */
export async function measurePeak(threads: number, quick: boolean): Promise<MeasuredPeak> {
  const r = await kernels.fmaPeak({ threads, ms: quick ? 300 : 1000 });
  return {
    gflops: r.gflopsPerCpuSecond * r.threads,
    wallGflops: r.gflops,
    threads: r.threads,
    isa: r.isa,
    cpuShare: r.cpuSeconds / (r.wallSeconds * r.threads),
  };
}

/** The larger of two measurements (before and after a suite's rows): the limit the fractions use. */
export function higherPeak(a: MeasuredPeak, b: MeasuredPeak): MeasuredPeak {
  return b.gflops > a.gflops ? b : a;
}

/** The peak as a row of the table. */
export function peakRow(peak: MeasuredPeak, when: string): BenchRow {
  return {
    name: `fp32 FMA peak, ${peak.threads} thread(s), ${peak.isa} (${when})`,
    unit: 'GFLOP/s',
    value: peak.gflops,
    higherIsBetter: true,
    peerSkipped: 'no peer: the limit that "of peak" divides by',
    note: `per CPU second x ${peak.threads}; per wall second ${peak.wallGflops.toFixed(0)} GFLOP/s, the threads got ${(100 * peak.cpuShare).toFixed(0)}% of ${peak.threads} core(s)${peak.cpuShare < 0.95 ? ' (a shared machine: other work had the rest)' : ''}`,
  };
}

/** A rate of `gflops` as a fraction of the peak. */
export function ofPeak(gflops: number, peak: MeasuredPeak): number {
  return gflops / peak.gflops;
}

/** A compute row before its fractions are known: its FLOPs per call and each side's mean milliseconds. */
export type PendingRow = BenchRow & { flops: number; oursMeanMs: number; peerMeanMs?: number };

/**
 * A suite's table: the peak measured before its rows, the rows with the fractions of the larger of the two
 * peaks that ours and the peer's reach, then the peak measured after them.
 */
export function withPeak(before: MeasuredPeak, after: MeasuredPeak, rows: readonly PendingRow[], what: string): BenchRow[] {
  const peak = higherPeak(before, after);
  const gflops = (flops: number, ms: number) => flops / (ms * 1e-3) / 1e9;
  const table: BenchRow[] = [peakRow(before, `before the ${what}`)];
  for (const { flops, oursMeanMs, peerMeanMs, ...row } of rows) {
    row.ofPeak = ofPeak(gflops(flops, oursMeanMs), peak);
    if (peerMeanMs) row.peerOfPeak = ofPeak(gflops(flops, peerMeanMs), peak);
    table.push(row);
  }
  table.push(peakRow(after, `after the ${what}`));
  return table;
}
