// The machinery the sm_90a wgmma/TMA GEMM kernels share (gemm_hopper.cu's, and the lab's variants in
// dev/kernels/gemm_hopper_variants.cu): tile shapes, the TMA load and the tile walk, the epilogue's store,
// the mbarrier ring the producer fills, and the host's tensor maps over bf16 rows.
#pragma once
#include <cuda.h>  // CUtensorMap and the driver enums (the entry point is fetched through the runtime)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"
#include "hopper.cuh"

namespace pl::cuda::hgemm {

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

// A 2-D map over bf16 rows: `rows` rows of `K` elements, `ld` elements apart; boxes of boxRows x 64
// (gemm_hopper.cu; throws pl::Error when the driver cannot encode it).
CUtensorMap tensorMap(const __nv_bfloat16* base, int rows, int K, int ld, int boxRows);

}  // namespace pl::cuda::hgemm
