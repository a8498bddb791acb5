// Causal grouped-query attention on the CPU, as FlashAttention does it: keys and values are visited in
// tiles of 64 with an online softmax, so no T x T matrix exists; every product inside a tile (S = Q K^T,
// O += P V, and in the backward dP = dO V^T, dV += P^T dO, dK += dS^T Q, dQ += dS K) is a small
// register-blocked GEMM on 8-wide vectors (GCC vector types, compiled in each SIMD clone), and exp is a
// vectorized polynomial. The backward is one pass per (batch, query head): it recomputes P from the saved
// log-sum-exp, owns its head's dQ rows, and writes its dK/dV to a per-head scratch that a fixed-order sum
// folds into the key-value heads: no atomics, the same result for any thread count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ops.h"
#include "vec.h"

// V8 values live only inside always-inlined helpers and the per-ISA clones: no vector crosses an ABI boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace pl::cpu {

namespace {

constexpr int kBq = 32;  // query rows per tile
constexpr int kBk = 64;  // keys per tile (score rows are always kBk wide, padded)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// C[m,n] = (accumulate ? C : 0) + alpha * op(A)[m,k] B[k,n]; op(A)(r,p) = A[r*lda + p], or A[p*lda + r]
// when transA; B row-major with row stride ldb. MR x 16 register tiles, then 8-wide, then scalar columns.
template <int MR, bool transA>
PL_INLINE void gemmRows(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int n, int k,
                        float alpha, bool accumulate) {
  const auto a = [&](int r, int p) { return transA ? A[static_cast<size_t>(p) * lda + r] : A[static_cast<size_t>(r) * lda + p]; };
  int c0 = 0;
  for (; c0 + 16 <= n; c0 += 16) {
    V8 acc0[MR], acc1[MR];
    for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = V8{};
    for (int p = 0; p < k; ++p) {
      const V8 b0 = load8(B + static_cast<size_t>(p) * ldb + c0), b1 = load8(B + static_cast<size_t>(p) * ldb + c0 + 8);
      for (int r = 0; r < MR; ++r) {
        const float av = a(r, p);  // scalar * vector: a broadcast in every clone
        acc0[r] += av * b0;
        acc1[r] += av * b1;
      }
    }
    for (int r = 0; r < MR; ++r) {
      float* c = C + static_cast<size_t>(r) * ldc + c0;
      store8(c, accumulate ? load8(c) + alpha * acc0[r] : alpha * acc0[r]);
      store8(c + 8, accumulate ? load8(c + 8) + alpha * acc1[r] : alpha * acc1[r]);
    }
  }
  for (; c0 + 8 <= n; c0 += 8) {
    V8 acc[MR];
    for (int r = 0; r < MR; ++r) acc[r] = V8{};
    for (int p = 0; p < k; ++p) {
      const V8 b0 = load8(B + static_cast<size_t>(p) * ldb + c0);
      for (int r = 0; r < MR; ++r) acc[r] += a(r, p) * b0;
    }
    for (int r = 0; r < MR; ++r) {
      float* c = C + static_cast<size_t>(r) * ldc + c0;
      store8(c, accumulate ? load8(c) + alpha * acc[r] : alpha * acc[r]);
    }
  }
  for (; c0 < n; ++c0) {
    for (int r = 0; r < MR; ++r) {
      float s = 0.0f;
      for (int p = 0; p < k; ++p) s += a(r, p) * B[static_cast<size_t>(p) * ldb + c0];
      float* c = C + static_cast<size_t>(r) * ldc + c0;
      *c = accumulate ? *c + alpha * s : alpha * s;
    }
  }
}

template <bool transA>
PL_INLINE void smallGemmT(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int m, int n, int k,
                          float alpha, bool accumulate) {
  const auto at = [&](int r) { return transA ? A + r : A + static_cast<size_t>(r) * lda; };
  int r0 = 0;
  for (; r0 + 4 <= m; r0 += 4)
    gemmRows<4, transA>(C + static_cast<size_t>(r0) * ldc, ldc, at(r0), lda, B, ldb, n, k, alpha, accumulate);
  float* c = C + static_cast<size_t>(r0) * ldc;
  switch (m - r0) {
    case 3: gemmRows<3, transA>(c, ldc, at(r0), lda, B, ldb, n, k, alpha, accumulate); break;
    case 2: gemmRows<2, transA>(c, ldc, at(r0), lda, B, ldb, n, k, alpha, accumulate); break;
    case 1: gemmRows<1, transA>(c, ldc, at(r0), lda, B, ldb, n, k, alpha, accumulate); break;
    default: break;
  }
}

PL_INLINE void smallGemm(float* C, int ldc, const float* A, int lda, bool transA, const float* B, int ldb, int m,
                         int n, int k, float alpha, bool accumulate) {
  if (transA) smallGemmT<true>(C, ldc, A, lda, B, ldb, m, n, k, alpha, accumulate);
  else smallGemmT<false>(C, ldc, A, lda, B, ldb, m, n, k, alpha, accumulate);
}

// dst[D][kBk] = rows [0, n) of a head slice with row stride `stride`, transposed; columns >= n are zero.
PL_INLINE void transposeTile(float* dst, const float* src, size_t stride, int n, int D) {
  for (int d = 0; d < D; ++d)
    for (int j = n; j < kBk; ++j) dst[d * kBk + j] = 0.0f;
  for (int j = 0; j < n; ++j) {
    const float* row = src + j * stride;
    for (int d = 0; d < D; ++d) dst[d * kBk + j] = row[d];
  }
}

// Forward for one (b, h, query tile): out rows and their log-sum-exp. s: [kBq][kBk], acc: [kBq][D].
PL_INLINE void forwardTileBody(float* out, float* lse, const float* q, const float* k, const float* v, int Tq,
                               int Tcap, int H, int Hkv, int D, int pos0, int b, int h, int t0, float* kt, float* s,
                               float* acc) {
  const int g = h / (H / Hkv);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int rows = std::min(kBq, Tq - t0);
  const int ldq = H * D, ldk = Hkv * D;
  const float* qTile = q + ((static_cast<size_t>(b) * Tq + t0) * H + h) * D;
  const float* kBase = k + (static_cast<size_t>(b) * Tcap * Hkv + g) * D;
  const float* vBase = v + (static_cast<size_t>(b) * Tcap * Hkv + g) * D;
  float m[kBq], l[kBq];
  for (int r = 0; r < rows; ++r) {
    m[r] = kNegInf;
    l[r] = 0.0f;
  }
  for (int i = 0; i < rows * D; ++i) acc[i] = 0.0f;
  const V8 lane = iota8();
  const int keysEnd = pos0 + t0 + rows;  // keys [0, keysEnd) are visible to some row of this tile
  for (int j0 = 0; j0 < keysEnd; j0 += kBk) {
    const int nk = std::min(kBk, keysEnd - j0);
    const int cols = (nk + 7) / 8 * 8;  // score columns computed: Kt is zero past nk
    transposeTile(kt, kBase + static_cast<size_t>(j0) * ldk, ldk, nk, D);
    smallGemm(s, kBk, qTile, ldq, false, kt, kBk, rows, cols, D, scale, false);
    for (int r = 0; r < rows; ++r) {
      float* sr = s + r * kBk;
      const int lim = std::min(nk, pos0 + t0 + r - j0 + 1);  // keys of this tile row r sees
      if (lim <= 0) {
        for (int j = 0; j < cols; ++j) sr[j] = 0.0f;
        continue;
      }
      const V8 vlim = splat8(static_cast<float>(lim));
      V8 vmax = splat8(kNegInf);
      for (int j = 0; j < cols; j += 8) {
        const V8 x = load8(sr + j);
        vmax = select8(lane + splat8(static_cast<float>(j)) < vlim, max8(vmax, x), vmax);
      }
      const float mNew = std::max(m[r], hmax8(vmax));
      const V8 vm = splat8(mNew);
      V8 vsum = V8{};
      for (int j = 0; j < cols; j += 8) {
        const V8 p = select8(lane + splat8(static_cast<float>(j)) < vlim, vexp8(load8(sr + j) - vm), V8{});
        store8(sr + j, p);
        vsum += p;
      }
      const float corr = m[r] == kNegInf ? 0.0f : vexp(m[r] - mNew);
      l[r] = l[r] * corr + hsum8(vsum);
      m[r] = mNew;
      if (corr != 1.0f) {
        float* o = acc + r * D;
        for (int d = 0; d < D; ++d) o[d] *= corr;
      }
    }
    smallGemm(acc, D, s, kBk, false, vBase + static_cast<size_t>(j0) * ldk, ldk, rows, D, nk, 1.0f, true);
  }
  for (int r = 0; r < rows; ++r) {
    float* dst = out + ((static_cast<size_t>(b) * Tq + t0 + r) * H + h) * D;
    const float inv = 1.0f / l[r];
    for (int d = 0; d < D; ++d) dst[d] = acc[r * D + d] * inv;
    if (lse) lse[(static_cast<size_t>(b) * H + h) * Tq + t0 + r] = m[r] + std::log(l[r]);
  }
}
PL_SIMD_CLONES(void, forwardTile,
               (float* out, float* lse, const float* q, const float* k, const float* v, int Tq, int Tcap, int H,
                int Hkv, int D, int pos0, int b, int h, int t0, float* kt, float* s, float* acc),
               (out, lse, q, k, v, Tq, Tcap, H, Hkv, D, pos0, b, h, t0, kt, s, acc))

struct BackScratch {
  float *kt, *vt, *s, *dp, *dk, *dv, *delta;
};

// Backward for one (b, h): dq rows of head h (overwritten), and this head's dK, dV into dkh, dvh [B,H,T,D].
PL_INLINE void backwardHeadBody(float* dq, float* dkh, float* dvh, const float* dout, const float* q, const float* k,
                                const float* v, const float* out, const float* lse, int T, int H, int Hkv, int D,
                                int b, int h, const BackScratch& w) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int g = h / (H / Hkv);
  const int ldq = H * D, ldk = Hkv * D;
  const size_t qOff = static_cast<size_t>(b) * T * H * D + static_cast<size_t>(h) * D;
  const size_t kvOff = static_cast<size_t>(b) * T * Hkv * D + static_cast<size_t>(g) * D;
  const float* lseRow = lse + (static_cast<size_t>(b) * H + h) * T;
  for (int i = 0; i < T; ++i) {
    const float* o = out + qOff + static_cast<size_t>(i) * ldq;
    const float* d = dout + qOff + static_cast<size_t>(i) * ldq;
    float* dqi = dq + qOff + static_cast<size_t>(i) * ldq;
    float sdot = 0.0f;
    for (int e = 0; e < D; ++e) sdot += o[e] * d[e];
    w.delta[i] = sdot;
    for (int e = 0; e < D; ++e) dqi[e] = 0.0f;
  }
  const V8 lane = iota8();
  for (int j0 = 0; j0 < T; j0 += kBk) {
    const int nk = std::min(kBk, T - j0);
    transposeTile(w.kt, k + kvOff + static_cast<size_t>(j0) * ldk, ldk, nk, D);
    transposeTile(w.vt, v + kvOff + static_cast<size_t>(j0) * ldk, ldk, nk, D);
    for (int i = 0; i < nk * D; ++i) w.dk[i] = w.dv[i] = 0.0f;
    for (int i0 = (j0 / kBq) * kBq; i0 < T; i0 += kBq) {
      const int rows = std::min(kBq, T - i0);
      const float* qi = q + qOff + static_cast<size_t>(i0) * ldq;
      const float* doi = dout + qOff + static_cast<size_t>(i0) * ldq;
      const int keys = std::min(nk, i0 + rows - j0);  // keys of this tile some row here sees
      const int cols = (keys + 7) / 8 * 8;
      smallGemm(w.s, kBk, qi, ldq, false, w.kt, kBk, rows, cols, D, scale, false);
      smallGemm(w.dp, kBk, doi, ldq, false, w.vt, kBk, rows, cols, D, 1.0f, false);
      for (int r = 0; r < rows; ++r) {
        float* sr = w.s + r * kBk;
        float* dr = w.dp + r * kBk;
        const int lim = std::min(nk, i0 + r - j0 + 1);
        if (lim <= 0) {
          for (int j = 0; j < cols; ++j) sr[j] = dr[j] = 0.0f;
          continue;
        }
        const V8 vlim = splat8(static_cast<float>(lim));
        const V8 vl = splat8(lseRow[i0 + r]), vd = splat8(w.delta[i0 + r]);
        for (int j = 0; j < cols; j += 8) {
          const V8 p = select8(lane + splat8(static_cast<float>(j)) < vlim, vexp8(load8(sr + j) - vl), V8{});
          store8(sr + j, p);
          store8(dr + j, p * (load8(dr + j) - vd));
        }
      }
      smallGemm(w.dv, D, w.s, kBk, true, doi, ldq, keys, D, rows, 1.0f, true);
      smallGemm(w.dk, D, w.dp, kBk, true, qi, ldq, keys, D, rows, scale, true);
      smallGemm(dq + qOff + static_cast<size_t>(i0) * ldq, ldq, w.dp, kBk, false,
                k + kvOff + static_cast<size_t>(j0) * ldk, ldk, rows, D, keys, scale, true);
    }
    float* dkDst = dkh + ((static_cast<size_t>(b) * H + h) * T + j0) * D;
    float* dvDst = dvh + ((static_cast<size_t>(b) * H + h) * T + j0) * D;
    for (int i = 0; i < nk * D; ++i) {
      dkDst[i] = w.dk[i];
      dvDst[i] = w.dv[i];
    }
  }
}
PL_SIMD_CLONES(void, backwardHead,
               (float* dq, float* dkh, float* dvh, const float* dout, const float* q, const float* k, const float* v,
                const float* out, const float* lse, int T, int H, int Hkv, int D, int b, int h,
                const BackScratch& w),
               (dq, dkh, dvh, dout, q, k, v, out, lse, T, H, Hkv, D, b, h, w))

