// `--suite gpu` (`npm run bench:gpu`): the CUDA backend beside its peers in the same run. Matmul TFLOP/s
// at 4096^3 and at open-llama-3B's linear shapes against cuBLAS, reached through the PyTorch peer
// (bench/peers/matmul.py: torch.mm in bf16 is a cuBLAS call, loaded at run time by torch; no cuBLAS in
// the engine or the addon); causal attention forward+backward at d 128 against PyTorch SDPA
// (bench/peers/attention.py, bf16); a training step of the small and base presets in tokens/s against
// bench/peers/train_step.py (bf16 autocast, fp32 master weights, as our engine trains); attention backward
// alone beside SDPA's; and the bandwidth-bound ops (RMSNorm, RoPE, SwiGLU, the residual add,
// cross-entropy, AdamW, embedding) in GB/s beside the HBM bandwidth a device-to-device copy reaches in the
// same run, and beside PyTorch eager on the same shapes (bench/peers/bandwidth.py); the training steps' MFU
// against the bf16 peak measured in the same run (bench/mfu.ts), with the per-op profile. Each kernel is checked
// against the CPU backend (under the rows of native/cuda/parity.tsv) before it is timed. Rows always
// print: without a GPU (or a peer) the row says why.
import { pseudoRandom } from '../inputs.js';
import type { BenchOptions, BenchRow, BenchSuite } from '../suite.js';
import { kernels } from '../../lib/engine/kernels.js';
import { Engine } from '../../lib/engine/engine.js';
import { presetConfig, type PresetName } from '../../lib/model/config.js';
import type { CudaAvailability, TimedOp } from '../../lib/engine/native.js';
import { attentionPath, loadParityTable, maxAbsOf, rms, tolerance, withinBound, type ParityPath } from '../../lib/engine/parity-table.js';
import { runPeer, type PeerOutcome } from './peers.js';
import { mfu, trainingFlopsPerToken } from '../mfu.js';


/** The peer's number and who it was (torch version, GPU, dtype), or why there is none. */
function peerOf(outcome: PeerOutcome, key: string, scale: number, what: string): Pick<BenchRow, 'peer' | 'peerName' | 'peerSkipped'> {
  if (!outcome.ok) return { peerSkipped: outcome.reason.split('\n')[0].slice(0, 300) };
  const v = outcome.result[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) return { peerSkipped: `the peer's result has no number '${key}'` };
  const r = outcome.result;
  return { peer: v * scale, peerName: `${what}, torch ${String(r.torch)} ${String(r.dtype)} on ${String(r.device)}` };
}

/**
 * CUDA against the CPU under the parity table's row (op, tensor, path), before a timing: throws naming the
 * worst element so that a wrong kernel is never timed.
 */
function assertParity(what: string, op: string, tensor: string, path: ParityPath, got: ArrayLike<number>, want: ArrayLike<number>, sqrtK = 0): void {
  const rule = loadParityTable().rule(op, tensor, path);
  const tol = tolerance(rule, { sqrtK, maxRef: maxAbsOf(want) });
  for (let i = 0; i < want.length; i++) {
    if (rule.path === 'exact' ? !Object.is(got[i], want[i]) : !withinBound(got[i], want[i], tol)) {
      throw new Error(`CUDA ${what} check failed at ${i}: ${got[i]} vs ${want[i]} (${rule.source}); not timing a wrong kernel`);
    }
  }
}

/** Checks the CUDA GEMM (the path the timing uses: bf16 tensor cores) against the CPU on a small problem. */
function checkMatmul(transA: boolean, transB: boolean): void {
  const m = 160, n = 96, k = 320;
  const a = pseudoRandom(m * k, 1);
  const b = pseudoRandom(k * n, 2);
  const want = kernels.matmul(a, b, { m, n, k, transA, transB, device: 'cpu' });
  const got = kernels.matmul(a, b, { m, n, k, transA, transB, device: 'cuda' });
  assertParity(`matmul (transA ${transA}, transB ${transB})`, 'matmul', 'C', 'bf16', got, want, Math.sqrt(k) * rms(a) * rms(b));
}

function checkAttention(d = 128): void {
  const dims = { b: 1, t: 70, h: 4, hkv: 2, d };
  const q = pseudoRandom(70 * 4 * d, 3);
  const k = pseudoRandom(70 * 2 * d, 4);
  const v = pseudoRandom(70 * 2 * d, 5);
  const want = kernels.attentionForward(q, k, v, { ...dims, device: 'cpu' }).out;
  const got = kernels.attentionForward(q, k, v, { ...dims, device: 'cuda' }).out;
  assertParity(`attention at d ${d}`, 'attentionForward', 'out', attentionPath(d, dims.t), got, want);
}

