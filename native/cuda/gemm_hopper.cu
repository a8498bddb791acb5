// The Hopper (sm_90a) GEMM: C[M,N] (fp32) = alpha * A[M,K] * B[N,K]^T + beta * C, with A and B in bf16,
// both K-major. One producer warp group streams 128x64 / BNx64 tiles with the tensor memory accelerator
// (TMA) into a ring of shared-memory stages guarded by mbarriers; two consumer warp groups multiply them
// with wgmma (64 rows each) into fp32 registers; the grid is persistent (one CTA per multiprocessor
// walking the output tiles). The fp32 interface of the backend reaches it through toBf16KMajor(), which
// converts (and where needed transposes) an operand into bf16 rows padded to a multiple of 8.
// Built for every arch; the kernel body exists only in the sm_90a image (hopperGemmSupported() asks the
// device which image it runs), elsewhere the launcher is never called.
#include <cmath>
#include <cstdint>
#include <mutex>
#include <iterator>
#include <string>
#include <vector>

#include "common.cuh"
#include "gemm_hopper.cuh"
#include "kernels.h"

namespace pl::cuda {

namespace {

using namespace hgemm;

// One CTA per multiprocessor walks the 128 x BN output tiles; each consumer warp group owns 64 rows of a tile.
template <int BN>
__global__ void __launch_bounds__(kHThreads, 1)
    gemm_wgmma_kernel(const __grid_constant__ CUtensorMap mapA, const __grid_constant__ CUtensorMap mapB, float* C,
                      int M, int N, int K, float alpha, float beta) {
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
      storeTile<BN>(C, d, tm * kHBM + c * 64, tn * BN, M, N, alpha, beta, pairs);
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

template <int BN>
void launchWgmma(cudaStream_t stream, float* C, const __nv_bfloat16* A, const __nv_bfloat16* B, int M, int N, int K,
                 int lda, int ldb, float alpha, float beta, int multiprocessors) {
  using Tile = HopperTile<BN>;
  // Per device: cheap, so every call.
  allowSharedMemory(gemm_wgmma_kernel<BN>, Tile::kSmemBytes, "gemm_wgmma_kernel");
  const CUtensorMap mapA = tensorMap(A, M, K, lda, kHBM);
  const CUtensorMap mapB = tensorMap(B, N, K, ldb, BN);
  const int tiles = int(ceilDiv(M, kHBM)) * int(ceilDiv(N, BN));
  const int grid = tiles < multiprocessors ? tiles : multiprocessors;
  gemm_wgmma_kernel<BN><<<grid, kHThreads, Tile::kSmemBytes, stream>>>(mapA, mapB, C, M, N, K, alpha, beta);
  checkLaunch("gemm_wgmma_kernel");
}

}  // namespace

// A 2-D map over bf16 rows: `rows` rows of `K` elements, `ld` elements apart; boxes of boxRows x 64.
CUtensorMap hgemm::tensorMap(const __nv_bfloat16* base, int rows, int K, int ld, int boxRows) {
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
              int lda, int ldb, float alpha, float beta, int multiprocessors) {
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
                bool transB, float alpha, float beta, void* scratch, int multiprocessors) {
  if (M <= 0 || N <= 0) return;
  const int ldk = static_cast<int>(alignUp(K, 8));
  auto* a = static_cast<__nv_bfloat16*>(scratch);
  auto* b = reinterpret_cast<__nv_bfloat16*>(static_cast<uint8_t*>(scratch) + alignUp(size_t(M) * ldk * 2));
  // op(A) is M x K: K-contiguous unless transposed. op(B) is K x N: its rows (index n) are K-contiguous
  // only when B is transposed.
  toBf16KMajor(stream, a, A, M, K, !transA, ldk);
  toBf16KMajor(stream, b, B, N, K, transB, ldk);
  gemmBf16(stream, C, a, b, M, N, K, ldk, ldk, alpha, beta, multiprocessors);
}

}  // namespace pl::cuda
