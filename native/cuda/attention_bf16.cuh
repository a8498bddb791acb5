// What the bf16 attention kernels (attention_flash.cu, the lab's dev/kernels/attention_hopper.cu) share around their kernels:
//  * the head dims they cover and how they are padded;
//  * operand packing: the backend's fp32 [B,T,heads,D] tensors become bf16 per-head blocks, times a factor
//    (the softmax scale for q), zero-padded to the kernel's head dim kD:
//      toHeads:           [B, heads, T, kD]   (rows of one head contiguous, a row's kD values contiguous)
//      toHeadsTransposed: [B, heads, kD, Tp]  (a head's transpose; columns t >= n, up to Tp, are zeros),
//                         optionally the toHeads layout from the same read;
//  * the kept dS^T ([B, H, T keys, dsLd(T) queries] bf16, the dQ pass's input) and its memory cap;
//  * with grouped-query attention, the ordered sum of each query head's share of dK and dV.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "common.cuh"

namespace pl::cuda {

// What both kernel files take: head dims 33..128, padded to kD = 64 or 128, and 8 or more query rows.
constexpr int paddedHeadDim(int D) { return D <= 64 ? 64 : 128; }
inline bool bf16AttentionCovers(int D, int Tq) { return D > 32 && D <= 128 && Tq >= 8; }

template <int kD>
__global__ void to_heads_kernel(__nv_bfloat16* out, const float* x, int B, int T, int heads, int D, float mul) {
  const size_t total = size_t(B) * heads * T * (kD / 8);
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const int c = int(i % (kD / 8)) * 8;
    const size_t row = i / (kD / 8);  // (b * heads + h) * T + t
    const int t = int(row % T);
    const size_t bh = row / T;
    const int h = int(bh % heads), b = int(bh / heads);
    const float* src = x + ((size_t(b) * T + t) * heads + h) * D;
    __align__(16) __nv_bfloat16 v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = __float2bfloat16_rn(c + e < D ? src[c + e] * mul : 0.0f);
    *reinterpret_cast<uint4*>(out + row * kD + c) = *reinterpret_cast<const uint4*>(v);
  }
}

template <int kD>
void toHeads(cudaStream_t stream, __nv_bfloat16* out, const float* x, int B, int T, int heads, int D, float mul) {
  const size_t work = size_t(B) * heads * T * (kD / 8);
  to_heads_kernel<kD><<<elementwiseBlocks(work, 256), 256, 0, stream>>>(out, x, B, T, heads, D, mul);
  checkLaunch("to_heads_kernel");
}

inline size_t packedBytes(int B, int T, int heads, int kD) { return alignUp(size_t(B) * heads * T * kD * 2); }

// The transposed packing goes through a 64 (t) x kD tile in shared memory: rows of x are read along d,
// rows of the output written along t, both coalesced. Grid (Tp / 64, heads, B), 256 threads. With `plain`
// set, the same read also writes toHeads's layout ([B, heads, T, kD], rows t < T; call with n = T), so an
// operand needed both ways is read from fp32 once.
constexpr int kPackT = 64;
constexpr int kPackThreads = 256;

template <int kD>
__global__ void __launch_bounds__(kPackThreads)
    to_heads_t_kernel(__nv_bfloat16* out, __nv_bfloat16* plain, const float* x, int T, int heads, int D, int n,
                      int Tp, float mul) {
  constexpr int kPitch = kPackT + 2;  // odd word pitch: the column reads below spread over the banks
  __shared__ __nv_bfloat16 tile[kD * kPitch];
  const int t0 = blockIdx.x * kPackT, h = blockIdx.y, b = blockIdx.z;
  for (int i = threadIdx.x; i < kPackT * kD; i += kPackThreads) {
    const int tt = i / kD, d = i % kD, t = t0 + tt;
    const __nv_bfloat16 v =
        __float2bfloat16_rn(t < n && d < D ? x[((size_t(b) * T + t) * heads + h) * D + d] * mul : 0.0f);
    tile[d * kPitch + tt] = v;
    if (plain && t < T) plain[((size_t(b) * heads + h) * T + t) * kD + d] = v;
  }
  __syncthreads();
  __nv_bfloat16* head = out + (size_t(b) * heads + h) * kD * size_t(Tp);
  for (int i = threadIdx.x; i < kD * (kPackT / 8); i += kPackThreads) {
    const int d = i / (kPackT / 8), c = (i % (kPackT / 8)) * 8;
    __align__(16) __nv_bfloat16 v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = tile[d * kPitch + c + e];
    *reinterpret_cast<uint4*>(head + size_t(d) * Tp + t0 + c) = *reinterpret_cast<const uint4*>(v);
  }
}

// x: [B, T, heads, D] fp32; out: [B, heads, kD, Tp] with Tp a multiple of 64; columns t >= n are zeros.
// plain (or null): toHeads's [B, heads, T, kD] as well (n must then be T).
template <int kD>
void toHeadsTransposed(cudaStream_t stream, __nv_bfloat16* out, __nv_bfloat16* plain, const float* x, int B, int T,
                       int heads, int D, int n, int Tp, float mul) {
  to_heads_t_kernel<kD><<<dim3(Tp / kPackT, heads, B), kPackThreads, 0, stream>>>(out, plain, x, T, heads, D, n, Tp,
                                                                                   mul);
  checkLaunch("to_heads_t_kernel");
}

inline size_t packedTransposedBytes(int B, int Tp, int heads, int kD) { return alignUp(size_t(B) * heads * kD * Tp * 2); }

// ---- the kept dS^T -------------------------------------------------------------------------------------

// dS^T's bytes when kept (the dQ pass then reads it instead of recomputing S and dP), or 0 past the cap.
constexpr size_t kMaxDsBytes = size_t(1) << 30;
inline int dsLd(int T) { return int(alignUp(T, 8)); }
inline size_t dsBytes(int B, int T, int H, bool keepDs) {
  const size_t bytes = alignUp(size_t(B) * H * T * dsLd(T) * 2);
  return keepDs && bytes <= kMaxDsBytes ? bytes : 0;
}

// ---- grouped-query attention: the group's shares of dK and dV -------------------------------------------

// The shares' bytes (two fp32 [B,T,H,D] buffers), 0 without grouping (the kernels write dK, dV directly).
inline size_t sharesBytes(int B, int T, int H, int Hkv, int D) {
  return H == Hkv ? 0 : 2 * alignUp(size_t(B) * T * H * D * sizeof(float));
}

// dk, dv [B,T,Hkv,D]: the sum over each kv head's group of the shares [B,T,H,D], in head order (so the
// result is deterministic); a no-op without grouping. In attention_flash.cu.
void sumGroupShares(cudaStream_t stream, float* dk, float* dv, const float* dkShare, const float* dvShare, int B,
                    int T, int H, int Hkv, int D);

}  // namespace pl::cuda