/** The bandwidth-bound ops the GB/s rows time, each on CUDA against the CPU on a small problem. */
function checkBandwidthOps(): void {
  const on = (device: 'cpu' | 'cuda') => ({ device });
  const n = 3001, rows = 37, c = 96, v = 50;
  const x = pseudoRandom(rows * c, 11), w = pseudoRandom(c, 12), dy = pseudoRandom(rows * c, 13);
  const fc = kernels.rmsnormForward(x, w, { n: rows, c, ...on('cpu') });
  const fg = kernels.rmsnormForward(x, w, { n: rows, c, ...on('cuda') });
  assertParity('rmsnormForward', 'rmsnormForward', 'out', 'fp32', fg.out, fc.out);
  const bc = kernels.rmsnormBackward(dy, x, w, fc.rstd, { n: rows, c, ...on('cpu') });
  const bg = kernels.rmsnormBackward(dy, x, w, fc.rstd, { n: rows, c, ...on('cuda') });
  assertParity('rmsnormBackward', 'rmsnormBackward', 'dx', 'fp32', bg.dx, bc.dx);
  assertParity('rmsnormBackward', 'rmsnormBackward', 'dw', 'fp32', bg.dw, bc.dw, Math.sqrt(rows) * rms(dy));
  const r = { b: 2, t: 9, h: 3, d: 100 };
  const xr = pseudoRandom(2 * 9 * 3 * 100, 14);
  assertParity('ropeForward', 'ropeForward', 'out', 'fp32', kernels.ropeForward(xr, { ...r, ...on('cuda') }), kernels.ropeForward(xr, { ...r, ...on('cpu') }));
  assertParity('ropeBackward', 'ropeBackward', 'dx', 'fp32', kernels.ropeBackward(xr, { ...r, ...on('cuda') }), kernels.ropeBackward(xr, { ...r, ...on('cpu') }));
  const g = pseudoRandom(n, 15), u = pseudoRandom(n, 16), d = pseudoRandom(n, 17);
  assertParity('swigluForward', 'swigluForward', 'out', 'fp32', kernels.swigluForward(g, u, on('cuda')), kernels.swigluForward(g, u, on('cpu')));
  const sc = kernels.swigluBackward(d, g, u, on('cpu')), sg = kernels.swigluBackward(d, g, u, on('cuda'));
  assertParity('swigluBackward', 'swigluBackward', 'dgate', 'fp32', sg.dgate, sc.dgate);
  assertParity('swigluBackward', 'swigluBackward', 'dup', 'fp32', sg.dup, sc.dup);
  const logits = pseudoRandom(rows * 1000, 18);
  const targets = Int32Array.from({ length: rows }, (_, i) => (i % 5 === 3 ? -100 : (i * 7919) % 1000));
  const cc = kernels.crossEntropy(logits, targets, { n: rows, v: 1000, dscale: 1 / rows, ...on('cpu') });
  const cg = kernels.crossEntropy(logits, targets, { n: rows, v: 1000, dscale: 1 / rows, ...on('cuda') });
  assertParity('crossEntropy', 'crossEntropy', 'losses', 'fp32', cg.losses, cc.losses);
  assertParity('crossEntropy', 'crossEntropy', 'dlogits', 'fp32', cg.dlogits, cc.dlogits);
  const hp = { lr: 1e-4, weightDecay: 0.01, step: 3 };
  const m = pseudoRandom(n, 19).map((t) => 0.1 * t), vv = pseudoRandom(n, 20).map((t) => 0.01 * t * t);
  const ac = kernels.adamw(g, u, m, vv, { ...hp, ...on('cpu') }), ag = kernels.adamw(g, u, m, vv, { ...hp, ...on('cuda') });
  for (const key of ['param', 'm', 'v'] as const) assertParity('adamw', 'adamw', key, 'fp32', ag[key], ac[key]);
  const tokens = Int32Array.from({ length: rows * 3 }, (_, i) => (i * 31) % v);
  const wte = pseudoRandom(v * c, 21), dout = pseudoRandom(rows * 3 * c, 22);
  const e = { n: rows * 3, c, v };
  assertParity('embeddingForward', 'embeddingForward', 'out', 'exact', kernels.embeddingForward(tokens, wte, { ...e, ...on('cuda') }), kernels.embeddingForward(tokens, wte, { ...e, ...on('cpu') }));
  assertParity('embeddingBackward', 'embeddingBackward', 'dwte', 'exact', kernels.embeddingBackward(dout, tokens, { ...e, ...on('cuda') }), kernels.embeddingBackward(dout, tokens, { ...e, ...on('cpu') }));
}

