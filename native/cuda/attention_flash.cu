// Causal grouped-query attention on bf16 tensor cores, FlashAttention-2 style, for head dims 33..128 and
// query blocks of 8 rows or more (attentionFlashSupports). Conventions are attention.cu's: q, out, dq, dout
// [B,Tq,H,D]; k, v [B,Tcap,Hkv,D]; lse, delta [B,H,Tq]; query t at position pos0 + t sees keys
// [0, pos0 + t]; scale 1/sqrt(D) folded into q before it is rounded.
//
// Each call first packs its fp32 operands into bf16 copies in scratch (attention_bf16.cuh): [B, heads, T, kD],
// kD = 64 or 128 (zero-padded), q times scale, so that every tile is one contiguous block that cp.async
// copies 16 bytes a thread into shared memory, double-buffered behind the math. Fragments come from
// shared memory through ldmatrix (.trans where the product wants the tile's columns), so no operand is
// ever stored transposed. Softmax statistics, P's exponent and every accumulation stay fp32.
//
// Forward: a block = 4 warps = 128 queries of one (b, h), latest query blocks first; key tiles of 32
//   (head dim 128) or 64.
//   A warp's 32 rows (two 16-row blocks sharing each K / V fragment): S = Q K^T, online softmax on S's
//   fragments, P re-packed as A fragments, O += P V.
// Backward (delta = rowsum(dout * out) from attention.cu), one writer per output (no atomics):
//   dK, dV: a block per (b, query head, 64 keys), 16 keys a warp, over the query tiles of 32 at or after
//     its keys: S^T = K Q^T, P^T = exp(S^T - lse), dP^T = V dO^T, dS^T = P^T (dP^T - delta);
//     dV += P^T dO, dK += dS^T (q * scale). With grouped-query attention each query head's share goes to
//     an fp32 buffer [B,T,H,D] and a second pass sums the group's shares in head order (a block per kv head
//     looping over the group would leave the longest block with group times the average work).
//   dQ: a block per (b, h, 64 queries) over key tiles of 32: S, P, dP = dO V^T, dS, dQ += dS K; times scale.
//     Or, with the dS path (AttentionPath::FlashDs, the default, up to 1 GiB of dS), the dK/dV pass also
//     writes dS^T in bf16 and dQ = dS K is a single product over it.
// Expected error vs the fp32 CPU: bf16 rounding of q, k, v, P, dO and dS (~1e-2 of each tensor's scale).
#include <cmath>
#include <string>

#include "attention_bf16.cuh"
#include "common.cuh"
#include "kernels.h"
#include "mma.cuh"
#include "smem_copy.cuh"

namespace pl::cuda {

namespace {

constexpr int kWarpsF = 4;
constexpr int kThreadsF = 32 * kWarpsF;
constexpr float kLog2e = 1.4426950408889634f;

// Tiles in shared memory are row-major bf16 with rows of kD + 8 elements (16 bytes of padding: ldmatrix's
// eight row addresses fall in distinct banks).
template <int kD>
constexpr int rowLd() {
  return kD + 8;
}

// Starts copying rows [r0, r0 + kRows) of a packed [rows, kD] head (rows >= rows: zeros) into S.
template <int kRows, int kD>
__device__ __forceinline__ void loadTile(__nv_bfloat16* S, const __nv_bfloat16* head, int r0, int rows) {
  constexpr int kChunks = kD / 8;  // 16-byte pieces a row
  for (int i = threadIdx.x; i < kRows * kChunks; i += kThreadsF) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    const bool valid = r0 + r < rows;
    cpAsync16(S + r * rowLd<kD>() + c, head + size_t(valid ? r0 + r : 0) * kD + c, valid);
  }
}

// A fragment: rows row0..row0+15, k 16ks..16ks+15 of a row-major tile.
template <int kD>
__device__ __forceinline__ void fragA(uint32_t (&a)[4], const __nv_bfloat16* S, int row0, int ks) {
  const int lane = threadIdx.x % 32;
  ldmatrixX4(a, S + (row0 + lane % 16) * rowLd<kD>() + 16 * ks + (lane / 16) * 8);
}

// B fragments of two n-tiles (n0..n0+7 and n0+8..n0+15), k 16ks..16ks+15, from a tile stored [n][k]:
// b[0..1] for the first, b[2..3] for the second.
template <int kD>
__device__ __forceinline__ void fragB2(uint32_t (&b)[4], const __nv_bfloat16* S, int n0, int ks) {
  const int lane = threadIdx.x % 32;
  ldmatrixX4(b, S + (n0 + lane % 8 + (lane / 16) * 8) * rowLd<kD>() + 16 * ks + ((lane / 8) % 2) * 8);
}

// B fragments of two n-tiles (columns n0..n0+15) for k rows 16j..16j+15 of a tile stored [k][n] (the
// product contracts over the tile's rows): b[0..1] for columns n0.., b[2..3] for n0+8...
template <int kD>
__device__ __forceinline__ void fragB2Trans(uint32_t (&b)[4], const __nv_bfloat16* S, int n0, int j) {
  const int lane = threadIdx.x % 32;
  ldmatrixX4Trans(b, S + (16 * j + lane % 8 + ((lane / 8) % 2) * 8) * rowLd<kD>() + n0 + (lane / 16) * 8);
}

__device__ __forceinline__ void mmaPair(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4], const uint32_t (&b)[4]) {
  const uint32_t first[2] = {b[0], b[1]}, second[2] = {b[2], b[3]};
  mma16816(c0, a, first);
  mma16816(c1, a, second);
}

