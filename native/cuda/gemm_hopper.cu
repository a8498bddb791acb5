// The Hopper (sm_90a) GEMM: C[M,N] (fp32) = alpha * A[M,K] * B[N,K]^T + beta * C, with A and B in bf16,
// both K-major. One producer warp group streams 128x64 / BNx64 tiles with the tensor memory accelerator
// (TMA) into a ring of shared-memory stages guarded by mbarriers; two consumer warp groups multiply them
// with wgmma (64 rows each) into fp32 registers; the grid is persistent (one CTA per multiprocessor
// walking the output tiles). The fp32 interface of the backend reaches it through toBf16KMajor(), which
// converts (and where needed transposes) an operand into bf16 rows padded to a multiple of 8.
// Built for every arch; the kernel body exists only in the sm_90a image (hopperGemmSupported() asks the
// device which image it runs), elsewhere the launcher is never called.
#include <cuda.h>  // CUtensorMap and the driver enums (the entry point is fetched through the runtime)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <mutex>
#include <iterator>
#include <string>
#include <vector>

#include "common.cuh"
#include "hopper.cuh"
#include "kernels.h"

namespace pl::cuda {

namespace {

constexpr int kHBM = 128;        // tile rows (two consumer warp groups of 64)
constexpr int kHBK = 64;         // K per stage: 64 bf16 = 128 bytes, one swizzle span
constexpr int kHThreads = 384;   // producer warp group + two consumers

// Tile widths (output columns per CTA), widest first. Besides the powers of two, widths that split the
// model's wide dimensions into whole waves: 3200 = 16 x 200 and 8640 = 40 x 216 (open-llama-3b), where a
// 256-wide tile leaves half a tile (or a third of a wave) idle. Each needs its wrapper in wgmma.cuh.
constexpr int kHWidths[] = {256, 216, 200, 192, 128};

template <int BN>
struct HopperTile {
  static_assert(BN % 8 == 0 && BN >= 8 && BN <= 256, "wgmma takes N = 8, 16, ..., 256");
  static constexpr int kStageBytes = (kHBM + BN) * kHBK * 2;
  // As many stages as fit the 227 KB of shared memory (with barriers and alignment slack), at most 6.
  static constexpr int kStages = (227 * 1024 - 2048) / kStageBytes < 6 ? (227 * 1024 - 2048) / kStageBytes : 6;
  static constexpr int kSmemBytes = kStages * kStageBytes + 2 * kStages * 8 + 1024;  // + barriers, alignment
  static_assert(kStages >= 3, "too few pipeline stages");
};

#ifdef PL_HOPPER_DEVICE
constexpr int kGroupM = 16;  // tiles are walked in groups of 16 tile-rows (L2 reuse)

// One 2-D box of a tensor map into shared memory; completion is counted in bytes on `bar`.
__device__ __forceinline__ void tmaLoad(void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::
          "r"(smemAddr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smemAddr(bar))
      : "memory");
}

// Tile t of the walk: groups of kGroupM tile-rows, column-major inside a group, so that CTAs running at
// the same time share B tiles (and A tiles within the group) in L2.
__device__ __forceinline__ void tileCoords(int t, int tilesM, int tilesN, int& tm, int& tn) {
  const int perGroup = kGroupM * tilesN;
  const int group = t / perGroup, first = group * kGroupM;
  const int rows = min(kGroupM, tilesM - first);
  const int inGroup = t % perGroup;
  tm = first + inGroup % rows;
  tn = inGroup / rows;
}

// C[row0 + .., col0 + ..] = alpha * d + beta * C for one warp group's m64 x BN accumulators (d[4j+e]: row
// 16*warp + lane/4 (+8 for e >= 2), column 8j + 2*(lane%4) + e%2). pairs: rows are 8-byte aligned, so a
// thread's two columns go as one access.
template <int BN>
__device__ __forceinline__ void storeTile(float* C, const float (&d)[BN / 2], int row0, int col0, int M, int N,
                                          float alpha, float beta, bool pairs) {
  const int lane = threadIdx.x % 32, warp = (threadIdx.x % 128) / 32;
  const int row = row0 + warp * 16 + lane / 4;
#pragma unroll
  for (int j = 0; j < BN / 8; ++j) {
    const int col = col0 + 8 * j + 2 * (lane % 4);  // even
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = row + 8 * h;
      if (r >= M) continue;
      float* out = C + size_t(r) * N + col;
      const float v0 = alpha * d[4 * j + 2 * h], v1 = alpha * d[4 * j + 2 * h + 1];
      if (pairs && col + 1 < N) {
        float2 v = make_float2(v0, v1);
        if (beta != 0.0f) {
          const float2 old = *reinterpret_cast<const float2*>(out);
          v.x += beta * old.x;
          v.y += beta * old.y;
        }
        *reinterpret_cast<float2*>(out) = v;
      } else {
        if (col < N) out[0] = beta == 0.0f ? v0 : v0 + beta * out[0];
        if (col + 1 < N) out[1] = beta == 0.0f ? v1 : v1 + beta * out[1];
      }
    }
  }
}

