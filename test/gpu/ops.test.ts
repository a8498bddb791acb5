// Every backend op on CUDA against the same op on the CPU backend (fp32, the reference), forward and
// backward, on the same inputs: each output tensor's max abs/rel error is printed beside its tolerance
// and recorded in the parity report. The tolerances are the rows of native/cuda/parity.tsv (one per op,
// tensor and path: fp32, bf16 tensor cores, or bit-exact), the same rows the C++ harness
// (native/cuda/dev/check_backend.cc) reads; docs/ARCHITECTURE.md, Numerics, says how they are derived.
import { basename } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { kernels } from '../../lib/engine/kernels.js';
import { attentionPath, loadParityTable, maxAbsOf, rms, tolerance, type ParityPath } from '../../lib/engine/parity-table.js';
import { randn } from '../engine/reference.js';
import { compareExact, compareTensor, flushReport, type Comparison } from './report.js';

const cuda = inject('cuda');
const cpu = { device: 'cpu' as const };
const gpu = { device: inject('target') };
const table = loadParityTable();

afterAll(() => flushReport(import.meta.url));

/**
 * got against want under the table's row (op, tensor, path); `label` is the op as the report names it
 * (the row's op unless given), `tag` the case. sqrtK: sqrt(K)·rms(A)·rms(B) for the GEMM rows.
 */
function near(op: string, tensor: string, path: ParityPath, tag: string, got: ArrayLike<number>, want: ArrayLike<number>, sqrtK = 0, label = op): Comparison {
  const rule = table.rule(op, tensor, path);
  if (rule.path === 'exact') return compareExact(label, `${tensor} ${tag}`, got, want);
  const tol = tolerance(rule, { sqrtK, maxRef: maxAbsOf(want) });
  return compareTensor(label, `${tensor} ${tag}`, got, want, tol.atol, tol.rtol, `row ${basename(rule.source)}`);
}

/** A bit-exact comparison, held to the table's word that the tensor is exact. */
function exact(op: string, tensor: string, tag: string, got: ArrayLike<number>, want: ArrayLike<number>): Comparison {
  const rule = table.rule(op, tensor, 'exact');
  return compareExact(rule.op, `${tensor} ${tag}`, got, want);
}

function check(cs: Comparison[]): void {
  const bad = cs.filter((c) => !c.ok);
  expect(bad.map((c) => `${c.op} ${c.tensor}: ${c.worstRatio} of tol`)).toEqual([]);
}

/** CUDA attention forward and backward against the CPU: GQA, head dims 64, 100 and 128, T off the tiles. */
function attentionParity(kernel?: 'flash-recompute'): Comparison[] {
  const cs: Comparison[] = [];
  for (const [B, T, H, Hkv, D] of [
    [1, 1, 1, 1, 64],
    [2, 77, 8, 2, 64],
    [1, 100, 8, 2, 128],
    [2, 129, 4, 1, 128],
    [1, 300, 4, 4, 64],
    [1, 257, 4, 1, 100],
  ]) {
    const dims = { b: B, t: T, h: H, hkv: Hkv, d: D };
    const tag = `B${B} T${T} H${H} Hkv${Hkv} D${D}${kernel ? ` [${kernel}]` : ''}`;
    const q = randn(B * T * H * D, 11 + T);
    const k = randn(B * T * Hkv * D, 12 + T);
    const v = randn(B * T * Hkv * D, 13 + T);
    const dout = randn(B * T * H * D, 14 + T);
    const fc = kernels.attentionForward(q, k, v, { ...dims, ...cpu });
    const fg = kernels.attentionForward(q, k, v, { ...dims, ...gpu, kernel });
    const path = attentionPath(D, T);
    for (const key of ['out', 'lse'] as const) cs.push(near('attentionForward', key, path, tag, fg[key], fc[key]));
    const bc = kernels.attentionBackward(dout, q, k, v, fc.out, fc.lse, { ...dims, ...cpu });
    const bg = kernels.attentionBackward(dout, q, k, v, fc.out, fc.lse, { ...dims, ...gpu, kernel });
    for (const key of ['dq', 'dk', 'dv'] as const) cs.push(near('attentionBackward', key, path, tag, bg[key], bc[key]));
    // Deterministic: no atomics in the backward, so a rerun gives the same bits.
    const again = kernels.attentionBackward(dout, q, k, v, fc.out, fc.lse, { ...dims, ...gpu, kernel });
    cs.push(exact('attentionBackward', 'rerun', `dq ${tag}`, again.dq, bg.dq));
  }
  return cs;
}

