// Every backend op on CUDA against the same op on the CPU backend (fp32, the reference), forward and
// backward, on the same inputs: each output tensor's max abs/rel error is printed beside its tolerance
// and recorded in the parity report. Tolerances follow the dtype the CUDA op computes in (docs/ARCHITECTURE.md,
// Numerics): GEMMs round their inputs to bf16 (error ~2^-8·sqrt(K) per unit-variance product sum);
// the rest is fp32 with a different summation order.
import { afterAll, describe, expect, inject, it } from 'vitest';
import { kernels } from '../../lib/engine/kernels.js';
import { maxAbs, randn } from '../engine/reference.js';
import { compareExact, compareTensor, flushReport, type Comparison } from './report.js';

const cuda = inject('cuda');
const cpu = { device: 'cpu' as const };
const gpu = { device: inject('target') };

afterAll(() => flushReport(import.meta.url));

function rms(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s / Math.max(1, a.length));
}

/** bf16-input GEMM: |err| ≲ 2^-8·sqrt(K)·rms(a)·rms(b) per element; ~6σ of that, and 1e-2 relative. */
function gemmTol(K: number, rmsA: number, rmsB: number): { atol: number; rtol: number } {
  return { atol: 2e-2 * Math.sqrt(K) * rmsA * rmsB + 1e-6, rtol: 1e-2 };
}

const FP32 = { atol: 3e-6, rtol: 3e-5 };
/** fp32 with long reductions (attention's softmax and its backward sums). */
const ATTN_OUT = { atol: 5e-5, rtol: 5e-4 };
const ATTN_GRAD = { atol: 5e-4, rtol: 5e-3 };


/**
 * Attention's tolerance: head dims 33..128 with 8+ query rows run on bf16 tensor cores (q, k, v, P, dO and
 * dS rounded to bf16: errors of ~1e-2 of each tensor's scale); the rest is fp32.
 */
