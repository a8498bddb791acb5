// Causal grouped-query attention on Hopper (sm_90a) with wgmma, for head dims 33..128 (padded to kHD = 64 or
// 128, as the flash kernels pad them) and query blocks of 8 rows or more. In the lab (dev/attention.cu) until a GPU shows it beating the flash kernels.
// Conventions are attention.cu's (q, out, dq, dout [B,Tq,H,D]; k, v [B,Tcap,Hkv,D]; lse, delta [B,H,Tq];
// query t at position pos0 + t sees keys [0, pos0 + t]), and the results are attention_flash.cu's up to bf16
// rounding order.
//
// Operands are packed to bf16 per call (attention_bf16.cuh): q (times 1/sqrt(D)), k, v, dout as [heads, T,
// kHD] blocks, and the transposes the products contract over columns of: v^T for O += P V, q^T and dO^T
// for dK and dV, k^T for dQ. So every shared-memory operand of a wgmma is K-major with the 128-byte
// swizzle, as in gemm_hopper.cu; tiles are copied in with cp.async (the swizzle written by the copy's
// address: 16-byte chunk c of a 128-byte row r lands at chunk c ^ (r % 8)), double-buffered behind the
// math, and a proxy fence hands them to wgmma. A CTA is two warp groups (64 rows each), one per SM.
//
// Forward: a CTA = 128 queries of one (b, h), latest blocks first, over key tiles of 128:
//   S = Q K^T (wgmma m64n128, both from shared memory), online softmax on the accumulators (a thread's
//   values sit where mma.sync's would: rows g, g + 8 of its warp's 16, columns 8j + 2t, + 1), then P, packed
//   to bf16 in registers, is the A operand of O += P V (wgmma with A from registers, B = V^T's tile).
// Backward (delta = rowsum(dout * out) from the caller), one writer per output, no atomics:
//   dK, dV: a CTA = 128 keys of one (b, query head) over the query tiles of 64 at or after its first key
//     (a warp group skips the tile wholly before its 64 keys):
//     S^T = K Q^T and dP^T = V dO^T (m64n64), P^T = exp(S^T - lse), dS^T = P^T (dP^T - delta), kept in bf16
//     for dQ; dV += P^T dO and dK += dS^T (q * scale) with A from registers (B = dO^T's and q^T's tiles).
//     With grouped-query attention the query heads' shares are summed in order afterwards.
//   dQ = dS K (times scale): a CTA = 128 queries over key tiles of 64; dS's A fragments come from the kept
//     dS^T through ldmatrix.trans, B = k^T's tile.
// Needs dS kept (at most kMaxDsBytes): attentionHopperBackwardFits() says whether a call fits.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "../../attention_bf16.cuh"
#include "../../common.cuh"
#include "../../hopper.cuh"
#include "../../mma.cuh"
#include "lab_kernels.h"