// C fragments of a 16 x 16 column block (tiles 2j, 2j+1) re-packed as the A fragment of the next product.
__device__ __forceinline__ void cToA(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = packBf16(c0[0], c0[1]);
  a[1] = packBf16(c0[2], c0[3]);
  a[2] = packBf16(c1[0], c1[1]);
  a[3] = packBf16(c1[2], c1[3]);
}

// acc (16 rows x kD) += A (16 x 16, in fragments) times rows 16j..16j+15 of K, a [keys][kD] tile.
template <int kD>
__device__ __forceinline__ void addTimesK(float (&acc)[kD / 8][4], const uint32_t (&a)[4], const __nv_bfloat16* K,
                                          int j) {
#pragma unroll
  for (int i = 0; i < kD / 8; i += 2) {
    uint32_t kb[4];
    fragB2Trans<kD>(kb, K, 8 * i, j);
    mmaPair(acc[i], acc[i + 1], a, kb);
  }
}

// One row of an output [.., D] starting at `dst`: the thread's values of C-fragment row r (acc[i][2r],
// acc[i][2r+1] at columns 8i + 2t, 8i + 2t + 1), times mul; columns past D are padding.
template <int kNd>
__device__ __forceinline__ void storeRow(float* dst, const float (&acc)[kNd][4], int r, int D, float mul) {
  const int t = threadIdx.x % 4;
#pragma unroll
  for (int i = 0; i < kNd; ++i) {
    const int d = 8 * i + 2 * t;
    if (d < D) dst[d] = acc[i][2 * r] * mul;
    if (d + 1 < D) dst[d + 1] = acc[i][2 * r + 1] * mul;
  }
}

// ---- forward ---------------------------------------------------------------------------------------------

// A warp owns 32 query rows (two 16-row blocks), so every K and V fragment it loads from shared memory
// feeds two products; a block of 4 warps covers 128 queries. Q stays in shared memory (its fragments are
// re-read per key tile: registers go to the two blocks' accumulators).
constexpr int kFrb = 2;  // 16-row blocks a warp
constexpr int kFq = 64 * kFrb;
// Keys a tile: 32 at head dim 128 (64 would take the two blocks' scores past 255 registers).
template <int kD>
constexpr int forwardKeys() {
  return kD > 64 ? 32 : 64;
}

template <int kD>
constexpr size_t forwardSmem() {
  return 2 * size_t(rowLd<kD>()) * (kFq + 4 * forwardKeys<kD>());  // Q, two K and two V tiles
}

