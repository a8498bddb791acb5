// bench/peak.ts: a suite's table puts the peak before and after its rows, and each compute row's fractions of
// the larger of the two peaks, ours always and the peer's only when the peer was timed.
import { describe, expect, it } from 'vitest';
import { withPeak, type MeasuredPeak, type PendingRow } from '../../bench/peak.js';

const peak = (gflops: number): MeasuredPeak => ({ gflops, wallGflops: gflops, threads: 2, isa: 'avx2', cpuShare: 1 });

describe('withPeak', () => {
  it('frames the rows with the two peaks and divides by the larger', () => {
    const rows: PendingRow[] = [
      // 2e9 FLOPs in 10 ms = 200 GFLOP/s; the peer's 20 ms = 100 GFLOP/s
      { name: 'a', unit: 'GFLOP/s', value: 200, higherIsBetter: true, flops: 2e9, oursMeanMs: 10, peerMeanMs: 20 },
      { name: 'b', unit: 'ms', value: 5, higherIsBetter: false, flops: 1e9, oursMeanMs: 5 },
    ];
    const table = withPeak(peak(300), peak(400), rows, 'rows');
    expect(table.map((r) => r.name)).toEqual(['fp32 FMA peak, 2 thread(s), avx2 (before the rows)', 'a', 'b', 'fp32 FMA peak, 2 thread(s), avx2 (after the rows)']);
    expect(table[1].ofPeak).toBeCloseTo(0.5);
    expect(table[1].peerOfPeak).toBeCloseTo(0.25);
    expect(table[2].ofPeak).toBeCloseTo(0.5);
    expect(table[2].peerOfPeak).toBeUndefined();
    expect(table[1]).not.toHaveProperty('flops'); // the pending fields are not printed
    expect(table[1]).not.toHaveProperty('oursMeanMs');
  });
});
