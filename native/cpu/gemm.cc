// The packed GEMM: pack KCxNC blocks of op(B) for a group of K blocks at once (threads share them), then
// each task owns a tile of C and, for each K block of the group in order, packs its MCxKC block of op(A)
// and runs the register-blocked microkernel over MRxNR tiles: two thread handoffs per group of K blocks.
#include "gemm.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "../core/bf16.h"
#include "../core/error.h"
#include "gemm_skinny.h"
#include "simd.h"
#include "vec.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PL_X86 1
#endif

namespace pl::cpu {
namespace {

constexpr int kKC = 256;
constexpr int kNC = 4096;
constexpr int kMCTarget = 144;
constexpr size_t kMaxPackedB = size_t{1} << 21;  // floats (8 MiB) of packed op(B) per group of K blocks

using MicroKernel = void (*)(int kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta);

// ---- microkernels: c[MR,NR] (row stride ldc) = alpha * a-panel @ b-panel + beta * c -------------

void microPortable(int kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta) {
  constexpr int MR = 4, NR = 16;
  float acc[MR][NR] = {};
  for (int p = 0; p < kc; ++p) {
    for (int i = 0; i < MR; ++i) {
      const float ai = a[p * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[p * NR + j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j)
      c[i * ldc + j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[i * ldc + j];
}

#ifdef PL_X86
PL_TARGET_AVX2 void microAvx2(int kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                              float beta) {
  constexpr int MR = 6;
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
         c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
         c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
         c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 av;
    av = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
    a += MR;
    b += 16;
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  __m256 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    for (int h = 0; h < 2; ++h) {
      __m256 r = _mm256_mul_ps(va, rows[i][h]);
      if (beta != 0.0f) r = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8 * h), r);
      _mm256_storeu_ps(ci + 8 * h, r);
    }
  }
}

#define PL_ROW(i)                                      \
  {                                                    \
    const __m512 av = _mm512_set1_ps(a[i]);            \
    c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);        \
    c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);        \
  }

PL_TARGET_AVX512 void microAvx512(int kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                  float beta) {
  constexpr int MR = 12;
  __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps(), c10 = _mm512_setzero_ps(),
         c11 = _mm512_setzero_ps(), c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps(),
         c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps(), c40 = _mm512_setzero_ps(),
         c41 = _mm512_setzero_ps(), c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps(),
         c60 = _mm512_setzero_ps(), c61 = _mm512_setzero_ps(), c70 = _mm512_setzero_ps(),
         c71 = _mm512_setzero_ps(), c80 = _mm512_setzero_ps(), c81 = _mm512_setzero_ps(),
         c90 = _mm512_setzero_ps(), c91 = _mm512_setzero_ps();
  __m512 cA0 = _mm512_setzero_ps(), cA1 = _mm512_setzero_ps(), cB0 = _mm512_setzero_ps(),
         cB1 = _mm512_setzero_ps();
  for (int p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
    _mm_prefetch(reinterpret_cast<const char*>(b + 256), _MM_HINT_T0);
    PL_ROW(0) PL_ROW(1) PL_ROW(2) PL_ROW(3) PL_ROW(4) PL_ROW(5) PL_ROW(6) PL_ROW(7) PL_ROW(8) PL_ROW(9)
    {
      const __m512 av = _mm512_set1_ps(a[10]);
      cA0 = _mm512_fmadd_ps(av, b0, cA0);
      cA1 = _mm512_fmadd_ps(av, b1, cA1);
    }
    {
      const __m512 av = _mm512_set1_ps(a[11]);
      cB0 = _mm512_fmadd_ps(av, b0, cB0);
      cB1 = _mm512_fmadd_ps(av, b1, cB1);
    }
    a += MR;
    b += 32;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  __m512 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51},
                        {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {cA0, cA1}, {cB0, cB1}};
  if (beta == 0.0f) {
    for (int i = 0; i < MR; ++i) {
      _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, rows[i][0]));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, rows[i][1]));
    }
  } else {
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * ldc;
      _mm512_storeu_ps(ci, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci), _mm512_mul_ps(va, rows[i][0])));
      _mm512_storeu_ps(ci + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(ci + 16), _mm512_mul_ps(va, rows[i][1])));
    }
  }
}
#undef PL_ROW
#endif  // PL_X86

