// Causal grouped-query attention on bf16 tensor cores (mma.sync m16n8k16, fp32 accumulate), FlashAttention-2
// style, for head dims 33..128 (padded to kD = 64 or 128) and query blocks of 8 rows or more. Layouts and
// conventions are attention.cu's: q, out, dq, dout [B,Tq,H,D]; k, v [B,Tcap,Hkv,D]; lse, delta [B,H,Tq];
// query t at position pos0 + t sees keys [0, pos0 + t]; scale 1/sqrt(D) folded into q before rounding.
// Operands are fp32 in memory and rounded to bf16 as they are staged into shared memory (rows padded by
// 8 bf16: conflict-free fragment reads); the softmax statistics, P's exponent and all sums stay fp32.
//
// Forward: a block = 4 warps = 64 queries of one (b, h), heaviest (latest) query blocks first; key tiles of
//   64 stream through shared memory (V stored transposed, as P V's B operand wants it). A warp's 16 rows:
//   S = Q K^T in registers, online softmax on S's fragments, P re-packed as A fragments for O += P V.
// Backward (delta = rowsum(dout * out) from attention.cu first), each output with one writer (no atomics):
//   dK, dV: a block per (b, kv head, 64 keys), 16 keys a warp, looping over the group's query heads and the
//     query tiles (32 rows) at or after its keys: S^T = K Q^T, P^T = exp(S^T - lse), dP^T = V dO^T,
//     dS^T = P^T (dP^T - delta); dV += P^T dO, dK += dS^T (q * scale).
//   dQ: a block per (b, h, 64 queries) looping over key tiles of 32: S, P, dP = dO V^T, dS, dQ += dS K,
//     times scale at the end.
// Expected error vs the fp32 CPU: bf16 rounding of q, k, v, P, dO and dS (~1e-2 relative, like the GEMMs).
#include <cmath>
#include <string>

#include "common.cuh"
#include "kernels.h"
#include "mma.cuh"

namespace pl::cuda {

namespace {

constexpr int kThreads4 = 128;  // 4 warps
constexpr float kLog2e = 1.4426950408889634f;

// Row r (< rows) of a [*, ld]-strided fp32 operand, elements [0, D), into bf16 S[r][0 .. kD) (zeros past D
// and for r >= rows), times `mul`. Pairs of elements per thread, consecutive threads on consecutive pairs.
template <int kRows, int kD, int kLd>
__device__ __forceinline__ void stageRows(__nv_bfloat16* S, const float* X, size_t rowStride, int r0, int rows,
                                          int D, float mul) {
  constexpr int kPairs = kD / 2;
  for (int i = threadIdx.x; i < kRows * kPairs; i += kThreads4) {
    const int r = i / kPairs, d = 2 * (i % kPairs);
    float x0 = 0.0f, x1 = 0.0f;
    if (r0 + r < rows) {
      const float* src = X + size_t(r0 + r) * rowStride;
      if (d < D) x0 = src[d] * mul;
      if (d + 1 < D) x1 = src[d + 1] * mul;
    }
    *reinterpret_cast<__nv_bfloat162*>(S + r * kLd + d) = __floats2bfloat162_rn(x0, x1);
  }
}

// The same rows stored transposed: St[d][r] (kLdT apart), for B operands whose k index is the row.
template <int kRows, int kD, int kLdT>
__device__ __forceinline__ void stageRowsTransposed(__nv_bfloat16* St, const float* X, size_t rowStride, int r0,
                                                    int rows, int D, float mul) {
  for (int i = threadIdx.x; i < kRows * kD; i += kThreads4) {
    const int d = i / kRows, r = i % kRows;  // consecutive threads: consecutive rows of one column
    float x = 0.0f;
    if (r0 + r < rows && d < D) x = X[size_t(r0 + r) * rowStride + d] * mul;
    St[d * kLdT + r] = __float2bfloat16_rn(x);
  }
}

// A fragment (16 rows from `row`, k columns 16ks..16ks+15) of a row-major bf16 tile.
template <int kLd>
__device__ __forceinline__ void loadA(uint32_t (&a)[4], const __nv_bfloat16* S, int row, int ks) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const __nv_bfloat16* p = S + (row + g) * kLd + 16 * ks + 2 * t;
  a[0] = lds32(p);
  a[1] = lds32(p + 8 * kLd);
  a[2] = lds32(p + 8);
  a[3] = lds32(p + 8 * kLd + 8);
}

// B fragment (8 columns n0..n0+7, k 16ks..16ks+15) of a tile stored [n][k] (k contiguous).
template <int kLd>
__device__ __forceinline__ void loadB(uint32_t (&b)[2], const __nv_bfloat16* S, int n0, int ks) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const __nv_bfloat16* p = S + (n0 + g) * kLd + 16 * ks + 2 * t;
  b[0] = lds32(p);
  b[1] = lds32(p + 8);
}

