// Lab variants of the Hopper GEMM (gemm_hopper.cu's machinery, gemm_hopper.cuh), each measured slower than
// the product's kernel on an H200 and kept here to be measured again (dev/gemm_bf16.cu, dev/gemm_lowrank.cu):
//   - the ping-pong schedule: each consumer warp group owns whole 128x128 tiles so that one group's stores of
//     C overlap the other's multiplications (470-634 TFLOP/s against the picked widths' 575-716);
//   - the LoRA update fused into the epilogue (C += scale H L^T), 128-wide tiles only (wider ones spill):
//     where the product alone takes wider tiles, two passes were faster.
// Built for every arch; the bodies exist only in the sm_90a image (elsewhere they trap).
#include <string>

#include "../../gemm_hopper.cuh"
#include "lab_kernels.h"

namespace pl::cuda::lab {

namespace {

using namespace hgemm;

// gemm_hopper.cu's kernel with a rank-r update fused into its epilogue (128-wide tiles only: with any wider
// one the epilogue spills, 0.5-1 KB a thread): C = A B^T + beta C + scale H L^T without a second pass over C.
template <int BN>
__global__ void __launch_bounds__(kHThreads, 1)
    gemm_wgmma_lowrank_kernel(const __grid_constant__ CUtensorMap mapA, const __grid_constant__ CUtensorMap mapB, float* C,
                      int M, int N, int K, float alpha, float beta, LowRankUpdate lr) {
#ifdef PL_HOPPER_DEVICE
  constexpr int S = HopperTile<BN>::kStages;
  extern __shared__ uint8_t smemRaw[];
  Ring<BN> ring(smemRaw, 2, 0);  // one arrive per consumer warp group frees a stage
  uint64_t* full = ring.full;
  uint64_t* empty = ring.empty;
  const int tilesM = (M + kHBM - 1) / kHBM, tilesN = (N + BN - 1) / BN, tiles = tilesM * tilesN;
  const int kTiles = (K + kHBK - 1) / kHBK;
  // Column pairs are 8-byte aligned when rows are an even number of floats apart and C is 8-byte aligned.
  const bool pairs = N % 2 == 0 && reinterpret_cast<uintptr_t>(C) % 8 == 0;
  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (threadIdx.x == 0) ring.produce(&mapA, &mapB, tilesM, tilesN, kTiles);
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int c = wg - 1;  // rows 64c .. 64c+63 of each tile
    const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
    float d[BN / 2];
    int it = 0;
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
      int tm, tn;
      tileCoords(t, tilesM, tilesN, tm, tn);
#pragma unroll
      for (int i = 0; i < BN / 2; ++i) d[i] = 0.0f;
      int prev = -1;
      for (int kt = 0; kt < kTiles; ++kt, ++it) {
        const int s = it % S;
        mbarWait(&full[s], (it / S) & 1);
        wgmmaFence();
        const uint64_t descA = smemDesc(ring.tileA(s) + c * 64 * kHBK);
        const uint64_t descB = smemDesc(ring.tileB(s));
#pragma unroll
        for (int kk = 0; kk < kHBK / 16; ++kk) wgmmaBf16<BN>(d, descA + 2 * kk, descB + 2 * kk);
        wgmmaCommit();
        wgmmaWait<1>();  // the previous stage's products are done: hand its buffers back
        if (prev >= 0 && threadIdx.x % 128 == 0) mbarArrive(&empty[prev]);
        prev = s;
      }
      wgmmaWait<0>();
      if (prev >= 0 && threadIdx.x % 128 == 0) mbarArrive(&empty[prev]);

      // Accumulator 4j+e: row 16*warp + lane/4 (+8 for e >= 2), column 8j + 2*(lane%4) + (e%2).
      const int row = tm * kHBM + c * 64 + warp * 16 + lane / 4;
      const int col0 = tn * BN + 2 * (lane % 4);
      {
        // The fused rank-r update (the host asks for it only with alpha = 1): d += scale * H[row] . L[col],
        // eight ranks at a time so that the two rows' H values stay in registers.
        for (int jb = 0; jb < lr.r; jb += 8) {
          float hv[2][8];
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int jj = 0; jj < 8; ++jj) {
              const int r = row + 8 * h;
              hv[h][jj] = (r < M && jb + jj < lr.r) ? lr.scale * lr.H[size_t(r) * lr.r + jb + jj] : 0.0f;
            }
#pragma unroll
          for (int j = 0; j < BN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int col = col0 + 8 * j + e;
              if (col >= N) continue;
              float u0 = 0.0f, u1 = 0.0f;
#pragma unroll
              for (int jj = 0; jj < 8; ++jj) {
                if (jb + jj >= lr.r) break;
                const float l = lr.L[size_t(col) * lr.strideN + size_t(jb + jj) * lr.strideR];
                u0 += hv[0][jj] * l;
                u1 += hv[1][jj] * l;
              }
              d[4 * j + e] += u0;
              d[4 * j + 2 + e] += u1;
            }
        }
      }
      storeTile<BN>(C, d, tm * kHBM + c * 64, tn * BN, M, N, alpha, beta, pairs);
    }
  }