// ---- packing ---------------------------------------------------------------------------------

// op(A)[i0 : i0+mc, p0 : p0+kc] -> panels of MR rows, each [kc][MR], zero-padded past mc.
template <int MR>
void packA(float* out, const float* A, int M, int K, bool transA, int i0, int mc, int p0, int kc) {
  for (int ib = 0; ib < mc; ib += MR) {
    const int mr = std::min(MR, mc - ib);
    float* dst = out + static_cast<size_t>(ib / MR) * kc * MR;
    if (!transA) {
      for (int i = 0; i < mr; ++i) {
        const float* src = A + static_cast<size_t>(i0 + ib + i) * K + p0;
        for (int p = 0; p < kc; ++p) dst[p * MR + i] = src[p];
      }
      for (int i = mr; i < MR; ++i)
        for (int p = 0; p < kc; ++p) dst[p * MR + i] = 0.0f;
    } else {
      for (int p = 0; p < kc; ++p) {
        const float* src = A + static_cast<size_t>(p0 + p) * M + i0 + ib;
        float* d = dst + p * MR;
        for (int i = 0; i < mr; ++i) d[i] = src[i];
        for (int i = mr; i < MR; ++i) d[i] = 0.0f;
      }
    }
  }
}

// op(B)[p0 : p0+kc, j0 + panel*NR ...] -> panel [kc][NR], zero-padded past N.
template <int NR>
void packBPanel(float* dst, const float* B, int N, int K, bool transB, int j0, int p0, int kc) {
  const int nr = std::min(NR, N - j0);
  if (!transB) {
    for (int p = 0; p < kc; ++p) {
      const float* src = B + static_cast<size_t>(p0 + p) * N + j0;
      float* d = dst + p * NR;
      std::memcpy(d, src, sizeof(float) * nr);
      for (int j = nr; j < NR; ++j) d[j] = 0.0f;
    }
  } else {
    for (int j = 0; j < nr; ++j) {
      const float* src = B + static_cast<size_t>(j0 + j) * K + p0;
      for (int p = 0; p < kc; ++p) dst[p * NR + j] = src[p];
    }
    for (int j = nr; j < NR; ++j)
      for (int p = 0; p < kc; ++p) dst[p * NR + j] = 0.0f;
  }
}