template <int kD>
__global__ void __launch_bounds__(kThreadsF)
    attention_flash_forward_kernel(float* out, float* lse, const __nv_bfloat16* qh, const __nv_bfloat16* kh,
                                   const __nv_bfloat16* vh, int Tq, int Tcap, int H, int Hkv, int D, int pos0) {
  constexpr int kLd = rowLd<kD>(), kNd = kD / 8, kKs = kD / 16, kFk = forwardKeys<kD>();
  extern __shared__ __align__(16) uint8_t smemBytes[];
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smemBytes);
  __nv_bfloat16* Ks = Qs + kFq * kLd;      // [2][kFk][kLd]
  __nv_bfloat16* Vs = Ks + 2 * kFk * kLd;  // [2][kFk][kLd]
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kFq, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const __nv_bfloat16* qHead = qh + (size_t(b) * H + h) * Tq * kD;
  const __nv_bfloat16* kHead = kh + (size_t(b) * Hkv + hk) * Tcap * kD;
  const __nv_bfloat16* vHead = vh + (size_t(b) * Hkv + hk) * Tcap * kD;
  const int row0 = 16 * kFrb * warp;  // the warp's first row in the block
  // Keys up to the block's last query; a warp whose rows all end earlier skips the tiles past its own.
  const int lastKey = min(Tcap - 1, pos0 + min(q0 + kFq, Tq) - 1);
  const int tiles = lastKey / kFk + 1;
  const int warpLastKey = pos0 + q0 + row0 + 16 * kFrb - 1;

  // Keys past lastKey load as zeros: a longer cache's later rows are never read (P is 0 there, but 0 times
  // a stale NaN would not be).
  loadTile<kFq, kD>(Qs, qHead, q0, Tq);
  loadTile<kFk, kD>(Ks, kHead, 0, lastKey + 1);
  loadTile<kFk, kD>(Vs, vHead, 0, lastKey + 1);
  cpAsyncCommit();

  float o[kFrb][kNd][4];
#pragma unroll
  for (int rb = 0; rb < kFrb; ++rb)
#pragma unroll
    for (int i = 0; i < kNd; ++i) o[rb][i][0] = o[rb][i][1] = o[rb][i][2] = o[rb][i][3] = 0.0f;
  float m[kFrb][2], l[kFrb][2];
#pragma unroll
  for (int rb = 0; rb < kFrb; ++rb) m[rb][0] = m[rb][1] = -INFINITY, l[rb][0] = l[rb][1] = 0.0f;
  const int pos = pos0 + q0 + row0 + g;  // row (rb, r) of the thread is at position pos + 16 rb + 8 r

  for (int kt = 0; kt < tiles; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < tiles) {  // the next tile streams in while this one is used
      loadTile<kFk, kD>(Ks + (cur ^ 1) * kFk * kLd, kHead, (kt + 1) * kFk, lastKey + 1);
      loadTile<kFk, kD>(Vs + (cur ^ 1) * kFk * kLd, vHead, (kt + 1) * kFk, lastKey + 1);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* K = Ks + cur * kFk * kLd;
    const __nv_bfloat16* V = Vs + cur * kFk * kLd;
    const int k0 = kt * kFk;
    if (k0 <= warpLastKey) {  // else every key of the tile is masked for this warp's rows
      float s[kFrb][kFk / 8][4];
#pragma unroll
      for (int rb = 0; rb < kFrb; ++rb)
#pragma unroll
        for (int n = 0; n < kFk / 8; ++n) s[rb][n][0] = s[rb][n][1] = s[rb][n][2] = s[rb][n][3] = 0.0f;
#pragma unroll
      for (int ks = 0; ks < kKs; ++ks) {
        uint32_t qa[kFrb][4];
#pragma unroll
        for (int rb = 0; rb < kFrb; ++rb) fragA<kD>(qa[rb], Qs, row0 + 16 * rb, ks);
#pragma unroll
        for (int n = 0; n < kFk / 8; n += 2) {
          uint32_t bf[4];
          fragB2<kD>(bf, K, 8 * n, ks);
#pragma unroll
          for (int rb = 0; rb < kFrb; ++rb) mmaPair(s[rb][n], s[rb][n + 1], qa[rb], bf);
        }
      }
#pragma unroll
      for (int rb = 0; rb < kFrb; ++rb) {
        if (k0 + kFk - 1 > pos + 16 * rb) {  // the tile reaches past some row's position: causal mask
#pragma unroll
          for (int n = 0; n < kFk / 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              if (k0 + 8 * n + 2 * t + (e & 1) > pos + 16 * rb + 8 * (e >> 1)) s[rb][n][e] = -INFINITY;
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          float mx = -INFINITY;
#pragma unroll
          for (int n = 0; n < kFk / 8; ++n) mx = fmaxf(mx, fmaxf(s[rb][n][2 * r], s[rb][n][2 * r + 1]));
          const float mNew = fmaxf(m[rb][r], quadMax(mx));
          const float mUse = mNew == -INFINITY ? 0.0f : mNew;  // a row with no key yet: p = 0, no NaN
          const float corr = exp2f((m[rb][r] - mUse) * kLog2e);
          const float mScaled = mUse * kLog2e;
          float sum = 0.0f;
#pragma unroll
          for (int n = 0; n < kFk / 8; ++n) {
            s[rb][n][2 * r] = exp2f(fmaf(s[rb][n][2 * r], kLog2e, -mScaled));
            s[rb][n][2 * r + 1] = exp2f(fmaf(s[rb][n][2 * r + 1], kLog2e, -mScaled));
            sum += s[rb][n][2 * r] + s[rb][n][2 * r + 1];
          }
          l[rb][r] = l[rb][r] * corr + sum;
          m[rb][r] = mNew;
#pragma unroll
          for (int i = 0; i < kNd; ++i) {
            o[rb][i][2 * r] *= corr;
            o[rb][i][2 * r + 1] *= corr;
          }
        }
      }
#pragma unroll
      for (int j = 0; j < kFk / 16; ++j) {
        uint32_t pa[kFrb][4];
#pragma unroll
        for (int rb = 0; rb < kFrb; ++rb) cToA(pa[rb], s[rb][2 * j], s[rb][2 * j + 1]);
#pragma unroll
        for (int i = 0; i < kNd; i += 2) {
          uint32_t bf[4];
          fragB2Trans<kD>(bf, V, 8 * i, j);
#pragma unroll
          for (int rb = 0; rb < kFrb; ++rb) mmaPair(o[rb][i], o[rb][i + 1], pa[rb], bf);
        }
      }
    }
    __syncthreads();  // this tile's buffers are refilled next
  }

  const size_t qStride = size_t(H) * D;
#pragma unroll
  for (int rb = 0; rb < kFrb; ++rb)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = q0 + row0 + 16 * rb + g + 8 * r;
      const float total = quadSum(l[rb][r]);
      if (row >= Tq) continue;
      storeRow<kNd>(out + (size_t(b) * Tq + row) * qStride + size_t(h) * D, o[rb], r, D, 1.0f / total);
      if (lse && t == 0) lse[(size_t(b) * H + h) * Tq + row] = m[rb][r] + logf(total);
    }
}

