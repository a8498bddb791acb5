// Every CPU op, forward and backward, against the float64 references, on each SIMD path this CPU has.
import { afterAll, describe, expect, it } from 'vitest';
import { kernels } from '../../lib/engine/kernels.js';
import { loadAddon } from '../../lib/engine/loader.js';
import type { SimdLevel } from '../../lib/engine/native.js';
import * as ref from './reference.js';

const best = loadAddon().addon.buildInfo().cpu.simd;
const levels: SimdLevel[] = (['portable', 'avx2', 'avx512'] as const).filter((l) =>
  best === 'avx512' ? true : best === 'avx2' ? l !== 'avx512' : l === 'portable',
);
const threadCounts = [1, 2];

function expectClose(name: string, got: ArrayLike<number>, want: ArrayLike<number>, atol = 1e-5, rtol = 1e-4): void {
  const r = ref.compare(got, want, atol, rtol);
  expect(r.ok, `${name}: max |err| = ${r.maxErr.toExponential(3)}, first bad index ${r.worst} (got ${got[r.worst]}, want ${want[r.worst]})`).toBe(true);
}

afterAll(() => {
  kernels.setSimd(best);
});

describe.each(levels)('kernels on the %s path', (level) => {
  it('selects the path', () => {
    expect(kernels.setSimd(level)).toBe(level);
  });

  describe.each(threadCounts)('with %i thread(s)', (threads) => {
    it('matmul: every transpose, edge sizes, alpha/beta', () => {
      kernels.setSimd(level);
      const shapes: Array<[number, number, number]> = [
        [1, 1, 1],
        [7, 33, 5],
        [13, 31, 300],
        [50, 70, 257],
        [130, 40, 64],
        // few rows against a large op(B) = W^T: the gemv path (M <= 16, N·K >= 65536) when transB
        [1, 300, 257],
        [16, 517, 130],
        // a side of at most 16 (LoRA's rank): the skinny kernels, with their row, column and vector tails
        [100, 8, 70],
        [75, 13, 40],
        [9, 100, 50],
        [16, 61, 33],
        [70, 50, 8],
        [45, 37, 16],
        [200, 3, 17],
      ];
      for (const [m, n, k] of shapes) {
        for (const tA of [false, true])
          for (const tB of [false, true])
            for (const beta of [2, 0]) {
              const a = ref.randn(m * k, m + n + k + 1);
              const b = ref.randn(k * n, m * n + k + 2);
              const c0 = ref.randn(m * n, 3);
              const got = kernels.matmul(a, b, { m, n, k, transA: tA, transB: tB, alpha: 0.5, beta, c: c0, threads });
              const prod = ref.matmul(a, b, m, n, k, tA, tB);
              const want = prod.map((x, i) => 0.5 * x + beta * c0[i]);
              expectClose(`matmul ${m}x${n}x${k} tA=${tA} tB=${tB} beta=${beta}`, got, want, 1e-4, 1e-4);
            }
      }
    });

    it('linear with LoRA (and dropout), forward and backward', () => {
      kernels.setSimd(level);
      const m = 12, inDim = 20, out = 18, r = 4, scale = 2;
      const x = ref.randn(m * inDim, 1);
      const w = ref.randn(out * inDim, 2, 0.3);
      const A = ref.randn(r * inDim, 3, 0.3);
      const B = ref.randn(out * r, 4, 0.3);
      const dy = ref.randn(m * out, 5);
      for (const dropout of [0, 0.3]) {
        const opts = { m, in: inDim, out, loraA: A, loraB: B, r, scale, dropout, train: true, seed: 7, threads };
        const f = kernels.linearForward(x, w, opts);
        // The dropped-out input the kernel used: each element is 0 or x / (1 - p).
        const xd = dropout > 0 ? f.xd! : x;
        if (dropout > 0) {
          let zeros = 0;
          for (let i = 0; i < xd.length; i++) {
            if (xd[i] === 0) zeros++;
            else expect(Math.abs(xd[i] - x[i] / (1 - dropout))).toBeLessThan(1e-5);
          }
          expect(zeros / xd.length).toBeGreaterThan(0.1);
          expect(zeros / xd.length).toBeLessThan(0.5);
        }
        const base = ref.matmul(x, w, m, out, inDim, false, true);
        const h = ref.matmul(xd, A, m, r, inDim, false, true);
        const z = ref.matmul(h, B, m, out, r, false, true);
        expectClose('linear y', f.y, base.map((v, i) => v + scale * z[i]));
        const g = kernels.linearBackward(dy, x, w, { ...opts, h: f.h!, xd: f.xd ?? undefined });
        const dh = ref.matmul(dy, B, m, r, out).map((v) => v * scale);
        const dxd = ref.matmul(dh, A, m, inDim, r);
        const dxBase = ref.matmul(dy, w, m, inDim, out);
        const dx = dxBase.map((v, i) => v + (dropout > 0 ? (xd[i] === 0 ? 0 : dxd[i] / (1 - dropout)) : dxd[i]));
        expectClose('linear dx', g.dx, dx);
        expectClose('linear dw', g.dw, ref.matmul(dy, x, out, inDim, m, true, false));
        expectClose('linear dA', g.dA!, ref.matmul(dh, xd, r, inDim, m, true, false));
        expectClose('linear dB', g.dB!, ref.matmul(dy, h, out, r, m, true, false).map((v) => v * scale));
      }
    });

    it('embedding forward and backward (repeated tokens)', () => {
      kernels.setSimd(level);
      const n = 40, c = 24, v = 9;
      const tokens = Int32Array.from({ length: n }, (_, i) => (i * 5) % v);
      const wte = ref.randn(v * c, 1);
      const out = kernels.embeddingForward(tokens, wte, { n, c, v, threads });
      for (let i = 0; i < n; i++) expect(Array.from(out.subarray(i * c, i * c + c))).toEqual(Array.from(wte.subarray(tokens[i] * c, tokens[i] * c + c)));
      const dout = ref.randn(n * c, 2);
      const want = new Float64Array(v * c);
      for (let i = 0; i < n; i++) for (let j = 0; j < c; j++) want[tokens[i] * c + j] += dout[i * c + j];
      expectClose('embedding dwte', kernels.embeddingBackward(dout, tokens, { n, c, v, threads }), want);
    });

    it('rmsnorm forward and backward', () => {
      kernels.setSimd(level);
      const n = 37, c = 70, eps = 1e-5;
      const x = ref.randn(n * c, 1, 2);
      const w = ref.randn(c, 2);
      const f = kernels.rmsnormForward(x, w, { n, c, eps, threads });
      expectClose('rmsnorm out', f.out, ref.rmsnorm(x, w, n, c, eps));
      const dy = ref.randn(n * c, 3);
      const b = kernels.rmsnormBackward(dy, x, w, f.rstd, { n, c, threads });
      const want = ref.rmsnormBackward(dy, x, w, n, c, eps);
      expectClose('rmsnorm dx', b.dx, want.dx);
      expectClose('rmsnorm dw', b.dw, want.dw, 1e-4);
    });

    it('rope forward and backward (with a position offset)', () => {
      kernels.setSimd(level);
      const b = 2, t = 9, h = 3, d = 16, theta = 10000;
      for (const pos0 of [0, 5]) {
        const x = ref.randn(b * t * h * d, 1 + pos0);
        expectClose('rope fwd', kernels.ropeForward(x, { b, t, h, d, theta, pos0, threads }), ref.rope(x, b, t, h, d, theta, pos0), 2e-5);
        expectClose('rope bwd', kernels.ropeBackward(x, { b, t, h, d, theta, pos0, threads }), ref.rope(x, b, t, h, d, theta, pos0, true), 2e-5);
      }
    });

    it('causal GQA attention forward and backward, across tile edges', () => {
      kernels.setSimd(level);
      for (const [b, t, h, hkv, d] of [
        [1, 1, 1, 1, 4],
        [2, 7, 4, 2, 8],
        [1, 70, 4, 1, 16],
        [2, 100, 2, 2, 32],
        [1, 130, 6, 2, 12], // three key tiles, a group of 3, a head dim that is not a multiple of 8
      ] as const) {
        const q = ref.randn(b * t * h * d, t + 1);
        const k = ref.randn(b * t * hkv * d, t + 2);
        const v = ref.randn(b * t * hkv * d, t + 3);
        const f = kernels.attentionForward(q, k, v, { b, t, h, hkv, d, threads });
        expectClose(`attention out t=${t}`, f.out, ref.attention(q, k, v, b, t, h, hkv, d).out);
        const dout = ref.randn(b * t * h * d, t + 4);
        const g = kernels.attentionBackward(dout, q, k, v, f.out, f.lse, { b, t, h, hkv, d, threads });
        const want = ref.attentionBackward(dout, q, k, v, b, t, h, hkv, d);
        expectClose(`attention dq t=${t}`, g.dq, want.dq, 2e-5);
        expectClose(`attention dk t=${t}`, g.dk, want.dk, 2e-5);
        expectClose(`attention dv t=${t}`, g.dv, want.dv, 2e-5);
      }
    });

    it('swiglu forward and backward', () => {
      kernels.setSimd(level);
      const n = 1003; // 8-wide vectors and a scalar tail
      const g = ref.randn(n, 1, 4);
      const u = ref.randn(n, 2);
      expectClose('swiglu', kernels.swigluForward(g, u, { threads }), ref.swiglu(g, u));
      const dy = ref.randn(n, 3);
      const b = kernels.swigluBackward(dy, g, u, { threads });
      const want = ref.swigluBackward(dy, g, u);
      expectClose('swiglu dgate', b.dgate, want.dgate);
      expectClose('swiglu dup', b.dup, want.dup);
    });

    it('cross-entropy fused with softmax, ignoring -100', () => {
      kernels.setSimd(level);
      const n = 20, v = 37;
      const logits = ref.randn(n * v, 1, 3);
      const targets = Int32Array.from({ length: n }, (_, i) => (i % 4 === 3 ? -100 : (i * 11) % v));
      const r = kernels.crossEntropy(logits, targets, { n, v, dscale: 1 / 15, threads });
      const want = ref.crossEntropy(logits, targets, n, v, 1 / 15);
      expectClose('ce losses', r.losses, want.losses);
      expectClose('ce dlogits', r.dlogits, want.dlogits, 1e-6);
    });

    it('adamw with weight decay and gradient scaling', () => {
      kernels.setSimd(level);
      const n = 50000;
      const p = ref.randn(n, 1);
      const g = ref.randn(n, 2);
      const m = ref.randn(n, 3, 0.1);
      const v = ref.randn(n, 4, 0.1).map((x) => x * x);
      const o = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3, gradScale: 0.5 };
      const r = kernels.adamw(p, g, m, v, { ...o, threads });
      const want = ref.adamw(p, g, m, v, o);
      expectClose('adamw param', r.param, want.param, 1e-6);
      expectClose('adamw m', r.m, want.m, 1e-6);
      expectClose('adamw v', r.v, want.v, 1e-6);
    });
  });
});

