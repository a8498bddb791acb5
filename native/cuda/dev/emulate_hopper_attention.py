#!/usr/bin/env python3
"""CPU emulation of native/cuda/attention_hopper.cu (the wgmma attention kernels), no GPU needed.

What it checks, warp group by warp group with the kernels' own index math (the 128 threads of a group are
numpy vectors):
  * to_heads_t_kernel's transposed packing ([B,T,heads,D] -> [B,heads,kHD,Tp], zeros past n), kHD the
    padded head dim (64 for D <= 64, else 128; every kernel below at both);
  * loadSwizzled's cp.async placement (16-byte chunk c of row r at chunk c ^ (r % 8), panels of 64 columns),
    with emulate_flash.py's shared memory: tiles start NaN-filled, copies stay pending until the kernel's
    cp.async.wait_group lands them, and a read of a pending or never-written element is an error;
  * wgmma by the PTX rules, not by the kernels' helpers: a K-major operand with the 128-byte swizzle is read
    from its descriptor's start address (rows 128 bytes apart, 8-row groups 1024 apart, then the address's
    bits 4-6 XOR bits 7-9); an A operand in registers by the m16n8k16 A layout, warp w giving rows 16w..;
    accumulators by the m64nN D layout (d[4j+e]: row 16w + g (+8 for e >= 2), column 8j + 2t + e % 2);
  * fragATrans (ldmatrix.trans) for dQ's A fragments, as emulate_flash.py models it;
  * the forward (causal masks at tile edges, the per-group tile skip, pos0 > 0 against a longer cache whose
    later rows are NaN), dK/dV with dS^T kept (every dS^T element the dQ pass reads must have been written:
    the buffer starts as a huge finite value that would show in dQ), the group sum, and dQ;
  * every output element written exactly once, against float64 attention to 1e-9 (computed in float64:
    index, layout and masking errors show; bf16 rounding is not modelled).
The constants below mirror the kernels'; change them together.

Run: /usr/bin/python3 native/cuda/dev/emulate_hopper_attention.py   (numpy only; seconds).
"""
import math
import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emulate_flash import (GARBAGE, EmulationError, Output, Shared, a_matrix, emulate_sum_group,  # noqa: E402
                           frag_a_trans, run_backward_cases, run_forward_cases, to_heads)

PANEL = 64
FWD_Q, FWD_K = 128, 128
BWD_K, BWD_Q = 128, 64
DQ_Q, DQ_K = 128, 64
DQ_LD = DQ_Q + 8
PACK_T, PACK_PITCH = 64, 64 + 2

TW = np.arange(128)            # thread in its warp group
WARP, LANE = TW // 32, TW % 32
G, T4 = LANE // 4, LANE % 4
LOG2E = 1.4426950408889634