struct Scratch {
  AlignedBuffer kt, vt, s, dp, acc, dk, dv, delta;
};
thread_local Scratch tlsScratch;
thread_local AlignedBuffer tlsHeadGrads;  // the caller's dK/dV per query head

}  // namespace

void attentionForward(ThreadPool& pool, float* out, float* lse, const float* q, const float* k, const float* v,
                      int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0) {
  const int qTiles = (Tq + kBq - 1) / kBq;
  const int64_t tasks = static_cast<int64_t>(B) * H * qTiles;
  auto body = [&](int64_t b0, int64_t e0, int) {
    float* kt = tlsScratch.kt.floats(static_cast<size_t>(D) * kBk);
    float* s = tlsScratch.s.floats(static_cast<size_t>(kBq) * kBk);
    float* acc = tlsScratch.acc.floats(static_cast<size_t>(kBq) * D);
    for (int64_t task = b0; task < e0; ++task) {
      const int tile = static_cast<int>(task % qTiles);
      const int h = static_cast<int>((task / qTiles) % H);
      const int b = static_cast<int>(task / (static_cast<int64_t>(qTiles) * H));
      forwardTile(out, lse, q, k, v, Tq, Tcap, H, Hkv, D, pos0, b, h, tile * kBq, kt, s, acc);
    }
  };
  if (tasks == 1 || static_cast<int64_t>(Tq) * (pos0 + Tq) * D * H * B < 65536) body(0, tasks, 0);
  else pool.parallelFor(tasks, body);
}

