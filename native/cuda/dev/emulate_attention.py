#!/usr/bin/env python3
"""CPU emulation of the index math of native/cuda/attention.cu's kernels (no GPU needed).

What it checks: attention_forward_kernel<kMaxD> (Tq >= 8) and attention_decode_kernel<kMaxD> (Tq < 8),
block by block and warp by warp, with every shared / global index computed exactly as the kernels do
(lanes are numpy vectors; shuffles, warpMax and warpSum are taken over that vector):
  * the Q tile load (scale folded in, rows past Tq and dims past D zero-filled), the K / V tile loads
    (keys past keysEnd and dims past D zero-filled, K rows padded to kMaxD + 1);
  * causal masking at tile edges (T not a multiple of the tile, kBq = 32 or 16 rows a block), pos0 > 0
    (decode / chunked prefill against a longer cache Tcap), GQA head mapping h -> h / (H / Hkv);
  * the online softmax (m, l, corr) and o += p V with p broadcast by lane, lse = m + log(l);
  * the decode kernel's 4-warp key split and its merge through shared memory;
  * shared arrays start NaN-filled, cache rows [pos0 + Tq, Tcap) are NaN (must never be read), every
    global read is bounds-checked, every out / lse element must be written exactly once.
Backward: attention_delta_kernel, attention_dkdv_kernel<kMaxD> (a block per (b, kv head, 32 or 16 keys),
looping over the group's query heads and the query tiles from (j0 / 32) * 32) and attention_dq_kernel<kMaxD>,
same treatment (NaN-filled shared memory, bounds-checked reads, each dq / dk / dv / delta element written
once), fed the exact forward out / lse, against the textbook float64 backward (dS = P (dP - rowsum(dO O))).
Compared with a plain float64 softmax attention to 1e-9 relative (the emulation computes in float64, so
any index or masking error shows as a large mismatch, rounding never does).

Run: /usr/bin/python3 native/cuda/dev/emulate_attention.py   (numpy only; ~1 minute). Not part of any build.
"""
import itertools
import math
import sys

import numpy as np

K_WARPS = 4
K_THREADS = K_WARPS * 32
K_BK = 32
K_DECODE_BELOW = 8
LANES = np.arange(32)


def rows_per_warp(kmaxd):
    return 8 if kmaxd <= 128 else 4


class Global:
    def __init__(self, name, arr):
        self.name, self.arr = name, arr.ravel()

    def __getitem__(self, idx):
        idx = np.asarray(idx)
        if idx.size and (idx.min() < 0 or idx.max() >= self.arr.size):
            raise AssertionError(f"out-of-bounds read of {self.name}")
        return self.arr[idx]


class Out:
    def __init__(self, name, n):
        self.name = name
        self.data = np.full(n, np.nan)
        self.count = np.zeros(n, dtype=np.int64)

    def __setitem__(self, idx, val):
        idx = np.atleast_1d(np.asarray(idx))
        if idx.size and (idx.min() < 0 or idx.max() >= self.data.size):
            raise AssertionError(f"out-of-bounds write of {self.name}")
        self.data[idx] = val
        np.add.at(self.count, idx, 1)


def shared_read(S, idx, what):
    v = S[idx]
    if np.isnan(v).any():
        raise AssertionError(f"read of an unwritten shared slot ({what})")
    return v


