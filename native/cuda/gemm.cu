// GEMM: C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, row-major fp32 in memory (beta = 0 never
// reads C). A is [M,K] or, with transA, [K,M]; B is [K,N] or, with transB, [N,K].
//
// v1 gemm_simt_kernel: fp32 on CUDA cores. 64x64 C tile a block of 16x16 threads, each thread 4x4
//    outputs (strided by 16), K in steps of 16 through shared memory. The reference for v2 and the path
//    for tiny products, where a tensor-core tile would be mostly padding.
// v2 gemm_mma_kernel: bf16 tensor cores (mma.sync.m16n8k16, fp32 accumulation). A BM x BN tile of C a
//    block, K in steps of 32. Each step's op(A) and op(B) tiles are read from global memory as fp32 (the
//    contiguous dimension across threads, so every transpose case is coalesced), rounded to bf16 (RN),
//    and stored k-contiguous as As[m][k], Bs[n][k] with rows padded to 40 bf16 so the fragment reads are
//    bank-conflict free. Two shared buffers with a register prefetch: the next tile's global loads are in
//    flight while the current tile's mma run; one barrier a step. Edges are predicated (zero-filled
//    loads, guarded stores), so any M, N, K works. Tiles: 128x128 (8 warps of 64x32) when that fills the
//    GPU, else 64x64 (4 warps of 32x32); both sum K in the same order, so the result never depends on
//    the tile choice. Error vs fp32: inputs rounded to bf16 (8-bit mantissa): |err| ~ 2^-8 * sqrt(K) *
//    rms(a) * rms(b) per element; expect ~1e-2 relative on random data.
#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "kernels.h"
#include "mma.cuh"

namespace pl::cuda {

namespace {

// ---- v1: SIMT fp32 ------------------------------------------------------------------------------

constexpr int kSimtTile = 64, kSimtK = 16;

__global__ void __launch_bounds__(256)
    gemm_simt_kernel(float* C, const float* A, const float* B, int M, int N, int K, bool transA, bool transB,
                     float alpha, float beta) {
  __shared__ float As[kSimtK][kSimtTile + 1];  // As[k][m]
  __shared__ float Bs[kSimtK][kSimtTile + 1];  // Bs[k][n]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int m0 = blockIdx.y * kSimtTile, n0 = blockIdx.x * kSimtTile;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += kSimtK) {
    for (int i = threadIdx.x; i < kSimtK * kSimtTile; i += 256) {
      // The contiguous global dimension varies fastest across threads.
      int kk = transA ? i / kSimtTile : i % kSimtK;
      const int mm = transA ? i % kSimtTile : i / kSimtK;
      int m = m0 + mm, k = k0 + kk;
      As[kk][mm] = (m < M && k < K) ? (transA ? A[size_t(k) * M + m] : A[size_t(m) * K + k]) : 0.0f;
      kk = transB ? i % kSimtK : i / kSimtTile;
      const int nn = transB ? i / kSimtK : i % kSimtTile;
      const int n = n0 + nn;
      k = k0 + kk;
      Bs[kk][nn] = (n < N && k < K) ? (transB ? B[size_t(n) * K + k] : B[size_t(k) * N + n]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kSimtK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = n0 + tx + 16 * j;
      if (n >= N) continue;
      float* c = C + size_t(m) * N + n;
      const float val = alpha * acc[i][j];
      *c = beta == 0.0f ? val : val + beta * *c;
    }
  }
}

// ---- v2: bf16 tensor cores ----------------------------------------------------------------------

constexpr int kBK = 32;        // K per step
constexpr int kLds = kBK + 8;  // shared row length in bf16: 20 words, conflict-free fragment reads

// Moves a [kRows x kBK] tile of an operand X (element (r, k) at X[r*ld + k] when kKContig, else at
// X[k*ld + r]) from global fp32 into registers as (k, k+1) pairs, then into shared bf16 S[r][k].
template <int kRows, int kThreads, bool kKContig>
struct TileLoader {
  static constexpr int kPairs = kRows * (kBK / 2) / kThreads;
  static_assert(kPairs * kThreads == kRows * (kBK / 2), "tile must split evenly over the threads");

  __device__ __forceinline__ static void coords(int p, int& r, int& kp) {
    const int idx = threadIdx.x + p * kThreads;
    if (kKContig) {
      r = idx / (kBK / 2);
      kp = idx % (kBK / 2);
    } else {
      r = idx % kRows;
      kp = idx / kRows;
    }
  }

  __device__ __forceinline__ static void load(float2 (&reg)[kPairs], const float* X, int ld, int r0, int rowsLimit,
                                              int k0, int K) {
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      int r, kp;
      coords(p, r, kp);
      const int row = r0 + r, k = k0 + 2 * kp;
      float x0 = 0.0f, x1 = 0.0f;
      if (row < rowsLimit) {
        if (kKContig) {
          const float* src = X + size_t(row) * ld + k;
          if (k < K) x0 = src[0];
          if (k + 1 < K) x1 = src[1];
        } else {
          if (k < K) x0 = X[size_t(k) * ld + row];
          if (k + 1 < K) x1 = X[size_t(k + 1) * ld + row];
        }
      }
      reg[p] = make_float2(x0, x1);
    }
  }