// ---- backward: dK and dV ------------------------------------------------------------------------------------

constexpr int kBk = 64, kBq = 32;

template <int kD>
constexpr size_t dkdvSmem() {
  return 2 * size_t(rowLd<kD>()) * (2 * kBk + 4 * kBq) + 4 * size_t(4 * kBq);  // K, V, 2x(Q, dO), 2x(lse, delta)
}

template <int kD>
__global__ void __launch_bounds__(kThreadsF)
    attention_flash_dkdv_kernel(float* dk, float* dv, const __nv_bfloat16* qh, const __nv_bfloat16* kh,
                                const __nv_bfloat16* vh, const __nv_bfloat16* doh, const float* lse,
                                const float* delta, int T, int H, int Hkv, int D, __nv_bfloat16* dsT, int ldq) {
  // dk, dv: [B,T,H,D], this query head's share (the gradients themselves when H == Hkv). dsT (or null):
  // dS^T for the dQ pass, [B,H,T keys,ldq], every query at or after the block's first key (masked ones 0).
  constexpr int kLd = rowLd<kD>(), kNd = kD / 8, kKs = kD / 16;
  extern __shared__ __align__(16) uint8_t smemBytes[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smemBytes);
  __nv_bfloat16* Vs = Ks + kBk * kLd;
  __nv_bfloat16* Qs = Vs + kBk * kLd;       // [2][kBq][kLd]
  __nv_bfloat16* dOs = Qs + 2 * kBq * kLd;  // [2][kBq][kLd]
  float* stats = reinterpret_cast<float*>(dOs + 2 * kBq * kLd);  // [2][lse kBq, delta kBq]
  const int k0 = blockIdx.x * kBk, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int keyOf[2] = {k0 + 16 * warp + g, k0 + 16 * warp + g + 8};
  const int steps = (T - k0 + kBq - 1) / kBq;  // query tiles at or after the block's first key

  // Step s: queries k0 + s * kBq.
  auto issue = [&](int s, int buf) {
    const int q0 = k0 + s * kBq;
    loadTile<kBq, kD>(Qs + buf * kBq * kLd, qh + (size_t(b) * H + h) * T * kD, q0, T);
    loadTile<kBq, kD>(dOs + buf * kBq * kLd, doh + (size_t(b) * H + h) * T * kD, q0, T);
    float* st = stats + buf * 2 * kBq;
    for (int i = threadIdx.x; i < kBq; i += kThreadsF) {
      const bool in = q0 + i < T;
      st[i] = in ? lse[(size_t(b) * H + h) * T + q0 + i] : 0.0f;
      st[kBq + i] = in ? delta[(size_t(b) * H + h) * T + q0 + i] : 0.0f;
    }
  };
  loadTile<kBk, kD>(Ks, kh + (size_t(b) * Hkv + hk) * T * kD, k0, T);
  loadTile<kBk, kD>(Vs, vh + (size_t(b) * Hkv + hk) * T * kD, k0, T);
  if (steps > 0) issue(0, 0);
  cpAsyncCommit();

  float dkAcc[kNd][4], dvAcc[kNd][4];
#pragma unroll
  for (int i = 0; i < kNd; ++i)
#pragma unroll
    for (int e = 0; e < 4; ++e) dkAcc[i][e] = dvAcc[i][e] = 0.0f;

  for (int s = 0; s < steps; ++s) {
    const int cur = s & 1;
    if (s + 1 < steps) {
      issue(s + 1, cur ^ 1);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* Q = Qs + cur * kBq * kLd;
    const __nv_bfloat16* dO = dOs + cur * kBq * kLd;
    const float* lseS = stats + cur * 2 * kBq;
    const float* deltaS = lseS + kBq;
    const int q0 = k0 + s * kBq;

    float st[kBq / 8][4], dpt[kBq / 8][4];
#pragma unroll
    for (int n = 0; n < kBq / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[n][e] = dpt[n][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < kKs; ++ks) {
      uint32_t ka[4], va[4];
      fragA<kD>(ka, Ks, 16 * warp, ks);
      fragA<kD>(va, Vs, 16 * warp, ks);
#pragma unroll
      for (int n = 0; n < kBq / 8; n += 2) {
        uint32_t qb[4], ob[4];
        fragB2<kD>(qb, Q, 8 * n, ks);
        fragB2<kD>(ob, dO, 8 * n, ks);
        mmaPair(st[n], st[n + 1], ka, qb);
        mmaPair(dpt[n], dpt[n + 1], va, ob);
      }
    }
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
    if (dsT) {
#pragma unroll
      for (int n = 0; n < kBq / 8; ++n)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int key = keyOf[r], query = q0 + 8 * n + 2 * t;
          if (key >= T || query >= T) continue;
          __nv_bfloat16* dst = dsT + ((size_t(b) * H + h) * T + key) * ldq + query;
          if (query + 1 < T)
            *reinterpret_cast<uint32_t*>(dst) = packBf16(dpt[n][2 * r], dpt[n][2 * r + 1]);
          else
            *dst = __float2bfloat16_rn(dpt[n][2 * r]);
        }
    }
#pragma unroll
    for (int j = 0; j < kBq / 16; ++j) {
      uint32_t pa[4], sa[4];
      cToA(pa, st[2 * j], st[2 * j + 1]);
      cToA(sa, dpt[2 * j], dpt[2 * j + 1]);
#pragma unroll
      for (int i = 0; i < kNd; i += 2) {
        uint32_t ob[4], qb[4];
        fragB2Trans<kD>(ob, dO, 8 * i, j);
        fragB2Trans<kD>(qb, Q, 8 * i, j);
        mmaPair(dvAcc[i], dvAcc[i + 1], pa, ob);
        mmaPair(dkAcc[i], dkAcc[i + 1], sa, qb);
      }
    }
    __syncthreads();  // this step's buffers are refilled next
  }

  const size_t kStride = size_t(H) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = keyOf[r];
    if (key >= T) continue;
    const size_t off = (size_t(b) * T + key) * kStride + size_t(h) * D;
    storeRow<kNd>(dk + off, dkAcc, r, D, 1.0f);
    storeRow<kNd>(dv + off, dvAcc, r, D, 1.0f);
  }
}

