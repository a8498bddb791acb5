// GEMMs with a side of at most 16 (a LoRA rank r): the packed GEMM pads such a side to its 16-wide
// (or 6-, 12-row) register tile and packs the long operand for a few FMAs per element, so these shapes get
// kernels that read the long operand once, in place, and keep the short side in registers.
#pragma once
#include <cstdint>

#include "../core/thread_pool.h"

namespace pl::cpu {

constexpr int kSkinnyMax = 16;

// Tries C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C (gemm()'s contract) with a skinny kernel: N <= 16
// (h = x A^T, dh = dy B), N <= 16 with op(A) transposed (dB = dy^T h, computed as its transpose), M <= 16 with
// op(B) untransposed (dA = dh^T x); K > 16 in each. Returns false, doing nothing, for other shapes.
// Each output is one sum over K in order: the same result for any thread count.
bool gemmSkinny(ThreadPool& pool, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
                bool transB, float alpha, float beta);

}  // namespace pl::cpu