/** A row saying a section did not run to the end, and why (the rows it finished are kept). */
function failed(name: string, unit: string, higherIsBetter: boolean, err: unknown): BenchRow {
  const why = err instanceof Error ? err.message : String(err);
  return { name: `${name} (stopped)`, unit, value: Number.NaN, higherIsBetter, peerSkipped: `failed: ${why.split('\n')[0].slice(0, 300)}` };
}

interface Work {
  label: string;
  m: number;
  n: number;
  k: number;
  transA?: boolean;
  transB?: boolean;
}

const MATMULS: Work[] = [
  { label: '4096x4096x4096', m: 4096, n: 4096, k: 4096 },
  // open-llama-3B (hidden 3200, intermediate 8640), 2048 tokens: y = x W^T, and the weight gradient dW = dy^T x.
  { label: '3B q/o_proj fwd 2048x3200x3200', m: 2048, n: 3200, k: 3200, transB: true },
  { label: '3B gate/up_proj fwd 2048x8640x3200', m: 2048, n: 8640, k: 3200, transB: true },
  { label: '3B down_proj fwd 2048x3200x8640', m: 2048, n: 3200, k: 8640, transB: true },
  { label: '3B down_proj bwd dx 2048x8640x3200', m: 2048, n: 8640, k: 3200 },
  { label: '3B up_proj bwd dW 8640x3200x2048', m: 8640, n: 3200, k: 2048, transA: true },
];
const PRESETS_TIMED: PresetName[] = ['small', 'base'];

interface AttentionShape {
  t: number;
  b: number;
  h: number;
  hkv: number;
  d: number;
}

function attentionShapes(quick: boolean): AttentionShape[] {
  return (quick ? [512, 2048, 4096] : [512, 1024, 2048, 4096]).map((t) => ({ t, b: Math.max(1, 8192 / t), h: 16, hkv: 4, d: 128 }));
}

/** What a section gets: the options, the GPU's description, and where to put each row as it is measured. */
interface Section {
  options: BenchOptions;
  avail: CudaAvailability;
  note: string;
  push(row: BenchRow): void;
}

async function matmulSection({ options, avail, note, push }: Section): Promise<void> {
  checkMatmul(false, false);
  checkMatmul(false, true);
  checkMatmul(true, false);
  const repeats = options.quick ? 5 : 20;
  // On Hopper the row is the wgmma kernel on bf16 operands (what cuBLAS gets from torch.mm in bf16);
  // the note gives the fp32 interface the model calls (conversion to bf16 included).
  const hopper = (avail.gemm ?? '').includes('wgmma');
  for (const w of MATMULS) {
    const fp32 = await kernels.timeMatmul({ m: w.m, n: w.n, k: w.k, transA: w.transA, transB: w.transB, repeats, device: 'cuda' });
    const bf16 = hopper ? await kernels.timeMatmul({ m: w.m, n: w.n, k: w.k, repeats, device: 'cuda', operands: 'bf16' }) : null;
    // Where the kernel picks a tile narrower than 256 (whole waves), the 256-wide rate beside it.
    const wide = bf16 && bf16.tileWidth !== 256
      ? await kernels.timeMatmul({ m: w.m, n: w.n, k: w.k, repeats, device: 'cuda', operands: 'bf16', tileWidth: 256 })
      : null;
    const ours = bf16 ?? fp32;
    const peer = await runPeer('matmul', { m: w.m, n: w.n, k: w.k, repeats, warmup: 3, device: 'cuda', dtype: 'bf16', threads: options.threads });
    push({
      name: `matmul ${w.label}${bf16 ? ' (bf16 operands)' : ''}`,
      unit: 'TFLOP/s',
      value: ours.medianGflops / 1000,
      higherIsBetter: true,
      ...peerOf(peer, 'gflops', 1 / 1000, 'cuBLAS via torch.mm (A@B, no transposes)'),
      note: bf16
        ? `${note}: wgmma + TMA on bf16 A and B^T, 128x${bf16.tileWidth} tiles, median of ${repeats} (best ${(bf16.gflops / 1000).toFixed(1)})${wide ? `; 128x256 tiles ${(wide.medianGflops / 1000).toFixed(1)}` : ''}; through the fp32 interface (op(A), op(B) converted each call) ${(fp32.medianGflops / 1000).toFixed(1)}`
        : `${note}: ${avail.gemm ?? 'bf16 tensor cores'}, fp32 in memory; median of ${repeats} (best ${(fp32.gflops / 1000).toFixed(1)})`,
    });
  }
}