template <int MR, int NR>
void gemmPacked(ThreadPool& pool, MicroKernel micro, float* C, const float* A, const float* B, int M, int N, int K,
                bool transA, bool transB, float alpha, float beta) {
  constexpr int MC = (kMCTarget / MR) * MR;
  const double flops = 2.0 * M * N * K;
  const bool parallel = pool.size() > 1 && flops >= 2.0 * 48 * 48 * 48;
  auto run = [&](int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
    if (parallel) pool.parallelFor(n, fn);
    else fn(0, n, 0);
  };
  thread_local AlignedBuffer bBuffer;
  const int kBlocks = (K + kKC - 1) / kKC;
  for (int jc = 0; jc < N; jc += kNC) {
    const int nc = std::min(kNC, N - jc);
    const int panels = (nc + NR - 1) / NR;
    const size_t blockFloats = static_cast<size_t>(panels) * NR * kKC;  // one packed KC x NC block of op(B)
    // K blocks go in groups whose packed op(B) fits kMaxPackedB: one region packs a group, one computes it,
    // so a product pays two thread handoffs per group, not two per K block.
    const int group = static_cast<int>(std::max<size_t>(1, std::min<size_t>(kBlocks, kMaxPackedB / blockFloats)));
    for (int g0 = 0; g0 < kBlocks; g0 += group) {
      const int g1 = std::min(kBlocks, g0 + group);
      float* bp = bBuffer.floats(blockFloats * (g1 - g0));
      run(static_cast<int64_t>(panels) * (g1 - g0), [&](int64_t b, int64_t e, int) {
        for (int64_t t = b; t < e; ++t) {
          const int kb = g0 + static_cast<int>(t / panels), jp = static_cast<int>(t % panels);
          const int pc = kb * kKC, kc = std::min(kKC, K - pc);
          packBPanel<NR>(bp + (kb - g0) * blockFloats + static_cast<size_t>(jp) * NR * kc, B, N, K, transB,
                         jc + jp * NR, pc, kc);
        }
      });
      const int mBlocks = (M + MC - 1) / MC;
      // Enough tasks for the pool's chunks, so a slow or shared core delays one small piece, not half the product.
      const int wanted = ThreadPool::kChunksPerThread * pool.size();
      int nChunks = 1;
      if (parallel && mBlocks < wanted) nChunks = std::min(panels, (wanted + mBlocks - 1) / mBlocks);
      run(static_cast<int64_t>(mBlocks) * nChunks, [&](int64_t b, int64_t e, int) {
        thread_local AlignedBuffer aBuffer;
        float* ap = aBuffer.floats(static_cast<size_t>(MC) * kKC);
        alignas(64) float tile[MR * NR];
        for (int64_t task = b; task < e; ++task) {
          const int64_t ib = task / nChunks, chunk = task % nChunks;
          const int i0 = static_cast<int>(ib) * MC, mc = std::min(MC, M - i0);
          const int jpBegin = static_cast<int>(panels * chunk / nChunks);
          const int jpEnd = static_cast<int>(panels * (chunk + 1) / nChunks);
          // This task's C tile sees the group's K blocks in order: the same sums for any thread count.
          for (int kb = g0; kb < g1; ++kb) {
            const int pc = kb * kKC, kc = std::min(kKC, K - pc);
            const float betaNow = pc == 0 ? beta : 1.0f;
            packA<MR>(ap, A, M, K, transA, i0, mc, pc, kc);
            const float* bBlock = bp + (kb - g0) * blockFloats;
            for (int jp = jpBegin; jp < jpEnd; ++jp) {
              const int j = jc + jp * NR, nr = std::min(NR, N - j);
              const float* bpanel = bBlock + static_cast<size_t>(jp) * NR * kc;
              for (int ir = 0; ir < mc; ir += MR) {
                const int mr = std::min(MR, mc - ir);
                const float* apanel = ap + static_cast<size_t>(ir / MR) * kc * MR;
                float* c = C + static_cast<size_t>(i0 + ir) * N + j;
                if (mr == MR && nr == NR) {
                  micro(kc, apanel, bpanel, c, N, alpha, betaNow);
                } else {
                  micro(kc, apanel, bpanel, tile, NR, 1.0f, 0.0f);
                  for (int i = 0; i < mr; ++i)
                    for (int jj = 0; jj < nr; ++jj) {
                      float* dst = c + static_cast<size_t>(i) * N + jj;
                      *dst = betaNow == 0.0f ? alpha * tile[i * NR + jj]
                                             : alpha * tile[i * NR + jj] + betaNow * *dst;
                    }
                }
              }
            }
          }
        }
      });
    }
  }
}

// ---- gemv: few rows against a weight stored [N,K] ---------------------------------------------------

PL_INLINE float asFloat(float x) { return x; }
PL_INLINE float asFloat(uint16_t h) { return fromBf16(h); }