describe.skipIf(!cuda.ok)(`CUDA ops vs CPU (${cuda.device ?? 'no GPU'})`, () => {
  it('matmul: all four transposes, odd shapes, alpha/beta with C', () => {
    const shapes: Array<[number, number, number]> = [
      [1, 1, 1],
      [7, 5, 3],
      [33, 17, 65],
      [129, 130, 33],
      [300, 8, 1000],
      [513, 257, 127],
      [1000, 1000, 64],
    ];
    const cs: Comparison[] = [];
    for (const [m, n, k] of shapes)
      for (const transA of [false, true])
        for (const transB of [false, true])
          for (const beta of [0, 0.5]) {
            const a = randn(m * k, m + 3 * n + k);
            const b = randn(k * n, 2 * m + n + k + 1);
            const c = randn(m * n, 7);
            const opts = { m, n, k, transA, transB, alpha: 0.75, beta, c: beta ? c : undefined };
            const want = kernels.matmul(a, b, { ...opts, ...cpu });
            const got = kernels.matmul(a, b, { ...opts, ...gpu });
            cs.push(near('matmul', 'C', 'bf16', `M${m} N${n} K${k} tA${+transA} tB${+transB} beta${beta}`, got, want, Math.sqrt(k) * rms(a) * rms(b)));
          }
    check(cs);
  });

  it('LoRA linear forward and backward (with and without dropout, and without LoRA)', () => {
    const M = 77, inDim = 96, out = 130, r = 8, scale = 2;
    const x = randn(M * inDim, 1);
    const w = randn(out * inDim, 2, 0.1);
    const A = randn(r * inDim, 3, 0.1);
    const B = randn(out * r, 4, 0.1);
    const dy = randn(M * out, 5);
    const cs: Comparison[] = [];
    for (const variant of ['no LoRA', 'LoRA', 'LoRA dropout 0.1'] as const) {
      const lora = variant === 'no LoRA' ? {} : { loraA: A, loraB: B, r, scale, dropout: variant === 'LoRA' ? 0 : 0.1, train: true, seed: 11 };
      const opts = { m: M, in: inDim, out, ...lora };
      const fc = kernels.linearForward(x, w, { ...opts, ...cpu });
      const fg = kernels.linearForward(x, w, { ...opts, ...gpu });
      // y = x W^T (K = in) + s (x A^T) B^T: the LoRA term's own error is s·(its GEMM error).
      // The sqrtK terms the rows of linearForward / linearBackward name (native/cuda/parity.tsv).
      cs.push(near('linearForward', 'y', 'bf16', `${variant} M${M} in${inDim} out${out}`, fg.y, fc.y, (1 + scale) * Math.sqrt(inDim) * rms(x) * rms(w)));
      if (fc.h) cs.push(near('linearForward', 'h', 'bf16', variant, fg.h!, fc.h, Math.sqrt(inDim) * rms(x) * rms(A)));
      if (fc.xd) cs.push(exact('linearForward', 'xd', `(dropout mask) ${variant}`, fg.xd!, fc.xd));
      // Backward from the CPU's saved h / xd, so both sides start from the same tensors.
      const bopts = { ...opts, h: fc.h ?? undefined, xd: fc.xd ?? undefined };
      const bc = kernels.linearBackward(dy, x, w, { ...bopts, ...cpu });
      const bg = kernels.linearBackward(dy, x, w, { ...bopts, ...gpu });
      cs.push(near('linearBackward', 'dx', 'bf16', variant, bg.dx, bc.dx, (1 + scale) * Math.sqrt(out) * rms(dy) * rms(w)));
      cs.push(near('linearBackward', 'dw', 'bf16', variant, bg.dw, bc.dw, Math.sqrt(M) * rms(dy) * rms(x)));
      if (bc.dA) {
        // dA = dh^T xd with dh = s dy B (itself a bf16 GEMM); dB = s dy^T h.
        const rmsDh = scale * rms(B) * Math.sqrt(out) * rms(dy);
        cs.push(near('linearBackward', 'dA', 'bf16', variant, bg.dA!, bc.dA, Math.sqrt(M) * rmsDh * rms(x)));
        cs.push(near('linearBackward', 'dB', 'bf16', variant, bg.dB!, bc.dB!, Math.sqrt(M) * rms(dy) * scale * rms(fc.h!)));
      }
    }
    check(cs);
  });

  it('embedding forward and backward (repeated tokens): bit-exact', () => {
    const N = 777, C = 96, V = 50;
    const tokens = Int32Array.from({ length: N }, (_, n) => (n * 31 + Math.floor(n / 7)) % V);
    const wte = randn(V * C, 71);
    const dout = randn(N * C, 72);
    const cs = [
      exact('embeddingForward', 'out', `N${N} C${C} V${V}`, kernels.embeddingForward(tokens, wte, { n: N, c: C, v: V, ...gpu }), kernels.embeddingForward(tokens, wte, { n: N, c: C, v: V, ...cpu })),
      exact('embeddingBackward', 'dwte', `N${N} C${C} V${V}`, kernels.embeddingBackward(dout, tokens, { n: N, c: C, v: V, ...gpu }), kernels.embeddingBackward(dout, tokens, { n: N, c: C, v: V, ...cpu })),
    ];
    check(cs);
  });

  it('RMSNorm forward and backward', () => {
    const cs: Comparison[] = [];
    for (const [N, C] of [
      [1, 8],
      [37, 64],
      [256, 1000],
      [513, 3200],
    ]) {
      const x = randn(N * C, 41 + N);
      const w = randn(C, 42 + C);
      const dy = randn(N * C, 43);
      const fc = kernels.rmsnormForward(x, w, { n: N, c: C, eps: 1e-5, ...cpu });
      const fg = kernels.rmsnormForward(x, w, { n: N, c: C, eps: 1e-5, ...gpu });
      cs.push(near('rmsnormForward', 'out', 'fp32', `N${N} C${C}`, fg.out, fc.out));
      cs.push(near('rmsnormForward', 'rstd', 'fp32', `N${N} C${C}`, fg.rstd, fc.rstd));
      const bc = kernels.rmsnormBackward(dy, x, w, fc.rstd, { n: N, c: C, ...cpu });
      const bg = kernels.rmsnormBackward(dy, x, w, fc.rstd, { n: N, c: C, ...gpu });
      cs.push(near('rmsnormBackward', 'dx', 'fp32', `N${N} C${C}`, bg.dx, bc.dx));
      // dweight sums N rows: its error grows like sqrt(N) (the normalized x has rms 1).
      cs.push(near('rmsnormBackward', 'dw', 'fp32', `N${N} C${C}`, bg.dw, bc.dw, Math.sqrt(N) * rms(dy)));
    }
    check(cs);
  });

  it('RoPE forward and backward, pos0 0 and > 0', () => {
    const cs: Comparison[] = [];
    for (const [B, T, H, D, pos0] of [
      [2, 9, 3, 64, 0],
      [2, 9, 3, 64, 5],
      [1, 33, 4, 128, 100],
    ]) {
      const x = randn(B * T * H * D, 51 + pos0);
      const o = { b: B, t: T, h: H, d: D, pos0, theta: 10000 };
      const tag = `B${B} T${T} H${H} D${D} pos0 ${pos0}`;
      cs.push(near('ropeForward', 'out', 'fp32', tag, kernels.ropeForward(x, { ...o, ...gpu }), kernels.ropeForward(x, { ...o, ...cpu })));
      cs.push(near('ropeBackward', 'dx', 'fp32', tag, kernels.ropeBackward(x, { ...o, ...gpu }), kernels.ropeBackward(x, { ...o, ...cpu })));
    }
    check(cs);
  });

  it('attention forward and backward: GQA, D 64, 100 and 128, T not a multiple of the tile', () => {
    check(attentionParity());
  });

  it('the same with the backward that recomputes S and dP for dQ (kernel flash-recompute)', () => {
    check(attentionParity('flash-recompute'));
  });

  it('attention decode: queries at pos0 > 0 against a KV cache', () => {
    const cs: Comparison[] = [];
    for (const [B, Tq, Tcap, H, Hkv, D, pos0] of [
      [1, 1, 64, 4, 2, 64, 0],
      [2, 1, 512, 8, 2, 128, 300],
      [1, 3, 100, 4, 4, 64, 50],
      [2, 9, 200, 4, 2, 64, 100],
      [1, 20, 64, 2, 1, 128, 30],
      [1, 70, 300, 4, 1, 100, 200],
    ]) {
      const dims = { b: B, t: Tq, h: H, hkv: Hkv, d: D, pos0, tcap: Tcap };
      const tag = `B${B} Tq${Tq} Tcap${Tcap} H${H} Hkv${Hkv} D${D} pos0 ${pos0}`;
      const q = randn(B * Tq * H * D, 21 + pos0);
      const k = randn(B * Tcap * Hkv * D, 22 + pos0);
      const v = randn(B * Tcap * Hkv * D, 23 + pos0);
      const fc = kernels.attentionForward(q, k, v, { ...dims, ...cpu });
      const fg = kernels.attentionForward(q, k, v, { ...dims, ...gpu });
      for (const key of ['out', 'lse'] as const) cs.push(near('attentionForward', key, attentionPath(D, Tq), tag, fg[key], fc[key], 0, 'attentionDecode'));
    }
    check(cs);
  });

  it('SwiGLU forward and backward', () => {
    const cs: Comparison[] = [];
    for (const n of [1, 1000, 3_000_001]) {
      const g = randn(n, 31, 3);
      const u = randn(n, 32);
      const dy = randn(n, 33);
      cs.push(near('swigluForward', 'out', 'fp32', `n${n}`, kernels.swigluForward(g, u, gpu), kernels.swigluForward(g, u, cpu)));
      const bc = kernels.swigluBackward(dy, g, u, cpu);
      const bg = kernels.swigluBackward(dy, g, u, gpu);
      cs.push(near('swigluBackward', 'dgate', 'fp32', `n${n}`, bg.dgate, bc.dgate));
      cs.push(near('swigluBackward', 'dup', 'fp32', `n${n}`, bg.dup, bc.dup));
    }
    check(cs);
  });

  it('dropout forward and backward: the same mask, bit-exact', () => {
    const cs: Comparison[] = [];
    for (const [n, p, seed] of [
      [1, 0.1, 1],
      [1000, 0.1, 1234],
      [1_000_003, 0.3, 2 ** 40 + 5],
    ]) {
      const x = randn(n, 81);
      cs.push(exact('dropoutForward', 'out', `n${n} p${p} seed ${seed}`, kernels.dropoutForward(x, { p, seed, ...gpu }), kernels.dropoutForward(x, { p, seed, ...cpu })));
      cs.push(exact('dropoutBackward', 'dx', `n${n} p${p} seed ${seed}`, kernels.dropoutBackward(x, { p, seed, ...gpu }), kernels.dropoutBackward(x, { p, seed, ...cpu })));
    }
    check(cs);
  });

  it('cross-entropy with ignored (-100) targets: losses and dlogits', () => {
    const cs: Comparison[] = [];
    for (const [N, V] of [
      [1, 10],
      [64, 1000],
      [300, 32000],
    ]) {
      const logits = randn(N * V, 61 + N, 3);
      const targets = Int32Array.from({ length: N }, (_, n) => (n % 5 === 3 ? -100 : (n * 7919) % V));
      const o = { n: N, v: V, dscale: 1 / N };
      const c = kernels.crossEntropy(logits, targets, { ...o, ...cpu });
      const g = kernels.crossEntropy(logits, targets, { ...o, ...gpu });
      cs.push(near('crossEntropy', 'losses', 'fp32', `N${N} V${V}`, g.losses, c.losses));
      cs.push(near('crossEntropy', 'dlogits', 'fp32', `N${N} V${V}`, g.dlogits, c.dlogits));
    }
    check(cs);
  });

  it('AdamW: param, m and v', () => {
    const cs: Comparison[] = [];
    for (const n of [1, 1000, 1_048_576 + 3]) {
      const p = randn(n, 34);
      const g = randn(n, 35);
      const m = randn(n, 36, 0.1);
      const v = randn(n, 37, 0.01).map((x) => x * x);
      const o = { lr: 3e-4, weightDecay: 0.1, step: 7, gradScale: 0.5, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
      const c = kernels.adamw(p, g, m, v, { ...o, ...cpu });
      const r = kernels.adamw(p, g, m, v, { ...o, ...gpu });
      for (const key of ['param', 'm', 'v'] as const) cs.push(near('adamw', key, 'fp32', `n${n}`, r[key], c[key]));
    }
    check(cs);
  });

  it.skipIf(!(kernels.cudaAvailable().gemm ?? '').includes('wgmma'))('Hopper GEMM timing: the tile width it picks, or one forced', async () => {
    const widths = [128, 192, 200, 216, 256];
    const picked = await kernels.timeMatmul({ m: 2048, n: 3200, k: 256, repeats: 1, operands: 'bf16', ...gpu });
    expect(widths).toContain(picked.tileWidth);
    const forced = await kernels.timeMatmul({ m: 300, n: 500, k: 64, repeats: 1, operands: 'bf16', tileWidth: 216, ...gpu });
    expect(forced.tileWidth).toBe(216);
    expect(forced.gflops).toBeGreaterThan(0);
    await expect(kernels.timeMatmul({ m: 64, n: 64, k: 64, repeats: 1, operands: 'bf16', tileWidth: 100, ...gpu })).rejects.toThrow(
      /options\.tileWidth must be one of 256, 216, 200, 192, 128, got 100/,
    );
  });
});