// Causal: about half of the 4·b·h·t²·d forward FLOPs, 2.5x that for forward+backward.
function attentionRate(a: AttentionShape, ms: number): string {
  return `~${((3.5 * 2 * a.b * a.h * a.t * a.t * a.d) / (ms * 1e-3) / 1e12).toFixed(1)} TFLOP/s`;
}

const attentionName = (a: AttentionShape): string =>
  `attention fwd+bwd b=${a.b} t=${a.t} h=${a.h} hkv=${a.hkv} d=${a.d} causal`;
const attentionBwdName = (a: AttentionShape): string =>
  `attention bwd b=${a.b} t=${a.t} h=${a.h} hkv=${a.hkv} d=${a.d} causal`;

/** SDPA on the same shape (bf16), and its forward-alone time as a note fragment. */
async function attentionPeer(a: AttentionShape, repeats: number, options: BenchOptions) {
  const peer = await runPeer('attention', { batch: a.b, heads: a.h, kvHeads: a.hkv, seq: a.t, headDim: a.d, causal: true, repeats, warmup: 2, device: 'cuda', dtype: 'bf16', threads: options.threads });
  const peerFwd = peer.ok && typeof peer.result.msFwd === 'number' ? ` (peer ${peer.result.msFwd.toFixed(2)} ms)` : '';
  return { peer, peerFwd };
}

async function attentionSection({ options, note, push }: Section): Promise<void> {
  checkAttention();
  for (const a of attentionShapes(options.quick)) {
    const r = options.quick ? 3 : 10;
    const dims = { b: a.b, t: a.t, h: a.h, hkv: a.hkv, d: a.d, repeats: r, device: 'cuda' as const };
    const ours = await kernels.timeAttention(dims);
    // The backward that recomputes S and dP for dQ instead of keeping dS (attentionBackward 'low-memory').
    const recompute = await kernels.timeAttention({ ...dims, kernel: 'flash-recompute' });
    const { peer, peerFwd } = await attentionPeer(a, r, options);
    push({
      name: attentionName(a),
      unit: 'ms',
      value: ours.medianMsFwdBwd,
      higherIsBetter: false,
      ...peerOf(peer, 'msFwdBwd', 1, 'PyTorch SDPA'),
      note: `${note}: flash kernels (bf16 mma.sync, cp.async, ldmatrix; fp32 in memory, packed to bf16 per call); forward alone ${ours.medianMsFwd.toFixed(2)} ms${peerFwd}; with dQ recomputed instead of from the kept dS ${recompute.medianMsFwdBwd.toFixed(2)} ms; ${attentionRate(a, ours.medianMsFwdBwd)}`,
    });
    // The backward alone (from the forward's out and lse): about 2.5x the forward's FLOPs.
    push({
      name: attentionBwdName(a),
      unit: 'ms',
      value: ours.medianMsBwd,
      higherIsBetter: false,
      ...peerOf(peer, 'msBwd', 1, 'PyTorch SDPA backward (graph kept)'),
      note: `${note}: flash backward (dK/dV pass keeping dS, then dQ = dS K), median of ${r}; with dQ recomputed ${recompute.medianMsBwd.toFixed(2)} ms; ~${((2.5 * 2 * a.b * a.h * a.t * a.t * a.d) / (ours.medianMsBwd * 1e-3) / 1e12).toFixed(1)} TFLOP/s`,
    });
  }
}

interface BandwidthWork {
  label: string;
  shape: TimedOp;
}

/**
 * The bandwidth rows' shapes: open-llama-3B's (hidden 3200, intermediate 8640, 32 heads of 100, vocab
 * 32000) at 8192 tokens (4096 with --quick), every tensor far larger than the L2 cache; AdamW over 64M
 * parameters (32M).
 */
