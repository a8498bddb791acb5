// The skinny GEMM kernels of gemm_skinny.h on 8-wide vectors (GCC vector types in each SIMD clone):
// narrow N keeps MR rows x 8 or 16 columns in registers over all of K; short M keeps 8 rows x 8 columns.
// Work is split over row or column blocks on the thread pool. (A short K stays with the packed GEMM: its
// 6x16 tile reuses each load more than a row-at-a-time pass over C does.)
#include "gemm_skinny.h"

#include <algorithm>
#include <cstring>

#include "simd.h"
#include "vec.h"

// V8 values live only inside always-inlined helpers and the per-ISA clones: no vector crosses an ABI boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace pl::cpu {

namespace {

// Element (r, p) of a row-major matrix with row stride ld, or of the transpose of one (colMajor).
template <bool colMajor>
PL_INLINE float at(const float* A, int64_t ld, int r, int p) {
  return colMajor ? A[static_cast<int64_t>(p) * ld + r] : A[static_cast<int64_t>(r) * ld + p];
}

// Stores alpha * acc (+ beta * C) into n <= 8 columns of a row of C whose columns step by cs.
PL_INLINE void storeRow(float* c, int64_t cs, int n, V8 acc, float alpha, float beta) {
  alignas(32) float v[8];
  store8(v, acc);
  for (int j = 0; j < n; ++j) {
    float& dst = c[j * cs];
    dst = beta == 0.0f ? alpha * v[j] : alpha * v[j] + beta * dst;
  }
}

// ---- N <= 16: rows [r0, r0 + MR) of C = op(A) Bp, Bp [K][8 * NV] packed, zero past N ------------------
template <int MR, int NV, bool colA>
PL_INLINE void narrowRows(float* C, int64_t ldc, const float* A, int64_t lda, const float* bp, int r0, int N, int K,
                          float alpha, float beta) {
  V8 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V8{};
  for (int p = 0; p < K; ++p) {
    V8 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = load8(bp + p * 8 * NV + 8 * v);
    for (int r = 0; r < MR; ++r) {
      const float a = at<colA>(A, lda, r0 + r, p);
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      storeRow(C + static_cast<int64_t>(r0 + r) * ldc + 8 * v, 1, std::min(8, N - 8 * v), acc[r][v], alpha, beta);
}

template <int NV, bool colA>
PL_INLINE void narrowBlockT(float* C, const float* A, int64_t lda, const float* bp, int r0, int r1, int N, int K,
                            float alpha, float beta) {
  constexpr int MR = NV == 1 ? 8 : 6;
  int r = r0;
  for (; r + MR <= r1; r += MR) narrowRows<MR, NV, colA>(C, N, A, lda, bp, r, N, K, alpha, beta);
  for (; r + 2 <= r1; r += 2) narrowRows<2, NV, colA>(C, N, A, lda, bp, r, N, K, alpha, beta);
  for (; r < r1; ++r) narrowRows<1, NV, colA>(C, N, A, lda, bp, r, N, K, alpha, beta);
}

PL_INLINE void narrowBlockBody(float* C, const float* A, int64_t lda, bool colA, const float* bp, int r0, int r1,
                               int N, int K, float alpha, float beta) {
  if (N <= 8) {
    if (colA) narrowBlockT<1, true>(C, A, lda, bp, r0, r1, N, K, alpha, beta);
    else narrowBlockT<1, false>(C, A, lda, bp, r0, r1, N, K, alpha, beta);
  } else {
    if (colA) narrowBlockT<2, true>(C, A, lda, bp, r0, r1, N, K, alpha, beta);
    else narrowBlockT<2, false>(C, A, lda, bp, r0, r1, N, K, alpha, beta);
  }
}
PL_SIMD_CLONES(void, narrowBlock,
               (float* C, const float* A, int64_t lda, bool colA, const float* bp, int r0, int r1, int N, int K,
                float alpha, float beta),
               (C, A, lda, colA, bp, r0, r1, N, K, alpha, beta))

// ---- M <= 16: columns [c0, c0 + 8 * NV) of C = op(A) B, B row-major [K][ldb]; C(r, c) at C[r*rs + c*cs] ----
template <int MR, int NV, bool colA>
PL_INLINE void shortTile(float* C, int64_t rs, int64_t cs, const float* A, int64_t lda, const float* B, int64_t ldb,
                         int r0, int c0, int n, int K, float alpha, float beta) {
  V8 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = V8{};
  for (int p = 0; p < K; ++p) {
    V8 b[NV];
    const float* bRow = B + static_cast<int64_t>(p) * ldb + c0;
    for (int v = 0; v < NV; ++v) b[v] = load8(bRow + 8 * v);
    for (int r = 0; r < MR; ++r) {
      const float a = at<colA>(A, lda, r0 + r, p);
      for (int v = 0; v < NV; ++v) acc[r][v] += a * b[v];
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v)
      storeRow(C + (r0 + r) * rs + (c0 + 8 * v) * cs, cs, std::min(8, n - 8 * v), acc[r][v], alpha, beta);
}

template <bool colA>
PL_INLINE void shortColsT(float* C, int64_t rs, int64_t cs, const float* A, int64_t lda, const float* B, int64_t ldb,
                          int M, int c0, int n, int K, float alpha, float beta) {
  int r = 0;
  for (; r + 8 <= M; r += 8) shortTile<8, 1, colA>(C, rs, cs, A, lda, B, ldb, r, c0, n, K, alpha, beta);
  for (; r + 4 <= M; r += 4) shortTile<4, 1, colA>(C, rs, cs, A, lda, B, ldb, r, c0, n, K, alpha, beta);
  for (; r + 2 <= M; r += 2) shortTile<2, 1, colA>(C, rs, cs, A, lda, B, ldb, r, c0, n, K, alpha, beta);
  for (; r < M; ++r) shortTile<1, 1, colA>(C, rs, cs, A, lda, B, ldb, r, c0, n, K, alpha, beta);
}

// Columns [c0, c1) 8 at a time, all rows of a chunk together (B is read once); the last < 8 columns go through
// a zero-padded copy of B's tail.
PL_INLINE void shortBlockBody(float* C, int64_t rs, int64_t cs, const float* A, int64_t lda, bool colA,
                              const float* B, int64_t ldb, int M, int c0, int c1, int K, float alpha, float beta,
                              float* tail) {
  int c = c0;
  for (; c + 8 <= c1; c += 8) {
    if (colA) shortColsT<true>(C, rs, cs, A, lda, B, ldb, M, c, 8, K, alpha, beta);
    else shortColsT<false>(C, rs, cs, A, lda, B, ldb, M, c, 8, K, alpha, beta);
  }
  if (c < c1) {
    const int n = c1 - c;
    for (int p = 0; p < K; ++p) {
      for (int j = 0; j < n; ++j) tail[p * 8 + j] = B[static_cast<int64_t>(p) * ldb + c + j];
      for (int j = n; j < 8; ++j) tail[p * 8 + j] = 0.0f;
    }
    float* cc = C + c * cs;
    if (colA) shortColsT<true>(cc, rs, cs, A, lda, tail, 8, M, 0, n, K, alpha, beta);
    else shortColsT<false>(cc, rs, cs, A, lda, tail, 8, M, 0, n, K, alpha, beta);
  }
}
PL_SIMD_CLONES(void, shortBlock,
               (float* C, int64_t rs, int64_t cs, const float* A, int64_t lda, bool colA, const float* B,
                int64_t ldb, int M, int c0, int c1, int K, float alpha, float beta, float* tail),
               (C, rs, cs, A, lda, colA, B, ldb, M, c0, c1, K, alpha, beta, tail))

thread_local AlignedBuffer tlsPacked;

// Runs fn over [0, tasks) on the pool, or inline when the product is too small to share.
void split(ThreadPool& pool, double flops, int64_t tasks, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (pool.size() > 1 && flops >= 2.0 * 48 * 48 * 48 && tasks > 1) pool.parallelFor(tasks, fn);
  else fn(0, tasks, 0);
}

}  // namespace

bool gemmSkinny(ThreadPool& pool, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
                bool transB, float alpha, float beta) {
  const double flops = 2.0 * M * N * K;
  // op(A)(r, p) = A[r*K + p], or A[p*M + r] when transA; op(B)(p, c) = B[p*N + c], or B[c*K + p] when transB.
  if (N <= kSkinnyMax && !transA && M >= 32 && K > kSkinnyMax) {
    const int np = N <= 8 ? 8 : 16;
    float* bp = tlsPacked.floats(static_cast<size_t>(K) * np);
    for (int p = 0; p < K; ++p)
      for (int j = 0; j < np; ++j)
        bp[p * np + j] = j >= N ? 0.0f : transB ? B[static_cast<int64_t>(j) * K + p] : B[static_cast<int64_t>(p) * N + j];
    constexpr int kRows = 48;
    split(pool, flops, (M + kRows - 1) / kRows, [&](int64_t b, int64_t e, int) {
      narrowBlock(C, A, K, false, bp, static_cast<int>(b * kRows), static_cast<int>(std::min<int64_t>(M, e * kRows)), N,
                  K, alpha, beta);
    });
    return true;
  }
  // Short M, or narrow N with op(A) transposed (then C^T = op(B)^T op(A)^T: op(A)^T is A itself, row-major).
  const bool shortM = M <= kSkinnyMax && !transB && N >= 32 && K > kSkinnyMax;
  const bool swapped = !shortM && N <= kSkinnyMax && transA && M >= 32 && K > kSkinnyMax;
  if (shortM || swapped) {
    const int m = shortM ? M : N, n = shortM ? N : M;
    const float* a = shortM ? A : B;
    // The short operand's (r, p): op(A) as given, or op(B)^T: B[p*N + r] (column-major), B[r*K + p] when transB.
    const bool colA = shortM ? transA : !transB;
    const int64_t lda = shortM ? (transA ? M : K) : (transB ? K : N);
    const float* b = shortM ? B : A;  // row-major [K][n]
    const int64_t rs = shortM ? N : 1, cs = shortM ? 1 : N;
    constexpr int kCols = 48;
    split(pool, flops, (n + kCols - 1) / kCols, [&](int64_t t0, int64_t t1, int) {
      float* tail = tlsPacked.floats(static_cast<size_t>(K) * 8);
      shortBlock(C, rs, cs, a, lda, colA, b, n, m, static_cast<int>(t0 * kCols),
                 static_cast<int>(std::min<int64_t>(n, t1 * kCols)), K, alpha, beta, tail);
    });
    return true;
  }
  return false;
}

}  // namespace pl::cpu