// ---- backward: dQ ---------------------------------------------------------------------------------------------

constexpr int kQq = 64, kQk = 32;

template <int kD>
constexpr size_t dqSmem() {
  return 2 * size_t(rowLd<kD>()) * (2 * kQq + 4 * kQk);  // Q, dO, 2x(K, V)
}

template <int kD>
__global__ void __launch_bounds__(kThreadsF)
    attention_flash_dq_kernel(float* dq, const __nv_bfloat16* qh, const __nv_bfloat16* kh, const __nv_bfloat16* vh,
                              const __nv_bfloat16* doh, const float* lse, const float* delta, int T, int H, int Hkv,
                              int D, float scale) {
  constexpr int kLd = rowLd<kD>(), kNd = kD / 8, kKs = kD / 16;
  extern __shared__ __align__(16) uint8_t smemBytes[];
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smemBytes);
  __nv_bfloat16* dOs = Qs + kQq * kLd;
  __nv_bfloat16* Ks = dOs + kQq * kLd;      // [2][kQk][kLd]
  __nv_bfloat16* Vs = Ks + 2 * kQk * kLd;  // [2][kQk][kLd]
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kQq, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const __nv_bfloat16* kHead = kh + (size_t(b) * Hkv + hk) * T * kD;
  const __nv_bfloat16* vHead = vh + (size_t(b) * Hkv + hk) * T * kD;
  const int lastKey = min(T, q0 + kQq) - 1;
  const int tiles = lastKey / kQk + 1;

  loadTile<kQq, kD>(Qs, qh + (size_t(b) * H + h) * T * kD, q0, T);
  loadTile<kQq, kD>(dOs, doh + (size_t(b) * H + h) * T * kD, q0, T);
  loadTile<kQk, kD>(Ks, kHead, 0, T);
  loadTile<kQk, kD>(Vs, vHead, 0, T);
  cpAsyncCommit();

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
  uint32_t qf[kKs][4], of[kKs][4];

  for (int kt = 0; kt < tiles; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < tiles) {
      loadTile<kQk, kD>(Ks + (cur ^ 1) * kQk * kLd, kHead, (kt + 1) * kQk, T);
      loadTile<kQk, kD>(Vs + (cur ^ 1) * kQk * kLd, vHead, (kt + 1) * kQk, T);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    if (kt == 0) {
#pragma unroll
      for (int ks = 0; ks < kKs; ++ks) {
        fragA<kD>(qf[ks], Qs, 16 * warp, ks);
        fragA<kD>(of[ks], dOs, 16 * warp, ks);
      }
    }
    const __nv_bfloat16* K = Ks + cur * kQk * kLd;
    const __nv_bfloat16* V = Vs + cur * kQk * kLd;
    const int k0 = kt * kQk;

    float s[kQk / 8][4], dp[kQk / 8][4];
#pragma unroll
    for (int n = 0; n < kQk / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[n][e] = dp[n][e] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < kKs; ++ks)
#pragma unroll
      for (int n = 0; n < kQk / 8; n += 2) {
        uint32_t kb[4], vb[4];
        fragB2<kD>(kb, K, 8 * n, ks);
        fragB2<kD>(vb, V, 8 * n, ks);
        mmaPair(s[n], s[n + 1], qf[ks], kb);
        mmaPair(dp[n], dp[n + 1], of[ks], vb);
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
      addTimesK<kD>(acc, sa, K, j);
    }
    __syncthreads();
  }

  const size_t qStride = size_t(H) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r)
    if (rowOf[r] < T) storeRow<kNd>(dq + (size_t(b) * T + rowOf[r]) * qStride + size_t(h) * D, acc, r, D, scale);
}

