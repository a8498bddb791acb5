#!/usr/bin/env python3
"""CPU emulation of the index math of native/cuda/gemm.cu (no GPU needed).

What it checks, thread by thread, exactly as the kernels compute their indices:
  * gemm_mma_kernel<BM, BN, WM, WN, transA, transB> for the two tile configs the launcher uses
    (128x128 / warps 64x32 and 64x64 / warps 32x32) and all four transpose cases:
      - TileLoader::coords/load/store: fp32 global -> (k, k+1) register pairs -> bf16 (RN-even) shared
        As[m][k] / Bs[n][k] with the kLds = 40 row pitch, edge predication (zero fill) and the double
        buffer with its register prefetch (buffers start NaN-filled, so a read of an unwritten slot shows);
      - the m16n8k16 A / B fragment register loads (lds32 of a bf16 pair, low half = lower k) and the
        mma itself, using the fragment layouts of the PTX ISA ("Matrix Fragments for mma.m16n8k16 with
        floating point type"; identical to CUTLASS's MMA_Traits<SM80_16x8x16_F32BF16BF16F32_TN>):
          A: a_i (i = 0..7, two per 32-bit register): row = g + 8*((i//2)%2), col = 2t + (i%2) + 8*(i//4)
          B: b_i (i = 0..3):                          row(k) = 2t + (i%2) + 8*(i//2), col(n) = g
          C/D: c_i (i = 0..3):                        row = g + 8*(i//2), col = 2t + (i%2)
        with g = lane >> 2 (groupID), t = lane % 4 (threadID_in_group);
      - the epilogue (alpha / beta, beta = 0 never reads C, guarded stores);
      - per barrier phase: no shared slot both written and read (or written twice) in one phase, every
        global read in bounds, every C element written exactly once.
  * gemm_simt_kernel (the fp32 fallback) likewise.
Results are compared with a float64 matmul of the bf16-rounded inputs (mma) / of the fp32 inputs (simt):
exactly for small-integer data (any index error changes the sum) and to 1e-5 relative for random data.

Run: /usr/bin/python3 native/cuda/dev/emulate_gemm.py   (numpy only; ~1 minute). Not part of any build.
"""
import itertools
import sys

import numpy as np

KBK = 32  # kBK
KLDS = KBK + 8  # kLds


def bf16_rn(x):
    """fp32 -> bf16 -> fp32, round to nearest even (what __float22bfloat162_rn does)."""
    x = np.atleast_1d(np.asarray(x, dtype=np.float32))
    u = x.view(np.uint32).astype(np.uint64)
    rounded = ((u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)) << np.uint64(16)
    out = rounded.astype(np.uint32).view(np.float32)
    return np.where(np.isnan(x), x, out).astype(np.float32)


class Shared:
    """A shared array that records which thread read / wrote which slot in the current barrier phase."""

    def __init__(self, name, n):
        self.name = name
        self.data = np.full(n, np.nan, dtype=np.float64)
        self.reads = {}
        self.writes = {}

    def write(self, idx, val, tid):
        if idx in self.writes:
            raise AssertionError(f"{self.name}[{idx}] written twice in one phase (threads {self.writes[idx]}, {tid})")
        self.writes[idx] = tid
        self.data[idx] = val

    def read(self, idx, tid):
        self.reads.setdefault(idx, tid)
        return self.data[idx]

    def barrier(self):
        both = set(self.reads) & set(self.writes)
        if both:
            idx = min(both)
            raise AssertionError(f"{self.name}[{idx}] read and written in the same phase (race)")
        self.reads.clear()
        self.writes.clear()


class Global:
    def __init__(self, name, arr):
        self.name = name
        self.arr = arr

    def __getitem__(self, i):
        if not (0 <= i < self.arr.size):
            raise AssertionError(f"out-of-bounds global read {self.name}[{i}] (size {self.arr.size})")
        return self.arr[i]


# ---- gemm_mma_kernel ------------------------------------------------------------------------------