// C fragments of a 16 x 16 column block (tiles j, j+1) re-packed as the A fragment of the next product.
__device__ __forceinline__ void cToA(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = packBf16(c0[0], c0[1]);
  a[1] = packBf16(c0[2], c0[3]);
  a[2] = packBf16(c1[0], c1[1]);
  a[3] = packBf16(c1[2], c1[3]);
}

// Reduction over the 4 lanes (t = 0..3) that share a fragment row.
__device__ __forceinline__ float quadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ __forceinline__ float quadSum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

// ---- forward ---------------------------------------------------------------------------------------

constexpr int kFq = 64, kFk = 64;  // queries a block, keys a tile

template <int kD>
constexpr size_t forwardMmaSmem() {
  return 2 * (size_t(kFq) * (kD + 8) + size_t(kFk) * (kD + 8) + size_t(kD) * (kFk + 8));
}

template <int kD>
__global__ void __launch_bounds__(kThreads4)
    attention_forward_mma_kernel(float* out, float* lse, const float* q, const float* k, const float* v, int Tq,
                                 int Tcap, int H, int Hkv, int D, int pos0, float scale) {
  constexpr int kLd = kD + 8, kLdT = kFk + 8, kNd = kD / 8, kKs = kD / 16;
  extern __shared__ __align__(16) uint8_t smemBytes[];
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smemBytes);  // [kFq][kLd], q * scale
  __nv_bfloat16* Ks = Qs + kFq * kLd;                                // [kFk][kLd]
  __nv_bfloat16* Vt = Ks + kFk * kLd;                                // [kD][kLdT]
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kFq, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const size_t qStride = size_t(H) * D, kStride = size_t(Hkv) * D;
  const float* qBase = q + (size_t(b) * Tq * H + h) * D;
  const float* kBase = k + (size_t(b) * Tcap * Hkv + hk) * D;
  const float* vBase = v + (size_t(b) * Tcap * Hkv + hk) * D;

  stageRows<kFq, kD, kLd>(Qs, qBase, qStride, q0, Tq, D, scale);
  __syncthreads();
  uint32_t qf[kKs][4];
#pragma unroll
  for (int ks = 0; ks < kKs; ++ks) loadA<kLd>(qf[ks], Qs, 16 * warp, ks);

  float o[kNd][4];