def emulate_forward(out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0, kmaxd):
    kR = rows_per_warp(kmaxd)
    kBq, kDS, kKs = K_WARPS * kR, kmaxd // 32, kmaxd + 1
    for b, h, bx in itertools.product(range(B), range(H), range(-(-Tq // kBq))):
        Qs = np.full(kBq * kmaxd, np.nan)
        Ks = np.full(K_BK * kKs, np.nan)
        Vs = np.full(K_BK * kmaxd, np.nan)
        t0 = bx * kBq
        g = h // (H // Hkv)
        scale = 1.0 / math.sqrt(D)
        qStride, kvStride = H * D, Hkv * D
        t1 = min(Tq, t0 + kBq)
        keysEnd = pos0 + t1
        for i in range(kBq * kmaxd):  # every i once (threads split the range)
            r, d = i // kmaxd, i % kmaxd
            Qs[i] = q[(b * Tq + t0 + r) * qStride + h * D + d] * scale if (t0 + r < Tq and d < D) else 0.0
        o = np.zeros((K_WARPS, kR, kDS, 32))
        m = np.full((K_WARPS, kR), -np.inf)
        l = np.zeros((K_WARPS, kR))
        kBase = b * Tcap * kvStride + g * D
        vBase = b * Tcap * kvStride + g * D
        for j0 in range(0, keysEnd, K_BK):
            for i in range(K_BK * kmaxd):
                j, d = i // kmaxd, i % kmaxd
                kv = vv = 0.0
                if j0 + j < keysEnd and d < D:
                    kv = k[kBase + (j0 + j) * kvStride + d]
                    vv = v[vBase + (j0 + j) * kvStride + d]
                Ks[j * kKs + d] = kv
                Vs[j * kmaxd + d] = vv
            for warp in range(K_WARPS):
                qw0 = warp * kR * kmaxd
                s = np.zeros((kR, 32))
                for d in range(D):
                    kd = shared_read(Ks, LANES * kKs + d, "Ks")
                    for r in range(kR):
                        s[r] += shared_read(Qs, np.array([qw0 + r * kmaxd + d]), "Qs")[0] * kd
                p = np.zeros((kR, 32))
                for r in range(kR):
                    t = t0 + warp * kR + r
                    pos = pos0 + t
                    if t >= Tq or j0 > pos:
                        continue
                    visible = j0 + LANES <= pos
                    mx = max(m[warp, r], np.max(np.where(visible, s[r], -np.inf)))
                    corr = math.exp(m[warp, r] - mx) if m[warp, r] != -np.inf else 0.0
                    p[r] = np.where(visible, np.exp(np.where(visible, s[r] - mx, 0.0)), 0.0)
                    l[warp, r] = l[warp, r] * corr + p[r].sum()
                    m[warp, r] = mx
                    o[warp, r] *= corr
                nk = min(K_BK, keysEnd - j0)
                for j in range(nk):
                    vj = np.stack([shared_read(Vs, j * kmaxd + LANES + 32 * i, "Vs") for i in range(kDS)])
                    for r in range(kR):
                        pj = p[r][j]  # __shfl_sync(p[r], j)
                        o[warp, r] += pj * vj
        for warp in range(K_WARPS):
            for r in range(kR):
                t = t0 + warp * kR + r
                if t >= Tq:
                    continue
                inv = 1.0 / l[warp, r]
                dst = (b * Tq + t) * qStride + h * D
                for i in range(kDS):
                    d = LANES + 32 * i
                    sel = d < D
                    out[dst + d[sel]] = o[warp, r, i][sel] * inv
                if lse is not None:
                    lse[(b * H + h) * Tq + t] = m[warp, r] + math.log(l[warp, r])


def emulate_decode(out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0, kmaxd):
    kDS = kmaxd // 32
    for t, h, b in itertools.product(range(Tq), range(H), range(B)):
        Qs = np.full(kmaxd, np.nan)
        Ms = np.full(K_WARPS, np.nan)
        Ls = np.full(K_WARPS, np.nan)
        Os = np.full(K_WARPS * kmaxd, np.nan)
        g = h // (H // Hkv)
        scale = 1.0 / math.sqrt(D)
        qStride, kvStride = H * D, Hkv * D
        nkeys = pos0 + t + 1
        qRow = (b * Tq + t) * qStride + h * D
        for d in range(kmaxd):
            Qs[d] = q[qRow + d] * scale if d < D else 0.0
        kBase = b * Tcap * kvStride + g * D
        vBase = kBase
        for warp in range(K_WARPS):
            m, l = -np.inf, 0.0
            o = np.zeros((kDS, 32))
            for j0 in range(warp * 32, nkeys, K_WARPS * 32):
                key = j0 + LANES
                valid = key < nkeys
                s = np.zeros(32)
                for lane in np.nonzero(valid)[0]:
                    kr = kBase + key[lane] * kvStride
                    s[lane] = sum(shared_read(Qs, np.array([d]), "Qs")[0] * k[kr + d] for d in range(D))
                mx = max(m, np.max(np.where(valid, s, -np.inf)))
                corr = math.exp(m - mx) if m != -np.inf else 0.0
                p = np.where(valid, np.exp(np.where(valid, s - mx, 0.0)), 0.0)
                l = l * corr + p.sum()
                m = mx
                o *= corr
                nk = min(32, nkeys - j0)
                for j in range(nk):
                    pj = p[j]
                    vr = vBase + (j0 + j) * kvStride
                    for i in range(kDS):
                        d = LANES + 32 * i
                        sel = d < D
                        o[i][sel] += pj * v[vr + d[sel]]
            Ms[warp] = m
            Ls[warp] = l
            for i in range(kDS):
                Os[warp * kmaxd + LANES + 32 * i] = o[i]
        M = max(Ms)
        f = np.array([math.exp(Ms[w] - M) if Ms[w] != -np.inf else 0.0 for w in range(K_WARPS)])
        L = float((Ls * f).sum())
        inv = 1.0 / L
        dst = (b * Tq + t) * qStride + h * D
        for d in range(D):
            acc = sum(shared_read(Os, np.array([w * kmaxd + d]), "Os")[0] * f[w] for w in range(K_WARPS))
            out[dst + d] = acc * inv
        if lse is not None:
            lse[(b * H + h) * Tq + t] = M + math.log(L)


def reference(q, k, v, B, Tq, H, Hkv, D, pos0):
    out = np.zeros((B, Tq, H, D))
    lse = np.zeros((B, H, Tq))
    for b, h, t in itertools.product(range(B), range(H), range(Tq)):
        g = h // (H // Hkv)
        n = pos0 + t + 1
        s = (k[b, :n, g, :] @ q[b, t, h, :]) / math.sqrt(D)
        mx = s.max()
        e = np.exp(s - mx)
        out[b, t, h] = (e @ v[b, :n, g, :]) / e.sum()
        lse[b, h, t] = mx + math.log(e.sum())
    return out, lse


# ---- backward (attention_delta_kernel, attention_dkdv_kernel, attention_dq_kernel) ---------------


def dkdv_keys(kmaxd):
    return 32 if kmaxd <= 128 else 16


def emulate_delta(delta, dout, out, B, T, H, D):
    rows = B * T * H
    for bx in range(-(-rows // K_WARPS)):
        for warp in range(K_WARPS):
            row = bx * K_WARPS + warp
            if row >= rows:
                continue
            s = 0.0
            for lane in range(32):
                for i in range(lane, D, 32):
                    s += out[row * D + i] * dout[row * D + i]
            h = row % H
            bt = row // H
            t, b = bt % T, bt // T
            delta[(b * H + h) * T + t] = s


def emulate_dkdv(dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D, kmaxd):
    kKeys = dkdv_keys(kmaxd)
    kKpw, kDS, kQs = kKeys // K_WARPS, kmaxd // 32, kmaxd + 1
    for b, gkv, bx in itertools.product(range(B), range(Hkv), range(-(-T // kKeys))):
        Ks = np.full(kKeys * kmaxd, np.nan)
        Vs = np.full(kKeys * kmaxd, np.nan)
        Qs = np.full(32 * kQs, np.nan)
        dOs = np.full(32 * kQs, np.nan)
        Ls = np.full(32, np.nan)
        Dl = np.full(32, np.nan)
        j0 = bx * kKeys
        group = H // Hkv
        scale = 1.0 / math.sqrt(D)
        qStride, kvStride = H * D, Hkv * D
        kvOff = b * T * kvStride + gkv * D
        for i in range(kKeys * kmaxd):
            j, d = i // kmaxd, i % kmaxd
            ok = j0 + j < T and d < D
            Ks[i] = k[kvOff + (j0 + j) * kvStride + d] if ok else 0.0
            Vs[i] = v[kvOff + (j0 + j) * kvStride + d] if ok else 0.0
        dkAcc = np.zeros((K_WARPS, kKpw, kDS, 32))
        dvAcc = np.zeros((K_WARPS, kKpw, kDS, 32))
        for hh in range(group):
            h = gkv * group + hh
            for i0 in range((j0 // 32) * 32, T, 32):
                Qs[:] = np.nan
                dOs[:] = np.nan
                for i in range(32 * kmaxd):
                    r, d = i // kmaxd, i % kmaxd
                    ok = i0 + r < T and d < D
                    off = (b * T + i0 + r) * qStride + h * D + d
                    Qs[r * kQs + d] = q[off] * scale if ok else 0.0
                    dOs[r * kQs + d] = dout[off] if ok else 0.0
                for tid in range(32):
                    i = i0 + tid
                    off = (b * H + h) * T + i
                    Ls[tid] = lse[off] if i < T else 0.0
                    Dl[tid] = delta[off] if i < T else 0.0
                for warp in range(K_WARPS):
                    myKey0 = warp * kKpw
                    s = np.zeros((kKpw, 32))
                    dp = np.zeros((kKpw, 32))
                    for d in range(D):
                        qd = shared_read(Qs, LANES * kQs + d, "Qs")
                        od = shared_read(dOs, LANES * kQs + d, "dOs")
                        for kk in range(kKpw):
                            s[kk] += qd * shared_read(Ks, np.array([(myKey0 + kk) * kmaxd + d]), "Ks")[0]
                            dp[kk] += od * shared_read(Vs, np.array([(myKey0 + kk) * kmaxd + d]), "Vs")[0]
                    qi = i0 + LANES
                    p = np.zeros((kKpw, 32))
                    ds = np.zeros((kKpw, 32))
                    for kk in range(kKpw):
                        j = j0 + myKey0 + kk
                        visible = (qi < T) & (j < T) & (j <= qi)
                        p[kk] = np.where(visible, np.exp(np.where(visible, s[kk] - Ls, 0.0)), 0.0)
                        ds[kk] = np.where(visible, p[kk] * (dp[kk] - Dl), 0.0)
                    rows = min(32, T - i0)
                    for r in range(rows):
                        od = np.stack([shared_read(dOs, r * kQs + LANES + 32 * i, "dOs") for i in range(kDS)])
                        qd = np.stack([shared_read(Qs, r * kQs + LANES + 32 * i, "Qs") for i in range(kDS)])
                        for kk in range(kKpw):
                            dvAcc[warp, kk] += p[kk][r] * od
                            dkAcc[warp, kk] += ds[kk][r] * qd
        for warp in range(K_WARPS):
            for kk in range(kKpw):
                j = j0 + warp * kKpw + kk
                if j >= T:
                    continue
                for i in range(kDS):
                    d = LANES + 32 * i
                    sel = d < D
                    dk[kvOff + j * kvStride + d[sel]] = dkAcc[warp, kk, i][sel]
                    dv[kvOff + j * kvStride + d[sel]] = dvAcc[warp, kk, i][sel]


def emulate_dq(dq, dout, q, k, v, lse, delta, B, T, H, Hkv, D, kmaxd):
    kR = rows_per_warp(kmaxd)
    kBq, kDS, kKs = K_WARPS * kR, kmaxd // 32, kmaxd + 1
    for b, h, bx in itertools.product(range(B), range(H), range(-(-T // kBq))):
        Qs = np.full(kBq * kmaxd, np.nan)
        dOs = np.full(kBq * kmaxd, np.nan)
        Ks = np.full(K_BK * kKs, np.nan)
        Vs = np.full(K_BK * kKs, np.nan)
        Ls = np.full(kBq, np.nan)
        Dl = np.full(kBq, np.nan)
        t0 = bx * kBq
        gkv = h // (H // Hkv)
        scale = 1.0 / math.sqrt(D)
        qStride, kvStride = H * D, Hkv * D
        kvOff = b * T * kvStride + gkv * D
        t1 = min(T, t0 + kBq)
        for i in range(kBq * kmaxd):
            r, d = i // kmaxd, i % kmaxd
            ok = t0 + r < T and d < D
            off = (b * T + t0 + r) * qStride + h * D + d
            Qs[i] = q[off] * scale if ok else 0.0
            dOs[i] = dout[off] if ok else 0.0
        for r in range(kBq):
            off = (b * H + h) * T + t0 + r
            Ls[r] = lse[off] if t0 + r < T else 0.0
            Dl[r] = delta[off] if t0 + r < T else 0.0
        acc = np.zeros((K_WARPS, kR, kDS, 32))
        for j0 in range(0, t1, K_BK):
            for i in range(K_BK * kmaxd):
                j, d = i // kmaxd, i % kmaxd
                ok = j0 + j < t1 and d < D
                Ks[j * kKs + d] = k[kvOff + (j0 + j) * kvStride + d] if ok else 0.0
                Vs[j * kKs + d] = v[kvOff + (j0 + j) * kvStride + d] if ok else 0.0
            for warp in range(K_WARPS):
                row0 = warp * kR
                s = np.zeros((kR, 32))
                dp = np.zeros((kR, 32))
                for d in range(D):
                    kd = shared_read(Ks, LANES * kKs + d, "Ks")
                    vd = shared_read(Vs, LANES * kKs + d, "Vs")
                    for r in range(kR):
                        s[r] += shared_read(Qs, np.array([(row0 + r) * kmaxd + d]), "Qs")[0] * kd
                        dp[r] += shared_read(dOs, np.array([(row0 + r) * kmaxd + d]), "dOs")[0] * vd
                j = j0 + LANES
                ds = np.zeros((kR, 32))
                for r in range(kR):
                    i = t0 + row0 + r
                    visible = (i < T) & (j <= i)
                    p = np.where(visible, np.exp(np.where(visible, s[r] - Ls[row0 + r], 0.0)), 0.0)
                    ds[r] = np.where(visible, p * (dp[r] - Dl[row0 + r]), 0.0)
                nk = min(K_BK, t1 - j0)
                for jj in range(nk):
                    kv = np.stack([shared_read(Ks, jj * kKs + LANES + 32 * i, "Ks") for i in range(kDS)])
                    for r in range(kR):
                        acc[warp, r] += ds[r][jj] * kv
        for warp in range(K_WARPS):
            for r in range(kR):
                i = t0 + warp * kR + r
                if i >= T:
                    continue
                dst = (b * T + i) * qStride + h * D
                for c in range(kDS):
                    d = LANES + 32 * c
                    sel = d < D
                    dq[dst + d[sel]] = acc[warp, r, c][sel] * scale


def reference_backward(dout, q, k, v, B, T, H, Hkv, D):
    dq = np.zeros_like(q)
    dk = np.zeros_like(k)
    dv = np.zeros_like(v)
    scale = 1.0 / math.sqrt(D)
    mask = np.tril(np.ones((T, T), dtype=bool))
    for b, h in itertools.product(range(B), range(H)):
        g = h // (H // Hkv)
        S = np.where(mask, (q[b, :, h] @ k[b, :, g].T) * scale, -np.inf)
        P = np.exp(S - S.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        O = P @ v[b, :, g]
        dO = dout[b, :, h]
        dv[b, :, g] += P.T @ dO
        dP = dO @ v[b, :, g].T
        dS = P * (dP - (dO * O).sum(axis=1, keepdims=True))
        dq[b, :, h] = dS @ k[b, :, g] * scale
        dk[b, :, g] += dS.T @ q[b, :, h] * scale
    return dq, dk, dv


def run_backward_case(B, T, H, Hkv, D, rng):
    q = rng.standard_normal((B, T, H, D))
    k = rng.standard_normal((B, T, Hkv, D))
    v = rng.standard_normal((B, T, Hkv, D))
    dout = rng.standard_normal((B, T, H, D))
    out, lse = reference(q, k, v, B, T, H, Hkv, D, 0)  # the forward's out and lse (checked above)
    G = {n: Global(n, a) for n, a in dict(q=q, k=k, v=v, dout=dout, out=out, lse=lse).items()}
    delta = Out("delta", B * H * T)
    dq, dk, dv = Out("dq", q.size), Out("dk", k.size), Out("dv", v.size)
    kmaxd = kmaxd_for(D)
    emulate_delta(delta, G["dout"], G["out"], B, T, H, D)
    dl = Global("delta", delta.data)
    emulate_dkdv(dk, dv, G["dout"], G["q"], G["k"], G["v"], G["lse"], dl, B, T, H, Hkv, D, kmaxd)
    emulate_dq(dq, G["dout"], G["q"], G["k"], G["v"], G["lse"], dl, B, T, H, Hkv, D, kmaxd)
    ref = dict(zip(["dq", "dk", "dv"], reference_backward(dout, q, k, v, B, T, H, Hkv, D)))
    for name, o in [("delta", delta), ("dq", dq), ("dk", dk), ("dv", dv)]:
        if not (o.count == 1).all():
            return False, f"some {name} element not written exactly once"
    for name, o in [("dq", dq), ("dk", dk), ("dv", dv)]:
        got = o.data.reshape(ref[name].shape)
        err = np.abs(got - ref[name])
        if not (err <= 1e-9 * (1 + np.abs(ref[name]))).all():
            idx = np.unravel_index(np.argmax(np.where(np.isnan(err), np.inf, err)), err.shape)
            return False, f"{name} mismatch at {idx}: got {got[idx]}, want {ref[name][idx]}"
    return True, ""


def kmaxd_for(D):
    return 32 if D <= 32 else 64 if D <= 64 else 128 if D <= 128 else 256


def run_case(B, Tq, Tcap, H, Hkv, D, pos0, rng, with_lse=True):
    q = rng.standard_normal((B, Tq, H, D))
    k = rng.standard_normal((B, Tcap, Hkv, D))
    v = rng.standard_normal((B, Tcap, Hkv, D))
    k[:, pos0 + Tq:] = np.nan  # invalid cache rows: must never be read
    v[:, pos0 + Tq:] = np.nan
    out = Out("out", B * Tq * H * D)
    lse = Out("lse", B * H * Tq) if with_lse else None
    kmaxd = kmaxd_for(D)
    fn = emulate_decode if Tq < K_DECODE_BELOW else emulate_forward
    fn(out, lse, Global("q", q), Global("k", k), Global("v", v), B, Tq, Tcap, H, Hkv, D, pos0, kmaxd)
    ref_out, ref_lse = reference(q, k, v, B, Tq, H, Hkv, D, pos0)
    if not (out.count == 1).all():
        return False, "some out element not written exactly once"
    if with_lse and not (lse.count == 1).all():
        return False, "some lse element not written exactly once"
    got = out.data.reshape(B, Tq, H, D)
    err = np.abs(got - ref_out)
    if not (err <= 1e-9 * (1 + np.abs(ref_out))).all():
        idx = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err)), err.shape)
        return False, f"out mismatch at [b,t,h,d]={idx}: got {got[idx]}, want {ref_out[idx]}"
    if with_lse:
        gl = lse.data.reshape(B, H, Tq)
        if not (np.abs(gl - ref_lse) <= 1e-9 * (1 + np.abs(ref_lse))).all():
            return False, "lse mismatch"
    return True, ""


def main():
    rng = np.random.default_rng(7)
    cases = []
    # (B, Tq, extra cache, H, Hkv, D, pos0)
    for D in [16, 32, 48, 64, 80, 128, 200]:
        for Tq, pos0 in [(1, 0), (3, 5), (7, 0), (8, 0), (9, 3), (33, 0), (45, 37), (70, 0)]:
            for H, Hkv in [(4, 2), (3, 1)]:
                if D >= 128 and Tq > 33 and H == 3:
                    continue  # keep the run short
                cases.append((2, Tq, 4, H, Hkv, D, pos0))
    cases += [(1, 1, 0, 2, 2, 64, 200), (1, 2, 3, 6, 3, 64, 129), (1, 17, 0, 6, 3, 200, 40),
              (1, 40, 2, 8, 2, 128, 100)]
    failures = 0
    for i, (B, Tq, extra, H, Hkv, D, pos0) in enumerate(cases):
        Tcap = pos0 + Tq + extra
        ok, msg = run_case(B, Tq, Tcap, H, Hkv, D, pos0, rng, with_lse=(i % 5 != 4))
        if not ok:
            failures += 1
            kind = "decode" if Tq < K_DECODE_BELOW else "forward"
            print(f"FAIL {kind} B={B} Tq={Tq} Tcap={Tcap} H={H} Hkv={Hkv} D={D} pos0={pos0}: {msg}", flush=True)
    print(f"forward: {len(cases) - failures}/{len(cases)} cases match", flush=True)
    bcases = [(2, 1, 4, 2, 16), (2, 9, 4, 2, 32), (1, 33, 3, 1, 48), (1, 45, 4, 2, 64), (1, 70, 2, 1, 80),
              (1, 37, 4, 2, 128), (1, 20, 2, 1, 200), (1, 35, 6, 3, 200)]
    bfail = 0
    for B, T, H, Hkv, D in bcases:
        ok, msg = run_backward_case(B, T, H, Hkv, D, rng)
        if not ok:
            bfail += 1
            print(f"FAIL backward B={B} T={T} H={H} Hkv={Hkv} D={D}: {msg}", flush=True)
    print(f"backward: {len(bcases) - bfail}/{len(bcases)} cases match")
    return 1 if failures or bfail else 0


if __name__ == "__main__":
    sys.exit(main())