  __device__ __forceinline__ static void store(__nv_bfloat16* S, const float2 (&reg)[kPairs]) {
#pragma unroll
    for (int p = 0; p < kPairs; ++p) {
      int r, kp;
      coords(p, r, kp);
      *reinterpret_cast<__nv_bfloat162*>(S + r * kLds + 2 * kp) = __float22bfloat162_rn(reg[p]);
    }
  }
};

template <int kBM, int kBN, int kWM, int kWN, bool kTransA, bool kTransB>
__global__ void __launch_bounds__((kBM / kWM) * (kBN / kWN) * 32)
    gemm_mma_kernel(float* C, const float* A, const float* B, int M, int N, int K, float alpha, float beta,
                    int kChunk) {
  constexpr int kWarpsN = kBN / kWN;
  constexpr int kThreads = (kBM / kWM) * kWarpsN * 32;
  constexpr int kMT = kWM / 16, kNT = kWN / 8;  // mma tiles a warp
  using LoadA = TileLoader<kBM, kThreads, !kTransA>;
  using LoadB = TileLoader<kBN, kThreads, kTransB>;
  __shared__ __align__(16) __nv_bfloat16 As[2][kBM * kLds];
  __shared__ __align__(16) __nv_bfloat16 Bs[2][kBN * kLds];

  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  // Split K: block z sums k in [kBegin, kEnd) into its own M x N slice of C (a partial sum buffer).
  const int kBegin = blockIdx.z * kChunk, kEnd = min(K, kBegin + kChunk);
  C += size_t(blockIdx.z) * M * N;
  const int ldA = kTransA ? M : K, ldB = kTransB ? K : N;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;  // mma fragment coordinates
  const int wm = warp / kWarpsN, wn = warp % kWarpsN;

  float acc[kMT][kNT][4];
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

  const int steps = kEnd > kBegin ? (kEnd - kBegin + kBK - 1) / kBK : 0;
  float2 ra[LoadA::kPairs], rb[LoadB::kPairs];
  if (steps > 0) {
    LoadA::load(ra, A, ldA, m0, M, kBegin, kEnd);
    LoadB::load(rb, B, ldB, n0, N, kBegin, kEnd);
    LoadA::store(As[0], ra);
    LoadB::store(Bs[0], rb);
  }
  __syncthreads();

  for (int s = 0; s < steps; ++s) {
    const int cur = s & 1;
    const bool more = s + 1 < steps;
    if (more) {  // next tile's global loads overlap this tile's math
      LoadA::load(ra, A, ldA, m0, M, kBegin + (s + 1) * kBK, kEnd);
      LoadB::load(rb, B, ldB, n0, N, kBegin + (s + 1) * kBK, kEnd);
    }
    const __nv_bfloat16* as = As[cur];
    const __nv_bfloat16* bs = Bs[cur];
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t a[kMT][4], b[kNT][2];
#pragma unroll
      for (int i = 0; i < kMT; ++i) {
        const __nv_bfloat16* p = as + (wm * kWM + i * 16 + g) * kLds + kk + 2 * t;
        a[i][0] = lds32(p);                 // row g,   k 2t..2t+1
        a[i][1] = lds32(p + 8 * kLds);      // row g+8, k 2t..2t+1
        a[i][2] = lds32(p + 8);             // row g,   k 2t+8..2t+9
        a[i][3] = lds32(p + 8 * kLds + 8);  // row g+8, k 2t+8..2t+9
      }
#pragma unroll
      for (int j = 0; j < kNT; ++j) {
        const __nv_bfloat16* p = bs + (wn * kWN + j * 8 + g) * kLds + kk + 2 * t;
        b[j][0] = lds32(p);      // col g, k 2t..2t+1
        b[j][1] = lds32(p + 8);  // col g, k 2t+8..2t+9
      }
#pragma unroll
      for (int i = 0; i < kMT; ++i)
#pragma unroll
        for (int j = 0; j < kNT; ++j) mma16816(acc[i][j], a[i], b[j]);
    }
    if (more) {
      LoadA::store(As[cur ^ 1], ra);
      LoadB::store(Bs[cur ^ 1], rb);
    }
    __syncthreads();
  }

  // Accumulator (i, j, e): row g + 8*(e/2), column 2t + (e%2) of the warp's 16x8 tile (i, j).
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int m = m0 + wm * kWM + i * 16 + g + 8 * (e / 2);
        const int n = n0 + wn * kWN + j * 8 + 2 * t + (e % 2);
        if (m < M && n < N) {
          float* c = C + size_t(m) * N + n;
          const float val = alpha * acc[i][j][e];
          *c = beta == 0.0f ? val : val + beta * *c;
        }
      }
}

// C = alpha * sum_z P[z] + beta * C over `splits` partial products, in a fixed order (deterministic).
__global__ void splitk_reduce_kernel(float* C, const float* P, size_t n, int splits, float alpha, float beta) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    float sum = 0.0f;
    for (int z = 0; z < splits; ++z) sum += P[size_t(z) * n + i];
    C[i] = beta == 0.0f ? alpha * sum : alpha * sum + beta * C[i];
  }
}