def ceil_div(a, b): return -(-a // b)
def padded_head_dim(D): return 64 if D <= 64 else 128  # paddedHeadDim
def align_up(n, to): return ceil_div(n, to) * to


# ---- packing -------------------------------------------------------------------------------------------------

def to_heads_t(x, B, T, heads, D, n, Tp, mul, plain=False):
    """to_heads_t_kernel<kHD>: out[b, h, d, t] = x[b, t, h, d] * mul for t < n, d < D, else 0 (index math
    transcribed, the shared tile included); with plain, also the [B, heads, T, kHD] layout (flat)."""
    hd = padded_head_dim(D)
    out = np.full((B, heads, hd, Tp), np.nan)
    flat_plain = np.full(B * heads * T * hd, np.nan) if plain else None
    flat = x.reshape(-1)
    for b in range(B):
        for h in range(heads):
            for bx in range(Tp // PACK_T):
                t0 = bx * PACK_T
                tile = np.full(hd * PACK_PITCH, np.nan)
                i = np.arange(PACK_T * hd)
                tt, d = i // hd, i % hd
                t = t0 + tt
                ok = (t < n) & (d < D)
                src = ((b * T + np.where(ok, t, 0)) * heads + h) * D + np.where(ok, d, 0)
                vals = np.where(ok, flat[src] * mul, 0.0)
                tile[d * PACK_PITCH + tt] = vals
                if plain:
                    inside = t < T
                    flat_plain[(((b * heads + h) * T + t) * hd + d)[inside]] = vals[inside]
                i = np.arange(hd * (PACK_T // 8))
                d, c = i // (PACK_T // 8), (i % (PACK_T // 8)) * 8
                for e in range(8):
                    out[b, h, d, t0 + c + e] = tile[d * PACK_PITCH + c + e]
    return (out, flat_plain) if plain else out


# ---- shared memory and wgmma ---------------------------------------------------------------------------------

def load_swizzled(sm, tile, rows, cols, src, base, ld, r0, valid, row_len):
    """loadSwizzled<rows, cols>(tile, src + base, ld, r0, valid); src is a flat array, row_len the length of
    the source's rows (a read past a row's end is an error)."""
    chunks = cols // 8
    for i in range(rows * chunks):
        r, cc = divmod(i, chunks)
        panel, c = divmod(cc, 8)
        ok = r0 + r < valid
        dst = tile + panel * rows * PANEL + r * PANEL + ((c ^ (r & 7)) * 8)
        if ok:
            at = base + (r0 + r) * ld + cc * 8
            if at < 0 or at + 8 > src.size or (at % row_len) + 8 > row_len:
                raise EmulationError(f"loadSwizzled reads outside its source (element {at})")
            vals = src[at:at + 8]
            if np.isnan(vals).any():
                raise EmulationError(f"loadSwizzled copies a NaN (element {at}): a row it must not read")
        else:
            vals = np.zeros(8)
        sm.cp_async16(dst, vals)


def await_step(sm, step, steps, issue):
    """awaitStep: the next step's copies start (issue(step, buffer)), this step's land."""
    if step + 1 < steps:
        issue(step + 1, (step + 1) & 1)
        sm.commit()
        sm.wait(1)
    else:
        sm.wait(0)


def tile_desc(tile, rows, row0, kk):
    """tileDesc<rows>(tile, row0, kk) as a byte address: panel kk / 4, row row0, 32 bytes a k-step."""
    return 2 * (tile + (kk // 4) * rows * PANEL + row0 * PANEL) + 32 * (kk % 4)


def smem_operand(sm, addr, rows, what):
    """A K-major bf16 operand (rows x 16) the hardware reads from a 128-byte-swizzle descriptor at byte addr."""
    if addr % 1024 not in (0, 32, 64, 96):
        raise EmulationError(f"{what}: descriptor start {addr} is not an 8-row group plus a k-step")
    r = np.arange(rows)[:, None]
    c = np.arange(16)[None, :]
    a = addr + (r // 8) * 1024 + (r % 8) * 128 + c * 2
    a = a ^ (((a >> 7) & 7) << 4)
    return sm.read((a // 2).ravel(), what).reshape(rows, 16)


def accumulate(acc, C):
    """acc[128 threads, N/2] += C (64 x N) by the m64nN D layout."""
    n = C.shape[1]
    for j in range(n // 8):
        for e in range(4):
            acc[:, 4 * j + e] += C[16 * WARP + G + 8 * (e >> 1), 8 * j + 2 * T4 + (e & 1)]


def wgmma_ss(acc, sm, desc_a, desc_b, n, what):
    accumulate(acc, smem_operand(sm, desc_a, 64, what + " A") @ smem_operand(sm, desc_b, n, what + " B").T)


def wgmma_rs(acc, regs, sm, desc_b, n, what):
    """regs: four registers [128 threads, 2 halves] (warp w's lanes: its 16 rows' A fragment)."""
    A = np.vstack([a_matrix([r[32 * w:32 * w + 32] for r in regs]) for w in range(4)])
    accumulate(acc, A @ smem_operand(sm, desc_b, n, what + " B").T)


def acc_to_a(x, kk):
    """accToA: the kernel's packing of accumulators 8kk..8kk+7 into four registers."""
    return [x[:, [8 * kk + 0, 8 * kk + 1]].copy(), x[:, [8 * kk + 2, 8 * kk + 3]].copy(),
            x[:, [8 * kk + 4, 8 * kk + 5]].copy(), x[:, [8 * kk + 6, 8 * kk + 7]].copy()]


def quad(v, op):
    return np.repeat(op(v.reshape(-1, 4), axis=1), 4)


def store_acc_rows(out, acc, rows, b, T, heads, h, D, mul):
    """storeAccRow for both rows of every thread: acc[128, N / 2] (an m64nN accumulator), rows[r][thread];
    mul a number or, per row, an array over the threads."""
    for r in range(2):
        for th in range(128):
            row = rows[r][th]
            if row >= T:
                continue
            base = ((b * T + row) * heads + h) * D
            m = mul if np.isscalar(mul) else mul[r][th]
            for j in range(acc.shape[1] // 4):
                d = 8 * j + 2 * T4[th]
                for e in range(2):
                    if d + e < D:
                        out.put(base + d + e, acc[th, 4 * j + 2 * r + e] * m)


# ---- forward -------------------------------------------------------------------------------------------------

def emulate_forward(q, k, v, B, Tq, Tcap, H, Hkv, D, pos0):
    hd = padded_head_dim(D)
    Tp = align_up(Tcap, 128)
    qh = to_heads(q, B, Tq, H, D, hd, 1.0 / math.sqrt(D)).reshape(-1)
    kh = to_heads(k, B, Tcap, Hkv, D, hd, 1.0).reshape(-1)
    vT = to_heads_t(v, B, Tcap, Hkv, D, pos0 + Tq, Tp, 1.0).reshape(-1)
    out, lse = Output((B, Tq, H, D), "out"), Output((B, H, Tq), "lse")
    grid = ceil_div(Tq, FWD_Q)
    for bx in range(grid):
        for h in range(H):
            for b in range(B):
                sm = Shared(FWD_Q * hd + 4 * FWD_K * hd)
                Qs, Ks = 0, FWD_Q * hd
                Vs = Ks + 2 * FWD_K * hd
                q0 = (grid - 1 - bx) * FWD_Q
                hk = h // (H // Hkv)
                n_keys = pos0 + Tq
                q_base = (b * H + h) * Tq * hd
                k_base = (b * Hkv + hk) * Tcap * hd
                v_base = (b * Hkv + hk) * hd * Tp
                last_key = pos0 + min(q0 + FWD_Q, Tq) - 1
                tiles = last_key // FWD_K + 1

                def issue(kt, buf):
                    load_swizzled(sm, Ks + buf * FWD_K * hd, FWD_K, hd, kh, k_base, hd, kt * FWD_K, n_keys, hd)
                    load_swizzled(sm, Vs + buf * FWD_K * hd, hd, FWD_K, vT, v_base + kt * FWD_K, Tp, 0, hd, Tp)

                load_swizzled(sm, Qs, FWD_Q, hd, qh, q_base, hd, q0, Tq, hd)
                issue(0, 0)
                sm.commit()
                o = [np.zeros((128, hd // 2)) for _ in range(2)]
                m = [np.full((128, 2), -np.inf) for _ in range(2)]
                l_ = [np.zeros((128, 2)) for _ in range(2)]
                for kt in range(tiles):
                    cur = kt & 1
                    await_step(sm, kt, tiles, issue)
                    K, V = Ks + cur * FWD_K * hd, Vs + cur * FWD_K * hd
                    k0 = kt * FWD_K
                    for wg in range(2):
                        group_pos = pos0 + q0 + 64 * wg
                        pos = group_pos + 16 * WARP + G
                        if not k0 <= group_pos + 63:
                            continue
                        s = np.zeros((128, 64))
                        for kk in range(hd // 16):
                            wgmma_ss(s, sm, tile_desc(Qs, FWD_Q, 64 * wg, kk), tile_desc(K, FWD_K, 0, kk), FWD_K, "S = Q K^T")
                        if k0 + FWD_K - 1 > group_pos:
                            for j in range(FWD_K // 8):
                                for e in range(4):
                                    masked = k0 + 8 * j + 2 * T4 + (e & 1) > pos + 8 * (e >> 1)
                                    s[masked, 4 * j + e] = -np.inf
                        for r in range(2):
                            cols = [4 * j + 2 * r + e for j in range(FWD_K // 8) for e in range(2)]
                            mx = s[:, cols].max(axis=1)
                            m_new = np.maximum(m[wg][:, r], quad(mx, np.max))
                            m_use = np.where(m_new == -np.inf, 0.0, m_new)
                            corr = np.exp2((m[wg][:, r] - m_use) * LOG2E)
                            s[:, cols] = np.exp2(s[:, cols] * LOG2E - (m_use * LOG2E)[:, None])
                            l_[wg][:, r] = l_[wg][:, r] * corr + s[:, cols].sum(axis=1)
                            m[wg][:, r] = m_new
                            ocols = [4 * j + 2 * r + e for j in range(hd // 8) for e in range(2)]
                            o[wg][:, ocols] *= corr[:, None]
                        for kk in range(FWD_K // 16):
                            wgmma_rs(o[wg], acc_to_a(s, kk), sm, tile_desc(V, hd, 0, kk), hd, "O += P V")
                for wg in range(2):
                    rows = [q0 + 64 * wg + 16 * WARP + G + 8 * r for r in range(2)]
                    totals = [quad(l_[wg][:, r], np.sum) for r in range(2)]
                    store_acc_rows(out, o[wg], rows, b, Tq, H, h, D, [1.0 / totals[r] for r in range(2)])
                    for r in range(2):
                        for th in np.nonzero((rows[r] < Tq) & (T4 == 0))[0]:
                            lse.put((b * H + h) * Tq + rows[r][th], m[wg][th, r] + math.log(totals[r][th]))
    out.check_once()
    lse.check_once()
    return out.v, lse.v


# ---- backward ------------------------------------------------------------------------------------------------

def emulate_dkdv_share(qh, kh, vh, doh, qT, doT, lse, delta, B, T, Tp, H, Hkv, D, ds, ds_count, ldq):
    hd = padded_head_dim(D)
    dk, dv = Output((B, T, H, D), "dk share"), Output((B, T, H, D), "dv share")
    for bx in range(ceil_div(T, BWD_K)):
        for h in range(H):
            for b in range(B):
                stage_elems = BWD_Q * hd
                sm = Shared(2 * BWD_K * hd + 2 * 4 * stage_elems)
                Ks, Vs = 0, BWD_K * hd
                stages = 2 * BWD_K * hd
                k0 = bx * BWD_K
                hk = h // (H // Hkv)
                head_q = b * H + h
                steps = ceil_div(T - k0, BWD_Q)
                stats = {}

                def stage(buf, which):
                    return stages + (buf * 4 + which) * stage_elems

                def issue(s, buf):
                    q0 = k0 + s * BWD_Q
                    load_swizzled(sm, stage(buf, 0), BWD_Q, hd, qh, head_q * T * hd, hd, q0, T, hd)
                    load_swizzled(sm, stage(buf, 1), BWD_Q, hd, doh, head_q * T * hd, hd, q0, T, hd)
                    load_swizzled(sm, stage(buf, 2), hd, BWD_Q, qT, head_q * hd * Tp + q0, Tp, 0, hd, Tp)
                    load_swizzled(sm, stage(buf, 3), hd, BWD_Q, doT, head_q * hd * Tp + q0, Tp, 0, hd, Tp)
                    i = np.arange(BWD_Q)
                    inside = q0 + i < T
                    idx = np.where(inside, q0 + i, 0)
                    stats[buf] = (np.where(inside, lse[b, h, idx], 0.0), np.where(inside, delta[b, h, idx], 0.0))

                load_swizzled(sm, Ks, BWD_K, hd, kh, (b * Hkv + hk) * T * hd, hd, k0, T, hd)
                load_swizzled(sm, Vs, BWD_K, hd, vh, (b * Hkv + hk) * T * hd, hd, k0, T, hd)
                if steps > 0:
                    issue(0, 0)
                sm.commit()
                dk_acc = [np.zeros((128, hd // 2)) for _ in range(2)]
                dv_acc = [np.zeros((128, hd // 2)) for _ in range(2)]
                for s in range(steps):
                    cur = s & 1
                    await_step(sm, s, steps, issue)
                    lse_s, delta_s = stats[cur]
                    q0 = k0 + s * BWD_Q
                    for wg in range(2):
                        if q0 + BWD_Q - 1 < k0 + 64 * wg:  # the tile wholly before the group's keys
                            continue
                        key_of = [k0 + 64 * wg + 16 * WARP + G + 8 * r for r in range(2)]
                        st, dpt = np.zeros((128, 32)), np.zeros((128, 32))
                        for kk in range(hd // 16):
                            wgmma_ss(st, sm, tile_desc(Ks, BWD_K, 64 * wg, kk), tile_desc(stage(cur, 0), BWD_Q, 0, kk), BWD_Q, "S^T = K Q^T")
                            wgmma_ss(dpt, sm, tile_desc(Vs, BWD_K, 64 * wg, kk), tile_desc(stage(cur, 1), BWD_Q, 0, kk), BWD_Q, "dP^T = V dO^T")
                        for j in range(BWD_Q // 8):  # P (while dP^T would still run)
                            for e in range(4):
                                qi = 8 * j + 2 * T4 + (e & 1)
                                query = q0 + qi
                                live = (query < T) & (query >= key_of[e >> 1])
                                st[:, 4 * j + e] = np.where(live, np.exp2((st[:, 4 * j + e] - lse_s[qi]) * LOG2E), 0.0)
                        for j in range(BWD_Q // 8):  # dS
                            for e in range(4):
                                dpt[:, 4 * j + e] = st[:, 4 * j + e] * (dpt[:, 4 * j + e] - delta_s[8 * j + 2 * T4 + (e & 1)])
                        for j in range(BWD_Q // 8):
                            for r in range(2):
                                for th in range(128):
                                    key, query = key_of[r][th], q0 + 8 * j + 2 * T4[th]
                                    if key >= T or query >= T:
                                        continue
                                    n = 2 if query + 1 < T else 1
                                    for e in range(n):
                                        ds[b, h, key, query + e] = dpt[th, 4 * j + 2 * r + e]
                                        ds_count[b, h, key, query + e] += 1
                        for kq in range(BWD_Q // 16):
                            wgmma_rs(dv_acc[wg], acc_to_a(st, kq), sm, tile_desc(stage(cur, 3), hd, 0, kq), hd, "dV += P^T dO")
                            wgmma_rs(dk_acc[wg], acc_to_a(dpt, kq), sm, tile_desc(stage(cur, 2), hd, 0, kq), hd, "dK += dS^T Q")
                for wg in range(2):
                    keys = [k0 + 64 * wg + 16 * WARP + G + 8 * r for r in range(2)]
                    store_acc_rows(dk, dk_acc[wg], keys, b, T, H, h, D, 1.0)
                    store_acc_rows(dv, dv_acc[wg], keys, b, T, H, h, D, 1.0)
    dk.check_once()
    dv.check_once()
    return dk.v, dv.v


def emulate_dq(kT, ds, ldq, B, T, Tp, H, Hkv, D, scale):
    hd = padded_head_dim(D)
    dq = Output((B, T, H, D), "dq")
    dsf = ds.reshape(-1)
    grid = ceil_div(T, DQ_Q)
    for bx in range(grid):
        for h in range(H):
            for b in range(B):
                sm = Shared(2 * hd * DQ_K + 2 * DQ_K * DQ_LD)
                KTs, Ss = 0, 2 * hd * DQ_K
                q0 = (grid - 1 - bx) * DQ_Q
                hk = h // (H // Hkv)
                kt_base = (b * Hkv + hk) * hd * Tp
                ds_base = (b * H + h) * T * ldq
                tiles = (min(T, q0 + DQ_Q) - 1) // DQ_K + 1

                def issue(kt, buf):
                    key0 = kt * DQ_K
                    S = Ss + buf * DQ_K * DQ_LD
                    for i in range(DQ_K * (DQ_Q // 8)):
                        r, c = i // (DQ_Q // 8), (i % (DQ_Q // 8)) * 8
                        valid = key0 + r < T and q0 + c < T
                        at = ds_base + (key0 + r) * ldq + q0 + c
                        if valid and (q0 + c + 8 > ldq):
                            raise EmulationError("dQ reads dS^T past its row")
                        sm.cp_async16(S + r * DQ_LD + c, dsf[at:at + 8] if valid else np.zeros(8))
                    load_swizzled(sm, KTs + buf * hd * DQ_K, hd, DQ_K, kT, kt_base + key0, Tp, 0, hd, Tp)

                issue(0, 0)
                sm.commit()
                acc = [np.zeros((128, hd // 2)) for _ in range(2)]
                for kt in range(tiles):
                    cur = kt & 1
                    await_step(sm, kt, tiles, issue)
                    for wg in range(2):
                        if not kt * DQ_K <= q0 + 64 * wg + 63:
                            continue
                        S = Ss + cur * DQ_K * DQ_LD
                        for j in range(DQ_K // 16):
                            regs = [frag_a_trans(sm, S, DQ_LD, 64 * wg + 16 * w, j, "dS^T fragment") for w in range(4)]
                            stacked = [np.vstack([regs[w][i] for w in range(4)]) for i in range(4)]
                            wgmma_rs(acc[wg], stacked, sm, tile_desc(KTs + cur * hd * DQ_K, hd, 0, j), hd, "dQ += dS K")
                for wg in range(2):
                    rows = [q0 + 64 * wg + 16 * WARP + G + 8 * r for r in range(2)]
                    store_acc_rows(dq, acc[wg], rows, b, T, H, h, D, scale)
    dq.check_once()
    return dq.v


def emulate_backward(dout, q, k, v, out, lse, B, T, H, Hkv, D):
    hd = padded_head_dim(D)
    scale = 1.0 / math.sqrt(D)
    Tp = align_up(T, 128)
    delta = np.einsum("bthd,bthd->bht", dout, out)
    qT, qh = to_heads_t(q, B, T, H, D, T, Tp, scale, plain=True)
    doT, doh = to_heads_t(dout, B, T, H, D, T, Tp, 1.0, plain=True)
    kT, kh = to_heads_t(k, B, T, Hkv, D, T, Tp, 1.0, plain=True)
    vh = to_heads(v, B, T, Hkv, D, hd, 1.0).reshape(-1)
    # The fused packing writes what toHeads would (the flash kernels' layout), element for element.
    for name, got, x, heads, mul in (("q", qh, q, H, scale), ("dout", doh, dout, H, 1.0), ("k", kh, k, Hkv, 1.0)):
        if not np.array_equal(got, to_heads(x, B, T, heads, D, hd, mul).reshape(-1)):
            raise EmulationError(f"the fused packing of {name} differs from toHeads")
    qT, doT, kT = qT.reshape(-1), doT.reshape(-1), kT.reshape(-1)
    ldq = align_up(T, 8)
    ds = np.full((B, H, T, ldq), GARBAGE)
    ds_count = np.zeros((B, H, T, ldq), dtype=np.int64)
    dk_s, dv_s = emulate_dkdv_share(qh, kh, vh, doh, qT, doT, lse.reshape(B, H, T), delta, B, T, Tp, H, Hkv, D, ds,
                                    ds_count, ldq)
    if (ds_count > 1).any():
        raise EmulationError("dS^T: an element written twice")
    if H != Hkv:
        dk, dv = emulate_sum_group(dk_s, dv_s, B, T, H, Hkv, D)
    else:
        dk, dv = dk_s, dv_s
    dq = emulate_dq(kT, ds, ldq, B, T, Tp, H, Hkv, D, scale)
    return dq, dk, dv


def main():
    rng = np.random.default_rng(11)
    # (B, Tq, Tcap, H, Hkv, D, pos0): tile edges both ways, GQA, both padded head dims (D 40, 64 in 64;
    # 96, 100, 128 in 128), pos0 > 0.
    forward_cases = [(1, 8, 8, 1, 1, 128, 0), (1, 130, 130, 2, 1, 128, 0), (2, 70, 70, 4, 2, 100, 0),
                     (1, 257, 257, 2, 2, 96, 0), (1, 70, 300, 2, 1, 100, 200), (1, 9, 140, 1, 1, 128, 131),
                     (1, 130, 130, 2, 1, 64, 0), (2, 70, 70, 4, 2, 40, 0), (1, 70, 300, 2, 1, 64, 200)]
    ok = run_forward_cases(forward_cases, emulate_forward, rng)
    backward_cases = [(1, 8, 1, 1, 128), (1, 100, 4, 2, 128), (2, 70, 4, 1, 80), (1, 200, 2, 2, 100), (1, 131, 3, 1, 128),
                      (1, 200, 4, 2, 64), (2, 70, 2, 1, 48)]
    ok &= run_backward_cases(backward_cases, emulate_backward, rng)
    print("all cases match" if ok else "MISMATCHES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