namespace pl::cuda::lab {

namespace {

constexpr int kHThreadsA = 256;     // two warp groups
constexpr int kFwdQ = 128, kFwdK = 128;   // forward: queries a CTA, keys a tile
constexpr int kBwdK = 128, kBwdQ = 64;    // dK/dV: keys a CTA, queries a tile
constexpr int kDqQ = 128, kDqK = 64;      // dQ: queries a CTA, keys a tile
constexpr int kDqLd = kDqQ + 8;           // dS^T tile row pitch (ldmatrix rows in distinct banks)

// Shared memory of each kernel at padded head dim kHD (tiles, then + 1024 for aligning the swizzled tiles).
constexpr size_t fwdSmem(int kHD) { return 2 * (size_t(kFwdQ) * kHD + 2 * 2 * size_t(kFwdK) * kHD) + 1024; }  // Q, 2x(K, V^T)
constexpr size_t bwdStage(int kHD) { return 2 * (2 * size_t(kBwdQ) * kHD + 2 * size_t(kHD) * kBwdQ); }  // Q, dO, q^T, dO^T
constexpr size_t bwdSmem(int kHD) {
  return 2 * 2 * size_t(kBwdK) * kHD + 2 * bwdStage(kHD) + 2 * 2 * kBwdQ * sizeof(float) + 1024;
}
constexpr size_t dqSmem(int kHD) { return 2 * 2 * (size_t(kHD) * kDqK + size_t(kDqK) * kDqLd) + 1024; }  // 2x(k^T, dS^T)
static_assert(bwdSmem(128) <= 227 * 1024, "dK/dV tiles exceed shared memory");

#ifdef PL_HOPPER_DEVICE

constexpr int kPanel = 64;  // bf16 in a 128-byte swizzled row
constexpr float kLog2eH = 1.4426950408889634f;

__device__ __forceinline__ uint8_t* align1024(uint8_t* raw) { return raw + ((1024 - (smemAddr(raw) & 1023)) & 1023); }

// Rows [r0, r0 + kRows) of a bf16 matrix with rows `ld` apart, kCols wide from `src`, into a swizzled
// K-major tile: kCols / 64 panels of [kRows][64], 16-byte chunk c of row r at chunk c ^ (r % 8). Rows at or
// past `valid` are zero-filled (their source is never read).
template <int kRows, int kCols>
__device__ __forceinline__ void loadSwizzled(__nv_bfloat16* tile, const __nv_bfloat16* src, size_t ld, int r0,
                                             int valid) {
  constexpr int kChunks = kCols / 8;
  for (int i = threadIdx.x; i < kRows * kChunks; i += kHThreadsA) {
    const int r = i / kChunks, cc = i % kChunks, panel = cc / 8, c = cc % 8;
    const bool ok = r0 + r < valid;
    cpAsync16(tile + panel * kRows * kPanel + r * kPanel + ((c ^ (r & 7)) * 8),
              src + (ok ? size_t(r0 + r) * ld + cc * 8 : 0), ok);
  }
}

// The double-buffer turn of every kernel here: starts step + 1's copies into the other buffer (when there
// is a next step; issue(step, buffer) makes them), waits for step's own, and hands the tiles to wgmma.
template <typename Issue>
__device__ __forceinline__ void awaitStep(int step, int steps, const Issue& issue) {
  if (step + 1 < steps) {
    issue(step + 1, (step + 1) & 1);
    cpAsyncCommit();
    cpAsyncWait<1>();
  } else {
    cpAsyncWait<0>();
  }
  fenceProxyAsync();
  __syncthreads();
}

// The descriptor of k-step kk (16 columns) of a swizzled tile of kRows rows, from row `row0` (a multiple
// of 8): panel kk / 4, then 32 bytes a step inside the panel (2 in the encoded address).
template <int kRows>
__device__ __forceinline__ uint64_t tileDesc(const __nv_bfloat16* tile, int row0, int kk) {
  return smemDesc(tile + (kk / 4) * kRows * kPanel + row0 * kPanel) + 2 * (kk % 4);
}

// The A fragment of k-step kk (columns 16kk..16kk+15) from accumulators x of an m64nN wgmma (x[4j + e]:
// row g (+8 for e >= 2), column 8j + 2t + e % 2), rounded to bf16: the mma.m16n8k16 A layout.
template <int kN>
__device__ __forceinline__ void accToA(uint32_t (&a)[4], const float (&x)[kN / 2], int kk) {
  a[0] = packBf16(x[8 * kk + 0], x[8 * kk + 1]);
  a[1] = packBf16(x[8 * kk + 2], x[8 * kk + 3]);
  a[2] = packBf16(x[8 * kk + 4], x[8 * kk + 5]);
  a[3] = packBf16(x[8 * kk + 6], x[8 * kk + 7]);
}

// Row r (0: g, 1: g + 8) of a thread's m64nN accumulators into dst[0..D): columns 8j + 2t, + 1, times mul.
template <int kN>
__device__ __forceinline__ void storeAccRow(float* dst, const float (&acc)[kN / 2], int r, int D, float mul) {
  const int t = threadIdx.x % 4;
#pragma unroll
  for (int j = 0; j < kN / 8; ++j) {
    const int d = 8 * j + 2 * t;
    if (d < D) dst[d] = acc[4 * j + 2 * r] * mul;
    if (d + 1 < D) dst[d + 1] = acc[4 * j + 2 * r + 1] * mul;
  }
}

#endif  // PL_HOPPER_DEVICE

// ---- forward ---------------------------------------------------------------------------------------------

// vT: [B, Hkv, kHD, Tp] with Tp a multiple of 128, keys past pos0 + Tq zero.
template <int kHD>
__global__ void __launch_bounds__(kHThreadsA, 1)
    attention_hopper_forward_kernel(float* out, float* lse, const __nv_bfloat16* qh, const __nv_bfloat16* kh,
                                    const __nv_bfloat16* vT, int Tq, int Tcap, int Tp, int H, int Hkv, int D, int pos0) {
#ifdef PL_HOPPER_DEVICE
  extern __shared__ uint8_t smemRaw[];
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(align1024(smemRaw));  // [kHD / 64 panels][128 q][64]
  __nv_bfloat16* Ks = Qs + kFwdQ * kHD;                                      // 2 x [kHD / 64 panels][128 keys][64]
  __nv_bfloat16* Vs = Ks + 2 * kFwdK * kHD;                                  // 2 x [2 panels (keys)][kHD d][64]
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kFwdQ, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int wg = threadIdx.x / 128, warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int nKeys = pos0 + Tq;  // keys any query of the call sees
  const __nv_bfloat16* qHead = qh + (size_t(b) * H + h) * Tq * kHD;
  const __nv_bfloat16* kHead = kh + (size_t(b) * Hkv + hk) * Tcap * kHD;
  const __nv_bfloat16* vHead = vT + (size_t(b) * Hkv + hk) * kHD * size_t(Tp);
  const int lastKey = pos0 + min(q0 + kFwdQ, Tq) - 1;  // the block's last query's position
  const int tiles = lastKey / kFwdK + 1;
  const int groupPos = pos0 + q0 + 64 * wg;  // the warp group's first query position
  const int pos = groupPos + 16 * warp + g;  // the thread's rows: positions pos and pos + 8

  auto issue = [&](int kt, int buf) {
    loadSwizzled<kFwdK, kHD>(Ks + buf * kFwdK * kHD, kHead, kHD, kt * kFwdK, nKeys);
    loadSwizzled<kHD, kFwdK>(Vs + buf * kFwdK * kHD, vHead + kt * kFwdK, Tp, 0, kHD);
  };
  loadSwizzled<kFwdQ, kHD>(Qs, qHead, kHD, q0, Tq);
  issue(0, 0);
  cpAsyncCommit();

  float o[kHD / 2];
#pragma unroll
  for (int i = 0; i < kHD / 2; ++i) o[i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int kt = 0; kt < tiles; ++kt) {
    const int cur = kt & 1;
    awaitStep(kt, tiles, issue);
    const __nv_bfloat16* K = Ks + cur * kFwdK * kHD;
    const __nv_bfloat16* V = Vs + cur * kFwdK * kHD;
    const int k0 = kt * kFwdK;
    if (k0 <= groupPos + 63) {  // the same for the whole warp group (wgmma is collective)
      float s[64];
#pragma unroll
      for (int i = 0; i < 64; ++i) s[i] = 0.0f;
      wgmmaFence();
#pragma unroll
      for (int kk = 0; kk < kHD / 16; ++kk)
        wgmmaBf16<kFwdK>(s, tileDesc<kFwdQ>(Qs, 64 * wg, kk), tileDesc<kFwdK>(K, 0, kk));
      wgmmaCommit();
      wgmmaWait<0>();
      if (k0 + kFwdK - 1 > groupPos) {  // the tile reaches past some row's position: causal mask
#pragma unroll
        for (int j = 0; j < kFwdK / 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (k0 + 8 * j + 2 * t + (e & 1) > pos + 8 * (e >> 1)) s[4 * j + e] = -INFINITY;
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kFwdK / 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * r], s[4 * j + 2 * r + 1]));
        const float mNew = fmaxf(m[r], quadMax(mx));
        const float mUse = mNew == -INFINITY ? 0.0f : mNew;  // a row with no key yet: p = 0, no NaN
        const float corr = exp2f((m[r] - mUse) * kLog2eH);
        const float mScaled = mUse * kLog2eH;
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < kFwdK / 8; ++j) {
          s[4 * j + 2 * r] = exp2f(fmaf(s[4 * j + 2 * r], kLog2eH, -mScaled));
          s[4 * j + 2 * r + 1] = exp2f(fmaf(s[4 * j + 2 * r + 1], kLog2eH, -mScaled));
          sum += s[4 * j + 2 * r] + s[4 * j + 2 * r + 1];
        }
        l[r] = l[r] * corr + sum;
        m[r] = mNew;
#pragma unroll
        for (int j = 0; j < kHD / 8; ++j) {
          o[4 * j + 2 * r] *= corr;
          o[4 * j + 2 * r + 1] *= corr;
        }
      }
      uint32_t pa[kFwdK / 16][4];
#pragma unroll
      for (int kk = 0; kk < kFwdK / 16; ++kk) accToA<kFwdK>(pa[kk], s, kk);
      wgmmaFence();
#pragma unroll
      for (int kk = 0; kk < kFwdK / 16; ++kk) wgmmaBf16Rs<kHD>(o, pa[kk], tileDesc<kHD>(V, 0, kk));
      wgmmaCommit();
      wgmmaWait<0>();
    }
    __syncthreads();  // this tile's buffers are refilled next
  }

  const size_t qStride = size_t(H) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = q0 + 64 * wg + 16 * warp + g + 8 * r;
    const float total = quadSum(l[r]);
    if (row >= Tq) continue;
    storeAccRow<kHD>(out + (size_t(b) * Tq + row) * qStride + size_t(h) * D, o, r, D, 1.0f / total);
    if (lse && t == 0) lse[(size_t(b) * H + h) * Tq + row] = m[r] + logf(total);
  }