// The shared-memory ring both kernels use: S stages of an A tile (128 x 64) and a B tile (BN x 64), their
// full / empty barriers, then `extra` barriers of the kernel's own. Thread 0 initializes the barriers
// (empty ones counting `consumers` arrivals) before the block synchronizes.
template <int BN>
struct Ring {
  static constexpr int S = HopperTile<BN>::kStages;
  __nv_bfloat16 *a, *b;
  uint64_t *full, *empty, *extra;
  __device__ Ring(uint8_t* raw, int consumers, int extraBarriers) {
    // 128-byte swizzled tiles must start on 1024-byte boundaries.
    uint8_t* smem = raw + ((1024 - (smemAddr(raw) & 1023)) & 1023);
    a = reinterpret_cast<__nv_bfloat16*>(smem);
    b = reinterpret_cast<__nv_bfloat16*>(smem + S * kHBM * kHBK * 2);
    full = reinterpret_cast<uint64_t*>(smem + S * HopperTile<BN>::kStageBytes);
    empty = full + S;
    extra = empty + S;
    if (threadIdx.x == 0) {
      for (int s = 0; s < S; ++s) {
        mbarInit(&full[s], 1);  // the producer's arrive (with the expected bytes)
        mbarInit(&empty[s], consumers);
      }
      for (int i = 0; i < extraBarriers; ++i) mbarInit(&extra[i], 1);
      asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
  }
  __device__ __nv_bfloat16* tileA(int s) const { return a + s * kHBM * kHBK; }
  __device__ __nv_bfloat16* tileB(int s) const { return b + s * BN * kHBK; }

  // The producer (one thread): every k-step of the block's tiles t = blockIdx.x, + gridDim.x, ... in order.
  __device__ void produce(const CUtensorMap* mapA, const CUtensorMap* mapB, int tilesM, int tilesN, int kTiles) {
    int it = 0;
    for (int t = blockIdx.x; t < tilesM * tilesN; t += gridDim.x) {
      int tm, tn;
      tileCoords(t, tilesM, tilesN, tm, tn);
      for (int kt = 0; kt < kTiles; ++kt, ++it) {
        const int s = it % S;
        mbarWait(&empty[s], ((it / S) & 1) ^ 1);  // the first pass finds every stage free
        mbarExpectTx(&full[s], HopperTile<BN>::kStageBytes);
        tmaLoad(tileA(s), mapA, kt * kHBK, tm * kHBM, &full[s]);
        tmaLoad(tileB(s), mapB, kt * kHBK, tn * BN, &full[s]);
      }
    }
  }
};
#endif  // PL_HOPPER_DEVICE

// kLowRank: the variant with the fused rank-r update in its epilogue (128-wide tiles only: with any wider
// one its epilogue spills, 0.5-1 KB a thread).
template <int BN, bool kLowRank>
__global__ void __launch_bounds__(kHThreads, 1)
    gemm_wgmma_kernel(const __grid_constant__ CUtensorMap mapA, const __grid_constant__ CUtensorMap mapB, float* C,
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
      if (kLowRank) {
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

// Writes 1 when the image the device runs has the sm_90a body (a plain sm_90 PTX build does not).
__global__ void hopper_probe_kernel(int* out) {
#ifdef PL_HOPPER_DEVICE
  *out = 1;
#else
  *out = 0;
#endif
}

// ---- conversion to bf16 K-major rows ---------------------------------------------------------------

__device__ __forceinline__ float asFloat(float x) { return x; }
__device__ __forceinline__ float asFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

// out[r * ldk + k] = bf16(X[r * ldx + k]) for k < K, 0 up to ldk: eight elements (16 bytes out) a thread.
// X is fp32 (activations, master weights) or bf16 (frozen weights: an exact copy).
template <typename T>
__global__ void to_bf16_rows_kernel(__nv_bfloat16* out, const T* X, int rows, int K, int ldk, size_t ldx) {
  const int groups = ldk / 8;
  const size_t total = size_t(rows) * groups;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / groups;
    const int k0 = int(i % groups) * 8;
    const T* src = X + r * ldx;
    __align__(16) __nv_bfloat16 v[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = __float2bfloat16_rn(k0 + e < K ? asFloat(src[k0 + e]) : 0.0f);
    *reinterpret_cast<uint4*>(out + r * ldk + k0) = *reinterpret_cast<const uint4*>(v);
  }
}

// out[r * ldk + k] = bf16(X[k * rows + r]) (X stored K-major the other way): 32x32 tiles through shared memory.
template <typename T>
__global__ void to_bf16_transposed_kernel(__nv_bfloat16* out, const T* X, int rows, int K, int ldk) {
  __shared__ float tile[32][33];
  const int r0 = blockIdx.x * 32, k0 = blockIdx.y * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int k = k0 + i, r = r0 + threadIdx.x;
    tile[i][threadIdx.x] = (k < K && r < rows) ? asFloat(X[size_t(k) * rows + r]) : 0.0f;
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int r = r0 + i, k = k0 + threadIdx.x;
    if (r < rows && k < ldk) out[size_t(r) * ldk + k] = __float2bfloat16_rn(tile[threadIdx.x][i]);
  }
}

// ---- host side -------------------------------------------------------------------------------------

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encodeTiled() {
  static EncodeTiled fn = nullptr;
  static std::string why;
  static std::once_flag once;
  std::call_once(once, [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult status{};
    const cudaError_t err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &status);
    if (err != cudaSuccess || status != cudaDriverEntryPointSuccess || !p) {
      cudaGetLastError();
      why = std::string("the driver has no cuTensorMapEncodeTiled: ") + cudaGetErrorString(err);
      return;
    }
    fn = reinterpret_cast<EncodeTiled>(p);
  });
  if (!fn) throw Error("gemm (Hopper): " + why);
  return fn;
}

// A 2-D map over bf16 rows: `rows` rows of `K` elements, `ld` elements apart; boxes of boxRows x 64.
CUtensorMap tensorMap(const __nv_bfloat16* base, int rows, int K, int ld, int boxRows) {
  CUtensorMap map{};
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ld) * 2};
  const cuuint32_t box[2] = {cuuint32_t(kHBK), cuuint32_t(boxRows)};
  const cuuint32_t elementStrides[2] = {1, 1};
  const CUresult r = encodeTiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<__nv_bfloat16*>(base), dims,
                                   strides, box, elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                   CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw Error("gemm (Hopper): cuTensorMapEncodeTiled failed with error " + std::to_string(int(r)) + " for " +
                std::to_string(rows) + " rows of " + std::to_string(K) + " (ld " + std::to_string(ld) + ")");
  return map;
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