// out[m] = sum_k a[m*K + k] * w[k] for m < M: one weight row against M rows of a, 16 lanes a row.
template <typename T>
PL_INLINE void rowDotsBody(float* out, const float* a, const T* w, int M, int K) {
  for (int m = 0; m < M; ++m) {
    const float* x = a + static_cast<size_t>(m) * K;
    float acc[16] = {};
    int k = 0;
    for (; k + 16 <= K; k += 16)
      for (int j = 0; j < 16; ++j) acc[j] += x[k + j] * asFloat(w[k + j]);
    float sum = 0.0f;
    for (int j = 0; j < 16; ++j) sum += acc[j];
    for (; k < K; ++k) sum += x[k] * asFloat(w[k]);
    out[m] = sum;
  }
}
PL_INLINE void rowDotsF32Body(float* out, const float* a, const float* w, int M, int K) {
  rowDotsBody(out, a, w, M, K);
}
PL_INLINE void rowDotsBf16Body(float* out, const float* a, const uint16_t* w, int M, int K) {
  rowDotsBody(out, a, w, M, K);
}
PL_SIMD_CLONES(void, rowDotsF32, (float* out, const float* a, const float* w, int M, int K), (out, a, w, M, K))
PL_SIMD_CLONES(void, rowDotsBf16, (float* out, const float* a, const uint16_t* w, int M, int K), (out, a, w, M, K))

PL_INLINE void rowDots(float* out, const float* a, const float* w, int M, int K) { rowDotsF32(out, a, w, M, K); }
PL_INLINE void rowDots(float* out, const float* a, const uint16_t* w, int M, int K) { rowDotsBf16(out, a, w, M, K); }

template <typename T>
void gemvRows(ThreadPool& pool, float* C, const float* A, const T* W, int M, int N, int K, float alpha, float beta) {
  if (M > kGemvMaxRows)
    throw Error("gemv: M = " + std::to_string(M) + " exceeds " + std::to_string(kGemvMaxRows) + " rows");
  constexpr int kRowsPerTask = 16;
  pool.parallelFor((N + kRowsPerTask - 1) / kRowsPerTask, [&](int64_t b, int64_t e, int) {
    float dots[kGemvMaxRows];
    for (int64_t n = b * kRowsPerTask; n < std::min<int64_t>(N, e * kRowsPerTask); ++n) {
      rowDots(dots, A, W + n * K, M, K);
      for (int m = 0; m < M; ++m) {
        float& c = C[static_cast<size_t>(m) * N + n];
        c = beta == 0.0f ? alpha * dots[m] : alpha * dots[m] + beta * c;
      }
    }
  });
}

}  // namespace

void gemv(ThreadPool& pool, float* C, const float* A, const float* W, int M, int N, int K, float alpha, float beta) {
  gemvRows(pool, C, A, W, M, N, K, alpha, beta);
}

void gemv(ThreadPool& pool, float* C, const float* A, const uint16_t* W, int M, int N, int K, float alpha,
          float beta) {
  gemvRows(pool, C, A, W, M, N, K, alpha, beta);
}

void gemm(ThreadPool& pool, float* C, const float* A, const float* B, int M, int N, int K, bool transA, bool transB,
          float alpha, float beta) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (size_t i = 0; i < static_cast<size_t>(M) * N; ++i) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
    return;
  }
  // Few rows against a weight stored [N,K] (decoding): no packing, each weight row read once.
  if (!transA && transB && M <= kGemvMaxRows && static_cast<int64_t>(N) * K >= (1 << 16)) {
    gemv(pool, C, A, B, M, N, K, alpha, beta);
    return;
  }
  // A side of at most 16 (LoRA's rank): kernels that keep that side in registers, no packing of the other.
  if (gemmSkinny(pool, C, A, B, M, N, K, transA, transB, alpha, beta)) return;
  switch (activeIsa()) {
#ifdef PL_X86
    case Isa::Avx512:
      return gemmPacked<12, 32>(pool, microAvx512, C, A, B, M, N, K, transA, transB, alpha, beta);
    case Isa::Avx2:
      return gemmPacked<6, 16>(pool, microAvx2, C, A, B, M, N, K, transA, transB, alpha, beta);
#endif
    default:
      return gemmPacked<4, 16>(pool, microPortable, C, A, B, M, N, K, transA, transB, alpha, beta);
  }
}

}  // namespace pl::cpu