function bandwidthWork(quick: boolean): { copy: BandwidthWork; ops: BandwidthWork[] } {
  const tokens = quick ? 4096 : 8192;
  const seqs = tokens / 2048;
  const params = quick ? 2 ** 25 : 2 ** 26;
  const copyN = quick ? 2 ** 26 : 2 ** 27;
  return {
    copy: { label: `device-to-device copy ${(copyN * 4) / 2 ** 20} MiB`, shape: { op: 'copy', n: copyN } },
    ops: [
      { label: `residual add ${tokens}x3200`, shape: { op: 'add', n: tokens * 3200 } },
      { label: `RMSNorm fwd ${tokens}x3200`, shape: { op: 'rmsnormForward', n: tokens, c: 3200 } },
      { label: `RMSNorm bwd ${tokens}x3200`, shape: { op: 'rmsnormBackward', n: tokens, c: 3200 } },
      { label: `RoPE fwd b=${seqs} t=2048 h=32 d=100`, shape: { op: 'ropeForward', b: seqs, t: 2048, h: 32, d: 100 } },
      { label: `RoPE bwd b=${seqs} t=2048 h=32 d=100`, shape: { op: 'ropeBackward', b: seqs, t: 2048, h: 32, d: 100 } },
      { label: `SwiGLU fwd ${tokens}x8640`, shape: { op: 'swigluForward', n: tokens * 8640 } },
      { label: `SwiGLU bwd ${tokens}x8640`, shape: { op: 'swigluBackward', n: tokens * 8640 } },
      { label: `cross-entropy ${tokens / 4}x32000 (losses and dlogits)`, shape: { op: 'crossEntropy', n: tokens / 4, v: 32000 } },
      { label: `AdamW step ${params / 2 ** 20}M params`, shape: { op: 'adamw', n: params } },
      { label: `embedding fwd ${tokens}x3200 of 32000`, shape: { op: 'embeddingForward', n: tokens, c: 3200, v: 32000 } },
      { label: `embedding bwd ${tokens}x3200 of 32000`, shape: { op: 'embeddingBackward', n: tokens, c: 3200, v: 32000 } },
    ],
  };
}

const bandwidthName = (w: BandwidthWork): string => `bandwidth ${w.label}`;

/** One op's numbers from the bandwidth peer's batch, as GB/s of our byte count; or why there are none. */
function bandwidthPeer(outcome: PeerOutcome, index: number, bytes: number, copyGbps: number): Pick<BenchRow, 'peer' | 'peerName' | 'peerSkipped'> & { fraction?: string } {
  if (!outcome.ok) return { peerSkipped: outcome.reason.split('\n')[0].slice(0, 300) };
  const results = outcome.result.results;
  const r = Array.isArray(results) ? (results[index] as Record<string, unknown> | undefined) : undefined;
  const ms = r?.msPerCall;
  if (!r || typeof ms !== 'number' || !(ms > 0)) return { peerSkipped: `the bandwidth peer's result ${index} has no msPerCall` };
  const gbps = bytes / (ms * 1e-3) / 1e9;
  return {
    peer: gbps,
    peerName: `${String(r.impl)}, torch ${String(r.torch)} ${String(r.dtype)} on ${String(r.device)}`,
    fraction: `peer ${(gbps / copyGbps).toFixed(2)} of it (${ms.toFixed(3)} ms)`,
  };
}

async function bandwidthSection({ options, note, push }: Section): Promise<void> {
  checkBandwidthOps();
  const { copy, ops } = bandwidthWork(options.quick);
  const repeats = options.quick ? 5 : 10;
  const calls = 10;
  const all = [copy, ...ops];
  // One peer process for every row (torch imports once), fp32 as our ops run.
  const peer = await runPeer('bandwidth', { ops: all.map((w) => w.shape), repeats, calls, warmup: 2, device: 'cuda', dtype: 'fp32', threads: options.threads });
  const hbm = await kernels.timeOp({ ...copy.shape, repeats, calls, device: 'cuda' });
  const copyPeer = bandwidthPeer(peer, 0, hbm.bytes, hbm.medianGbps);
  push({
    name: bandwidthName(copy),
    unit: 'GB/s',
    value: hbm.medianGbps,
    higherIsBetter: true,
    ...copyPeer,
    note: `${note}: the HBM bandwidth the rows below are measured against: Backend::copy (cudaMemcpyAsync device to device), read + written bytes ${(hbm.bytes / 2 ** 30).toFixed(2)} GiB per call, median of ${repeats} batches of ${calls} (best ${hbm.gbps.toFixed(0)} GB/s)`,
  });
  for (let i = 0; i < ops.length; i++) {
    const w = ops[i];
    const ours = await kernels.timeOp({ ...w.shape, repeats, calls, device: 'cuda' });
    const { fraction, ...p } = bandwidthPeer(peer, i + 1, ours.bytes, hbm.medianGbps);
    push({
      name: bandwidthName(w),
      unit: 'GB/s',
      value: ours.medianGbps,
      higherIsBetter: true,
      ...p,
      note: `${note}: ${(ours.medianGbps / hbm.medianGbps).toFixed(2)} of the ${hbm.medianGbps.toFixed(0)} GB/s copy measured in this run${fraction ? `, ${fraction}` : ''}; ${(ours.bytes / 2 ** 20).toFixed(0)} MiB read + written per call (the least the op must move), ${ours.medianMs.toFixed(3)} ms, median of ${repeats} batches of ${calls}`,
    });
  }
}