function attnTol(D: number, Tq: number, want: Float32Array, fp32: { atol: number; rtol: number }): { atol: number; rtol: number } {
  return D > 32 && D <= 128 && Tq >= 8 ? { atol: 2e-2 * maxAbs(want) + 1e-6, rtol: 2e-2 } : fp32;
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
    for (const key of ['out', 'lse'] as const) {
      const tol = attnTol(D, T, fc[key], ATTN_OUT);
      cs.push(compareTensor('attentionForward', `${key} ${tag}`, fg[key], fc[key], tol.atol, tol.rtol));
    }
    const bc = kernels.attentionBackward(dout, q, k, v, fc.out, fc.lse, { ...dims, ...cpu });
    const bg = kernels.attentionBackward(dout, q, k, v, fc.out, fc.lse, { ...dims, ...gpu, kernel });
    for (const key of ['dq', 'dk', 'dv'] as const) {
      const tol = attnTol(D, T, bc[key], ATTN_GRAD);
      cs.push(compareTensor('attentionBackward', `${key} ${tag}`, bg[key], bc[key], tol.atol, tol.rtol));
    }
    // Deterministic: no atomics in the backward, so a rerun gives the same bits.
    const again = kernels.attentionBackward(dout, q, k, v, fc.out, fc.lse, { ...dims, ...gpu, kernel });
    cs.push(compareExact('attentionBackward', `dq rerun ${tag}`, again.dq, bg.dq));
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
            const t = gemmTol(k, 0.75, 1);
            cs.push(compareTensor('matmul', `C M${m} N${n} K${k} tA${+transA} tB${+transB} beta${beta}`, got, want, t.atol + 0.5 * beta * 1e-6, t.rtol));
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
      const ty = gemmTol(inDim, 1, 0.1);
      cs.push(compareTensor('linearForward', `y ${variant} M${M} in${inDim} out${out}`, fg.y, fc.y, ty.atol * (1 + scale), ty.rtol));
      if (fc.h) cs.push(compareTensor('linearForward', `h ${variant}`, fg.h!, fc.h, ty.atol, ty.rtol));
      if (fc.xd) cs.push(compareExact('linearForward', `xd (dropout mask) ${variant}`, fg.xd!, fc.xd));
      // Backward from the CPU's saved h / xd, so both sides start from the same tensors.
      const bopts = { ...opts, h: fc.h ?? undefined, xd: fc.xd ?? undefined };
      const bc = kernels.linearBackward(dy, x, w, { ...bopts, ...cpu });
      const bg = kernels.linearBackward(dy, x, w, { ...bopts, ...gpu });
      const tdx = gemmTol(out, 1, 0.1);
      cs.push(compareTensor('linearBackward', `dx ${variant}`, bg.dx, bc.dx, tdx.atol * (1 + scale), tdx.rtol));
      const tdw = gemmTol(M, 1, 1);
      cs.push(compareTensor('linearBackward', `dW ${variant}`, bg.dw, bc.dw, tdw.atol, tdw.rtol));
      if (bc.dA) {
        // dA = dh^T x with dh = s dy B (itself a bf16 GEMM): twice the one-GEMM bound; dB = s dy^T h likewise.
        const rmsDh = scale * rms(B) * Math.sqrt(out);
        cs.push(compareTensor('linearBackward', `dA ${variant}`, bg.dA!, bc.dA, 2 * gemmTol(M, rmsDh, 1).atol, 1e-2));
        cs.push(compareTensor('linearBackward', `dB ${variant}`, bg.dB!, bc.dB!, 2 * gemmTol(M, 1, scale * rms(fc.h!)).atol, 1e-2));
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
      compareExact('embeddingForward', `out N${N} C${C} V${V}`, kernels.embeddingForward(tokens, wte, { n: N, c: C, v: V, ...gpu }), kernels.embeddingForward(tokens, wte, { n: N, c: C, v: V, ...cpu })),
      compareExact('embeddingBackward', `dwte N${N} C${C} V${V}`, kernels.embeddingBackward(dout, tokens, { n: N, c: C, v: V, ...gpu }), kernels.embeddingBackward(dout, tokens, { n: N, c: C, v: V, ...cpu })),
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
      cs.push(compareTensor('rmsnormForward', `out N${N} C${C}`, fg.out, fc.out, FP32.atol, FP32.rtol));
      cs.push(compareTensor('rmsnormForward', `rstd N${N} C${C}`, fg.rstd, fc.rstd, FP32.atol, FP32.rtol));
      const bc = kernels.rmsnormBackward(dy, x, w, fc.rstd, { n: N, c: C, ...cpu });
      const bg = kernels.rmsnormBackward(dy, x, w, fc.rstd, { n: N, c: C, ...gpu });
      cs.push(compareTensor('rmsnormBackward', `dx N${N} C${C}`, bg.dx, bc.dx, 3e-5, 3e-4));
      // dweight sums N rows: its error grows like sqrt(N).
      cs.push(compareTensor('rmsnormBackward', `dweight N${N} C${C}`, bg.dw, bc.dw, 3e-5 * Math.sqrt(N), 3e-4));
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
      cs.push(compareTensor('ropeForward', `B${B} T${T} H${H} D${D} pos0 ${pos0}`, kernels.ropeForward(x, { ...o, ...gpu }), kernels.ropeForward(x, { ...o, ...cpu }), 1e-6, 1e-5));
      cs.push(compareTensor('ropeBackward', `B${B} T${T} H${H} D${D} pos0 ${pos0}`, kernels.ropeBackward(x, { ...o, ...gpu }), kernels.ropeBackward(x, { ...o, ...cpu }), 1e-6, 1e-5));
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
      for (const key of ['out', 'lse'] as const) {
        const tol = attnTol(D, Tq, fc[key], ATTN_OUT);
        cs.push(compareTensor('attentionDecode', `${key} ${tag}`, fg[key], fc[key], tol.atol, tol.rtol));
      }
    }
    check(cs);
  });

  it('SwiGLU forward and backward', () => {
    const cs: Comparison[] = [];
    for (const n of [1, 1000, 3_000_001]) {
      const g = randn(n, 31, 3);
      const u = randn(n, 32);
      const dy = randn(n, 33);
      cs.push(compareTensor('swigluForward', `out n${n}`, kernels.swigluForward(g, u, gpu), kernels.swigluForward(g, u, cpu), FP32.atol, FP32.rtol));
      const bc = kernels.swigluBackward(dy, g, u, cpu);
      const bg = kernels.swigluBackward(dy, g, u, gpu);
      cs.push(compareTensor('swigluBackward', `dgate n${n}`, bg.dgate, bc.dgate, FP32.atol, FP32.rtol));
      cs.push(compareTensor('swigluBackward', `dup n${n}`, bg.dup, bc.dup, FP32.atol, FP32.rtol));
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
      cs.push(compareExact('dropoutForward', `n${n} p${p} seed ${seed}`, kernels.dropoutForward(x, { p, seed, ...gpu }), kernels.dropoutForward(x, { p, seed, ...cpu })));
      cs.push(compareExact('dropoutBackward', `n${n} p${p} seed ${seed}`, kernels.dropoutBackward(x, { p, seed, ...gpu }), kernels.dropoutBackward(x, { p, seed, ...cpu })));
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
      cs.push(compareTensor('crossEntropy', `losses N${N} V${V}`, g.losses, c.losses, 3e-5, 3e-5));
      cs.push(compareTensor('crossEntropy', `dlogits N${N} V${V}`, g.dlogits, c.dlogits, 3e-8, 3e-5));
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
      cs.push(compareTensor('adamw', `param n${n}`, r.param, c.param, 3e-7, 3e-6));
      cs.push(compareTensor('adamw', `m n${n}`, r.m, c.m, 3e-7, 3e-6));
      cs.push(compareTensor('adamw', `v n${n}`, r.v, c.v, 3e-9, 3e-6));
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