#else
  unused(out, lse, qh, kh, vT, Tq, Tcap, Tp, H, Hkv, D, pos0);
  __trap();
#endif
}

// ---- backward: dK, dV and the kept dS^T ---------------------------------------------------------------------

// dk, dv: [B,T,H,D], this query head's share (the gradients themselves when H == Hkv); dsT: [B,H,T,ldq],
// every query at or after the first key of the key's 64 (masked ones 0). qT, doT: [B,H,kHD,Tp].
template <int kHD>
__global__ void __launch_bounds__(kHThreadsA, 1)
    attention_hopper_dkdv_kernel(float* dk, float* dv, const __nv_bfloat16* qh, const __nv_bfloat16* kh,
                                 const __nv_bfloat16* vh, const __nv_bfloat16* doh, const __nv_bfloat16* qT,
                                 const __nv_bfloat16* doT, const float* lse, const float* delta, int T, int Tp, int H,
                                 int Hkv, int D, __nv_bfloat16* dsT, int ldq) {
#ifdef PL_HOPPER_DEVICE
  extern __shared__ uint8_t smemRaw[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(align1024(smemRaw));  // [kHD / 64 panels][128 keys][64]
  __nv_bfloat16* Vs = Ks + kBwdK * kHD;                                      // [kHD / 64 panels][128 keys][64]
  __nv_bfloat16* stages = Vs + kBwdK * kHD;  // 2 x {Q, dO: [kHD / 64 panels][64 q][64]; q^T, dO^T: [kHD d][64 q]}
  float* stats = reinterpret_cast<float*>(stages + 2 * 4 * kBwdQ * kHD);  // 2 x {lse[64], delta[64]}
  const int k0 = blockIdx.x * kBwdK, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int wg = threadIdx.x / 128, warp = (threadIdx.x % 128) / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int keyOf[2] = {k0 + 64 * wg + 16 * warp + g, k0 + 64 * wg + 16 * warp + g + 8};
  const int steps = (T - k0 + kBwdQ - 1) / kBwdQ;  // query tiles at or after the CTA's first key
  const size_t headQ = (size_t(b) * H + h);
  auto stage = [&](int buf, int which) { return stages + (buf * 4 + which) * kBwdQ * kHD; };

  auto issue = [&](int s, int buf) {
    const int q0 = k0 + s * kBwdQ;
    loadSwizzled<kBwdQ, kHD>(stage(buf, 0), qh + headQ * T * kHD, kHD, q0, T);
    loadSwizzled<kBwdQ, kHD>(stage(buf, 1), doh + headQ * T * kHD, kHD, q0, T);
    loadSwizzled<kHD, kBwdQ>(stage(buf, 2), qT + headQ * kHD * Tp + q0, Tp, 0, kHD);
    loadSwizzled<kHD, kBwdQ>(stage(buf, 3), doT + headQ * kHD * Tp + q0, Tp, 0, kHD);
    float* st = stats + buf * 2 * kBwdQ;
    for (int i = threadIdx.x; i < kBwdQ; i += kHThreadsA) {
      const bool in = q0 + i < T;
      st[i] = in ? lse[headQ * T + q0 + i] : 0.0f;
      st[kBwdQ + i] = in ? delta[headQ * T + q0 + i] : 0.0f;
    }
  };
  loadSwizzled<kBwdK, kHD>(Ks, kh + (size_t(b) * Hkv + hk) * T * kHD, kHD, k0, T);
  loadSwizzled<kBwdK, kHD>(Vs, vh + (size_t(b) * Hkv + hk) * T * kHD, kHD, k0, T);
  if (steps > 0) issue(0, 0);
  cpAsyncCommit();

  float dkAcc[kHD / 2], dvAcc[kHD / 2];
#pragma unroll
  for (int i = 0; i < kHD / 2; ++i) dkAcc[i] = dvAcc[i] = 0.0f;

  for (int s = 0; s < steps; ++s) {
    const int cur = s & 1;
    awaitStep(s, steps, issue);
    const float* lseS = stats + cur * 2 * kBwdQ;
    const float* deltaS = lseS + kBwdQ;
    const int q0 = k0 + s * kBwdQ;

    // A tile wholly before the group's keys (the first one, for the second group) has nothing to add, and
    // its dS^T is never read (the dQ pass skips the keys past its group's queries). Uniform over the group.
    if (q0 + kBwdQ - 1 >= k0 + 64 * wg) {
      float st[32], dpt[32];
#pragma unroll
      for (int i = 0; i < 32; ++i) st[i] = dpt[i] = 0.0f;
      // S^T and dP^T as two groups: P is computed while dP^T runs. (Issuing dV before dS as well keeps too
      // many registers live: ptxas spills.)
      wgmmaFence();
#pragma unroll
      for (int kk = 0; kk < kHD / 16; ++kk)
        wgmmaBf16<kBwdQ>(st, tileDesc<kBwdK>(Ks, 64 * wg, kk), tileDesc<kBwdQ>(stage(cur, 0), 0, kk));
      wgmmaCommit();
#pragma unroll
      for (int kk = 0; kk < kHD / 16; ++kk)
        wgmmaBf16<kBwdQ>(dpt, tileDesc<kBwdK>(Vs, 64 * wg, kk), tileDesc<kBwdQ>(stage(cur, 1), 0, kk));
      wgmmaCommit();
      wgmmaWait<1>();  // S^T is done (dP^T may still run: dpt is not touched until the next wait)
#pragma unroll
      for (int j = 0; j < kBwdQ / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int qi = 8 * j + 2 * t + (e & 1), query = q0 + qi;
          const bool live = query < T && query >= keyOf[e >> 1];
          st[4 * j + e] = live ? exp2f((st[4 * j + e] - lseS[qi]) * kLog2eH) : 0.0f;
        }
      wgmmaWait<0>();
#pragma unroll
      for (int j = 0; j < kBwdQ / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) dpt[4 * j + e] = st[4 * j + e] * (dpt[4 * j + e] - deltaS[8 * j + 2 * t + (e & 1)]);
#pragma unroll
      for (int j = 0; j < kBwdQ / 8; ++j)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int key = keyOf[r], query = q0 + 8 * j + 2 * t;
          if (key >= T || query >= T) continue;
          __nv_bfloat16* dst = dsT + (headQ * T + key) * ldq + query;
          if (query + 1 < T)
            *reinterpret_cast<uint32_t*>(dst) = packBf16(dpt[4 * j + 2 * r], dpt[4 * j + 2 * r + 1]);
          else
            *dst = __float2bfloat16_rn(dpt[4 * j + 2 * r]);
        }
      uint32_t pa[kBwdQ / 16][4], sa[kBwdQ / 16][4];
#pragma unroll
      for (int kq = 0; kq < kBwdQ / 16; ++kq) {
        accToA<kBwdQ>(pa[kq], st, kq);
        accToA<kBwdQ>(sa[kq], dpt, kq);
      }
      wgmmaFence();
#pragma unroll
      for (int kq = 0; kq < kBwdQ / 16; ++kq) {
        wgmmaBf16Rs<kHD>(dvAcc, pa[kq], tileDesc<kHD>(stage(cur, 3), 0, kq));
        wgmmaBf16Rs<kHD>(dkAcc, sa[kq], tileDesc<kHD>(stage(cur, 2), 0, kq));
      }
      wgmmaCommit();
      wgmmaWait<0>();
    }
    __syncthreads();  // this step's buffers are refilled next
  }

  const size_t kStride = size_t(H) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = keyOf[r];
    if (key >= T) continue;
    const size_t off = (size_t(b) * T + key) * kStride + size_t(h) * D;
    storeAccRow<kHD>(dk + off, dkAcc, r, D, 1.0f);
    storeAccRow<kHD>(dv + off, dvAcc, r, D, 1.0f);
  }