// ---- backward: dQ from the stored dS ------------------------------------------------------------------------

// With dS^T kept by the dK/dV pass, dQ = dS K (times scale) is one product: a block per (b, h, 64 queries)
// over key tiles of 32, dS^T and K double-buffered, dS's A fragments read transposed.
constexpr int kSq = 64, kSk = 32, kSld = kSq + 8;

template <int kD>
constexpr size_t dqDsSmem() {
  return 2 * (2 * size_t(kSk) * kSld + 2 * size_t(kSk) * rowLd<kD>());  // two dS^T and two K tiles
}

template <int kD>
__global__ void __launch_bounds__(kThreadsF)
    attention_flash_dq_ds_kernel(float* dq, const __nv_bfloat16* kh, const __nv_bfloat16* dsT, int ldq, int T, int H,
                                 int Hkv, int D, float scale) {
  constexpr int kLd = rowLd<kD>(), kNd = kD / 8;
  extern __shared__ __align__(16) uint8_t smemBytes[];
  __nv_bfloat16* Ss = reinterpret_cast<__nv_bfloat16*>(smemBytes);  // [2][kSk][kSld]
  __nv_bfloat16* Ks = Ss + 2 * kSk * kSld;                          // [2][kSk][kLd]
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kSq, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int warp = threadIdx.x / 32, g = (threadIdx.x % 32) / 4;
  const __nv_bfloat16* kHead = kh + (size_t(b) * Hkv + hk) * T * kD;
  const __nv_bfloat16* dsHead = dsT + (size_t(b) * H + h) * T * ldq;
  const int tiles = (min(T, q0 + kSq) - 1) / kSk + 1;
  // Keys [key0, key0 + kSk) x this block's queries; keys past T and queries past T load as zeros.
  auto loadDs = [&](__nv_bfloat16* S, int key0) {
    for (int i = threadIdx.x; i < kSk * (kSq / 8); i += kThreadsF) {
      const int r = i / (kSq / 8), c = (i % (kSq / 8)) * 8;
      const bool valid = key0 + r < T && q0 + c < T;
      cpAsync16(S + r * kSld + c, dsHead + (valid ? size_t(key0 + r) * ldq + q0 + c : 0), valid);
    }
  };
  loadDs(Ss, 0);
  loadTile<kSk, kD>(Ks, kHead, 0, T);
  cpAsyncCommit();

  float acc[kNd][4];
#pragma unroll
  for (int i = 0; i < kNd; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
  for (int kt = 0; kt < tiles; ++kt) {
    const int cur = kt & 1;
    if (kt + 1 < tiles) {
      loadDs(Ss + (cur ^ 1) * kSk * kSld, (kt + 1) * kSk);
      loadTile<kSk, kD>(Ks + (cur ^ 1) * kSk * kLd, kHead, (kt + 1) * kSk, T);
      cpAsyncCommit();
      cpAsyncWait<1>();
    } else {
      cpAsyncWait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* S = Ss + cur * kSk * kSld;
    const __nv_bfloat16* K = Ks + cur * kSk * kLd;
#pragma unroll
    for (int j = 0; j < kSk / 16; ++j) {
      uint32_t sa[4];
      fragATrans(sa, S, kSld, 16 * warp, j);
      addTimesK<kD>(acc, sa, K, j);
    }
    __syncthreads();
  }

  const size_t qStride = size_t(H) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = q0 + 16 * warp + g + 8 * r;
    if (row < T) storeRow<kNd>(dq + (size_t(b) * T + row) * qStride + size_t(h) * D, acc, r, D, scale);
  }
}

// ---- launchers ---------------------------------------------------------------------------------------------

template <int kD>
void forwardFlash(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v, int B,
                  int Tq, int Tcap, int H, int Hkv, int D, int pos0, void* scratch) {
  auto* qh = static_cast<__nv_bfloat16*>(scratch);
  auto* kh = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<uint8_t*>(qh) + packedBytes(B, Tq, H, kD));
  auto* vh = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<uint8_t*>(kh) + packedBytes(B, Tcap, Hkv, kD));
  toHeads<kD>(stream, qh, q, B, Tq, H, D, 1.0f / std::sqrt(float(D)));
  toHeads<kD>(stream, kh, k, B, Tcap, Hkv, D, 1.0f);
  toHeads<kD>(stream, vh, v, B, Tcap, Hkv, D, 1.0f);
  constexpr size_t smem = forwardSmem<kD>();
  allowSharedMemory(attention_flash_forward_kernel<kD>, smem, "attention_flash_forward_kernel");
  attention_flash_forward_kernel<kD><<<dim3(ceilDiv(Tq, kFq), H, B), kThreadsF, smem, stream>>>(
      out, lse, qh, kh, vh, Tq, Tcap, H, Hkv, D, pos0);
  checkLaunch("attention_flash_forward_kernel");
}

