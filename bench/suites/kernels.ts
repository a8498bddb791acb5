// `--suite kernels`: the CPU matmul at the tiny preset's shapes and at 1024^3, and attention forward+backward,
// each checked against a float64 reference before it is timed, timed with tinybench (bench/micro.ts) beside
// its PyTorch peer's own samples (the same statistics, bench/stats.ts), and set against the machine's fp32
// FMA peak measured in the same run at the same threads (bench/peak.ts; FLOP counts: bench/flops.ts).
import { pseudoRandom } from '../inputs.js';
import type { BenchOptions, BenchRow, BenchSuite } from '../suite.js';
import { kernels } from '../../lib/engine/kernels.js';
import { presetConfig } from '../../lib/model/config.js';
import { attentionFlops, matmulFlops } from '../flops.js';
import { microOptions, timeMicro, type MicroOptions, type MicroResult } from '../micro.js';
import { measurePeak, withPeak, type PendingRow } from '../peak.js';
import { peerLabel, peerNumber, peerSamples, runPeer, timingStats, type PeerOutcome } from './peers.js';

/** The peer gets as many timed calls as tinybench took of ours (bounded), after the same warm-up. */
function peerRepeats(count: number): number {
  return Math.max(3, Math.min(count, 300));
}

/**
 * A compute row from our samples and the peer's: the rate from each side's mean (GFLOP/s, or the mean
 * ms for time rows); withPeak() adds the fractions of the peak once the suite's peak is known.
 */
function computeRow(
  name: string,
  flops: number,
  unit: 'GFLOP/s' | 'ms',
  ours: MicroResult,
  peer: PeerOutcome,
  peerKey: string,
  peerVariant: string,
  target?: number,
): PendingRow {
  const gflops = (ms: number) => flops / (ms * 1e-3) / 1e9;
  const ps = peerSamples(peer, peerKey);
  const value = unit === 'GFLOP/s' ? gflops(ours.stats.mean) : ours.stats.mean;
  const row: PendingRow = {
    name,
    unit,
    value,
    higherIsBetter: unit === 'GFLOP/s',
    ...(target !== undefined ? { target } : {}),
    flops,
    oursMeanMs: ours.stats.mean,
    stats: timingStats(ours.stats),
  };
  if (ps && peer.ok) {
    row.peer = unit === 'GFLOP/s' ? gflops(ps.mean) : ps.mean;
    row.peerName = peerLabel(peer, peerVariant);
    row.peerStats = timingStats(ps);
    row.peerMeanMs = ps.mean;
  } else {
    Object.assign(row, peerNumber(peer, peerKey, peerVariant));
    if (peer.ok) row.peerSkipped = `the peer sent no samples under '${peerKey}'`;
  }
  return row;
}

/** Checks the kernel the timing will use (same transposes) against float64 on a small problem. */
function checkMatmul(transB: boolean, threads: number): void {
  const m = 37, n = 45, k = 300;
  const a = pseudoRandom(m * k, 1);
  const b = pseudoRandom(k * n, 2);
  const c = kernels.matmul(a, b, { m, n, k, transB, threads });
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * (transB ? b[j * k + p] : b[p * n + j]);
      if (Math.abs(c[i * n + j] - s) > 1e-4 * (1 + Math.abs(s))) {
        throw new Error(`matmul check failed at (${i}, ${j}): ${c[i * n + j]} vs ${s}; not timing a wrong kernel`);
      }
    }
}

export const kernelsSuite: BenchSuite = {
  name: 'kernels',
  description: 'CPU matmul (model shapes, 1024^3) and attention fwd+bwd under tinybench vs PyTorch fp32 on the same threads, with the measured FMA peak',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    if (options.device !== 'cpu') {
      return [{ name: 'kernels', unit: '', value: 0, higherIsBetter: true, peerSkipped: `device ${options.device}: the CUDA kernels are not built yet`, note: 'skipped' }];
    }
    const threads = options.threads;
    const micro: MicroOptions = microOptions(options.quick);
    checkMatmul(true, threads);
    checkMatmul(false, threads);
    const before = await measurePeak(threads, options.quick);
    const cfg = presetConfig('tiny');
    const batch = 16;
    const seq = 64;
    const N = batch * seq;
    const C = cfg.hidden_size;
    const F = cfg.intermediate_size;
    const kv = (C / cfg.num_attention_heads) * cfg.num_key_value_heads;
    // y = x W^T for the model's linears (M = batch*seq tokens), and the backward's dx = dy W.
    const shapes: Array<{ label: string; m: number; n: number; k: number; transB: boolean; target: number }> = [
      { label: `q/o_proj fwd ${N}x${C}x${C}`, m: N, n: C, k: C, transB: true, target: 1.0 },
      { label: `k/v_proj fwd ${N}x${kv}x${C}`, m: N, n: kv, k: C, transB: true, target: 1.0 },
      { label: `gate/up_proj fwd ${N}x${F}x${C}`, m: N, n: F, k: C, transB: true, target: 1.0 },
      { label: `down_proj fwd ${N}x${C}x${F}`, m: N, n: C, k: F, transB: true, target: 1.0 },
      { label: `gate/up_proj bwd dx ${N}x${C}x${F}`, m: N, n: C, k: F, transB: false, target: 1.0 },
      { label: '1024x1024x1024', m: 1024, n: 1024, k: 1024, transB: false, target: 0.9 },
    ];
    const rows: PendingRow[] = [];
    for (const s of shapes) {
      const name = `matmul ${s.label}`;
      const ours = await timeMicro(name, async () => (await kernels.timeMatmul({ m: s.m, n: s.n, k: s.k, transB: s.transB, repeats: 1, threads })).bestSeconds * 1e3, micro);
      const peer = await runPeer('matmul', { m: s.m, n: s.n, k: s.k, threads, repeats: peerRepeats(ours.stats.count), warmup: micro.warmupIterations + 1 });
      rows.push(computeRow(name, matmulFlops(s.m, s.n, s.k), 'GFLOP/s', ours, peer, 'samplesMs', 'torch.mm', s.target));
    }

    const heads = cfg.num_attention_heads;
    const kvHeads = cfg.num_key_value_heads;
    const headDim = C / heads;
    for (const [b, t, target] of [[batch, seq, undefined], [2, 512, 1.2]] as const) {
      const name = `attention fwd+bwd b=${b} t=${t} h=${heads} hkv=${kvHeads} d=${headDim}`;
      const ours = await timeMicro(name, async () => (await kernels.timeAttention({ b, t, h: heads, hkv: kvHeads, d: headDim, repeats: 1, threads })).msFwdBwd, micro);
      const peer = await runPeer('attention', { batch: b, heads, kvHeads, seq: t, headDim, threads, repeats: peerRepeats(ours.stats.count), warmup: micro.warmupIterations + 1 });
      const sdpa = peer.ok && typeof peer.result.impl === 'string' ? peer.result.impl : 'sdpa';
      rows.push(computeRow(name, attentionFlops({ b, t, h: heads, d: headDim }), 'ms', ours, peer, 'samplesFwdBwdMs', sdpa, target));
    }
    return withPeak(before, await measurePeak(threads, options.quick), rows, 'rows');
  },
};

export const suite = kernelsSuite;