// kChunk < K with splits > 1: grid.z = splits blocks along K, each writing its slice of C (the caller's
// partial buffer, alpha 1, beta 0).
template <int kBM, int kBN, int kWM, int kWN>
void launchMma(cudaStream_t stream, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
               bool transB, float alpha, float beta, int splits = 1, int kChunk = 0) {
  constexpr int kThreads = (kBM / kWM) * (kBN / kWN) * 32;
  if (splits <= 1) kChunk = K;
  const dim3 grid(ceilDiv(N, kBN), ceilDiv(M, kBM), splits);
  if (grid.y > 65535) throw Error("gemm: M = " + std::to_string(M) + " is too large for one launch");
  if (!transA && !transB)
    gemm_mma_kernel<kBM, kBN, kWM, kWN, false, false><<<grid, kThreads, 0, stream>>>(C, A, B, M, N, K, alpha, beta,
                                                                                     kChunk);
  else if (!transA && transB)
    gemm_mma_kernel<kBM, kBN, kWM, kWN, false, true><<<grid, kThreads, 0, stream>>>(C, A, B, M, N, K, alpha, beta,
                                                                                     kChunk);
  else if (transA && !transB)
    gemm_mma_kernel<kBM, kBN, kWM, kWN, true, false><<<grid, kThreads, 0, stream>>>(C, A, B, M, N, K, alpha, beta,
                                                                                     kChunk);
  else
    gemm_mma_kernel<kBM, kBN, kWM, kWN, true, true><<<grid, kThreads, 0, stream>>>(C, A, B, M, N, K, alpha, beta,
                                                                                     kChunk);
  checkLaunch("gemm_mma_kernel");
}

}  // namespace

int gemmSplits(int M, int N, int K, GemmPath path, int multiprocessors) {
  const double work = double(M) * N * K;
  if (path == GemmPath::Simt || (path == GemmPath::Auto && work < double(1 << 18))) return 1;
  if (double(ceilDiv(M, 128)) * ceilDiv(N, 128) >= multiprocessors) return 1;  // big tiles fill the GPU
  // Skinny products (a LoRA rank on one side) give a few 64x64 tiles over a long K: split K until the
  // tiles fill the multiprocessors twice over, each split at least 256 deep.
  const int tiles = int(ceilDiv(M, 64) * ceilDiv(N, 64));
  if (tiles * 2 >= multiprocessors || K < 512) return 1;
  int splits = int(ceilDiv(2 * multiprocessors, tiles));
  splits = std::min(splits, std::min(32, K / 256));
  return std::max(splits, 1);
}

size_t gemmScratchBytes(int M, int N, int K, GemmPath path, int multiprocessors) {
  if (M <= 0 || N <= 0 || K <= 0) return 0;
  const int splits = gemmSplits(M, N, K, path, multiprocessors);
  return splits > 1 ? sizeof(float) * size_t(splits) * M * N : 0;
}

void gemm(cudaStream_t stream, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
          bool transB, float alpha, float beta, GemmPath path, int multiprocessors, float* partial) {
  if (M <= 0 || N <= 0) return;
  if (K < 0) throw Error("gemm: K must be >= 0, got " + std::to_string(K));
  const double work = double(M) * N * K;
  const bool simt = path == GemmPath::Simt || (path == GemmPath::Auto && work < double(1 << 18));
  if (simt) {
    const dim3 grid(ceilDiv(N, kSimtTile), ceilDiv(M, kSimtTile));
    if (grid.y > 65535) throw Error("gemm: M = " + std::to_string(M) + " is too large for one launch");
    gemm_simt_kernel<<<grid, 256, 0, stream>>>(C, A, B, M, N, K, transA, transB, alpha, beta);
    checkLaunch("gemm_simt_kernel");
    return;
  }
  const double bigTiles = double(ceilDiv(M, 128)) * ceilDiv(N, 128);
  const int splits = K > 0 ? gemmSplits(M, N, K, path, multiprocessors) : 1;
  if (bigTiles >= multiprocessors) {
    launchMma<128, 128, 64, 32>(stream, C, A, B, M, N, K, transA, transB, alpha, beta);
  } else if (splits > 1 && partial) {
    const int kChunk = int(ceilDiv(ceilDiv(K, splits), kBK)) * kBK;
    const int used = int(ceilDiv(K, kChunk));  // every split non-empty
    launchMma<64, 64, 32, 32>(stream, partial, A, B, M, N, K, transA, transB, 1.0f, 0.0f, used, kChunk);
    const size_t n = size_t(M) * N;
    splitk_reduce_kernel<<<elementwiseBlocks(n, 256), 256, 0, stream>>>(C, partial, n, used, alpha, beta);
    checkLaunch("splitk_reduce_kernel");
  } else {
    launchMma<64, 64, 32, 32>(stream, C, A, B, M, N, K, transA, transB, alpha, beta);
  }
}

}  // namespace pl::cuda