template <int kD>
void backwardFlash(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                   const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H, int Hkv,
                   int D, void* scratch, bool keepDs) {
  const float scale = 1.0f / std::sqrt(float(D));
  auto* qh = static_cast<__nv_bfloat16*>(scratch);
  auto* doh = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<uint8_t*>(qh) + packedBytes(B, T, H, kD));
  auto* kh = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<uint8_t*>(doh) + packedBytes(B, T, H, kD));
  auto* vh = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<uint8_t*>(kh) + packedBytes(B, T, Hkv, kD));
  toHeads<kD>(stream, qh, q, B, T, H, D, scale);
  toHeads<kD>(stream, doh, dout, B, T, H, D, 1.0f);
  toHeads<kD>(stream, kh, k, B, T, Hkv, D, 1.0f);
  toHeads<kD>(stream, vh, v, B, T, Hkv, D, 1.0f);
  // With grouped-query attention, each query head's share of dK and dV first (fp32, after the packed operands).
  float* dkShare = dk;
  float* dvShare = dv;
  if (H != Hkv) {
    dkShare = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(vh) + packedBytes(B, T, Hkv, kD));
    dvShare = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(dkShare) + sharesBytes(B, T, H, Hkv, D) / 2);
  }
  // dS^T, when kept, after the shares.
  __nv_bfloat16* dsT = nullptr;
  if (dsBytes(B, T, H, keepDs) > 0)
    dsT = reinterpret_cast<__nv_bfloat16*>(reinterpret_cast<uint8_t*>(vh) + packedBytes(B, T, Hkv, kD) +
                                           sharesBytes(B, T, H, Hkv, D));
  constexpr size_t smemKv = dkdvSmem<kD>();
  allowSharedMemory(attention_flash_dkdv_kernel<kD>, smemKv, "attention_flash_dkdv_kernel");
  attention_flash_dkdv_kernel<kD><<<dim3(ceilDiv(T, kBk), H, B), kThreadsF, smemKv, stream>>>(
      dkShare, dvShare, qh, kh, vh, doh, lse, delta, T, H, Hkv, D, dsT, dsLd(T));
  checkLaunch("attention_flash_dkdv_kernel");
  sumGroupShares(stream, dk, dv, dkShare, dvShare, B, T, H, Hkv, D);
  if (dsT) {
    constexpr size_t smemDs = dqDsSmem<kD>();
    allowSharedMemory(attention_flash_dq_ds_kernel<kD>, smemDs, "attention_flash_dq_ds_kernel");
    attention_flash_dq_ds_kernel<kD><<<dim3(ceilDiv(T, kSq), H, B), kThreadsF, smemDs, stream>>>(
        dq, kh, dsT, dsLd(T), T, H, Hkv, D, scale);
    checkLaunch("attention_flash_dq_ds_kernel");
    return;
  }
  constexpr size_t smemQ = dqSmem<kD>();
  allowSharedMemory(attention_flash_dq_kernel<kD>, smemQ, "attention_flash_dq_kernel");
  attention_flash_dq_kernel<kD><<<dim3(ceilDiv(T, kQq), H, B), kThreadsF, smemQ, stream>>>(
      dq, qh, kh, vh, doh, lse, delta, T, H, Hkv, D, scale);
  checkLaunch("attention_flash_dq_kernel");
}