#else
  unused(dk, dv, qh, kh, vh, doh, qT, doT, lse, delta, T, Tp, H, Hkv, D, dsT, ldq);
  __trap();
#endif
}

// ---- backward: dQ = dS K -------------------------------------------------------------------------------------

// kT: [B,Hkv,kHD,Tp]; dsT as the dK/dV kernel left it.
template <int kHD>
__global__ void __launch_bounds__(kHThreadsA, 1)
    attention_hopper_dq_kernel(float* dq, const __nv_bfloat16* kT, const __nv_bfloat16* dsT, int ldq, int T, int Tp,
                               int H, int Hkv, int D, float scale) {
#ifdef PL_HOPPER_DEVICE
  extern __shared__ uint8_t smemRaw[];
  __nv_bfloat16* KTs = reinterpret_cast<__nv_bfloat16*>(align1024(smemRaw));  // 2 x [kHD d][64 keys]
  __nv_bfloat16* Ss = KTs + 2 * kHD * kDqK;                                     // 2 x [64 keys][kDqLd]
  const int q0 = (gridDim.x - 1 - blockIdx.x) * kDqQ, h = blockIdx.y, b = blockIdx.z;
  const int hk = h / (H / Hkv);
  const int wg = threadIdx.x / 128, warp = (threadIdx.x % 128) / 32, g = (threadIdx.x % 32) / 4;
  const __nv_bfloat16* kTHead = kT + (size_t(b) * Hkv + hk) * kHD * size_t(Tp);
  const __nv_bfloat16* dsHead = dsT + (size_t(b) * H + h) * T * size_t(ldq);
  const int tiles = (min(T, q0 + kDqQ) - 1) / kDqK + 1;
  const int groupLast = q0 + 64 * wg + 63;  // the warp group's last query

  // Keys [key0, key0 + 64) x this CTA's queries; keys past T and queries past T load as zeros.
  auto issue = [&](int kt, int buf) {
    const int key0 = kt * kDqK;
    __nv_bfloat16* S = Ss + buf * kDqK * kDqLd;
    for (int i = threadIdx.x; i < kDqK * (kDqQ / 8); i += kHThreadsA) {
      const int r = i / (kDqQ / 8), c = (i % (kDqQ / 8)) * 8;
      const bool valid = key0 + r < T && q0 + c < T;
      cpAsync16(S + r * kDqLd + c, dsHead + (valid ? size_t(key0 + r) * ldq + q0 + c : 0), valid);
    }
    loadSwizzled<kHD, kDqK>(KTs + buf * kHD * kDqK, kTHead + key0, Tp, 0, kHD);
  };
  issue(0, 0);
  cpAsyncCommit();

  float acc[kHD / 2];
#pragma unroll
  for (int i = 0; i < kHD / 2; ++i) acc[i] = 0.0f;
  for (int kt = 0; kt < tiles; ++kt) {
    const int cur = kt & 1;
    awaitStep(kt, tiles, issue);
    if (kt * kDqK <= groupLast) {  // uniform over the warp group
      const __nv_bfloat16* S = Ss + cur * kDqK * kDqLd;
      uint32_t a[kDqK / 16][4];
#pragma unroll
      for (int j = 0; j < kDqK / 16; ++j) fragATrans(a[j], S, kDqLd, 64 * wg + 16 * warp, j);
      wgmmaFence();
#pragma unroll
      for (int j = 0; j < kDqK / 16; ++j) wgmmaBf16Rs<kHD>(acc, a[j], tileDesc<kHD>(KTs + cur * kHD * kDqK, 0, j));
      wgmmaCommit();
      wgmmaWait<0>();
    }
    __syncthreads();
  }

  const size_t qStride = size_t(H) * D;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = q0 + 64 * wg + 16 * warp + g + 8 * r;
    if (row < T) storeAccRow<kHD>(dq + (size_t(b) * T + row) * qStride + size_t(h) * D, acc, r, D, scale);
  }