#else
  unused(mapA, mapB, C, M, N, K, alpha, beta);
  __trap();
#endif
}

// Ping-pong schedule: each consumer warp group owns whole 128 x BN tiles (two m64 halves, BN registers a
// thread), taking the block's tiles alternately. The producer fills the ring tile by tile in that order,
// and an ordering barrier hands the tensor cores from one group's main loop to the other's, so each
// group's epilogue (the stores of C) runs while the other group multiplies. A group never waits on a ring
// stage more than one fill ahead: the other group has consumed the fill before it (dev/simulate_pingpong.py
// runs this synchronization under random schedules). 128-wide tiles only (two halves of a wider tile
// would not fit the registers).
template <int BN>
__global__ void __launch_bounds__(kHThreads, 1)
    gemm_wgmma_pingpong_kernel(const __grid_constant__ CUtensorMap mapA, const __grid_constant__ CUtensorMap mapB,
                               float* C, int M, int N, int K, float alpha, float beta) {
#ifdef PL_HOPPER_DEVICE
  constexpr int S = HopperTile<BN>::kStages;
  extern __shared__ uint8_t smemRaw[];
  Ring<BN> ring(smemRaw, 1, 2);  // the one group that consumed a stage frees it; two ordering barriers
  uint64_t* full = ring.full;
  uint64_t* empty = ring.empty;
  uint64_t* order = ring.extra;  // order[g]: group g may start its next main loop
  const int tilesM = (M + kHBM - 1) / kHBM, tilesN = (N + BN - 1) / BN, tiles = tilesM * tilesN;
  const int kTiles = (K + kHBK - 1) / kHBK;
  const bool pairs = N % 2 == 0 && reinterpret_cast<uintptr_t>(C) % 8 == 0;
  const int wg = threadIdx.x / 128;
  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (threadIdx.x == 0) ring.produce(&mapA, &mapB, tilesM, tilesN, kTiles);
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int g = wg - 1;  // this group takes the block's tiles g, g + 2, g + 4, ...
    const bool leader = threadIdx.x % 128 == 0;
    float d[2][BN / 2];
    int n = 0;  // how many tiles this group has taken
    for (int t = blockIdx.x + g * gridDim.x; t < tiles; t += 2 * gridDim.x, ++n) {
      int tm, tn;
      tileCoords(t, tilesM, tilesN, tm, tn);
      // Group 0 starts at once; after that each group waits for the other's main loop before its own.
      if (g == 1) mbarWait(&order[1], n & 1);
      else if (n > 0) mbarWait(&order[0], (n - 1) & 1);
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int i = 0; i < BN / 2; ++i) d[h][i] = 0.0f;
      int it = (2 * n + g) * kTiles;  // this tile's place in the ring order
      int prev = -1;
      for (int kt = 0; kt < kTiles; ++kt, ++it) {
        const int s = it % S;
        mbarWait(&full[s], (it / S) & 1);
        wgmmaFence();
        const uint64_t descA = smemDesc(ring.tileA(s));
        const uint64_t descA1 = smemDesc(ring.tileA(s) + 64 * kHBK);
        const uint64_t descB = smemDesc(ring.tileB(s));
#pragma unroll
        for (int kk = 0; kk < kHBK / 16; ++kk) {
          wgmmaBf16<BN>(d[0], descA + 2 * kk, descB + 2 * kk);
          wgmmaBf16<BN>(d[1], descA1 + 2 * kk, descB + 2 * kk);
        }
        wgmmaCommit();
        wgmmaWait<1>();  // the previous stage's products are done: hand its buffers back
        if (prev >= 0 && leader) mbarArrive(&empty[prev]);
        prev = s;
      }
      wgmmaWait<0>();
      if (leader) {
        if (prev >= 0) mbarArrive(&empty[prev]);
        mbarArrive(&order[g ^ 1]);  // the other group's turn at the tensor cores
      }
      storeTile<BN>(C, d[0], tm * kHBM, tn * BN, M, N, alpha, beta, pairs);
      storeTile<BN>(C, d[1], tm * kHBM + 64, tn * BN, M, N, alpha, beta, pairs);
    }
  }
