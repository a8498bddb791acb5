// What a benchmark suite is: a named function that measures and returns rows, each beside its peer.

export interface BenchOptions {
  device: 'cpu' | 'cuda';
  /** Threads for our engine and for the peer alike. */
  threads: number;
  /** Shorter runs (CI smoke, --quick). */
  quick: boolean;
}

/** One measured quantity, with the peer's number for the same workload when a peer ran. */
export interface BenchRow {
  name: string;
  /** The unit of `value` and `peer`, e.g. 'GFLOP/s', 'tokens/s', 'puzzles/s', 'ms'. */
  unit: string;
  value: number;
  /** True when a larger value is better (rates); false for times and sizes. */
  higherIsBetter: boolean;
  /** The peer's value for the same workload, run in the same process or the same run. */
  peer?: number;
  /** Who the peer was ('pytorch 1.13 cpu', 'cuBLAS', …), or why none ran. */
  peerName?: string;
  peerSkipped?: string;
  /** The target ratio to the peer the issue sets, if any (e.g. 0.9 means ≥ 0.9× peer). */
  target?: number;
  /** An absolute target for `value` (≥ when higherIsBetter, else ≤), when the issue sets one. */
  absoluteTarget?: number;
  note?: string;
  /**
   * The fraction of the machine's fp32 FMA peak (kernels.fmaPeak, measured in the same run at the same
   * threads) that our rate and the peer's reach, for compute rows (FLOP counts: bench/flops.ts).
   */
  ofPeak?: number;
  peerOfPeak?: number;
  /** Statistics of the timing samples behind `value` and `peer` (tinybench's samples; the peer's own), in ms. */
  stats?: TimingStats;
  peerStats?: TimingStats;
}

/** What a row shows of its samples (bench/stats.ts computes them), in milliseconds per call or step. */
export interface TimingStats {
  count: number;
  mean: number;
  p99: number;
  /** Relative margin of error of the mean, percent (95%, Student's t). */
  rme: number;
}

export interface BenchSuite {
  name: string;
  description: string;
  run(options: BenchOptions): Promise<BenchRow[]>;
}