describe('kernel arguments', () => {
  it('throw errors naming the field', () => {
    expect(() => kernels.matmul(new Float32Array(3), new Float32Array(4), { m: 2, n: 2, k: 2 })).toThrow(/kernels\.matmul\(\): a has 3 elements, expected 4/);
    expect(() => kernels.matmul(new Float64Array(4) as unknown as Float32Array, new Float32Array(4), { m: 2, n: 2, k: 2 })).toThrow(
      /a must be a Float32Array, got a Float64Array/,
    );
    expect(() => kernels.matmul(new Float32Array(4), new Float32Array(4), { m: 2, n: -1, k: 2 })).toThrow(/options\.n = -1 is out of range/);
    expect(() => kernels.crossEntropy(new Float32Array(4), Int32Array.of(0, 7), { n: 2, v: 2 })).toThrow(/targets\[1\] = 7 is out of range \[0, 2\)/);
    expect(() => kernels.adamw(new Float32Array(1), new Float32Array(1), new Float32Array(1), new Float32Array(1), { lr: NaN })).toThrow(/options\.lr must be a number, got NaN/);
    expect(() => kernels.setSimd('sse9' as SimdLevel)).toThrow(/level must be/);
  });
});

describe('kernel timing', () => {
  it('timeMatmul times the CPU GEMM and refuses bf16 operands where the Hopper kernel is not', async () => {
    const r = await kernels.timeMatmul({ m: 64, n: 48, k: 32, repeats: 3, device: 'cpu' });
    expect(r.bestSeconds).toBeGreaterThan(0);
    expect(r.medianSeconds).toBeGreaterThanOrEqual(r.bestSeconds);
    expect(r.gflops).toBeCloseTo((2 * 64 * 48 * 32) / r.bestSeconds / 1e9, 6);
    expect(() => kernels.timeMatmul({ m: 8, n: 8, k: 8, operands: 'fp16' as 'bf16' })).toThrow(/options\.operands must be 'fp32' or 'bf16', got 'fp16'/);
    await expect(kernels.timeMatmul({ m: 8, n: 8, k: 8, device: 'cpu', operands: 'bf16' })).rejects.toThrow(/operands 'bf16' needs/);
    expect(() => kernels.timeMatmul({ m: 8, n: 8, k: 8, device: 'cpu', tileWidth: 200 })).toThrow(/options\.tileWidth applies to operands 'bf16' only/);
    expect(() => kernels.timeMatmul({ m: 8, n: 8, k: 8, operands: 'bf16', tileWidth: 300 })).toThrow(/options\.tileWidth = 300 is out of range \[8, 256\]/);
    expect(() => kernels.timeAttention({ b: 1, t: 8, h: 2, hkv: 1, d: 16, device: 'cpu', kernel: 'fast' as 'flash' })).toThrow(/options\.kernel must be 'flash' or 'flash-recompute', got 'fast'/);
    // The wgmma attention lives in the kernel lab (native/cuda/dev/), not behind the product's kernel option.
    expect(() => kernels.timeAttention({ b: 1, t: 8, h: 2, hkv: 1, d: 16, device: 'cpu', kernel: 'wgmma' as 'flash' })).toThrow(/got 'wgmma'/);
    const attention = await kernels.timeAttention({ b: 1, t: 16, h: 2, hkv: 1, d: 16, repeats: 2, device: 'cpu', kernel: 'flash-recompute' }); // no effect on the CPU
    expect(attention.msFwdBwd).toBeGreaterThan(0);
    expect(attention.msBwd).toBeGreaterThan(0);
    expect(attention.medianMsBwd).toBeGreaterThanOrEqual(attention.msBwd);
    // attentionForward / attentionBackward take the same option: checked, and no effect on the CPU.
    const dims = { b: 1, t: 9, h: 2, hkv: 1, d: 16, device: 'cpu' as const };
    const q = new Float32Array(9 * 2 * 16).map((_, i) => Math.sin(i));
    const kv = new Float32Array(9 * 16).map((_, i) => Math.cos(i));
    expect(() => kernels.attentionForward(q, kv, kv, { ...dims, kernel: 'flash2' as 'flash' })).toThrow(/attentionForward\(\): options\.kernel must be 'flash' or 'flash-recompute', got 'flash2'/);
    const plain = kernels.attentionForward(q, kv, kv, dims);
    const named = kernels.attentionForward(q, kv, kv, { ...dims, kernel: 'flash' });
    expect(named.out).toEqual(plain.out);
    expect(() => kernels.attentionBackward(q, q, kv, kv, plain.out, plain.lse, { ...dims, kernel: 'simt' as 'flash' })).toThrow(/attentionBackward\(\): options\.kernel must be/);
    expect(kernels.attentionBackward(q, q, kv, kv, plain.out, plain.lse, { ...dims, kernel: 'flash-recompute' }).dq).toEqual(kernels.attentionBackward(q, q, kv, kv, plain.out, plain.lse, dims).dq);
  });
});