#else
  unused(mapA, mapB, C, M, N, K, alpha, beta);
  __trap();
#endif
}

template <int BN>
void launchWgmmaPingPong(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N,
                         int K, int lda, int ldb, float alpha, float beta, int multiprocessors) {
  using Tile = HopperTile<BN>;
  constexpr int smem = Tile::kSmemBytes + 16;  // + the two ordering barriers
  allowSharedMemory(gemm_wgmma_pingpong_kernel<BN>, smem, "gemm_wgmma_pingpong_kernel");
  const CUtensorMap mapA = tensorMap(A, M, K, lda, kHBM);
  const CUtensorMap mapB = tensorMap(B, N, K, ldb, BN);
  const int tiles = int(ceilDiv(M, kHBM)) * int(ceilDiv(N, BN));
  const int grid = tiles < multiprocessors ? tiles : multiprocessors;
  gemm_wgmma_pingpong_kernel<BN><<<grid, kHThreads, smem, stream>>>(mapA, mapB, C, M, N, K, alpha, beta);
  checkLaunch("gemm_wgmma_pingpong_kernel");
}

}  // namespace

void gemmBf16PingPong(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N,
                      int K, int lda, int ldb, float alpha, float beta, int multiprocessors) {
  if (M <= 0 || N <= 0) return;
  checkBf16Operands("gemm (Hopper, ping-pong)", A, B, K, lda, ldb);
  launchWgmmaPingPong<128>(stream, C, A, B, M, N, K, lda, ldb, alpha, beta, multiprocessors);
}

void gemmBf16LowRank(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
                     int lda, int ldb, float beta, int multiprocessors, const LowRankUpdate& lr) {
  if (M <= 0 || N <= 0) return;
  checkBf16Operands("gemm (Hopper, fused low-rank update)", A, B, K, lda, ldb);
  if (lr.r < 1 || lr.r > kMaxLowRank || !lr.H || !lr.L)
    throw Error("gemm (Hopper, fused low-rank update): needs H, L and a rank in [1, " + std::to_string(kMaxLowRank) +
                "], got rank " + std::to_string(lr.r));
  constexpr int BN = 128;
  using Tile = HopperTile<BN>;
  allowSharedMemory(gemm_wgmma_lowrank_kernel<BN>, Tile::kSmemBytes, "gemm_wgmma_lowrank_kernel");
  const CUtensorMap mapA = tensorMap(A, M, K, lda, kHBM);
  const CUtensorMap mapB = tensorMap(B, N, K, ldb, BN);
  const int tiles = int(ceilDiv(M, kHBM)) * int(ceilDiv(N, BN));
  const int grid = tiles < multiprocessors ? tiles : multiprocessors;
  gemm_wgmma_lowrank_kernel<BN><<<grid, kHThreads, Tile::kSmemBytes, stream>>>(mapA, mapB, C, M, N, K, 1.0f, beta, lr);
  checkLaunch("gemm_wgmma_lowrank_kernel");
}

}  // namespace pl::cuda::lab