// out[b,t,hk,d] = sum over j < group, in order, of part[b,t,hk*group+j,d] (for dK and dV at once).
__global__ void sum_group_kernel(float* dk, float* dv, const float* dkPart, const float* dvPart, size_t rows, int Hkv,
                                 int group, int D) {
  const size_t total = rows * Hkv * D;  // rows = B*T
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const int d = int(i % D);
    const size_t rowHead = i / D;  // (b*T + t) * Hkv + hk
    const size_t src = (rowHead * group) * D + d;  // head hk*group of row b*T+t: ((b*T+t)*H + hk*group)*D + d
    float sk = 0.0f, sv = 0.0f;
    for (int j = 0; j < group; ++j) {
      sk += dkPart[src + size_t(j) * D];
      sv += dvPart[src + size_t(j) * D];
    }
    dk[i] = sk;
    dv[i] = sv;
  }
}

}  // namespace

void sumGroupShares(cudaStream_t stream, float* dk, float* dv, const float* dkShare, const float* dvShare, int B,
                    int T, int H, int Hkv, int D) {
  if (H == Hkv) return;
  const size_t work = size_t(B) * T * Hkv * D;
  sum_group_kernel<<<elementwiseBlocks(work, 256), 256, 0, stream>>>(dk, dv, dkShare, dvShare, size_t(B) * T, Hkv,
                                                                       H / Hkv, D);
  checkLaunch("sum_group_kernel");
}

bool attentionFlashSupports(int D, int Tq) { return bf16AttentionCovers(D, Tq); }

size_t attentionFlashForwardScratchBytes(int B, int Tq, int Tcap, int H, int Hkv, int D) {
  const int kD = paddedHeadDim(D);
  return packedBytes(B, Tq, H, kD) + 2 * packedBytes(B, Tcap, Hkv, kD);
}

size_t attentionFlashBackwardScratchBytes(int B, int T, int H, int Hkv, int D, bool keepDs) {
  const int kD = paddedHeadDim(D);
  return 2 * packedBytes(B, T, H, kD) + 2 * packedBytes(B, T, Hkv, kD) + sharesBytes(B, T, H, Hkv, D) +
         dsBytes(B, T, H, keepDs);
}

void attentionForwardFlash(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v,
                           int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0, void* scratch) {
  if (paddedHeadDim(D) == 64) forwardFlash<64>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0, scratch);
  else forwardFlash<128>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0, scratch);
}

void attentionBackwardFlash(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                            const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H,
                            int Hkv, int D, void* scratch, bool keepDs) {
  if (paddedHeadDim(D) == 64)
    backwardFlash<64>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D, scratch, keepDs);
  else
    backwardFlash<128>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D, scratch, keepDs);
}

}  // namespace pl::cuda