describe('timeOp: the bandwidth rows of bench:gpu, on the CPU', () => {
  // What each op must read and write at least, in bytes (fp32 and int32: 4 bytes), restated here from the
  // op's inputs and outputs: the counts native/addon/kernels_wrap.cc (TimeOpJob) reports.
  const cases: Array<[Parameters<typeof kernels.timeOp>[0], number]> = [
    [{ op: 'copy', n: 1000 }, 4 * 2 * 1000],
    [{ op: 'add', n: 1000 }, 4 * 3 * 1000],
    [{ op: 'rmsnormForward', n: 7, c: 96 }, 4 * (2 * 7 * 96 + 96 + 7)],
    [{ op: 'rmsnormBackward', n: 7, c: 96 }, 4 * (4 * 7 * 96 + 3 * 96 + 7)],
    [{ op: 'ropeForward', b: 2, t: 5, h: 3, d: 8 }, 4 * (2 * 2 * 5 * 3 * 8 + 5 * 8)],
    [{ op: 'ropeBackward', b: 2, t: 5, h: 3, d: 8 }, 4 * (2 * 2 * 5 * 3 * 8 + 5 * 8)],
    [{ op: 'swigluForward', n: 999 }, 4 * 3 * 999],
    [{ op: 'swigluBackward', n: 999 }, 4 * 5 * 999],
    [{ op: 'crossEntropy', n: 6, v: 50 }, 4 * (2 * 6 * 50 + 2 * 6)],
    [{ op: 'adamw', n: 1001 }, 4 * 7 * 1001],
    [{ op: 'embeddingForward', n: 40, c: 16, v: 1000 }, 4 * (40 + 2 * 40 * 16)],
    // tokens (i·7919) mod 10 for i < 40 take all 10 values: 10 rows read and written
    [{ op: 'embeddingBackward', n: 40, c: 16, v: 10 }, 4 * (40 * 16 + 40 + 2 * 10 * 16)],
    // ... and mod 1000 are 40 distinct rows
    [{ op: 'embeddingBackward', n: 40, c: 16, v: 1000 }, 4 * (40 * 16 + 40 + 2 * 40 * 16)],
  ];
  it.each(cases)('%j moves %d bytes and reports its rate from its time', async (shape, bytes) => {
    const r = await kernels.timeOp({ ...shape, repeats: 3, calls: 2, threads: 1, device: 'cpu' });
    expect(r.op).toBe(shape.op);
    expect(r.bytes).toBe(bytes);
    expect(r.bestMs).toBeGreaterThan(0);
    expect(r.medianMs).toBeGreaterThanOrEqual(r.bestMs);
    expect(r.gbps).toBeCloseTo(bytes / (r.bestMs * 1e-3) / 1e9, 6);
    expect(r.medianGbps).toBeLessThanOrEqual(r.gbps);
  });

  it('refuses an unknown op, a missing or foreign shape field, and CUDA in the CPU build', async () => {
    expect(() => kernels.timeOp({ op: 'gelu' as 'copy', n: 4 })).toThrow(/options\.op must be one of copy, add, rmsnormForward, .*embeddingBackward, got 'gelu'/);
    expect(() => kernels.timeOp({ op: 'rmsnormForward', n: 4 } as Parameters<typeof kernels.timeOp>[0])).toThrow(/options\.c must be an integer, got undefined/);
    expect(() => kernels.timeOp({ op: 'copy', n: 4, c: 2 } as Parameters<typeof kernels.timeOp>[0])).toThrow(/options\.c does not apply to op 'copy' \(it takes n\)/);
    expect(() => kernels.timeOp({ op: 'ropeForward', b: 1, t: 1, h: 1, d: 7 })).toThrow(/options\.d = 7 must be even/);
    expect(() => kernels.timeOp({ op: 'copy', n: 0 })).toThrow(/options\.n/);
    if (!kernels.cudaAvailable().ok) await expect(kernels.timeOp({ op: 'copy', n: 4, device: 'cuda' })).rejects.toThrow(/no CUDA backend is available/);
  });
});