async function loraSection({ options, note, push }: Section): Promise<void> {
  for (const row of await loraStep3b(options, note)) push(row);
}

/**
 * The device's dense bf16 rate as measured in this run, the denominator of MFU: the faster (by median) of
 * our wgmma GEMM on bf16 operands (Hopper) and cuBLAS through torch.mm in bf16, at 8192^3.
 */
async function measuredBf16Peak(options: BenchOptions, avail: CudaAvailability): Promise<{ flops: number; source: string }> {
  const size = 8192, repeats = options.quick ? 5 : 10;
  const found: Array<{ flops: number; source: string }> = [];
  if ((avail.gemm ?? '').includes('wgmma')) {
    const ours = await kernels.timeMatmul({ m: size, n: size, k: size, repeats, device: 'cuda', operands: 'bf16' });
    found.push({ flops: ours.medianGflops * 1e9, source: `our wgmma GEMM ${size}^3 bf16` });
  }
  const peer = await runPeer('matmul', { m: size, n: size, k: size, repeats, warmup: 3, device: 'cuda', dtype: 'bf16', threads: options.threads });
  if (peer.ok && typeof peer.result.gflops === 'number' && peer.result.gflops > 0) {
    found.push({ flops: peer.result.gflops * 1e9, source: `cuBLAS via torch.mm ${size}^3 bf16` });
  }
  if (found.length === 0) throw new Error(`no bf16 peak measured: no sm_90a GEMM here and the matmul peer gave none (${peer.ok ? 'no gflops' : peer.reason.split('\n')[0]})`);
  return found.reduce((a, b) => (b.flops > a.flops ? b : a));
}

async function trainSection({ options, avail, note, push }: Section): Promise<void> {
  const peak = await measuredBf16Peak(options, avail);
  for (const preset of PRESETS_TIMED) {
    const config = presetConfig(preset);
    const batch = preset === 'base' ? 16 : 32;
    const seq = Math.min(256, config.max_position_embeddings);
    const steps = options.quick ? 5 : 15;
    const engine = await Engine.create({ config, device: 'cuda', seed: 1 });
    let rate: number, parameters: number;
    try {
      rate = await trainRate(engine, batch, seq, steps, config.vocab_size);
      parameters = engine.info().parameterCount;
      // Where the step's time goes (after the timing, which runs unprofiled): two more steps, op by op.
      engine.profile(true);
      await trainRate(engine, batch, seq, 2, config.vocab_size, 0);
      process.stderr.write(`[gpu] train step ${preset} (full), device time per op over 2 steps:\n${engine.profile(false)}`);
    } finally {
      engine.dispose();
    }
    const adamw = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: 1 };
    const peer = await runPeer('train_step', { config, lora: null, batch, seq, steps, warmup: 2, adamw, device: 'cuda', dtype: 'bf16', threads: options.threads });
    const peerName = peer.ok ? String(peer.result.impl) : 'PyTorch';
    push({
      name: `train step ${preset} (full) b=${batch} t=${seq}`,
      unit: 'tokens/s',
      value: rate,
      higherIsBetter: true,
      ...peerOf(peer, 'tokensPerSecond', 1, peerName),
      note: `${note}: forwardBackward + AdamW step (clip 1), ${steps} steps after 3 warm-up`,
    });
    const flops = trainingFlopsPerToken(config, parameters, seq);
    push({
      name: `train step ${preset} (full) b=${batch} t=${seq} MFU`,
      unit: '%',
      value: 100 * mfu(rate, flops, peak.flops),
      higherIsBetter: true,
      ...peerOf(peer, 'tokensPerSecond', (100 * flops) / peak.flops, peerName),
      note: `${note}: ${(flops / 1e6).toFixed(1)} MFLOP a token (6N + 12·L·H·D·T, N = ${(parameters / 1e6).toFixed(1)}M) at ${Math.round(rate)} tokens/s over the bf16 peak measured in this run, ${(peak.flops / 1e12).toFixed(0)} TFLOP/s (${peak.source}); the per-op profile is in the log`,
    });
  }
}

