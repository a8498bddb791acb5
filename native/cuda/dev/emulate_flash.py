#!/usr/bin/env python3
"""CPU emulation of native/cuda/attention_flash.cu (the bf16 tensor-core attention), no GPU needed.

What it checks, block by block and warp by warp with the kernels' own index math (lanes are numpy vectors):
  * to_heads_kernel's packing ([B,T,heads,D] -> [B,heads,T,kD], scale folded into q, zero padding);
  * every shared-memory access: tiles start NaN-filled, cp.async copies stay pending until the kernel's
    cp.async.wait_group lets them land, and a fragment load that touches a pending or never-written
    element is an error (so a buffer refilled while still in use, or read before its copy lands, fails);
  * ldmatrix (.x4, with and without .trans) and mma.sync m16n8k16 by their PTX fragment layouts, not by
    the kernels' helpers: the helpers' address math is what is under test;
  * the forward (two 16-row blocks a warp, causal masks at tile edges, the per-warp tile skip, pos0 > 0
    against a longer cache), the dK/dV kernel (a block per query head) with the group sum, and dQ;
  * every output element written exactly once, compared with float64 softmax attention to 1e-9 (the
    emulation computes in float64: index and masking errors show, bf16 rounding is not modelled).
The constants below mirror the kernels'; change them together.

Run: /usr/bin/python3 native/cuda/dev/emulate_flash.py   (numpy only; about a minute). Not part of any build.
"""
import math
import sys

import numpy as np

WARPS = 4
THREADS = 32 * WARPS
LANES = np.arange(32)
G, T4 = LANES // 4, LANES % 4

# forward: 2 row blocks a warp, 128 queries a block, key tiles of 32 (kD 128) or 64
FRB = 2
FQ = 64 * FRB
def forward_keys(kd): return 32 if kd > 64 else 64
# dK/dV: 64 keys a block, query tiles of 32; dQ: 64 queries a block, key tiles of 32
BK, BQ = 64, 32
QQ, QK = 64, 32
# dQ from the kept dS: 64 queries a block, key tiles of 32, dS^T tiles with rows of 64 + 8
SQ, SK = 64, 32
SLD = SQ + 8
GARBAGE = 1e30  # what a global buffer holds where nothing was written (finite: it must not reach an output)


class EmulationError(Exception):
    pass


class Shared:
    """A block's shared memory in bf16 elements: values, plus the cp.async group each pending element awaits."""

    def __init__(self, n):
        self.v = np.full(n, np.nan)
        self.pending = np.full(n, -1, dtype=np.int64)
        self.queue = []  # (group, offsets, values)
        self.open = []
        self.groups = 0

    def cp_async16(self, dst, values):
        self.open.append((dst, np.asarray(values, dtype=np.float64)))

    def commit(self):
        for dst, vals in self.open:
            offs = np.arange(dst, dst + 8)
            self.pending[offs] = self.groups
            self.queue.append((self.groups, offs, vals))
        self.open = []
        self.groups += 1

    def wait(self, n):
        """cp.async.wait_group n: every group but the newest n lands."""
        keep = self.groups - n
        rest = []
        for g, offs, vals in self.queue:
            if g < keep:
                self.v[offs] = vals
                self.pending[offs[self.pending[offs] == g]] = -1
            else:
                rest.append((g, offs, vals))
        self.queue = rest

    def read(self, offs, what):
        offs = np.asarray(offs)
        if (self.pending[offs] >= 0).any():
            raise EmulationError(f"{what}: reads shared memory whose cp.async has not landed")
        vals = self.v[offs]
        if np.isnan(vals).any():
            raise EmulationError(f"{what}: reads shared memory never written")
        return vals

    def write(self, offs, vals):
        self.v[np.asarray(offs)] = vals


# ---- PTX semantics ---------------------------------------------------------------------------------------

def ldmatrix_x4(sm, addr, trans, what):
    """addr[lane]: element offset of the row lane supplies (lanes 8i..8i+7: matrix i's rows 0..7).
    Returns 4 registers, each [32 lanes, 2 halves]."""
    regs = []
    for i in range(4):
        rows = np.stack([sm.read(addr[8 * i + r] + np.arange(8), what) for r in range(8)])  # [8 rows][8 cols]
        if trans:
            rows = rows.T
        regs.append(np.stack([rows[G, 2 * T4], rows[G, 2 * T4 + 1]], axis=1))
    return regs


