// bench/run.ts's table: the "of peak" column (ours / peer), the timing statistics columns, and columns no
// row uses left out.
import { describe, expect, it } from 'vitest';
import { formatRows } from '../../bench/run.js';
import type { BenchRow } from '../../bench/suite.js';

describe('formatRows', () => {
  it('prints the fraction of the peak and the samples\' mean/p99 with the margin of error', () => {
    const rows: BenchRow[] = [
      {
        name: 'matmul 64x64x64', unit: 'GFLOP/s', value: 120, higherIsBetter: true, peer: 100, peerName: 'torch 2.13.0 torch.mm',
        target: 1, ofPeak: 0.75, peerOfPeak: 0.625,
        stats: { count: 30, mean: 0.0044, p99: 0.0051, rme: 1.23 }, peerStats: { count: 30, mean: 0.0052, p99: 0.006, rme: 2.5 },
      },
      { name: 'attention', unit: 'ms', value: 10, higherIsBetter: false, peer: 12, peerName: 'torch 2.13.0 sdpa', ofPeak: 0.05 },
    ];
    const lines = formatRows(rows).split('\n');
    expect(lines[0]).toMatch(/benchmark\s+ours\s+peer\s+ratio\s+of peak\s+ours ms mean\/p99\s+peer ms mean\/p99\s+target/);
    expect(lines[2]).toMatch(/120 GFLOP\/s\s+100 \(torch 2\.13\.0 torch\.mm\)\s+1\.20x\s+75% \/ 63%\s+0\.00440\/0\.00510 ±1\.2% n30\s+0\.00520\/0\.00600 ±2\.5% n30\s+>= 1x\s+met/);
    expect(lines[3]).toMatch(/1\.20x\s+5\.0% \/ -/);
  });

  it('leaves out the columns no row fills', () => {
    const text = formatRows([{ name: 'synth', unit: 'puzzles/s', value: 5, higherIsBetter: true, peerSkipped: 'no peer' }]);
    expect(text.split('\n')[0]).toMatch(/^benchmark\s+ours\s+peer$/);
    expect(text).not.toMatch(/of peak|mean\/p99|target/);
  });
});