#else
  unused(dq, kT, dsT, ldq, T, Tp, H, Hkv, D, scale);
  __trap();
#endif
}

// ---- launchers -------------------------------------------------------------------------------------------

int paddedKeys(int n) { return int(alignUp(size_t(n), 128)); }

// The next `bytes` of a scratch buffer, as T (every carve-out is a multiple of 256 bytes long).
template <typename T>
T* carve(uint8_t*& at, size_t bytes) {
  T* p = reinterpret_cast<T*>(at);
  at += bytes;
  return p;
}

template <int kHD>
void forwardHopper(cudaStream_t stream, float* out, float* lse, const float* q, const float* k, const float* v, int B,
                   int Tq, int Tcap, int H, int Hkv, int D, int pos0, void* scratch) {
  const int Tp = paddedKeys(Tcap);
  uint8_t* at = static_cast<uint8_t*>(scratch);
  auto* qh = carve<__nv_bfloat16>(at, packedBytes(B, Tq, H, kHD));
  auto* kh = carve<__nv_bfloat16>(at, packedBytes(B, Tcap, Hkv, kHD));
  auto* vT = carve<__nv_bfloat16>(at, packedTransposedBytes(B, Tp, Hkv, kHD));
  toHeads<kHD>(stream, qh, q, B, Tq, H, D, 1.0f / std::sqrt(float(D)));
  toHeads<kHD>(stream, kh, k, B, Tcap, Hkv, D, 1.0f);
  // Keys past the last query's position stay zero (a longer cache's later rows may hold anything).
  toHeadsTransposed<kHD>(stream, vT, nullptr, v, B, Tcap, Hkv, D, pos0 + Tq, Tp, 1.0f);
  constexpr size_t smem = fwdSmem(kHD);
  allowSharedMemory(attention_hopper_forward_kernel<kHD>, smem, "attention_hopper_forward_kernel");
  attention_hopper_forward_kernel<kHD><<<dim3(ceilDiv(Tq, kFwdQ), H, B), kHThreadsA, smem, stream>>>(
      out, lse, qh, kh, vT, Tq, Tcap, Tp, H, Hkv, D, pos0);
  checkLaunch("attention_hopper_forward_kernel");
}