def a_matrix(a):
    """A (16x16, row) from its four registers: a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..)."""
    M = np.zeros((16, 16))
    for reg, (dr, dc) in zip(a, [(0, 0), (8, 0), (0, 8), (8, 8)]):
        M[G + dr, 2 * T4 + dc] = reg[:, 0]
        M[G + dr, 2 * T4 + dc + 1] = reg[:, 1]
    return M


def b_matrix(b):
    """B (16x8, col) from two registers: b0 (k 2t.., n g), b1 (k 2t+8.., n g)."""
    M = np.zeros((16, 8))
    for reg, dk in zip(b, [0, 8]):
        M[2 * T4 + dk, G] = reg[:, 0]
        M[2 * T4 + dk + 1, G] = reg[:, 1]
    return M


def mma(c, a, b):
    """c[32 lanes, 4] += A B with C's layout c0,c1 (g, 2t..), c2,c3 (g+8, 2t..)."""
    D = a_matrix(a) @ b_matrix(b)
    c[:, 0] += D[G, 2 * T4]
    c[:, 1] += D[G, 2 * T4 + 1]
    c[:, 2] += D[G + 8, 2 * T4]
    c[:, 3] += D[G + 8, 2 * T4 + 1]


def quad(v, op):
    """Reduction over the 4 lanes of each quad (shuffles with xor 1 and 2)."""
    q = v.reshape(8, 4)
    return np.repeat(op(q, axis=1), 4)


# ---- the kernels' helpers (their address math, transcribed) -------------------------------------------------

def row_ld(kd): return kd + 8


def load_tile(sm, base, rows_n, kd, head, r0, rows):
    """loadTile<kRows, kD>(S = sm[base], head, r0, rows): head is the packed [rows, kd] array of one head."""
    chunks = kd // 8
    for i in range(rows_n * chunks):  # every thread's share: i = threadIdx.x, += kThreadsF
        r, c = i // chunks, (i % chunks) * 8
        valid = r0 + r < rows
        src = head[r0 + r, c:c + 8] if valid else np.zeros(8)
        sm.cp_async16(base + r * row_ld(kd) + c, src)


