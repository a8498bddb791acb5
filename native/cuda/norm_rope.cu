// RMSNorm forward / backward and RoPE forward / backward.
// RMSNorm: one warp a row of C (float4 accesses where the rows allow); the row's sum of squares in fp32
// (lane-strided, then a shuffle tree), rstd = 1 / sqrt(mean + eps) saved per row. Backward: dinp (one warp a
// row) accumulates
// r*w*dy - r^3 * dot(dy*w, x) / C * x; dweight accumulates sum_n dy*x*r in two passes (per-chunk partials
// over row chunks, then an in-order sum of the chunks): deterministic, no atomics.
// RoPE: one thread a (row, head, i < D/2) pair, Hugging Face's rotate_half (dim i pairs with i + D/2).
#include <initializer_list>
#include <type_traits>

#include "common.cuh"
#include "kernels.h"

namespace pl::cuda {

namespace {

constexpr int kRowsPerBlock = 4;  // warps (rows) per block for the row kernels

// A row of C floats seen as float4 (kVec4: C % 4 == 0 and 16-byte aligned rows, four elements a load, more
// bytes in flight per thread) or one float at a time; each lane visits the indices lane, lane + 32, ...
template <bool kVec4>
struct RowOf {
  static constexpr int kWidth = kVec4 ? 4 : 1;
  using Vec = typename std::conditional<kVec4, float4, float>::type;
  static __device__ __forceinline__ Vec at(const float* row, int i) { return reinterpret_cast<const Vec*>(row)[i]; }
  static __device__ __forceinline__ void put(float* row, int i, Vec v) { reinterpret_cast<Vec*>(row)[i] = v; }
};

// Elementwise over the components of a float or a float4.
template <typename F>
__device__ __forceinline__ float apply(float a, float b, float c, F f) { return f(a, b, c); }
template <typename F>
__device__ __forceinline__ float4 apply(float4 a, float4 b, float4 c, F f) {
  return make_float4(f(a.x, b.x, c.x), f(a.y, b.y, c.y), f(a.z, b.z, c.z), f(a.w, b.w, c.w));
}
// sum over components of f(a, b, c), added to acc in component order.
template <typename F>
__device__ __forceinline__ float accumulate(float acc, float a, float b, float c, F f) { return acc + f(a, b, c); }
template <typename F>
__device__ __forceinline__ float accumulate(float acc, float4 a, float4 b, float4 c, F f) {
  acc += f(a.x, b.x, c.x);
  acc += f(a.y, b.y, c.y);
  acc += f(a.z, b.z, c.z);
  return acc + f(a.w, b.w, c.w);
}

template <bool kVec4>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* weight, int N, int C, float eps) {
  using R = RowOf<kVec4>;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* x = inp + size_t(row) * C;
  const int n = C / R::kWidth;
  float ss = 0.0f;
#pragma unroll 4
  for (int i = lane; i < n; i += 32) {
    const auto v = R::at(x, i);
    ss = accumulate(ss, v, v, v, [](float a, float, float) { return a * a; });
  }
  ss = warpSum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (lane == 0) rstd[row] = r;
  float* o = out + size_t(row) * C;
#pragma unroll 4
  for (int i = lane; i < n; i += 32)
    R::put(o, i, apply(R::at(x, i), R::at(weight, i), R::at(weight, i), [r](float xv, float w, float) { return xv * r * w; }));
}

template <bool kVec4>
__global__ void __launch_bounds__(32 * kRowsPerBlock)
    rmsnorm_backward_dinp_kernel(float* dinp, const float* dout, const float* inp, const float* weight,
                                 const float* rstd, int N, int C) {
  using R = RowOf<kVec4>;
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= N) return;
  const float* x = inp + size_t(row) * C;
  const float* dy = dout + size_t(row) * C;
  const int n = C / R::kWidth;
  float dot = 0.0f;
#pragma unroll 4
  for (int i = lane; i < n; i += 32)
    dot = accumulate(dot, R::at(dy, i), R::at(weight, i), R::at(x, i), [](float d, float w, float xv) { return d * w * xv; });
  dot = warpSum(dot);
  const float r = rstd[row];
  const float k = r * r * r * dot / static_cast<float>(C);
  float* dx = dinp + size_t(row) * C;
#pragma unroll 4
  for (int i = lane; i < n; i += 32) {
    const auto g = apply(R::at(weight, i), R::at(dy, i), R::at(x, i),
                         [r, k](float w, float d, float xv) { return r * w * d - k * xv; });
    R::put(dx, i, apply(R::at(dx, i), g, g, [](float old, float add, float) { return old + add; }));
  }
}

// dweight pass 1: block (32 columns) x (8 row lanes) over one chunk of rows; partial[chunk, c].
constexpr int kDwCols = 32, kDwRows = 8;
__global__ void __launch_bounds__(kDwCols* kDwRows)
    rmsnorm_dweight_partial_kernel(float* partial, const float* dout, const float* inp, const float* rstd, int N,
                                   int C, int rowsPerChunk) {
  __shared__ float acc[kDwRows][kDwCols];
  const int c = blockIdx.x * kDwCols + threadIdx.x;
  const int n0 = blockIdx.y * rowsPerChunk, n1 = min(N, n0 + rowsPerChunk);
  float s = 0.0f;
  if (c < C)
    for (int n = n0 + threadIdx.y; n < n1; n += kDwRows) s += dout[size_t(n) * C + c] * inp[size_t(n) * C + c] * rstd[n];
  acc[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.0f;
#pragma unroll
    for (int i = 0; i < kDwRows; ++i) t += acc[i][threadIdx.x];
    partial[size_t(blockIdx.y) * C + c] = t;
  }
}