template <int kHD>
void backwardHopper(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                    const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H, int Hkv,
                    int D, void* scratch) {
  const float scale = 1.0f / std::sqrt(float(D));
  const int Tp = paddedKeys(T);
  uint8_t* at = static_cast<uint8_t*>(scratch);
  auto* qh = carve<__nv_bfloat16>(at, packedBytes(B, T, H, kHD));
  auto* doh = carve<__nv_bfloat16>(at, packedBytes(B, T, H, kHD));
  auto* kh = carve<__nv_bfloat16>(at, packedBytes(B, T, Hkv, kHD));
  auto* vh = carve<__nv_bfloat16>(at, packedBytes(B, T, Hkv, kHD));
  auto* qT = carve<__nv_bfloat16>(at, packedTransposedBytes(B, Tp, H, kHD));
  auto* doT = carve<__nv_bfloat16>(at, packedTransposedBytes(B, Tp, H, kHD));
  auto* kT = carve<__nv_bfloat16>(at, packedTransposedBytes(B, Tp, Hkv, kHD));
  // With grouped-query attention, each query head's share of dK and dV first.
  float* dkShare = H != Hkv ? carve<float>(at, sharesBytes(B, T, H, Hkv, D) / 2) : dk;
  float* dvShare = H != Hkv ? carve<float>(at, sharesBytes(B, T, H, Hkv, D) / 2) : dv;
  auto* dsT = carve<__nv_bfloat16>(at, dsBytes(B, T, H, true));
  // q, dout and k are needed both ways: one read of each writes both layouts.
  toHeadsTransposed<kHD>(stream, qT, qh, q, B, T, H, D, T, Tp, scale);
  toHeadsTransposed<kHD>(stream, doT, doh, dout, B, T, H, D, T, Tp, 1.0f);
  toHeadsTransposed<kHD>(stream, kT, kh, k, B, T, Hkv, D, T, Tp, 1.0f);
  toHeads<kHD>(stream, vh, v, B, T, Hkv, D, 1.0f);
  constexpr size_t smemKv = bwdSmem(kHD), smemQ = dqSmem(kHD);
  allowSharedMemory(attention_hopper_dkdv_kernel<kHD>, smemKv, "attention_hopper_dkdv_kernel");
  attention_hopper_dkdv_kernel<kHD><<<dim3(ceilDiv(T, kBwdK), H, B), kHThreadsA, smemKv, stream>>>(
      dkShare, dvShare, qh, kh, vh, doh, qT, doT, lse, delta, T, Tp, H, Hkv, D, dsT, dsLd(T));
  checkLaunch("attention_hopper_dkdv_kernel");
  sumGroupShares(stream, dk, dv, dkShare, dvShare, B, T, H, Hkv, D);
  allowSharedMemory(attention_hopper_dq_kernel<kHD>, smemQ, "attention_hopper_dq_kernel");
  attention_hopper_dq_kernel<kHD><<<dim3(ceilDiv(T, kDqQ), H, B), kHThreadsA, smemQ, stream>>>(
      dq, kT, dsT, dsLd(T), T, Tp, H, Hkv, D, scale);
  checkLaunch("attention_hopper_dq_kernel");
}

}  // namespace