template <int BN, bool kLowRank = false>
void launchWgmma(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
                 int lda, int ldb, float alpha, float beta, int multiprocessors, const LowRankUpdate& lr = {}) {
  using Tile = HopperTile<BN>;
  // Per device: cheap, so every call.
  allowSharedMemory(gemm_wgmma_kernel<BN, kLowRank>, Tile::kSmemBytes, "gemm_wgmma_kernel");
  const CUtensorMap mapA = tensorMap(A, M, K, lda, kHBM);
  const CUtensorMap mapB = tensorMap(B, N, K, ldb, BN);
  const int tiles = int(ceilDiv(M, kHBM)) * int(ceilDiv(N, BN));
  const int grid = tiles < multiprocessors ? tiles : multiprocessors;
  gemm_wgmma_kernel<BN, kLowRank><<<grid, kHThreads, Tile::kSmemBytes, stream>>>(mapA, mapB, C, M, N, K, alpha, beta,
                                                                                  lr);
  checkLaunch("gemm_wgmma_kernel");
}


}  // namespace

bool hopperGemmSupported(cudaStream_t stream) {
  int* flag = nullptr;
  if (cudaMalloc(&flag, sizeof(int)) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  int host = 0;
  hopper_probe_kernel<<<1, 1, 0, stream>>>(flag);
  bool ok = cudaGetLastError() == cudaSuccess &&
            cudaMemcpyAsync(&host, flag, sizeof(int), cudaMemcpyDeviceToHost, stream) == cudaSuccess &&
            cudaStreamSynchronize(stream) == cudaSuccess;
  cudaGetLastError();
  cudaFree(flag);
  if (!ok || host != 1) return false;
  try {
    encodeTiled();
  } catch (const Error&) {
    return false;
  }
  return true;
}

namespace {

// out[i] = float(in[i]), for frozen bf16 weights where no bf16 GEMM runs.
__global__ void widen_bf16_kernel(float* out, const __nv_bfloat16* in, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = __bfloat162float(in[i]);
}

template <typename T>
void toBf16KMajorOf(cudaStream_t stream, __nv_bfloat16* out, const T* X, int rows, int K, bool kContiguous, int ldk,
                    size_t ldx) {
  if (rows <= 0 || ldk <= 0) return;
  if (ldk % 8 != 0 || ldk < K) throw Error("toBf16KMajor: ldk " + std::to_string(ldk) + " must be a multiple of 8 and >= K " + std::to_string(K));
  if (kContiguous) {
    const size_t work = size_t(rows) * (ldk / 8);
    to_bf16_rows_kernel<<<elementwiseBlocks(work, 256), 256, 0, stream>>>(out, X, rows, K, ldk, ldx ? ldx : size_t(K));
    checkLaunch("to_bf16_rows_kernel");
  } else {
    const dim3 grid(ceilDiv(rows, 32), ceilDiv(ldk, 32));
    if (grid.y > 65535) throw Error("toBf16KMajor: K = " + std::to_string(K) + " is too large for one launch");
    to_bf16_transposed_kernel<<<grid, dim3(32, 8), 0, stream>>>(out, X, rows, K, ldk);
    checkLaunch("to_bf16_transposed_kernel");
  }
}

}  // namespace

void toBf16KMajor(cudaStream_t stream, __nv_bfloat16* out, const float* X, int rows, int K, bool kContiguous, int ldk,
                  size_t ldx) {
  toBf16KMajorOf(stream, out, X, rows, K, kContiguous, ldk, ldx);
}

void toBf16KMajor(cudaStream_t stream, __nv_bfloat16* out, const __nv_bfloat16* X, int rows, int K, bool kContiguous,
                  int ldk) {
  toBf16KMajorOf(stream, out, X, rows, K, kContiguous, ldk, 0);
}

void widenBf16(cudaStream_t stream, float* out, const __nv_bfloat16* in, size_t n) {
  if (n == 0) return;
  widen_bf16_kernel<<<elementwiseBlocks(n, 256), 256, 0, stream>>>(out, in, n);
  checkLaunch("widen_bf16_kernel");
}

void gemmBf16(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
              int lda, int ldb, float alpha, float beta, int multiprocessors, const LowRankUpdate& lr, bool pingPong) {
  if (M <= 0 || N <= 0) return;
  checkBf16Operands("gemm (Hopper)", A, B, K, lda, ldb);
  if (lr.H) {
    if (alpha != 1.0f || lr.r < 1 || lr.r > kMaxLowRank || !lr.L)
      throw Error("gemm (Hopper): a fused low-rank update needs alpha 1 and a rank in [1, " +
                  std::to_string(kMaxLowRank) + "], got alpha " + std::to_string(alpha) + ", rank " +
                  std::to_string(lr.r));
    launchWgmma<128, true>(stream, C, A, B, M, N, K, lda, ldb, alpha, beta, multiprocessors, lr);
    return;
  }
  if (pingPong) {
    launchWgmmaPingPong<128>(stream, C, A, B, M, N, K, lda, ldb, alpha, beta, multiprocessors);
    return;
  }
  gemmBf16Width(stream, C, A, B, M, N, K, lda, ldb, alpha, beta, multiprocessors, hopperGemmWidth(M, N, multiprocessors));
}

int hopperGemmWidth(int M, int N, int multiprocessors) {
  // The width with the least estimated time: waves of tiles (the last wave counts whole) times the tile's
  // width, narrower tiles paying a little for their lower reuse of A (8% at 128 wide).
  int best = kHWidths[0];
  double bestCost = 0.0;
  for (int width : kHWidths) {
    const double tiles = double(ceilDiv(M, kHBM)) * ceilDiv(N, width);
    const double penalty = 1.0 + 0.08 * (256 - width) / 128.0;
    const double cost = std::ceil(tiles / (multiprocessors > 0 ? multiprocessors : 1)) * width * penalty;
    if (width == kHWidths[0] || cost < bestCost) {
      best = width;
      bestCost = cost;
    }
  }
  return best;
}

std::vector<int> hopperGemmWidths() { return std::vector<int>(std::begin(kHWidths), std::end(kHWidths)); }

namespace {
template <int... Widths>
bool launchWidth(int width, cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M,
                 int N, int K, int lda, int ldb, float alpha, float beta, int multiprocessors) {
  return ((width == Widths && (launchWgmma<Widths>(stream, C, A, B, M, N, K, lda, ldb, alpha, beta, multiprocessors),
                               true)) ||
          ...);
}
}  // namespace

void gemmBf16PingPong(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N,
                      int K, int lda, int ldb, float alpha, float beta, int multiprocessors) {
  if (M <= 0 || N <= 0) return;
  checkBf16Operands("gemm (Hopper)", A, B, K, lda, ldb);
  launchWgmmaPingPong<128>(stream, C, A, B, M, N, K, lda, ldb, alpha, beta, multiprocessors);
}

void gemmBf16Width(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
                   int lda, int ldb, float alpha, float beta, int multiprocessors, int width) {
  static_assert(sizeof(kHWidths) / sizeof(int) == 5, "launchWidth lists every width of kHWidths");
  if (M <= 0 || N <= 0) return;
  checkBf16Operands("gemm (Hopper)", A, B, K, lda, ldb);
  if (!launchWidth<kHWidths[0], kHWidths[1], kHWidths[2], kHWidths[3], kHWidths[4]>(
          width, stream, C, A, B, M, N, K, lda, ldb, alpha, beta, multiprocessors))
    throw Error("gemm (Hopper): no " + std::to_string(width) + "-wide tile kernel");
}

size_t gemmHopperScratchBytes(int M, int N, int K) {
  const size_t ldk = alignUp(K < 1 ? 1 : K, 8);
  // Two operands, each start rounded to 256 bytes.
  return alignUp(size_t(M) * ldk * 2) + alignUp(size_t(N) * ldk * 2);
}

void gemmHopper(cudaStream_t stream, float* C, const float* A, const float* B, int M, int N, int K, bool transA,
                bool transB, float alpha, float beta, void* scratch, int multiprocessors, const LowRankUpdate& lr,
                bool pingPong) {
  if (M <= 0 || N <= 0) return;
  const int ldk = static_cast<int>(alignUp(K, 8));
  auto* a = static_cast<__nv_bfloat16*>(scratch);
  auto* b = reinterpret_cast<__nv_bfloat16*>(static_cast<uint8_t*>(scratch) + alignUp(size_t(M) * ldk * 2));
  // op(A) is M x K: K-contiguous unless transposed. op(B) is K x N: its rows (index n) are K-contiguous
  // only when B is transposed.
  toBf16KMajor(stream, a, A, M, K, !transA, ldk);
  toBf16KMajor(stream, b, B, N, K, transB, ldk);
  gemmBf16(stream, C, a, b, M, N, K, ldk, ldk, alpha, beta, multiprocessors, lr, pingPong);
}

}  // namespace pl::cuda
