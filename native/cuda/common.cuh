// Shared device helpers for the CUDA kernels: launch checks that throw pl::Error, warp and block
// reductions, and the counter-based RNG of native/core/rng.h as a __host__ __device__ copy.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "../core/error.h"

namespace pl::cuda {

// Throws pl::Error naming the kernel when its launch failed (bad configuration, no image for this
// GPU, a sticky error from an earlier kernel). Asynchronous faults surface at the next synchronize.
inline void checkLaunch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw Error(std::string("CUDA kernel ") + kernel + " failed: " + cudaGetErrorName(err) + ": " +
                cudaGetErrorString(err));
}

// Throws pl::Error for a failed runtime call; `what` names the call.
inline void checkCuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so the engine stays usable
    throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
  }
}

// Opts a kernel into more than 48 KiB of dynamic shared memory (a no-op below that).
template <typename Kernel>
inline void allowSharedMemory(Kernel kernel, size_t bytes, const char* name) {
  if (bytes > 48 * 1024) {
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw Error(std::string("CUDA kernel ") + name + ": cannot reserve " + std::to_string(bytes) +
                  " bytes of shared memory: " + cudaGetErrorString(err));
    }
  }
}

inline unsigned ceilDiv(size_t a, size_t b) { return static_cast<unsigned>((a + b - 1) / b); }

// n rounded up to a multiple of `to`: scratch carve-outs start on 256-byte boundaries, bf16 rows on 8 elements.
inline size_t alignUp(size_t n, size_t to = 256) { return (n + to - 1) / to * to; }

// Whether every pointer is 16-byte aligned (float4 / uint4 access, cp.async's 16-byte copies, TMA).
inline bool aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// The bf16 tensor-core GEMMs' operand contract (gemmBf16, gemmBf16Sm80): K > 0, rows a multiple of 8
// elements apart and at least K, both operands 16-byte aligned. Throws pl::Error naming `who` otherwise.
inline void checkBf16Operands(const char* who, const void* A, const void* B, int K, int lda, int ldb) {
  if (K <= 0 || lda < K || ldb < K || lda % 8 || ldb % 8)
    throw Error(std::string(who) + ": K " + std::to_string(K) + ", lda " + std::to_string(lda) + ", ldb " +
                std::to_string(ldb) + ": K must be > 0 and the leading dimensions multiples of 8 and >= K");
  if (!aligned16({A, B})) throw Error(std::string(who) + ": A and B must be 16-byte aligned");
}

// Blocks for a grid-stride elementwise loop over n items: enough to fill any GPU, never more than needed.
inline unsigned elementwiseBlocks(size_t n, int threads) {
  const size_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65536 ? (blocks == 0 ? 1 : blocks) : 65536);
}

// ---- the counter-based RNG, bit-identical to native/core/rng.h ------------------------------------

__host__ __device__ __forceinline__ uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) with 24 random bits; the same value as pl::uniform01(seed, index).
__host__ __device__ __forceinline__ float uniform01(uint64_t seed, uint64_t index) {
  return static_cast<float>(splitmix64(seed ^ splitmix64(index)) >> 40) * (1.0f / 16777216.0f);
}

// ---- reductions ---------------------------------------------------------------------------------

constexpr unsigned kFullMask = 0xffffffffu;

template <typename T>
__device__ __forceinline__ T warpSum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Sum over a block of kThreads (a multiple of 32, at most 1024) in a fixed tree: deterministic.
// `scratch` holds kThreads / 32 values; every thread gets the total. Ends with the block in sync.
template <int kThreads, typename T>
__device__ __forceinline__ T blockSum(T v, T* scratch) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warpSum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = lane < kWarps ? scratch[lane] : T(0);
  total = warpSum(total);
  __syncthreads();  // scratch may be reused right after
  return total;
}

template <int kThreads>
__device__ __forceinline__ float blockMax(float v, float* scratch) {
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warpMax(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = lane < kWarps ? scratch[lane] : -INFINITY;
  total = warpMax(total);
  __syncthreads();
  return total;
}

}  // namespace pl::cuda