bool attentionHopperSupports(int D, int Tq) { return bf16AttentionCovers(D, Tq); }

bool attentionHopperBackwardFits(int B, int T, int H) { return dsBytes(B, T, H, true) > 0; }

size_t attentionHopperForwardScratchBytes(int B, int Tq, int Tcap, int H, int Hkv, int D) {
  const int hd = paddedHeadDim(D);
  return packedBytes(B, Tq, H, hd) + packedBytes(B, Tcap, Hkv, hd) + packedTransposedBytes(B, paddedKeys(Tcap), Hkv, hd);
}

size_t attentionHopperBackwardScratchBytes(int B, int T, int H, int Hkv, int D) {
  const int Tp = paddedKeys(T), hd = paddedHeadDim(D);
  return 2 * packedBytes(B, T, H, hd) + 2 * packedBytes(B, T, Hkv, hd) + 2 * packedTransposedBytes(B, Tp, H, hd) +
         packedTransposedBytes(B, Tp, Hkv, hd) + sharesBytes(B, T, H, Hkv, D) + dsBytes(B, T, H, true);
}

void attentionForwardHopper(cudaStream_t stream, float* out, float* lse, const float* q, const float* k,
                            const float* v, int B, int Tq, int Tcap, int H, int Hkv, int D, int pos0, void* scratch) {
  if (paddedHeadDim(D) == 64)
    forwardHopper<64>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0, scratch);
  else
    forwardHopper<128>(stream, out, lse, q, k, v, B, Tq, Tcap, H, Hkv, D, pos0, scratch);
}

void attentionBackwardHopper(cudaStream_t stream, float* dq, float* dk, float* dv, const float* dout, const float* q,
                             const float* k, const float* v, const float* lse, const float* delta, int B, int T, int H,
                             int Hkv, int D, void* scratch) {
  if (paddedHeadDim(D) == 64)
    backwardHopper<64>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D, scratch);
  else
    backwardHopper<128>(stream, dq, dk, dv, dout, q, k, v, lse, delta, B, T, H, Hkv, D, scratch);
}

}  // namespace pl::cuda::lab