class TileLoader:
    def __init__(self, rows, threads, kcontig):
        self.rows, self.threads, self.kcontig = rows, threads, kcontig
        self.pairs = rows * (KBK // 2) // threads
        assert self.pairs * threads == rows * (KBK // 2)

    def coords(self, tid, p):
        idx = tid + p * self.threads
        if self.kcontig:
            return idx // (KBK // 2), idx % (KBK // 2)
        return idx % self.rows, idx // self.rows

    def load(self, tid, X, ld, r0, rows_limit, k0, K):
        reg = []
        for p in range(self.pairs):
            r, kp = self.coords(tid, p)
            row, k = r0 + r, k0 + 2 * kp
            x0 = x1 = 0.0
            if row < rows_limit:
                if self.kcontig:
                    base = row * ld + k
                    if k < K:
                        x0 = X[base]
                    if k + 1 < K:
                        x1 = X[base + 1]
                else:
                    if k < K:
                        x0 = X[k * ld + row]
                    if k + 1 < K:
                        x1 = X[(k + 1) * ld + row]
            reg.append((x0, x1))
        return reg

    def store(self, tid, S, reg):
        for p in range(self.pairs):
            r, kp = self.coords(tid, p)
            v = bf16_rn(np.array(reg[p], dtype=np.float32))
            off = r * KLDS + 2 * kp
            assert off % 2 == 0, "bfloat162 store misaligned"
            S.write(off, float(v[0]), tid)  # low half of the 32-bit word
            S.write(off + 1, float(v[1]), tid)


def lds32(S, off, tid):
    assert off % 2 == 0, "lds32 misaligned"
    return (S.read(off, tid), S.read(off + 1, tid))  # (low half, high half)


def mma16816(d, a, b):
    """d[4] += A(16x16) B(16x8) for ONE warp, given every lane's registers; uses the PTX layouts."""
    A = np.full((16, 16), np.nan)
    Bm = np.full((16, 8), np.nan)
    for lane in range(32):
        g, t = lane >> 2, lane % 4
        elems = [x for reg in a[lane] for x in reg]  # a0..a7
        for i, val in enumerate(elems):
            row = g + 8 * ((i // 2) % 2)
            col = 2 * t + (i % 2) + 8 * (i // 4)
            A[row, col] = val
        belems = [x for reg in b[lane] for x in reg]  # b0..b3
        for i, val in enumerate(belems):
            Bm[2 * t + (i % 2) + 8 * (i // 2), g] = val
    assert not np.isnan(A).any() and not np.isnan(Bm).any(), "fragment read an unwritten shared slot"
    P = A @ Bm
    for lane in range(32):
        g, t = lane >> 2, lane % 4
        for i in range(4):
            d[lane][i] += P[g + 8 * (i // 2), 2 * t + (i % 2)]


def emulate_mma(C, A, B, M, N, K, transA, transB, alpha, beta, BM, BN, WM, WN):
    warps_n = BN // WN
    threads = (BM // WM) * warps_n * 32
    MT, NT = WM // 16, WN // 8
    loadA = TileLoader(BM, threads, not transA)
    loadB = TileLoader(BN, threads, transB)
    Ag, Bg = Global("A", A.ravel()), Global("B", B.ravel())
    Cflat = C.ravel()
    written = np.zeros(M * N, dtype=np.int32)
    grid_x, grid_y = -(-N // BN), -(-M // BM)
    ldA = M if transA else K
    ldB = K if transB else N
    for by in range(grid_y):
        for bx in range(grid_x):
            As = [Shared("As0", BM * KLDS), Shared("As1", BM * KLDS)]
            Bs = [Shared("Bs0", BN * KLDS), Shared("Bs1", BN * KLDS)]
            shared = As + Bs

            def barrier():
                for s in shared:
                    s.barrier()

            m0, n0 = by * BM, bx * BN
            acc = {tid: np.zeros((MT, NT, 4)) for tid in range(threads)}
            steps = (K + KBK - 1) // KBK
            ra, rb = {}, {}
            if steps > 0:
                for tid in range(threads):
                    ra[tid] = loadA.load(tid, Ag, ldA, m0, M, 0, K)
                    rb[tid] = loadB.load(tid, Bg, ldB, n0, N, 0, K)
                    loadA.store(tid, As[0], ra[tid])
                    loadB.store(tid, Bs[0], rb[tid])
            barrier()
            for s in range(steps):
                cur = s & 1
                more = s + 1 < steps
                if more:
                    for tid in range(threads):
                        ra[tid] = loadA.load(tid, Ag, ldA, m0, M, (s + 1) * KBK, K)
                        rb[tid] = loadB.load(tid, Bg, ldB, n0, N, (s + 1) * KBK, K)
                for kk in range(0, KBK, 16):
                    # per warp: gather every lane's fragments, then the warp-wide mma
                    for warp in range(threads // 32):
                        wm, wn = warp // warps_n, warp % warps_n
                        afr, bfr = {}, {}
                        for lane in range(32):
                            tid = warp * 32 + lane
                            g, t = lane // 4, lane % 4
                            for i in range(MT):
                                p = (wm * WM + i * 16 + g) * KLDS + kk + 2 * t
                                afr[(lane, i)] = [lds32(As[cur], p, tid), lds32(As[cur], p + 8 * KLDS, tid),
                                                  lds32(As[cur], p + 8, tid), lds32(As[cur], p + 8 * KLDS + 8, tid)]
                            for j in range(NT):
                                p = (wn * WN + j * 8 + g) * KLDS + kk + 2 * t
                                bfr[(lane, j)] = [lds32(Bs[cur], p, tid), lds32(Bs[cur], p + 8, tid)]
                        for i in range(MT):
                            for j in range(NT):
                                d = [acc[warp * 32 + lane][i, j] for lane in range(32)]
                                mma16816(d, [afr[(lane, i)] for lane in range(32)],
                                         [bfr[(lane, j)] for lane in range(32)])
                if more:
                    for tid in range(threads):
                        loadA.store(tid, As[cur ^ 1], ra[tid])
                        loadB.store(tid, Bs[cur ^ 1], rb[tid])
                barrier()
            # epilogue
            for tid in range(threads):
                warp, lane = tid // 32, tid % 32
                g, t = lane // 4, lane % 4
                wm, wn = warp // warps_n, warp % warps_n
                for i in range(MT):
                    for j in range(NT):
                        for e in range(4):
                            m = m0 + wm * WM + i * 16 + g + 8 * (e // 2)
                            n = n0 + wn * WN + j * 8 + 2 * t + (e % 2)
                            if m < M and n < N:
                                idx = m * N + n
                                val = np.float32(alpha) * np.float32(acc[tid][i, j, e])
                                Cflat[idx] = val if beta == 0.0 else val + np.float32(beta) * Cflat[idx]
                                written[idx] += 1
    if not (written == 1).all():
        bad = np.argwhere(written.reshape(M, N) != 1)[0]
        raise AssertionError(f"C[{bad[0]},{bad[1]}] written {written.reshape(M, N)[tuple(bad)]} times")


# ---- gemm_simt_kernel -----------------------------------------------------------------------------


def emulate_simt(C, A, B, M, N, K, transA, transB, alpha, beta):
    T, KS = 64, 16
    Ag, Bg = Global("A", A.ravel()), Global("B", B.ravel())
    Cflat = C.ravel()
    written = np.zeros(M * N, dtype=np.int32)
    for by in range(-(-M // T)):
        for bx in range(-(-N // T)):
            As = Shared("As", KS * (T + 1))
            Bs = Shared("Bs", KS * (T + 1))
            m0, n0 = by * T, bx * T
            acc = np.zeros((256, 4, 4))
            for k0 in range(0, K, KS):
                for tid in range(256):
                    for i in range(tid, KS * T, 256):
                        kk = i // T if transA else i % KS
                        mm = i % T if transA else i // KS
                        m, k = m0 + mm, k0 + kk
                        val = (Ag[k * M + m] if transA else Ag[m * K + k]) if (m < M and k < K) else 0.0
                        As.write(kk * (T + 1) + mm, val, tid)
                        kk = i % KS if transB else i // T
                        nn = i // KS if transB else i % T
                        n, k = n0 + nn, k0 + kk
                        val = (Bg[n * K + k] if transB else Bg[k * N + n]) if (n < N and k < K) else 0.0
                        Bs.write(kk * (T + 1) + nn, val, tid)
                As.barrier()
                Bs.barrier()
                for tid in range(256):
                    tx, ty = tid % 16, tid // 16
                    for kk in range(KS):
                        a = [As.read(kk * (T + 1) + ty + 16 * i, tid) for i in range(4)]
                        b = [Bs.read(kk * (T + 1) + tx + 16 * j, tid) for j in range(4)]
                        for i in range(4):
                            for j in range(4):
                                acc[tid, i, j] += a[i] * b[j]
                As.barrier()
                Bs.barrier()
            for tid in range(256):
                tx, ty = tid % 16, tid // 16
                for i in range(4):
                    m = m0 + ty + 16 * i
                    if m >= M:
                        continue
                    for j in range(4):
                        n = n0 + tx + 16 * j
                        if n >= N:
                            continue
                        idx = m * N + n
                        val = np.float32(alpha) * np.float32(acc[tid, i, j])
                        Cflat[idx] = val if beta == 0.0 else val + np.float32(beta) * Cflat[idx]
                        written[idx] += 1
    assert (written == 1).all(), "some C element not written exactly once"


# ---- driver ---------------------------------------------------------------------------------------


def reference(A, B, C0, transA, transB, alpha, beta, rounder):
    a = rounder(A).astype(np.float64)
    b = rounder(B).astype(np.float64)
    opA = a.T if transA else a
    opB = b.T if transB else b
    out = alpha * (opA @ opB)
    if beta != 0.0:
        out = out + beta * C0.astype(np.float64)
    return out


def run_case(kind, M, N, K, transA, transB, alpha, beta, data, rng, cfg=None):
    shapeA = (K, M) if transA else (M, K)
    shapeB = (N, K) if transB else (K, N)
    if data == "int":  # small integers: exact in bf16, every partial sum exact in fp32 -> exact compare
        A = rng.integers(-4, 5, size=shapeA).astype(np.float32)
        B = rng.integers(-4, 5, size=shapeB).astype(np.float32)
        C0 = rng.integers(-4, 5, size=(M, N)).astype(np.float32)
    else:
        A = rng.standard_normal(shapeA).astype(np.float32)
        B = rng.standard_normal(shapeB).astype(np.float32)
        C0 = rng.standard_normal((M, N)).astype(np.float32)
    if beta == 0.0:
        C0 = np.full((M, N), np.nan, dtype=np.float32)  # beta = 0 must ignore C, NaN included
    C = C0.copy()
    if kind == "mma":
        emulate_mma(C, A, B, M, N, K, transA, transB, alpha, beta, *cfg)
        ref = reference(A, B, C0, transA, transB, alpha, beta, bf16_rn)
    else:
        emulate_simt(C, A, B, M, N, K, transA, transB, alpha, beta)
        ref = reference(A, B, C0, transA, transB, alpha, beta, lambda x: x)
    if not np.isfinite(C).all():
        return False, "non-finite output"
    err = np.abs(C - ref)
    if data == "int":
        ok = bool((err == 0).all())
    else:
        ok = bool((err <= 1e-5 * (np.abs(ref) + np.sqrt(max(K, 1)))).all())
    if not ok:
        m, n = np.unravel_index(np.argmax(err), err.shape)
        return False, f"max err {err.max():.3g} at C[{m},{n}]: got {C[m, n]}, want {ref[m, n]}"
    return True, ""


def main():
    rng = np.random.default_rng(1234)
    assert bf16_rn(np.float32(1.0 + 2 ** -8)) == 1.0  # tie -> even
    assert bf16_rn(np.float32(1.0 + 3 * 2 ** -8)) == np.float32(1.0 + 2 ** -6)  # tie -> even (up)
    assert bf16_rn(np.float32(1.0 + 2 ** -8 + 2 ** -20)) == np.float32(1.0 + 2 ** -7)
    configs = {"128x128/64x32": (128, 128, 64, 32), "64x64/32x32": (64, 64, 32, 32)}
    shapes_mma = [(37, 53, 75), (1, 1, 1), (17, 9, 33), (70, 131, 31), (129, 65, 64), (5, 200, 97), (64, 64, 0)]
    shapes_simt = [(37, 53, 75), (1, 1, 1), (70, 131, 17), (65, 3, 33)]
    failures = 0
    total = 0
    for name, cfg in configs.items():
        for (M, N, K), (tA, tB) in itertools.product(shapes_mma, itertools.product([False, True], repeat=2)):
            if name.startswith("128") and M * N > 70 * 131:
                continue  # keep the run short; 129x65 runs on the 64 tiles (2x2 blocks) only
            for data, alpha, beta in [("int", 1.0, 0.0), ("int", 2.0, 1.0), ("rand", 0.5, -0.75)]:
                total += 1
                ok, msg = run_case("mma", M, N, K, tA, tB, alpha, beta, data, rng, cfg)
                if not ok:
                    failures += 1
                    print(f"FAIL mma {name} M={M} N={N} K={K} transA={tA} transB={tB} {data} "
                          f"alpha={alpha} beta={beta}: {msg}")
        print(f"mma {name}: done", flush=True)
    for (M, N, K), (tA, tB) in itertools.product(shapes_simt, itertools.product([False, True], repeat=2)):
        for data, alpha, beta in [("int", 1.0, 0.0), ("rand", 0.5, -0.75)]:
            total += 1
            ok, msg = run_case("simt", M, N, K, tA, tB, alpha, beta, data, rng)
            if not ok:
                failures += 1
                print(f"FAIL simt M={M} N={N} K={K} transA={tA} transB={tB} {data}: {msg}")
    print("simt: done")
    print(f"{total - failures}/{total} cases match")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