#pragma unroll
  for (int i = 0; i < kNd; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int rowPos[2] = {pos0 + q0 + 16 * warp + g, pos0 + q0 + 16 * warp + g + 8};
  const int lastKey = min(Tcap - 1, pos0 + min(q0 + kFq, Tq) - 1);

  for (int k0 = 0; k0 <= lastKey; k0 += kFk) {
    __syncthreads();  // the previous tile's readers are done
    stageRows<kFk, kD, kLd>(Ks, kBase, kStride, k0, Tcap, D, 1.0f);
    stageRowsTransposed<kFk, kD, kLdT>(Vt, vBase, kStride, k0, Tcap, D, 1.0f);
    __syncthreads();

    float s[kFk / 8][4];
#pragma unroll
    for (int n = 0; n < kFk / 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < kKs; ++ks)
#pragma unroll
      for (int n = 0; n < kFk / 8; ++n) {
        uint32_t bf[2];
        loadB<kLd>(bf, Ks, 8 * n, ks);
        mma16816(s[n], qf[ks], bf);
      }
    // Causal mask (keys past the row's position; keys past Tcap lie past every valid row's position).
#pragma unroll
    for (int n = 0; n < kFk / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (k0 + 8 * n + 2 * t + (e & 1) > rowPos[e >> 1]) s[n][e] = -INFINITY;

#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kFk / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      const float mNew = fmaxf(m[r], quadMax(mx));
      const float mUse = mNew == -INFINITY ? 0.0f : mNew;  // a row with no key yet: p = 0, no NaN
      const float corr = exp2f((m[r] - mUse) * kLog2e);
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kFk / 8; ++n) {
        s[n][2 * r] = exp2f((s[n][2 * r] - mUse) * kLog2e);
        s[n][2 * r + 1] = exp2f((s[n][2 * r + 1] - mUse) * kLog2e);
        sum += s[n][2 * r] + s[n][2 * r + 1];
      }
      l[r] = l[r] * corr + sum;
      m[r] = mNew;
#pragma unroll
      for (int i = 0; i < kNd; ++i) {
        o[i][2 * r] *= corr;
        o[i][2 * r + 1] *= corr;
      }
    }
#pragma unroll
    for (int j = 0; j < kFk / 16; ++j) {
      uint32_t pa[4];
      cToA(pa, s[2 * j], s[2 * j + 1]);
#pragma unroll
      for (int i = 0; i < kNd; ++i) {
        uint32_t bf[2];
        loadB<kLdT>(bf, Vt, 8 * i, j);
        mma16816(o[i], pa, bf);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = q0 + 16 * warp + g + 8 * r;
    const float total = quadSum(l[r]);
    if (row >= Tq) continue;
    const float inv = 1.0f / total;
    float* dst = out + (size_t(b) * Tq + row) * qStride + size_t(h) * D;
#pragma unroll
    for (int i = 0; i < kNd; ++i) {
      const int d = 8 * i + 2 * t;
      if (d < D) dst[d] = o[i][2 * r] * inv;
      if (d + 1 < D) dst[d + 1] = o[i][2 * r + 1] * inv;
    }
    if (lse && t == 0) lse[(size_t(b) * H + h) * Tq + row] = m[r] + logf(total);
  }
}

// ---- backward: dK and dV ----------------------------------------------------------------------------

constexpr int kBk = 64, kBq = 32;  // keys a block (16 a warp), queries a tile

template <int kD>
constexpr size_t dkdvMmaSmem() {
  return 2 * (2 * size_t(kBk) * (kD + 8) + 2 * size_t(kBq) * (kD + 8) + 2 * size_t(kD) * (kBq + 8)) +
         4 * 2 * size_t(kBq);
}

template <int kD>
__global__ void __launch_bounds__(kThreads4)
    attention_dkdv_mma_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k, const float* v,
                              const float* lse, const float* delta, int T, int H, int Hkv, int D, float scale) {
  constexpr int kLd = kD + 8, kLdT = kBq + 8, kNd = kD / 8, kKs = kD / 16;
  extern __shared__ __align__(16) uint8_t smemBytes[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smemBytes);  // [kBk][kLd]
  __nv_bfloat16* Vs = Ks + kBk * kLd;                                // [kBk][kLd]
  __nv_bfloat16* Qs = Vs + kBk * kLd;                                // [kBq][kLd], q * scale
  __nv_bfloat16* dOs = Qs + kBq * kLd;                               // [kBq][kLd]
  __nv_bfloat16* Qt = dOs + kBq * kLd;                               // [kD][kLdT]
  __nv_bfloat16* dOt = Qt + kD * kLdT;                               // [kD][kLdT]
  float* lseS = reinterpret_cast<float*>(dOt + kD * kLdT);           // [kBq]
  float* deltaS = lseS + kBq;                                        // [kBq]
  const int k0 = blockIdx.x * kBk, hk = blockIdx.y, b = blockIdx.z;
  const int group = H / Hkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const size_t qStride = size_t(H) * D, kStride = size_t(Hkv) * D;

  stageRows<kBk, kD, kLd>(Ks, k + (size_t(b) * T * Hkv + hk) * D, kStride, k0, T, D, 1.0f);
  stageRows<kBk, kD, kLd>(Vs, v + (size_t(b) * T * Hkv + hk) * D, kStride, k0, T, D, 1.0f);

  float dkAcc[kNd][4], dvAcc[kNd][4];
#pragma unroll
  for (int i = 0; i < kNd; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dkAcc[i][e] = dvAcc[i][e] = 0.0f;
  const int keyOf[2] = {k0 + 16 * warp + g, k0 + 16 * warp + g + 8};

  for (int hi = 0; hi < group; ++hi) {
    const int h = hk * group + hi;
    const float* qBase = q + (size_t(b) * T * H + h) * D;
    const float* dBase = dout + (size_t(b) * T * H + h) * D;
    const float* lseRow = lse + (size_t(b) * H + h) * T;
    const float* deltaRow = delta + (size_t(b) * H + h) * T;
    for (int q0 = k0; q0 < T; q0 += kBq) {
      __syncthreads();  // the previous tile's readers are done
      stageRows<kBq, kD, kLd>(Qs, qBase, qStride, q0, T, D, scale);
      stageRows<kBq, kD, kLd>(dOs, dBase, qStride, q0, T, D, 1.0f);
      stageRowsTransposed<kBq, kD, kLdT>(Qt, qBase, qStride, q0, T, D, scale);
      stageRowsTransposed<kBq, kD, kLdT>(dOt, dBase, qStride, q0, T, D, 1.0f);
      for (int i = threadIdx.x; i < kBq; i += kThreads4) {
        const bool in = q0 + i < T;
        lseS[i] = in ? lseRow[q0 + i] : 0.0f;
        deltaS[i] = in ? deltaRow[q0 + i] : 0.0f;
      }
      __syncthreads();

      // S^T (keys x queries) and dP^T = V dO^T.
      float st[kBq / 8][4], dpt[kBq / 8][4];
#pragma unroll
      for (int n = 0; n < kBq / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) st[n][e] = dpt[n][e] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < kKs; ++ks) {
        uint32_t ka[4], va[4];
        loadA<kLd>(ka, Ks, 16 * warp, ks);
        loadA<kLd>(va, Vs, 16 * warp, ks);
#pragma unroll
        for (int n = 0; n < kBq / 8; ++n) {
          uint32_t qb[2], ob[2];
          loadB<kLd>(qb, Qs, 8 * n, ks);
          loadB<kLd>(ob, dOs, 8 * n, ks);
          mma16816(st[n], ka, qb);
          mma16816(dpt[n], va, ob);
        }
      }
      // P^T = exp(S^T - lse[query]) where query >= key (and query < T); dS^T = P^T (dP^T - delta[query]).
#pragma unroll
      for (int n = 0; n < kBq / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qi = 8 * n + 2 * t + (e & 1), query = q0 + qi;
          const bool live = query < T && query >= keyOf[e >> 1];
          const float p = live ? exp2f((st[n][e] - lseS[qi]) * kLog2e) : 0.0f;
          st[n][e] = p;
          dpt[n][e] = p * (dpt[n][e] - deltaS[qi]);
        }
      // dV += P^T dO, dK += dS^T (q * scale): k = the tile's queries.
#pragma unroll
      for (int j = 0; j < kBq / 16; ++j) {
        uint32_t pa[4], sa[4];
        cToA(pa, st[2 * j], st[2 * j + 1]);
        cToA(sa, dpt[2 * j], dpt[2 * j + 1]);
#pragma unroll
        for (int i = 0; i < kNd; ++i) {
          uint32_t ob[2], qb[2];
          loadB<kLdT>(ob, dOt, 8 * i, j);
          loadB<kLdT>(qb, Qt, 8 * i, j);
          mma16816(dvAcc[i], pa, ob);
          mma16816(dkAcc[i], sa, qb);
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = keyOf[r];
    if (key >= T) continue;
    const size_t off = (size_t(b) * T + key) * kStride + size_t(hk) * D;
#pragma unroll
    for (int i = 0; i < kNd; ++i) {
      const int d = 8 * i + 2 * t;
      if (d < D) {
        dk[off + d] = dkAcc[i][2 * r];
        dv[off + d] = dvAcc[i][2 * r];
      }
      if (d + 1 < D) {
        dk[off + d + 1] = dkAcc[i][2 * r + 1];
        dv[off + d + 1] = dvAcc[i][2 * r + 1];
      }
    }
  }
}

// ---- backward: dQ -----------------------------------------------------------------------------------

constexpr int kQq = 64, kQk = 32;  // queries a block (16 a warp), keys a tile

template <int kD>
constexpr size_t dqMmaSmem() {
  return 2 * (2 * size_t(kQq) * (kD + 8) + 2 * size_t(kQk) * (kD + 8) + size_t(kD) * (kQk + 8));
}

template <int kD>
__global__ void __launch_bounds__(kThreads4)
    attention_dq_mma_kernel(float* dq, const float* dout, const float* q, const float* k, const float* v,
                            const float* lse, const float* delta, int T, int H, int Hkv, int D, float scale) {
  constexpr int kLd = kD + 8, kLdT = kQk + 8, kNd = kD / 8, kKs = kD / 16;
  extern __shared__ __align__(16) uint8_t smemBytes[];
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smemBytes);  // [kQq][kLd], q * scale
  __nv_bfloat16* dOs = Qs + kQq * kLd;                               // [kQq][kLd]
  __nv_bfloat16* Ks = dOs + kQq * kLd;                               // [kQk][kLd]
  __nv_bfloat16* Vs = Ks + kQk * kLd;                                // [kQk][kLd]
  __nv_bfloat16* Kt = Vs + kQk * kLd;                                // [kD][kLdT]
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kQq, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const size_t qStride = size_t(H) * D, kStride = size_t(Hkv) * D;
  const float* kBase = k + (size_t(b) * T * Hkv + hk) * D;
  const float* vBase = v + (size_t(b) * T * Hkv + hk) * D;

  stageRows<kQq, kD, kLd>(Qs, q + (size_t(b) * T * H + h) * D, qStride, q0, T, D, scale);
  stageRows<kQq, kD, kLd>(dOs, dout + (size_t(b) * T * H + h) * D, qStride, q0, T, D, 1.0f);
  __syncthreads();
  uint32_t qf[kKs][4], of[kKs][4];
#pragma unroll
  for (int ks = 0; ks < kKs; ++ks) {
    loadA<kLd>(qf[ks], Qs, 16 * warp, ks);
    loadA<kLd>(of[ks], dOs, 16 * warp, ks);
  }
  const int rowOf[2] = {q0 + 16 * warp + g, q0 + 16 * warp + g + 8};
  float lseR[2], deltaR[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const bool in = rowOf[r] < T;
    lseR[r] = in ? lse[(size_t(b) * H + h) * T + rowOf[r]] : 0.0f;
    deltaR[r] = in ? delta[(size_t(b) * H + h) * T + rowOf[r]] : 0.0f;
  }
  float acc[kNd][4];
#pragma unroll
  for (int i = 0; i < kNd; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
  const int lastKey = min(T, q0 + kQq) - 1;

  for (int k0 = 0; k0 <= lastKey; k0 += kQk) {
    __syncthreads();
    stageRows<kQk, kD, kLd>(Ks, kBase, kStride, k0, T, D, 1.0f);
    stageRows<kQk, kD, kLd>(Vs, vBase, kStride, k0, T, D, 1.0f);
    stageRowsTransposed<kQk, kD, kLdT>(Kt, kBase, kStride, k0, T, D, 1.0f);
    __syncthreads();

    float s[kQk / 8][4], dp[kQk / 8][4];
#pragma unroll
    for (int n = 0; n < kQk / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < kKs; ++ks)
#pragma unroll
      for (int n = 0; n < kQk / 8; ++n) {
        uint32_t kb[2], vb[2];
        loadB<kLd>(kb, Ks, 8 * n, ks);
        loadB<kLd>(vb, Vs, 8 * n, ks);
        mma16816(s[n], qf[ks], kb);
        mma16816(dp[n], of[ks], vb);
      }
#pragma unroll
    for (int n = 0; n < kQk / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1, key = k0 + 8 * n + 2 * t + (e & 1);
        const bool live = key <= rowOf[r] && rowOf[r] < T;
        const float p = live ? exp2f((s[n][e] - lseR[r]) * kLog2e) : 0.0f;
        s[n][e] = p * (dp[n][e] - deltaR[r]);  // dS
      }
#pragma unroll
    for (int j = 0; j < kQk / 16; ++j) {
      uint32_t sa[4];
      cToA(sa, s[2 * j], s[2 * j + 1]);
#pragma unroll
      for (int i = 0; i < kNd; ++i) {
        uint32_t kb[2];
        loadB<kLdT>(kb, Kt, 8 * i, j);
        mma16816(acc[i], sa, kb);
      }
    }
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (rowOf[r] >= T) continue;
    float* dst = dq + (size_t(b) * T + rowOf[r]) * qStride + size_t(h) * D;
#pragma unroll
    for (int i = 0; i < kNd; ++i) {
      const int d = 8 * i + 2 * t;
      if (d < D) dst[d] = acc[i][2 * r] * scale;
      if (d + 1 < D) dst[d + 1] = acc[i][2 * r + 1] * scale;
    }
  }
}

template <int kD>
void forwardMma(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v, int B,
                int Tq, int Tcap, int H, int Hkv, int D, int pos0) {
  constexpr size_t smem = forwardMmaSmem<kD>();
  allowSharedMemory(attention_forward_mma_kernel<kD>, smem, "attention_forward_mma_kernel");
  attention_forward_mma_kernel<kD><<<dim3(ceilDiv(Tq, kFq), H, B), kThreads4, smem, stream>>>(
      out, lse, q, k, v, Tq, Tcap, H, Hkv, D, pos0, 1.0f / std::sqrt(float(D)));
  checkLaunch("attention_forward_mma_kernel");
}

template <int kD>
void backwardMma(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                 const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H, int Hkv,
                 int D) {
  const float scale = 1.0f / std::sqrt(float(D));
  constexpr size_t smemKv = dkdvMmaSmem<kD>();
  allowSharedMemory(attention_dkdv_mma_kernel<kD>, smemKv, "attention_dkdv_mma_kernel");
  attention_dkdv_mma_kernel<kD><<<dim3(ceilDiv(T, kBk), Hkv, B), kThreads4, smemKv, stream>>>(
      dk, dv, dout, q, k, v, lse, delta, T, H, Hkv, D, scale);
  checkLaunch("attention_dkdv_mma_kernel");
  constexpr size_t smemQ = dqMmaSmem<kD>();
  allowSharedMemory(attention_dq_mma_kernel<kD>, smemQ, "attention_dq_mma_kernel");
  attention_dq_mma_kernel<kD><<<dim3(ceilDiv(T, kQq), H, B), kThreads4, smemQ, stream>>>(dq, dout, q, k, v, lse,
                                                                                      delta, T, H, Hkv, D, scale);
  checkLaunch("attention_dq_mma_kernel");
}

}  // namespace

bool attentionMmaSupports(int D, int Tq) { return D > 32 && D <= 128 && Tq >= 8; }

void attentionForwardMma(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v,
                         int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0) {
  if (D <= 64) forwardMma<64>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0);
  else forwardMma<128>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0);
}

void attentionBackwardMma(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                          const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H,
                          int Hkv, int D) {
  if (D <= 64) backwardMma<64>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D);
  else backwardMma<128>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D);
}

}  // namespace pl::cuda