def frag_a(sm, S, kd, row0, ks, what):
    addr = S + (row0 + LANES % 16) * row_ld(kd) + 16 * ks + (LANES // 16) * 8
    return ldmatrix_x4(sm, addr, False, what)


def frag_b2(sm, S, kd, n0, ks, what):
    addr = S + (n0 + LANES % 8 + (LANES // 16) * 8) * row_ld(kd) + 16 * ks + ((LANES // 8) % 2) * 8
    return ldmatrix_x4(sm, addr, False, what)


def frag_b2_trans(sm, S, kd, n0, j, what):
    addr = S + (16 * j + LANES % 8 + ((LANES // 8) % 2) * 8) * row_ld(kd) + n0 + (LANES // 16) * 8
    return ldmatrix_x4(sm, addr, True, what)


def frag_a_trans(sm, S, ld, m0, j, what):
    addr = S + (16 * j + LANES % 8 + 8 * (LANES // 16)) * ld + m0 + 8 * ((LANES // 8) % 2)
    return ldmatrix_x4(sm, addr, True, what)


def mma_pair(c0, c1, a, b):
    mma(c0, a, [b[0], b[1]])
    mma(c1, a, [b[2], b[3]])


def c_to_a(c0, c1):
    return [c0[:, 0:2].copy(), c0[:, 2:4].copy(), c1[:, 0:2].copy(), c1[:, 2:4].copy()]


def to_heads(x, B, T, heads, D, kd, mul):
    """to_heads_kernel: out[b, h, t, :] = x[b, t, h, :] * mul, zero-padded to kd (index math transcribed)."""
    out = np.full((B * heads * T, kd), np.nan)
    for i in range(B * heads * T * (kd // 8)):
        c = (i % (kd // 8)) * 8
        row = i // (kd // 8)
        t = row % T
        bh = row // T
        h, b = bh % heads, bh // heads
        src = ((b * T + t) * heads + h) * D
        out[row, c:c + 8] = [x.flat[src + c + e] * mul if c + e < D else 0.0 for e in range(8)]
    return out.reshape(B, heads, T, kd)


class Output:
    def __init__(self, shape, name):
        self.v = np.full(shape, np.nan)
        self.count = np.zeros(shape, dtype=np.int64)
        self.name = name

    def put(self, idx, val):
        self.v.flat[idx] = val
        self.count.flat[idx] += 1

    def check_once(self, mask=None):
        c = self.count if mask is None else self.count[mask]
        if (c != 1).any():
            raise EmulationError(f"{self.name}: an element written {int(c.min())}..{int(c.max())} times")


# ---- forward -------------------------------------------------------------------------------------------------

def emulate_forward(q, k, v, B, Tq, Tcap, H, Hkv, D, pos0):
    kd = 64 if D <= 64 else 128
    FK = forward_keys(kd)
    ld, nd, kks = row_ld(kd), kd // 8, kd // 16
    qh = to_heads(q, B, Tq, H, D, kd, 1.0 / math.sqrt(D))
    kh = to_heads(k, B, Tcap, Hkv, D, kd, 1.0)
    vh = to_heads(v, B, Tcap, Hkv, D, kd, 1.0)
    out = Output((B, Tq, H, D), "out")
    lse = Output((B, H, Tq), "lse")
    grid = -(-Tq // FQ)
    for bx in range(grid):
        for h in range(H):
            for b in range(B):
                sm = Shared(ld * (FQ + 4 * FK))
                Qs, Ks, Vs = 0, FQ * ld, FQ * ld + 2 * FK * ld
                q0 = (grid - 1 - bx) * FQ
                hk = h // (H // Hkv)
                qHead, kHead, vHead = qh[b, h], kh[b, hk], vh[b, hk]
                last_key = min(Tcap - 1, pos0 + min(q0 + FQ, Tq) - 1)
                tiles = last_key // FK + 1
                load_tile(sm, Qs, FQ, kd, qHead, q0, Tq)
                load_tile(sm, Ks, FK, kd, kHead, 0, last_key + 1)
                load_tile(sm, Vs, FK, kd, vHead, 0, last_key + 1)
                sm.commit()
                st = []
                for warp in range(WARPS):
                    st.append(dict(o=np.zeros((FRB, nd, 32, 4)), m=np.full((FRB, 2, 32), -np.inf),
                                   l=np.zeros((FRB, 2, 32)), row0=16 * FRB * warp))
                for kt in range(tiles):
                    cur = kt & 1
                    if kt + 1 < tiles:
                        load_tile(sm, Ks + (cur ^ 1) * FK * ld, FK, kd, kHead, (kt + 1) * FK, last_key + 1)
                        load_tile(sm, Vs + (cur ^ 1) * FK * ld, FK, kd, vHead, (kt + 1) * FK, last_key + 1)
                        sm.commit()
                        sm.wait(1)
                    else:
                        sm.wait(0)
                    K, V, k0 = Ks + cur * FK * ld, Vs + cur * FK * ld, kt * FK
                    for w in st:
                        row0 = w["row0"]
                        pos = pos0 + q0 + row0 + G
                        if k0 > pos0 + q0 + row0 + 16 * FRB - 1:
                            continue
                        s = np.zeros((FRB, FK // 8, 32, 4))
                        for ks in range(kks):
                            qa = [frag_a(sm, Qs, kd, row0 + 16 * rb, ks, "forward Q") for rb in range(FRB)]
                            for n in range(0, FK // 8, 2):
                                bf = frag_b2(sm, K, kd, 8 * n, ks, "forward K")
                                for rb in range(FRB):
                                    mma_pair(s[rb, n], s[rb, n + 1], qa[rb], bf)
                        for rb in range(FRB):
                            reaches = k0 + FK - 1 > pos + 16 * rb  # per lane, as in the kernel
                            for n in range(FK // 8):
                                for e in range(4):
                                    key = k0 + 8 * n + 2 * T4 + (e & 1)
                                    masked = reaches & (key > pos + 16 * rb + 8 * (e >> 1))
                                    s[rb, n, masked, e] = -np.inf
                            for r in range(2):
                                mx = np.max(np.maximum(s[rb, :, :, 2 * r], s[rb, :, :, 2 * r + 1]), axis=0)
                                m_new = np.maximum(w["m"][rb, r], quad(mx, np.max))
                                m_use = np.where(m_new == -np.inf, 0.0, m_new)
                                corr = np.exp(w["m"][rb, r] - m_use)
                                total = np.zeros(32)
                                for n in range(FK // 8):
                                    for e in (2 * r, 2 * r + 1):
                                        s[rb, n, :, e] = np.exp(s[rb, n, :, e] - m_use)
                                        total += s[rb, n, :, e]
                                w["l"][rb, r] = w["l"][rb, r] * corr + total
                                w["m"][rb, r] = m_new
                                w["o"][rb, :, :, 2 * r] *= corr
                                w["o"][rb, :, :, 2 * r + 1] *= corr
                        for j in range(FK // 16):
                            pa = [c_to_a(s[rb, 2 * j], s[rb, 2 * j + 1]) for rb in range(FRB)]
                            for i in range(0, nd, 2):
                                bf = frag_b2_trans(sm, V, kd, 8 * i, j, "forward V")
                                for rb in range(FRB):
                                    mma_pair(w["o"][rb, i], w["o"][rb, i + 1], pa[rb], bf)
                for w in st:
                    for rb in range(FRB):
                        for r in range(2):
                            rows = q0 + w["row0"] + 16 * rb + G + 8 * r
                            total = quad(w["l"][rb, r], np.sum)
                            for lane in range(32):
                                row = rows[lane]
                                if row >= Tq:
                                    continue
                                for i in range(nd):
                                    d = 8 * i + 2 * T4[lane]
                                    base = ((b * Tq + row) * H + h) * D
                                    if d < D:
                                        out.put(base + d, w["o"][rb, i, lane, 2 * r] / total[lane])
                                    if d + 1 < D:
                                        out.put(base + d + 1, w["o"][rb, i, lane, 2 * r + 1] / total[lane])
                                if T4[lane] == 0:
                                    lse.put((b * H + h) * Tq + row, w["m"][rb, r, lane] + math.log(total[lane]))
    out.check_once()
    lse.check_once()
    return out.v, lse.v


# ---- backward ------------------------------------------------------------------------------------------------

def store_rows(out, acc, rows, b, T, heads, h, D, mul=1.0):
    """A warp's C-fragment accumulators acc[nd][lane][4], rows rows[r][lane], into out [B,T,heads,D] at head h
    (rows past T and dims past D skipped), times mul."""
    for r in range(2):
        for lane in range(32):
            row = rows[r][lane]
            if row >= T:
                continue
            base = ((b * T + row) * heads + h) * D
            for i in range(acc.shape[0]):
                d = 8 * i + 2 * T4[lane]
                for e in range(2):
                    if d + e < D:
                        out.put(base + d + e, acc[i, lane, 2 * r + e] * mul)


def emulate_dkdv_share(qh, kh, vh, doh, lse, delta, B, T, H, Hkv, D, kd, ds=None):
    """attention_flash_dkdv_kernel: each query head's share, [B,T,H,D]; with ds ([B,H,T,ldq]), dS^T too."""
    ld, nd, kks = row_ld(kd), kd // 8, kd // 16
    dk, dv = Output((B, T, H, D), "dk share"), Output((B, T, H, D), "dv share")
    for bx in range(-(-T // BK)):
        for h in range(H):
            for b in range(B):
                sm = Shared(ld * (2 * BK + 4 * BQ))
                stats = np.full(4 * BQ, np.nan)  # plain shared stores, [2][lse kBq, delta kBq]
                Ks, Vs = 0, BK * ld
                Qs, dOs = 2 * BK * ld, 2 * BK * ld + 2 * BQ * ld
                k0, hk = bx * BK, h // (H // Hkv)
                steps = (T - k0 + BQ - 1) // BQ

                def issue(s, buf):
                    q0 = k0 + s * BQ
                    load_tile(sm, Qs + buf * BQ * ld, BQ, kd, qh[b, h], q0, T)
                    load_tile(sm, dOs + buf * BQ * ld, BQ, kd, doh[b, h], q0, T)
                    for i in range(BQ):
                        inside = q0 + i < T
                        stats[buf * 2 * BQ + i] = lse[b, h, q0 + i] if inside else 0.0
                        stats[buf * 2 * BQ + BQ + i] = delta[b, h, q0 + i] if inside else 0.0

                load_tile(sm, Ks, BK, kd, kh[b, hk], k0, T)
                load_tile(sm, Vs, BK, kd, vh[b, hk], k0, T)
                if steps > 0:
                    issue(0, 0)
                sm.commit()
                acc = [dict(dk=np.zeros((nd, 32, 4)), dv=np.zeros((nd, 32, 4))) for _ in range(WARPS)]
                for s_ in range(steps):
                    cur = s_ & 1
                    if s_ + 1 < steps:
                        issue(s_ + 1, cur ^ 1)
                        sm.commit()
                        sm.wait(1)
                    else:
                        sm.wait(0)
                    Q, dO = Qs + cur * BQ * ld, dOs + cur * BQ * ld
                    lseS, deltaS = stats[cur * 2 * BQ:cur * 2 * BQ + BQ], stats[cur * 2 * BQ + BQ:cur * 2 * BQ + 2 * BQ]
                    q0 = k0 + s_ * BQ
                    for warp in range(WARPS):
                        key_of = [k0 + 16 * warp + G, k0 + 16 * warp + G + 8]
                        st_, dpt = np.zeros((BQ // 8, 32, 4)), np.zeros((BQ // 8, 32, 4))
                        for ks in range(kks):
                            ka = frag_a(sm, Ks, kd, 16 * warp, ks, "dkdv K")
                            va = frag_a(sm, Vs, kd, 16 * warp, ks, "dkdv V")
                            for n in range(0, BQ // 8, 2):
                                qb = frag_b2(sm, Q, kd, 8 * n, ks, "dkdv Q")
                                ob = frag_b2(sm, dO, kd, 8 * n, ks, "dkdv dO")
                                mma_pair(st_[n], st_[n + 1], ka, qb)
                                mma_pair(dpt[n], dpt[n + 1], va, ob)
                        for n in range(BQ // 8):
                            for e in range(4):
                                qi = 8 * n + 2 * T4 + (e & 1)
                                query = q0 + qi
                                live = (query < T) & (query >= key_of[e >> 1])
                                if np.isnan(lseS[qi]).any() or np.isnan(deltaS[qi]).any():
                                    raise EmulationError("dkdv: statistics read before written")
                                p = np.where(live, np.exp(st_[n, :, e] - lseS[qi]), 0.0)
                                st_[n, :, e] = p
                                dpt[n, :, e] = p * (dpt[n, :, e] - deltaS[qi])
                        if ds is not None:
                            for n in range(BQ // 8):
                                for r in range(2):
                                    for lane in range(32):
                                        key, query = key_of[r][lane], q0 + 8 * n + 2 * T4[lane]
                                        if key >= T or query >= T:
                                            continue
                                        ds[b, h, key, query] = dpt[n, lane, 2 * r]
                                        if query + 1 < T:
                                            ds[b, h, key, query + 1] = dpt[n, lane, 2 * r + 1]
                        for j in range(BQ // 16):
                            pa, sa = c_to_a(st_[2 * j], st_[2 * j + 1]), c_to_a(dpt[2 * j], dpt[2 * j + 1])
                            for i in range(0, nd, 2):
                                ob = frag_b2_trans(sm, dO, kd, 8 * i, j, "dkdv dO^T")
                                qb = frag_b2_trans(sm, Q, kd, 8 * i, j, "dkdv Q^T")
                                mma_pair(acc[warp]["dv"][i], acc[warp]["dv"][i + 1], pa, ob)
                                mma_pair(acc[warp]["dk"][i], acc[warp]["dk"][i + 1], sa, qb)
                for warp in range(WARPS):
                    keys = [k0 + 16 * warp + G + 8 * r for r in range(2)]
                    store_rows(dk, acc[warp]["dk"], keys, b, T, H, h, D)
                    store_rows(dv, acc[warp]["dv"], keys, b, T, H, h, D)
    dk.check_once()
    dv.check_once()
    return dk.v, dv.v


def emulate_sum_group(dk_part, dv_part, B, T, H, Hkv, D):
    """sum_group_kernel's index math over flat buffers."""
    group = H // Hkv
    kp, vp = dk_part.reshape(-1), dv_part.reshape(-1)
    dk, dv = Output((B, T, Hkv, D), "dk"), Output((B, T, Hkv, D), "dv")
    for i in range(B * T * Hkv * D):
        d = i % D
        row_head = i // D
        src = row_head * group * D + d
        dk.put(i, sum(kp[src + j * D] for j in range(group)))
        dv.put(i, sum(vp[src + j * D] for j in range(group)))
    dk.check_once()
    dv.check_once()
    return dk.v, dv.v


def emulate_dq(qh, kh, vh, doh, lse, delta, B, T, H, Hkv, D, kd):
    ld, nd, kks = row_ld(kd), kd // 8, kd // 16
    scale = 1.0 / math.sqrt(D)
    dq = Output((B, T, H, D), "dq")
    grid = -(-T // QQ)
    for bx in range(grid):
        for h in range(H):
            for b in range(B):
                sm = Shared(ld * (2 * QQ + 4 * QK))
                Qs, dOs = 0, QQ * ld
                Ks, Vs = 2 * QQ * ld, 2 * QQ * ld + 2 * QK * ld
                q0, hk = (grid - 1 - bx) * QQ, h // (H // Hkv)
                last_key = min(T, q0 + QQ) - 1
                tiles = last_key // QK + 1
                load_tile(sm, Qs, QQ, kd, qh[b, h], q0, T)
                load_tile(sm, dOs, QQ, kd, doh[b, h], q0, T)
                load_tile(sm, Ks, QK, kd, kh[b, hk], 0, T)
                load_tile(sm, Vs, QK, kd, vh[b, hk], 0, T)
                sm.commit()
                warps = []
                for warp in range(WARPS):
                    rows = [q0 + 16 * warp + G, q0 + 16 * warp + G + 8]
                    lse_r = [np.where(r < T, lse[b, h, np.minimum(r, T - 1)], 0.0) for r in rows]
                    delta_r = [np.where(r < T, delta[b, h, np.minimum(r, T - 1)], 0.0) for r in rows]
                    warps.append(dict(rows=rows, lse=lse_r, delta=delta_r, acc=np.zeros((nd, 32, 4)), qf=None, of=None))
                for kt in range(tiles):
                    cur = kt & 1
                    if kt + 1 < tiles:
                        load_tile(sm, Ks + (cur ^ 1) * QK * ld, QK, kd, kh[b, hk], (kt + 1) * QK, T)
                        load_tile(sm, Vs + (cur ^ 1) * QK * ld, QK, kd, vh[b, hk], (kt + 1) * QK, T)
                        sm.commit()
                        sm.wait(1)
                    else:
                        sm.wait(0)
                    for warp, w in enumerate(warps):
                        if kt == 0:
                            w["qf"] = [frag_a(sm, Qs, kd, 16 * warp, ks, "dq Q") for ks in range(kks)]
                            w["of"] = [frag_a(sm, dOs, kd, 16 * warp, ks, "dq dO") for ks in range(kks)]
                        K, V, k0 = Ks + cur * QK * ld, Vs + cur * QK * ld, kt * QK
                        s, dp = np.zeros((QK // 8, 32, 4)), np.zeros((QK // 8, 32, 4))
                        for ks in range(kks):
                            for n in range(0, QK // 8, 2):
                                kb = frag_b2(sm, K, kd, 8 * n, ks, "dq K")
                                vb = frag_b2(sm, V, kd, 8 * n, ks, "dq V")
                                mma_pair(s[n], s[n + 1], w["qf"][ks], kb)
                                mma_pair(dp[n], dp[n + 1], w["of"][ks], vb)
                        for n in range(QK // 8):
                            for e in range(4):
                                r = e >> 1
                                key = k0 + 8 * n + 2 * T4 + (e & 1)
                                live = (key <= w["rows"][r]) & (w["rows"][r] < T)
                                p = np.where(live, np.exp(s[n, :, e] - w["lse"][r]), 0.0)
                                s[n, :, e] = p * (dp[n, :, e] - w["delta"][r])
                        for j in range(QK // 16):
                            sa = c_to_a(s[2 * j], s[2 * j + 1])
                            for i in range(0, nd, 2):
                                kb = frag_b2_trans(sm, K, kd, 8 * i, j, "dq K^T")
                                mma_pair(w["acc"][i], w["acc"][i + 1], sa, kb)
                for w in warps:
                    store_rows(dq, w["acc"], w["rows"], b, T, H, h, D, scale)
    dq.check_once()
    return dq.v


def emulate_dq_ds(kh, ds, B, T, H, Hkv, D, kd):
    """attention_flash_dq_ds_kernel: dQ = dS K from dS^T ([B,H,T,ldq], what the dK/dV pass wrote)."""
    ld = row_ld(kd)
    nd = kd // 8
    scale = 1.0 / math.sqrt(D)
    dq = Output((B, T, H, D), "dq (from dS)")
    grid = -(-T // SQ)
    for bx in range(grid):
        for h in range(H):
            for b in range(B):
                sm = Shared(2 * SK * SLD + 2 * SK * ld)
                Ss, Ks = 0, 2 * SK * SLD
                q0, hk = (grid - 1 - bx) * SQ, h // (H // Hkv)
                tiles = (min(T, q0 + SQ) - 1) // SK + 1

                def load_ds(S, key0):
                    for i in range(SK * (SQ // 8)):
                        r, c = i // (SQ // 8), (i % (SQ // 8)) * 8
                        valid = key0 + r < T and q0 + c < T
                        sm.cp_async16(S + r * SLD + c, ds[b, h, key0 + r, q0 + c:q0 + c + 8] if valid else np.zeros(8))

                load_ds(Ss, 0)
                load_tile(sm, Ks, SK, kd, kh[b, hk], 0, T)
                sm.commit()
                acc = [np.zeros((nd, 32, 4)) for _ in range(WARPS)]
                for kt in range(tiles):
                    cur = kt & 1
                    if kt + 1 < tiles:
                        load_ds(Ss + (cur ^ 1) * SK * SLD, (kt + 1) * SK)
                        load_tile(sm, Ks + (cur ^ 1) * SK * ld, SK, kd, kh[b, hk], (kt + 1) * SK, T)
                        sm.commit()
                        sm.wait(1)
                    else:
                        sm.wait(0)
                    S, K = Ss + cur * SK * SLD, Ks + cur * SK * ld
                    for warp in range(WARPS):
                        for j in range(SK // 16):
                            sa = frag_a_trans(sm, S, SLD, 16 * warp, j, "dq dS")
                            for i in range(0, nd, 2):
                                kb = frag_b2_trans(sm, K, kd, 8 * i, j, "dq K^T (dS path)")
                                mma_pair(acc[warp][i], acc[warp][i + 1], sa, kb)
                for warp in range(WARPS):
                    store_rows(dq, acc[warp], [q0 + 16 * warp + G + 8 * r for r in range(2)], b, T, H, h, D, scale)
    dq.check_once()
    return dq.v


def emulate_backward(dout, q, k, v, out, lse, B, T, H, Hkv, D, keep_ds=False):
    kd = 64 if D <= 64 else 128
    scale = 1.0 / math.sqrt(D)
    delta = np.einsum("bthd,bthd->bht", dout, out)
    qh = to_heads(q, B, T, H, D, kd, scale)
    doh = to_heads(dout, B, T, H, D, kd, 1.0)
    kh = to_heads(k, B, T, Hkv, D, kd, 1.0)
    vh = to_heads(v, B, T, Hkv, D, kd, 1.0)
    lse3 = lse.reshape(B, H, T)
    ds = np.full((B, H, T, -(-T // 8) * 8 + 8), GARBAGE) if keep_ds else None  # rows ldq apart (+8: a chunk past the row's end)
    dk_s, dv_s = emulate_dkdv_share(qh, kh, vh, doh, lse3, delta, B, T, H, Hkv, D, kd, ds)
    if H != Hkv:
        dk, dv = emulate_sum_group(dk_s, dv_s, B, T, H, Hkv, D)
    else:
        dk, dv = dk_s, dv_s
    if keep_ds:
        dq = emulate_dq_ds(kh, ds, B, T, H, Hkv, D, kd)
    else:
        dq = emulate_dq(qh, kh, vh, doh, lse3, delta, B, T, H, Hkv, D, kd)
    return dq, dk, dv


# ---- float64 references --------------------------------------------------------------------------------------

def reference(q, k, v, B, Tq, H, Hkv, D, pos0):
    Tcap = k.shape[1]
    out = np.zeros((B, Tq, H, D))
    lse = np.zeros((B, H, Tq))
    for b in range(B):
        for h in range(H):
            hk = h // (H // Hkv)
            s = q[b, :, h] @ k[b, :, hk].T / math.sqrt(D)  # [Tq, Tcap]
            mask = np.arange(Tcap)[None, :] > (pos0 + np.arange(Tq))[:, None]
            s[mask] = -np.inf
            m = s.max(axis=1, keepdims=True)
            p = np.exp(s - m)
            out[b, :, h] = (p / p.sum(axis=1, keepdims=True)) @ v[b, :, hk]
            lse[b, h] = (m[:, 0] + np.log(p.sum(axis=1)))
    return out, lse


def reference_backward(dout, q, k, v, B, T, H, Hkv, D):
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for b in range(B):
        for h in range(H):
            hk = h // (H // Hkv)
            s = q[b, :, h] @ k[b, :, hk].T / math.sqrt(D)
            s[np.triu(np.ones((T, T), dtype=bool), 1)] = -np.inf
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            o = p @ v[b, :, hk]
            dp = dout[b, :, h] @ v[b, :, hk].T
            ds = p * (dp - (dout[b, :, h] * o).sum(axis=1, keepdims=True))
            dv[b, :, hk] += p.T @ dout[b, :, h]
            dq[b, :, h] = ds @ k[b, :, hk] / math.sqrt(D)
            dk[b, :, hk] += ds.T @ q[b, :, h] / math.sqrt(D)
    return dq, dk, dv


def close(what, got, want):
    err = np.max(np.abs(got - want) / (1e-9 + 1e-9 * np.abs(want))) if want.size else 0.0
    ok = np.isfinite(got).all() and err <= 1.0
    print(f"{'ok' if ok else 'FAIL'}  {what}  (max err {np.max(np.abs(got - want)):.2e})")
    return ok


def run_forward_cases(cases, emulate, rng):
    """Each (B, Tq, Tcap, H, Hkv, D, pos0) case through emulate(q, k, v, B, Tq, Tcap, H, Hkv, D, pos0) against
    the float64 reference; cache rows past the last query's position are NaN (they must never be read)."""
    ok = True
    for B, Tq, Tcap, H, Hkv, D, pos0 in cases:
        q = rng.standard_normal((B, Tq, H, D))
        k = rng.standard_normal((B, Tcap, Hkv, D))
        v = rng.standard_normal((B, Tcap, Hkv, D))
        k[:, pos0 + Tq:] = np.nan
        v[:, pos0 + Tq:] = np.nan
        name = f"forward B{B} Tq{Tq} Tcap{Tcap} H{H}/{Hkv} D{D} pos0 {pos0}"
        try:
            with np.errstate(invalid="raise", divide="raise"):
                out, lse = emulate(q, k, v, B, Tq, Tcap, H, Hkv, D, pos0)
        except (EmulationError, ArithmeticError, ValueError) as e:
            print(f"FAIL  {name}: {e}")
            ok = False
            continue
        kk, vv = np.nan_to_num(k[:, :pos0 + Tq]), np.nan_to_num(v[:, :pos0 + Tq])
        want, want_lse = reference(q, kk, vv, B, Tq, H, Hkv, D, pos0)
        ok &= close(name + " out", out, want)
        ok &= close(name + " lse", lse, want_lse)
    return ok


def run_backward_cases(cases, emulate, rng, label=""):
    """Each (B, T, H, Hkv, D) case through emulate(dout, q, k, v, out, lse, B, T, H, Hkv, D) -> (dq, dk, dv)."""
    ok = True
    for B, T, H, Hkv, D in cases:
        q = rng.standard_normal((B, T, H, D))
        k = rng.standard_normal((B, T, Hkv, D))
        v = rng.standard_normal((B, T, Hkv, D))
        dout = rng.standard_normal((B, T, H, D))
        out, lse = reference(q, k, v, B, T, H, Hkv, D, 0)
        name = f"backward B{B} T{T} H{H}/{Hkv} D{D}{label}"
        try:
            with np.errstate(invalid="raise", divide="raise"):
                dq, dk, dv = emulate(dout, q, k, v, out, lse, B, T, H, Hkv, D)
        except (EmulationError, ArithmeticError, ValueError) as e:
            print(f"FAIL  {name}: {e}")
            ok = False
            continue
        wq, wk, wv = reference_backward(dout, q, k, v, B, T, H, Hkv, D)
        ok &= close(name + " dq", dq, wq)
        ok &= close(name + " dk", dk, wk)
        ok &= close(name + " dv", dv, wv)
    return ok


def main():
    rng = np.random.default_rng(7)
    # (B, Tq, Tcap, H, Hkv, D, pos0): tile edges in both directions, GQA, D padded to 64 and 128, pos0 > 0.
    forward_cases = [(1, 8, 8, 1, 1, 64, 0), (1, 130, 130, 2, 1, 128, 0), (2, 70, 70, 4, 2, 100, 0),
                     (1, 33, 80, 2, 2, 48, 47), (1, 200, 200, 2, 1, 64, 0), (1, 9, 300, 1, 1, 128, 291)]
    ok = run_forward_cases(forward_cases, emulate_forward, rng)
    backward_cases = [(1, 8, 1, 1, 64), (1, 100, 4, 2, 128), (2, 70, 4, 1, 80), (1, 129, 2, 2, 64), (1, 65, 6, 3, 40)]
    ok &= run_backward_cases(backward_cases, emulate_backward, rng)
    ok &= run_backward_cases(backward_cases, lambda *a: emulate_backward(*a, keep_ds=True), rng, " (dQ from kept dS)")
    print("all cases match" if ok else "MISMATCHES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
