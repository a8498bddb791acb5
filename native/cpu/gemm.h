// Single-precision GEMM for the CPU backend: blocked and packed (BLIS loop order) with an AVX-512
// 12x32, an AVX2 6x16 or a portable 4x16 microkernel, parallel over C tiles on the thread pool.
// Every element of C is summed in the same order whatever the thread count.
// Products of few rows against a weight stored [N,K] (decoding: y = x W^T) skip the packing and read each
// weight row once (gemv), for fp32 and for bf16 weights; products with a side of at most 16 (LoRA's rank)
// take the skinny kernels of gemm_skinny.h.
#pragma once
#include <cstdint>

#include "../core/thread_pool.h"

namespace pl::cpu {

// C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C; A is [M,K] or [K,M] (transA), B is [K,N] or [N,K] (transB).
void gemm(ThreadPool& pool, float* C, const float* A, const float* B, int M, int N, int K, bool transA, bool transB,
          float alpha, float beta);

// C[M,N] = alpha * A[M,K] W^T + beta * C for W [N,K] and M <= kGemvMaxRows: each output a 16-lane dot in a
// fixed order, a task per 16 rows of W (the same result for any thread count).
constexpr int kGemvMaxRows = 16;
void gemv(ThreadPool& pool, float* C, const float* A, const float* W, int M, int N, int K, float alpha, float beta);
void gemv(ThreadPool& pool, float* C, const float* A, const uint16_t* W, int M, int N, int K, float alpha, float beta);

}  // namespace pl::cpu
