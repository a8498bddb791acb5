// The sm_80+ GEMM on operands already in bf16 (Ampere / Ada; Hopper has gemm_hopper.cu's wgmma kernel):
// C[M,N] (fp32) = alpha * A[M,K] * B[N,K]^T + beta * C, A and B bf16, K-major, rows lda / ldb apart
// (multiples of 8; columns K..ld-1 zero where a row is padded). It is the path of bf16 frozen weights off
// Hopper: the weight goes in as it is (y = x W^T) or through a bf16 transposed copy, never widened to fp32.
//
// A 128 x 128 tile of C a block of 8 warps (2 x 4, each 64 x 32), K in steps of 32 through a 4-stage
// cp.async ring in shared memory (16-byte copies, edge rows and K past the end zero-filled), rows padded
// to 40 bf16 so that ldmatrix's eight row addresses fall in distinct banks; fragments by ldmatrix (no
// operand is ever stored transposed: both are K-major), products by mma.sync m16n8k16 with fp32
// accumulation, one barrier a step. Every K step is summed in the same order, so results are deterministic.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "kernels.h"
#include "mma.cuh"
#include "smem_copy.cuh"

namespace pl::cuda {

namespace {

constexpr int kBM = 128, kBN = 128, kBK = 32, kStages = 4;
constexpr int kWarpsM = 2, kWarpsN = 4;
constexpr int kWM = kBM / kWarpsM, kWN = kBN / kWarpsN;  // 64 x 32 a warp
constexpr int kThreads = 32 * kWarpsM * kWarpsN;
constexpr int kLd = kBK + 8;                              // shared row pitch (bf16)
constexpr int kStageElems = (kBM + kBN) * kLd;            // A rows, then B rows
constexpr size_t kSmem = size_t(kStages) * kStageElems * 2;

__global__ void __launch_bounds__(kThreads)
    gemm_bf16_sm80_kernel(float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K, int lda,
                          int ldb, float alpha, float beta) {
  extern __shared__ __align__(16) uint8_t smemBytes[];
  __nv_bfloat16* S = reinterpret_cast<__nv_bfloat16*>(smemBytes);
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int wm = warp / kWarpsN, wn = warp % kWarpsN;
  const int kTiles = (K + kBK - 1) / kBK;

  // K step kt's A and B tiles into stage kt % kStages: row r < kBM of the stage is A's row m0 + r, the rest
  // B's rows n0 + (r - kBM).
  auto issue = [&](int kt) {
    __nv_bfloat16* stage = S + (kt % kStages) * kStageElems;
    const int k0 = kt * kBK;
    for (int i = threadIdx.x; i < (kBM + kBN) * (kBK / 8); i += kThreads) {
      const int r = i / (kBK / 8), c = (i % (kBK / 8)) * 8;
      const bool isA = r < kBM;
      const int row = isA ? m0 + r : n0 + r - kBM;
      const bool ok = (isA ? row < M : row < N) && k0 + c < K;
      const __nv_bfloat16* src = isA ? A + (ok ? size_t(row) * lda + k0 + c : 0) : B + (ok ? size_t(row) * ldb + k0 + c : 0);
      cpAsync16(stage + r * kLd + c, src, ok);
    }
  };
  // The first kStages - 1 steps in flight; one commit group a step from here on (empty past the end), so
  // that waiting for all but the newest kStages - 2 groups always means step kt has landed.
  for (int kt = 0; kt < kStages - 1; ++kt) {
    if (kt < kTiles) issue(kt);
    cpAsyncCommit();
  }

  float acc[kWM / 16][kWN / 8][4];
#pragma unroll
  for (int mi = 0; mi < kWM / 16; ++mi)
#pragma unroll
    for (int ni = 0; ni < kWN / 8; ++ni) acc[mi][ni][0] = acc[mi][ni][1] = acc[mi][ni][2] = acc[mi][ni][3] = 0.0f;

  for (int kt = 0; kt < kTiles; ++kt) {
    cpAsyncWait<kStages - 2>();
    __syncthreads();  // step kt is visible to every warp, and every warp is done with step kt - 1's stage
    if (kt + kStages - 1 < kTiles) issue(kt + kStages - 1);  // into step kt - 1's stage
    cpAsyncCommit();
    const __nv_bfloat16* a = S + (kt % kStages) * kStageElems;
    const __nv_bfloat16* b = a + kBM * kLd;
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks) {
      uint32_t af[kWM / 16][4], bf[kWN / 16][4];
#pragma unroll
      for (int mi = 0; mi < kWM / 16; ++mi)
        ldmatrixX4(af[mi], a + (wm * kWM + 16 * mi + lane % 16) * kLd + 16 * ks + (lane / 16) * 8);
      // Two n-tiles of 8 a load: b[0..1] for columns 16nj.., b[2..3] for 16nj + 8...
#pragma unroll
      for (int nj = 0; nj < kWN / 16; ++nj)
        ldmatrixX4(bf[nj], b + (wn * kWN + 16 * nj + lane % 8 + (lane / 16) * 8) * kLd + 16 * ks + ((lane / 8) % 2) * 8);
#pragma unroll
      for (int mi = 0; mi < kWM / 16; ++mi)
#pragma unroll
        for (int nj = 0; nj < kWN / 16; ++nj) {
          const uint32_t lo[2] = {bf[nj][0], bf[nj][1]}, hi[2] = {bf[nj][2], bf[nj][3]};
          mma16816(acc[mi][2 * nj], af[mi], lo);
          mma16816(acc[mi][2 * nj + 1], af[mi], hi);
        }
    }
  }
  cpAsyncWait<0>();  // the trailing (empty) groups

#pragma unroll
  for (int mi = 0; mi < kWM / 16; ++mi)
#pragma unroll
    for (int ni = 0; ni < kWN / 8; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = m0 + wm * kWM + 16 * mi + g + 8 * (e >> 1), col = n0 + wn * kWN + 8 * ni + 2 * t + (e & 1);
        if (row >= M || col >= N) continue;
        float* out = C + size_t(row) * N + col;
        *out = beta == 0.0f ? alpha * acc[mi][ni][e] : alpha * acc[mi][ni][e] + beta * *out;
      }
}

}  // namespace

void gemmBf16Sm80(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
                  int lda, int ldb, float alpha, float beta) {
  if (M <= 0 || N <= 0) return;
  checkBf16Operands("gemmBf16Sm80", A, B, K, lda, ldb);
  const dim3 grid(ceilDiv(N, kBN), ceilDiv(M, kBM));
  if (grid.y > 65535) throw Error("gemmBf16Sm80: M = " + std::to_string(M) + " is too large for one launch");
  allowSharedMemory(gemm_bf16_sm80_kernel, kSmem, "gemm_bf16_sm80_kernel");
  gemm_bf16_sm80_kernel<<<grid, kThreads, kSmem, stream>>>(C, A, B, M, N, K, lda, ldb, alpha, beta);
  checkLaunch("gemm_bf16_sm80_kernel");
}

}  // namespace pl::cuda
