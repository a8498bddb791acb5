// Single-precision GEMM for the CPU backend: blocked and packed (BLIS loop order) with an AVX-512
// 12x32, an AVX2 6x16 or a portable 4x16 microkernel, parallel over C tiles on the thread pool.
// Every element of C is summed in the same order whatever the thread count.
#pragma once
#include "../core/thread_pool.h"

namespace pl::cpu {

// C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C; A is [M,K] or [K,M] (transA), B is [K,N] or [N,K] (transB).
void gemm(ThreadPool& pool, float* C, const float* A, const float* B, int M, int N, int K, bool transA, bool transB,
          float alpha, float beta);

}  // namespace pl::cpu