void attentionBackward(ThreadPool& pool, float* dq, float* dk, float* dv, const float* dout, const float* q,
                       const float* k, const float* v, const float* out, const float* lse, int B, int T, int H,
                       int Hkv, int D) {
  const size_t headElems = static_cast<size_t>(B) * H * T * D;
  float* dkh = tlsHeadGrads.floats(2 * headElems);
  float* dvh = dkh + headElems;
  pool.parallelFor(static_cast<int64_t>(B) * H, [&](int64_t b0, int64_t e0, int) {
    BackScratch w;
    w.kt = tlsScratch.kt.floats(static_cast<size_t>(D) * kBk);
    w.vt = tlsScratch.vt.floats(static_cast<size_t>(D) * kBk);
    w.s = tlsScratch.s.floats(static_cast<size_t>(kBq) * kBk);
    w.dp = tlsScratch.dp.floats(static_cast<size_t>(kBq) * kBk);
    w.dk = tlsScratch.dk.floats(static_cast<size_t>(kBk) * D);
    w.dv = tlsScratch.dv.floats(static_cast<size_t>(kBk) * D);
    w.delta = tlsScratch.delta.floats(static_cast<size_t>(T));
    for (int64_t task = b0; task < e0; ++task)
      backwardHead(dq, dkh, dvh, dout, q, k, v, out, lse, T, H, Hkv, D, static_cast<int>(task / H),
                   static_cast<int>(task % H), w);
  });
  // dK, dV of a key-value head: its query heads' contributions summed in head order.
  const int group = H / Hkv;
  pool.parallelFor(static_cast<int64_t>(B) * T, [&](int64_t b0, int64_t e0, int) {
    for (int64_t bt = b0; bt < e0; ++bt) {
      const int64_t b = bt / T, t = bt % T;
      for (int g = 0; g < Hkv; ++g) {
        float* dkd = dk + (bt * Hkv + g) * D;
        float* dvd = dv + (bt * Hkv + g) * D;
        for (int hh = 0; hh < group; ++hh) {
          const size_t src = ((static_cast<size_t>(b) * H + g * group + hh) * T + t) * D;
          for (int e = 0; e < D; ++e) {
            dkd[e] = hh == 0 ? dkh[src + e] : dkd[e] + dkh[src + e];
            dvd[e] = hh == 0 ? dvh[src + e] : dvd[e] + dvh[src + e];
          }
        }
      }
    }
  });
}

}  // namespace pl::cpu
