#!/usr/bin/env python3
"""CPU emulation of native/cuda/gemm_sm80.cu (mma.sync on bf16 operands through a cp.async ring), no GPU.

What it checks, block by block and warp by warp with the kernel's own index math:
  * the cp.async ring with emulate_flash.py's shared memory: stages start NaN-filled, copies stay pending
    until the kernel's cp.async.wait_group lands them (one commit group a step, empty ones past the end),
    and a fragment load that touches a pending or never-written element is an error, so a stage refilled
    while still in use, or read before its copy lands, fails;
  * every global read in bounds (rows ld apart; a 16-byte copy past a row's K is zero-filled, not read);
  * ldmatrix and mma.sync m16n8k16 by their PTX fragment layouts (emulate_flash.py), the epilogue's
    alpha / beta and edge guards, every element of C written exactly once;
  * against a float64 product of the same values to 1e-9 (index errors show; bf16 rounding is the
    caller's, not modelled).
The constants mirror the kernel's; change them together.

Run: /usr/bin/python3 native/cuda/dev/emulate_gemm_sm80.py   (numpy only; about half a minute).
"""
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emulate_flash import LANES, EmulationError, Output, Shared, ldmatrix_x4, mma  # noqa: E402

BM, BN, BK, STAGES = 128, 128, 32, 4
WARPS_M, WARPS_N = 2, 4
WM, WN = BM // WARPS_M, BN // WARPS_N
THREADS = 32 * WARPS_M * WARPS_N
LD = BK + 8
STAGE = (BM + BN) * LD
G, T4 = LANES // 4, LANES % 4


def read_row(src, ld, rows, row, col, what):
    """Eight bf16 from a [rows, ld] operand (flat), checked in bounds of its row."""
    if row >= rows or col + 8 > ld:
        raise EmulationError(f"{what}: reads row {row} col {col}..{col + 7} of a [{rows}, {ld}] operand")
    return src[row * ld + col:row * ld + col + 8]


def emulate(A, B, C0, M, N, K, lda, ldb, alpha, beta):
    """gemm_bf16_sm80_kernel over the grid; A [M, lda], B [N, ldb] (flat), C0 the C it starts from."""
    C = Output((M, N), "C")
    for by in range(-(-M // BM)):
        for bx in range(-(-N // BN)):
            sm = Shared(STAGES * STAGE)
            m0, n0 = by * BM, bx * BN
            k_tiles = -(-K // BK)

            def issue(kt):
                stage = (kt % STAGES) * STAGE
                k0 = kt * BK
                for i in range((BM + BN) * (BK // 8)):
                    r, c = i // (BK // 8), (i % (BK // 8)) * 8
                    is_a = r < BM
                    row = m0 + r if is_a else n0 + r - BM
                    ok = (row < M if is_a else row < N) and k0 + c < K
                    if ok:
                        vals = read_row(A, lda, M, row, k0 + c, "A") if is_a else read_row(B, ldb, N, row, k0 + c, "B")
                    else:
                        vals = np.zeros(8)
                    sm.cp_async16(stage + r * LD + c, vals)

            for kt in range(STAGES - 1):
                if kt < k_tiles:
                    issue(kt)
                sm.commit()
            acc = np.zeros((WARPS_M * WARPS_N, WM // 16, WN // 8, 32, 4))
            for kt in range(k_tiles):
                sm.wait(STAGES - 2)
                if kt + STAGES - 1 < k_tiles:
                    issue(kt + STAGES - 1)
                sm.commit()
                a = (kt % STAGES) * STAGE
                b = a + BM * LD
                for warp in range(WARPS_M * WARPS_N):
                    wm, wn = warp // WARPS_N, warp % WARPS_N
                    for ks in range(BK // 16):
                        af = [ldmatrix_x4(sm, a + (wm * WM + 16 * mi + LANES % 16) * LD + 16 * ks + (LANES // 16) * 8, False, "A fragment")
                              for mi in range(WM // 16)]
                        bf = [ldmatrix_x4(sm, b + (wn * WN + 16 * nj + LANES % 8 + (LANES // 16) * 8) * LD + 16 * ks + ((LANES // 8) % 2) * 8, False, "B fragment")
                              for nj in range(WN // 16)]
                        for mi in range(WM // 16):
                            for nj in range(WN // 16):
                                mma(acc[warp, mi, 2 * nj], af[mi], [bf[nj][0], bf[nj][1]])
                                mma(acc[warp, mi, 2 * nj + 1], af[mi], [bf[nj][2], bf[nj][3]])
            sm.wait(0)
            for warp in range(WARPS_M * WARPS_N):
                wm, wn = warp // WARPS_N, warp % WARPS_N
                for mi in range(WM // 16):
                    for ni in range(WN // 8):
                        for e in range(4):
                            rows = m0 + wm * WM + 16 * mi + G + 8 * (e >> 1)
                            cols = n0 + wn * WN + 8 * ni + 2 * T4 + (e & 1)
                            for lane in range(32):
                                row, col = rows[lane], cols[lane]
                                if row >= M or col >= N:
                                    continue
                                v = alpha * acc[warp, mi, ni, lane, e]
                                C.put(row * N + col, v if beta == 0.0 else v + beta * C0[row, col])
    C.check_once()
    return C.v


def main():
    rng = np.random.default_rng(5)
    ok = True
    # (M, N, K, pad): partial tiles both ways, K not a whole number of steps (and not of 8: padded rows),
    # one step, fewer steps than stages, many more.
    cases = [(1, 1, 1, 7), (130, 129, 33, 7), (128, 128, 32, 0), (257, 200, 301, 3), (64, 300, 96, 0),
             (200, 130, 1000, 0), (5, 140, 8, 0)]
    for M, N, K, pad in cases:
        lda = ldb = K + pad  # K + pad: rows padded to a multiple of 8 (zeros past K, as toBf16KMajor writes)
        assert lda % 8 == 0
        a = np.zeros((M, lda))
        b = np.zeros((N, ldb))
        a[:, :K] = rng.integers(-3, 4, (M, K))  # small integers: any index error changes an exact sum
        b[:, :K] = rng.integers(-3, 4, (N, K))
        c0 = rng.integers(-3, 4, (M, N)).astype(np.float64)
        for alpha, beta in [(1.0, 0.0), (0.5, 1.0)]:
            name = f"gemm_bf16_sm80 M{M} N{N} K{K} lda{lda} alpha{alpha} beta{beta}"
            try:
                got = emulate(a.reshape(-1), b.reshape(-1), c0, M, N, K, lda, ldb, alpha, beta)
            except EmulationError as e:
                print(f"FAIL  {name}: {e}")
                ok = False
                continue
            want = alpha * (a[:, :K] @ b[:, :K].T) + beta * c0
            err = np.max(np.abs(got - want)) if want.size else 0.0
            good = np.isfinite(got).all() and err <= 1e-9
            print(f"{'ok' if good else 'FAIL'}  {name}  (max err {err:.2e})")
            ok &= good
    print("all cases match" if ok else "MISMATCHES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
