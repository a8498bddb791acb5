// Causal grouped-query attention on the CPU, flash-attention style: keys and values are visited in
// tiles with an online softmax, so no T x T score matrix exists per head. The backward pass recomputes
// scores tile by tile, in two passes (dK/dV per key tile, then dQ per query tile) so every output has
// exactly one writer: no atomics, deterministic for any thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops.h"
#include "vec.h"

namespace pl::cpu {

namespace {

constexpr int kBq = 32;   // query rows per task
constexpr int kBk = 64;   // keys per tile
constexpr int kMaxD = 256;

// Transposes rows [j0, j0+n) of a [*, stride] head slice into dst[D][kBk].
PL_INLINE void transposeTile(float* dst, const float* src, size_t stride, int n, int D) {
  for (int j = 0; j < n; ++j) {
    const float* row = src + j * stride;
    for (int d = 0; d < D; ++d) dst[d * kBk + j] = row[d];
  }
  for (int j = n; j < kBk; ++j)
    for (int d = 0; d < D; ++d) dst[d * kBk + j] = 0.0f;
}

// s[0..kBk) = scale * q . Kt[:, j]
PL_INLINE void scoresRow(float* s, const float* q, const float* kt, int D, float scale) {
  for (int j = 0; j < kBk; ++j) s[j] = 0.0f;
  for (int d = 0; d < D; ++d) {
    const float qd = q[d] * scale;
    const float* kd = kt + d * kBk;
    for (int j = 0; j < kBk; ++j) s[j] += qd * kd[j];
  }
}

// Forward for one (b, h, query tile).
PL_INLINE void forwardTileBody(float* out, float* lse, const float* q, const float* k, const float* v, int Tq,
                               int Tcap, int H, int Hkv, int D, int pos0, int b, int h, int t0, float* kt,
                               float* acc) {
  const int g = h / (H / Hkv);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int t1 = std::min(Tq, t0 + kBq);
  const int rows = t1 - t0;
  const size_t qStride = static_cast<size_t>(H) * D, kvStride = static_cast<size_t>(Hkv) * D;
  const float* kBase = k + (static_cast<size_t>(b) * Tcap * Hkv + g) * D;
  const float* vBase = v + (static_cast<size_t>(b) * Tcap * Hkv + g) * D;
  float m[kBq], l[kBq];
  for (int r = 0; r < rows; ++r) {
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.0f;
  }
  for (int i = 0; i < rows * D; ++i) acc[i] = 0.0f;
  const int keysEnd = pos0 + t1;  // keys [0, keysEnd) are visible to some row of this tile
  float s[kBk];
  for (int j0 = 0; j0 < keysEnd; j0 += kBk) {
    const int nk = std::min(kBk, keysEnd - j0);
    transposeTile(kt, kBase + j0 * kvStride, kvStride, nk, D);
    for (int r = 0; r < rows; ++r) {
      const int pos = pos0 + t0 + r;  // this query sees keys [0, pos]
      if (j0 > pos) continue;
      const int valid = std::min(nk, pos - j0 + 1);
      const float* qr = q + ((static_cast<size_t>(b) * Tq + t0 + r) * H + h) * D;
      scoresRow(s, qr, kt, D, scale);
      float mx = m[r];
      for (int j = 0; j < valid; ++j) mx = s[j] > mx ? s[j] : mx;
      const float corr = vexp(m[r] - mx);
      float sum = 0.0f;
      for (int j = 0; j < valid; ++j) {
        s[j] = vexp(s[j] - mx);
        sum += s[j];
      }
      l[r] = l[r] * corr + sum;
      m[r] = mx;
      float* o = acc + r * D;
      for (int d = 0; d < D; ++d) o[d] *= corr;
      for (int j = 0; j < valid; ++j) {
        const float p = s[j];
        const float* vr = vBase + (j0 + j) * kvStride;
        for (int d = 0; d < D; ++d) o[d] += p * vr[d];
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    float* dst = out + ((static_cast<size_t>(b) * Tq + t0 + r) * H + h) * D;
    const float inv = 1.0f / l[r];
    for (int d = 0; d < D; ++d) dst[d] = acc[r * D + d] * inv;
    if (lse) lse[(static_cast<size_t>(b) * H + h) * Tq + t0 + r] = m[r] + std::log(l[r]);
  }
  (void)qStride;
}
PL_SIMD_CLONES(void, forwardTile,
               (float* out, float* lse, const float* q, const float* k, const float* v, int Tq, int Tcap, int H,
                int Hkv, int D, int pos0, int b, int h, int t0, float* kt, float* acc),
               (out, lse, q, k, v, Tq, Tcap, H, Hkv, D, pos0, b, h, t0, kt, acc))

// dK, dV for one (b, kv head g, key tile): sums over the group's query heads and every query >= the tile.
PL_INLINE void dkdvTileBody(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                            const float* lse, const float* delta, int T, int H, int Hkv, int D, int b, int g, int j0,
                            float* kt, float* vt) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int group = H / Hkv;
  const size_t qStride = static_cast<size_t>(H) * D, kvStride = static_cast<size_t>(Hkv) * D;
  const int nk = std::min(kBk, T - j0);
  const size_t kvOff = (static_cast<size_t>(b) * T * Hkv + g) * D;
  transposeTile(kt, k + kvOff + j0 * kvStride, kvStride, nk, D);
  transposeTile(vt, v + kvOff + j0 * kvStride, kvStride, nk, D);
  float* dkBase = dk + kvOff + j0 * kvStride;
  float* dvBase = dv + kvOff + j0 * kvStride;
  for (int j = 0; j < nk; ++j)
    for (int d = 0; d < D; ++d) dkBase[j * kvStride + d] = dvBase[j * kvStride + d] = 0.0f;
  float s[kBk], dp[kBk];
  for (int hh = 0; hh < group; ++hh) {
    const int h = g * group + hh;
    for (int i = j0; i < T; ++i) {
      const float* qi = q + (static_cast<size_t>(b) * T + i) * qStride + h * D;
      const float* doi = dout + (static_cast<size_t>(b) * T + i) * qStride + h * D;
      const float li = lse[(static_cast<size_t>(b) * H + h) * T + i];
      const float di = delta[(static_cast<size_t>(b) * H + h) * T + i];
      const int valid = std::min(nk, i - j0 + 1);
      scoresRow(s, qi, kt, D, scale);
      scoresRow(dp, doi, vt, D, 1.0f);
      for (int j = 0; j < valid; ++j) {
        const float p = vexp(s[j] - li);
        const float ds = p * (dp[j] - di) * scale;
        float* dvj = dvBase + j * kvStride;
        float* dkj = dkBase + j * kvStride;
        for (int d = 0; d < D; ++d) {
          dvj[d] += p * doi[d];
          dkj[d] += ds * qi[d];
        }
      }
    }
  }
}
PL_SIMD_CLONES(void, dkdvTile,
               (float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                const float* lse, const float* delta, int T, int H, int Hkv, int D, int b, int g, int j0, float* kt,
                float* vt),
               (dk, dv, dout, q, k, v, lse, delta, T, H, Hkv, D, b, g, j0, kt, vt))

// dQ for one (b, h, query tile).
PL_INLINE void dqTileBody(float* dq, const float* dout, const float* q, const float* k, const float* v,
                          const float* lse, const float* delta, int T, int H, int Hkv, int D, int b, int h, int t0,
                          float* kt, float* vt) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int g = h / (H / Hkv);
  const size_t qStride = static_cast<size_t>(H) * D, kvStride = static_cast<size_t>(Hkv) * D;
  const int t1 = std::min(T, t0 + kBq);
  const size_t kvOff = (static_cast<size_t>(b) * T * Hkv + g) * D;
  for (int i = t0; i < t1; ++i) {
    float* dqi = dq + (static_cast<size_t>(b) * T + i) * qStride + h * D;
    for (int d = 0; d < D; ++d) dqi[d] = 0.0f;
  }
  float s[kBk], dp[kBk];
  for (int j0 = 0; j0 < t1; j0 += kBk) {
    const int nk = std::min(kBk, t1 - j0);
    transposeTile(kt, k + kvOff + j0 * kvStride, kvStride, nk, D);
    transposeTile(vt, v + kvOff + j0 * kvStride, kvStride, nk, D);
    for (int i = std::max(t0, j0); i < t1; ++i) {
      const float* qi = q + (static_cast<size_t>(b) * T + i) * qStride + h * D;
      const float* doi = dout + (static_cast<size_t>(b) * T + i) * qStride + h * D;
      float* dqi = dq + (static_cast<size_t>(b) * T + i) * qStride + h * D;
      const float li = lse[(static_cast<size_t>(b) * H + h) * T + i];
      const float di = delta[(static_cast<size_t>(b) * H + h) * T + i];
      const int valid = std::min(nk, i - j0 + 1);
      scoresRow(s, qi, kt, D, scale);
      scoresRow(dp, doi, vt, D, 1.0f);
      for (int j = 0; j < valid; ++j) {
        const float ds = vexp(s[j] - li) * (dp[j] - di) * scale;
        const float* kj = k + kvOff + (j0 + j) * kvStride;
        for (int d = 0; d < D; ++d) dqi[d] += ds * kj[d];
      }
    }
  }
}
PL_SIMD_CLONES(void, dqTile,
               (float* dq, const float* dout, const float* q, const float* k, const float* v, const float* lse,
                const float* delta, int T, int H, int Hkv, int D, int b, int h, int t0, float* kt, float* vt),
               (dq, dout, q, k, v, lse, delta, T, H, Hkv, D, b, h, t0, kt, vt))

struct Scratch {
  AlignedBuffer kt, vt, acc;
};
thread_local Scratch tlsScratch;

}  // namespace

void attentionForward(ThreadPool& pool, float* out, float* lse, const float* q, const float* k, const float* v,
                      int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0) {
  const int qTiles = (Tq + kBq - 1) / kBq;
  const int64_t tasks = static_cast<int64_t>(B) * H * qTiles;
  auto body = [&](int64_t b0, int64_t e0, int) {
    float* kt = tlsScratch.kt.floats(static_cast<size_t>(kMaxD) * kBk);
    float* acc = tlsScratch.acc.floats(static_cast<size_t>(kBq) * kMaxD);
    for (int64_t task = b0; task < e0; ++task) {
      const int tile = static_cast<int>(task % qTiles);
      const int h = static_cast<int>((task / qTiles) % H);
      const int b = static_cast<int>(task / (static_cast<int64_t>(qTiles) * H));
      forwardTile(out, lse, q, k, v, Tq, Tcap, H, Hkv, D, pos0, b, h, tile * kBq, kt, acc);
    }
  };
  if (tasks == 1 || static_cast<int64_t>(Tq) * (pos0 + Tq) * D * H * B < 65536) body(0, tasks, 0);
  else pool.parallelFor(tasks, body);
}

void attentionBackward(ThreadPool& pool, float* dq, float* dk, float* dv, const float* dout, const float* q,
                       const float* k, const float* v, const float* out, const float* lse, int B, int T, int H,
                       int Hkv, int D) {
  // delta[b,h,t] = dout . out (the softmax backward's row term)
  std::vector<float> delta(static_cast<size_t>(B) * H * T);
  pool.parallelFor(static_cast<int64_t>(B) * T, [&](int64_t b0, int64_t e0, int) {
    for (int64_t bt = b0; bt < e0; ++bt) {
      const int64_t b = bt / T, t = bt % T;
      for (int h = 0; h < H; ++h) {
        const float* o = out + (bt * H + h) * D;
        const float* d = dout + (bt * H + h) * D;
        float s = 0.0f;
        for (int i = 0; i < D; ++i) s += o[i] * d[i];
        delta[(b * H + h) * T + t] = s;
      }
    }
  });
  const int kTiles = (T + kBk - 1) / kBk;
  pool.parallelFor(static_cast<int64_t>(B) * Hkv * kTiles, [&](int64_t b0, int64_t e0, int) {
    float* kt = tlsScratch.kt.floats(static_cast<size_t>(kMaxD) * kBk);
    float* vt = tlsScratch.vt.floats(static_cast<size_t>(kMaxD) * kBk);
    for (int64_t task = b0; task < e0; ++task) {
      const int tile = static_cast<int>(task % kTiles);
      const int g = static_cast<int>((task / kTiles) % Hkv);
      const int b = static_cast<int>(task / (static_cast<int64_t>(kTiles) * Hkv));
      dkdvTile(dk, dv, dout, q, k, v, lse, delta.data(), T, H, Hkv, D, b, g, tile * kBk, kt, vt);
    }
  });
  const int qTiles = (T + kBq - 1) / kBq;
  pool.parallelFor(static_cast<int64_t>(B) * H * qTiles, [&](int64_t b0, int64_t e0, int) {
    float* kt = tlsScratch.kt.floats(static_cast<size_t>(kMaxD) * kBk);
    float* vt = tlsScratch.vt.floats(static_cast<size_t>(kMaxD) * kBk);
    for (int64_t task = b0; task < e0; ++task) {
      const int tile = static_cast<int>(task % qTiles);
      const int h = static_cast<int>((task / qTiles) % H);
      const int b = static_cast<int>(task / (static_cast<int64_t>(qTiles) * H));
      dqTile(dq, dout, q, k, v, lse, delta.data(), T, H, Hkv, D, b, h, tile * kBq, kt, vt);
    }
  });
}

}  // namespace pl::cpu
