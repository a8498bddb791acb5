// `--suite kernels`: the CPU matmul at the tiny preset's shapes and at 1024^3, and attention forward+backward,
// each checked against a float64 reference before it is timed, and each beside its PyTorch peer.
import { pseudoRandom } from '../inputs.js';
import type { BenchOptions, BenchRow, BenchSuite } from '../suite.js';
import { kernels } from '../../lib/engine/kernels.js';
import { presetConfig } from '../../lib/model/config.js';
import { peerNumber, runPeer } from './peers.js';


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
  description: 'CPU matmul (model shapes, 1024^3) and attention fwd+bwd vs PyTorch fp32 on the same threads',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    if (options.device !== 'cpu') {
      return [{ name: 'kernels', unit: '', value: 0, higherIsBetter: true, peerSkipped: `device ${options.device}: the CUDA kernels are not built yet`, note: 'skipped' }];
    }
    const threads = options.threads;
    const repeats = options.quick ? 5 : 30;
    checkMatmul(true, threads);
    checkMatmul(false, threads);
    const cfg = presetConfig('tiny');
    const batch = 16;
    const seq = 64;
    const N = batch * seq;
    const C = cfg.hidden_size;
    const F = cfg.intermediate_size;
    const kv = (C / cfg.num_attention_heads) * cfg.num_key_value_heads;
    // y = x W^T for the model's linears (M = batch*seq tokens), and the backward's dx = dy W.
    const shapes: Array<{ label: string; m: number; n: number; k: number; transB: boolean }> = [
      { label: `q/o_proj fwd ${N}x${C}x${C}`, m: N, n: C, k: C, transB: true },
      { label: `k/v_proj fwd ${N}x${kv}x${C}`, m: N, n: kv, k: C, transB: true },
      { label: `gate/up_proj fwd ${N}x${F}x${C}`, m: N, n: F, k: C, transB: true },
      { label: `down_proj fwd ${N}x${C}x${F}`, m: N, n: C, k: F, transB: true },
      { label: `gate/up_proj bwd dx ${N}x${C}x${F}`, m: N, n: C, k: F, transB: false },
    ];
    const rows: BenchRow[] = [];
    for (const s of shapes) {
      const ours = await kernels.timeMatmul({ m: s.m, n: s.n, k: s.k, transB: s.transB, repeats, threads });
      const peer = await runPeer('matmul', { m: s.m, n: s.n, k: s.k, threads, repeats });
      rows.push({ name: `matmul ${s.label}`, unit: 'GFLOP/s', value: ours.gflops, higherIsBetter: true, target: 1.0, ...peerNumber(peer, 'gflops') });
    }
    const big = await kernels.timeMatmul({ m: 1024, n: 1024, k: 1024, repeats, threads });
    const bigPeer = await runPeer('matmul', { m: 1024, n: 1024, k: 1024, threads, repeats });
    rows.push({ name: 'matmul 1024x1024x1024', unit: 'GFLOP/s', value: big.gflops, higherIsBetter: true, target: 0.9, ...peerNumber(bigPeer, 'gflops') });

    const heads = cfg.num_attention_heads;
    const kvHeads = cfg.num_key_value_heads;
    const headDim = C / heads;
    const attn = await kernels.timeAttention({ b: batch, t: seq, h: heads, hkv: kvHeads, d: headDim, repeats, threads });
    const attnPeer = await runPeer('attention', { batch, heads, kvHeads, seq, headDim, threads });
    rows.push({
      name: `attention fwd+bwd b=${batch} t=${seq} h=${heads} hkv=${kvHeads} d=${headDim}`,
      unit: 'ms',
      value: attn.msFwdBwd,
      higherIsBetter: false,
      ...peerNumber(attnPeer, 'msFwdBwd'),
    });
    const longSeq = 512;
    const attnLong = await kernels.timeAttention({ b: 2, t: longSeq, h: heads, hkv: kvHeads, d: headDim, repeats: Math.max(3, repeats / 5), threads });
    const attnLongPeer = await runPeer('attention', { batch: 2, heads, kvHeads, seq: longSeq, headDim, threads });
    rows.push({
      name: `attention fwd+bwd b=2 t=${longSeq} h=${heads} hkv=${kvHeads} d=${headDim}`,
      unit: 'ms',
      value: attnLong.msFwdBwd,
      higherIsBetter: false,
      ...peerNumber(attnLongPeer, 'msFwdBwd'),
    });

    return rows;
  },
};

export const suite = kernelsSuite;
