// GEMMs with one side of at most 16 (a LoRA rank): C[M,N] = alpha * op(A) op(B) + beta * C on CUDA cores in
// fp32, reading the long operand once, coalesced. Tensor-core tiles waste most of their rows on such
// products and need split K to fill the GPU; these kernels are bound by memory instead. Three shapes:
//   rows:    N <= 16, A K-contiguous (x A^T, dy B): a warp per row of C, lanes along K, a shuffle sum at the
//            end (h = x A^T, dh = dy B).
//   columns: N <= 16, A transposed (dy^T h): a lane per row of C (a column of A), 32 a block, K split over
//            the block's 8 warps and summed in warp order (dB = dy^T h).
//   short:   M <= 16, B not transposed (dh^T x): a lane per column of C, the same split (dA = dh^T x).
// Each output has one writer and a fixed summation order: deterministic. In the lab: on an H200 these were 4x
// slower per call than the product's split-K mma.sync (dev/gemm.cu measures both).
#include <string>

#include "../../common.cuh"
#include "lab_kernels.h"

namespace pl::cuda::lab {

namespace {

constexpr int kSkinny = 16;  // the largest short side
constexpr int kWarpsPerBlock = 8;

template <bool kTransB>
__device__ __forceinline__ float bAt(const float* B, int k, int n, int N, int K) {
  return kTransB ? B[size_t(n) * K + k] : B[size_t(k) * N + n];
}

template <bool kTransB>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    gemm_skinny_rows_kernel(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= M) return;
  const float* a = A + size_t(row) * K;
  float acc[kSkinny];
#pragma unroll
  for (int n = 0; n < kSkinny; ++n) acc[n] = 0.0f;
  for (int k = lane; k < K; k += 32) {
    const float x = a[k];
#pragma unroll
    for (int n = 0; n < kSkinny; ++n)
      if (n < N) acc[n] += x * bAt<kTransB>(B, k, n, N, K);
  }
#pragma unroll
  for (int n = 0; n < kSkinny; ++n) {
    if (n >= N) break;
    const float sum = warpSum(acc[n]);
    if (lane == 0) {
      float* c = C + size_t(row) * N + n;
      *c = beta == 0.0f ? alpha * sum : alpha * sum + beta * *c;
    }
  }
}

// The K loop of the columns and short kernels is split over the block's 8 warps (contiguous chunks), each
// lane owning one of the block's 32 outputs; the warps' partial sums meet in shared memory, added in warp
// order.
template <int kLen>
__device__ __forceinline__ void reduceWarps(float (&acc)[kLen], float* red) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < kLen; ++j) red[(warp * kLen + j) * 32 + lane] = acc[j];
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int j = 0; j < kLen; ++j) {
      float sum = 0.0f;
      for (int w = 0; w < kWarpsPerBlock; ++w) sum += red[(w * kLen + j) * 32 + lane];
      acc[j] = sum;
    }
  }
}

__device__ __forceinline__ void warpChunk(int K, int& k0, int& k1) {
  const int warp = threadIdx.x / 32, per = (K + kWarpsPerBlock - 1) / kWarpsPerBlock;
  k0 = min(K, warp * per);
  k1 = min(K, k0 + per);
}

// N <= 16, A stored [K, M]: lane = a row of C (a column of A), 32 rows a block.
template <bool kTransB>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    gemm_skinny_columns_kernel(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) {
  __shared__ float red[kWarpsPerBlock * kSkinny * 32];
  const int row = blockIdx.x * 32 + threadIdx.x % 32;
  int k0, k1;
  warpChunk(K, k0, k1);
  float acc[kSkinny];
#pragma unroll
  for (int n = 0; n < kSkinny; ++n) acc[n] = 0.0f;
  if (row < M) {
    for (int k = k0; k < k1; ++k) {
      const float x = A[size_t(k) * M + row];
#pragma unroll
      for (int n = 0; n < kSkinny; ++n)
        if (n < N) acc[n] += x * bAt<kTransB>(B, k, n, N, K);
    }
  }
  reduceWarps(acc, red);
  if (threadIdx.x >= 32 || row >= M) return;
#pragma unroll
  for (int n = 0; n < kSkinny; ++n) {
    if (n >= N) break;
    float* c = C + size_t(row) * N + n;
    *c = beta == 0.0f ? alpha * acc[n] : alpha * acc[n] + beta * *c;
  }
}

// M <= 16, B stored [K, N]: lane = a column of C, 32 columns a block.
template <bool kTransA>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    gemm_skinny_short_kernel(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta) {
  __shared__ float red[kWarpsPerBlock * kSkinny * 32];
  const int col = blockIdx.x * 32 + threadIdx.x % 32;
  int k0, k1;
  warpChunk(K, k0, k1);
  float acc[kSkinny];
#pragma unroll
  for (int m = 0; m < kSkinny; ++m) acc[m] = 0.0f;
  if (col < N) {
    for (int k = k0; k < k1; ++k) {
      const float x = B[size_t(k) * N + col];
#pragma unroll
      for (int m = 0; m < kSkinny; ++m)
        if (m < M) acc[m] += (kTransA ? A[size_t(k) * M + m] : A[size_t(m) * K + k]) * x;
    }
  }
  reduceWarps(acc, red);
  if (threadIdx.x >= 32 || col >= N) return;
#pragma unroll
  for (int m = 0; m < kSkinny; ++m) {
    if (m >= M) break;
    float* c = C + size_t(m) * N + col;
    *c = beta == 0.0f ? alpha * acc[m] : alpha * acc[m] + beta * *c;
  }
}

}  // namespace

bool gemmSkinnyApplies(int M, int N, int K, bool transA, bool transB) {
  if (M <= 0 || N <= 0 || K < 256) return false;
  if (N <= kSkinny && M > kSkinny) return true;   // rows (A K-contiguous) or columns (A transposed)
  return M <= kSkinny && N > kSkinny && !transB;  // short
}

void gemmSkinny(cudaStream_t stream, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
                bool transB, float alpha, float beta) {
  if (!gemmSkinnyApplies(M, N, K, transA, transB))
    throw Error("gemmSkinny: M " + std::to_string(M) + ", N " + std::to_string(N) + ", K " + std::to_string(K) +
                " is not a skinny product");
  if (N <= kSkinny && M > kSkinny) {
    if (!transA) {
      const unsigned blocks = ceilDiv(M, kWarpsPerBlock);
      if (transB)
        gemm_skinny_rows_kernel<true><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(C, A, B, M, N, K, alpha, beta);
      else
        gemm_skinny_rows_kernel<false><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(C, A, B, M, N, K, alpha, beta);
      checkLaunch("gemm_skinny_rows_kernel");
    } else {
      const unsigned blocks = ceilDiv(M, 32);
      if (transB)
        gemm_skinny_columns_kernel<true><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(C, A, B, M, N, K, alpha, beta);
      else
        gemm_skinny_columns_kernel<false><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(C, A, B, M, N, K, alpha, beta);
      checkLaunch("gemm_skinny_columns_kernel");
    }
    return;
  }
  const unsigned blocks = ceilDiv(N, 32);
  if (transA)
    gemm_skinny_short_kernel<true><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(C, A, B, M, N, K, alpha, beta);
  else
    gemm_skinny_short_kernel<false><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(C, A, B, M, N, K, alpha, beta);
  checkLaunch("gemm_skinny_short_kernel");
}

}  // namespace pl::cuda::lab
