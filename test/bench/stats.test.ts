// bench/stats.ts: the statistics ours and the peer's samples go through agree with the textbook values and
// with tinybench's own on the same samples; bench/micro.ts keeps exactly the durations the calls report.
import { describe, expect, it } from 'vitest';
import { Bench } from 'tinybench';
import { quantile, sampleStats, studentT95 } from '../../bench/stats.js';
import { timeMicro } from '../../bench/micro.js';

describe('studentT95', () => {
  it('gives the tabulated two-sided 95% critical values', () => {
    // Standard table values (3 decimals).
    const table: Array<[number, number]> = [[1, 12.706], [2, 4.303], [3, 3.182], [5, 2.571], [10, 2.228], [20, 2.086], [30, 2.042], [120, 1.980]];
    for (const [df, t] of table) expect(studentT95(df)).toBeCloseTo(t, 3);
    expect(studentT95(1e7)).toBeCloseTo(1.95996, 4);
  });

  it('rejects degrees of freedom below 1', () => {
    expect(() => studentT95(0)).toThrow(/df must be a finite number >= 1, got 0/);
    expect(() => studentT95(Number.NaN)).toThrow(/got NaN/);
  });
});

describe('sampleStats', () => {
  it('computes mean, spread, quantiles and the margin of error of a known sample', () => {
    const s = sampleStats([4, 1, 10, 3, 2]);
    expect(s.count).toBe(5);
    expect(s.mean).toBe(4);
    expect([s.min, s.max, s.p50]).toEqual([1, 10, 3]);
    expect(s.p99).toBeCloseTo(10 - 0.04 * 6, 12); // between the 4th (4) and 5th (10) order statistics
    expect(s.sd).toBeCloseTo(Math.sqrt(12.5), 12);
    expect(s.sem).toBeCloseTo(Math.sqrt(12.5 / 5), 12);
    expect(s.critical).toBeCloseTo(2.776, 3);
    expect(s.rme).toBeCloseTo((100 * s.sem * s.critical) / 4, 10);
  });

  it('handles one sample and constant samples', () => {
    expect(sampleStats([7])).toMatchObject({ count: 1, mean: 7, p99: 7, sd: 0, moe: 0, rme: 0 });
    expect(sampleStats([2, 2, 2])).toMatchObject({ mean: 2, sd: 0, rme: 0 });
  });

  it('names the bad sample', () => {
    expect(() => sampleStats([])).toThrow(/samples is empty/);
    expect(() => sampleStats([1, Number.NaN])).toThrow(/samples\[1\] must be a finite number, got NaN/);
    expect(() => quantile([1, 2], 1.5)).toThrow(/q must be in \[0, 1\], got 1.5/);
  });

  it('agrees with tinybench on the same samples', async () => {
    let x = 12345;
    const durations = Array.from({ length: 40 }, () => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return 1 + (x / 2147483648) * 3;
    });
    let i = 0;
    const bench = new Bench({ iterations: durations.length, time: 0, warmup: false, retainSamples: true });
    bench.add('replay', () => ({ overriddenDuration: durations[i++ % durations.length] }));
    await bench.run();
    const result = bench.getTask('replay')!.result;
    if (!('latency' in result)) throw new Error(`tinybench state ${result.state}`);
    const samples = [...result.latency.samples!];
    expect(samples.length).toBeGreaterThanOrEqual(durations.length);
    const ours = sampleStats(samples);
    expect(ours.mean).toBeCloseTo(result.latency.mean, 9);
    expect(ours.p50).toBeCloseTo(result.latency.p50, 9);
    expect(ours.p99).toBeCloseTo(result.latency.p99, 9);
    expect(ours.sd).toBeCloseTo(result.latency.sd, 9);
    expect(ours.critical).toBeCloseTo(result.latency.critical, 6);
    expect(ours.rme).toBeCloseTo(result.latency.rme, 5);
  });
});

describe('timeMicro', () => {
  it('keeps the durations the calls report, after the warm-up, and their statistics', async () => {
    const reported = [5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    let calls = 0;
    const r = await timeMicro('fake kernel', async () => reported[Math.min(calls++, reported.length - 1)], { iterations: 12, timeMs: 0, warmupIterations: 1 });
    // The first call (5 ms) was the warm-up; the 12 timed ones are 1..12 ms.
    expect(r.samples).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect(r.stats.mean).toBe(6.5);
    expect(r.stats.count).toBe(12);
  });

  it('fails on a call that reports no duration', async () => {
    await expect(timeMicro('broken', async () => Number.NaN, { iterations: 2, timeMs: 0, warmupIterations: 0 })).rejects.toThrow(/broken: the call reported NaN ms/);
  });
});
