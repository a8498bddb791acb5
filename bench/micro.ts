// Micro-benchmarks with tinybench: tinybench runs the warm-up and the iterations and keeps the samples;
// each sample is the duration the kernel's own native timer measured for that call (overriddenDuration),
// so output allocation in JS is not in it, as `torch.mm(..., out=c)` keeps it out of the peer's samples.
// Statistics come from bench/stats.ts, the helper the peer's samples go through too.
import { Bench } from 'tinybench';
import { sampleStats, type SampleStats } from './stats.js';

export interface MicroOptions {
  /** At least this many timed samples (tinybench's iterations). */
  iterations: number;
  /** And keep sampling until this many milliseconds have passed (tinybench's time). */
  timeMs: number;
  /** Untimed calls first. */
  warmupIterations: number;
}

/** The options a suite uses: short with --quick. */
export function microOptions(quick: boolean): MicroOptions {
  return quick ? { iterations: 8, timeMs: 200, warmupIterations: 1 } : { iterations: 30, timeMs: 1500, warmupIterations: 3 };
}

export interface MicroResult {
  /** Each timed call's milliseconds (tinybench's retained samples, ascending). */
  samples: number[];
  stats: SampleStats;
}

/**
 * Times `once` (which runs one call and resolves its own duration in milliseconds) with tinybench; rejects
 * with the task's error when a call fails.
 */
export async function timeMicro(name: string, once: () => Promise<number>, options: MicroOptions): Promise<MicroResult> {
  const bench = new Bench({
    name,
    iterations: options.iterations,
    time: options.timeMs,
    warmup: options.warmupIterations > 0,
    warmupIterations: options.warmupIterations,
    warmupTime: 0,
    retainSamples: true,
    throws: true,
  });
  bench.add(name, async () => {
    const ms = await once();
    if (!(ms > 0) || !Number.isFinite(ms)) throw new Error(`${name}: the call reported ${ms} ms`);
    return { overriddenDuration: ms };
  });
  await bench.run();
  const task = bench.getTask(name);
  const result = task?.result;
  if (!result || !('latency' in result) || !result.latency.samples?.length) {
    throw new Error(`${name}: tinybench finished without samples (state ${result?.state ?? 'none'})`);
  }
  const samples = [...result.latency.samples];
  return { samples, stats: sampleStats(samples) };
}