/** The sections in the order they run (GPU_BENCH_SECTIONS names a subset), with the row a failure leaves. */
// The LoRA step first: it is the issue's headline number, and a run cut short by its time box keeps it.
const SECTIONS: Array<{ name: string; run: (s: Section) => Promise<void>; failed: [string, string, boolean] }> = [
  { name: 'lora', run: loraSection, failed: ['LoRA step open-llama-3b', 'tokens/s', true] },
  { name: 'matmul', run: matmulSection, failed: ['matmul', 'TFLOP/s', true] },
  { name: 'attention', run: attentionSection, failed: ['attention fwd+bwd', 'ms', false] },
  { name: 'bandwidth', run: bandwidthSection, failed: ['bandwidth', 'GB/s', true] },
  { name: 'train', run: trainSection, failed: ['train step', 'tokens/s', true] },
];

export const gpuSuite: BenchSuite = {
  name: 'gpu',
  description: 'CUDA matmul vs cuBLAS (torch.mm bf16), attention fwd+bwd and bwd vs PyTorch SDPA, bandwidth-bound ops in GB/s vs the copy bandwidth and PyTorch, LoRA and training steps vs PyTorch (+PEFT), on one GPU',
  async run(options: BenchOptions): Promise<BenchRow[]> {
    const avail = kernels.cudaAvailable();
    if (!avail.ok) {
      const why = `no GPU: ${avail.reason}`;
      const row = (name: string, unit: string, higherIsBetter: boolean): BenchRow => ({ name, unit, value: Number.NaN, higherIsBetter, peerSkipped: `not run: ${why}` });
      return [
        ...MATMULS.map((w) => row(`matmul ${w.label}`, 'TFLOP/s', true)),
        ...attentionShapes(options.quick).flatMap((a) => [row(attentionName(a), 'ms', false), row(attentionBwdName(a), 'ms', false)]),
        ...(({ copy, ops }) => [copy, ...ops])(bandwidthWork(options.quick)).map((w) => row(bandwidthName(w), 'GB/s', true)),
        row('LoRA step open-llama-3b r=8 a=32 all projections, frozen fp32', 'tokens/s', true),
        row('LoRA step open-llama-3b r=8 a=32 all projections, frozen bf16', 'tokens/s', true),
        row('LoRA step open-llama-3b r=8 a=32 all projections, frozen bf16, gradient checkpointing', 'tokens/s', true),
        ...PRESETS_TIMED.flatMap((p) => [row(`train step ${p} (full)`, 'tokens/s', true), row(`train step ${p} (full) MFU`, '%', true)]),
      ];
    }
    // Each row is printed to stderr as soon as it is measured, so a run cut short by its time box still
    // leaves the rows it finished in the log; a section that fails leaves a row saying why, and the rest run.
    const rows: BenchRow[] = [];
    const push = (row: BenchRow): void => {
      rows.push(row);
      const peer = row.peer !== undefined ? `${row.peer.toPrecision(4)} ${row.unit} (${row.peerName})` : row.peerSkipped;
      process.stderr.write(`[gpu] ${row.name}: ${row.value.toPrecision(4)} ${row.unit}; peer ${peer}${row.note ? `; ${row.note}` : ''}\n`);
    };
    process.stderr.write(`[gpu] ${avail.device}: GEMM ${avail.gemm ?? 'unknown'}\n`);
    // GPU_BENCH_SECTIONS=lora,matmul,attention,bandwidth,train runs a subset (GPU time is scarce); unset, all.
    const only = (process.env.GPU_BENCH_SECTIONS ?? '').split(',').map((x) => x.trim()).filter(Boolean);
    const section: Section = { options, avail, note: `ours on ${avail.device}`, push };
    for (const { name, run, failed: [label, unit, higherIsBetter] } of SECTIONS) {
      if (only.length > 0 && !only.includes(name)) continue;
      try {
        await run(section);
      } catch (err) {
        push(failed(label, unit, higherIsBetter, err));
      }
    }
    return rows;
  },
};

