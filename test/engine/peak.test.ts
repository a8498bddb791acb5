// kernels.fmaPeak(): the measured FMA peak is positive and self-consistent, does not fall apart at 2 threads,
// follows the SIMD level, and rejects bad options with errors that name the field.
import { afterAll, describe, expect, it } from 'vitest';
import { kernels } from '../../lib/engine/kernels.js';
import { loadAddon } from '../../lib/engine/loader.js';

const best = loadAddon().addon.buildInfo().cpu.simd;

afterAll(() => {
  kernels.setSimd(best);
});

describe('kernels.fmaPeak', () => {
  it('measures a positive rate whose numbers agree with each other', async () => {
    const r = await kernels.fmaPeak({ threads: 1, ms: 50 });
    expect(r.threads).toBe(1);
    expect(r.isa).toBe(best);
    expect(r.accumulators).toBeGreaterThanOrEqual(10);
    expect(r.lanes).toBe(best === 'avx512' ? 16 : 8);
    expect(r.wallSeconds).toBeGreaterThanOrEqual(0.05);
    expect(r.cpuSeconds).toBeGreaterThan(0);
    expect(r.cpuSeconds).toBeLessThanOrEqual(r.wallSeconds * 1.05 + 0.01);
    expect(r.gflops).toBeCloseTo(r.flops / r.wallSeconds / 1e9, 6);
    expect(r.gflopsPerCpuSecond).toBeCloseTo(r.flops / r.cpuSeconds / 1e9, 6);
    // Any x86-64 core of the last decade does > 1 GFLOP/s of fp32 while it runs; under 1000 per core.
    expect(r.gflopsPerCpuSecond).toBeGreaterThan(1);
    expect(r.gflopsPerCpuSecond).toBeLessThan(1000);
  });

  it('runs on 2 threads at a per-CPU-second rate of the same order as one thread', async () => {
    const one = await kernels.fmaPeak({ threads: 1, ms: 60 });
    const two = await kernels.fmaPeak({ threads: 2, ms: 60 });
    expect(two.threads).toBe(2);
    expect(two.cpuSeconds).toBeGreaterThan(0);
    expect(two.flops).toBeGreaterThan(0);
    // Per CPU second is a per-core rate: two threads on two cores keep it, on SMT siblings of one core
    // about half of it; a shared machine moves it either way a little, not by 3x.
    expect(two.gflopsPerCpuSecond).toBeGreaterThan(one.gflopsPerCpuSecond * 0.3);
    expect(two.gflopsPerCpuSecond).toBeLessThan(one.gflopsPerCpuSecond * 3);
  });

  it('follows the SIMD level: the portable path counts 8 lanes and is slower per CPU second than the best', async () => {
    kernels.setSimd('portable');
    const portable = await kernels.fmaPeak({ threads: 1, ms: 50 });
    kernels.setSimd(best);
    expect(portable.isa).toBe('portable');
    expect(portable.lanes).toBe(8);
    if (best !== 'portable') {
      const fast = await kernels.fmaPeak({ threads: 1, ms: 50 });
      expect(fast.gflopsPerCpuSecond).toBeGreaterThan(portable.gflopsPerCpuSecond);
    }
  });

  it('rejects bad options naming the field and the value', () => {
    expect(() => kernels.fmaPeak({ threads: 0 })).toThrow(/options\.threads = 0 is out of range/);
    expect(() => kernels.fmaPeak({ threads: 1.5 })).toThrow(/options\.threads/);
    expect(() => kernels.fmaPeak({ ms: 0 })).toThrow(/options\.ms = 0 is out of range \[1, 60000\]/);
    expect(() => kernels.fmaPeak({ ms: 'x' as unknown as number })).toThrow(/options\.ms must be a number, got 'x'/);
    expect(() => kernels.fmaPeak(5 as unknown as { ms: number })).toThrow(/kernels\.fmaPeak\(\): options/);
  });
});