// dweight pass 2: dweight[c] += sum over chunks, in chunk order.
__global__ void rmsnorm_dweight_final_kernel(float* dweight, const float* partial, int chunks, int C) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float t = 0.0f;
  for (int i = 0; i < chunks; ++i) t += partial[size_t(i) * C + c];
  dweight[c] += t;
}

// Rows of C floats can go as float4 when C is a multiple of 4 and every base is 16-byte aligned.
bool rowsVec4(int C, std::initializer_list<const void*> ptrs) { return C % 4 == 0 && aligned16(ptrs); }

int dweightChunks(int N) {
  const int chunks = (N + 63) / 64;  // about 64 rows a chunk, at most 256 chunks
  return chunks < 1 ? 1 : (chunks > 256 ? 256 : chunks);
}

// x[B,T,H,D] in place; (x1, x2) = (x[i], x[i + D/2]) -> (x1 c - x2 s, x2 c + x1 s), s negated for the inverse.
__global__ void rope_kernel(float* x, const float* cosTable, const float* sinTable, int T, int H, int D, int pos0,
                            float sign, size_t pairs) {
  const int half = D / 2;
  for (size_t p = blockIdx.x * size_t(blockDim.x) + threadIdx.x; p < pairs; p += size_t(gridDim.x) * blockDim.x) {
    const int i = static_cast<int>(p % half);
    const size_t rowHead = p / half;  // (b*T + t)*H + h
    const int t = static_cast<int>((rowHead / H) % T);
    const size_t tab = size_t(pos0 + t) * half + i;
    const float c = cosTable[tab], s = sign * sinTable[tab];
    float* row = x + rowHead * D;
    const float x1 = row[i], x2 = row[i + half];
    row[i] = x1 * c - x2 * s;
    row[i + half] = x2 * c + x1 * s;
  }
}

}  // namespace

void rmsnormForward(cudaStream_t stream, float* out, float* rstd, const float* inp, const float* weight, int N,
                    int C, float eps) {
  if (N <= 0) return;
  const dim3 grid(ceilDiv(N, kRowsPerBlock)), block(32 * kRowsPerBlock);
  if (rowsVec4(C, {out, inp, weight}))
    rmsnorm_forward_kernel<true><<<grid, block, 0, stream>>>(out, rstd, inp, weight, N, C, eps);
  else
    rmsnorm_forward_kernel<false><<<grid, block, 0, stream>>>(out, rstd, inp, weight, N, C, eps);
  checkLaunch("rmsnorm_forward_kernel");
}

size_t rmsnormBackwardScratchBytes(int N, int C) { return sizeof(float) * size_t(dweightChunks(N)) * C; }

void rmsnormBackward(cudaStream_t stream, float* dinp, float* dweight, const float* dout, const float* inp,
                     const float* weight, const float* rstd, int N, int C, void* scratch) {
  if (N <= 0) return;
  const dim3 grid(ceilDiv(N, kRowsPerBlock)), block(32 * kRowsPerBlock);
  if (rowsVec4(C, {dinp, dout, inp, weight}))
    rmsnorm_backward_dinp_kernel<true><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, N, C);
  else
    rmsnorm_backward_dinp_kernel<false><<<grid, block, 0, stream>>>(dinp, dout, inp, weight, rstd, N, C);
  checkLaunch("rmsnorm_backward_dinp_kernel");
  if (!dweight) return;
  const int chunks = dweightChunks(N);
  const int rowsPerChunk = (N + chunks - 1) / chunks;
  float* partial = static_cast<float*>(scratch);
  rmsnorm_dweight_partial_kernel<<<dim3(ceilDiv(C, kDwCols), chunks), dim3(kDwCols, kDwRows), 0, stream>>>(
      partial, dout, inp, rstd, N, C, rowsPerChunk);
  checkLaunch("rmsnorm_dweight_partial_kernel");
  rmsnorm_dweight_final_kernel<<<ceilDiv(C, 256), 256, 0, stream>>>(dweight, partial, chunks, C);
  checkLaunch("rmsnorm_dweight_final_kernel");
}

void rope(cudaStream_t stream, float* x, const float* cosTable, const float* sinTable, int B, int T, int H, int D,
          int pos0, bool inverse) {
  const size_t pairs = size_t(B) * T * H * (D / 2);
  if (pairs == 0) return;
  rope_kernel<<<elementwiseBlocks(pairs, 256), 256, 0, stream>>>(x, cosTable, sinTable, T, H, D, pos0,
                                                                 inverse ? -1.0f : 1.0f, pairs);
  checkLaunch("rope_kernel");
}

}  // namespace pl::cuda