/** The LoRA step issue 7 names: the open-llama-3b preset, random weights, rank 8, alpha 32, all seven
 * projections, beside transformers + PEFT with its frozen base in bf16 and SDPA attention (what one would
 * run to LoRA-tune a 3B model in PyTorch), once with our frozen base in fp32 and once in bf16
 * (frozenWeights). Tokens/s and peak memory: ours counts every allocation of the engine's backend (scratch
 * included), the peer's is torch.cuda.max_memory_allocated. */
async function loraStep3b(options: BenchOptions, note: string): Promise<BenchRow[]> {
  const config = presetConfig('open-llama-3b');
  const lora = { r: 8, alpha: 32, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
  const batch = 8, seq = 256;
  const steps = options.quick ? 5 : 15;
  const adamw = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, max_grad_norm: 1 };
  const peer = await runPeer('train_step', {
    config, lora, batch, seq, steps, warmup: 2, adamw, device: 'cuda', dtype: 'bf16', threads: options.threads,
    baseWeights: 'bf16', attention: 'sdpa', impl: 'hf',
  });
  const peerMemory = peer.ok && typeof peer.result.peakGpuMb === 'number' ? `${(peer.result.peakGpuMb / 1024).toFixed(1)} GiB peak` : 'peak unknown';
  const rows: BenchRow[] = [];
  const variants = [
    { frozenWeights: 'fp32', label: 'frozen fp32' },
    { frozenWeights: 'bf16', label: 'frozen bf16' },
    // Memory for time: one layer's activations (PEFT's counterpart is gradient_checkpointing_enable()).
    { frozenWeights: 'bf16', label: 'frozen bf16, gradient checkpointing', gradientCheckpointing: true },
  ] as const;
  for (const variant of variants) {
    const { frozenWeights, label } = variant;
    const gradientCheckpointing = 'gradientCheckpointing' in variant && variant.gradientCheckpointing;
    // Random base weights without drawing 3.4B normals on the host: one uniform buffer (std 0.02), sliced.
    const engine = await Engine.create({ config, lora, device: 'cuda', seed: 1, initializeBase: false, frozenWeights, gradientCheckpointing });
    let rate: number, memory: number;
    try {
      const infos = engine.parameters().filter((t) => !t.trainable);
      const largest = Math.max(...infos.map((t) => t.shape.reduce((a, b) => a * b, 1)));
      const noise = pseudoRandom(largest, 7).map((x) => x * 0.02 * Math.sqrt(12));
      for (const t of infos) {
        const n = t.shape.reduce((a, b) => a * b, 1);
        engine.setParameter(t.name, t.shape.length === 1 ? new Float32Array(n).fill(1) : noise.subarray(0, n));
      }
      rate = await trainRate(engine, batch, seq, steps, config.vocab_size);
      memory = engine.info().peakAllocatedBytes;
      // Where the step's time goes (after the timing, which runs unprofiled): two more steps, op by op.
      engine.profile(true);
      await trainRate(engine, batch, seq, 2, config.vocab_size, 0);
      process.stderr.write(`[gpu] LoRA step open-llama-3b (${label}), device time per op over 2 steps:\n${engine.profile(false)}`);
    } finally {
      engine.dispose();
    }
    rows.push({
      name: `LoRA step open-llama-3b r=8 a=32 all projections b=${batch} t=${seq}, ${label}`,
      unit: 'tokens/s',
      value: rate,
      higherIsBetter: true,
      ...peerOf(peer, 'tokensPerSecond', 1, peer.ok ? String(peer.result.impl) : 'transformers + PEFT'),
      note: `${note}: peak memory ours ${(memory / 2 ** 30).toFixed(1)} GiB (every device allocation, scratch included; frozen base in ${frozenWeights}), peer ${peerMemory}`,
    });
  }
  return rows;
}

async function trainRate(engine: Engine, batch: number, seq: number, steps: number, vocab: number, warmup = 3): Promise<number> {
  const tokens = Int32Array.from({ length: batch * seq }, (_, i) => (i * 7919 + 13) % vocab);
  const targets = Int32Array.from({ length: batch * seq }, (_, i) => ((i + 1) % seq === 0 ? -100 : tokens[i + 1]));
  const hp = { lr: 1e-3, weightDecay: 0.01, maxGradNorm: 1 };
  for (let i = 0; i < warmup; i++) {
    await engine.forwardBackward(tokens, targets, { batch, seq });
    await engine.step(hp);
  }
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) {
    await engine.forwardBackward(tokens, targets, { batch, seq });
    await engine.step(hp);
  }
  return (batch * seq * steps) / ((performance.now() - t0) / 1000);
}

export const suite = gpuSuite;
